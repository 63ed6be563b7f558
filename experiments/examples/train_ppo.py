"""Train PPO on ShopRankStatic-v0 and compare it with baselines, top to bottom (CleanRL-style).

Run: ``python -m experiments.examples.train_ppo --steps 30000 --seeds 3 --sessions 300``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

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
    out: Path = Path("runs/example")
    """Where TensorBoard events and checkpoints go."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name, default in vars(Args()).items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    args = Args(**vars(parser.parse_args()))

    # 1. the environment: the built-in catalog, one query per episode
    env_config = static_config()
    # PPO whose candidate scores are first fitted to 100k logged sessions of a random ranking (each shown
    # product's clicks, purchases and revenue; the "ppo" preset, ~3 min); AGENT_PRESETS["ppo_scratch"] is
    # the same without the warm start
    preset = AGENT_PRESETS["ppo"]

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
    print(markdown_table(summarize(sessions), metrics=["reward", "clicks", "purchases", "ndcg"]))


if __name__ == "__main__":
    main()
