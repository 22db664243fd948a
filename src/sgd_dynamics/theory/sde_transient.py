"""Time-dependent second moments of the phase-space SDE, evaluated stably in every damping regime.

The continuous model of :mod:`phase_space` (002 eqs. 7-8, ERRATA 002.1/002.2) propagates each mode with
``Phi(t) = exp(-A t)``, ``A = [[0, -1], [omega^2, 2 gamma]]``, and injects velocity noise at the rate
``q = 2 D_vv / kappa = 4 gamma s / kappa``. Two transients are computed here, in per-step units
``u = t / eta`` with ``g = gamma eta``, ``w2 = omega^2 eta^2`` and ``a^2 = g^2 - w2``:

* The SDE's own stationary displacement (ERRATA 002.6, the corrected continuous form of 002 eq. 19)::

      E(x(t + tau) - x(t))^2 = 2 (P_xx - [exp(-A tau) P]_xx) = 2 Var v  int_0^tau phi_x(s) ds,

  ``phi_x(s) = exp(-gamma s) sinh(Omega s) / Omega`` the position response to a unit velocity kick
  (``d Phi_xx / dt = -omega^2 phi_x``), which also holds for ``omega = 0`` where ``P_xx`` does not exist. In
  step units the integral is ``eta^2 J_k``, ``J_k = int_0^k e^{-g u} sinh(a u) / a du`` (``-> 1 / w2``).
  ``P_xx - [Phi P]_xx`` itself cancels catastrophically at short lags and for slow modes, so ``J_k`` is
  evaluated per regime: complex roots as a sum of three non-negative terms,
  ``w2 J = [1 - (1 + gk) e^{-gk}] + 2 e^{-gk} sin^2(theta k / 2) + gk e^{-gk} (1 - sin(theta k)/(theta k))``;
  real roots with ``a k <= 2`` by the positive series ``J = k^2 sum_m (a k)^(2m) M_(2m+1)(g k) / (2m+1)!``,
  ``M_n(z) = int_0^1 v^n e^{-z v} dv``; beyond, ``(1 - Phi_xx) / w2`` once ``Phi_xx <= 1/2``, else the
  difference of the two rates' ``(1 - e^{-lambda k}) / lambda`` (well separated there).
* The covariance from a deterministic start, ``C(t) = int_0^t Phi(s) Q Phi(s)^T ds``, by halving:
  ``C(2 tau) = C(tau) + Phi(tau) C(tau) Phi(tau)^T`` with ``Phi`` from its closed form at every level and
  Gauss-Legendre quadrature on the base interval (``||A tau_0|| <= 1/4``). Every level adds positive
  semi-definite terms, so nothing cancels; Van Loan's block exponential, which multiplies ``e^{gamma t}``
  by ``e^{-gamma t}``, loses all precision after a few tens of steps. ``Cov(x, v) = q phi_x(t)^2 / 2``
  exactly (``d Var x / dt = 2 Cov(x, v)``).
"""

from __future__ import annotations

import numpy as np
import scipy.special
from numpy.typing import NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory.lag_sums import _log_sinhc

_SERIES_TERMS = 13  # (a k)^(2m) / (2m+1)! at a k = 2 and m = 13 is below 1e-18
_SERIES_MAX_AK = 2.0
_BASE_NORM = 0.25  # base interval of the halving: ||A tau_0|| below this
_CHUNK_ELEMENTS = 1 << 20
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(12)


