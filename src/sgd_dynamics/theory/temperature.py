"""The temperature convention of this package: from SGD's ``(eta, S, beta, Sigma)`` to a diffusion and ``T``.

Convention (ERRATA 004.1; chapter 004 mixes ``eta/B`` and ``eta Sigma/(2B)`` — we use only the latter).
SGD with momentum in PyTorch's form (``b <- beta b + g_B``, ``theta <- theta - eta b``), minibatch gradient
noise of covariance ``Sigma / S`` (``Sigma`` the per-example gradient covariance), time ``t = eta k`` as in
:mod:`sgd_dynamics.hyper`. In the overdamped limit the effective step is ``eta / (1 - beta)`` and::

    d theta = -(1 / (1 - beta)) grad L dt + (sqrt(eta / S) / (1 - beta)) Sigma^(1/2) dW,

whose stationary law on a quadratic with ``Sigma = s I`` is Gibbs ``exp(-L / T)`` with the
**effective temperature** (a matrix when ``Sigma`` is not isotropic)::

    T = eta Sigma / (2 S (1 - beta)).

So ``dx = -grad U dt + sqrt(2 T) dW`` (the form used by :mod:`.escape`, :mod:`.fokker_planck` and the Langevin
simulators) is SGD in the rescaled time ``t' = t / (1 - beta)``. The continuous stationary variance of a mode
with curvature ``h`` is ``T / h = eta s / (2 S h (1 - beta))`` (ERRATA 004.2); the exact discrete heavy-ball
value is (derived from ``P = M P M^T + W``; see :func:`discrete_stationary_variance`)::

    Var = eta s (1 + beta) / (S h (1 - beta) (2 (1 + beta) - eta h)),

which reduces to ``eta s / (S h (2 - eta h))`` at ``beta = 0`` (ERRATA 004.2) and to ``T / h`` as
``eta h -> 0``. Only ``eta / S`` (and ``beta``) enters ``T``: the linear scaling rule.

>>> from sgd_dynamics.hyper import Hyperparams
>>> effective_temperature(Hyperparams(lr=0.1, batch_size=10), 2.0)
0.01
>>> round(effective_temperature(Hyperparams(lr=0.1, momentum=0.9, batch_size=10), 2.0), 6)
0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.hyper import Hyperparams


def effective_temperature(hyper: Hyperparams, noise_variance: ArrayLike) -> NDArray[np.float64] | float:
    """``T = eta s / (2 S (1 - beta))`` for per-example gradient noise variance(s) ``s``.

    ``s`` is a scalar or one value per direction.
    """
    s = np.asarray(noise_variance, dtype=np.float64)
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError(f"noise_variance={noise_variance!r} is invalid: expected finite values >= 0")
    T = hyper.lr * s / (2 * hyper.batch_size * (1 - hyper.momentum))
    return float(T) if T.ndim == 0 else T


@dataclass(frozen=True)
class SGDDiffusion:
    """``d theta = -drift_scale grad L dt + G dW`` with ``G G^T = diffusion_matrix``, time ``t = eta k``.

    ``temperature`` is the matrix ``eta Sigma / (2 S (1 - beta)) = diffusion_matrix / (2 drift_scale)``.
    """

    drift_scale: float
    diffusion_matrix: NDArray[np.float64]
    temperature: NDArray[np.float64]


def sgd_diffusion(hyper: Hyperparams, noise_covariance: ArrayLike) -> SGDDiffusion:
    """The SDE of SGD with momentum for a per-example gradient covariance ``Sigma`` (d x d, symmetric PSD)."""
    sigma = np.atleast_2d(np.asarray(noise_covariance, dtype=np.float64))
    if sigma.shape[0] != sigma.shape[1] or not np.allclose(sigma, sigma.T):
        raise ValueError(f"noise_covariance must be a symmetric square matrix; got shape {sigma.shape}")
    if np.linalg.eigvalsh(sigma)[0] < -1e-12 * max(1.0, float(np.abs(sigma).max())):
        raise ValueError("noise_covariance must be positive semi-definite")
    one_minus_beta = 1 - hyper.momentum
    diffusion = hyper.lr * sigma / (hyper.batch_size * one_minus_beta**2)
    return SGDDiffusion(1 / one_minus_beta, diffusion, diffusion * one_minus_beta / 2)


def discrete_stationary_variance(hyper: Hyperparams, curvature: ArrayLike, noise_variance: ArrayLike
                                 ) -> NDArray[np.float64]:
    """Exact stationary ``Var x`` of heavy-ball SGD on ``h x^2 / 2``.

    With per-example noise ``s`` (per mode).
    """
    h = hyper.check_stable(curvature, "curvature")
    if np.any(h <= 0):
        raise ValueError("curvature must be > 0 for a stationary variance")
    s = np.asarray(noise_variance, dtype=np.float64)
    eta, beta, S = hyper.lr, hyper.momentum, hyper.batch_size
    return eta * s * (1 + beta) / (S * h * (1 - beta) * (2 * (1 + beta) - eta * h))


def continuous_stationary_variance(hyper: Hyperparams, curvature: ArrayLike, noise_variance: ArrayLike
                                   ) -> NDArray[np.float64]:
    """``T / h = eta s / (2 S h (1 - beta))`` (ERRATA 004.2 with the momentum factor)."""
    h = np.asarray(curvature, dtype=np.float64)
    if np.any(h <= 0):
        raise ValueError("curvature must be > 0 for a stationary variance")
    return np.asarray(effective_temperature(hyper, noise_variance)) / h
