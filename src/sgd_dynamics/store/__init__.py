"""The run directory: one format for every study (config, environment, timings, summary, HDF5 arrays, lock).

- :mod:`sgd_dynamics.store.run_directory` — :class:`RunDirectory`: open (validated first, locked, resumable),
  stage timings, ``summary.json``; :func:`read_kind` and :func:`read_config` read a run back, typed.
- :mod:`sgd_dynamics.store.arrays` — HDF5 array files (:func:`write_arrays`, :func:`read_arrays`) and
  nested results (:func:`save_results`, :func:`load_results`), readable with plain ``h5py``.
- :mod:`sgd_dynamics.store.records` — typed results (nested dataclasses) as JSON + HDF5, read back typed.
- :mod:`sgd_dynamics.store.run_dataset` — :func:`open_run`: a study's run directory as an ``xarray.Dataset``
  (xarray is an optional extra, imported when called).
- :mod:`sgd_dynamics.store.files` — atomic writes; :mod:`sgd_dynamics.store.environment` — versions.
"""

# Array files of a run directory: named NumPy arrays in one HDF5 file, written atomically
from sgd_dynamics.store.arrays import (  # isort: skip
    load_results,
    read_arrays,
    save_results,
    write_arrays,
)
# The environment of a run: Python, platform, package versions, threads and git commits; no network
from sgd_dynamics.store.environment import (  # isort: skip
    collect_environment,
)
# Crash-safe file writes: a file is either absent, its previous complete version, or the new complete one
from sgd_dynamics.store.files import (  # isort: skip
    fsync_dir,
    fsync_path,
    replaced_atomically,
    write_atomic,
    write_json,
)
# Typed results in a run directory: a (nested) dataclass stored as ``name.json`` plus ``name.h5``
from sgd_dynamics.store.records import (  # isort: skip
    load_record,
    record_exists,
    save_record,
)
# A study's run directory as one xarray Dataset with named dimensions (xarray imported when called)
from sgd_dynamics.store.run_dataset import (  # isort: skip
    open_run,
)
# The run directory of a study: one format for every study, locked while a process writes, resumable
from sgd_dynamics.store.run_directory import (  # isort: skip
    LAYOUT_VERSION,
    RunDirectory,
    RunLockedError,
    read_config,
    read_kind,
    write_summary,
)

__all__ = [
    # arrays
    "load_results", "read_arrays", "save_results", "write_arrays",
    # environment
    "collect_environment",
    # files
    "fsync_dir", "fsync_path", "replaced_atomically", "write_atomic", "write_json",
    # records
    "load_record", "record_exists", "save_record",
    # run_dataset
    "open_run",
    # run_directory
    "LAYOUT_VERSION", "RunDirectory", "RunLockedError", "read_config", "read_kind", "write_summary",
]
