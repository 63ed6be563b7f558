"""ShopRank's error family: what bad input raises, as opposed to a bug.

Every error that a user's input can cause (a config value, a CLI flag, a catalog, a checkpoint, a click
log, a simulator plug-in that breaks its protocol, a missing optional dependency) is a
:class:`ShopRankError`. The ``shoprank`` commands print these as one line,
``shoprank <command>: error: <message>``, with exit status 2 (``SHOPRANK_DEBUG=1`` shows the traceback);
any other exception is a bug in ShopRank and keeps its traceback, with a note asking to report it
(:func:`command_errors`).

Each class also derives from the builtin exception it replaced (``ConfigError`` is a ``ValueError``,
``SimulatorError`` a ``RuntimeError``, ...), so code that catches the builtin keeps working. This module
lives in the lowest package (``encoders``) so every package can raise these errors.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, TypeVar

class ShopRankError(Exception):
    """Bad input: the message says what is wrong and, where it can, how to fix it."""


class ConfigError(ShopRankError, ValueError):
    """A config value, a ``--set`` override, a command-line flag or a plug-in name that is not valid."""


class CatalogError(ShopRankError, ValueError):
    """A catalog (CSV, photos, numbers) that cannot be read; the message names the file, row and column."""


class CheckpointError(ShopRankError, ValueError):
    """A checkpoint folder that is malformed, of another architecture, or asks to run code not allowed."""


class LogSchemaError(ShopRankError, ValueError):
    """A click log that does not follow the schema of :mod:`simulators.logs`."""


class SimulatorError(ShopRankError, RuntimeError):
    """A user simulator that fails or breaks the ``UserSimulator`` protocol (the message names the method)."""


class NoExpectedResponseError(SimulatorError):
    """A feature needs the simulator's true probabilities (``expected_response``) and the simulator has none."""


class InputNotFoundError(ShopRankError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class MissingDependencyError(ShopRankError, ImportError):
    """An optional dependency needed by the requested feature is not installed (the message says how)."""


def debug_requested() -> bool:
    """Whether ``SHOPRANK_DEBUG`` asks for tracebacks (any value but empty, ``0``, ``false``, ``no``)."""
    return os.environ.get("SHOPRANK_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def error_line(command: str, exc: ShopRankError) -> str:
    """``shoprank <command>: error: <message>`` (the message's own lines joined, so it stays one line)."""
    message = " ".join(str(exc).split("\n")).strip() or type(exc).__name__
    return f"shoprank {command}: error: {message}"


F = TypeVar("F", bound=Callable[..., int])


def command_errors(command: str) -> Callable[[F], F]:
    """Decorate a command's ``main(argv) -> int``: a :class:`ShopRankError` prints as :func:`error_line` on
    stderr and returns 2 (re-raised with ``SHOPRANK_DEBUG=1``); any other exception is re-raised with a
    note asking to report the bug (Python prints notes after the traceback)."""

    def wrap(main: F) -> F:
        @functools.wraps(main)
        def wrapped(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except ShopRankError as exc:
                if debug_requested():
                    raise
                print(error_line(command, exc), file=sys.stderr)
                return 2
            except Exception as exc:
                note = bug_note(command, exc)
                if note not in getattr(exc, "__notes__", ()):
                    exc.add_note(note)
                raise

        return wrapped  # type: ignore[return-value]

    return wrap


def bug_note(command: str, exc: BaseException) -> str:
    """The line added to an unexpected exception's traceback."""
    hint = (" (or a file-system problem it did not check for)" if isinstance(exc, OSError) else "")
    return (f"shoprank {command}: this {type(exc).__name__} is a bug in ShopRank{hint}, not a problem with "
            f"your input: please report it (an issue in the project's tracker) with the traceback above.")
