"""``shoprank bench ope``: off-policy estimators checked against ground truth inside the simulator.

In ``ShopRankStatic-v0`` (built-in catalog, one query per session, K = 20 candidates, N = 10 slots):

1. a stochastic **logging policy**, Plackett-Luce over the retriever's ranks (logits ``-rank / T``), logs
   ``max(sizes)`` sessions per seed (clicks per slot);
2. every estimator scores each **target policy** on the logged contexts: the retriever's order,
   LambdaMART (trained on 1,000 sessions of random rankings, as ``shoprank compare`` does) and a
   Plackett-Luce target over LambdaMART's ranks;
3. the **truth** is each target's mean clicks per session run on-policy in the same env
   (``BenchConfig.truth_sessions`` sessions, standard error reported).

A seed's log of ``max(sizes)`` sessions is cut into disjoint blocks of ``n`` sessions for each size ``n``
(at most ``BenchConfig.max_blocks``), so smaller sizes get many independent replicates. The bootstrap
resamples of a block are drawn once and shared by every (target, estimator) pair on it
(:meth:`Bootstrap.shared`), so the intervals cost one draw per block, not one per estimate. Reported per (size,
target, estimator): bias, RMSE and relative RMSE against the truth, the share of 95% bootstrap intervals
that contain the truth (coverage) and the mean effective sample size.

Usage::

    python -m benchmarks.bench_ope            # default: 10 seeds, n in {1k, 10k, 100k}
    python -m benchmarks.bench_ope --quick    # a smoke run

Cost: the targets' scores (LightGBM included) are computed once per logged batch while logging
(:func:`experiments.ope.simulate.collect`); the default run takes about 9 minutes of CPU (one process).

Writes ``benchmarks/results/ope.json`` and ``ope.md`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.ope.core import Bootstrap
from experiments.ope.estimators import standard_estimators
from experiments.ope.simulate import (
    DeterministicRanker,
    RankPlackettLuce,
    collect,
    make_env,
    on_policy_value,
    pilot_reward_table,
    retriever_scores,
    slate_size,
)
from experiments.ope.slate import slate_estimators

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one run.

    Attributes:
        seeds: Logging seeds.
        sizes: Logged sessions per estimate.
        truth_sessions: On-policy sessions per target for the true value.
        pilot_sessions: Sessions of the pilot log the reward model is fitted on.
        lambdamart_sessions: Random-ranking sessions LambdaMART is trained on.
        logging_temperature: ``T`` of the logging PL over retriever ranks.
        target_temperature: ``T`` of the PL target over LambdaMART's ranks.
        n_bootstrap: Bootstrap resamples per interval.
        max_blocks: Disjoint blocks per (seed, size) at most.
        batch: Sessions stepped at once.
    """

    seeds: tuple[int, ...] = tuple(range(10))
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    truth_sessions: int = 50_000
    pilot_sessions: int = 20_000
    lambdamart_sessions: int = 1_000
    logging_temperature: float = 3.0
    target_temperature: float = 1.0
    n_bootstrap: int = 200
    max_blocks: int = 40
    batch: int = 5_000


QUICK = BenchConfig(seeds=(0, 1), sizes=(1_000, 10_000), truth_sessions=10_000, pilot_sessions=5_000,
                    lambdamart_sessions=300, max_blocks=10, n_bootstrap=100)


def lambdamart_scorer(agent):
    """Batched LambdaMART scores: one ``booster.predict`` per batch over every candidate's features."""
    from agents.baselines import candidate_features

    def score(obs) -> np.ndarray:
        b, k = np.asarray(obs["mask"]).shape
        feats = np.concatenate([candidate_features({key: v[i] for key, v in obs.items()}) for i in range(b)])
        return np.asarray(agent.booster.predict(feats), dtype=np.float64).reshape(b, k)

    return _last_call_cache(score)


def _last_call_cache(fn):
    """Remember the result for the last observation object (policies score the same batch several times)."""
    memo: dict[str, object] = {"obs": None, "out": None}

    def cached(obs):
        if memo["obs"] is not obs:
            memo["obs"], memo["out"] = obs, fn(obs)
        return memo["out"]

    return cached


def build_policies(cfg: BenchConfig):
    """``(logging, targets)``."""
    import gymnasium as gym

    import envs  # noqa: F401
    from agents.baselines import LambdaMARTBaseline

    single = gym.make("ShopRankStatic-v0")
    lm = LambdaMARTBaseline.fit(single, n_sessions=cfg.lambdamart_sessions, seed=0)
    lm_scores = lambdamart_scorer(lm)
    logging = RankPlackettLuce(f"PL over retriever ranks (T={cfg.logging_temperature:g})", retriever_scores,
                               cfg.logging_temperature)
    targets = [DeterministicRanker("retriever", retriever_scores), DeterministicRanker("lambdamart", lm_scores),
               RankPlackettLuce(f"PL over lambdamart ranks (T={cfg.target_temperature:g})", lm_scores,
                                cfg.target_temperature)]
    return logging, targets


