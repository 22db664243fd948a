"""L~_H and its inverse (Def. 3.3, ERRATA 003.5) and the valley OU moments (App. F, ERRATA 003.4)."""

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

from sgd_dynamics.theory import limiting_drift as ld


def _hessian_with_zero_modes(rng, d=6, zeros=2):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.concatenate([np.zeros(zeros), rng.uniform(0.3, 4.0, d - zeros)])
    return (q * lam) @ q.T


@pytest.mark.parametrize("lr, momentum", [(0.1, 0.9), (1e-3, 0.99), (0.3, 0.2)])
def test_inverse_operator_round_trip_and_identity(lr, momentum):
    rng = np.random.default_rng(7)
    h = _hessian_with_zero_modes(rng)
    frame = ld.valley_frame(h)
    p_t = frame.normal_projector
    a = rng.standard_normal(h.shape)
    m = p_t @ (a + a.T) @ p_t  # an element of W_H
    s = ld.solve_momentum_lyapunov(h, m, lr, momentum)
    np.testing.assert_allclose(ld.apply_momentum_lyapunov(h, s, lr, momentum), m, atol=1e-10)
    np.testing.assert_allclose(ld.solve_momentum_lyapunov(h, h, lr, momentum), p_t / 2, atol=1e-12)
    # Independent solve: the operator as a D^2 x D^2 matrix (Kronecker form), restricted to W_H.
    d = h.shape[0]
    eye = np.eye(d)
    k = 0.5 * lr / (1 - momentum) ** 2
    # vec(HS + SH + k (S H H - 2 H S H + H H S)) with row-major vec: vec(A S B) = (A kron B^T) vec(S)
    op = (
        np.kron(h, eye)
        + np.kron(eye, h.T)
        + k * (np.kron(eye, (h @ h).T) - 2 * np.kron(h, h.T) + np.kron(h @ h, eye))
    )
    basis = np.kron(p_t, p_t)  # projector onto matrices supported on range(H)
    sol = np.linalg.lstsq(op @ basis, m.ravel(), rcond=None)[0]
    np.testing.assert_allclose(basis @ sol, s.ravel(), atol=1e-9)


def test_projectors_and_pseudo_inverse_against_numpy():
    rng = np.random.default_rng(2)
    h = _hessian_with_zero_modes(rng)
    f = ld.valley_frame(h)
    np.testing.assert_allclose(f.pseudo_inverse, np.linalg.pinv(h, rcond=1e-10, hermitian=True), atol=1e-10)
    np.testing.assert_allclose(f.tangent_projector + f.normal_projector, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(h @ f.tangent_projector, 0, atol=1e-12)
    assert np.trace(f.tangent_projector) == pytest.approx(2)


def test_valley_ou_moments_match_errata_and_exact_discrete_lyapunov():
    m = ld.valley_ou_moments(0.1, 0.9, 2.0, 1.0)
    # Numbers quoted in ERRATA 003.4.
    assert (m.position_variance, m.cross_covariance, m.momentum_variance) == pytest.approx(
        (0.26389, 0.27778, 5.5556), abs=5e-5
    )
    for lr, beta, lam, s2 in [(0.1, 0.9, 2.0, 1.0), (0.5, 0.3, 3.0, 0.7), (0.01, 0.99, 0.2, 2.5)]:
        # (Pi, X)_{k+1} = A (Pi, X)_k + b xi with A = [[beta, -lam], [eta beta, 1 - eta lam]].
        a = np.array([[beta, -lam], [lr * beta, 1 - lr * lam]])
        b = np.sqrt(s2) * np.array([1.0, lr])
        cov = solve_discrete_lyapunov(a, np.outer(b, b))
        got = ld.valley_ou_moments(lr, beta, lam, s2)
        np.testing.assert_allclose(
            [got.momentum_variance, got.cross_covariance, got.position_variance],
            [cov[0, 0], cov[0, 1], cov[1, 1]],
            rtol=1e-10,
        )
    # The printed eq. 171 misses (1 + beta): it is off by that factor.
    printed = 0.1**2 * 1.0 / ((1 - 0.9) * 0.1 * 2.0 * (2 * 1.9 - 0.2))
    assert m.position_variance / printed == pytest.approx(1.9)


def test_label_noise_drift_formula_on_a_quadratic_valley():
    # L = (1/2) lam (w_2 - a w_1^2)^2 style is left to the autodiff tests; here: eq. 6 with a hand
    # contraction.
    # L(w) = 0.5 * (1 + w_1^2) * w_2^2: valley w_2 = 0, H = diag(0, 1 + w_1^2), grad Tr H = (2 w_1, 0).
    w1, lr, beta, eps, c = 0.7, 0.05, 0.9, 0.3, 2.0
    h = np.diag([0.0, 1 + w1**2])

    def third(s):  # d/dw Tr(H(w) S) at (w1, 0): H(w) = [[w2^2, 2 w1 w2], [2 w1 w2, 1 + w1^2]]
        return np.array([2 * w1 * s[1, 1], 4 * w1 * s[0, 1]])

    drift = ld.limiting_drift(h, c * h, third, lr, beta, eps)
    expected = -(eps**2) * lr**2 / (4 * (1 - beta) ** 2) * c * np.array([2 * w1, 0.0])
    np.testing.assert_allclose(drift, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ld.valley_frame([[1.0, 2.0], [0.0, 1.0]]), "hessian must be symmetric"),
        (lambda: ld.valley_frame([[-1.0, 0.0], [0.0, 1.0]]), "negative eigenvalue"),
        (lambda: ld.valley_ou_moments(0.1, 0.9, 50.0, 1.0), "curvature=50.0 is invalid"),
        (lambda: ld.valley_ou_moments(0.1, 1.2, 1.0, 1.0), "momentum=1.2 is invalid"),
        (lambda: ld.solve_momentum_lyapunov(np.eye(2), np.eye(3), 0.1, 0.5), "m has shape"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