def position_response_integral(g: NDArray[np.float64], w2: NDArray[np.float64],
                               k: NDArray[np.float64]) -> NDArray[np.float64]:
    """``J_k = int_0^k e^{-g u} sinh(a u) / a du`` with ``a^2 = g^2 - w2``, for real ``k >= 0``.

    ``g > 0`` and ``w2 >= 0`` per mode (last axis); ``k`` a column ``(n, 1)``. Exact at critical damping
    (``a = 0``) and for ``w2 = 0``; full relative accuracy at every ``k``.
    """
    k = np.asarray(k, dtype=np.float64)
    shape = np.broadcast_shapes(k.shape, np.shape(g), np.shape(w2))
    gg, ww, kk = (np.broadcast_to(np.asarray(x, dtype=np.float64), shape) for x in (g, w2, k))
    w = np.sqrt(ww)
    a2 = (gg - w) * (gg + w)
    a = np.sqrt(np.abs(a2))
    out = np.zeros(shape)
    under = a2 < 0
    series = ~under & (a * kk <= _SERIES_MAX_AK)
    far = ~under & ~series
    with np.errstate(all="ignore"):
        if np.any(under):
            gk, tk = gg[under] * kk[under], a[under] * kk[under]
            decay = np.exp(-gk)
            pos = (scipy.special.gammainc(2.0, gk) + 2 * decay * np.sin(tk / 2) ** 2
                   + gk * decay * _one_minus_sinc(tk))
            out[under] = pos / ww[under]
        if np.any(series):
            out[series] = kk[series] ** 2 * _positive_series(gg[series] * kk[series], a[series] * kk[series])
        if np.any(far):
            out[far] = _separated_rates(gg[far], ww[far], a[far], kk[far])
    return out


