"""FeatureLayout: names point at the right observation columns, JSON round trip, exact-message errors, and a
checkpoint trained under another layout is refused."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.baselines import PriceBaseline, RetrieverBaseline, make_baseline
from agents.checkpoint import META_FILE, load_agent, save_agent
from agents.factory import AgentConfig, build_agent
from encoders.errors import CheckpointError
from envs import EnvConfig, WorldConfig, static_config
from envs.layout import FeatureLayout, LayoutMismatchError

WORLD = WorldConfig(text_encoder="hashing", n_products=300)
CFG = EnvConfig(n_candidates=12, slate_size=5, max_queries=3, world=WORLD)


@pytest.fixture(scope="module")
def env():
    return gym.make("ShopRank-v0", config=CFG).unwrapped


def test_names_point_at_their_features(env):
    layout = env.layout
    obs, _ = env.reset(seed=0)
    cand, valid = obs["candidates"], obs["mask"] > 0
    ids = env.core.candidates
    world = env.world
    np.testing.assert_array_equal(cand[valid][:, layout.columns("fused")], world.fused[ids[valid]])
    np.testing.assert_allclose(cand[:, layout.column("retriever_rank")][valid], (1 - np.arange(12) / 12)[valid],
                               rtol=1e-6)
    np.testing.assert_array_equal(cand[:, layout.column("price_z")][valid], world.items.price_z[ids[valid]])
    np.testing.assert_array_equal(cand[:, layout.column("has_photo")][valid], world.catalog.has_image[ids[valid]])
    scores = cand[:, layout.column("retriever_score")][valid]
    assert np.all(np.diff(scores) <= 1e-6)  # the retriever's scores, in its (descending) order
    obs, *_ = env.step(np.ones(12, dtype=np.float32))
    assert obs["session"][layout.session_column("queries_used")] == pytest.approx(1 / 3)
    for key, shape in layout.blocks:
        assert env.observation_space[key].shape == shape


def test_json_round_trip_and_of_observation(env):
    layout = env.layout
    assert FeatureLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    obs, _ = env.reset(seed=1)
    assert FeatureLayout.of_observation(obs) == layout
    assert FeatureLayout.of_observation(env.observation_space) == layout  # what a features extractor sees
    assert gym.make("ShopRankSeq-v0", config=CFG).unwrapped.layout == layout


def test_lookup_errors_name_what_exists(env):
    layout = env.layout
    with pytest.raises(KeyError, match=re.escape("no candidate feature 'rating'; features are ['fused', "
                                                 "'retriever_score', 'retriever_rank', 'price_z', 'has_photo']")):
        layout.column("rating")
    with pytest.raises(KeyError, match=re.escape("candidate feature 'fused' spans 32 columns; use columns('fused')")):
        layout.column("fused")
    with pytest.raises(KeyError, match=re.escape("no session feature 'cart'; features are ['queries_used', "
                                                 "'clicks', 'purchases', 'last_ctr']")):
        layout.session_column("cart")
    with pytest.raises(LayoutMismatchError, match=re.escape("not a FeatureLayout dict (KeyError('blocks'))")):
        FeatureLayout.from_dict({"version": 1})


def test_mismatch_names_the_difference(env):
    other = FeatureLayout.build(12, CFG.history_size, 33, 32, env.core.profile_dim)
    with pytest.raises(LayoutMismatchError, match=re.escape(
            "the checkpoint's observation layout differs from the env's (blocks: checkpoint has")):
        env.layout.check_matches(other)
    env.layout.check_matches(FeatureLayout.from_dict(env.layout.to_dict()))  # equal: no error


def test_column_baselines_read_the_layout(env):
    obs, _ = env.reset(seed=2)
    retriever = make_baseline("retriever", gym.make("ShopRank-v0", config=CFG))
    assert retriever.layout == env.layout
    valid = obs["mask"] > 0
    assert np.argsort(-retriever.predict(obs)[0][valid]).tolist() == list(range(int(valid.sum())))
    # without an env the layout is read from the observation's shapes: same scores
    np.testing.assert_array_equal(RetrieverBaseline().scores(obs), retriever.scores(obs))
    price = PriceBaseline(env.layout).scores(obs)
    np.testing.assert_array_equal(price, -obs["candidates"][:, env.layout.column("price_z")])


def test_checkpoint_saves_the_layout_and_refuses_another(tmp_path):
    config = static_config(world=WORLD, n_candidates=12, slate_size=5)
    agent_config = AgentConfig(n_steps=16, batch_size=16, n_epochs=1, hidden=8, heads=2, n_envs=1)
    model = build_agent("ppo", config, agent_config, seed=0, n_envs=1)
    folder = save_agent(model, "ppo", config, agent_config, tmp_path / "ckpt")
    meta = json.loads((folder / META_FILE).read_text())
    layout = FeatureLayout.from_dict(meta["feature_layout"])
    assert layout == gym.make("ShopRankStatic-v0", config=config).unwrapped.layout
    assert load_agent(folder).name == "ppo"
    # a checkpoint trained when the columns were in another order is refused, naming the difference
    swapped = [list(c) for c in meta["feature_layout"]["candidates"]]
    swapped[2][1:], swapped[3][1:] = swapped[3][1:], swapped[2][1:]
    meta["feature_layout"]["candidates"] = swapped
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=re.escape(
            f"the checkpoint {folder}'s observation layout differs from the env's (candidates: checkpoint {folder} "
            "has [['fused', 0, 32], ['retriever_score', 32, 33], ['retriever_rank', 34, 35], ['price_z', 33, 34]")):
        load_agent(folder)
