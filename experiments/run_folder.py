"""Crash-safe run folders: atomic writes, one run per folder (a lock), a manifest, resumable cells.

Every command that writes an output folder (``compare``, ``evaluate``, ``train``, ``report``) goes
through a :class:`RunFolder`:

* **Atomic files.** Each file appears complete or not at all: it is written to a temporary name in the
  same folder and renamed into place with ``os.replace`` (:func:`atomic_path`, :func:`atomic_write_text`);
  a report is built in a staging folder and its files renamed in (:meth:`RunFolder.staging`). A run
  killed at any moment (even by SIGKILL) leaves no truncated file behind, only whole files and, at worst,
  a ``.tmp`` name that nothing reads and the next run removes.
* **One run per folder.** ``.lock`` is held with ``fcntl.flock`` for the run's lifetime and holds the
  owner's pid; a second run on the same folder stops with an error naming that pid. The kernel drops the
  lock when its process dies, so a lock left by a killed run (its pid in the file, no longer holding it)
  is taken over, with a message.
* **A manifest.** ``manifest.json``: command, config, seeds, package versions, git commit, pid,
  ``status`` (``running`` → ``finished``) and start/end times.
* **No mixing.** A folder holding a *finished* run is refused unless ``overwrite=True`` (``--overwrite``),
  which clears it first. A folder holding an *unfinished* run (killed or failed) is resumed by commands
  that can (``compare``: same config required, see :class:`CellStore`) and cleared, with a message, by
  the others. A non-empty folder that is not a run folder is refused (nothing of the user's is deleted);
  one written by a ShopRank command before manifests existed is replaced only with ``overwrite``.
* **Resumable cells.** :class:`CellStore` keeps each finished (agent, seed) cell of ``compare`` as one
  atomically written JSON file; a rerun loads them and computes only the rest, so the final report is the
  same as an uninterrupted run's (floats round-trip exactly through JSON).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from encoders.atomic_files import TMP_MARK, atomic_path, atomic_write_bytes, atomic_write_text, fsync_dir
from encoders.errors import ConfigError

__all__ = ["RunFolder", "RunFolderError", "CellStore", "atomic_path", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_json", "jsonable", "package_versions", "git_commit", "TMP_MARK", "MANIFEST", "LOCK"]

MANIFEST = "manifest.json"
LOCK = ".lock"
LEGACY_MARKERS = ("compare_config.json", "sessions.csv", "train.json")
"""Files that mark a folder written by a ShopRank command from before run folders had manifests."""
PACKAGES = ("shoprank", "numpy", "scipy", "pandas", "torch", "gymnasium", "stable-baselines3", "sb3-contrib",
            "faiss-cpu", "sentence-transformers", "lightgbm", "pillow")
"""Packages whose versions the manifest records (those installed)."""


class RunFolderError(ConfigError):
    """An output folder that cannot be used as asked (in use, finished, or not a run folder)."""


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (dataclasses as dicts, other objects as ``str``)."""
    return atomic_write_text(path, json.dumps(jsonable(data), indent=2, default=str) + "\n")


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses as dicts, NumPy scalars as Python numbers, tuples as lists (recursively)."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


# ----------------------------------------------------------------------------------------------------
# provenance
# ----------------------------------------------------------------------------------------------------
def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each package in ``names`` (missing ones left out), plus ``python``."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(root: Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the source tree holding this package, or ``None`` (no git)."""
    root = root or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------------
