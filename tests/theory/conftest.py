"""Independent references for the theory tests: long-double direct summation, dense matrix algebra and
mpmath at 60 digits."""

from __future__ import annotations

from types import SimpleNamespace

import mpmath
import numpy as np

LD = np.longdouble


def discrete_displacement_reference(lr: float, momentum: float, curvature: float, noise: float,
                                    batch_size: int, steps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """E(x_{k+t}-x_k)^2 by summing the exact velocity autocovariances (matrix powers) in long double.

    The stationary (x, v) covariance comes from iterating P <- M P M^T + W to convergence would be slow,
    so the lag-0 column is taken from the discrete Lyapunov solution solved in long double by the
    Kronecker formula. Returns (values, summation condition numbers).
    """
    eta, beta, h = LD(lr), LD(momentum), LD(curvature)
    s = LD(noise) / batch_size
    m = np.array([[1 - eta * h, eta * beta], [-h, beta]], dtype=LD)
    w = s * np.array([[eta**2, eta], [eta, 1]], dtype=LD)
    if curvature > 0:
        kron = np.eye(4, dtype=LD) - np.kron(m, m)
        p = _solve_ld(kron, w.reshape(-1)).reshape(2, 2)
        column = p[:, 1]
    else:
        # x has no stationary law; Var v from the v-recursion alone, Cov(x, v) drops out of c(l) when h = 0
        column = np.array([0, s / (1 - beta**2)], dtype=LD)
    tmax = max(steps)
    c = np.empty(tmax, dtype=LD)
    z = column.copy()
    for lag in range(tmax):
        c[lag] = z[1]
        z = m @ z
    values, cond = [], []
    for t in steps:
        lags = np.arange(1, t)
        terms = (t - lags) * c[1:t]
        total = eta**2 * (t * c[0] + 2 * np.sum(terms))
        values.append(total)
        cond.append(float(eta**2 * (t * c[0] + 2 * np.sum(np.abs(terms))) / total))
    return np.array(values, dtype=float), np.array(cond)


def _solve_ld(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Gaussian elimination with partial pivoting in long double (numpy.linalg has no long double path).
    a = a.copy()
    b = b.copy()
    n = b.size
    for i in range(n):
        p = i + int(np.argmax(np.abs(a[i:, i])))
        a[[i, p]], b[[i, p]] = a[[p, i]], b[[p, i]]
        for j in range(i + 1, n):
            f = a[j, i] / a[i, i]
            a[j, i:] -= f * a[i, i:]
            b[j] -= f * b[i]
    x = np.zeros(n, dtype=LD)
    for i in range(n - 1, -1, -1):
        x[i] = (b[i] - a[i, i + 1:] @ x[i + 1:]) / a[i, i]
    return x


def _sde_parameters(lr: float, momentum: float, batch_size: int, curvature: float, noise: float):
    """Drift ``A``, noise rate ``q`` and stationary ``Var v`` of 002 eqs. 7-8 (ERRATA 002.1) in mpmath."""
    eta, beta = mpmath.mpf(lr), mpmath.mpf(momentum)
    gamma = (1 - beta) / (eta * (1 + beta))
    omega2 = 2 * mpmath.mpf(curvature) / (eta * (1 + beta))
    kappa = batch_size * (1 - beta**2)
    drift = mpmath.matrix([[0, -1], [omega2, 2 * gamma]])
    return eta, gamma, omega2, drift, 4 * gamma * mpmath.mpf(noise) / kappa, mpmath.mpf(noise) / kappa


def sde_displacement_mpmath(lr, momentum, batch_size, curvature, noise, steps) -> float:
    """``2 (P_xx - [expm(-A eta k) P]_xx)`` at 60 digits; for ``h = 0`` the free mode's
    ``2 Var v [t / (2 gamma) - (1 - e^{-2 gamma t}) / (4 gamma^2)]`` (integrated exponential correlation)."""
    with mpmath.workdps(60):
        eta, gamma, omega2, drift, _, var_v = _sde_parameters(lr, momentum, batch_size, curvature, noise)
        t = eta * mpmath.mpf(float(steps))
        if curvature == 0:
            return float(2 * var_v * (t / (2 * gamma) - (1 - mpmath.exp(-2 * gamma * t)) / (4 * gamma**2)))
        return float(2 * var_v / omega2 * (1 - mpmath.expm(-drift * t)[0, 0]))


def sde_covariance_mpmath(lr, momentum, batch_size, curvature, noise, steps) -> np.ndarray:
    """``Cov(x, v)`` from a fixed start at 60 digits: ``P - Phi P Phi^T`` with ``Phi = expm(-A t)``.

    For ``h = 0`` the integrals of ``phi_x = (1 - e^{-2 gamma s}) / (2 gamma)`` and
    ``phi_v = e^{-2 gamma s}``, done by hand.
    """
    with mpmath.workdps(60):
        eta, gamma, omega2, drift, q, var_v = _sde_parameters(lr, momentum, batch_size, curvature, noise)
        t = eta * mpmath.mpf(float(steps))
        if curvature == 0:
            e2, e4 = mpmath.exp(-2 * gamma * t), mpmath.exp(-4 * gamma * t)
            xx = q / (4 * gamma**2) * (t - (1 - e2) / gamma + (1 - e4) / (4 * gamma))
            xv = q / 2 * ((1 - e2) / (2 * gamma)) ** 2
            vv = q * (1 - e4) / (4 * gamma)
            return np.array([[float(xx), float(xv)], [float(xv), float(vv)]])
        phi = mpmath.expm(-drift * t)
        p = mpmath.matrix([[var_v / omega2, 0], [0, var_v]])
        c = p - phi * p * phi.T
        return np.array([[float(c[0, 0]), float(c[0, 1])], [float(c[1, 0]), float(c[1, 1])]])


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def discrete_reference():
    """The long-double direct-summation reference for the exact discrete displacement."""
    return discrete_displacement_reference


@pytest.fixture(scope="session")
def sde_mpmath():
    """60-digit references of the SDE: ``displacement(lr, beta, S, h, s, k)`` and ``covariance(...)``."""
    return SimpleNamespace(displacement=sde_displacement_mpmath, covariance=sde_covariance_mpmath)
