"""Crash-safe file writes: a file is either absent, its previous complete version, or the new complete one.

Each write goes to a temporary file beside the target, is fsynced, and replaces the target with
``os.replace`` (atomic on POSIX and Windows); the directory is fsynced where the platform allows it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "fsync_path", "replaced_atomically", "write_atomic", "write_json"]


def fsync_path(path: Path) -> None:
    """Flush ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk where the platform can (not every one can fsync a directory)."""
    with contextlib.suppress(OSError):
        fsync_path(path)


@contextlib.contextmanager
def replaced_atomically(path: Path, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and replaces ``path``, on error removed."""
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with replaced_atomically(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON, atomically (non-finite floats become ``null``)."""
    write_atomic(path, json.dumps(_finite(obj), indent=1).encode())


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj or obj in (float("inf"), float("-inf")):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
