"""Both ends of the Hessian spectrum (``which="LA"``, ``"SA"``, ``"BE"``, ``"LM"``) against a dense ``eigh``.

The network is a small MSE regression at its random initialisation, not a minimum, so the Hessian has
clearly negative eigenvalues. Reference: ``numpy.linalg.eigh`` of the dense
``torch.autograd.functional.hessian``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from torch import nn
from torch.func import functional_call

from sgd_dynamics.measure import hessian_eigenpairs, top_eigenpairs

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def saddle(reference_hessian):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.5)             # large weights: a strongly curved, non-convex point
    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = 2.0 * torch.randn(30, 2, generator=g, dtype=torch.float64)
    batches = [(x[:11], y[:11]), (x[11:], y[11:])]

    def mean_loss(p):
        losses = [len(t) * nn.functional.mse_loss(functional_call(model, p, (s,)), t) for s, t in batches]
        return sum(losses) / 30

    h = reference_hessian(model, mean_loss)
    w, u = np.linalg.eigh(h)
    assert w[0] < -0.05 * w[-1]          # genuinely negative curvature at this point
    return model, batches, h, w, u       # w ascending


def _expected(w: np.ndarray, which: str, k: int) -> np.ndarray:
    if which == "LA":
        picked = np.arange(len(w) - k, len(w))
    elif which == "SA":
        picked = np.arange(k)
    elif which == "BE":           # k - k // 2 from the top, k // 2 from the bottom (ARPACK's convention)
        picked = np.r_[np.arange(k // 2), np.arange(len(w) - (k - k // 2), len(w))]
    else:
        picked = np.argsort(np.abs(w))[::-1][:k]
    return np.sort(picked)[::-1]


@pytest.mark.parametrize(("which", "method"), [("LA", "lanczos"), ("SA", "lanczos"), ("BE", "lanczos"),
                                               ("LM", "lanczos"), ("LA", "lobpcg"), ("SA", "lobpcg"),
                                               ("BE", "lobpcg"), ("BE", "arpack"), ("LM", "arpack")])
@pytest.mark.parametrize("k", [3, 4])
def test_each_end_matches_dense_eigh(saddle, which, method, k):
    model, batches, h, w, u = saddle
    picked = _expected(w, which, k)
    res = hessian_eigenpairs(model, nn.MSELoss(), batches, k=k, tol=1e-10, which=which, method=method)
    assert res.which == which
    assert np.all(np.diff(res.eigenvalues) <= 0)                     # documented order: descending
    scale = np.abs(w).max()
    np.testing.assert_allclose(res.eigenvalues, np.sort(w[picked])[::-1], rtol=0, atol=1e-8 * scale)
    vecs = res.eigenvectors
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(k), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(h @ vecs - vecs * res.eigenvalues, axis=0), res.residuals,
                               rtol=1e-6, atol=1e-12)
    assert np.all(res.residuals <= 1e-7 * scale)
    for i, j in enumerate(sorted(picked, key=lambda j: -w[j])):
        gap = min(abs(w[j] - w[n]) for n in (j - 1, j + 1) if 0 <= n < len(w))
        if gap > 1e-3 * scale:
            assert abs(vecs[:, i] @ u[:, j]) == pytest.approx(1.0, abs=1e-6)
    if which in ("SA", "BE"):
        assert res.eigenvalues[-1] == pytest.approx(w[0], abs=1e-8 * scale)   # the most negative, last


def test_both_ends_on_a_dense_operator():
    w = np.array([4.0, -6.0, 1.0, 0.3, -0.2, 2.0, -1.0, 0.1])
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))
    a = spla.aslinearoperator(q @ np.diag(w) @ q.T)
    np.testing.assert_allclose(top_eigenpairs(a, 3, which="SA", ncv=7)[0], [-0.2, -1.0, -6.0], rtol=1e-10)
    np.testing.assert_allclose(top_eigenpairs(a, 3, which="BE", ncv=7)[0], [4.0, 2.0, -6.0], rtol=1e-10)
    np.testing.assert_allclose(top_eigenpairs(a, 1, which="BE", ncv=7)[0], [4.0], rtol=1e-10)
