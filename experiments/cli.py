"""The ``shoprank`` command: one entry point, one sub-command per job.

Each sub-command lives in its own module with a ``main(argv) -> int``; this file dispatches (imports are
lazy, so ``shoprank catalog`` does not load torch) through one error net
(:func:`encoders.errors.command_errors`): bad input, raised anywhere in a job as a
:class:`~encoders.errors.ShopRankError` (a config value, a malformed catalog or checkpoint, a broken
simulator plug-in), prints as one line ``shoprank <command>: error: <message>`` with exit status 2
(``SHOPRANK_DEBUG=1`` shows the traceback); any other exception is a bug and keeps its traceback, with a
note asking to report it.
"""

from __future__ import annotations

import importlib
import sys

from encoders.errors import command_errors

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("experiments.demo", "the main job: short train + compare on the built-in catalog"),
    "train": ("experiments.train", "train one RL agent (TensorBoard, checkpoint)"),
    "evaluate": ("experiments.evaluate_cli", "evaluate one saved agent"),
    "compare": ("experiments.compare", "agents x seeds x sessions with 95% CIs"),
    "contrast": ("experiments.contrast", "one agent across two compare runs (an ablation), paired on the same shoppers"),
    "report": ("experiments.report", "plots and Markdown report of a run folder"),
    "bench": ("experiments.bench_cli", "speed and scale benchmarks"),
    "catalog": ("experiments.catalog_cli", "generate / validate / describe a catalog"),
    "encode": ("experiments.encode_cli", "build and cache all product vectors"),
    "eval-retrieval": ("experiments.retrieval_eval", "retrieval quality of each modality and fusion"),
    "fidelity": ("simulators.fidelity_cli", "fit click models to logs and report their fidelity"),
    "distill": ("experiments.distill_cli", "distil a trained policy into a small per-candidate scorer"),
    "ope": ("experiments.ope.cli", "off-policy evaluation of an agent on logged feedback (OBD or ShopRank logs)"),
    "explain": ("experiments.explain", "why an agent ranked a slate so: feature-group attributions, attention"),
    "watch": ("experiments.watch", "an agent's sessions as pictures: HTML page (and MP4s with the video extra)"),
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
    return int(command_errors(name)(module.main)(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
