"""``shoprank bench``: the speed and scale benchmarks in ``benchmarks/`` (run from a source checkout).

``shoprank bench env [--quick]`` — single env vs CartPole, vector env, PPO throughput, encoding;
``shoprank bench retrieval [--quick]`` — faiss indexes at 10k / 100k / 1M products;
``shoprank bench recovery`` — click-model parameter recovery;
``shoprank bench ceiling`` — the observable ceiling (share of the privileged oracle any observation-only
ranker can reach, per profile noise);
``shoprank bench imitation`` — can the ``ppo`` network rank like ``profile_oracle`` when fitted to its expected
rewards (no label noise): the share of ``profile_oracle`` within the network's and the observation's reach;
``shoprank bench lookahead`` — does the session env reward looking ahead (myopic oracle vs purchase-averse
lookahead oracles);
``shoprank bench train [--quick]`` — PPO training throughput of the from-scratch agent vs SB3 PPO on CartPole
(same settings, same run) and vs the previous release's agent;
``shoprank bench ope [--quick]`` — off-policy estimators against the true value of target policies in the
simulator (bias, RMSE, CI coverage at n = 1k / 10k / 100k logged sessions);
``shoprank bench rllib [--quick]`` — RLlib scale-out: env steps/s per env runner and learner updates/s for 1 and
2 env runners x batches 1, 16, 256 (needs the ``distributed`` extra);
``shoprank bench distill [--quick]`` — distilled students (MLP, linear) vs their PPO teacher: reward share (5 seeds)
and per-query latency at batch 1 and 256, side by side;
``shoprank bench reward-front`` — clicks vs revenue per session of the reward-optimising rankers under several
``RewardSpec`` weightings (a Pareto front, plotted to ``docs/figures/reward_front.png``);
no argument runs env and retrieval.
Results land in ``benchmarks/results/`` as JSON + Markdown.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SUITES = {"env": "benchmarks.bench_env", "retrieval": "benchmarks.bench_retrieval", "recovery": "benchmarks.recovery",
          "ceiling": "benchmarks.ceiling", "imitation": "benchmarks.imitation", "lookahead": "benchmarks.lookahead", "ope": "benchmarks.bench_ope",
          "train": "benchmarks.bench_train", "rllib": "benchmarks.bench_rllib",
          "distill": "benchmarks.bench_distill", "reward-front": "benchmarks.reward_front"}


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks").is_dir():
        print("shoprank bench: error: the benchmarks/ folder is not next to this installation; run it from a source "
              "checkout (git clone ... && make bench).", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and not argv[0].startswith("-") and argv[0] not in SUITES:
        print(f"shoprank bench: error: unknown suite {argv[0]!r}; choose one of {sorted(SUITES)} "
              "(no suite: env and retrieval).", file=sys.stderr)
        return 2
    names = [argv.pop(0)] if argv and argv[0] in SUITES else ["env", "retrieval"]
    code = 0
    for name in names:
        module = importlib.import_module(SUITES[name])
        code = max(code, int(module.main(argv) or 0))
    return code
