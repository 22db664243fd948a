"""Continuous model against scipy's continuous Lyapunov solver, expm, direct summation and the OU class."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from sgd_dynamics import Hyperparams
from sgd_dynamics.theory import (
    OrnsteinUhlenbeck,
    global_displacement,
    phase_space,
    sde_transient,
    sgd_ornstein_uhlenbeck,
)


def _critical_rho(hp: Hyperparams) -> float:
    # zeta = 1  <=>  (1 - beta)^2 = 2 eta (1 + beta) h
    return (1 - hp.momentum) ** 2 / (2 * hp.lr * (1 + hp.momentum)) - hp.weight_decay


def test_errata_002_5_continuous_values():
    # ERRATA 002.5: continuous formula gives 23.04, 4.593, -0.141, 0.759 at lags 1, 5, 20, 50
    # (s = sigma^2 rho = 5)
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=1)
    c = phase_space.velocity_autocorrelation(np.array([5.0]), hp, np.array([1, 5, 20, 50]))[:, 0]
    np.testing.assert_allclose(c * 5.0 / hp.inverse_temperature, [23.04, 4.593, -0.141, 0.759], atol=6e-3)


def test_errata_002_1_stationary_velocity_variance():
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=8)
    rho, s = np.array([0.3, 2.0]), np.array([1.5, 0.2])
    drifts, diffusions = phase_space.drift_matrix(rho, hp), phase_space.diffusion_matrix(s, hp)
    b = [scipy.linalg.solve_continuous_lyapunov(a, 2 * d / hp.inverse_temperature)
         for a, d in zip(drifts, diffusions, strict=True)]
    got = phase_space.sde_stationary_moments(rho, s, hp).as_matrices()
    np.testing.assert_allclose(got, np.array(b), rtol=1e-10, atol=1e-15)
    # E[v v^T] = Sigma / (S (1 - beta^2))
    np.testing.assert_allclose(got[:, 1, 1], s / (8 * (1 - 0.81)), rtol=1e-14)


@pytest.mark.parametrize("regime", ["under", "critical", "near-critical", "over", "zero"])
def test_mean_trajectory_equals_matrix_exponential(regime):
    hp = Hyperparams(lr=0.05, momentum=0.8, batch_size=1)
    rc = _critical_rho(hp)
    rho = {"under": 10 * rc, "critical": rc, "near-critical": rc * (1 + 1e-9), "over": 0.01 * rc,
           "zero": 0.0}[regime]
    steps = np.array([0.0, 1.0, 3.5, 40.0, 400.0])
    x, v = phase_space.sde_mean_trajectory(np.array([rho]), hp, steps, np.array([0.7]), np.array([-0.2]))
    a = phase_space.drift_matrix(np.array([rho]), hp)[0]
    for j, k in enumerate(steps):
        z = scipy.linalg.expm(-a * hp.lr * k) @ np.array([0.7, -0.2])
        np.testing.assert_allclose([x[j, 0], v[j, 0]], z, rtol=1e-9, atol=1e-13)


def test_mean_trajectory_has_no_overflow_at_long_times():
    hp = Hyperparams(lr=0.1, momentum=0.99, batch_size=1)
    rho = np.array([0.0, 1e-12, 1e-6, _critical_rho(hp), 1.0, 30.0])
    x, v = phase_space.sde_mean_trajectory(rho, hp, np.array([1e6, 1e9, 1e12]), np.ones(6), np.ones(6))
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(v))


@settings(max_examples=40, deadline=None)
@given(rho_scale=st.sampled_from([0.0, 1e-10, 1e-3, 0.5, 1.0, 1.0 + 1e-8, 3.0, 100.0]),
       lr=st.floats(1e-3, 0.5), momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]))
def test_eq19_sampled_sum_equals_direct_sum_of_expm_correlations(rho_scale, lr, momentum):
    hp = Hyperparams(lr=lr, momentum=momentum, batch_size=2)
    rho = min(rho_scale * _critical_rho(hp), 0.99 * hp.stability_limit)
    steps = [1, 2, 30, 64, 65, 300]
    # independent: C(eta l) = [exp(-A eta l) Sigma_ss]_vv by expm, summed directly
    a = phase_space.drift_matrix(np.array([rho]), hp)[0]
    c0 = 1.3 / hp.inverse_temperature
    step = scipy.linalg.expm(-a * lr)
    column, c = np.array([0.0, c0]), []
    for _ in range(max(steps)):
        c.append(column[1])
        column = step @ column
    c = np.array(c)
    ref = [lr**2 * (t * c[0] + 2 * np.sum((t - np.arange(1, t)) * c[1:t])) for t in steps]
    got = global_displacement([rho], [1.3], hp, steps, model="eq19_sampled_sum")
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_covariance_over_time_equals_lyapunov_transient():
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=4)
    rho, s = np.array([0.2, 1.0, 20.0]), np.array([1.0, 2.0, 0.5])
    got = sde_transient.sde_covariance_over_time(rho, s, hp, np.array([0.0, 3.0, 50.0]))
    drifts, diffusions = phase_space.drift_matrix(rho, hp), phase_space.diffusion_matrix(s, hp)
    for i, (a, d) in enumerate(zip(drifts, diffusions, strict=True)):
        b = scipy.linalg.solve_continuous_lyapunov(a, 2 * d / hp.inverse_temperature)
        for j, k in enumerate([0.0, 3.0, 50.0]):
            e = scipy.linalg.expm(-a * hp.lr * k)
            np.testing.assert_allclose(got[j, i], b - e @ b @ e.T, rtol=1e-8, atol=1e-13)


def test_covariance_over_time_zero_mode_by_quadrature():
    hp = Hyperparams(lr=0.1, momentum=0.5, batch_size=1)
    t_end = 0.1 * 20
    got = sde_transient.sde_covariance_over_time(np.array([0.0]), np.array([1.0]), hp, np.array([20.0]))[0, 0]
    a = phase_space.drift_matrix(np.array([0.0]), hp)[0]
    qn = 2 * phase_space.diffusion_matrix(np.array([1.0]), hp)[0] / hp.inverse_temperature
    ref, _ = scipy.integrate.quad_vec(lambda u: scipy.linalg.expm(-a * u) @ qn @ scipy.linalg.expm(-a.T * u),
                                      0, t_end)
    np.testing.assert_allclose(got, ref, rtol=1e-8)


# Damping regimes of one mode, as a fraction of the critical curvature (zeta = 1) or of the stability edge
REGIMES = {"zero": 0.0, "tiny": 1e-10, "over": 1e-2, "near-critical over": 1 - 1e-7, "critical": 1.0,
           "near-critical under": 1 + 1e-7, "under": 10.0, "edge": None}
LONG_STEPS = np.array([0.25, 1, 2, 3, 10, 64, 1000, 1e4, 1e5, 1e6])


def _regime_curvature(hp: Hyperparams, regime: str) -> float:
    if REGIMES[regime] is None:
        return 0.999 * hp.stability_limit
    return min(REGIMES[regime] * (_critical_rho(hp) + hp.weight_decay), 0.5 * hp.stability_limit)


@pytest.mark.parametrize("regime", list(REGIMES))
def test_covariance_over_time_matches_mpmath_up_to_a_million_steps(regime, sde_mpmath):
    """Defect 1 (issue 12): Van Loan's block exponential returned Var v = -4e5 at k = 40 and NaN at 1e6."""
    for lr, beta in [(0.01, 0.0), (0.1, 0.5), (0.5, 0.9), (0.1, 0.999)]:
        hp = Hyperparams(lr=lr, momentum=beta, batch_size=2)
        h = _regime_curvature(hp, regime)
        got = sde_transient.sde_covariance_over_time(np.array([h]), np.array([0.7]), hp, LONG_STEPS)[:, 0]
        for j, k in enumerate(LONG_STEPS):
            ref = sde_mpmath.covariance(lr, beta, 2, h, 0.7, k)
            where = f"lr={lr} beta={beta} h={h} k={k}"
            np.testing.assert_allclose(np.diag(got[j]), np.diag(ref), rtol=1e-12, err_msg=where)
            # Cov(x, v) decays like e^{-2 gamma t} far below sqrt(Var x Var v); near critical damping its
            # relative value at k = 1e3 moves by ~k^2 eps when h moves by one rounding, so an absolute floor
            # on the correlation coefficient as well
            scale = np.sqrt(ref[0, 0] * ref[1, 1])
            assert abs(got[j, 0, 1] - ref[0, 1]) <= 1e-12 * abs(ref[0, 1]) + 1e-13 * scale, where
            assert got[j, 0, 1] == got[j, 1, 0]


