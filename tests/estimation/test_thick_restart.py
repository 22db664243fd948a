"""Thick-restart Lanczos against dense ``numpy.linalg.eigh``;
its Krylov-relation residuals against ``A y - theta y``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics.estimation import thick_restart_lanczos, wanted_ritz


def _symmetric(m: int, spectrum: np.ndarray, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((m, m)))
    return (q * spectrum) @ q.T


SPECTRA = {
    # A few outliers over a bulk (the Hessian's shape), a near-degenerate pair, both signs.
    "outliers": lambda m, rng: np.concatenate([[9.0, 7.0, 6.999, 5.0, -4.0],
                                               rng.uniform(-0.5, 1.0, m - 5)]),
    # Decaying like 1/i towards zero from both ends: several restarts.
    "graded": lambda m, rng: np.concatenate([1.0 / np.arange(1.0, m // 2 + 1),
                                             -1.5 / np.arange(1.0, m - m // 2 + 1)]),
}


@pytest.mark.parametrize("spectrum", list(SPECTRA))
@pytest.mark.parametrize("which", ["LA", "SA", "BE", "LM"])
def test_matches_dense_eigh_with_relation_residuals(spectrum, which):
    m, k, tol = 300, 5, 1e-9
    rng = np.random.default_rng(1)
    a = _symmetric(m, SPECTRA[spectrum](m, rng), seed=2)
    dense = np.linalg.eigh(a)[0]
    calls = [0]

    def matvec(x):
        calls[0] += 1
        return a @ x

    vals, vecs, res, products = thick_restart_lanczos(matvec, m, k, which=which, tol=tol, ncv=20)
    expected = dense[wanted_ritz(dense, k, which)]
    scale = np.abs(dense).max()
    np.testing.assert_allclose(vals, expected, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(k), rtol=0, atol=1e-10)
    explicit = np.linalg.norm(a @ vecs - vecs * vals, axis=0)     # what the relation claims, recomputed
    np.testing.assert_allclose(res, explicit, rtol=1e-4, atol=1e-12 * scale)
    assert np.all(explicit <= tol * np.maximum(np.abs(vals), np.finfo(float).eps ** (2 / 3)) * 1.01)
    assert products == calls[0]


def test_invariant_subspace_and_bad_input():
    a = np.diag(np.r_[np.full(3, 2.0), np.zeros(27)])
    v0 = np.r_[np.ones(3), np.zeros(27)]             # spans an invariant subspace after one step
    vals, vecs, res, _ = thick_restart_lanczos(lambda x: a @ x, 30, 2, v0=v0, ncv=6)
    np.testing.assert_allclose(vals, [2.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(a @ vecs - vecs * vals, axis=0), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match=r"ncv=3 is invalid: expected an integer with 3 < ncv <= 30"):
        thick_restart_lanczos(lambda x: a @ x, 30, 3, ncv=3)
    with pytest.raises(RuntimeError, match="did not converge"):
        thick_restart_lanczos(lambda x: _symmetric(30, np.linspace(0, 1, 30), 0) @ x, 30, 3, tol=1e-14,
                              ncv=4, maxiter=1)
