"""Drift and diffusion parts of the displacement of training resumed from a settled ``theta*``.

Exact discrete model.

Replicas resumed from the same ``theta*`` with independent minibatch streams split the measured
``||theta_k - theta*||^2`` into a drift part ``||E[theta_k | theta*] - theta*||^2`` and a diffusion part
``tr Cov(theta_k | theta*)`` (law of total variance). Per Hessian mode of the exact recursion
``z_{k+1} = M z_k + n_k`` (:mod:`discrete`, ERRATA 002.5), with ``z_0 = (x_0, v_0)`` of covariance ``C_0``::

    drift_k     = E_{z_0} [(M^k - I) z_0]_x^2 = [(M^k - I) C_0 (M^k - I)^T]_xx = a_k^T C_0 a_k,
    diffusion_k = [P_k]_xx,   P_k = sum_{j<k} M^j W M^{jT}   (zero at k = 0, the same for every start),

summed over modes; ``W`` is proportional to the mode's noise variance ``s``. The start the study uses is
``theta*`` drawn from the stationary law of the settle hyperparameters with a fresh optimizer: ``x_0`` has the
stationary ``Var x`` of ``start_hyper`` and ``v_0 = 0``. Their sum is
:func:`~sgd_dynamics.theory.diffusion.global_displacement_from_start`; for a start with the stationary law of
``hyper`` itself, velocity included, it is the stationary ``E||Delta_k||^2``
(:func:`~sgd_dynamics.theory.diffusion.global_displacement`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import discrete
from sgd_dynamics.theory.diffusion import _validated, _validated_steps

# (steps x modes) floats evaluated at once: bounds the temporaries whatever the number of modes
_BLOCK_ELEMENTS = 1 << 19
_MIN_MODE_BLOCK = 64


@dataclass(frozen=True)
class DisplacementParts:
    """Drift, diffusion and their sum ``E||theta_k - theta*||^2`` at each step ``k`` (summed over modes)."""

    step: NDArray[np.int64]
    drift: NDArray[np.float64]
    diffusion: NDArray[np.float64]
    total: NDArray[np.float64]


def displacement_decomposition(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                               steps: ArrayLike, start_hyper: Hyperparams | None = None,
                               fresh_buffer: bool = True) -> DisplacementParts:
    """Drift and diffusion parts of ``E||theta_k - theta*||^2`` for each ``k`` in ``steps`` (integers >= 0).

    ``theta*`` is a draw from the exact stationary law of ``start_hyper`` (default: ``hyper``); the run
    resumes with ``hyper``, and with a zeroed momentum buffer unless ``fresh_buffer=False`` (then the buffer
    keeps its stationary law under ``start_hyper``). Everything is linear in the noise variances, so a
    spectral quadrature's weights ``w_i`` can be folded into them (``noise_variances = w_i s(rho_i)``);
    tens of thousands of modes are evaluated in blocks of bounded memory.

    >>> hp = Hyperparams(lr=0.1, momentum=0.9)
    >>> parts = displacement_decomposition([1.0, 5.0], [1.0, 1.0], hp, [0, 10, 10**7])
    >>> parts.drift[0], parts.diffusion[0]  # nothing has moved at k = 0
    (np.float64(0.0), np.float64(0.0))
    >>> bool(np.isclose(parts.drift[-1], parts.diffusion[-1]))  # both -> Var x once theta_k forgets theta*
    True
    """
    rho, s = _validated(eigenvalues, noise_variances, hyper, "discrete")
    start = hyper if start_hyper is None else start_hyper
    require(isinstance(start, Hyperparams), "start_hyper", start_hyper, "a sgd_dynamics.Hyperparams or None")
    require(isinstance(fresh_buffer, bool), "fresh_buffer", fresh_buffer, "True or False")
    try:
        start.check_stable(rho)
    except ValueError as exc:  # the same error type, saying which hyperparameters it is about
        raise type(exc)(f"under start_hyper: {exc}") from None
    _check_start_law(rho, hyper, start)
    k = _validated_steps(steps, minimum=0)
    moments = discrete.discrete_stationary_moments(rho, s, start)
    vx = moments.position_variance
    vb = np.zeros_like(vx) if fresh_buffer else moments.velocity_variance
    x_b = np.zeros_like(vx) if fresh_buffer else -moments.cross_covariance  # b = -v
    drift, diffusion = np.zeros(k.size), np.zeros(k.size)
    block = max(_MIN_MODE_BLOCK, _BLOCK_ELEMENTS // k.size)
    for i in range(0, rho.size, block):
        sel = slice(i, i + block)
        d, f = discrete.displacement_parts_from_start_per_mode(rho[sel], s[sel], hyper, k, vx[sel], vb[sel],
                                                               x_b[sel])
        drift += d.sum(axis=1)
        diffusion += f.sum(axis=1)
    return DisplacementParts(step=k, drift=drift, diffusion=diffusion, total=drift + diffusion)


def _check_start_law(rho: NDArray[np.float64], hyper: Hyperparams, start: Hyperparams) -> None:
    """A mode free under ``start`` (no stationary position) must stay free under ``hyper``."""
    improper = np.flatnonzero((start.curvature(rho) == 0) & (hyper.curvature(rho) > 0))
    if improper.size:
        i = int(improper[0])
        raise ValueError(
            f"eigenvalues[{i}]={float(rho[i])!r} is invalid with start_hyper.weight_decay="
            f"{start.weight_decay!r}: its curvature is 0 under start_hyper, so theta* has no stationary law "
            f"along it, but hyper.weight_decay={hyper.weight_decay!r} pulls it back (an infinite drift); "
            "expected rho + start_hyper.weight_decay > 0 wherever rho + hyper.weight_decay > 0")