def test_modified_loss_and_current_match_general_decomposition():
    """Eqs. 14 and 17 (per mode) against the general A = (D + Q) U construction of ERRATA 002.4."""
    hp = Hyperparams(lr=0.02, momentum=0.9, batch_size=16, weight_decay=1e-3)
    rho = np.array([0.5, 4.0])
    sigma2 = 0.3
    s = sigma2 * rho
    ux, uv = phase_space.modified_loss_curvature(rho, s, hp)
    # eq. 15/16: Psi_theta curvature = 2 (rho + lambda) / (eta (1 + beta) sigma^2 rho),
    # Psi_v = 1/(sigma^2 rho)
    np.testing.assert_allclose(ux, 2 * (rho + 1e-3) / (0.02 * 1.9 * sigma2 * rho), rtol=1e-13)
    np.testing.assert_allclose(uv, 1 / (sigma2 * rho), rtol=1e-13)
    ou = sgd_ornstein_uhlenbeck(np.diag(rho), np.diag(s), hp)
    u, q = ou.decomposition()
    np.testing.assert_allclose(np.diag(u), np.concatenate([ux, uv]), rtol=1e-8)
    # eq. 14: Q = [[0, -Sigma], [Sigma, 0]] with the diffusion scaled as in eq. 8
    scale = 2 * hp.damping_rate / (2 * hp.damping_rate)
    np.testing.assert_allclose(q[:2, 2:], -scale * np.diag(s), rtol=1e-8, atol=1e-14)
    # eq. 17: the current's velocity field -Q U z of the general process equals (v, -omega^2 x) per mode
    z = np.array([0.01, -0.02, 0.3, 0.1])
    w2 = hp.natural_frequency(rho) ** 2
    np.testing.assert_allclose(-(q @ u) @ z, np.concatenate([z[2:], -w2 * z[:2]]), rtol=1e-8)
    # and the per-mode current is that field times the mode's stationary marginal density
    jx, jv = phase_space.probability_current(z[:2], z[2:], rho, s, hp)
    cov = ou.stationary_covariance()
    for i in range(2):
        marginal = scipy.stats.multivariate_normal(cov=cov[np.ix_([i, i + 2], [i, i + 2])]).pdf(
            [z[i], z[i + 2]])
        np.testing.assert_allclose([jx[i], jv[i]], np.array([z[i + 2], -w2[i] * z[i]]) * marginal, rtol=1e-8)


