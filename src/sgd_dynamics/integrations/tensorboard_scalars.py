"""The tracker's recorded rows as TensorBoard scalars.

Tags, at ``global_step`` = the optimizer step ``k`` (002 notation, :mod:`~sgd_dynamics.measure.tracker`):

- ``trajectory/speed``: ``||delta_k||^2 = ||theta_k - theta_{k-1}||^2``, the squared local displacement
  whose stationary mean is the speed of 002 eq. 18 (``local_sq_displacement`` in the history);
- ``trajectory/global_sq_displacement``: ``||theta_k - theta_ref||^2`` (the anomalous diffusion of 002
  section 2);
- ``trajectory/loss`` (rows without a loss are skipped);
- ``trajectory/position_projection/i`` and ``trajectory/velocity_projection/i``: ``q_i . (theta_k -
  theta_ref)`` and ``q_i . v_k`` (002 eqs. 9-10) for each direction ``i``.

TensorBoard stores scalars as float32. The rows arrive a block at a time (the tracker's ``on_flush``),
so the curves lag by at most ``block_size`` steps until the tracking is closed.
"""

from __future__ import annotations

import math
import os
from typing import Any

from numpy.typing import NDArray

from sgd_dynamics._validation import require

_EXTRA = "pip install 'sgd-dynamics[tensorboard]'"


def summary_writer(log_dir: str | os.PathLike) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing event files into ``log_dir``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:   # torch's module imports the tensorboard package
        raise ImportError(f"TensorBoard logging needs the tensorboard package: {_EXTRA}") from error
    return SummaryWriter(log_dir=os.fspath(log_dir))


class TrajectoryScalars:
    """Write recorded rows (a dict with the tracker's history keys) as scalars; see the module docstring.

    ``tensorboard`` is a log directory (a writer is created, and closed by :meth:`close`) or a writer
    with ``add_scalar`` (``SummaryWriter``, Lightning's ``TensorBoardLogger.experiment``), left open.
    """

    def __init__(self, tensorboard: str | os.PathLike | Any, prefix: str = "trajectory") -> None:
        if isinstance(tensorboard, (str, os.PathLike)):
            self.writer, self._owned = summary_writer(tensorboard), True
        else:
            require(callable(getattr(tensorboard, "add_scalar", None)), "tensorboard",
                    type(tensorboard).__name__,
                    "a log directory or a SummaryWriter (an object with add_scalar)")
            self.writer, self._owned = tensorboard, False
        self.prefix = prefix

    def write(self, rows: dict[str, NDArray]) -> None:
        """Add the scalars of every row of ``rows``."""
        p, add = self.prefix, self.writer.add_scalar
        for i, step in enumerate(rows["step"].tolist()):
            add(f"{p}/speed", float(rows["local_sq_displacement"][i]), global_step=step)
            add(f"{p}/global_sq_displacement", float(rows["global_sq_displacement"][i]), global_step=step)
            loss = float(rows["loss"][i])
            if not math.isnan(loss):
                add(f"{p}/loss", loss, global_step=step)
            for j, value in enumerate(rows["position_projection"][i].tolist()):
                add(f"{p}/position_projection/{j}", value, global_step=step)
            for j, value in enumerate(rows["velocity_projection"][i].tolist()):
                add(f"{p}/velocity_projection/{j}", value, global_step=step)

    def close(self) -> None:
        """Flush the writer to its event files; close it if this object created it."""
        self.writer.flush()
        if self._owned:
            self.writer.close()
