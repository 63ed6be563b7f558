"""The observable-ceiling study: its vectorised candidate values match the env's oracle, and it runs end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from benchmarks import ceiling
from envs import WorldConfig, static_config
from simulators.shopper import DefaultShopper

WORLD = WorldConfig(text_encoder="hashing")


def test_top_slot_values_equal_the_oracles_candidate_values():
    env = gym.make("ShopRankStatic-v0", config=static_config(world=WORLD))
    for seed in range(5):
        env.reset(seed=seed)
        core = env.unwrapped.core
        unbored = DefaultShopper(core.sim.items, replace(core.sim.config, boredom=0.0),
                                 click_model=core.sim.click_model, n_slots=core.config.slate_size)
        fast = ceiling.top_slot_values(unbored, core.state, core.query, core.candidates, core.config.reward,
                                       core.world.items.prices, core.config.slate_size)
        np.testing.assert_allclose(fast, core.candidate_values(), rtol=1e-6)


def test_posterior_oracle_needs_the_default_shopper():
    env = gym.make("ShopRankStatic-v0", config=static_config(world=WORLD,
                                                             simulator="experiments.examples.custom_shopper:make"))
    with pytest.raises(TypeError, match=r"^PosteriorOracle needs the DefaultShopper, got PopularityShopper\.$"):
        ceiling.PosteriorOracle(env, draws=2, seed=0)


def test_study_table_holds_each_rankers_share_with_a_finite_ci(tmp_path, monkeypatch):
    table = ceiling.study([0.0, 0.5], seeds=[0, 1], n_sessions=6, draws=4, world=WORLD)
    assert list(table.columns[:3]) == ["profile_noise", "agent", "reward"]
    assert table.agent.tolist() == list(ceiling.agents(4)) * 2
    for noise, group in table.groupby("profile_noise"):
        g = group.set_index("agent")
        # with 2 seeds the CI is over sessions: the share is the ratio of the mean rewards, with a real interval
        np.testing.assert_allclose(g.share_of_oracle, g.reward / g.loc["oracle", "reward"], rtol=1e-9)
        others = g.drop(index="oracle")
        assert np.isfinite(others[["share_low", "share_high"]]).all().all(), noise
        assert (others.share_low < others.share_of_oracle).all() and (others.share_of_oracle < others.share_high).all()
        assert g.loc["retriever", "share_of_oracle"] < 1.0 and (g.reward > 0).all()
    monkeypatch.setattr(ceiling, "study", lambda *a, **k: table)
    assert ceiling.main(["--noise", "0,0.5", "--seeds", "2", "--sessions", "6", "--draws", "4",
                         "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "ceiling.json").read_text())
    assert len(saved["rows"]) == len(table)
    markdown = (tmp_path / "ceiling.md").read_text()
    assert "| 0.5 (default) |" in markdown and "nan" not in markdown


@pytest.mark.parametrize("argv, message", [
    (["--noise", "a,b"], "--noise must be comma-separated numbers, got 'a,b'"),
    (["--noise", "-1"], "--noise needs at least one finite value, all >= 0; got '-1'"),
    (["--seeds", "1"], "--seeds must be >= 2 (for a CI), --sessions and --draws >= 1"),
])
def test_bad_arguments_get_clear_messages(argv, message, capsys):
    with pytest.raises(SystemExit):
        ceiling.main(argv)
    assert message in capsys.readouterr().err
