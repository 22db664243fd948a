"""Simulated trajectories in the shape the real-network tracker produces.

A trajectory holds ``theta_k - mu`` and ``v_k`` in the Hessian eigenbasis for many replicas at a set of
recorded steps, and derives the tracker's quantities from them:

- ``local_sq_displacement``: ``||theta_k - theta_{k-1}||^2``. For discrete SGD this is exactly
  ``eta^2 ||v_k||^2`` (the update ``theta_{k+1} - theta_k = eta v_{k+1}`` of hyper.py), so it is per step even
  when only every ``r``-th step is recorded. For the continuous model (002 eqs. 7-8) it is the analogue
  ``eta^2 ||v(t)||^2`` (002 eq. 18, ERRATA 002.3).
- ``global_sq_displacement``: ``||theta_k - theta_0||^2``.
- ``position_projection`` / ``velocity_projection``: coordinates along the Hessian eigenvectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics.hyper import Hyperparams

TRACKER_KEYS: tuple[str, ...] = (
    "local_sq_displacement", "global_sq_displacement", "position_projection", "velocity_projection")


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Recorded states of ``replicas`` independent runs.

    Attributes
    ----------
    position : ``(n, R, m)`` array, ``theta_k - mu`` in the Hessian eigenbasis.
    velocity : ``(n, R, m)`` array, ``v_k = -b_k`` (minus the PyTorch momentum buffer).
    steps : ``(n,)`` time axis in SGD steps ``k`` (``t / eta`` for continuous-time models, then float).
    hyper : the hyperparameters that produced it.

    >>> hp = Hyperparams(lr=0.5)
    >>> x = np.zeros((3, 2, 1)); v = np.ones((3, 2, 1))
    >>> tr = Trajectory(position=x, velocity=v, steps=np.arange(3), hyper=hp)
    >>> tr.local_sq_displacement().tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """

    position: NDArray[np.float64]
    velocity: NDArray[np.float64]
    steps: NDArray
    hyper: Hyperparams

    def __post_init__(self) -> None:
        if self.position.ndim != 3 or self.velocity.shape != self.position.shape:
            raise ValueError(
                f"position and velocity must both have shape (n, replicas, modes); got {self.position.shape} "
                f"and {self.velocity.shape}")
        if self.steps.shape != (self.position.shape[0],):
            raise ValueError(f"steps must have shape ({self.position.shape[0]},); got {self.steps.shape}")

    @property
    def replicas(self) -> int:
        return self.position.shape[1]

    @property
    def modes(self) -> int:
        return self.position.shape[2]

    @property
    def time(self) -> NDArray[np.float64]:
        """Continuous time ``t = eta * k`` of each record (ERRATA 002.2)."""
        return self.hyper.lr * np.asarray(self.steps, dtype=np.float64)

    def local_sq_displacement(self) -> NDArray[np.float64]:
        """``||theta_k - theta_{k-1}||^2 = eta^2 ||v_k||^2`` at ``steps[1:]``, shape ``(n - 1, R)``."""
        return self.hyper.lr**2 * np.einsum("nrm,nrm->nr", self.velocity[1:], self.velocity[1:])

    def global_sq_displacement(self) -> NDArray[np.float64]:
        """``||theta_k - theta_0||^2`` at ``steps``, shape ``(n, R)``."""
        d = self.position - self.position[0]
        return np.einsum("nrm,nrm->nr", d, d)

    def history(self, replica: int | None = None) -> dict[str, NDArray[np.float64]]:
        """The tracker's dictionary for one replica, or the replica mean of each entry (``replica=None``)."""
        if replica is not None and not -self.replicas <= replica < self.replicas:
            raise ValueError(f"replica={replica!r} is invalid: expected an integer in [0, {self.replicas})")
        out = {
            "step": np.asarray(self.steps),
            "local_sq_displacement": self.local_sq_displacement(),
            "global_sq_displacement": self.global_sq_displacement(),
            "position_projection": self.position,
            "velocity_projection": self.velocity,
        }
        for key in TRACKER_KEYS:
            out[key] = out[key].mean(axis=1) if replica is None else out[key][:, replica]
        return out


@dataclass(frozen=True, eq=False)
class DisplacementSummary:
    """Running displacement statistics of a long run, without the ``(n, R, m)`` states.

    Attributes
    ----------
    steps : ``(n,)`` recorded steps.
    local_sq_displacement : ``(n - 1, R)``, ``||theta_k - theta_{k-1}||^2`` at ``steps[1:]``.
    global_sq_displacement : ``(n, R)``, ``||theta_k - theta_0||^2`` at ``steps``.
    mean_local_sq_displacement : ``(R,)``, the time average of ``||theta_k - theta_{k-1}||^2`` over all steps
        ``k = 1..T`` (not only recorded ones).
    final_position, final_velocity : ``(R, m)`` states at step ``T`` (to resume with ``start=``).
    hyper : the hyperparameters.
    """

    steps: NDArray[np.int64]
    local_sq_displacement: NDArray[np.float64]
    global_sq_displacement: NDArray[np.float64]
    mean_local_sq_displacement: NDArray[np.float64]
    final_position: NDArray[np.float64]
    final_velocity: NDArray[np.float64]
    hyper: Hyperparams

    def history(self, replica: int | None = None) -> dict[str, NDArray[np.float64]]:
        """The displacement entries of the tracker's dictionary (one replica, or the replica mean)."""
        pick = (lambda a: a.mean(axis=1)) if replica is None else (lambda a: a[:, replica])
        return {"step": self.steps, "local_sq_displacement": pick(self.local_sq_displacement),
                "global_sq_displacement": pick(self.global_sq_displacement)}
