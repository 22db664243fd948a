"""Mixing of the 1-D Langevin diffusion: total variation to stationarity over time against spectral bounds.

Chapter 004, Theorem 7, for ``dx = -U'(x) dt + sqrt(2 T) dW`` with the Fokker–Planck operator of
:mod:`sgd_dynamics.theory.fokker_planck` (reversible, gap ``lambda_1``):

* ``TV(t) = (1/2) sum_i |p_i(t) - pi_i|`` from the operator's exact semigroup ``p(t) = exp(L t) p(0)``;
* the spectral (L^2) bound, rigorous for a reversible generator::

      TV(t) <= (1/2) ||p_t / pi - 1||_{L^2(pi)} <= (1/2) e^{-lambda_1 t} sqrt(chi^2(p_0 || pi)),

  so ``tau_mix(eps) <= (1 / lambda_1) log(sqrt(chi^2(p_0 || pi)) / (2 eps))``.

The chapter states ``lambda_gap >= m / 2`` and ``tau_mix(eps) <= (2 / m) log(1 / eps)`` for ``m``-strongly
convex ``U``. Corrections: the gap bound holds but is loose by 2 (Brascamp–Lieb / Bakry–Émery give
``lambda_1 >= m``, equal for the Ornstein–Uhlenbeck process, ERRATA 004.6); the mixing time cannot be
independent of the start. Its proof needs ``KL(p_0 || pi) <= C_0`` and then drops ``C_0``: from a start
``x_0`` far out compared with the stationary width ``sqrt(T / m)`` the diffusion needs ``~ log(x_0 / sqrt(T
/ m)) / m`` just to arrive, which exceeds ``(2 / m) log(1 / eps)`` once ``x_0 sqrt(m / T)`` is large. The
start-dependent bound above is the corrected statement. Without convexity (a double well) ``lambda_1 ~
e^{-dU / T}``, and TV decays at that rate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from sgd_dynamics._validation import positive, require
from sgd_dynamics.theory.fokker_planck import FokkerPlanck1D

Array = NDArray[np.float64]


def total_variation_over_time(fp: FokkerPlanck1D, start: ArrayLike, times: ArrayLike) -> Array:
    """``TV(p(t), pi) = (1/2) sum_i |p_i(t) - pi_i|`` at each time, ``p(0) = start`` (cell probabilities).

    By the operator's eigen-expansion, which divides by ``pi^(1/2)``: keep the start where ``U / T`` is at
    most a few tens above its minimum (farther out the expansion cancels catastrophically).
    """
    return 0.5 * np.abs(fp.evolve(start, times) - fp.gibbs[None, :]).sum(axis=1)


def chi_square_divergence(fp: FokkerPlanck1D, start: ArrayLike) -> float:
    """``chi^2(p_0 || pi) = sum_i p_i^2 / pi_i - 1``."""
    p = np.asarray(start, dtype=np.float64)
    return float(np.sum(p**2 / fp.gibbs) - 1.0)


def spectral_mixing_bound(fp: FokkerPlanck1D, start: ArrayLike, times: ArrayLike) -> Array:
    """``(1/2) e^{-lambda_1 t} sqrt(chi^2(p_0 || pi))``, an upper bound on ``TV(t)``."""
    t = np.asarray(times, dtype=np.float64)
    return 0.5 * np.exp(-fp.spectral_gap * t) * np.sqrt(chi_square_divergence(fp, start))


def spectral_mixing_time(fp: FokkerPlanck1D, start: ArrayLike, epsilon: float) -> float:
    """``(1 / lambda_1) log(sqrt(chi^2) / (2 eps))`` (0 if the start is already within ``eps``)."""
    eps = positive(epsilon, "epsilon")
    return max(0.0, float(np.log(np.sqrt(chi_square_divergence(fp, start)) / (2 * eps)) / fp.spectral_gap))


def chapter_mixing_time(strong_convexity: float, epsilon: float) -> float:
    """Theorem 7 as written: ``(2 / m) log(1 / eps)``."""
    m, eps = positive(strong_convexity, "strong_convexity"), positive(epsilon, "epsilon")
    return 2 / m * float(np.log(1 / eps))


def mixing_time(times: ArrayLike, total_variation: ArrayLike, epsilon: float) -> float:
    """First time ``TV(t) <= eps`` on a grid (TV is non-increasing along a Markov semigroup), interpolated."""
    eps = positive(epsilon, "epsilon")
    t, tv = np.asarray(times, np.float64), np.asarray(total_variation, np.float64)
    below = np.flatnonzero(tv <= eps)
    require(below.size > 0, "times", "grid", f"a grid reaching a time where TV <= epsilon={eps:g}")
    k = int(below[0])
    if k == 0:
        return float(t[0])
    # log-linear between the bracketing points: TV decays exponentially there
    a, b = np.log(tv[k - 1]), np.log(tv[k])
    return float(t[k - 1] + (t[k] - t[k - 1]) * (a - np.log(eps)) / (a - b))


def gaussian_start(fp: FokkerPlanck1D, mean: float, std: float) -> Array:
    """Cell probabilities of ``N(mean, std^2)`` (cell-centre values, normalised on the grid)."""
    w = np.exp(-0.5 * ((fp.x - mean) / positive(std, "std")) ** 2)
    require(bool(w.sum() > 0), "mean", mean, "a point inside the grid")
    return w / w.sum()


def gaussian_total_variation(mean1: ArrayLike, std1: ArrayLike, mean2: float, std2: float) -> Array:
    """Exact ``TV(N(mean1, std1^2), N(mean2, std2^2))`` from the points where the two densities cross."""
    m1, s1 = np.broadcast_arrays(np.asarray(mean1, np.float64), np.asarray(std1, np.float64))
    out = np.empty(m1.shape)
    for k in np.ndindex(m1.shape):
        a, b = m1[k], s1[k]
        # log N(x; a, b) - log N(x; m2, s2) = qa x^2 + qb x + qc
        qa = 0.5 / std2**2 - 0.5 / b**2
        qb = a / b**2 - mean2 / std2**2
        qc = 0.5 * mean2**2 / std2**2 - 0.5 * a**2 / b**2 + np.log(std2 / b)
        roots = np.roots([qa, qb, qc]) if abs(qa) > 1e-15 * (abs(qb) + abs(qc) + 1) else np.roots([qb, qc])
        cuts = np.sort(roots[np.isreal(roots)].real)
        edges = np.concatenate([[-np.inf], cuts, [np.inf]])
        diff = np.diff(stats.norm.cdf(edges, a, b) - stats.norm.cdf(edges, mean2, std2))
        out[k] = 0.5 * np.abs(diff).sum()
    return out


def ou_total_variation(curvature: float, temperature: float, x0: float, times: ArrayLike,
                       start_std: float = 0.0) -> Array:
    """Exact ``TV`` of the Ornstein–Uhlenbeck process ``U = m x^2 / 2`` from ``N(x0, start_std^2)``.

    ``p_t = N(x0 e^{-m t}, (T/m)(1 - e^{-2 m t}) + start_std^2 e^{-2 m t})`` against ``pi = N(0, T / m)``: the
    independent reference of the strongly convex case, valid however far out ``x0`` is.
    """
    m, T = positive(curvature, "curvature"), positive(temperature, "temperature")
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    decay = np.exp(-m * t)
    var = (T / m) * -np.expm1(-2 * m * t) + start_std**2 * decay**2
    tv = gaussian_total_variation(x0 * decay, np.sqrt(np.maximum(var, 1e-300)), 0.0, float(np.sqrt(T / m)))
    return np.where(var > 0, tv, 1.0)
