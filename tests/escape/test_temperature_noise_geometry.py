import numpy as np
import pytest
from scipy import linalg

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory.noise_geometry import (
    alignment,
    noise_geometry,
    stationary_covariance_continuous,
    stationary_covariance_discrete,
    stationary_variance_per_direction,
    top_eigenspace_overlap,
)
from sgd_dynamics.theory.temperature import (
    continuous_stationary_variance,
    discrete_stationary_variance,
    effective_temperature,
    sgd_diffusion,
)


def heavy_ball_lyapunov_variance(eta, beta, B, h, s):
    """Independent: stationary Var x of x_{k+1} = (1 + beta - eta h) x_k - beta x_{k-1} - eta xi_k (scipy)."""
    A = np.array([[1 + beta - eta * h, -beta], [1.0, 0.0]])
    Q = np.array([[eta**2 * s / B, 0.0], [0.0, 0.0]])
    return linalg.solve_discrete_lyapunov(A, Q)[0, 0]


@pytest.mark.parametrize(("eta", "beta", "h"),
                         [(0.1, 0.0, 4.0), (0.1, 0.5, 4.0), (0.05, 0.9, 20.0), (0.3, 0.0, 6.0)])
def test_discrete_stationary_variance_matches_discrete_lyapunov(eta, beta, h):
    hp = Hyperparams(lr=eta, momentum=beta, batch_size=8)
    got = discrete_stationary_variance(hp, [h], [2.5])[0]
    assert got == pytest.approx(heavy_ball_lyapunov_variance(eta, beta, 8, h, 2.5), rel=1e-12)


def test_small_step_limit_is_the_effective_temperature_over_curvature():
    for beta in (0.0, 0.5, 0.9):
        hp = Hyperparams(lr=1e-6, momentum=beta, batch_size=4)
        T = effective_temperature(hp, 3.0)
        assert T == pytest.approx(1e-6 * 3.0 / (2 * 4 * (1 - beta)), rel=1e-14)
        ratio = discrete_stationary_variance(hp, [2.0], [3.0])[0] / (T / 2.0)
        assert ratio == pytest.approx(1.0, rel=1e-5)
        assert continuous_stationary_variance(hp, [2.0], [3.0])[0] == pytest.approx(T / 2.0, rel=1e-14)


def test_sgd_diffusion_gives_gibbs_temperature_via_the_continuous_lyapunov_equation():
    hp = Hyperparams(lr=0.02, momentum=0.6, batch_size=5)
    H = np.array([[3.0, 0.5], [0.5, 1.0]])
    sigma = 1.7 * np.eye(2)
    sde = sgd_diffusion(hp, sigma)
    # OU: drift -a H x, noise D: stationary C solves (aH) C + C (aH)^T = D.
    C = linalg.solve_continuous_lyapunov(sde.drift_scale * H, sde.diffusion_matrix)
    T = effective_temperature(hp, 1.7)
    np.testing.assert_allclose(C, T * np.linalg.inv(H), rtol=1e-12)
    np.testing.assert_allclose(sde.temperature, T * np.eye(2), rtol=1e-14)


def test_linear_scaling_rule_same_ratio_same_statistics_off_ratio_differs():
    rng_seed = 11
    h, s = 2.0, 1.0

    def simulate(eta, B, steps=3000, n=4000):
        rng = np.random.default_rng(rng_seed)
        x = np.zeros(n)
        for _ in range(steps):
            x = x - eta * (h * x + rng.standard_normal(n) * np.sqrt(s / B))
        return x.var()

    a, b, c = simulate(0.01, 4), simulate(0.02, 8), simulate(0.02, 4)
    assert effective_temperature(Hyperparams(lr=0.01, batch_size=4), s) == effective_temperature(
        Hyperparams(lr=0.02, batch_size=8), s)
    se = np.sqrt(2 / 4000)  # relative standard error of a variance from 4000 Gaussian samples
    assert abs(a / b - 1) < 4 * se * np.sqrt(2)
    assert c / a > 1.8  # double eta / B: double T


def test_continuous_and_discrete_lyapunov_solutions_against_scipy():
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    H = Q @ np.diag([0.5, 1.0, 3.0, 8.0]) @ Q.T
    M = rng.standard_normal((4, 4))
    sigma = M @ M.T + 0.1 * np.eye(4)  # does not commute with H
    eta, B = 0.1, 3
    Cc = stationary_covariance_continuous(H, sigma, eta, B)
    np.testing.assert_allclose(Cc, linalg.solve_continuous_lyapunov(H, eta / B * sigma), rtol=1e-10,
                               atol=1e-14)
    A = np.eye(4) - eta * H
    Cd = stationary_covariance_discrete(H, sigma, eta, B)
    np.testing.assert_allclose(Cd, linalg.solve_discrete_lyapunov(A, eta**2 / B * sigma), rtol=1e-10,
                               atol=1e-14)
    with pytest.raises(ValueError, match="lr=0.3 is unstable"):
        stationary_covariance_discrete(H, sigma, 0.3, B)


def test_per_direction_variances_commuting_case_against_simulation():
    # H = diag(1, 10), Sigma = H (Fisher-like, ERRATA 004.3), eta = 0.1: eta h = 1 in the sharp direction,
    # where the discrete variance eta s / (B h (2 - eta h)) is twice the continuous eta s / (2 B h).
    h = np.array([1.0, 10.0])
    H, sigma = np.diag(h), np.diag(h)
    eta, B = 0.1, 2
    disc = stationary_variance_per_direction(H, sigma, eta, B, discrete=True)
    cont = stationary_variance_per_direction(H, sigma, eta, B, discrete=False)
    np.testing.assert_allclose(disc, eta * h / (B * h * (2 - eta * h)), rtol=1e-12)
    np.testing.assert_allclose(cont, eta * h / (2 * B * h), rtol=1e-12)
    rng = np.random.default_rng(2)
    n = 20000
    x = np.zeros((n, 2))
    for _ in range(300):  # slowest mode relaxes as (1 - 0.1)^(2k): 300 steps is ample
        x = x - eta * (x * h + rng.standard_normal((n, 2)) * np.sqrt(h / B))
    var = x.var(axis=0)
    se = var * np.sqrt(2 / n)
    assert np.all(np.abs(var - disc) < 4 * se)
    assert abs(var[1] - cont[1]) > 20 * se[1]  # the continuous formula is visibly wrong at eta h = 1


def test_noise_geometry_summaries():
    rng = np.random.default_rng(1)
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    H = Q @ np.diag([10.0, 5.0, 1.0, 0.5, 0.1]) @ Q.T
    g = noise_geometry(2 * H, H, k=2)
    assert g.alignment == pytest.approx(1.0) and g.top_overlap == pytest.approx(1.0)
    # Noise concentrated on the flattest direction: overlap with the top-1 Hessian direction is 0.
    u = Q[:, 4]
    flat_noise = np.outer(u, u)
    assert top_eigenspace_overlap(flat_noise, H, 1) == pytest.approx(0.0, abs=1e-20)
    assert alignment(flat_noise, H) == pytest.approx(0.1 / np.linalg.norm([10, 5, 1, 0.5, 0.1]))
    iso = noise_geometry(np.eye(5), H)
    assert iso.anisotropy == pytest.approx(1.0) and iso.effective_rank == pytest.approx(5.0)
    assert noise_geometry(flat_noise, H).anisotropy == pytest.approx(5.0)
    with pytest.raises(ValueError, match="k=6 is invalid"):
        top_eigenspace_overlap(H, H, 6)
