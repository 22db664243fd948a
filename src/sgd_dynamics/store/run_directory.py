"""The run directory of a study: one format for every study, locked while a process writes, resumable.

Layout (``LAYOUT_VERSION = 2``)::

    RUN_DIR/
      config.json        {"layout_version", "kind", "config", "created"}: which study, its typed configuration
      environment.json   Python, platform, versions, threads, git commits of the latest session
      timings.json       wall seconds per stage, summed over sessions
      summary.json       {"stationarity", "rows", ...}: the study's verdicts (sgd_dynamics.verdicts.Row)
      run.lock           held (flock) by the writing process; holds its pid
      report.html, figures/
      ...                the study's own data: HDF5 array files (sgd_dynamics.store.arrays) and JSON

Every file is written atomically (:mod:`sgd_dynamics.store.files`), so an interrupted run leaves complete
files only; a study resumes by skipping what exists. :meth:`RunDirectory.open` validates before it creates
anything, so a failed start leaves nothing that blocks a rerun: a directory whose stored configuration
differs is refused unless it holds no results yet (then it is reused), or ``force=True`` moves it aside to
``RUN_DIR.old-<timestamp>`` (kept, never deleted). A second process on the same directory fails fast with
:class:`RunLockedError` naming the holder's pid. The stored configuration comes back typed through
:meth:`RunDirectory.config` and :func:`read_kind` tells ``sgd-dynamics report`` which study wrote it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sgd_dynamics.config_schema import from_mapping, to_mapping
from sgd_dynamics.store.environment import collect_environment
from sgd_dynamics.store.files import write_json
from sgd_dynamics.verdicts import Row, verdict_counts

try:  # POSIX advisory locks; elsewhere the directory runs without a lock
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

__all__ = ["LAYOUT_VERSION", "RunDirectory", "RunLockedError", "read_config", "read_kind", "write_summary"]

LAYOUT_VERSION = 2
CONFIG, ENVIRONMENT, TIMINGS, SUMMARY, LOCK = (
    "config.json", "environment.json", "timings.json", "summary.json", "run.lock")
_METADATA = {CONFIG, ENVIRONMENT, TIMINGS, LOCK}


class RunLockedError(ValueError):
    """Another process is writing into the run directory."""


def _differences(stored: Any, given: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for key in sorted(set(stored) | set(given)):
            out += _differences(stored.get(key), given.get(key), f"{prefix}{key}.")
        return out
    return [] if stored == given else [f"{prefix.rstrip('.')!r} (stored {stored!r}, given {given!r})"]


def _has_results(path: Path) -> bool:
    return any(p.name not in _METADATA and not p.name.startswith(".") for p in path.iterdir())


def read_kind(path: Path | str) -> str:
    """Which study wrote ``path`` (``"study"``, ``"momentum"``, ``"basins"``); ``ValueError`` if none did."""
    path = Path(path)
    stored = _read_config_file(path)
    return str(stored["kind"])


def read_config(path: Path | str, cls: type) -> Any:
    """The stored configuration of ``path`` as an instance of ``cls`` (validated again)."""
    return from_mapping(cls, _read_config_file(Path(path))["config"])


def _read_config_file(path: Path) -> dict:
    file = path / CONFIG
    if not path.is_dir() or not file.is_file():
        raise ValueError(f"RUN_DIR={str(path)!r} is not a run directory (no {CONFIG}): expected a directory "
                         "written by 'sgd-dynamics demo', 'study', 'momentum report' or 'basins'")
    stored = json.loads(file.read_text())
    if not isinstance(stored, dict) or stored.get("layout_version") != LAYOUT_VERSION:
        raise ValueError(f"RUN_DIR={str(path)!r} was written by an older sgd-dynamics (layout "
                         f"{stored.get('layout_version', 1) if isinstance(stored, dict) else '?'}, this one "
                         f"reads layout {LAYOUT_VERSION}): rerun the study into a new --out")
    return stored


def write_summary(path: Path | str, rows: Sequence[Row], stationarity: dict | None = None,
                  **extra: Any) -> Path:
    """Write ``path/summary.json``: ``{"stationarity", "counts", "rows", **extra}``.

    Rows in the six-key format; ``counts`` separates the tested rows (holds / fails) from the reported and the
    ``not_stationary`` ones (:func:`sgd_dynamics.verdicts.verdict_counts`).
    """
    stationarity = stationarity or {"stationary": None, "criteria": []}
    out = Path(path) / SUMMARY
    write_json(out, {"stationarity": stationarity, "counts": verdict_counts(rows),
                     "rows": [r.to_json() for r in rows], **extra})
    return out


class RunDirectory:
    """A run directory open for writing by this process; use as a context manager (releases the lock)."""

    def __init__(self, path: Path, kind: str, lock: Any) -> None:
        self.path, self.kind, self._lock = path, kind, lock
        self._timings: dict[str, float] = {}
        self.moved_aside: Path | None = None  # where ``open(force=True)`` kept the previous run
        if (path / TIMINGS).is_file():
            self._timings = json.loads((path / TIMINGS).read_text())

    @classmethod
    def open(cls, path: Path | str, kind: str, config: Any, *, force: bool = False,
             option: str = "--out") -> RunDirectory:
        """Create or continue the run of ``config`` (a validated dataclass) in ``path``.

        ``force`` moves a directory holding another configuration aside to ``path.old-<timestamp>``.
        ``option`` names the path in messages (the CLI flag).
        """
        path = Path(path)
        given = {"kind": kind, "config": to_mapping(config)}
        if path.exists() and not path.is_dir():
            raise ValueError(f"{option}={str(path)!r} is invalid: expected a directory path, not a file")
        occupied = path.is_dir() and any(path.iterdir())
        aside = cls._check_existing(path, given, force, option) if occupied else None
        path.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(path, option)
        try:
            if not (path / CONFIG).is_file() or _stored_body(path) != given:
                write_json(path / CONFIG, {"layout_version": LAYOUT_VERSION, **given,
                                           "created": _dt.datetime.now().isoformat(timespec="seconds")})
            write_json(path / ENVIRONMENT, collect_environment())
        except BaseException:
            _release_lock(lock)
            raise
        run = cls(path, kind, lock)
        run.moved_aside = aside
        return run

    @staticmethod
    def _check_existing(path: Path, given: dict, force: bool, option: str) -> Path | None:
        """Refuse (or, with ``force``, move aside) a directory that holds another run."""
        stored = _stored_body(path) if (path / CONFIG).is_file() else None
        if stored == given or (stored is not None and not _has_results(path)):
            return None  # the same run, or a failed start: nothing to lose
        if stored is None and not _has_results(path):
            return None
        if stored is None:
            what = "files that are not a run of this version"
        else:
            diff = _differences(stored["config"], given["config"])
            what = (f"a {stored['kind']} run, not a {given['kind']} run" if stored["kind"] != given["kind"]
                    else f"a run with a different configuration ({', '.join(diff[:3])})")
        if not force:
            raise ValueError(f"{option}={str(path)!r} holds {what}: rerun with --force to keep it as "
                             f"{path.name}.old-<timestamp> and start over, or choose another {option}")
        lock = _acquire_lock(path, option)   # never move a directory another process writes into
        _release_lock(lock)
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        while aside.exists():
            aside = aside.with_name(aside.name + "x")
        os.replace(path, aside)
        return aside

    def config(self, cls: type) -> Any:
        """The stored configuration as ``cls``."""
        return read_config(self.path, cls)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; its wall seconds are added to ``timings.json`` when it finishes."""
        t0 = time.perf_counter()
        yield
        self._timings[name] = self._timings.get(name, 0.0) + time.perf_counter() - t0
        write_json(self.path / TIMINGS, self._timings)

    def write_summary(self, rows: Sequence[Row], stationarity: dict | None = None, **extra: Any) -> Path:
        """``summary.json`` of this run (:func:`write_summary`)."""
        return write_summary(self.path, rows, stationarity, **extra)

    def close(self) -> None:
        """Release the lock. Idempotent."""
        _release_lock(self._lock)
        self._lock = None

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stored_body(path: Path) -> dict | None:
    try:
        stored = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("layout_version") != LAYOUT_VERSION:
        return None
    return {"kind": stored.get("kind"), "config": stored.get("config")}


def _acquire_lock(path: Path, option: str) -> Any:
    if fcntl is None:  # pragma: no cover - non-POSIX
        return None
    handle = open(path / LOCK, "a+")  # noqa: SIM115 - held while the run writes
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunLockedError(
            f"{option}={str(path)!r} is in use by process {holder} (lock {path / LOCK}): wait for it to "
            f"finish or choose another {option}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _release_lock(lock: Any) -> None:
    if lock is not None and not lock.closed:
        lock.close()  # closing the descriptor releases the flock
