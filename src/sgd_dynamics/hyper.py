"""The hyperparameters of SGD with momentum and the physical quantities they define.

Update convention (PyTorch's ``torch.optim.SGD`` with ``dampening=0``, ``nesterov=False``)::

    b_{k+1}     = beta * b_k + g(theta_k) + lambda * theta_k
    theta_{k+1} = theta_k - eta * b_{k+1}

The velocity of 002 eq. 2 is ``v = -b``, so ``theta_{k+1} - theta_k = eta * v_{k+1}``.

Continuous model (002 eqs. 5-8, with the noise coefficient of ERRATA 002.1): a particle of mass
``eta (1 + beta) / 2`` with friction constant ``1 - beta`` in the potential
``L(theta) + lambda/2 ||theta||^2``. In phase space, per Hessian eigenmode with curvature
``h = rho + lambda``::

    dx = v dt,    dv = -(omega^2 x + 2 gamma v) dt + sqrt(4 s / (eta S (1 + beta)^2)) dW

with ``gamma = (1 - beta) / (eta (1 + beta))`` (the damping rate), ``omega^2 = 2 h / (eta (1 + beta))``,
damping ratio ``zeta = gamma / omega = (1 - beta) / sqrt(2 eta (1 + beta) h)`` and inverse temperature
``kappa = S (1 - beta^2)``. Time is continuous time ``t = eta * k`` (ERRATA 002.2).

The exact discrete recursion is stable iff ``0 <= eta * h < 2 (1 + beta)`` for every mode (ERRATA 003.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require as _require

Sampler = Literal["with_replacement", "without_replacement"]
SAMPLERS: tuple[str, ...] = ("with_replacement", "without_replacement")


class UnstableModeError(ValueError):
    """A Hessian mode violates the stability limit ``eta * (rho + lambda) < 2 (1 + beta)``."""


@dataclass(frozen=True)
class Hyperparams:
    """SGD hyperparameters, validated once, with the derived physical quantities.

    Parameters
    ----------
    lr : learning rate ``eta > 0``.
    momentum : heavy-ball coefficient ``0 <= beta < 1``.
    batch_size : minibatch size ``S >= 1``.
    weight_decay : L2 coefficient ``lambda >= 0`` (added to the gradient, PyTorch convention).
    dataset_size : number of training examples ``N >= S`` (optional; needed for sampling without replacement).
    sampler : ``"with_replacement"`` (independent minibatches) or ``"without_replacement"`` (epoch shuffling).

    >>> hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=32)
    >>> round(hp.mass, 6), round(hp.damping_rate, 6), round(hp.inverse_temperature, 6)
    (0.095, 0.526316, 6.08)
    >>> Hyperparams(lr=0.1, momentum=1.0)
    Traceback (most recent call last):
    ...
    ValueError: momentum=1.0 is invalid: expected 0 <= momentum < 1
    """

    lr: float
    momentum: float = 0.0
    batch_size: int = 1
    weight_decay: float = 0.0
    dataset_size: int | None = None
    sampler: Sampler = "with_replacement"

    def __post_init__(self) -> None:
        _require(_is_real(self.lr) and math.isfinite(self.lr) and self.lr > 0, "lr", self.lr,
                 "a finite learning rate > 0")
        _require(_is_real(self.momentum) and 0 <= self.momentum < 1, "momentum", self.momentum,
                 "0 <= momentum < 1")
        _require(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", self.batch_size,
                 "an integer >= 1")
        _require(_is_real(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                 "weight_decay", self.weight_decay, "a finite weight decay >= 0")
        if self.dataset_size is not None:
            _require(_is_int(self.dataset_size) and self.dataset_size >= self.batch_size, "dataset_size",
                     self.dataset_size, f"an integer >= batch_size={self.batch_size}")
        _require(self.sampler in SAMPLERS, "sampler", self.sampler, f"one of {', '.join(SAMPLERS)}")
        if self.sampler == "without_replacement":
            _require(self.dataset_size is not None, "dataset_size", None,
                     "an integer >= batch_size when sampler='without_replacement'")

    # --- scalar physical quantities -------------------------------------------------------------
    @property
    def mass(self) -> float:
        """Mass ``eta (1 + beta) / 2`` of the Langevin particle (002 eq. 5)."""
        return self.lr * (1 + self.momentum) / 2

    @property
    def friction(self) -> float:
        """Friction constant ``1 - beta`` of 002 eq. 5."""
        return 1 - self.momentum

    @property
    def damping_rate(self) -> float:
        """``gamma = (1 - beta) / (eta (1 + beta))``.

        Half the drift's velocity coefficient, per unit ``t = eta k``.
        """
        return (1 - self.momentum) / (self.lr * (1 + self.momentum))

    @property
    def inverse_temperature(self) -> float:
        """``kappa = S (1 - beta^2)`` of 002 eq. 8."""
        return self.batch_size * (1 - self.momentum**2)

    @property
    def stability_limit(self) -> float:
        """Largest curvature ``h = rho + lambda`` for which the discrete recursion is stable.

        It is ``2 (1 + beta) / eta``.
        """
        return 2 * (1 + self.momentum) / self.lr

    # --- per-mode quantities --------------------------------------------------------------------
    def curvature(self, eigenvalues: ArrayLike) -> NDArray[np.float64]:
        """Effective curvature ``h = rho + lambda`` of each Hessian eigenvalue ``rho``."""
        return np.asarray(eigenvalues, dtype=np.float64) + self.weight_decay

    def natural_frequency(self, eigenvalues: ArrayLike) -> NDArray[np.float64]:
        """Undamped angular frequency ``omega = sqrt(2 h / (eta (1 + beta)))`` per unit continuous time."""
        return np.sqrt(2 * self.curvature(eigenvalues) / (self.lr * (1 + self.momentum)))

    def damping_ratio(self, eigenvalues: ArrayLike) -> NDArray[np.float64]:
        """``zeta = (1 - beta) / sqrt(2 eta (1 + beta) h)`` (002 eq. 19); ``inf`` for ``h = 0``.

        ``zeta < 1`` underdamped, ``= 1`` critical, ``> 1`` overdamped.
        """
        h = self.curvature(eigenvalues)
        with np.errstate(divide="ignore"):
            return (1 - self.momentum) / np.sqrt(2 * self.lr * (1 + self.momentum) * h)

    def oscillation_frequency(self, eigenvalues: ArrayLike) -> NDArray[np.float64]:
        """Damped angular frequency ``sqrt(omega^2 - gamma^2)`` per unit ``t = eta k`` (0 when overdamped)."""
        w2 = self.natural_frequency(eigenvalues) ** 2
        return np.sqrt(np.maximum(w2 - self.damping_rate**2, 0.0))

    def check_stable(self, eigenvalues: ArrayLike, name: str = "eigenvalues") -> NDArray[np.float64]:
        """Validate a Hessian spectrum against these hyperparameters; return it as float64.

        Raises ``ValueError`` for non-finite or negative curvature and :class:`UnstableModeError` for a
        mode beyond the stability limit ``eta * (rho + lambda) < 2 (1 + beta)``.
        """
        rho = np.atleast_1d(np.asarray(eigenvalues, dtype=np.float64))
        if rho.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of Hessian eigenvalues; got shape {rho.shape}")
        if not np.all(np.isfinite(rho)):
            raise ValueError(f"{name} must be finite; got {rho[~np.isfinite(rho)][:3].tolist()}")
        h = rho + self.weight_decay
        if np.any(h < 0):
            i = int(np.argmin(h))
            raise ValueError(
                f"{name}[{i}]={float(rho[i])!r} gives curvature rho + weight_decay = {float(h[i])!r} < 0: "
                "the quadratic model needs rho + weight_decay >= 0 (a negative mode has no stationary law)")
        limit = self.stability_limit
        if np.any(h >= limit):
            i = int(np.argmax(h))
            raise UnstableModeError(
                f"{name}[{i}]={float(rho[i])!r} is unstable: lr * (rho + weight_decay) = "
                f"{self.lr * h[i]:.6g} must be < 2 * (1 + momentum) = {2 * (1 + self.momentum):.6g}, "
                f"i.e. rho < {limit - self.weight_decay:.6g}")
        return rho


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
