"""Independent references for the theory tests: long-double direct summation and dense matrix algebra."""

from __future__ import annotations

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


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def discrete_reference():
    """The long-double direct-summation reference for the exact discrete displacement."""
    return discrete_displacement_reference
