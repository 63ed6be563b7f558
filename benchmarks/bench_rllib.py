"""RLlib scale-out throughput: env steps/s per env runner and learner updates/s, by env runners and batch.

``shoprank bench rllib [--quick]`` (or ``python -m benchmarks.bench_rllib``; needs the ``distributed`` extra)
trains ShopRank's PPO agent (:data:`experiments.rllib_backend.RLLIB_AGENT`, the RLlib module around the SB3
policy) on ``ShopRankStatic-v0`` with the built-in catalog, on one local Ray instance, for every cell of
``num_env_runners`` in (1, 2) x ``num_envs_per_env_runner`` (the batch each runner steps at once in one
:class:`~envs.vector_env.ShopRankVectorEnv`) in (1, 16, 256). Per cell:

* **env steps/s per env runner**: every runner samples ``sample_steps`` env steps at once
  (``EnvRunner.sample``: module forward, Plackett-Luce draw, vector-env step), timed inside the runner
  (wall clock, and CPU time of the runner's process);
  one untimed call first (reset, first forward), then the median of ``repeats`` timed calls;
* **learner updates/s**: ``iterations`` PPO iterations (``algo.train()``: sample ``train_batch_size``
  steps, ``n_epochs`` passes of minibatches of ``batch_size``, weight sync); each call of the learner
  group's ``update`` is timed, wall and CPU time of this process, where the local learner runs
  (``num_epochs x ceil(train_batch / minibatch)`` gradient steps per call),
  median over the iterations after the first (which includes warm-up); the whole iteration's env steps/s beside it.

Ratios are against the 1-runner, batch-1 cell of the same run. On a 2-core machine two runners share the
cores with the driver, so the 2-runner rows show contention more than scale-out. Writes
``benchmarks/results/rllib.{json,md}`` (``rllib_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from benchmarks.machine import machine_info
from benchmarks.study_io import write_report

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class RllibBenchConfig:
    """What to time.

    Attributes:
        runners: ``num_env_runners`` values.
        batches: ``num_envs_per_env_runner`` values.
        sample_steps: Env steps per timed ``sample`` call of one runner (at least two vector steps).
        repeats: Timed ``sample`` calls per runner.
        train_batch_size: Env steps per PPO iteration.
        iterations: PPO iterations per cell (the first is not timed).
        num_cpus: CPUs of the local Ray instance.
    """

    runners: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 16, 256)
    sample_steps: int = 256
    repeats: int = 2
    train_batch_size: int = 512
    iterations: int = 2
    num_cpus: int = 2


def _sample_timed(steps: int):
    """A function for ``foreach_env_runner``: ``(env steps, wall seconds, CPU seconds of the runner process)``
    of one ``sample`` call in the runner."""
    def run(runner) -> tuple[int, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        episodes = runner.sample(num_timesteps=steps, explore=True)
        return sum(len(e) for e in episodes), time.perf_counter() - t0, time.process_time() - c0
    return run


def bench_cell(env_dict: dict, runners: int, batch: int, cfg: RllibBenchConfig, agent, log=print) -> dict[str, Any]:
    """Build one RLlib PPO algorithm with ``runners`` x ``batch`` and time sampling and learning."""
    from experiments.rllib_backend import RllibConfig, env_runner_nodes, ppo_config

    config = RllibConfig(agent=agent, train_batch_size=cfg.train_batch_size, num_envs_per_env_runner=batch)
    t0 = time.perf_counter()
    algo = ppo_config(env_dict, runners, config).build_algo()
    build_s = time.perf_counter() - t0
    try:
        steps = max(cfg.sample_steps, 2 * batch)
        group = algo.env_runner_group
        group.foreach_env_runner(_sample_timed(steps), local_env_runner=False)  # warm-up: reset, first forward
        per_runner: list[float] = []
        per_runner_cpu: list[float] = []
        for _ in range(cfg.repeats):
            results = group.foreach_env_runner(_sample_timed(steps), local_env_runner=False)
            per_runner.append(statistics.mean(n / s for n, s, _ in results))
            per_runner_cpu.append(statistics.mean(n / max(c, 1e-9) for n, _, c in results))
        update_s: list[float] = []
        update_cpu: list[float] = []
        learner = algo.learner_group  # local (num_learners=0): it runs in this process, so its CPU time is ours
        original = learner.update

        def timed_update(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            out = original(*args, **kwargs)
            update_s.append(time.perf_counter() - t)
            update_cpu.append(time.process_time() - c)
            return out

        learner.update = timed_update
        iteration_rates = []
        for _ in range(cfg.iterations):
            t = time.perf_counter()
            result = algo.train()
            sampled = float(result["env_runners"]["num_env_steps_sampled"])
            iteration_rates.append(sampled / (time.perf_counter() - t))
        learner.update = original
        nodes = env_runner_nodes(algo)
    finally:
        algo.stop()
    updates_per_call = agent.n_epochs * math.ceil(cfg.train_batch_size / agent.batch_size)
    row = {"env_runners": runners, "batch": batch, "build_s": build_s, "sample_steps": steps,
           "env_steps_per_s_per_runner": statistics.median(per_runner),
           "env_steps_per_s_per_runner_all": per_runner,
           "env_steps_per_cpu_s_per_runner": statistics.median(per_runner_cpu),
           "learner_updates_per_s": updates_per_call / statistics.median(update_s[1:] or update_s),
           "learner_updates_per_cpu_s": updates_per_call / statistics.median(update_cpu[1:] or update_cpu),
           "learner_update_s_all": update_s, "updates_per_iteration": updates_per_call,
           "train_env_steps_per_s": statistics.median(iteration_rates[1:] or iteration_rates),
           "nodes": len(set(nodes))}
    log(f"[rllib] {runners} runner(s) x batch {batch}: {row['env_steps_per_s_per_runner']:,.0f} env steps/s per "
        f"runner, {row['learner_updates_per_s']:.1f} learner updates/s, {row['train_env_steps_per_s']:,.0f} "
        f"train env steps/s (build {build_s:.0f}s)")
    return row


def run(cfg: RllibBenchConfig, log=print) -> dict[str, Any]:
    """Every cell on one local Ray instance (shut down at the end)."""
    import ray
    import torch

    import envs
    from envs.config import config_to_dict
    from experiments.rllib_backend import RLLIB_AGENT, _start_ray, register

    env_dict = config_to_dict(envs.static_config())
    started = _start_ray(ray, None, cfg.num_cpus)
    try:
        register()
        rows = [bench_cell(env_dict, r, b, cfg, RLLIB_AGENT, log) for r in cfg.runners for b in cfg.batches]
    finally:
        if started:
            ray.shutdown()
    base = rows[0]
    for row in rows:
        row["sampling_vs_first"] = row["env_steps_per_s_per_runner"] / base["env_steps_per_s_per_runner"]
        row["sampling_cpu_vs_first"] = (row["env_steps_per_cpu_s_per_runner"]
                                        / base["env_steps_per_cpu_s_per_runner"])
        row["train_vs_first"] = row["train_env_steps_per_s"] / base["train_env_steps_per_s"]
    return {"machine": machine_info(torch=torch.__version__, ray=ray.__version__), "config": asdict(cfg),
            "agent": asdict(RLLIB_AGENT), "rows": rows}


def to_markdown(report: dict) -> str:
    c, a = report["config"], report["agent"]
    first = report["rows"][0]
    lines = ["# RLlib scale-out throughput (`shoprank bench rllib`)", "",
             f"ShopRank's PPO agent as an RLlib module on `ShopRankStatic-v0`, one local Ray instance with "
             f"{c['num_cpus']} CPUs. Sampling: {c['sample_steps']} env steps per runner per call (at least two "
             f"vector steps), median of {c['repeats']} calls, timed inside each runner. Learning: "
             f"train batch {c['train_batch_size']}, minibatch {a['batch_size']}, {a['n_epochs']} epochs "
             f"({first['updates_per_iteration']} gradient steps per iteration), median over the "
             f"{c['iterations'] - 1} iteration(s) after the first. Ratios vs the {first['env_runners']}-runner, batch-{first['batch']} cell.", "",
             "Per CPU-second: of the runner's process (sampling) and of the driver, where the learner runs "
             "(learning); other processes on a shared machine do not deflate these, unlike the wall-clock rates.",
             "",
             "| env runners | batch (envs per runner) | env steps/s per runner (wall) | env steps per CPU-s per runner "
             "| vs first (CPU) | learner updates/s (wall) | learner updates per CPU-s | train env steps/s (wall) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['env_runners']} | {r['batch']} | {r['env_steps_per_s_per_runner']:,.0f} | "
                     f"{r['env_steps_per_cpu_s_per_runner']:,.0f} | {r['sampling_cpu_vs_first']:.1f}× | "
                     f"{r['learner_updates_per_s']:.1f} | {r['learner_updates_per_cpu_s']:.1f} | "
                     f"{r['train_env_steps_per_s']:,.0f} |")
    m = report["machine"]
    lines += ["", f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs, load average {m['load_average_1min']} "
              f"(shared: other processes ran beside it), Ray {m['ray']}, torch {m['torch']}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoprank bench rllib", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batches 1 and 16 only, 1 timed sample call of 64 steps")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    args = parser.parse_args(argv)
    try:
        from experiments.rllib_backend import _import_ray

        _import_ray()
    except ImportError as exc:
        print(f"shoprank bench rllib: error: {exc}", file=sys.stderr)
        return 2
    cfg = replace(RllibBenchConfig(), repeats=1, sample_steps=64, batches=(1, 16)) if args.quick else RllibBenchConfig()
    report = run(cfg)
    write_report(args.out, "rllib_quick" if args.quick else "rllib", report, to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