# the run folder
# ----------------------------------------------------------------------------------------------------
class RunFolder:
    """One command's output folder, locked for the run, with a manifest (see the module docstring).

    Use as a context manager; call :meth:`finish` when every output is written::

        with RunFolder(out, "compare", config, seeds=seeds, overwrite=args.overwrite, resumable=True) as run:
            ...                                   # run.resumed: an unfinished run with the same config
            with run.staging() as tmp:            # files written under tmp appear in out atomically
                write_summary(df, tmp)
            run.finish()

    Args:
        path: The output folder (created when missing).
        command: The command's name (``"compare"``), recorded and used in messages.
        config: The run's configuration (JSON-able; dataclasses allowed). A resumed run must have the same.
        seeds: The seeds, recorded in the manifest.
        overwrite: Replace a finished (or different unfinished) run in ``path`` instead of refusing.
        resumable: Resume an unfinished run with the same config (``compare``); otherwise its files are
            cleared.
        update: Add to a folder whatever it holds (``report`` rebuilding a run's report): lock and
            atomic writes only, the manifest is neither checked nor rewritten.
        log: Where notices go (default ``sys.stderr``).
    """

    def __init__(self, path: str | Path, command: str, config: Any = None, *, seeds: Sequence[int] = (),
                 overwrite: bool = False, resumable: bool = False, update: bool = False, log: Any = None) -> None:
        self.path = Path(path)
        self.command = command
        self.config = json.loads(json.dumps(jsonable(config), default=str))  # as the manifest will read back
        self.seeds = [int(s) for s in seeds]
        self.overwrite = overwrite
        self.resumable = resumable
        self.update = update
        self.log = log
        self.resumed = False
        self.manifest: dict[str, Any] = {}
        self._lock_fd: int | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> "RunFolder":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None and not self.update and self.manifest.get("status") == "running":
                self._write_manifest(status="failed", error=f"{exc_type.__name__}: {exc}", ended=_now())
        finally:
            self.close()

    def open(self) -> "RunFolder":
        """Lock the folder and check what it holds; raises :class:`RunFolderError` when it cannot be used."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file; the output of shoprank {self.command} must be a folder.")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            if not self.update:  # update mode may be pointed at a folder of other runs: leave their files be
                self._remove_temporaries()
                self._check_and_start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock_fd is None:
            return
        try:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def finish(self, **extra: Any) -> None:
        """Mark the run finished (``status``, ``ended``; ``extra`` fields are added to the manifest)."""
        if not self.update:
            self._write_manifest(status="finished", ended=_now(), **extra)

    # ---- writing -------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        """``path / name``."""
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        """Write ``path / name`` atomically."""
        return atomic_write_text(self.path / name, text)

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``path / name`` as JSON atomically."""
        return atomic_write_json(self.path / name, data)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder to write outputs into; when the block succeeds its files are renamed into the
        run folder one by one (each rename atomic), keeping their relative paths; on an exception nothing
        is moved. Yields the staging folder."""
        tmp = Path(tempfile.mkdtemp(prefix=f".staging{TMP_MARK}{os.getpid()}-", dir=self.path))
        try:
            yield tmp
            for source in sorted(p for p in tmp.rglob("*") if p.is_file()):
                target = self.path / source.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
            fsync_dir(self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def moved(self, staged: Path, staging: Path) -> Path:
        """Where a file written as ``staged`` inside ``staging`` lands in the run folder."""
        return self.path / Path(staged).relative_to(staging)

    # ---- internals -----------------------------------------------------------------------------------
    def _notice(self, message: str) -> None:
        print(f"shoprank {self.command}: {message}", file=self.log or sys.stderr, flush=True)

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"{self.path} is in use by another run (pid {holder}); wait for it to finish or "
                                 "choose another output folder.") from None
        previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if previous and previous != str(os.getpid()):
            state = "still running but no longer holding it" if previous.isdigit() and _pid_alive(int(previous)) \
                else "no longer running"
            self._notice(f"taking over the stale lock of {self.path} left by pid {previous} ({state}).")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _remove_temporaries(self) -> None:
        """Temporary files and staging folders left by a killed writer (nothing reads them)."""
        for leftover in self.path.rglob(f"*{TMP_MARK}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists():
                leftover.unlink()

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.path / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{path} is not a readable run manifest ({exc}); pass --overwrite to replace "
                                 "the run.") from None
        if not isinstance(data, dict) or "status" not in data:
            raise RunFolderError(f"{path} is not a ShopRank run manifest (no 'status'); pass --overwrite to "
                                 "replace the run.")
        return data

    def _clear(self) -> None:
        for entry in self.path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _check_and_start(self) -> None:
        old = None
        try:
            old = self._read_manifest()
        except RunFolderError:
            if not self.overwrite:
                raise
        others = [e.name for e in self.path.iterdir() if e.name != LOCK]
        legacy = old is None and bool(set(others) & set(LEGACY_MARKERS))
        if legacy and not self.overwrite:
            raise RunFolderError(f"{self.path} holds the output of an earlier ShopRank run (no {MANIFEST}); pass "
                                 "--overwrite to replace it, or choose another output folder.")
        if old is None and others and not legacy and not (self.overwrite and (self.path / MANIFEST).exists()):
            raise RunFolderError(
                f"{self.path} is not empty and is not a ShopRank run folder (no {MANIFEST}; it holds "
                f"{sorted(others)[:5]}); choose a new or empty output folder.")
        if old is not None:
            same = old.get("command") == self.command and old.get("config") == self.config
            if old["status"] == "finished" and not self.overwrite:
                raise RunFolderError(
                    f"{self.path} holds a finished run (shoprank {old.get('command')}, finished "
                    f"{old.get('ended', '?')}); pass --overwrite to replace it, or choose another output folder.")
            if old["status"] != "finished" and self.resumable and same:
                self.resumed = True
                self.manifest = old
                self._notice(f"resuming the unfinished run in {self.path} (started {old.get('started', '?')}, "
                             f"status {old['status']}).")
                self._write_manifest(status="running", resumed=[*old.get("resumed", []), _now()], pid=os.getpid())
                return
            if old["status"] != "finished" and not same and not self.overwrite:
                raise RunFolderError(
                    f"{self.path} holds an unfinished run of shoprank {old.get('command')} with a different "
                    f"config{_config_diff(old.get('config'), self.config)}; pass --overwrite to discard it, or "
                    "choose another output folder.")
            if old["status"] == "running" and not self.overwrite:  # killed (a failed run reported its error)
                self._notice(f"discarding the unfinished run in {self.path} (started {old.get('started', '?')}, "
                             f"status {old['status']}).")
        if self.overwrite or old is not None or legacy:
            self._clear()
        self.manifest = {"command": self.command, "status": "running", "started": _now(), "ended": None,
                         "pid": os.getpid(), "argv": sys.argv[1:], "seeds": self.seeds, "config": self.config,
                         "versions": package_versions(), "git": git_commit(), "host": platform.node()}
        self._write_manifest()

    def _write_manifest(self, **changes: Any) -> None:
        self.manifest.update(changes)
        atomic_write_json(self.path / MANIFEST, self.manifest)


def _config_diff(old: Any, new: Any) -> str:
    """`` (differs in: a, b)`` for two config dicts, or ``""``."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return f" (differs in: {', '.join(keys)})" if keys else ""


