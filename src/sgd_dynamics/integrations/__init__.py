"""Tracking in the user's training stack: a plain-loop hook, TensorBoard scalars, a Lightning callback.

- :func:`~sgd_dynamics.integrations.training_loop.track` (``track(model, optimizer)``): one line added
  to any loop that calls ``optimizer.step()``; a step post-hook records one row per optimizer step.
- :class:`~sgd_dynamics.integrations.tensorboard_scalars.TrajectoryScalars`: the recorded rows as
  TensorBoard scalars (needs ``pip install sgd-dynamics[tensorboard]``).
- ``sgd_dynamics.integrations.lightning.TrajectoryCallback``: the same for a PyTorch Lightning
  ``Trainer`` (needs ``pip install sgd-dynamics[lightning]``; not imported here, so this package works
  without Lightning).

All of them drive :class:`~sgd_dynamics.measure.tracker.TrajectoryTracker` (002 eqs. 2, 9-10, 18) and
give its ``history`` keys.
"""

# The tracker's recorded rows as TensorBoard scalars
from sgd_dynamics.integrations.tensorboard_scalars import (  # isort: skip
    summary_writer,
    TrajectoryScalars,
)
# Trajectory tracking in a plain training loop with one added line: ``track(model, optimizer)``
from sgd_dynamics.integrations.training_loop import (  # isort: skip
    tracker_with_scalars,
    StepTracking,
    track,
)

__all__ = [
    # tensorboard_scalars
    "summary_writer", "TrajectoryScalars",
    # training_loop
    "tracker_with_scalars", "StepTracking", "track",
]
