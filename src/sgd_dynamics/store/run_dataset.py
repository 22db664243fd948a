"""A study's run directory as one ``xarray.Dataset`` with named dimensions (issue 14 section 5).

:func:`open_run` reads the HDF5 arrays of a run directory (layout: :mod:`sgd_dynamics.store.arrays`) and
labels them; nothing is recomputed. Dimensions:

- ``point``: the finished sweep points (``points/<name>/result.h5`` and ``point.json``), with the
  coordinates ``lr``, ``momentum``, ``batch_size``, ``sampler`` and ``name`` (the directory), indexed
  together (``ds.sel(lr=0.01)``, ``ds.sel(lr=0.01, momentum=0.9)``, ``ds.sel(name=...)``), ``weight_decay``
  and ``seed``;
- ``step``: the optimizer step ``k`` (1-based, after the step), the union of the sweep's and the replicas'
  steps; a variable is NaN at the steps where it was not recorded;
- ``mode``: the top Hessian eigenpair ``i`` at ``theta*`` (coordinate ``eigenvalue``);
- ``replica``: the ``R`` replicas resumed from ``theta*`` at the default point (``displacement.h5``);
- ``snapshot``: the measurements of ``Sigma`` of each point (``noise_step`` says at which step).

Variables keep the HDF5 names of the sweep points (``global_sq_displacement`` = ``||theta_k - theta*||^2``,
``local_sq_displacement`` = ``||delta_k||^2``, ``loss``, ``position_projection``, ``velocity_projection``,
``noise_trace`` = ``tr(Sigma)``, ``noise_modes`` = ``s_i``); ``theta_star.h5`` arrays are prefixed
``theta_star_`` and ``displacement.h5`` arrays ``displacement_`` (``replica_sq_displacement`` keeps its
name). The study's configuration is ``ds.attrs["config"]`` (JSON text); diverged points are listed in
``ds.attrs["diverged_points"]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sgd_dynamics._validation import require
from sgd_dynamics.store.arrays import read_arrays

__all__ = ["open_run"]

_EXTRA = "pip install 'sgd-dynamics[xarray]'"
_POINT_INDEX = ("lr", "momentum", "batch_size", "sampler", "name")
_STEP_SERIES = ("local_sq_displacement", "global_sq_displacement", "loss")
_STEP_MODE_SERIES = ("position_projection", "velocity_projection")
_THETA_STAR_DIMS = {"eigenvalues": ("mode",), "residuals": ("mode",), "mode_noise": ("mode",),
                    "eigenvectors": ("parameter", "mode"), "loss": ("split",), "accuracy": ("split",)}
_DISPLACEMENT_DIMS = {"nodes": ("node",), "weights": ("node",), "esd_grid": ("esd_point",),
                      "esd_density": ("esd_point",), "replica_sq_displacement": ("step", "replica")}


def _xarray() -> Any:
    try:
        import xarray
    except ImportError as error:
        raise ImportError(f"open_run needs xarray (and h5netcdf to save the dataset): {_EXTRA}") from error
    return xarray


def _finished_points(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, np.ndarray]], list[str]]:
    """``(point.json records, result arrays, diverged names)``, in directory-name order."""
    records, results, diverged = [], [], []
    for directory in sorted((run_dir / "points").glob("*")) if (run_dir / "points").is_dir() else []:
        if (directory / "result.h5").is_file():
            records.append({**json.loads((directory / "point.json").read_text()), "name": directory.name})
            results.append(read_arrays(directory / "result.h5"))
        elif (directory / "diverged.json").is_file():
            diverged.append(directory.name)
    return records, results, diverged


def _on_steps(values: np.ndarray, at: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``values`` (first axis at the steps ``at``) placed on ``steps``, NaN where not recorded."""
    out = np.full((len(steps), *values.shape[1:]), np.nan)
    out[np.searchsorted(steps, at)] = values
    return out


