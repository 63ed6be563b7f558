"""Train PPO on ShopRankStatic-v0 and compare it with baselines, top to bottom (CleanRL-style).

Run: ``python -m experiments.examples.train_ppo --steps 20000 --seeds 3 --sessions 300``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

import envs  # noqa: F401  (registers the ShopRank envs)
from agents.baselines import make_baseline
from agents.factory import AGENT_PRESETS, train_agent
from envs import static_config
from experiments.evaluate import evaluate_agents, markdown_table, summarize


@dataclass
class Args:
    steps: int = 20_000
    """PPO timesteps per seed (one query per timestep)."""
    seeds: int = 3
    """Training seeds; each trains its own PPO and evaluates on its own held-out shoppers."""
    sessions: int = 300
    """Evaluation sessions per seed (the same shoppers for every agent)."""
    agent: str = "ppo"
    """A preset of AGENT_PRESETS: "ppo" first fits its scores to 100k logged sessions (~3 min)."""
    out: Path = Path("runs/example")
    """Where TensorBoard events and checkpoints go."""


def main(args: Args) -> pd.DataFrame:
    # 1. the environment: the built-in catalog, one query per episode
    env_config = static_config()
    preset = AGENT_PRESETS[args.agent]

    # 2. one PPO per seed (TensorBoard events under OUT/ppo-seed<k>/tb)
    def ppo(env, seed):
        return train_agent(preset.algo, env_config, args.steps, seed=seed, run_dir=args.out / f"ppo-seed{seed}",
                           config=preset.config)

    # 3. baselines behind the same predict() interface
    agents = {name: (lambda env, seed, name=name: make_baseline(name, env, seed))
              for name in ("random", "retriever", "oracle")}
    agents["ppo"] = ppo

    # 4. common random numbers: every agent meets the same shoppers and queries
    sessions = evaluate_agents(agents, "ShopRankStatic-v0", env_config, seeds=list(range(args.seeds)),
                               n_sessions=args.sessions)
    summary = summarize(sessions)
    print(markdown_table(summary, metrics=["reward", "clicks", "purchases", "ndcg"]))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for field in fields(Args):
        parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
    main(Args(**vars(parser.parse_args())))
