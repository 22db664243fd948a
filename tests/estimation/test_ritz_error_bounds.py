"""Ritz value error bounds and the eigenvalue-accuracy stop of thick-restart Lanczos, against ``eigh``."""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics.estimation import lanczos_with_bounds, ritz_error_bounds, thick_restart_lanczos, wanted_ritz


def _symmetric(m: int, spectrum: np.ndarray, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((m, m)))
    return (q * spectrum) @ q.T


def _rayleigh_ritz(a: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values of ``a`` on the span of ``basis`` and their explicit residuals ``||A y - theta y||``."""
    q, _ = np.linalg.qr(basis)
    theta, s = np.linalg.eigh(q.T @ a @ q)
    y = q @ s
    return theta, np.linalg.norm(a @ y - y * theta, axis=0)


@pytest.mark.parametrize("noise", [1e-3, 1e-5, 1e-7])
def test_bounds_cover_the_true_errors_and_are_quadratic(noise):
    # A subspace near the top 6 eigenvectors (a near-pair 4.0 / 3.99 among them) plus 3 random directions.
    m = 120
    rng = np.random.default_rng(3)
    spectrum = np.concatenate([[6.0, 5.0, 4.0, 3.99, 3.0, 2.5], rng.uniform(-1.0, 1.0, m - 6)])
    a = _symmetric(m, spectrum, seed=4)
    dense, q = np.linalg.eigh(a)
    top = q[:, -6:] + noise * rng.standard_normal((m, 6))
    theta, residuals = _rayleigh_ritz(a, np.column_stack([top, rng.standard_normal((m, 3))]))
    bounds = ritz_error_bounds(theta, residuals)
    converged = np.argsort(theta)[-6:]
    errors = np.min(np.abs(theta[converged, None] - dense[None, :]), axis=1)
    assert np.all(errors <= bounds[converged])
    assert np.all(bounds <= residuals)     # never worse than the residual bound itself
    # The quadratic branch: for the isolated top two the bound is r^2 / gap, and tight within 10x of the
    # Kato-Temple bound that knows the true gap to the rest of the spectrum.
    for i in converged[-2:]:
        true_gap = np.sort(np.abs(dense - theta[i]))[1]
        kato_temple = residuals[i] ** 2 / true_gap
        assert errors[list(converged).index(i)] <= kato_temple
        assert bounds[i] < 0.5 * residuals[i]
        assert kato_temple / 10 <= bounds[i] <= 10 * kato_temple


def test_bound_edge_cases():
    np.testing.assert_allclose(ritz_error_bounds(np.array([2.0]), np.array([0.3])), [0.3])
    # A repeated Ritz value has no gap: only the residual bound remains.
    np.testing.assert_allclose(ritz_error_bounds(np.array([1.0, 1.0, 3.0]), np.array([1e-3, 2e-3, 1e-1])),
                               [1e-3, 2e-3, 1e-1 ** 2 / 2.0])


SPECTRA = {
    "outliers": lambda m, rng: np.concatenate([[9.0, 7.0, 6.999, 5.0, -4.0], rng.uniform(-0.5, 1.0, m - 5)]),
    "graded": lambda m, rng: np.concatenate([1.0 / np.arange(1.0, m // 2 + 1),
                                             -1.5 / np.arange(1.0, m - m // 2 + 1)]),
}


@pytest.mark.parametrize("spectrum", list(SPECTRA))
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_eigenvalue_tol_stop_meets_its_accuracy_with_fewer_products(spectrum, which):
    m, k, eigenvalue_tol = 400, 5, 1e-8
    a = _symmetric(m, SPECTRA[spectrum](m, np.random.default_rng(1)), seed=2)
    dense = np.linalg.eigh(a)[0]
    expected = dense[wanted_ritz(dense, k, which)]
    vals, vecs, res, bounds, products = lanczos_with_bounds(lambda x: a @ x, m, k, which=which, ncv=20,
                                                            eigenvalue_tol=eigenvalue_tol)
    errors = np.abs(vals - expected)
    assert np.all(errors <= eigenvalue_tol * np.abs(expected))
    assert np.all(errors <= bounds * (1 + 1e-6) + 1e-13 * np.abs(dense).max())
    assert np.all(bounds <= eigenvalue_tol * np.abs(vals))
    np.testing.assert_allclose(res, np.linalg.norm(a @ vecs - vecs * vals, axis=0), rtol=1e-4,
                               atol=1e-12 * np.abs(dense).max())
    # The same number as a residual tolerance needs more products (residuals converge as sqrt(error)),
    # except where both stop at the first full basis (20 products).
    *_, residual_products = thick_restart_lanczos(lambda x: a @ x, m, k, which=which, ncv=20,
                                                  tol=eigenvalue_tol)
    assert products < residual_products or products == residual_products == 20


@pytest.mark.parametrize("eigenvalue_tol", [None, 1e-6])
def test_repeated_eigenvalue_copies_are_found(eigenvalue_tol):
    # H = I_6 (x) M, as for a linear model with 6 outputs under MSE: every eigenvalue of M six times. A
    # Krylov space from one vector sees one copy until it becomes invariant (after 5 products, then again
    # from each fresh direction): a test before the first basis (20) is full would stop on one copy.
    rng = np.random.default_rng(5)
    g = rng.standard_normal((5, 5))
    mat = np.kron(np.eye(6), g @ g.T / 5)
    top = np.linalg.eigvalsh(mat)[-3:]
    np.testing.assert_allclose(top, top[-1], rtol=1e-12)
    vals, *_ = thick_restart_lanczos(lambda x: mat @ x, 30, 3, tol=1e-8, eigenvalue_tol=eigenvalue_tol)
    np.testing.assert_allclose(vals, top, rtol=1e-6)


def test_bad_eigenvalue_tol():
    with pytest.raises(ValueError, match=r"eigenvalue_tol=0.0 is invalid: expected None or 0 < eigenv"):
        thick_restart_lanczos(lambda x: x, 30, 2, eigenvalue_tol=0.0)
    with pytest.raises(RuntimeError, match="did not converge to eigenvalue_tol=1e-15"):
        thick_restart_lanczos(lambda x: _symmetric(30, np.linspace(0, 1, 30), 0) @ x, 30, 3, ncv=4, maxiter=1,
                              eigenvalue_tol=1e-15)
