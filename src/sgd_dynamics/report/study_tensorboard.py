"""A study's sweep as TensorBoard event files, written from its stored arrays after the run (--tensorboard).

A formatting step like the HTML report: nothing is recomputed. Each finished sweep point
(``points/<name>/result.h5``) becomes the TensorBoard run ``RUN_DIR/tensorboard/<name>`` with the tags of
:class:`~sgd_dynamics.integrations.tensorboard_scalars.TrajectoryScalars` at ``global_step`` = the
optimizer step ``k`` (``trajectory/speed`` = ``||delta_k||^2``, the squared local displacement whose
stationary mean is the speed of 002 eq. 18; ``trajectory/global_sq_displacement`` =
``||theta_k - theta*||^2``; ``trajectory/loss``; the projections on the Hessian eigenvectors, 002 eqs. 9-10)
and ``trajectory/trace_sigma`` = ``tr(Sigma)`` at the noise snapshots. A point is written into a
temporary directory renamed when complete, so an interrupted call is resumed by calling again, and a point
already written is skipped. ``tensorboard --logdir RUN_DIR/tensorboard`` shows every point side by side.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from sgd_dynamics.integrations.tensorboard_scalars import TrajectoryScalars
from sgd_dynamics.store import read_arrays

__all__ = ["write_study_tensorboard"]


def _write_point(result: Path, log_dir: Path) -> None:
    arrays = read_arrays(result)
    scalars = TrajectoryScalars(log_dir)
    try:
        scalars.write({"step": arrays["steps"], **{k: arrays[k] for k in (
            "local_sq_displacement", "global_sq_displacement", "loss", "position_projection",
            "velocity_projection")}})
        for step, trace in zip(arrays["noise_steps"].tolist(), arrays["noise_trace"].tolist(), strict=True):
            if np.isfinite(trace):
                scalars.writer.add_scalar(f"{scalars.prefix}/trace_sigma", trace, global_step=step)
    finally:
        scalars.close()


def write_study_tensorboard(run_dir: Path | str) -> Path:
    """Write ``RUN_DIR/tensorboard/<point>`` for every finished point not yet written; returns the log dir."""
    run_dir = Path(run_dir)
    out = run_dir / "tensorboard"
    out.mkdir(exist_ok=True)
    for result in sorted(run_dir.glob("points/*/result.h5")):
        name = result.parent.name
        if (out / name).is_dir():
            continue
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)   # a leftover of an interrupted call
        _write_point(result, tmp)
        tmp.rename(out / name)
    return out
