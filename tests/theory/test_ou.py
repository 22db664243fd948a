"""The general OU process against Kronecker solves, quadrature, finite differences and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from sgd_dynamics.theory import OrnsteinUhlenbeck

# The paper's Fig. 3 kind of example: a 2-D drift from an anisotropic loss with anisotropic diffusion.
FIG3_DRIFT = np.array([[1.0, 0.0], [0.0, 0.1]]) @ np.array([[1.0, 0.6], [0.6, 1.0]])
FIG3_DIFFUSION = np.array([[1.0, 0.0], [0.0, 0.05]])


@pytest.fixture
def fig3() -> OrnsteinUhlenbeck:
    return OrnsteinUhlenbeck(drift=FIG3_DRIFT, diffusion=FIG3_DIFFUSION, inverse_temperature=2.0,
                             mean=np.array([0.5, -1.0]))


def test_lyapunov_solution_by_kronecker(fig3):
    a, d = fig3.drift, fig3.diffusion
    n = a.shape[0]
    vec_b = np.linalg.solve(np.kron(np.eye(n), a) + np.kron(a, np.eye(n)), (2 * d).reshape(-1))
    np.testing.assert_allclose(fig3.lyapunov_solution(), vec_b.reshape(n, n), rtol=1e-12)


def test_covariance_over_time_by_quadrature(fig3):
    a, noise = fig3.drift, 2 * fig3.diffusion / fig3.inverse_temperature
    for t in (0.3, 2.0, 15.0):
        ref, _ = scipy.integrate.quad_vec(
            lambda u: scipy.linalg.expm(-a * u) @ noise @ scipy.linalg.expm(-a.T * u), 0, t, epsabs=1e-13)
        np.testing.assert_allclose(fig3.covariance_at(t), ref, rtol=1e-8, atol=1e-12)
    # cross-covariance Cov(x_s, x_t) = E[(x_s - m_s)(x_t - m_t)^T] propagates the later time by
    # exp(-A (s - t))
    np.testing.assert_allclose(fig3.cross_covariance(1.0, 3.0),
                               scipy.linalg.expm(-a * 2.0) @ fig3.covariance_at(1.0), rtol=1e-12)
    np.testing.assert_allclose(fig3.covariance_at(200.0), fig3.stationary_covariance(), rtol=1e-10)


def test_decomposition_properties(fig3):
    u, q = fig3.decomposition()
    np.testing.assert_allclose(q, -q.T, atol=1e-14)
    np.testing.assert_allclose((fig3.diffusion + q) @ u, fig3.drift, rtol=1e-12, atol=1e-14)
    assert np.all(np.linalg.eigvalsh(u) > 0)
    # anisotropic D with this A breaks detailed balance: ||Q|| / ||A B|| from an independent Kronecker B
    a, d = fig3.drift, fig3.diffusion
    b = np.linalg.solve(np.kron(np.eye(2), a) + np.kron(a, np.eye(2)), (2 * d).reshape(-1)).reshape(2, 2)
    expected = np.linalg.norm(a @ b - d) / np.linalg.norm(a @ b)
    assert fig3.detailed_balance_violation() == pytest.approx(expected, rel=1e-10)
    assert expected > 0.01


def test_current_is_divergence_free_and_nonzero(fig3):
    rng = np.random.default_rng(3)
    h = 1e-5
    for x in rng.normal(fig3.mean, 1.0, size=(5, 2)):
        div = sum((fig3.probability_current(x + h * e)[i] - fig3.probability_current(x - h * e)[i]) / (2 * h)
                  for i, e in enumerate(np.eye(2)))
        scale = np.linalg.norm(fig3.probability_current(x)) + 1e-300
        assert abs(div) < 1e-6 * max(scale, fig3.stationary_density(x))
        assert scale > 0


def test_stationary_density_solves_fokker_planck(fig3):
    """div(A (x - mu) p + kappa^-1 D grad p) = 0 at stationarity, by finite differences."""
    kinv = 1 / fig3.inverse_temperature

    def flux(x):
        p = fig3.stationary_density(x)
        grad = np.array([(fig3.stationary_density(x + 1e-5 * e) - fig3.stationary_density(x - 1e-5 * e))
                         / 2e-5 for e in np.eye(2)])
        return fig3.drift @ (x - fig3.mean) * p + kinv * fig3.diffusion @ grad

    x = np.array([0.8, -0.5])
    div = sum((flux(x + 1e-3 * e)[i] - flux(x - 1e-3 * e)[i]) / 2e-3 for i, e in enumerate(np.eye(2)))
    assert abs(div) < 1e-5


def test_isotropic_diffusion_with_symmetric_drift_is_in_detailed_balance():
    ou = OrnsteinUhlenbeck(drift=np.array([[2.0, 0.3], [0.3, 1.0]]), diffusion=0.7 * np.eye(2))
    assert ou.detailed_balance_violation() < 1e-12
    # and the modified loss is then the original one: U = A / D
    u, _ = ou.decomposition()
    np.testing.assert_allclose(u, ou.drift / 0.7, rtol=1e-12)


def test_symmetric_drift_eq30_corrected():
    """ERRATA 002.4: for symmetric A = V diag(l) V^T, Q~_ij = (l_i - l_j)/(l_i + l_j) D~_ij in A's basis."""
    rng = np.random.default_rng(0)
    v, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    lam = np.array([0.5, 1.5, 4.0])
    g = rng.standard_normal((3, 3))
    ou = OrnsteinUhlenbeck(drift=v @ np.diag(lam) @ v.T, diffusion=g @ g.T + 0.1 * np.eye(3))
    _, q = ou.decomposition()
    d_t = v.T @ ou.diffusion @ v
    expected = (lam[:, None] - lam[None, :]) / (lam[:, None] + lam[None, :]) * d_t
    np.testing.assert_allclose(v.T @ q @ v, expected, atol=1e-12)


def test_monte_carlo_stationary_covariance(fig3):
    """Exact one-step transitions of the OU process sampled independently of the class."""
    rng = np.random.default_rng(0)
    dt, steps, replicas = 0.5, 80, 4000
    a, noise = fig3.drift, 2 * fig3.diffusion / fig3.inverse_temperature
    phi = scipy.linalg.expm(-a * dt)
    q, _ = scipy.integrate.quad_vec(lambda u: scipy.linalg.expm(-a * u) @ noise @ scipy.linalg.expm(-a.T * u),
                                    0, dt)
    chol = np.linalg.cholesky(q)
    x = np.zeros((replicas, 2))
    for _ in range(steps):
        x = x @ phi.T + rng.standard_normal((replicas, 2)) @ chol.T
    emp = np.cov(x.T)
    target = fig3.stationary_covariance()
    # standard error of a sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
    se = np.sqrt((np.outer(np.diag(target), np.diag(target)) + target**2) / replicas)
    assert np.all(np.abs(emp - target) < 5 * se)


@pytest.mark.parametrize(("drift", "diffusion", "match"), [
    (np.array([[1.0, 0.0], [0.0, -0.1]]), np.eye(2), "stable"),
    (np.eye(2), np.array([[1.0, 0.0], [0.0, -1.0]]), "positive semi-definite"),
    (np.eye(2), np.array([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
    (np.eye(3), np.eye(2), "shape"),
])
def test_invalid_processes_are_rejected(drift, diffusion, match):
    with pytest.raises(ValueError, match=match):
        OrnsteinUhlenbeck(drift=drift, diffusion=diffusion)
