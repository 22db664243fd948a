"""Predictions of the limiting-dynamics study from a network's measured top-k spectrum (002 sections 7-8).

Assembled from the per-mode theory (:mod:`sgd_dynamics.theory.diffusion`) on the top-k modes plus the bulk
mode of :func:`sgd_dynamics.theory.spectrum_summary.bulk_spectrum`:

* :func:`displacement_curve` — ``E||theta_k - theta_0||^2`` (002 eq. 19, exact discrete form, ERRATA
  002.2/002.5) and its local exponent ``d log / d log k``; stationary, or from ``theta_0`` drawn from the
  stationary law of the settle hyperparameters with a zero momentum buffer (every resumed run starts so).
* :func:`discrete_speed` — the exact discrete per-mode speed (ERRATA 002.5) of the top-k modes plus the
  continuous ``eta^2 tr(Sigma_rest) / (S (1 - beta^2))`` (002 eq. 18, ERRATA 002.3) of the rest.
* :func:`modified_loss_planes` — the modified loss ``Psi = (U_x x^2 + U_v v^2) / 2`` (002 eqs. 13-16) of two
  modes on a position grid and a velocity grid, and :func:`gibbs_spread_ratio`, the spread ratio
  ``std_1 / std_k = sqrt((rho_k + wd) / (rho_1 + wd))`` that a Gibbs law of the original loss would give.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory.diffusion import (
    global_displacement,
    global_displacement_from_start,
    modified_loss_curvature,
    stationary_moments,
    stationary_speed,
    stationary_speed_from_trace,
)

__all__ = ["discrete_speed", "displacement_curve", "gibbs_spread_ratio", "modified_loss_planes"]


def displacement_curve(rho: NDArray, s: NDArray, mult: int, hyper: Hyperparams, steps: NDArray,
                       settle: Hyperparams | None = None, s_settle: NDArray | None = None
                       ) -> tuple[NDArray, NDArray]:
    """``E||Delta_k||^2`` of the top-k modes plus ``mult`` bulk modes (last entry), and its local exponent.

    Stationary when ``settle`` is None; otherwise from ``theta_0`` drawn from the stationary law of
    ``settle`` (noise ``s_settle``) with a zero momentum buffer. Negative curvatures are clipped to just
    above ``-weight_decay`` (a negative mode has no stationary law).
    """
    rho = np.maximum(rho, -hyper.weight_decay * 0.999)
    if settle is None:
        top = global_displacement(rho[:-1], s[:-1], hyper, steps)
        bulk = global_displacement(rho[-1:], s[-1:], hyper, steps)
    else:
        x0_var = stationary_moments(rho, s_settle, settle).position_variance
        top = global_displacement_from_start(rho[:-1], s[:-1], hyper, steps, x0_var[:-1])
        bulk = global_displacement_from_start(rho[-1:], s[-1:], hyper, steps, x0_var[-1:])
    total = top + mult * bulk
    exponent = np.gradient(np.log(total), np.log(steps.astype(float)))
    return total, exponent


def discrete_speed(rho: NDArray, s: NDArray, trace_sigma: float, hyper: Hyperparams) -> float:
    """Exact discrete speed of the top-k modes plus the continuous speed of the rest of ``tr(Sigma)``.

    ``nan`` when a top mode is unstable at these hyperparameters.
    """
    try:
        top = stationary_speed(np.maximum(rho, 0.0), s, hyper, model="discrete")
    except ValueError:
        return float("nan")
    rest = max(trace_sigma - float(np.sum(s)), 0.0)
    return float(top + stationary_speed_from_trace(rest, hyper))


def gibbs_spread_ratio(rho_1: float, rho_k: float, weight_decay: float) -> float:
    """``std_1 / std_k`` of the Gibbs law ``exp(-L / T)`` of the quadratic original loss on two modes.

    >>> round(gibbs_spread_ratio(4.0, 1.0, 0.0), 12)
    0.5
    """
    return math.sqrt(max(rho_k + weight_decay, 1e-30) / (rho_1 + weight_decay))


def modified_loss_planes(rho: NDArray, s: NDArray, hyper: Hyperparams, grid: NDArray, velocity_extent: float
                         ) -> dict[str, NDArray]:
    """``Psi_x`` on ``grid x grid`` and ``Psi_v`` on a velocity grid of the same size for two modes.

    Returns ``psi_x``, ``psi_v`` and ``velocity_grid`` (NaN planes when a mode has no modified loss).
    """
    try:
        ux, uv = modified_loss_curvature(np.maximum(rho, 0.0), s, hyper)
    except ValueError:
        ux = uv = np.array([np.nan, np.nan])
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    vg = np.linspace(-velocity_extent, velocity_extent, len(grid))
    vx, vy = np.meshgrid(vg, vg, indexing="ij")
    return {"psi_x": 0.5 * (ux[0] * gx**2 + ux[1] * gy**2), "psi_v": 0.5 * (uv[0] * vx**2 + uv[1] * vy**2),
            "velocity_grid": vg}