def test_equipartition_against_lyapunov():
    hp = Hyperparams(lr=0.05, momentum=0.7, batch_size=3)
    rho, s = np.array([0.1, 2.0, 9.0]), np.array([0.4, 1.0, 3.0])
    mom = phase_space.sde_stationary_moments(rho, s, hp)
    potential = np.sum(hp.curvature(rho) / 2 * mom.position_variance)
    kinetic = hp.mass / 2 * np.sum(mom.velocity_variance)
    assert potential == pytest.approx(kinetic, rel=1e-13)
    assert phase_space.expected_excess_loss(s, hp) == pytest.approx(potential, rel=1e-13)
    assert phase_space.expected_kinetic_energy(s, hp) == pytest.approx(kinetic, rel=1e-13)


def test_modified_loss_rejects_noiseless_modes():
    hp = Hyperparams(lr=0.1)
    with pytest.raises(ValueError, match=r"noise_variances\[1\]=0.0.*s_i > 0"):
        phase_space.modified_loss_curvature(np.array([1.0, 2.0]), np.array([1.0, 0.0]), hp)


def test_full_matrix_model_marginals_match_per_mode_with_correlated_noise():
    """Non-diagonal Sigma in the Hessian basis: per-mode marginals depend only on s_i = q_i^T Sigma q_i."""
    rng = np.random.default_rng(1)
    hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=2)
    rho = np.array([0.5, 3.0, 7.0])
    g = rng.standard_normal((3, 3))
    sigma = g @ g.T
    ou = sgd_ornstein_uhlenbeck(np.diag(rho), sigma, hp)
    cov = ou.stationary_covariance()
    mom = phase_space.sde_stationary_moments(rho, np.diag(sigma), hp)
    np.testing.assert_allclose(np.diag(cov)[:3], mom.position_variance, rtol=1e-9)
    np.testing.assert_allclose(np.diag(cov)[3:], mom.velocity_variance, rtol=1e-9)
    assert isinstance(ou, OrnsteinUhlenbeck)
