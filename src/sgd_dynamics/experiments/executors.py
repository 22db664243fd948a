"""Where the sweep points run: ``--executor local:N`` (N local processes) or ``dask://HOST:PORT`` (a cluster).

Every sweep point is a pure function of its :class:`~sgd_dynamics.experiments.sweep.SweepPoint` and the
study's :class:`~sgd_dynamics.experiments.sweep.StudyContext` writing its own directory
(:func:`~sgd_dynamics.experiments.sweep.run_point`), so any ``concurrent.futures.Executor`` runs the sweep;
this module makes the two the command line names:

- ``local:N``: a ``ProcessPoolExecutor`` with N workers started by ``spawn`` (no forked torch state), one
  torch thread each, the current directory on their import path (entry points resolve as in the parent);
  the context is pickled.
- ``dask://HOST:PORT``: ``distributed.Client(tcp://HOST:PORT).get_executor()`` on a running scheduler (a
  ``dask-jobqueue`` cluster, ``dask scheduler``/``dask worker``, a ``LocalCluster``); the context is
  cloudpickled, so a lambda model builder works. Entry-point modules found in the current directory are
  uploaded to the workers (``Client.upload_file``); the run directory must be on a filesystem every worker
  sees, since each point writes its own sub-directory there. Dask's nanny starts workers with
  ``OMP_NUM_THREADS=1``.

A worker that dies loses at most the point it was running; a rerun recomputes only unfinished points.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sgd_dynamics._validation import require

__all__ = ["ExecutorSpec", "MissingExtraError", "entry_point_files", "open_executor", "parse_executor"]

_FORMS = ("local:N (N >= 1 local worker processes) or dask://HOST:PORT (the address of a running Dask "
          "scheduler)")
_LOCAL = re.compile(r"local:(\d+)")
_DASK = re.compile(r"dask://([^\s:/]+):(\d{1,5})")
_DASK_EXTRA = "pip install 'sgd-dynamics[distributed]'"


class MissingExtraError(ImportError, ValueError):
    """An executor needs an optional extra that is not installed (also a ValueError: the CLI's one line)."""


@dataclass(frozen=True)
class ExecutorSpec:
    """A parsed ``--executor``: ``local`` with ``workers``, or ``dask`` with the scheduler ``address``."""

    kind: str
    workers: int | None = None
    address: str | None = None


def parse_executor(text: str) -> ExecutorSpec:
    """``local:N`` or ``dask://HOST:PORT`` as an :class:`ExecutorSpec`; ``ValueError`` naming --executor."""
    text = text.strip() if isinstance(text, str) else text
    local = _LOCAL.fullmatch(text) if isinstance(text, str) else None
    if local:
        workers = int(local.group(1))
        require(workers >= 1, "--executor", text, f"{_FORMS}; N must be >= 1")
        return ExecutorSpec("local", workers=workers)
    dask = _DASK.fullmatch(text) if isinstance(text, str) else None
    require(dask is not None, "--executor", text, _FORMS)
    port = int(dask.group(2))
    require(1 <= port <= 65535, "--executor", text, f"{_FORMS}; PORT must be in [1, 65535]")
    return ExecutorSpec("dask", address=f"tcp://{dask.group(1)}:{port}")


def _local_worker(cwd: str) -> None:
    """Initialiser of a local worker.

    One torch thread (N workers share the cores), the parent's cwd, and the one-off costs of a first point
    paid at start (:func:`~sgd_dynamics.experiments.sweep.warm_up`).
    """
    import torch

    torch.set_num_threads(1)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    from sgd_dynamics.experiments.sweep import warm_up

    warm_up()


def entry_point_files(specs: Sequence[str], cwd: Path | str | None = None) -> list[Path]:
    """The ``module.py`` files in ``cwd`` of the entry points ``package.module:function`` among ``specs``.

    These are what a remote worker cannot import unless shipped; installed packages are not listed.
    """
    root = Path(cwd or os.getcwd())
    files = []
    for spec in specs:
        if isinstance(spec, str) and ":" in spec:
            path = root / f"{spec.split(':')[0].replace('.', '/')}.py"
            if path.is_file() and path not in files:
                files.append(path)
    return files


def _dask_client(address: str, text: str):
    try:
        from distributed import Client
    except ImportError as error:
        raise MissingExtraError(f"--executor={text!r} needs Dask distributed, which is not installed: "
                                f"{_DASK_EXTRA}") from error
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as error:
        raise ValueError(f"--executor={text!r} is invalid: no Dask scheduler answers at {address} ({error}); "
                         "expected the address of a running scheduler") from None


@contextmanager
def open_executor(spec: ExecutorSpec | str, ship: Sequence[Path] = ()) -> Iterator[Executor]:
    """The executor of ``spec``, shut down (local) or disconnected (Dask) on exit.

    ``ship``: files uploaded to every Dask worker first (:func:`entry_point_files`).
    """
    spec = parse_executor(spec) if isinstance(spec, str) else spec
    if spec.kind == "local":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(spec.workers, mp_context=context, initializer=_local_worker,
                                 initargs=(os.getcwd(),)) as pool:
            yield pool
        return
    client = _dask_client(spec.address, f"dask://{spec.address.removeprefix('tcp://')}")
    try:
        for path in ship:
            client.upload_file(str(path))
        yield client.get_executor()
    finally:
        client.close()
