"""Evaluation harness: summary.csv contract, common random numbers, paired differences, CIs, CLIs, plots."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import envs  # noqa: F401
from agents.baselines import BaselineConfig, RandomBaseline, RetrieverBaseline, baseline_factory, make_baseline
from envs import WorldConfig, static_config
from experiments import compare, evaluate_cli
from experiments.evaluate import (
    SUMMARY_COLUMNS,
    evaluate_agents,
    paired_differences,
    resolve_config,
    summarize,
    t_interval,
    write_summary,
)
from experiments.plots import plot_learning_curves

CONFIG = static_config(world=WorldConfig(text_encoder="hashing"))
SESSION_CONFIG = envs.EnvConfig(world=WorldConfig(text_encoder="hashing"))


@pytest.fixture(scope="module")
def env() -> gym.Env:
    return gym.make("ShopRankStatic-v0", config=CONFIG)


class Recorder:
    """Wraps a policy and records the query vector of every observation it is asked about."""

    def __init__(self, inner):
        self.inner, self.queries = inner, []

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        self.queries.append(obs["query"].copy())
        return self.inner.predict(obs, deterministic=deterministic)


def test_summary_csv_contract(env, tmp_path):
    agents = {n: baseline_factory(n) for n in ("random", "retriever", "oracle")}
    df = evaluate_agents(agents, env=env, seeds=[0, 1], n_sessions=15, progress=False)
    paths = write_summary(df, tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS == ["agent", "metric", "mean", "ci95_low", "ci95_high", "n"]
    assert set(summary.agent) == {"random", "retriever", "oracle"}
    assert not summary.duplicated(["agent", "metric"]).any()
    assert set(summary[summary.metric == "reward"].agent) == {"random", "retriever", "oracle"}
    assert len(summary) == 3 * summary.metric.nunique()
    reward = summary[summary.metric == "reward"].set_index("agent")
    assert (reward.ci95_low <= reward["mean"]).all() and (reward["mean"] <= reward.ci95_high).all()
    assert (reward.n == 30).all()  # < 5 seeds: seeds x sessions
    for name in ("paired", "markdown", "metrics_png", "ctr_by_position_png", "ctr_by_position_csv", "sessions"):
        assert paths[name].exists() and paths[name].stat().st_size > 0
    assert "| oracle |" in (tmp_path / "summary.md").read_text()


def test_common_random_numbers_and_self_paired_difference_is_zero(env):
    recorders = {}

    def recorded(name, inner):
        def factory(e, seed):
            recorders[name] = Recorder(inner(e, seed))
            return recorders[name]
        return factory

    agents = {"retriever": lambda e, s: RetrieverBaseline(), "retriever_copy": lambda e, s: RetrieverBaseline(),
              "random_a": recorded("a", lambda e, s: RandomBaseline(s)),
              "random_b": recorded("b", lambda e, s: RandomBaseline(s)),
              "oracle": recorded("o", lambda e, s: make_baseline("oracle", e))}
    df = evaluate_agents(agents, env=env, seeds=[3], n_sessions=25, progress=False)
    metric_cols = [c for c in df.columns if c not in ("agent",)]
    a = df[df.agent == "retriever"][metric_cols].reset_index(drop=True)
    b = df[df.agent == "retriever_copy"][metric_cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    ra = df[df.agent == "random_a"][metric_cols].reset_index(drop=True)
    rb = df[df.agent == "random_b"][metric_cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(ra, rb)
    # every agent met the same shoppers' queries, whatever its own randomness
    np.testing.assert_array_equal(np.stack(recorders["a"].queries), np.stack(recorders["o"].queries))
    paired = paired_differences(df, baseline="retriever")
    copy = paired[paired.agent == "retriever_copy"]
    assert (copy.mean_diff == 0).all()
    per_session = copy[copy.metric != "coverage"]  # coverage: one value per seed, no interval from 1 seed
    assert (per_session.ci95_low == 0).all() and (per_session.ci95_high == 0).all()
    assert len(paired[paired.agent == "oracle"]) == copy.shape[0]


class SlotRetriever:
    """A sequential agent that fills each slot with the best-ranked unplaced candidate (retriever order)."""

    sequential = True

    def predict(self, obs, state=None, episode_start=None, deterministic=True, action_masks=None):
        return int(np.flatnonzero(action_masks)[0]), None


def test_sequential_agent_runs_in_seq_env_with_common_random_numbers():
    env = gym.make("ShopRank-v0", config=SESSION_CONFIG)
    agents = {"retriever": baseline_factory("retriever"), "slot_retriever": lambda e, s: SlotRetriever()}
    df = evaluate_agents(agents, env=env, seeds=[0], n_sessions=8, progress=False)
    cols = [c for c in df.columns if c != "agent"]
    pd.testing.assert_frame_equal(df[df.agent == "retriever"][cols].reset_index(drop=True),
                                  df[df.agent == "slot_retriever"][cols].reset_index(drop=True))
    assert df.session_length.max() > 1


def test_ci_over_seeds_with_five_seeds(env):
    df = evaluate_agents({"retriever": baseline_factory("retriever")}, env=env, seeds=[0, 1, 2, 3, 4],
                         n_sessions=4, progress=False)
    summary = summarize(df)
    assert (summary.n == 5).all()
    per_seed = df.groupby("seed")["reward"].mean().to_numpy()
    row = summary[summary.metric == "reward"].iloc[0]
    assert row["mean"] == pytest.approx(per_seed.mean())
    assert row.ci95_low < row["mean"] < row.ci95_high
    assert df.groupby("seed").coverage.nunique().eq(1).all()


def test_t_interval():
    mean, low, high, n = t_interval(np.array([1.0, 2.0, 3.0, np.nan]))
    assert (mean, n) == (2.0, 3)
    assert high - mean == pytest.approx(4.302652729911275 * 1.0 / np.sqrt(3))
    assert t_interval(np.array([5.0]))[3] == 1 and np.isnan(t_interval(np.array([5.0]))[1])


def test_session_env_and_bandit_update(tmp_path):
    env = gym.make("ShopRank-v0", config=SESSION_CONFIG)
    agents = {n: baseline_factory(n, BaselineConfig()) for n in ("retriever", "linucb")}
    df = evaluate_agents(agents, env=env, seeds=[0], n_sessions=10, progress=False)
    assert (df.session_length >= 1).all() and df.session_length.max() > 1
    assert set(df.abandon_rate.unique()) <= {0.0, 1.0}
    write_summary(df, tmp_path)


def test_bad_evaluate_inputs(env):
    with pytest.raises(ValueError, match=re.escape("agents is empty: give at least one name -> factory.")):
        evaluate_agents({}, env=env, seeds=[0], n_sessions=1)
    with pytest.raises(ValueError, match=re.escape("seeds must be distinct, got [1, 1].")):
        evaluate_agents({"r": baseline_factory("retriever")}, env=env, seeds=[1, 1], n_sessions=1)
    with pytest.raises(ValueError, match=re.escape("ci_over must be 'auto', 'seeds' or 'sessions', got 'bogus'.")):
        summarize(pd.DataFrame({"agent": ["a"], "seed": [0], "session": [0], "reward": [1.0]}), "bogus")
    with pytest.raises(ValueError, match=re.escape("unknown env id 'Nope-v0'")):
        resolve_config("Nope-v0")
    config = resolve_config("ShopRankStatic-v0", catalog="/data/x", text_encoder="hashing")
    assert config.max_queries == 1 and config.world.catalog == "/data/x" and config.world.text_encoder == "hashing"


def test_compare_cli_baselines_only(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = compare.main(["--agents", "random,retriever,oracle", "--seeds", "2", "--sessions", "5",
                         "--text-encoder", "hashing", "--out", str(out), "--no-progress"])
    assert code == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS and set(summary.agent) == {"random", "retriever", "oracle"}
    assert (out / "paired.csv").exists() and (out / "compare_config.json").exists()
    code = compare.main(["--agents", "random,foo", "--out", str(out)])
    assert code == 2
    assert "unknown agent(s) ['foo']; choose from" in capsys.readouterr().err
    code = compare.main(["--agents", "retriever,ppo", "--agent-set", "pretrain_target=bogus", "--out", str(out)])
    assert code == 2
    assert ("shoprank compare: error: AgentConfig.pretrain_target must be one of ['clicks', 'net_reward', 'reward', 'trust_reward'], got 'bogus'."
            in capsys.readouterr().err)


def test_every_agent_preset_is_a_compare_agent():
    from agents.factory import AGENT_PRESETS

    assert sorted(compare.RL_AGENTS) == sorted(AGENT_PRESETS)


def test_evaluate_cli_on_baseline_checkpoint(env, tmp_path):
    agent = make_baseline("linucb", env)
    folder = agent.save(tmp_path / "linucb_ckpt")
    code = evaluate_cli.main(["--checkpoint", str(folder), "--seeds", "2", "--sessions", "4", "--text-encoder", "hashing",
                              "--out", str(tmp_path / "ev"), "--no-progress"])
    assert code == 0
    summary = pd.read_csv(tmp_path / "ev" / "summary.csv")
    assert set(summary.agent) == {"linucb", "retriever"}
    assert evaluate_cli.main(["--checkpoint", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "x")]) == 2


def test_learning_curves_from_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for run in ("ppo_seed0", "ppo_seed1"):
        writer = SummaryWriter(str(tmp_path / run))
        for step in range(5):
            writer.add_scalar("shop/clicks", step * 0.5, step)
            writer.add_scalar("shop/ndcg", 0.5 + step * 0.01, step)
            writer.add_scalar("train/loss", 1.0, step)
        writer.close()
    out = plot_learning_curves(tmp_path, tmp_path / "curves.png")
    assert out.exists() and out.stat().st_size > 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"no TensorBoard scalars under 'shop/' in {tmp_path / 'empty'}.")):
        plot_learning_curves(tmp_path / "empty", tmp_path / "none.png")


def test_reward_shares_of_the_oracles():
    from experiments.evaluate import reward_shares

    rows = [{"agent": agent, "seed": seed, "session": i, "reward": value * (1 + seed)}
            for seed in range(5) for i in range(2) for agent, value in (("a", 3.0), ("oracle", 6.0),
                                                                           ("profile_oracle", 4.0))]
    shares = reward_shares(pd.DataFrame(rows)).set_index(["agent", "reference"])
    assert shares.loc[("a", "oracle"), "share"] == pytest.approx(0.5)
    assert shares.loc[("a", "oracle"), "ci95_low"] == pytest.approx(0.5)  # same ratio on every seed
    assert shares.loc[("a", "profile_oracle"), "share"] == pytest.approx(0.75)
    assert shares.loc[("oracle", "profile_oracle"), "share"] == pytest.approx(1.5)
    few_seeds = pd.DataFrame([r for r in rows if r["seed"] < 2])
    few = reward_shares(few_seeds).set_index(["agent", "reference"])
    assert few.loc[("a", "oracle"), "share"] == pytest.approx(0.5) and few.loc[("a", "oracle"), "n"] == 4
    assert few.loc[("a", "oracle"), "ci95_low"] == pytest.approx(0.5)  # over sessions: the same ratio on each
    assert reward_shares(pd.DataFrame([r for r in rows if r["agent"] == "a"])).empty


def test_ratio_interval_is_the_paired_delta_method():
    from experiments.evaluate import ratio_interval

    ratio, low, high, n = ratio_interval(np.array([1.0, 2.0, 3.0, 4.0, np.nan]), np.array([2.0, 2.0, 2.0, 2.0, 1.0]))
    # R = 2.5 / 2; x - R y = x - 2.5 has sd 1.2910; se = sd / (sqrt(4) * 2); t(0.975, 3) = 3.1824
    assert (ratio, n) == (1.25, 4)
    assert high - ratio == pytest.approx(3.182446305 * np.std([1, 2, 3, 4], ddof=1) / 4)
    assert ratio - low == pytest.approx(high - ratio)
    assert np.isnan(ratio_interval(np.array([1.0]), np.array([2.0]))[1])
    assert np.isnan(ratio_interval(np.array([1.0, 2.0]), np.array([0.0, 0.0]))[0])
