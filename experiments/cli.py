"""The ``shoprank`` command: one entry point, one sub-command per job.

Each sub-command lives in its own module with a ``main(argv) -> int``; this file dispatches (imports are
lazy, so ``shoprank catalog`` does not load torch) and turns the errors that bad input causes deep inside
a job (a malformed catalog or checkpoint, a broken simulator plug-in, a bad config value met while
building the world) into one line, ``shoprank <command>: error: <message>``, and exit status 2.
``SHOPRANK_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys

#: What bad input raises: ValueError covers CatalogError, JSON and Unicode decoding errors and the
#: configs' own checks; OSError missing or unwritable paths; SimulatorError a user simulator that breaks
#: its protocol; ImportError / SyntaxError a plug-in that does not import; UnpicklingError a corrupt
#: weights file. Anything else (a bug) keeps its traceback.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError, SyntaxError,
                                                 pickle.UnpicklingError)


def is_input_error(exc: BaseException) -> bool:
    """Whether ``exc`` is what bad input raises (:data:`INPUT_ERRORS` or the env's ``SimulatorError``)."""
    if isinstance(exc, INPUT_ERRORS):
        return True
    session = sys.modules.get("envs.session")  # SimulatorError exists only once the env module is loaded
    return session is not None and isinstance(exc, session.SimulatorError)

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
    try:
        return int(module.main(rest) or 0)
    except Exception as exc:
        if not is_input_error(exc) or os.environ.get("SHOPRANK_DEBUG", "").lower() not in ("", "0", "false", "no"):
            raise
        print(f"shoprank {name}: error: {_describe(exc)}\n(SHOPRANK_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


def _describe(exc: BaseException) -> str:
    """``exc``'s message, prefixed with its type where the message alone would not say what went wrong."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (ImportError, SyntaxError, pickle.UnpicklingError, UnicodeDecodeError)) or not str(exc):
        return f"{type(exc).__name__}: {message}"
    return message


if __name__ == "__main__":
    raise SystemExit(main())