def _sweep_variables(records, results, steps: np.ndarray) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for name in _STEP_SERIES:
        out[name] = (("point", "step"), np.stack([_on_steps(r[name], r["steps"], steps) for r in results]))
    for name in _STEP_MODE_SERIES:
        out[name] = (("point", "step", "mode"),
                     np.stack([_on_steps(r[name], r["steps"], steps) for r in results]))
    out["noise_trace"] = (("point", "snapshot"), np.stack([r["noise_trace"] for r in results]))
    out["noise_modes"] = (("point", "snapshot", "mode"), np.stack([r["noise_modes"] for r in results]))
    out["noise_step"] = (("point", "snapshot"), np.stack([r["noise_steps"] for r in results]))
    return out


def _file_variables(arrays: dict[str, np.ndarray], prefix: str, dims: dict[str, tuple[str, ...]],
                    steps: np.ndarray | None = None) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Arrays of one file as variables: named dims from ``dims``, else ``step`` for the step series."""
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for name, array in arrays.items():
        key = name if name.startswith("replica_") else f"{prefix}{name}"
        if steps is not None and name == "step":
            continue
        if name in dims:
            named = dims[name]
        elif array.ndim == 0:
            named = ()
        elif steps is not None and array.shape[0] == len(arrays["step"]):
            named = ("step", *(f"{key}_dim{i}" for i in range(1, array.ndim)))
        else:
            named = tuple(f"{key}_dim{i}" for i in range(array.ndim))
        if named[:1] == ("step",):
            array = _on_steps(array, arrays["step"], steps)
        out[key] = (named, array)
    return out


def open_run(run_dir: str | Path) -> Any:
    """The arrays of a study's run directory as an ``xarray.Dataset`` (dimensions in the module docstring).

    >>> ds = open_run("runs/demo")                                    # doctest: +SKIP
    >>> ds.sel(lr=0.01).global_sq_displacement.plot.line(x="step")   # doctest: +SKIP

    Raises:
        ImportError: xarray is not installed (``pip install 'sgd-dynamics[xarray]'``).
        ValueError: ``run_dir`` is not a study's run directory, or it has no finished sweep point.
    """
    xr = _xarray()
    from sgd_dynamics.store._point_index import PointIndex

    run_dir = Path(run_dir)
    require((run_dir / "config.json").is_file(), "run_dir", str(run_dir),
            "a run directory written by `sgd-dynamics study` or `demo` (with config.json)")
    records, results, diverged = _finished_points(run_dir)
    require(bool(records), "run_dir", str(run_dir), "a run directory with at least one finished sweep point")
    theta = read_arrays(run_dir / "theta_star.h5") if (run_dir / "theta_star.h5").is_file() else {}
    parts = read_arrays(run_dir / "displacement.h5") if (run_dir / "displacement.h5").is_file() else {}
    recorded = [r["steps"] for r in results] + [parts.get("step", np.zeros(0, np.int64))]
    steps = np.unique(np.concatenate(recorded)).astype(np.int64)
    variables = {**_sweep_variables(records, results, steps),
                 **_file_variables(theta, "theta_star_", _THETA_STAR_DIMS),
                 **_file_variables(parts, "displacement_", _DISPLACEMENT_DIMS, steps if parts else None)}
    k = results[0]["position_projection"].shape[1]
    coords: dict[str, Any] = {"step": steps, "mode": np.arange(k)}
    for field in ("lr", "momentum", "batch_size", "sampler", "weight_decay", "seed", "name"):
        coords[field] = ("point", np.asarray([r[field] for r in records]))
    if "eigenvalues" in theta:
        coords["eigenvalue"] = ("mode", theta["eigenvalues"])
    if "loss" in theta:
        coords["split"] = ["train", "test"]
    stored = json.loads((run_dir / "config.json").read_text())
    ds = xr.Dataset(variables, coords=coords, attrs={
        "kind": stored.get("kind", ""), "config": json.dumps(stored.get("config", {})),
        "run_dir": str(run_dir.resolve()), "diverged_points": json.dumps(diverged)})
    return ds.set_xindex(list(_POINT_INDEX), PointIndex)
