"""Exact discrete theory against scipy's discrete Lyapunov solver, matrix powers, long-double sums, MC."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from sgd_dynamics import Hyperparams
from sgd_dynamics.theory import discrete, global_displacement, stationary_speed

EPS = np.finfo(float).eps


def test_errata_003_4_valley_ou_moments():
    # ERRATA 003.4: beta=0.9, eta=0.1, lambda=2, s^2=1 -> Var X 0.26389, Cov 0.27778, Var Pi 5.5556
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=1)
    mom = discrete.discrete_stationary_moments(np.array([2.0]), np.array([1.0]), hp)
    assert mom.position_variance[0] == pytest.approx(0.26389, abs=5e-6)
    assert mom.cross_covariance[0] == pytest.approx(0.27778, abs=5e-6)
    assert mom.velocity_variance[0] == pytest.approx(5.5556, abs=5e-5)


def test_errata_002_5_velocity_autocovariance_example():
    # ERRATA 002.5: beta=0.9, eta=0.01, rho=5, S=1, sigma^2=1 (Sigma = sigma^2 H, so s = 5)
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=1)
    m = discrete.transition_matrix(np.array([5.0]), hp)[0]
    p = discrete.discrete_stationary_moments(np.array([5.0]), np.array([5.0]), hp).as_matrices()[0]
    got = [(np.linalg.matrix_power(m, lag) @ p)[1, 1] for lag in (1, 5, 20, 50)]
    np.testing.assert_allclose(got, [23.33, 4.559, -0.010, 0.826], atol=6e-3)


regimes = st.sampled_from(["zero", "tiny", "critical", "under", "over", "edge", "random"])


def _curvature(regime: str, hp: Hyperparams, u: float) -> float:
    eta, sb = hp.lr, np.sqrt(hp.momentum)
    limit = hp.stability_limit
    value = {
        "zero": 0.0,
        "tiny": limit * 10 ** (-12 + 10 * u),
        "critical": (1 - sb) ** 2 / eta * (1 + (u - 0.5) * 1e-6),
        "under": ((1 - sb) ** 2 + u * ((1 + sb) ** 2 - (1 - sb) ** 2)) / eta,
        "over": (1 - sb) ** 2 / eta * u,
        "edge": limit * (1 - 10 ** (-6 - 3 * u)),
        "random": limit * u,
    }[regime]
    return float(min(max(value, 0.0), limit * (1 - 1e-9)))


@settings(max_examples=60, deadline=None)
@given(regime=regimes, u=st.floats(1e-9, 1), lr=st.floats(1e-4, 1.0),
       momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999]), batch=st.integers(1, 64))
def test_stationary_moments_match_discrete_lyapunov(regime, u, lr, momentum, batch):
    hp = Hyperparams(lr=lr, momentum=momentum, batch_size=batch)
    h = _curvature(regime, hp, u)
    if h == 0:
        return  # no stationary position law; covered by test_zero_mode_velocity_variance
    m = discrete.transition_matrix(np.array([h]), hp)[0]
    w = discrete.noise_matrix(np.array([1.7]), hp)[0]
    got = discrete.discrete_stationary_moments(np.array([h]), np.array([1.7]), hp).as_matrices()[0]
    # Reference 1, valid in every regime: the residual of P = M P M^T + W, evaluated in long double,
    # against the size of the terms (the Kronecker solve itself is too ill-conditioned for eta h ~ 1e-12).
    ld = np.longdouble
    p_ld, m_ld = got.astype(ld), m.astype(ld)
    terms = np.abs(m_ld) @ np.abs(p_ld) @ np.abs(m_ld).T + np.abs(w.astype(ld)) + np.abs(p_ld)
    residual = p_ld - m_ld @ p_ld @ m_ld.T - w.astype(ld)
    edge = 2 * (1 + momentum) / (2 * (1 + momentum) - lr * h)
    assert np.all(np.abs(residual) <= 50 * EPS * terms * edge)
    # Reference 2: scipy's solver, where its problem is well conditioned (it fails for eta h < ~1e-8).
    if lr * h > 1e-4 and edge < 1e3:
        np.testing.assert_allclose(got, scipy.linalg.solve_discrete_lyapunov(m, w), rtol=1e-6)


def test_zero_mode_velocity_variance():
    hp = Hyperparams(lr=0.05, momentum=0.8, batch_size=4)
    mom = discrete.discrete_stationary_moments(np.array([0.0]), np.array([2.0]), hp)
    assert mom.velocity_variance[0] == pytest.approx(2.0 / 4 / (1 - 0.8**2), rel=1e-14)
    assert np.isinf(mom.position_variance[0])


@settings(max_examples=80, deadline=None)
@given(regime=regimes, u=st.floats(1e-9, 1), lr=st.floats(1e-4, 1.0),
       momentum=st.sampled_from([0.0, 0.3, 0.9, 0.99, 0.999, 0.9999]),
       weight_decay=st.sampled_from([0.0, 1e-4]))
def test_global_displacement_matches_long_double_summation(regime, u, lr, momentum, weight_decay,
                                                           discrete_reference):
    hp = Hyperparams(lr=lr, momentum=momentum, batch_size=3, weight_decay=weight_decay)
    h = _curvature(regime, hp, u)
    rho = max(h - weight_decay, 0.0)
    h = rho + weight_decay
    steps = [1, 2, 3, 17, 64, 65, 66, 200, 1500]
    ref, cond = discrete_reference(lr, momentum, h, 0.9, 3, steps)
    got = global_displacement([rho], [0.9], hp, steps, model="discrete")
    # Tolerance: the summation's own condition number plus the input's (distance to the stability edge),
    # times eps, with a floor for the O(t eps) rounding of t * a in the exponentials.
    edge = 2 * (1 + momentum) / max(2 * (1 + momentum) - lr * h, 1e-300)
    rtol = 1e-11 + 200 * EPS * (cond + edge)
    assert np.all(np.isfinite(got))
    rel = np.abs(got - ref) / np.abs(ref)
    assert np.all(rel <= rtol), (rel, rtol)


@settings(max_examples=30, deadline=None)
@given(regime=regimes, u=st.floats(1e-9, 1), momentum=st.sampled_from([0.0, 0.9, 0.999]))
def test_large_t_has_no_overflow_and_saturates(regime, u, momentum):
    hp = Hyperparams(lr=0.1, momentum=momentum, batch_size=1)
    h = _curvature(regime, hp, u)
    steps = np.array([10**6, 10**7, 10**9, 10**12])
    got = global_displacement([h], [1.0], hp, steps, model="discrete")
    assert np.all(np.isfinite(got)) and np.all(got > 0)
    slow_rate = hp.lr * h / (1 - momentum)  # decay rate of the slowest (near-one) root
    if h > 0 and hp.lr * h < 0.9 * 2 * (1 + momentum) and slow_rate * 1e7 > 200:
        # a confined mode saturates at 2 Var x (the rest decays like exp(-slow_rate t))
        var_x = discrete.discrete_stationary_moments(np.array([h]), np.array([1.0]), hp).position_variance[0]
        assert got[1] == pytest.approx(2 * var_x, rel=1e-7)
    if h == 0:
        # a free mode: v is AR(1), so E Delta_t^2 = eta^2 Var v [t (1+b)/(1-b) - 2 b (1 - b^t)/(1-b)^2]
        b = momentum
        exact = hp.lr**2 / (1 - b**2) * (steps * (1 + b) / (1 - b) - 2 * b * (1 - b**steps) / (1 - b) ** 2)
        np.testing.assert_allclose(got, exact, rtol=1e-9)


def test_mean_trajectory_matches_matrix_powers():
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=1, weight_decay=0.01)
    sb = np.sqrt(0.9)
    rho = np.array([0.0, 1e-9, (1 - sb) ** 2 / 0.1 - 0.01, 1.0, 30.0, (1 + sb) ** 2 / 0.1 - 0.01 + 1e-3,
                    37.9])
    x0, v0 = np.linspace(-1, 1, rho.size), np.linspace(0.5, -0.3, rho.size)
    steps = np.array([0, 1, 2, 7, 100, 1000])
    x, v = discrete.discrete_mean_trajectory(rho, hp, steps, x0, v0)
    m = discrete.transition_matrix(rho, hp)
    for j, k in enumerate(steps):
        z = np.einsum("mij,mj->mi", np.linalg.matrix_power(m, int(k)), np.stack([x0, v0], axis=1))
        np.testing.assert_allclose(x[j], z[:, 0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(v[j], z[:, 1], rtol=1e-9, atol=1e-12)


def test_covariance_over_time_matches_recursion():
    hp = Hyperparams(lr=0.2, momentum=0.7, batch_size=2)
    rho, s = np.array([0.0, 0.3, 4.0, 8.0]), np.array([1.0, 0.5, 2.0, 0.1])
    steps = np.array([0, 1, 5, 37])
    got = discrete.discrete_covariance_over_time(rho, s, hp, steps)
    m, w = discrete.transition_matrix(rho, hp), discrete.noise_matrix(s, hp)
    p = np.zeros_like(w)
    for k in range(38):
        if k in steps:
            np.testing.assert_allclose(got[list(steps).index(k)], p, rtol=1e-12, atol=1e-15)
        p = m @ p @ np.swapaxes(m, -1, -2) + w


def test_monte_carlo_of_the_exact_recursion():
    """Simulate the PyTorch-convention recursion itself and compare speed and displacement."""
    rng = np.random.default_rng(0)
    hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=4)
    rho = np.array([0.02, 1.0, 10.0, 70.0])  # over-, under-damped and near the edge (eta rho = 3.5 < 3.8)
    s = np.array([1.0, 2.0, 0.5, 1.0])
    replicas, lag = 20000, 30
    mom = discrete.discrete_stationary_moments(rho, s, hp).as_matrices()
    chol = np.linalg.cholesky(mom)
    z = np.einsum("mij,rmj->rmi", chol, rng.standard_normal((replicas, rho.size, 2)))
    x, b = z[..., 0].copy(), -z[..., 1].copy()  # PyTorch buffer b = -v
    start = x.copy()
    for k in range(lag):
        # minibatch gradient in the eigenbasis
        g = rho * x + rng.normal(0, np.sqrt(s / hp.batch_size), x.shape)
        b = hp.momentum * b + g
        x_new = x - hp.lr * b
        if k == 0:
            speed = np.sum((x_new - x) ** 2, axis=1)
        x = x_new
    disp = np.sum((x - start) ** 2, axis=1)
    for sample, predicted in ((speed, stationary_speed(rho, s, hp)),
                              (disp, global_displacement(rho, s, hp, [lag])[0])):
        stderr = sample.std(ddof=1) / np.sqrt(replicas)
        assert abs(sample.mean() - predicted) < 4 * stderr, (sample.mean(), predicted, stderr)


def test_discrete_tends_to_continuous_as_eta_rho_vanishes():
    rho, s = np.array([0.1, 1.0, 3.0]), np.array([1.0, 1.0, 1.0])
    errors = []
    for lr in (1e-1, 1e-2, 1e-3):
        hp = Hyperparams(lr=lr, momentum=0.9, batch_size=1)
        d = stationary_speed(rho, s, hp, model="discrete")
        c = stationary_speed(rho, s, hp, model="continuous")
        errors.append(abs(d - c) / c)
    # relative deviation is O(eta rho): each tenfold smaller eta gives about tenfold smaller error
    assert errors[1] < errors[0] / 8 and errors[2] < errors[1] / 8
