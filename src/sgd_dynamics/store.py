"""The run directory: configuration, environment, arrays appended while training, resumable state.

Layout (``LAYOUT_VERSION = 1``)::

    <run>/
      run.json           {"layout_version", "created", "config", "environment"}; written once
      progress.json      {"layout_version", "lengths", "state", "complete", "flushes", "updated", "sessions"}
      arrays.h5          the arrays (HDF5); the file to read
      arrays.mirror.h5   a second copy of the arrays, used only to recover from a crash; never read it
      state/<id>.bin     the latest resumable state blob (opaque bytes: RNG state, ``torch.save`` output, ...)
      run.lock           advisory lock held by the writing process
      tensorboard/       TensorBoard scalars, only when asked for

``arrays.h5`` holds one dataset per name at the root, of shape ``(n, *item_shape)`` with
``maxshape=(None, *item_shape)``, chunked along the first (step) axis; row ``i`` is the ``i``-th value
appended under that name, and the dtype and item shape are fixed by the first value. Root attributes:
``layout_version`` (int) and ``config`` (the run's configuration as a JSON string). Different names may
have different lengths (e.g. a per-step loss and sparse snapshots). Read it without this package::

    import h5py, json
    with h5py.File("run/arrays.h5", "r") as f:
        lengths = json.load(open("run/progress.json"))["lengths"]   # committed rows
        loss = f["loss"][: lengths["loss"]]

(xarray reads it with ``xr.open_dataset(path, engine="h5netcdf", phony_dims="sort")``.) After a crash a
dataset may hold rows beyond ``progress.json``'s ``lengths``; those were never committed.

Crash safety. Appended rows are buffered in memory and committed by a flush every ``flush_every_steps``
appends or ``flush_every_seconds``, whichever comes first. A flush appends the rows to ``arrays.h5``,
closes and fsyncs it, does the same to ``arrays.mirror.h5``, then atomically replaces ``progress.json``
(write to a temporary file, fsync, ``os.replace``) with the new committed lengths. HDF5 files are only
open during a flush, so a ``kill -9`` can damage at most the one file being written at that moment; the
other one holds every committed row. Opening with ``resume=True`` checks both files (every committed
dataset present and its last committed row readable), rebuilds a damaged one from the other, and
truncates both to the committed lengths. A crash therefore loses at most the rows appended since the last
completed flush.

Resuming. ``checkpoint(state)`` flushes, writes the state blob atomically under a new name, and records
in ``progress.json`` the lengths at which it was taken. ``RunStore.open(path, config, resume=True)``
truncates the arrays to those lengths, so a caller that restarts from ``store.state`` appends exactly the
rows a run without the interruption would have appended. Without a checkpoint the arrays are kept at
their committed lengths and ``store.state`` is ``None``.

A finished run (``finish()``) is never overwritten: opening it raises :class:`RunCompleteError` unless
``overwrite=True``; ``resume=True`` opens it read-only (``store.complete`` is ``True``). A directory that
is not a run, is damaged beyond repair, or was written by another layout version or configuration raises
:class:`CorruptRunError` or :class:`IncompatibleRunError`, naming the path and the problem.

Array files. Results computed once (not appended) go to one HDF5 file each through :func:`write_arrays` and
come back through :func:`read_arrays`; the layout is described in :func:`write_arrays`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

try:  # POSIX advisory locks; elsewhere the store runs without a lock
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

__all__ = [
    "LAYOUT_VERSION",
    "CorruptRunError",
    "IncompatibleRunError",
    "RunCompleteError",
    "RunExistsError",
    "RunRecord",
    "RunStore",
    "RunStoreError",
    "collect_environment",
    "load_run",
    "read_arrays",
    "write_arrays",
]

LAYOUT_VERSION = 1
_RUN, _PROGRESS, _ARRAYS, _MIRROR = "run.json", "progress.json", "arrays.h5", "arrays.mirror.h5"
_STATE_DIR, _LOCK, _TENSORBOARD = "state", "run.lock", "tensorboard"
_OWNED = (_RUN, _PROGRESS, _ARRAYS, _MIRROR, _STATE_DIR, _TENSORBOARD)


class RunStoreError(RuntimeError):
    """A run directory cannot be used as asked."""


class RunExistsError(RunStoreError):
    """The directory already holds a run and neither ``resume`` nor ``overwrite`` was given."""


class RunCompleteError(RunExistsError):
    """The run is marked complete; it is never overwritten or appended to without ``overwrite=True``."""


class CorruptRunError(RunStoreError):
    """The directory is damaged (missing or unreadable files) beyond what the store can repair."""


class IncompatibleRunError(RunStoreError):
    """The directory was written by another layout version or with another configuration."""


# ----------------------------------------------------------------------------------------------- files

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # directories cannot be fsynced on every platform
        _fsync_path(path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_json(path: Path, obj: Any) -> None:
    _write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def _copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    _fsync_path(tmp)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _normalise_config(config: Any) -> dict:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise ValueError(f"config={config!r} is invalid: expected a JSON-serialisable mapping or dataclass")
    try:
        return json.loads(json.dumps(config, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"config is invalid: expected a JSON-serialisable mapping ({error})") from error


def _config_differences(stored: Any, given: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for key in sorted(set(stored) | set(given)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in stored:
                out.append(f"{name} (not in the stored config)")
            elif key not in given:
                out.append(f"{name} (missing from the given config)")
            else:
                out.extend(_config_differences(stored[key], given[key], name))
        return out
    return [] if stored == given else [f"{prefix or 'config'}: stored {stored!r}, given {given!r}"]


# ----------------------------------------------------------------------------------------------- environment

def _git(directory: Path) -> dict | None:
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False)
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment() -> dict:
    """Python, platform, package versions and git commits; no network, and torch is not imported.

    ``git`` holds the commit of the working directory and of the ``sgd_dynamics`` source tree (``None``
    outside a git checkout, or before its first commit).
    """
    torch = sys.modules.get("torch")
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "argv": list(sys.argv),
        "versions": {
            "sgd_dynamics": _version("sgd-dynamics"),
            "numpy": np.__version__,
            "scipy": _version("scipy"),
            "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version,
            "torch": getattr(torch, "__version__", None) or _version("torch"),
        },
        "git": {"cwd": _git(Path.cwd()), "sgd_dynamics": _git(Path(__file__).resolve().parent)},
    }


# ----------------------------------------------------------------------------------------------- HDF5

def _chunk_rows(item_shape: tuple[int, ...], itemsize: int) -> int:
    row_bytes = max(1, math.prod(item_shape) * itemsize)
    return int(min(1024, max(1, 2**16 // row_bytes)))


def _append_rows(path: Path, blocks: dict[str, NDArray], start: dict[str, int],
                 compression: str | None) -> None:
    with h5py.File(path, "r+") as f:
        for name, block in blocks.items():
            begin = start.get(name, 0)
            item = block.shape[1:]
            if name not in f:
                f.create_dataset(name, shape=(0, *item), maxshape=(None, *item), dtype=block.dtype,
                                 chunks=(_chunk_rows(item, block.dtype.itemsize), *item),
                                 compression=compression)
            ds = f[name]
            ds.resize(begin + block.shape[0], axis=0)
            ds[begin:] = block
    _fsync_path(path)


def _damage(path: Path, lengths: Mapping[str, int]) -> str | None:
    """Why ``path`` cannot serve the committed ``lengths``, or ``None`` if it can."""
    if not path.exists():
        return "missing"
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("layout_version")
            if version != LAYOUT_VERSION:
                return f"layout_version {version!r}, expected {LAYOUT_VERSION}"
            for name, n in lengths.items():
                if n == 0:
                    continue
                if name not in f:
                    return f"dataset {name!r} missing"
                if f[name].shape[0] < n:
                    return f"dataset {name!r} has {f[name].shape[0]} rows, {n} committed"
                f[name][n - 1]  # walks the chunk index down to the last committed row
    except Exception as error:  # h5py reports damage as OSError, KeyError, RuntimeError, ...
        return f"unreadable ({type(error).__name__}: {error})"
    return None


def _truncate(path: Path, lengths: Mapping[str, int]) -> None:
    with h5py.File(path, "r+") as f:
        for name in list(f.keys()):
            if name not in lengths:
                del f[name]   # created by a flush that never committed
            elif f[name].shape[0] != lengths[name]:
                f[name].resize(lengths[name], axis=0)
    _fsync_path(path)


def _create_arrays(path: Path, config: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["layout_version"] = LAYOUT_VERSION
        f.attrs["config"] = json.dumps(config, sort_keys=True)
    _fsync_path(tmp)
    os.replace(tmp, path)


def _summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "tensorboard=True needs torch and the `tensorboard` package (pip install tensorboard), "
            f"which cannot be imported here ({error}); open the run with tensorboard=False") from error
    return SummaryWriter


# ----------------------------------------------------------------------------------------------- the store

def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise CorruptRunError(f"run directory {path.parent} is corrupt: {what} {path.name} is missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CorruptRunError(
            f"run directory {path.parent} is corrupt: {path.name} is unreadable ({error})") from error
    if not isinstance(data, dict):
        raise CorruptRunError(f"run directory {path.parent} is corrupt: {path.name} is not a JSON object")
    version = data.get("layout_version")
    if version != LAYOUT_VERSION:
        raise IncompatibleRunError(
            f"run directory {path.parent} is incompatible: {path.name} has layout_version {version!r}, "
            f"this sgd_dynamics reads layout_version {LAYOUT_VERSION}")
    return data


class RunStore:
    """A run directory open for appending. Create or reopen it with :meth:`RunStore.open`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = RunStore.open(f"{tmp}/run", {"lr": 0.1}, flush_every_steps=2)
    ...     for k in range(3):
    ...         store.append(step=k, loss=1.0 / (k + 1))
    ...     store.checkpoint(b"any bytes")
    ...     store.finish()
    ...     with RunStore.open(f"{tmp}/run", {"lr": 0.1}, resume=True) as again:
    ...         print(again.complete, again.read("step").tolist(), again.state)
    True [0, 1, 2] b'any bytes'

    """

    def __init__(self, path: Path, run: dict, progress: dict, *, flush_every_steps: int,
                 flush_every_seconds: float, compression: str | None, lock: Any, resumed: bool) -> None:
        self.path = path
        self.config: dict = run["config"]
        self.environment: dict = run["environment"]
        self.resumed = resumed
        self._progress = progress
        self._committed: dict[str, int] = dict(progress["lengths"])
        self._pending: dict[str, list[NDArray]] = {}
        self._item: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._flush_every_steps = flush_every_steps
        self._flush_every_seconds = flush_every_seconds
        self._compression = compression
        self._lock = lock
        self._since_flush = self._since_checkpoint = 0
        self._flushed_at = self._checkpointed_at = time.monotonic()
        self._closed = False
        self._tensorboard = None
        if not self.complete:
            with h5py.File(path / _ARRAYS, "r") as f:
                for name in f:
                    self._item[name] = (f[name].shape[1:], f[name].dtype)

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        config: Mapping | Any,
        *,
        resume: bool = False,
        overwrite: bool = False,
        flush_every_steps: int = 1000,
        flush_every_seconds: float = 30.0,
        compression: str | None = None,
        tensorboard: bool = False,
    ) -> RunStore:
        """Create the run directory ``path``, or reopen it.

        Parameters
        ----------
        path
            The run directory (created with its parents if missing; an existing one must be a run or empty).
        config
            The run's configuration (JSON-serialisable mapping or dataclass); on ``resume`` it must equal
            the stored one.
        resume
            Continue an unfinished run (repairing a crashed one); a new ``path`` is created. A complete run
            opens read-only.
        overwrite
            Replace an existing run, complete, unfinished or corrupt (only this store's files are removed).
        flush_every_steps, flush_every_seconds
            Commit interval; a crash loses at most the rows appended since the last commit.
            ``flush_every_seconds=math.inf`` commits on the step count only. A commit costs a few
            fsyncs (about 20 ms on a local disk); an append of a small row about 4 us per array.
        compression
            HDF5 filter for new datasets: ``None`` or ``"gzip"`` (which every HDF5 reader has).
        tensorboard
            Also write scalar rows as TensorBoard scalars (needs the ``tensorboard`` package).
        """
        if resume and overwrite:
            raise ValueError("resume=True and overwrite=True are invalid together: expected at most one")
        if not (isinstance(flush_every_steps, int) and flush_every_steps >= 1):
            raise ValueError(f"flush_every_steps={flush_every_steps!r} is invalid: expected an integer >= 1")
        if not flush_every_seconds > 0:
            raise ValueError(f"flush_every_seconds={flush_every_seconds!r} is invalid: expected seconds > 0")
        if compression not in (None, "gzip"):
            raise ValueError(f"compression={compression!r} is invalid: expected None or 'gzip'")
        config = _normalise_config(config)
        if tensorboard:
            _summary_writer_class()   # fail before anything is created
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunStoreError(f"run directory {path} is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
        # leftovers of an interrupted atomic write (".name.tmp") do not make a directory foreign
        entries = {p.name for p in path.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
        entries -= {_LOCK}
        is_run = bool(entries & {_RUN, _PROGRESS})
        if entries and not is_run:
            raise CorruptRunError(
                f"{path} is not a run directory (no {_RUN} or {_PROGRESS}) and is not empty; "
                "refusing to write into it")
        lock = cls._acquire_lock(path)
        try:
            kwargs = dict(flush_every_steps=flush_every_steps, flush_every_seconds=flush_every_seconds,
                          compression=compression, lock=lock)
            if is_run and overwrite:
                cls._remove_run(path)
            elif is_run:
                run = _read_json(path / _RUN, "the run description")
                progress = _read_json(path / _PROGRESS, "the progress marker")
                if progress.get("complete"):
                    if not resume:
                        raise RunCompleteError(
                            f"run directory {path} holds a complete run; pass overwrite=True to replace it "
                            "or resume=True to open it read-only")
                    cls._check_config(path, run, config)
                    return cls(path, run, progress, resumed=True, **kwargs)
                elif not resume:
                    raise RunExistsError(
                        f"run directory {path} holds an unfinished run ({progress.get('lengths')} rows); "
                        "pass resume=True to continue it or overwrite=True to start over")
                else:
                    cls._check_config(path, run, config)
                    progress = cls._recover(path, progress)
                    store = cls(path, run, progress, resumed=True, **kwargs)
                    store._enable_tensorboard(tensorboard)
                    return store
            run, progress = cls._create(path, config)
            store = cls(path, run, progress, resumed=False, **kwargs)
            store._enable_tensorboard(tensorboard)
            return store
        except BaseException:
            cls._release_lock(lock)
            raise

    @staticmethod
    def _acquire_lock(path: Path) -> Any:
        if fcntl is None:  # pragma: no cover - non-POSIX
            return None
        handle = open(path / _LOCK, "a")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            raise RunStoreError(f"run directory {path} is open in another RunStore, in this process or "
                                f"another (lock {path / _LOCK})") from error
        return handle

    @staticmethod
    def _release_lock(lock: Any) -> None:
        if lock is not None:
            lock.close()  # closing the descriptor releases the flock

    @staticmethod
    def _check_config(path: Path, run: dict, config: dict) -> None:
        differences = _config_differences(run.get("config"), config)
        if differences:
            raise IncompatibleRunError(
                f"run directory {path} was created with another config: " + "; ".join(differences[:10]))

    @staticmethod
    def _remove_run(path: Path) -> None:
        for name in _OWNED:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    @staticmethod
    def _create(path: Path, config: dict) -> tuple[dict, dict]:
        run = {"layout_version": LAYOUT_VERSION, "created": _now(), "config": config,
               "environment": collect_environment()}
        _write_json(path / _RUN, run)
        _create_arrays(path / _ARRAYS, config)
        _copy_atomic(path / _ARRAYS, path / _MIRROR)
        (path / _STATE_DIR).mkdir(exist_ok=True)
        progress = {"layout_version": LAYOUT_VERSION, "lengths": {}, "state": None, "complete": False,
                    "flushes": 0, "updated": _now(), "sessions": [{"started": run["created"], "lengths": {}}]}
        _write_json(path / _PROGRESS, progress)   # last: its presence marks a usable run
        return run, progress

    @staticmethod
    def _recover(path: Path, progress: dict) -> dict:
        state = progress.get("state")
        lengths = dict(state["lengths"] if state else progress.get("lengths", {}))
        if state and not (path / state["file"]).is_file():
            raise CorruptRunError(f"run directory {path} is corrupt: state file {state['file']} is missing")
        committed = progress.get("lengths", {})
        primary, mirror = path / _ARRAYS, path / _MIRROR
        damage_primary, damage_mirror = _damage(primary, committed), _damage(mirror, committed)
        if damage_primary and damage_mirror:
            raise CorruptRunError(
                f"run directory {path} is corrupt: {_ARRAYS} is {damage_primary} and {_MIRROR} is "
                f"{damage_mirror}; the committed arrays cannot be recovered")
        if damage_primary:
            _copy_atomic(mirror, primary)
        elif damage_mirror:
            _copy_atomic(primary, mirror)
        # Commit the shorter lengths before truncating: a crash while truncating one file then leaves the
        # other one valid for the next recovery.
        session = {"started": _now(), "lengths": lengths, "repaired": damage_primary or damage_mirror}
        progress = {**progress, "lengths": lengths, "updated": _now(),
                    "sessions": [*progress.get("sessions", []), session]}
        _write_json(path / _PROGRESS, progress)
        for target in (primary, mirror):
            _truncate(target, lengths)
        (path / _STATE_DIR).mkdir(exist_ok=True)
        for orphan in (path / _STATE_DIR).iterdir():   # written by a checkpoint that never committed
            if not state or orphan.name != Path(state["file"]).name:
                orphan.unlink()
        return progress

    def _enable_tensorboard(self, enabled: bool) -> None:
        if not enabled:
            return
        # purge_step drops events a crashed session logged after the resumed lengths
        self._tensorboard = _summary_writer_class()(str(self.path / _TENSORBOARD),
                                          purge_step=min(self._committed.values(), default=0) or None)

    # ---------------------------------------------------------------- writing

    @property
    def complete(self) -> bool:
        """Whether :meth:`finish` marked the run complete."""
        return bool(self._progress.get("complete"))

    @property
    def committed_lengths(self) -> dict[str, int]:
        """Rows per name that survive a crash now."""
        return dict(self._committed)

    @property
    def lengths(self) -> dict[str, int]:
        """Rows per name, committed and buffered."""
        out = dict(self._committed)
        for name, rows in self._pending.items():
            out[name] = out.get(name, 0) + len(rows)
        return out

    def _check_writable(self) -> None:
        if self._closed:
            raise RunStoreError(f"run store {self.path} is closed")
        if self.complete:
            raise RunCompleteError(f"run directory {self.path} holds a complete run; it is read-only")

    def append(self, /, **rows: Any) -> None:
        """Append one row to each named array, e.g. ``append(step=k, loss=0.3, position=x)``.

        Values are anything ``numpy.asarray`` accepts (move CUDA tensors to the CPU first). The first row of a
        name fixes its item shape and dtype; later rows must have that shape.
        """
        self._check_writable()
        validated = {}
        for name, value in rows.items():
            array = np.asarray(value)
            if not name.isidentifier():
                raise ValueError(f"array name {name!r} is invalid: expected a Python identifier")
            if array.dtype.kind not in "biuf":
                raise ValueError(f"{name} has dtype {array.dtype}: expected booleans, integers or floats")
            if name in self._item:
                shape, dtype = self._item[name]
                if array.shape != shape:
                    raise ValueError(f"{name} row has shape {array.shape}: expected {shape}, the shape of "
                                     "its first row")
                if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                    raise ValueError(f"{name} row has dtype {array.dtype}: expected {dtype}, its first "
                                     "row's dtype")
                array = array.astype(dtype, copy=True)
            else:
                array = array.copy()
            validated[name] = array
        for name, array in validated.items():
            self._item.setdefault(name, (array.shape, array.dtype))
            self._pending.setdefault(name, []).append(array)
            if self._tensorboard is not None and array.ndim == 0:
                self._tensorboard.add_scalar(name, float(array), self.lengths[name] - 1)
        self._since_flush += 1
        self._since_checkpoint += 1
        if (self._since_flush >= self._flush_every_steps
                or time.monotonic() - self._flushed_at >= self._flush_every_seconds):
            self.flush()

    def flush(self) -> None:
        """Commit the buffered rows to both HDF5 files and record the new lengths in ``progress.json``."""
        if self._closed:
            raise RunStoreError(f"run store {self.path} is closed")
        self._since_flush, self._flushed_at = 0, time.monotonic()
        if not self._pending:
            return
        blocks = {name: np.stack(rows) for name, rows in self._pending.items()}
        for target in (self.path / _ARRAYS, self.path / _MIRROR):
            _append_rows(target, blocks, self._committed, self._compression)
        lengths = dict(self._committed)
        for name, block in blocks.items():
            lengths[name] = lengths.get(name, 0) + block.shape[0]
        self._write_progress(lengths=lengths, flushes=self._progress.get("flushes", 0) + 1)
        self._committed = lengths
        self._pending = {}
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def checkpoint_due(self) -> bool:
        """Whether a flush interval (steps or seconds) has passed since the last :meth:`checkpoint`."""
        return (self._since_checkpoint >= self._flush_every_steps
                or time.monotonic() - self._checkpointed_at >= self._flush_every_seconds)

    def checkpoint(self, state: bytes | os.PathLike | str) -> None:
        """Flush, then store ``state`` (bytes, or a file whose bytes are copied) as the resumable state.

        ``torch`` objects: ``buf = io.BytesIO(); torch.save(obj, buf); store.checkpoint(buf.getvalue())``.
        """
        self._check_writable()
        if isinstance(state, (bytes, bytearray, memoryview)):
            data = bytes(state)
        elif isinstance(state, (str, os.PathLike)):
            data = Path(state).read_bytes()
        else:
            raise ValueError(f"state of type {type(state).__name__} is invalid: expected bytes or a path")
        self.flush()
        previous = self._progress.get("state")
        number = (previous["number"] + 1) if previous else 0
        file = f"{_STATE_DIR}/{number:08d}.bin"
        _write_atomic(self.path / file, data)
        self._write_progress(state={"file": file, "number": number, "lengths": dict(self._committed),
                                    "saved": _now()})
        if previous:
            with contextlib.suppress(FileNotFoundError):
                (self.path / previous["file"]).unlink()
        self._since_checkpoint, self._checkpointed_at = 0, time.monotonic()

    def finish(self) -> None:
        """Flush, mark the run complete (it is never overwritten silently afterwards) and close it."""
        self._check_writable()
        self.flush()
        self._write_progress(complete=True, finished=_now())
        self.close()

    def close(self) -> None:
        """Flush (without marking the run complete) and release the directory. Idempotent."""
        if self._closed:
            return
        if not self.complete:
            self.flush()
        if self._tensorboard is not None:
            self._tensorboard.close()
        self._closed = True
        self._release_lock(self._lock)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_progress(self, **changes: Any) -> None:
        progress = {**self._progress, **changes, "updated": _now()}
        _write_json(self.path / _PROGRESS, progress)
        self._progress = progress

    # ---------------------------------------------------------------- reading

    @property
    def state(self) -> bytes | None:
        """The latest checkpointed state blob, or ``None`` if none was saved."""
        path = self.state_path
        return None if path is None else path.read_bytes()

    @property
    def state_path(self) -> Path | None:
        """The file holding the latest state blob (e.g. for ``torch.load``), or ``None``."""
        state = self._progress.get("state")
        return None if not state else self.path / state["file"]

    def read(self, name: str) -> NDArray:
        """The committed and buffered rows of ``name`` (flushes first)."""
        if not self.complete and not self._closed:
            self.flush()
        length = self._committed.get(name)
        if length is None:
            raise KeyError(f"run {self.path} has no array {name!r}; it has {sorted(self._committed)}")
        with h5py.File(self.path / _ARRAYS, "r") as f:
            return f[name][:length] if length else np.empty((0, *f[name].shape[1:]), f[name].dtype)


# ----------------------------------------------------------------------------------------------- read-only

@dataclass(frozen=True)
class RunRecord:
    """A run directory read back: its configuration, environment, committed arrays and status."""

    path: Path
    config: dict
    environment: dict
    arrays: dict[str, NDArray]
    complete: bool
    state: bytes | None


def load_run(path: str | os.PathLike) -> RunRecord:
    """Read a run directory without opening it for writing (the committed rows only)."""
    path = Path(path)
    if not path.is_dir():
        raise RunStoreError(f"run directory {path} does not exist")
    run = _read_json(path / _RUN, "the run description")
    progress = _read_json(path / _PROGRESS, "the progress marker")
    lengths = progress.get("lengths", {})
    damage = _damage(path / _ARRAYS, lengths)
    if damage:
        raise CorruptRunError(f"run directory {path} is corrupt: {_ARRAYS} is {damage}; "
                              "RunStore.open(path, config, resume=True) repairs it from the mirror")
    with h5py.File(path / _ARRAYS, "r") as f:
        arrays = {name: f[name][:n] for name, n in lengths.items()}
    state = progress.get("state")
    return RunRecord(path=path, config=run["config"], environment=run["environment"], arrays=arrays,
                     complete=bool(progress.get("complete")),
                     state=(path / state["file"]).read_bytes() if state else None)


# ----------------------------------------------------------------------------------------------- array files

_ARRAY_KINDS = "biufcSU"   # what HDF5 stores natively (unicode as UTF-8 strings); no pickled objects
_UNICODE_ATTR = "numpy_dtype"


def _array_items(path: Path, arrays: Mapping[str, ArrayLike]) -> dict[str, NDArray]:
    out: dict[str, NDArray] = {}
    for name, value in arrays.items():
        parts = name.split("/") if isinstance(name, str) else [""]
        if any(part in ("", ".") for part in parts):
            raise ValueError(f"array name {name!r} for {path} is invalid: expected a non-empty string of "
                             "'/'-separated parts, none empty or '.'")
        array = np.asarray(value)
        if array.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"array {name!r} for {path} has dtype {array.dtype}: expected booleans, "
                             "integers, floats, complex numbers, bytes or str")
        if array.dtype.kind == "U" and any("\x00" in text for text in array.ravel().tolist()):
            raise ValueError(f"array {name!r} for {path} holds a string with a NUL character: expected "
                             "strings without NUL (HDF5 variable-length strings end at the first NUL)")
        out[name] = array
    names = set(out)
    for name in out:   # "a" and "a/b" cannot both exist: "a" would be a dataset and a group
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise ValueError(f"array names {'/'.join(parts[:i])!r} and {name!r} for {path} clash: "
                                 "a name cannot be both an array and a group of arrays")
    return out


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, ArrayLike],
                 attrs: Mapping[str, Any] | None = None) -> Path:
    """Write named arrays to the HDF5 file ``path`` atomically; returns ``path``.

    Layout, readable with plain ``h5py`` (or any HDF5 tool): one dataset per name, holding the array with
    its shape (0-d arrays as scalar datasets, empty arrays with their zero-length shape) and dtype. A name
    with ``/`` is a path: ``"fft/q1/freq"`` is the dataset ``freq`` in the group ``fft/q1``. Unicode strings
    are stored as variable-length UTF-8 strings with the attribute ``numpy_dtype`` (e.g. ``"<U5"``); booleans
    as HDF5's boolean enum. ``attrs`` become attributes of the root group (values that ``h5py`` accepts:
    numbers, strings, arrays). No compression, so every HDF5 reader opens it::

        import h5py
        with h5py.File("points/lr=0.01,.../result.h5", "r") as f:
            loss = f["loss"][()]
            freq = f["fft/q1/freq"][()]
            names = []; f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)

    The file is first written as ``<stem>.tmp<suffix>`` next to ``path`` (a leftover from an interrupted
    write is overwritten), fsynced, then moved over ``path`` with ``os.replace``: ``path`` is either absent,
    the previous complete file, or the new complete file, never a partial one. On an error the temporary
    file is removed and ``path`` is left as it was.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_arrays(f"{tmp}/a.h5", {"x": np.arange(3), "fit/c": 1.5})
    ...     print({k: v.tolist() for k, v in read_arrays(f"{tmp}/a.h5").items()})
    {'x': [0, 1, 2], 'fit/c': 1.5}

    Raises:
        ValueError: a name is empty or has an empty part, names clash (``"a"`` and ``"a/b"``), an array
            has a dtype HDF5 cannot store without pickling (object, datetime, ...), or a str holds a NUL.
    """
    path = Path(path)
    items = _array_items(path, arrays)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            for name, array in items.items():
                parent = f
                *groups, leaf = name.split("/")
                for group in groups:   # explicit groups, so the names come back in the order given
                    if group not in parent:
                        parent.create_group(group, track_order=True)
                    parent = parent[group]
                if array.dtype.kind == "U":
                    ds = parent.create_dataset(leaf, data=array.astype(object), dtype=h5py.string_dtype())
                    ds.attrs[_UNICODE_ATTR] = array.dtype.str
                else:
                    parent.create_dataset(leaf, data=array)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def read_arrays(path: str | os.PathLike) -> dict[str, NDArray]:
    """The arrays of a file written by :func:`write_arrays`, as ``{name: ndarray}``.

    Names of arrays in groups are their paths (``"fft/q1/freq"``); 0-d datasets come back as 0-d arrays,
    values and dtypes as written, in native byte order. Names come back in the order written, except that
    the arrays of a group come back together, where its first array was written.
    Root attributes are not returned (read them with ``h5py.File(path).attrs``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"array file {path} does not exist")
    out: dict[str, NDArray] = {}

    def visit(group: h5py.Group, prefix: str) -> None:
        for key, obj in group.items():   # creation order where tracked (``visititems`` sorts by name)
            if isinstance(obj, h5py.Group):
                visit(obj, f"{prefix}{key}/")
            elif _UNICODE_ATTR in obj.attrs:
                dtype = np.dtype(str(obj.attrs[_UNICODE_ATTR]))
                out[prefix + key] = np.asarray(obj.asstr()[()], dtype=object).astype(dtype)
            else:   # h5py keeps a stored byte order only for empty datasets; make it native for all
                array = np.asarray(obj[()])
                out[prefix + key] = array.astype(array.dtype.newbyteorder("="), copy=False)

    with h5py.File(path, "r") as f:
        visit(f, "")
    return out
