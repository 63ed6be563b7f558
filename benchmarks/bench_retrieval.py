"""Retrieval benchmark: exact vs approximate faiss indexes at 10k, 100k and 1M products.

Catalog vectors are clustered (:mod:`encoders.large_catalog`, a two-level mixture of Gaussians on the unit
sphere, ``d = 64`` by default), queries are held-out draws from the same mixture. For every catalog size
and index kind it measures, in one run and on one machine:

* build time (train + add, one build, seconds);
* index memory (``FaissRetriever.memory_bytes``) and its ratio to the raw ``float32`` vectors;
* recall@k against the exact index (mean over queries of ``|approx top-k ∩ exact top-k| / k``);
* QPS at batch 1 (queries one at a time) and at batch 256: the median of ``--repeats`` timed repetitions,
  and its ratio to the exact index's QPS measured in the same run.

Each approximate index is first tuned on a second, separate query set: its search knob (IVF ``nprobe``,
HNSW ``efSearch``) is swept upwards and the smallest value reaching ``recall@k >= 0.96`` is kept (the
largest swept value if none reaches it); the sweep is reported too. faiss runs on one thread by default
(per-core figures; ``--threads``). Targets checked at the largest size: recall@100 >= 0.95,
>= 10x exact's QPS (at both batch sizes), index memory <= 1.5x the raw vectors.

Run::

    python -m benchmarks.bench_retrieval            # 10k, 100k, 1M: several minutes on 2 cores
    python -m benchmarks.bench_retrieval --quick    # 10k and 100k only

Results go to ``benchmarks/results/retrieval.{json,md}`` (``retrieval_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from benchmarks.machine import machine_info as base_machine_info
from encoders.atomic_files import atomic_write_text

from encoders.large_catalog import ClusteredVectorsConfig, generate_clustered_vectors, sample_clustered_queries
from encoders.retriever import FaissRetriever, IndexConfig, faiss_threads

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Index variants benchmarked (name -> build settings); "flat" is the exact baseline.
INDEXES: dict[str, IndexConfig] = {
    "flat": IndexConfig(kind="flat"),
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=32, ef_construction=80),
    "hnsw_sq8": IndexConfig(kind="hnsw_sq8", hnsw_m=32, ef_construction=80),
    "ivf_flat": IndexConfig(kind="ivf_flat"),
    "ivf_sq8": IndexConfig(kind="ivf_sq8"),
    "ivf_pq": IndexConfig(kind="ivf_pq", pq_m=16, refine_factor=4),
}
DEFAULT_INDEXES = ("flat", "hnsw", "hnsw_sq8", "ivf_flat", "ivf_sq8")
NPROBE_SWEEP = (4, 8, 16, 32, 64, 128, 256)
EF_SWEEP = (128, 192, 256, 384, 512)


@dataclass(frozen=True)
class RetrievalBenchConfig:
    """Settings of the retrieval benchmark.

    Attributes:
        sizes: Catalog sizes (products).
        dim: Vector width ``d``.
        k: Results per query (recall@k).
        n_queries: Held-out queries for recall and for the timed searches.
        repeats: Timed repetitions per measurement; the median is reported.
        batch: The large batch size timed besides batch 1.
        min_time_b1: Seconds each batch-1 repetition runs for at least (at most ``n_queries`` queries).
        indexes: Names from :data:`INDEXES` (``"flat"`` is always included as the baseline).
        recall_target: Recall@k required at the largest size.
        tune_margin: The sweep tunes each approximate index to ``recall_target + tune_margin`` on the tuning
            queries, so that the recall measured on the evaluation queries clears the target.
        qps_target: Speed-up over exact required at the largest size.
        memory_target: Largest index memory / raw vectors allowed at the largest size.
        n_threads: faiss threads (``None``: faiss's default, all cores). Default 1: per-core figures, and
            stable ones on a machine whose cores are shared with other work.
        build_threads: faiss threads while building (``None``: faiss's default, all cores).
        seed: Seed of the catalog and query vectors.
    """

    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    dim: int = 64
    k: int = 100
    n_queries: int = 1000
    repeats: int = 5
    batch: int = 256
    min_time_b1: float = 0.5
    indexes: tuple[str, ...] = DEFAULT_INDEXES
    recall_target: float = 0.95
    tune_margin: float = 0.01
    qps_target: float = 10.0
    memory_target: float = 1.5
    n_threads: int | None = 1
    build_threads: int | None = None
    seed: int = 0


@dataclass
class IndexResult:
    """Measurements of one index on one catalog size (ratios are against ``flat`` in the same run)."""

    n: int
    index: str
    kind: str
    search_param: str
    build_s: float
    memory_bytes: int
    memory_ratio: float
    recall: float
    qps_b1: float
    qps_batch: float
    speedup_b1: float = 1.0
    speedup_batch: float = 1.0
    sweep: list[dict] = field(default_factory=list)


def machine_info() -> dict:
    """CPU count, platform and library versions of this machine."""
    return base_machine_info(faiss_threads=faiss.omp_get_max_threads(), faiss=faiss.__version__)


def recall_at_k(ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of ``|ids ∩ truth| / k`` for ``int (B, k)`` arrays (``-1`` never matches)."""
    k = truth.shape[1]
    hits = [np.intersect1d(a[a >= 0], b, assume_unique=True).size for a, b in zip(ids, truth)]
    return float(np.mean(hits) / k)


def _qps_b1(retriever: FaissRetriever, queries: np.ndarray, k: int, repeats: int, min_time: float) -> float:
    """Median over repeats of queries/s searching one query at a time."""
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while count < len(queries):
            retriever.search(queries[count : count + 1], k)
            count += 1
            if count >= 10 and time.perf_counter() - start >= min_time:
                break
        rates.append(count / (time.perf_counter() - start))
    return float(np.median(rates))


def _qps_batch(retriever: FaissRetriever, queries: np.ndarray, k: int, repeats: int, batch: int) -> float:
    """Median over repeats of queries/s searching ``batch`` queries per call (a different batch each time)."""
    rates = []
    for r in range(repeats):
        start_row = (r * batch) % max(1, len(queries) - batch + 1)
        block = queries[start_row : start_row + batch]
        start = time.perf_counter()
        retriever.search(block, k)
        rates.append(len(block) / (time.perf_counter() - start))
    return float(np.median(rates))


def _tune(retriever: FaissRetriever, queries: np.ndarray, truth: np.ndarray, cfg: RetrievalBenchConfig):
    """Sweep the search knob upwards; keep the smallest value with recall >= target. Returns the sweep."""
    if retriever.kind.startswith("ivf"):
        name, values = "nprobe", [v for v in NPROBE_SWEEP if v <= retriever.nlist]
    elif retriever.kind.startswith("hnsw"):
        name, values = "ef_search", list(EF_SWEEP)
    else:
        return []
    sweep = []
    for value in values:
        retriever.set_search_params(**{name: value})
        start = time.perf_counter()
        ids, _ = retriever.search(queries, cfg.k)
        elapsed = time.perf_counter() - start
        sweep.append({name: value, "recall": recall_at_k(ids, truth), "qps_batch_all": len(queries) / elapsed})
        if sweep[-1]["recall"] >= cfg.recall_target + cfg.tune_margin:
            break
    return sweep


def bench_size(n: int, cfg: RetrievalBenchConfig, log=print) -> list[IndexResult]:
    """Benchmark every configured index on a clustered catalog of ``n`` products."""
    vcfg = ClusteredVectorsConfig(n=n, dim=cfg.dim, seed=cfg.seed)
    t0 = time.perf_counter()
    vectors = generate_clustered_vectors(vcfg)
    queries = sample_clustered_queries(vcfg, cfg.n_queries, seed=cfg.seed + 1)
    tune_queries = sample_clustered_queries(vcfg, cfg.n_queries, seed=cfg.seed + 2)
    log(f"[n={n:,}] generated {n:,} x {cfg.dim} clustered vectors in {time.perf_counter() - t0:.1f} s")
    raw = vectors.nbytes
    results: list[IndexResult] = []
    truth = tune_truth = None
    names = ["flat"] + [name for name in cfg.indexes if name != "flat"]
    for name in names:
        t0 = time.perf_counter()
        retriever = FaissRetriever(vectors, replace(INDEXES[name], n_threads=cfg.build_threads))
        build_s = time.perf_counter() - t0
        retriever.set_search_params(n_threads=cfg.n_threads)
        with faiss_threads(cfg.n_threads):  # also covers set_search_params(n_threads=None)
            retriever.search(queries[:8], cfg.k)  # warm-up
            if truth is None:
                truth, _ = retriever.search(queries, cfg.k)
                tune_truth, _ = retriever.search(tune_queries, cfg.k)
            sweep = _tune(retriever, tune_queries, tune_truth, cfg)
            ids, _ = retriever.search(queries, cfg.k)
            qps_b1 = _qps_b1(retriever, queries, cfg.k, cfg.repeats, cfg.min_time_b1)
            qps_batch = _qps_batch(retriever, queries, cfg.k, cfg.repeats, cfg.batch)
        param = ""
        if retriever.kind.startswith("ivf"):
            param = f"nprobe={retriever.config.nprobe}/{retriever.nlist}"
        elif retriever.kind.startswith("hnsw"):
            param = f"M={retriever.config.hnsw_m},ef={retriever.config.ef_search}"
        if retriever.config.refine_factor and retriever.kind != "flat":
            param += f",refine={retriever.config.refine_factor}"
        memory = retriever.memory_bytes()
        result = IndexResult(
            n=n, index=name, kind=retriever.kind, search_param=param, build_s=build_s, memory_bytes=memory,
            memory_ratio=memory / raw, recall=recall_at_k(ids, truth), qps_b1=qps_b1, qps_batch=qps_batch,
            sweep=sweep,
        )
        if results:
            result.speedup_b1 = result.qps_b1 / results[0].qps_b1
            result.speedup_batch = result.qps_batch / results[0].qps_batch
        results.append(result)
        log(
            f"[n={n:,}] {name:9s} {param:22s} build {build_s:7.2f} s  mem {result.memory_ratio:5.2f}x  "
            f"recall {result.recall:.4f}  QPS b1 {result.qps_b1:9.0f} ({result.speedup_b1:6.1f}x)  "
            f"b{cfg.batch} {result.qps_batch:9.0f} ({result.speedup_batch:6.1f}x)"
        )
        del retriever
    return results


def meets_targets(result: IndexResult, cfg: RetrievalBenchConfig) -> dict[str, bool]:
    """Which of the three targets ``result`` meets."""
    return {
        "recall": result.recall >= cfg.recall_target,
        "qps": min(result.speedup_b1, result.speedup_batch) >= cfg.qps_target,
        "memory": result.memory_ratio <= cfg.memory_target,
    }


def to_markdown(report: dict) -> str:
    """Render a report (as returned by :func:`run`) as Markdown tables."""
    cfg, m = report["config"], report["machine"]
    lines = [
        "# Retrieval benchmark",
        "",
        f"Clustered catalog vectors, d = {cfg['dim']}, k = {cfg['k']}, {cfg['n_queries']} held-out queries; "
        f"QPS = median of {cfg['repeats']} repeats; speed-ups vs the exact `flat` index in the same run. "
        f"Approximate indexes tuned (on separate queries) to the smallest search setting with "
        f"recall@{cfg['k']} >= {cfg['recall_target'] + cfg['tune_margin']:.2f}.",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs ({m['cpu_count']} reported), "
        f"faiss {m['faiss']} (searches on {cfg['n_threads'] or m['faiss_threads']} thread(s), builds on "
        f"{cfg.get('build_threads') or m['faiss_threads']}), {m['platform']}, "
        f"Python {m['python']}."
        + (f" 1-min load average at start: {m['load_average_1min']:.1f} (other work shares the cores)."
           if m.get("load_average_1min") else ""),
        "",
        f"| n | index | search setting | build (s) | memory (MiB) | memory / raw | recall@{cfg['k']} "
        f"| QPS b1 | × exact | QPS b{cfg['batch']} | × exact |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['n']:,} | {r['index']} | {r['search_param'] or '—'} | {r['build_s']:.2f} | "
            f"{r['memory_bytes'] / 2**20:.1f} | {r['memory_ratio']:.2f} | {r['recall']:.4f} | "
            f"{r['qps_b1']:,.0f} | {r['speedup_b1']:.1f} | {r['qps_batch']:,.0f} | {r['speedup_batch']:.1f} |"
        )
    largest = report["targets"]
    lines += [
        "",
        f"## Targets at n = {largest['n']:,}",
        "",
        f"recall@{cfg['k']} >= {cfg['recall_target']}, >= {cfg['qps_target']}x exact's QPS at batch 1 and "
        f"{cfg['batch']}, memory <= {cfg['memory_target']}x raw vectors.",
        "",
        "| index | recall | QPS | memory | all |",
        "|---|:---:|:---:|:---:|:---:|",
    ]
    for name, met in largest["by_index"].items():
        marks = ["yes" if met[key] else "no" for key in ("recall", "qps", "memory")]
        lines.append(f"| {name} | {' | '.join(marks)} | {'**yes**' if all(met.values()) else 'no'} |")
    lines += ["", f"Indexes meeting all three: {', '.join(largest['meeting_all']) or 'none'}.", ""]
    return "\n".join(lines)


def run(cfg: RetrievalBenchConfig, log=print) -> dict:
    """Run the benchmark; returns the JSON-able report."""
    machine = machine_info()
    log(f"machine: {machine}")
    results: list[IndexResult] = []
    for n in cfg.sizes:
        results.extend(bench_size(n, cfg, log))
    largest = max(cfg.sizes)
    by_index = {r.index: meets_targets(r, cfg) for r in results if r.n == largest and r.index != "flat"}
    return {
        "benchmark": "retrieval",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "config": asdict(cfg),
        "results": [asdict(r) for r in results],
        "targets": {
            "n": largest,
            "by_index": by_index,
            "meeting_all": [name for name, met in by_index.items() if all(met.values())],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (also called by ``shoprank bench``). Returns the exit code."""
    parser = argparse.ArgumentParser(prog="bench_retrieval", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k products only")
    parser.add_argument("--sizes", type=int, nargs="+", help="catalog sizes (overrides --quick)")
    parser.add_argument("--dim", type=int, default=RetrievalBenchConfig.dim)
    parser.add_argument("--k", type=int, default=RetrievalBenchConfig.k)
    parser.add_argument("--n-queries", type=int, default=RetrievalBenchConfig.n_queries)
    parser.add_argument("--repeats", type=int, default=RetrievalBenchConfig.repeats)
    parser.add_argument("--indexes", nargs="+", choices=sorted(INDEXES), default=list(DEFAULT_INDEXES))
    parser.add_argument("--threads", type=int, default=RetrievalBenchConfig.n_threads,
                        help="faiss threads (default 1: per-core figures; 0 = faiss's default, all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and Markdown")
    args = parser.parse_args(argv)
    sizes = tuple(args.sizes) if args.sizes else ((10_000, 100_000) if args.quick else RetrievalBenchConfig.sizes)
    cfg = RetrievalBenchConfig(
        sizes=sizes, dim=args.dim, k=args.k, n_queries=args.n_queries, repeats=args.repeats,
        indexes=tuple(args.indexes), n_threads=args.threads or None, seed=args.seed,
    )
    report = run(cfg)
    stem = "retrieval_quick" if args.quick and not args.sizes else "retrieval"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"{stem}.json", json.dumps(report, indent=2))
    markdown = to_markdown(report)
    atomic_write_text(args.out / f"{stem}.md", markdown)
    print()
    print(markdown)
    print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