def run(cfg: BenchConfig, progress: bool = True) -> dict:
    """Run the benchmark; returns the JSON-able results."""
    t0 = time.perf_counter()
    env = make_env(cfg.batch)
    n_slots = slate_size(env)
    logging, targets = build_policies(cfg)
    truth = {}
    for i, t in enumerate(targets):
        mean, se = on_policy_value(env, t, cfg.truth_sessions, seed=10_000 + i)
        truth[t.name] = {"value": mean, "se": se}
        if progress:
            print(f"truth {t.name}: {mean:.4f} clicks/session (se {se:.4f})", flush=True)
    table = pilot_reward_table(env, logging, cfg.pilot_sessions, seed=20_000)
    bandit, slate = standard_estimators(), slate_estimators()
    boot = Bootstrap(cfg.n_bootstrap)
    rows = []
    for seed in cfg.seeds:
        log = collect(env, logging, targets, max(cfg.sizes), seed, table)
        rng = np.random.default_rng([seed, 7])
        for n in cfg.sizes:
            for block in range(min(max(cfg.sizes) // n, cfg.max_blocks)):
                sl = slice(block * n, (block + 1) * n)
                shared = boot.shared(n, rng)  # one draw of sessions for every (target, estimator) of the block
                for t in targets:
                    bdata = log.bandit_data(t.name, sl)
                    results = [(r, n_slots) for r in (e.estimate(bdata, rng, shared) for e in bandit)]
                    sdata = log.slate_data(t.name, sl)
                    results += [(e.estimate(sdata, rng, shared), 1) for e in slate]
                    for r, scale in results:
                        rows.append({"seed": seed, "n": n, "block": block, "target": t.name, "estimator": r.estimator,
                                     "estimate": r.estimate * scale, "ci_low": r.ci_low * scale,
                                     "ci_high": r.ci_high * scale, "ess": r.ess})
        if progress:
            print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"config": cfg.__dict__, "logging_policy": logging.name, "slate_size": n_slots, "truth": truth,
            "summary": summarise_rows(rows, truth), "seconds": time.perf_counter() - t0, "rows": rows}


def summarise_rows(rows: list[dict], truth: dict) -> list[dict]:
    """Bias, RMSE, relative RMSE, coverage and mean ESS per (n, target, estimator)."""
    keys = sorted(dict.fromkeys((r["n"], r["target"], r["estimator"]) for r in rows), key=lambda k: k[0])
    out = []
    for n, target, est in keys:
        sel = [r for r in rows if (r["n"], r["target"], r["estimator"]) == (n, target, est)]
        v = truth[target]["value"]
        e = np.array([r["estimate"] for r in sel])
        cover = np.mean([r["ci_low"] <= v <= r["ci_high"] for r in sel])
        rmse = float(np.sqrt(np.mean((e - v) ** 2)))
        out.append({"n": n, "target": target, "estimator": est, "replicates": len(sel), "truth": v,
                    "mean_estimate": float(e.mean()), "bias": float(e.mean() - v), "rmse": rmse,
                    "relative_rmse": rmse / abs(v) if v else float("nan"), "coverage": float(cover),
                    "mean_ess": float(np.mean([r["ess"] for r in sel]))})
    return out


def to_markdown(res: dict) -> str:
    """The summary as Markdown tables, one per size."""
    lines = [f"# OPE against ground truth (ShopRankStatic-v0, slate of {res['slate_size']})", "",
             f"Logging policy: {res['logging_policy']}. Value = clicks per session. "
             f"Seeds {list(res['config']['seeds'])}; {res['seconds']:.0f} s.", "",
             "| target | true value (se) |", "|---|---|"]
    lines += [f"| {k} | {v['value']:.4f} ({v['se']:.4f}) |" for k, v in res["truth"].items()]
    for n in res["config"]["sizes"]:
        lines += ["", f"## n = {n:,} logged sessions", "",
                  "| target | estimator | reps | mean estimate | bias | RMSE | rel. RMSE | 95% CI coverage | mean ESS |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in (s for s in res["summary"] if s["n"] == n):
            lines.append(f"| {s['target']} | {s['estimator']} | {s['replicates']} | {s['mean_estimate']:.4f} | "
                         f"{s['bias']:+.4f} | {s['rmse']:.4f} | {100 * s['relative_rmse']:.1f}% | "
                         f"{100 * s['coverage']:.0f}% | {s['mean_ess']:.0f} |")
    lines += ["", "Per-slot estimators (DM ... Switch-DR) treat each (session, slot) as a round with the logged "
              "candidate's marginal propensity at its slot (ESS over rows); the bootstrap resamples sessions. "
              "Reproduce: `shoprank bench ope`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shoprank bench ope", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, n in {1k, 10k}, smaller truth runs")
    p.add_argument("--seeds", type=int, nargs="+", help="logging seeds (default 0 ... 9)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else BenchConfig()
    if args.seeds:
        cfg = BenchConfig(**{**cfg.__dict__, "seeds": tuple(args.seeds)})
    res = run(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "ope_quick" if args.quick else "ope"
    (args.out / f"{name}.json").write_text(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1))
    md = to_markdown(res)
    (args.out / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