def _positive_series(gk: NDArray[np.float64], ak: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sum_m (a k)^(2m) M_(2m+1)(g k) / (2m+1)!``: real roots, every term >= 0."""
    orders = 2 * np.arange(_SERIES_TERMS) + 1
    moments = _moments(orders, gk)
    coefficients = (ak[:, None] ** 2) ** np.arange(_SERIES_TERMS) / scipy.special.factorial(orders)
    return np.sum(coefficients * moments, axis=1)


def _moments(orders: NDArray[np.int64], z: NDArray[np.float64]) -> NDArray[np.float64]:
    """``M_n(z) = int_0^1 v^n e^{-z v} dv = n! P(n + 1, z) / z^(n+1)`` for ``z >= 0``.

    Shape ``(z, orders)``.
    """
    out = np.empty((z.size, orders.size))
    small = z < 1
    if np.any(small):
        # below 1 the alternating series sum_j (-z)^j / (j! (n + j + 1)) loses at most e^2, where scipy's
        # P(n+1, z) is least accurate
        zs = z[small][:, None]
        term = np.ones_like(zs)
        total = term / (orders + 1)
        for j in range(1, 22):
            term = term * (-zs / j)
            total = total + term / (orders + j + 1)
        out[small] = total
    if np.any(~small):
        zb = z[~small][:, None]
        with np.errstate(under="ignore"):
            out[~small] = (np.exp(scipy.special.gammaln(orders + 1) - (orders + 1) * np.log(zb))
                           * scipy.special.gammainc(orders + 1, zb))
    return out


def _separated_rates(g: NDArray[np.float64], w2: NDArray[np.float64], a: NDArray[np.float64],
                     k: NDArray[np.float64]) -> NDArray[np.float64]:
    """Real rates ``lambda_1 = w2 / (g + a) <= lambda_2 = g + a`` with ``a k > 2``."""
    lam1, lam2 = w2 / (g + a), g + a
    phi_xx = (lam2 * np.exp(-lam1 * k) - lam1 * np.exp(-lam2 * k)) / (2 * a)
    relaxed = (w2 > 0) & (phi_xx <= 0.5)
    safe_w2 = np.where(w2 > 0, w2, 1.0)
    separated = (_decay_integral(lam1, k) - _decay_integral(lam2, k)) / (2 * a)
    return np.where(relaxed, (1 - phi_xx) / safe_w2, separated)


def _decay_integral(lam: NDArray[np.float64], k: NDArray[np.float64]) -> NDArray[np.float64]:
    """``int_0^k e^{-lambda u} du = (1 - e^{-lambda k}) / lambda`` (``k`` at ``lambda = 0``)."""
    z = lam * k
    safe = np.where(z > 0, z, 1.0)
    return k * np.where(z > 0, -np.expm1(-safe) / safe, 1.0)


def _one_minus_sinc(y: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1 - sin(y) / y`` for ``y >= 0``, by its series below 1."""
    out = np.empty_like(y)
    small = y < 1
    ys = y[small] ** 2
    term, total = ys / 6, ys / 6
    for j in range(2, 10):
        term = -term * ys / ((2 * j) * (2 * j + 1))
        total = total + term
    out[small] = total
    yb = y[~small]
    out[~small] = 1 - np.sin(yb) / yb
    return out


def sde_displacement_per_mode(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                              hyper: Hyperparams, steps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Exact SDE ``E(x(t + eta k) - x(t))^2`` per mode from its stationary law; shape ``(len(steps), modes)``.

    ``2 Var v eta^2 J_k`` with ``Var v = s / kappa``: tends to ``2 Var x`` for a confined mode and to free
    diffusion for ``rho + lambda = 0``.
    """
    g, w2 = step_rates(eigenvalues, hyper)
    var_v = np.asarray(noise_variances, dtype=np.float64) / hyper.inverse_temperature
    k = np.asarray(steps, dtype=np.float64)[:, None]
    return 2 * var_v * hyper.lr**2 * position_response_integral(g, w2, k)


def step_rates(eigenvalues: NDArray[np.float64],
               hyper: Hyperparams) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-step damping ``g = gamma eta = (1 - beta)/(1 + beta)`` and ``w2 = omega^2 eta^2``.

    ``w2 = 2 eta h / (1 + beta)``.
    """
    h = hyper.curvature(eigenvalues)
    beta = hyper.momentum
    return np.full_like(h, (1 - beta) / (1 + beta)), 2 * hyper.lr * h / (1 + beta)


def propagator_coefficients(g: NDArray[np.float64], w2: NDArray[np.float64], k: NDArray[np.float64]
                            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``E1 = e^{-g k} cosh(a k)`` and ``E2 = e^{-g k} sinh(a k) / a`` (per-step units), all regimes.

    ``a^2 = g^2 - w2``; for ``a`` imaginary these are ``cos`` and ``sin / theta``; at ``a = 0``,
    ``E2 = k e^{-g k}``.
    """
    w = np.sqrt(w2)
    a2 = (g - w) * (g + w)
    over = a2 >= 0
    a = np.sqrt(np.abs(a2))
    slow = w2 / (g + a)  # g - a without cancellation (overdamped)
    with np.errstate(over="ignore", invalid="ignore"):
        e1_over = 0.5 * (np.exp(-slow * k) + np.exp(-(g + a) * k))
        # small a k: k e^{-gk} sinhc(ak), exact at a = 0; otherwise the two exponentials (no overflow)
        safe_a = np.where(a > 0, a, 1.0)
        e2_over = np.where(a * k < 1, k * np.exp(-g * k + _log_sinhc(a * k)),
                           (np.exp(-slow * k) - np.exp(-(g + a) * k)) / (2 * safe_a))
        e1_under = np.exp(-g * k) * np.cos(a * k)
        e2_under = k * np.exp(-g * k) * np.sinc(a * k / np.pi)
    return np.where(over, e1_over, e1_under), np.where(over, e2_over, e2_under)


def propagator(eigenvalues: NDArray[np.float64], hyper: Hyperparams,
               steps: NDArray[np.float64]) -> NDArray[np.float64]:
    """``exp(-A eta k)`` per step count (rows) and mode, shape ``(len(steps), modes, 2, 2)``, all regimes.

    ``exp(-A t) = exp(-gamma t) [cosh(Omega t) I - sinh(Omega t) / Omega (A - gamma I)]`` (002 eq. 9).
    """
    g, w2 = step_rates(eigenvalues, hyper)
    k = np.asarray(steps, dtype=np.float64)[:, None]
    e1, e2 = propagator_coefficients(g, w2, k)
    eta = hyper.lr
    out = np.empty(e1.shape + (2, 2))
    out[..., 0, 0] = e1 + g * e2
    out[..., 0, 1] = eta * e2
    out[..., 1, 0] = -w2 / eta * e2
    out[..., 1, 1] = e1 - g * e2
    return out


def sde_covariance_over_time(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                         hyper: Hyperparams, steps: NDArray[np.float64]) -> NDArray[np.float64]:
    """``Cov(x, v)`` at ``t = eta k`` from a deterministic start; shape ``(len(steps), modes, 2, 2)``.

    ``int_0^t Phi(s) Q Phi(s)^T ds`` by halving ``t`` to a base interval, Gauss-Legendre there, then
    ``C(2 tau) = C(tau) + Phi(tau) C(tau) Phi(tau)^T`` back up; exact for ``rho + lambda = 0`` too.
    """
    rho = np.asarray(eigenvalues, dtype=np.float64)
    k = np.asarray(steps, dtype=np.float64)
    q = 4 * hyper.damping_rate * np.asarray(noise_variances, dtype=np.float64) / hyper.inverse_temperature
    if k.size == 0:
        return np.zeros((0, rho.size, 2, 2))
    # bound the (steps x nodes x modes) temporaries whatever the sizes
    chunk = max(1, _CHUNK_ELEMENTS // (_GAUSS_NODES.size * max(rho.size, 1)))
    return np.concatenate([_covariance_by_halving(rho, hyper, q, k[i:i + chunk])
                           for i in range(0, k.size, chunk)])


def _covariance_by_halving(rho: NDArray[np.float64], hyper: Hyperparams, q: NDArray[np.float64],
                           k: NDArray[np.float64]) -> NDArray[np.float64]:
    """One block of step counts of :func:`sde_covariance_over_time`."""
    g, w2 = step_rates(rho, hyper)
    rate = float(np.max(g + np.sqrt(w2), initial=1.0))  # bounds the growth rate of every mode, per step
    with np.errstate(divide="ignore"):
        halvings = np.where(k > 0, np.ceil(np.log2(np.maximum(k * rate / _BASE_NORM, 1.0))), 0).astype(int)
    tau = k / 2.0**halvings
    cov = _base_covariance(rho, hyper, q, tau)
    for level in range(int(halvings.max(initial=0))):
        active = halvings > level
        phi = propagator(rho, hyper, tau[active])
        c = cov[active]
        cov[active] = c + phi @ c @ np.swapaxes(phi, -1, -2)
        tau[active] = 2 * tau[active]
    # d Var x / dt = 2 Cov(x, v) gives Cov(x, v) = q phi_x(t)^2 / 2 exactly: full relative accuracy even
    # where it has decayed far below sqrt(Var x Var v), the scale of the doubling's rounding
    phi_x = propagator(rho, hyper, k)[..., 0, 1]
    cov[..., 0, 1] = cov[..., 1, 0] = q / 2 * phi_x**2
    return cov


def _base_covariance(rho: NDArray[np.float64], hyper: Hyperparams, q: NDArray[np.float64],
                     tau: NDArray[np.float64]) -> NDArray[np.float64]:
    """``q eta int_0^tau phi phi^T du`` (step units) by 12-point Gauss-Legendre: exact to rounding here."""
    u = (tau[:, None] * (_GAUSS_NODES + 1) / 2).ravel()
    col = propagator(rho, hyper, u)[..., :, 1]  # (nodes, modes, 2): the response to a velocity kick
    col = col.reshape(tau.size, _GAUSS_NODES.size, rho.size, 2)
    weights = _GAUSS_WEIGHTS[None, :, None] * tau[:, None, None] / 2 * hyper.lr * q
    return np.einsum("snm,snmi,snmj->smij", weights, col, col)
