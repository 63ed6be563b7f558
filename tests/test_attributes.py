"""Sparse attribute features: hashed catalog attribute ids in the observation, embedded with EmbeddingBag."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents.checkpoint import load_agent
from agents.extractor import CandidateSetExtractor
from agents.factory import AgentConfig, train_agent
from encoders.errors import ConfigError
from envs import EnvConfig, WorldConfig, static_config
from envs.attributes import PAD_ID, UNKNOWN_ID, attribute_ids, attribute_tokens, token_bucket
from envs.layout import FeatureLayout

FAST_WORLD = WorldConfig(text_encoder="hashing", n_products=300)


def test_tokens_split_multi_values_and_mark_placeholders():
    assert attribute_tokens({"Colour": "Black| Gray", "size": "n/a", "brand": ""}) == [
        "brand=?", "colour=black", "colour=gray", "size=?"]


def test_ids_hash_known_values_and_share_one_bucket_for_unknown_ones():
    catalog = [{"colour": "red", "material": "wool"}, {"colour": "red", "material": "silk"},
               {"colour": "unknown"}, {}]
    ids = attribute_ids(catalog, n_buckets=50)
    assert ids.shape == (4, 2)
    red = token_bucket("colour=red", 50)
    assert 2 <= red < 50
    assert ids[0].tolist() == [red, UNKNOWN_ID]        # wool: one product has it -> unknown
    assert ids[1].tolist() == [red, UNKNOWN_ID]        # silk likewise (a shared bucket, not a bucket each)
    assert ids[2].tolist() == [UNKNOWN_ID, PAD_ID]     # a placeholder value
    assert ids[3].tolist() == [PAD_ID, PAD_ID]         # no attributes at all
    assert np.array_equal(attribute_ids(catalog, 50), ids)   # stable (CRC-32, not Python's salted hash)
    with pytest.raises(ValueError, match=re.escape("n_buckets must be between 3 and 16777216, got 2.")):
        attribute_ids(catalog, 2)


def test_config_message():
    with pytest.raises(ConfigError, match=re.escape(
            "attribute_buckets must be 0 (off) or between 3 and 16777216, got 2.")):
        EnvConfig(attribute_buckets=2)
    with pytest.raises(ConfigError, match=re.escape(
            "attribute_buckets must be 0 (off) or between 3 and 16777216, got -1.")):
        EnvConfig(attribute_buckets=-1)


@pytest.mark.parametrize("env_id", ["ShopRankStatic-v0", "ShopRankSeqStatic-v0"])
def test_observation_carries_each_candidates_ids(env_id):
    env = gym.make(env_id, config=static_config(world=FAST_WORLD, attribute_buckets=64))
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    assert env.observation_space["attributes"].high.max() == 63
    core = env.unwrapped.core
    expected = attribute_ids(core.world.catalog.attributes, 64)[np.asarray(core.candidates).reshape(-1)]
    assert np.array_equal(obs["attributes"], expected.astype(np.float32))
    layout = env.unwrapped.layout
    assert layout.attribute_buckets == 64 and layout.shape("attributes") == obs["attributes"].shape
    assert FeatureLayout.from_dict(layout.to_dict()) == layout
    assert "attributes" not in gym.make(env_id, config=static_config(world=FAST_WORLD)).observation_space.spaces


def test_padded_candidates_have_no_ids():
    env = gym.make("ShopRankStatic-v0", config=static_config(world=FAST_WORLD, attribute_buckets=16))
    env.reset(seed=0)
    table = env.unwrapped.core.core.table
    k = table.ids.shape[1]
    ids = np.full((1, k), -1, dtype=np.int64)
    ids[0, :3] = [4, 7, 9]
    table._write(np.array([0]), ids, np.zeros((1, k), np.float32), table.query_obs[:1])
    expected = attribute_ids(env.unwrapped.core.world.catalog.attributes, 16)[[4, 7, 9]]
    assert np.array_equal(table.attr[0, :3], expected) and np.all(table.attr[0, 3:] == PAD_ID)


def test_extractor_embeds_the_ids_and_stays_permutation_equivariant():
    env = gym.make("ShopRankStatic-v0", config=static_config(world=FAST_WORLD, attribute_buckets=64))
    torch.manual_seed(0)
    extractor = CandidateSetExtractor(env.observation_space, hidden=16, heads=2).eval()
    assert isinstance(extractor.attribute_bag, torch.nn.EmbeddingBag) and extractor.attribute_bag.num_embeddings == 64
    obs, _ = env.reset(seed=0)
    batch = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
    k = batch["mask"].shape[1]
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(1))
    permuted = {**batch, **{key: batch[key][:, perm] for key in ("candidates", "mask", "attributes")}}
    changed = {**batch, "attributes": torch.where(batch["attributes"] > 0, 5.0, 0.0)}
    with torch.no_grad():
        out, out_p, out_c = extractor(batch), extractor(permuted), extractor(changed)
    assert torch.allclose(out[:, :k][:, perm], out_p[:, :k], atol=1e-5)
    assert not torch.allclose(out[:, :k], out_c[:, :k])              # the ids reach the scores


def test_ppo_trains_on_attributes_and_its_checkpoint_reloads(tmp_path):
    config = static_config(world=FAST_WORLD, attribute_buckets=32)
    agent = AgentConfig(n_steps=32, batch_size=32, n_epochs=1, hidden=16, heads=2, n_envs=2, layers=0)
    model = train_agent("ppo", config, total_timesteps=64, seed=0, run_dir=tmp_path, config=agent)
    bag = model.policy.pi_features_extractor.attribute_bag
    assert bag.weight.grad is not None and bag.weight.grad[1:].abs().sum() > 0
    loaded = load_agent(tmp_path / "checkpoint")
    env = gym.make("ShopRankStatic-v0", config=config)
    obs, _ = env.reset(seed=4)
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_luma_attributes_hash_with_an_unknown_bucket(shared_data):
    from encoders.csv_catalog import CsvCatalogConfig, load_csv_catalog

    catalog = load_csv_catalog(CsvCatalogConfig(path=shared_data / "luma"))
    ids = attribute_ids(catalog.attributes, 1024)
    assert ids.shape[0] == len(catalog.attributes) and ids.shape[1] >= 12
    assert (ids >= 2).mean() > 0.5                      # most tokens are known values
    assert (ids == UNKNOWN_ID).any()                    # and the rare ones share the unknown bucket
