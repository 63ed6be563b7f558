"""Atomic files: each file a reader sees is complete, never a prefix left by a killed writer.

A file is written under a temporary name in its own folder (marked with :data:`TMP_MARK`), flushed to
disk, and renamed onto its final name with ``os.replace`` (atomic on POSIX). A writer killed at any
moment leaves the old file (or none) and, at worst, a temporary file that nothing reads. Used by the
embedding cache, run folders (``experiments.run_folder``) and every command that writes results; it
lives in the lowest package so each package can use it.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"
"""Marks the temporary names of files and staging folders being written (never read as results)."""


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk where the OS allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (writers such as matplotlib pick the format from it). On an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}-{time.monotonic_ns()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
