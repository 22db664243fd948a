"""The run directory: one format for every study (config, environment, timings, summary, HDF5 arrays, lock).

- :mod:`sgd_dynamics.store.run_directory` — :class:`RunDirectory`: open (validated first, locked, resumable),
  stage timings, ``summary.json``; :func:`read_kind` and :func:`read_config` read a run back, typed.
- :mod:`sgd_dynamics.store.arrays` — HDF5 array files (:func:`write_arrays`, :func:`read_arrays`) and
  nested results (:func:`save_results`, :func:`load_results`), readable with plain ``h5py``.
- :mod:`sgd_dynamics.store.records` — typed results (nested dataclasses) as JSON + HDF5, read back typed.
- :mod:`sgd_dynamics.store.files` — atomic writes; :mod:`sgd_dynamics.store.environment` — versions.
"""

from sgd_dynamics.store.arrays import load_results, read_arrays, save_results, write_arrays
from sgd_dynamics.store.environment import collect_environment
from sgd_dynamics.store.files import write_atomic, write_json
from sgd_dynamics.store.records import load_record, record_exists, save_record
from sgd_dynamics.store.run_directory import (
    LAYOUT_VERSION,
    RunDirectory,
    RunLockedError,
    read_config,
    read_kind,
    write_summary,
)

__all__ = [
    "LAYOUT_VERSION",
    "RunDirectory",
    "RunLockedError",
    "collect_environment",
    "load_record",
    "load_results",
    "read_arrays",
    "read_config",
    "read_kind",
    "record_exists",
    "save_record",
    "save_results",
    "write_arrays",
    "write_atomic",
    "write_json",
    "write_summary",
]
