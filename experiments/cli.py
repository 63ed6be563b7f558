"""The ``shoprank`` command: one entry point, one sub-command per job.

Each sub-command lives in its own module with a ``main(argv) -> int``; this file only dispatches
(imports are lazy, so ``shoprank catalog`` does not load torch).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("experiments.demo", "the main job: short train + compare on the built-in catalog"),
    "train": ("experiments.train", "train one RL agent (TensorBoard, checkpoint)"),
    "evaluate": ("experiments.evaluate_cli", "evaluate one saved agent"),
    "compare": ("experiments.compare", "agents x seeds x sessions with 95% CIs"),
    "report": ("experiments.report", "plots and Markdown report of a run folder"),
    "bench": ("experiments.bench_cli", "speed and scale benchmarks"),
    "catalog": ("experiments.catalog_cli", "generate / validate / describe a catalog"),
    "encode": ("experiments.encode_cli", "build and cache all product vectors"),
    "eval-retrieval": ("experiments.retrieval_eval", "retrieval quality of each modality and fusion"),
    "fidelity": ("simulators.fidelity_cli", "fit click models to logs and report their fidelity"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: shoprank <command> [options]   (shoprank <command> --help for details)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"shoprank: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
