"""The lookahead study: V = 0 is the myopic oracle, V > 0 charges purchases, and the study runs end to end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from benchmarks import lookahead
from envs import EnvConfig, WorldConfig

WORLD = WorldConfig(text_encoder="hashing")


def test_the_charge_is_v_times_the_chance_a_purchase_ends_the_session():
    # The charge is computed from the click model's top-slot probabilities; the shopper's own
    # expected_response (a separate code path) must give the same P(click and buy) per candidate.
    env = gym.make("ShopRank-v0", config=EnvConfig(world=WORLD))
    env.reset(seed=3)
    core = env.unwrapped.core
    oracle = env.unwrapped.privileged_scores()
    value = 10.0
    charged = lookahead.LookaheadOracle(env, value).scores(None)
    leave = 1.0 - core.sim.config.p_continue_after_purchase
    valid = np.flatnonzero(core.candidates >= 0)
    assert len(valid) > 5 and np.all(np.isneginf(charged[core.candidates < 0]))
    for i in valid:
        alone = np.full(core.config.slate_size, -1, dtype=np.int64)
        alone[0] = core.candidates[i]
        p_buy = core.sim.expected_response(core.state, core.query, alone).purchase_prob[0]
        assert oracle[i] - charged[i] == pytest.approx(value * leave * p_buy, rel=1e-9, abs=1e-12)
    assert np.any(oracle[valid] - charged[valid] > 1e-3)  # the charge is not vacuous


def test_study_runs(tmp_path, monkeypatch):
    table = lookahead.study([5.0], seeds=[0, 1], n_sessions=3, world=WORLD)
    assert table.agent.tolist() == ["oracle", "lookahead-5"]
    row = table.set_index("agent").loc["lookahead-5"]
    assert row.share_of_oracle == pytest.approx(row.reward / table.loc[0, "reward"])
    assert row.share_low < row.share_of_oracle < row.share_high
    assert (table.session_length >= 1).all() and np.isfinite(table[list(lookahead.METRICS)]).all().all()
    monkeypatch.setattr(lookahead, "study", lambda *a, **k: table)
    assert lookahead.main(["--values", "5", "--seeds", "2", "--sessions", "3", "--out", str(tmp_path)]) == 0
    assert "| lookahead-5 |" in (tmp_path / "lookahead.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--values", "x"], "--values must be comma-separated numbers, got 'x'"),
    (["--values", "0"], "--values needs at least one finite value, all > 0; got '0'"),
    (["--seeds", "1"], "--seeds must be >= 2 (for a CI) and --sessions >= 1"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        lookahead.main(argv)
    assert message in capsys.readouterr().err
