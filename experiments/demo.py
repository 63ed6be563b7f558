"""``shoprank demo``: the main job on the built-in catalog, in one command.

Trains PPO on ``ShopRankStatic-v0`` (one query per episode) for each of 3 seeds — its candidate scores
warm-started on 20,000 logged sessions of a random ranking, then trained online on expected rewards (the
``ppo`` preset of ``agents.factory.AGENT_PRESETS`` with a smaller warm start than its 100,000 sessions, to
keep the demo short) — then compares it with the random, retriever-order, LambdaMART, observation-only oracle and
privileged myopic-oracle baselines on the same held-out shoppers (common random numbers), and writes the
report. Equivalent to::

    shoprank compare --agents random,retriever,lambdamart,profile_oracle,oracle,ppo --seeds 3 --sessions 300 \\
        --env ShopRankStatic-v0 --train-steps 10000 --curve-points 4 --set agent.pretrain_sessions=20000 --out runs/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments import compare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoprank demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="report folder (default runs/demo)")
    parser.add_argument("--train-steps", type=int, default=10_000, help="online PPO timesteps per seed")
    parser.add_argument("--seeds", default="3", help="seed count or list")
    parser.add_argument("--sessions", type=int, default=300, help="evaluation sessions per seed")
    parser.add_argument("--pretrain-sessions", type=int, default=20_000,
                        help="logged sessions PPO's scores are warm-started on (the ppo preset uses 100,000)")
    args = parser.parse_args(argv)
    code = compare.main(["--agents", "random,retriever,lambdamart,profile_oracle,oracle,ppo",
                         "--seeds", str(args.seeds), "--sessions", str(args.sessions), "--env", "ShopRankStatic-v0",
                         "--train-steps", str(args.train_steps), "--curve-points", "4",
                         "--set", f"agent.pretrain_sessions={args.pretrain_sessions}", "--out", str(args.out),
                         "--overwrite"])  # a finished demo is replaced; a killed one resumes
    print(f"\nreport: {args.out / 'summary.md'} (table), {args.out / 'metrics.png'} (plot)\n"
          f"TensorBoard: tensorboard --logdir {args.out / 'train'}")
    return code
