"""A PyTorch Lightning callback that tracks the SGD trajectory of any ``LightningModule``.

``TrajectoryCallback(directions=None)`` builds a :class:`~sgd_dynamics.measure.tracker.TrajectoryTracker`
(002 eqs. 2, 9-10, 18) over the module's parameters and the trainer's optimizer when training starts.
After ``trainer.fit``, ``callback.history`` has the keys of ``TrajectoryTracker.history``, one row per
optimizer step:

- automatic optimization: an optimizer step post-hook notes each step and the row is recorded at the
  end of that batch, with the loss whose gradient the step took, the sum of the micro-batch losses that
  Lightning divided by ``accumulate_grad_batches`` (the batch loss when there is no accumulation). Batches
  that only accumulate gradients give no row.
- manual optimization (``automatic_optimization = False``): the row is recorded inside the post-hook,
  so every ``optimizer.step()`` counts, with no loss (NaN).

The optimizer must be a single ``torch.optim.SGD`` (momentum and weight decay allowed; no Nesterov,
dampening 0): the velocity is its momentum buffer, so others are refused with a ``ValueError``. Under a
``ddp`` strategy only rank 0 records (``record_on="all"`` for every rank): the ranks hold the same
parameters. ``tensorboard`` (a log directory or a ``SummaryWriter``, e.g. ``TensorBoardLogger.experiment``)
adds the scalars of :mod:`~sgd_dynamics.integrations.tensorboard_scalars`.

Lightning is an optional extra: ``pip install 'sgd-dynamics[lightning]'``.
"""

from __future__ import annotations

import os
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as error:
    raise ImportError("sgd_dynamics.integrations.lightning needs PyTorch Lightning (the package "
                      "'lightning'): pip install 'sgd-dynamics[lightning]'") from error
import torch
from numpy.typing import NDArray
from torch import Tensor

from sgd_dynamics.integrations.tensorboard_scalars import TrajectoryScalars
from sgd_dynamics.integrations.training_loop import tracker_with_scalars
from sgd_dynamics.measure.tracker import TrajectoryTracker

__all__ = ["TrajectoryCallback"]


class TrajectoryCallback(pl.Callback):
    """Track displacements and projections during ``trainer.fit``; see the module docstring.

    ``directions`` ``(k, m)`` rows in the flat order of ``module.parameters()``; ``tracker_options``
    (``schedule``, ``snapshot_schedule``, ``block_size``, ``record_on``, ``on_flush``) go to
    :class:`TrajectoryTracker`.
    """

    def __init__(self, directions: Tensor | None = None, *,
                 tensorboard: str | os.PathLike | Any | None = None, **tracker_options: Any) -> None:
        super().__init__()
        self.directions, self.tensorboard, self.tracker_options = directions, tensorboard, tracker_options
        self.tracker: TrajectoryTracker | None = None
        self._scalars: TrajectoryScalars | None = None
        self._handle: Any = None
        self._pending_steps = 0
        self._step_loss: Tensor | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise ValueError(f"trainer.optimizers has {len(optimizers)} optimizers: expected exactly one "
                             "torch.optim.SGD for TrajectoryCallback")
        optimizer = optimizers[0]
        self._close()
        self.tracker, self._scalars = tracker_with_scalars(pl_module, optimizer, self.directions,
                                                           self.tensorboard, dict(self.tracker_options))
        self._automatic = pl_module.automatic_optimization
        self._pending_steps, self._step_loss = 0, None
        self._handle = optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._automatic:
            self._pending_steps += 1
        else:
            self.tracker.record(None)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self.tracker is None or not self._automatic:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor):   # already divided by accumulate_grad_batches
            loss = loss.detach()
            self._step_loss = loss if self._step_loss is None else self._step_loss + loss
        for _ in range(self._pending_steps):
            self.tracker.record(self._step_loss)
        if self._pending_steps:
            self._pending_steps, self._step_loss = 0, None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self.tracker is not None:
            self.tracker.flush()
        if self._scalars is not None:
            self._scalars.close()
            self._scalars = None

    @property
    def history(self) -> dict[str, NDArray]:
        """``TrajectoryTracker.history`` of the last ``fit``: one row per recorded optimizer step."""
        if self.tracker is None:
            raise RuntimeError("TrajectoryCallback has no history yet: pass it to a Trainer and call fit")
        return self.tracker.history
