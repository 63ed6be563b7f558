"""Imitation ceiling: can the ``ppo`` agent's network, fed the observation, rank like ``profile_oracle``?

``profile_oracle`` ranks by each candidate's expected immediate reward for the shopper the observation reveals,
using the simulator's equations and the true product traits. An agent sees the products only through their
fused text + photo vectors. Issue 12 asks PPO for 97% of ``profile_oracle``; this study asks whether that is
within reach of the network and the observation at all, with the label noise taken away: the network of the
``ppo`` preset (the candidate-set network with attention) is fitted by Poisson regression to
``profile_oracle``'s *expected* reward of every candidate (the quantity the warm start learns from sampled
clicks and purchases), on states of the default static env drawn from the training seed stream, and its
ranking is then evaluated against ``profile_oracle`` and the retriever on ``compare``'s held-out shoppers
(the same seeds and sessions, common random numbers). Several state counts give the data curve.

    .venv/bin/python -m benchmarks.imitation --states 10000,50000 --epochs 8 --seeds 5 --sessions 200

Writes ``benchmarks/results/imitation.{json,md}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

import envs
from agents.baselines import baseline_factory
from agents.factory import AGENT_PRESETS, build_agent
from agents.logging_policy import derive_seed
from agents.pretrain import PretrainConfig, pretrain_scores
from benchmarks.machine import machine_info
from benchmarks.study_io import check_counts, command_footer, parse_numbers, study_command, study_parser, write_study
from experiments.evaluate import evaluate_agents, make_env, reward_shares

RESULTS = Path(__file__).resolve().parent / "results"
ENV_ID = "ShopRankStatic-v0"


def labelled_states(config: envs.EnvConfig, n_states: int, seed: int
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n_states`` first observations of the static env (training seed stream) and ``profile_oracle``'s values.

    Returns:
        ``(observations {key: (M, ...)}, values float32 (M, K))``: each candidate's expected immediate reward at
        the top slot for the shopper estimated from the observation (``privileged_scores(observable=True)``),
        0 for padding.
    """
    env = make_env(ENV_ID, config)
    rows, values = [], []
    for i in range(n_states):
        obs, _ = env.reset(seed=derive_seed(seed, i, stream=1))
        rows.append(obs)
        scores = np.asarray(env.unwrapped.privileged_scores(observable=True), dtype=np.float64)
        values.append(np.where(obs["mask"] > 0, np.maximum(scores, 0.0), 0.0))
    env.close()
    return {key: np.stack([o[key] for o in rows]) for key in rows[0]}, np.stack(values).astype(np.float32)


def fit_imitation(config: envs.EnvConfig, observations: dict[str, np.ndarray], values: np.ndarray, epochs: int,
                  seed: int):
    """The ``ppo`` preset's model with its scores fitted to ``values`` (Poisson, log link; every candidate shown
    in a random slot order so that the per-slot biases carry no ranking). Returns ``(model, losses)``."""
    model = build_agent("ppo", config, AGENT_PRESETS["ppo"].config, seed, env_id=ENV_ID)
    rng = np.random.default_rng(seed)
    k = values.shape[1]
    shown = np.argsort(rng.random(values.shape), axis=1)  # a random permutation of the K candidates per state
    target = np.take_along_axis(values, shown, axis=1)
    losses = pretrain_scores(model.policy.pi_features_extractor, k, observations, shown, target,
                             PretrainConfig(sessions=len(values), epochs=epochs), seed)
    return model, losses


def study(state_counts: Sequence[int], epochs: int, seeds: Sequence[int], n_sessions: int,
          config: envs.EnvConfig | None = None, fit_seed: int = 0) -> pd.DataFrame:
    """One row per state count: the imitation's and the retriever's share of ``profile_oracle``'s reward.

    Args:
        state_counts: Labelled states to fit on (each count fits a fresh network; the smaller sets are
            prefixes of the largest).
        epochs: Passes over the states.
        seeds: Evaluation seeds (``compare``'s held-out shoppers).
        n_sessions: Sessions per seed.
        config: The static env's config (default: the registered one).
        fit_seed: Seeds the states, the network's initial weights and the minibatch order.
    """
    config = config or envs.static_config()
    torch.set_num_threads(1)
    started = time.process_time()
    observations, values = labelled_states(config, max(state_counts), fit_seed)
    gather_cpu = time.process_time() - started
    rows = []
    for count in sorted(state_counts):
        started = time.process_time()
        model, losses = fit_imitation(config, {k: v[:count] for k, v in observations.items()}, values[:count],
                                      epochs, fit_seed)
        fit_cpu = time.process_time() - started
        agents = {"profile_oracle": baseline_factory("profile_oracle"), "retriever": baseline_factory("retriever"),
                  "imitation": lambda env, seed, model=model: model}
        df = evaluate_agents(agents, ENV_ID, config=config, seeds=seeds, n_sessions=n_sessions, progress=False)
        shares = reward_shares(df, references=("profile_oracle",)).set_index("agent")
        row = {"states": count, "epochs": epochs, "final_loss": losses[-1], "fit_cpu_s": fit_cpu,
               "gather_cpu_s": gather_cpu * count / max(state_counts)}
        for agent in ("imitation", "retriever"):
            row.update({f"{agent}_share": shares.loc[agent, "share"], f"{agent}_low": shares.loc[agent, "ci95_low"],
                        f"{agent}_high": shares.loc[agent, "ci95_high"]})
        rows.append(row)
        print(f"{count} states: imitation {row['imitation_share']:.1%} of profile_oracle "
              f"[{row['imitation_low']:.1%}, {row['imitation_high']:.1%}]", flush=True)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, meta: dict) -> str:
    """The study as a Markdown table (one row per state count)."""
    lines = ["# Imitation ceiling of the `ppo` network on the default static env", "",
             f"Machine: {meta['machine']['cpu_model']}. The `ppo` preset's network fitted (Poisson, {meta['epochs']} "
             "epochs) to `profile_oracle`'s expected reward of every candidate, then evaluated on "
             f"{meta['seeds']} seeds × {meta['sessions']} held-out sessions (common random numbers). Shares of "
             "`profile_oracle`'s reward: per-seed ratios, Student-t 95% CI.", "",
             "| labelled states | imitation | retriever | final loss | fit CPU-s |", "|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        lines.append(f"| {int(r.states):,} | {r.imitation_share:.1%} [{r.imitation_low:.1%}, {r.imitation_high:.1%}] | "
                     f"{r.retriever_share:.1%} | {r.final_loss:.4f} | {r.fit_cpu_s:.0f} |")
    lines += command_footer(meta)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = study_parser("shoprank bench imitation", __doc__.split("\n\n")[0], RESULTS,
                     sessions_help="held-out sessions per seed")
    p.add_argument("--states", default="10000,50000", help="comma-separated counts of labelled states")
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args(argv)
    counts = parse_numbers(p, args.states, "--states", minimum=1, inclusive=True)
    if any(c != int(c) for c in counts):
        p.error(f"--states must be whole numbers, got {args.states!r}")
    check_counts(p, args, "epochs")
    table = study([int(c) for c in counts], args.epochs, list(range(args.seeds)), args.sessions)
    meta = {"machine": machine_info(), "seeds": args.seeds, "sessions": args.sessions, "epochs": args.epochs,
            "command": study_command("python -m benchmarks.imitation", argv)}
    write_study(args.out, "imitation", meta, table, to_markdown(table, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
