"""The lookahead study: V = 0 is the myopic oracle, V > 0 charges purchases, and the study runs end to end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from benchmarks import lookahead
from envs import EnvConfig, WorldConfig

WORLD = WorldConfig(text_encoder="hashing")


def test_zero_value_is_the_myopic_oracle_and_a_value_lowers_likely_purchases():
    env = gym.make("ShopRank-v0", config=EnvConfig(world=WORLD))
    env.reset(seed=3)
    oracle = env.unwrapped.privileged_scores()
    np.testing.assert_allclose(lookahead.LookaheadOracle(env, 0.0).scores(None), oracle, rtol=1e-12)
    charged = lookahead.LookaheadOracle(env, 10.0).scores(None)
    valid = np.isfinite(oracle)
    assert np.all(charged[valid] <= oracle[valid] + 1e-12) and np.any(charged[valid] < oracle[valid])


def test_study_runs(tmp_path, monkeypatch):
    table = lookahead.study([5.0], seeds=[0, 1], n_sessions=3, world=WORLD)
    assert table.agent.tolist() == ["oracle", "lookahead-5"]
    assert table.loc[0, "share_of_oracle"] == pytest.approx(1.0)
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