# ----------------------------------------------------------------------------------------------------
# resumable cells
# ----------------------------------------------------------------------------------------------------
class CellStore:
    """Finished (agent, seed) cells of a comparison, one JSON file each: ``<root>/<agent>/seed<k>.json``.

    A cell is saved (atomically) only when all its sessions are done, so a loaded cell is always whole.

    Args:
        root: The cells folder (inside a :class:`RunFolder`).
        n_sessions: Sessions per cell; a saved cell with another count is not used.
    """

    def __init__(self, root: str | Path, n_sessions: int) -> None:
        self.root = Path(root)
        self.n_sessions = n_sessions

    def path(self, agent: str, seed: int) -> Path:
        return self.root / agent / f"seed{int(seed)}.json"

    def load(self, agent: str, seed: int) -> list[dict[str, Any]] | None:
        """The saved rows of cell (agent, seed), or ``None`` when it has not finished."""
        path = self.path(agent, seed)
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data.get("rows") if isinstance(data, dict) else None
        if not isinstance(rows, list) or len(rows) != self.n_sessions:
            return None
        return rows

    def save(self, agent: str, seed: int, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Save a finished cell's rows (NumPy scalars as Python numbers; floats round-trip exactly)."""
        plain = [{k: _plain(v) for k, v in row.items()} for row in rows]
        return atomic_write_text(self.path(agent, seed), json.dumps(
            {"agent": agent, "seed": int(seed), "rows": plain}, allow_nan=True))

    def done(self) -> list[Path]:
        """The cells saved so far."""
        return sorted(self.root.glob("*/seed*.json")) if self.root.is_dir() else []


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
