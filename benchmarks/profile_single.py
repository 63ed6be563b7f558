"""Where a single ``ShopRank-v0`` step spends its time: cProfile shares of the step's parts.

``python -m benchmarks.profile_single [--steps 2000]`` steps the unwrapped env with the settings of
``shoprank bench env``'s single-env section (``K = 50``, ``N = 10``, hashing text encoder, random scores,
reset when an episode ends) and prints each part's cumulative time as a share of the loop. Shares, not
times: cProfile's own overhead inflates every call alike, and the machine's load does not change them much.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from typing import Sequence

import numpy as np

PARTS = {
    ("shoprank_env.py", "step"): "ShopRankEnv.step (all of a step)",
    ("shoprank_env.py", "reset"): "ShopRankEnv.reset (new session, its first observation)",
    ("shoprank_env.py", "_positions"): "slate from scores",
    ("shoppers.py", "respond"): "shopper response and transition (draws, one compiled call)",
    ("shoppers.py", "transition"): "shopper transition (commit, stay-or-leave draws)",
    ("kernels.py", "settle_slates"): "reward, NDCG, counters and click history (one compiled call)",
    ("shoppers.py", "restart"): "new shopper (draws, one compiled call)",
    ("core.py", "next_queries"): "next query (intent, retrieval row)",
    ("core.py", "observation"): "observation",
}
"""``(file name, function)`` -> label of the parts reported."""


def profile_shares(steps: int = 2000) -> dict[str, float]:
    """``label -> share`` of the loop's time for each of :data:`PARTS` (the loop is 1.0)."""
    import gymnasium as gym

    import envs  # noqa: F401
    from benchmarks.bench_env import EnvBenchConfig, _env_config, _step_loop

    env = gym.make("ShopRank-v0", config=_env_config(EnvBenchConfig())).unwrapped
    env.reset(seed=0)
    actions = np.random.default_rng(0).random((512, env.action_space.shape[0])).astype(np.float32)
    _step_loop(env, actions, 200)()  # warm up
    loop = _step_loop(env, actions, steps)
    prof = cProfile.Profile()
    prof.enable()
    loop()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = next(v[3] for (f, _, fn), v in stats.items() if fn == "run" and f.endswith("bench_env.py"))
    shares = {}
    for (path, _, fn), value in stats.items():
        label = PARTS.get((path.rsplit("/", 1)[-1], fn))
        if label is not None:
            shares[label] = shares.get(label, 0.0) + value[3] / total
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="profile_single", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps profiled")
    args = parser.parse_args(argv)
    for label, share in profile_shares(args.steps).items():
        print(f"{share:6.1%}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
