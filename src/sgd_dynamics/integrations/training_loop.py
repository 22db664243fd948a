"""Trajectory tracking in a plain training loop with one added line: ``track(model, optimizer)``.

``optimizer.register_step_post_hook`` calls :meth:`TrajectoryTracker.record
<sgd_dynamics.measure.tracker.TrajectoryTracker.record>` after every ``optimizer.step()``, so the
history has one row per optimizer step, however many backward passes (gradient accumulation) each step
took, and needs no change to the loop::

    tracking = track(model, optimizer, directions=eig.eigenvectors.T, tensorboard="runs/sgd")
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        tracking.observe_loss(loss)      # optional: the loss of the coming step (NaN otherwise)
        optimizer.step()
    tracking.close()                     # or use ``with track(...) as tracking:``
    tracking.history                     # the keys of TrajectoryTracker.history

The hook runs right after the update and before the next ``zero_grad``, where the tracker reads the
velocity (002 eq. 2). The optimizer must be ``torch.optim.SGD`` (momentum and weight decay allowed,
no Nesterov, dampening 0), as for the tracker.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from sgd_dynamics.integrations.tensorboard_scalars import TrajectoryScalars
from sgd_dynamics.measure.tracker import TrajectoryTracker


def tracker_with_scalars(model: nn.Module, optimizer: torch.optim.Optimizer, directions: Tensor | None,
                         tensorboard: str | os.PathLike | Any | None, options: dict[str, Any]
                         ) -> tuple[TrajectoryTracker, TrajectoryScalars | None]:
    """A tracker whose flushed rows also go to TensorBoard when ``tensorboard`` is given."""
    scalars = None if tensorboard is None else TrajectoryScalars(tensorboard)
    user_flush: Callable[[dict[str, NDArray]], None] | None = options.pop("on_flush", None)

    def on_flush(rows: dict[str, NDArray]) -> None:
        if scalars is not None:
            scalars.write(rows)
        if user_flush is not None:
            user_flush(rows)

    try:
        tracker = TrajectoryTracker(model, optimizer, directions, on_flush=on_flush, **options)
    except Exception:
        if scalars is not None:
            scalars.close()
        raise
    return tracker, scalars


class StepTracking:
    """A :class:`TrajectoryTracker` driven by the optimizer's step post-hook; made by :func:`track`."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, directions: Tensor | None = None,
                 *, tensorboard: str | os.PathLike | Any | None = None, **tracker_options: Any) -> None:
        self.tracker, self._scalars = tracker_with_scalars(model, optimizer, directions, tensorboard,
                                                           dict(tracker_options))
        self._loss: float | Tensor | None = None
        self._handle = optimizer.register_step_post_hook(self._after_step)
        self.closed = False

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        loss, self._loss = self._loss, None
        self.tracker.record(loss)

    def observe_loss(self, loss: float | Tensor) -> None:
        """The loss to record with the next optimizer step (a tensor is detached, read at the flush)."""
        self._loss = loss.detach() if isinstance(loss, Tensor) else loss

    @property
    def history(self) -> dict[str, NDArray]:
        """:attr:`TrajectoryTracker.history`: one row per recorded optimizer step."""
        return self.tracker.history

    def close(self) -> None:
        """Remove the hook, flush the last rows (to TensorBoard too) and close a writer made here."""
        if self.closed:
            return
        self._handle.remove()
        self.tracker.flush()
        if self._scalars is not None:
            self._scalars.close()
        self.closed = True

    def __enter__(self) -> StepTracking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(model: nn.Module, optimizer: torch.optim.Optimizer, directions: Tensor | None = None, *,
          tensorboard: str | os.PathLike | Any | None = None, **tracker_options: Any) -> StepTracking:
    """Record the trajectory of ``model`` at every ``optimizer.step()`` from now on.

    ``directions`` ``(k, m)`` and ``tracker_options`` (``schedule``, ``snapshot_schedule``,
    ``block_size``, ``record_on``, ``on_flush``) are those of :class:`TrajectoryTracker`; ``tensorboard``
    is a log directory or a ``SummaryWriter`` for the scalars of
    :mod:`~sgd_dynamics.integrations.tensorboard_scalars`. Call :meth:`StepTracking.close` at the end
    (or use it as a context manager).
    """
    return StepTracking(model, optimizer, directions, tensorboard=tensorboard, **tracker_options)
