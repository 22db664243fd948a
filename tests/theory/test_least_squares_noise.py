"""Stationary least-squares noise with its multiplicative part vs a dense Lyapunov fixed point, SGD chains."""

import numpy as np
import pytest
import scipy.linalg as sl

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import (
    discrete_stationary_moments,
    global_displacement,
    least_squares_stationary_noise,
    noise_matrix,
    pair_position_factors,
    transition_matrix,
)

RNG = np.random.default_rng(5)
N, P, C = 96, 4, 2
X = np.hstack([RNG.standard_normal((N, P - 1)) * [1.5, 1.0, 0.4], np.ones((N, 1))])
T = np.stack([X[:, 0] - 0.5 * X[:, 1], X[:, 2]], 1) + RNG.standard_normal((N, C)) * [0.7, 1.2]
# S = 2 and a large step: the multiplicative part is tens of percent, so the check discriminates
HP = Hyperparams(lr=0.15, momentum=0.5, batch_size=2, weight_decay=0.02)


def ridge_residuals():
    h = X.T @ X / N
    w = np.linalg.solve(h + HP.weight_decay * np.eye(P), X.T @ T / N)
    return X @ w - T


def dense_stationary_covariance(multiplicative=True):
    """Full phase-space Lyapunov in the (i, a) row-major layout of W (P, C), every class block coupled."""
    d = P * C
    h = np.kron(X.T @ X / N, np.eye(C))
    hw = h + HP.weight_decay * np.eye(d)
    eta, beta = HP.lr, HP.momentum
    m = np.block([[np.eye(d) - eta * hw, eta * beta * np.eye(d)], [-hw, beta * np.eye(d)]])
    g = np.einsum("ni,na->nia", X, ridge_residuals()).reshape(N, d)
    sigma = np.cov(g.T, bias=True)
    outer = np.array([np.kron(np.outer(x, x), np.eye(C)) for x in X])

    def solve(sig):
        return sl.solve_discrete_lyapunov(m, np.kron([[eta**2, eta], [eta, 1.0]], sig / HP.batch_size))

    p = solve(sigma)
    for _ in range(100 if multiplicative else 0):
        pxx = p[:d, :d]
        p = solve(sigma + (outer @ pxx @ outer).mean(0) - h @ pxx @ h)
    return m, p, d


def test_pair_factors_match_scipy_lyapunov_on_the_joint_phase_space():
    lam, hp = np.array([0.2, 1.0, 3.0]), Hyperparams(lr=0.2, momentum=0.7, batch_size=3)
    m = sl.block_diag(*transition_matrix(lam, hp))
    b = np.kron(np.eye(3), [[hp.lr], [1.0]])
    q = np.array([[1.0, 0.3, 0.2], [0.3, 2.0, -0.5], [0.2, -0.5, 1.5]])
    joint = sl.solve_discrete_lyapunov(m, b @ q @ b.T / hp.batch_size)
    np.testing.assert_allclose(pair_position_factors(lam, hp) * q, joint[::2, ::2], rtol=1e-10)
    np.testing.assert_allclose(noise_matrix(np.ones(1), hp)[0], b[:2, :1] @ b[:2, :1].T / 3, rtol=1e-14)


def test_stationary_noise_reproduces_the_dense_multiplicative_fixed_point():
    res = least_squares_stationary_noise(X, ridge_residuals(), HP)
    m, p, d = dense_stationary_covariance()
    _, p_add, _ = dense_stationary_covariance(multiplicative=False)
    evecs = np.linalg.eigh(X.T @ X / N)[1]
    q = np.kron(evecs, np.eye(C))  # eigenvector (j, class a) is column j * C + a
    order = np.arange(P * C).reshape(P, C).T.reshape(-1)  # class-major, as the result
    var_dense = np.diag(q.T @ p[:d, :d] @ q)[order]
    var = discrete_stationary_moments(res.eigenvalues, res.noise_variances, HP).position_variance
    var_add = discrete_stationary_moments(res.eigenvalues, res.minimiser_noise_variances,
                                          HP).position_variance
    np.testing.assert_allclose(var, var_dense, rtol=1e-8)
    np.testing.assert_allclose(var_add, np.diag(q.T @ p_add[:d, :d] @ q)[order], rtol=1e-8)
    print(f"multiplicative part: Var x +{var.sum() / var_add.sum() - 1:.1%}")
    assert var.sum() > 1.2 * var_add.sum()  # the multiplicative part matters here
    lag = 7
    lagged = np.linalg.matrix_power(m, lag) @ p
    dense_disp = 2 * np.trace(p[:d, :d] - lagged[:d, :d])
    np.testing.assert_allclose(global_displacement(res.eigenvalues, res.noise_variances, HP, [lag])[0],
                               dense_disp, rtol=1e-8)


def test_stationary_speed_matches_sgd_chains():
    """Independent chains with real i.i.d. minibatches: the corrected theory holds, Sigma* alone does not."""
    res = least_squares_stationary_noise(X, ridge_residuals(), HP)
    h = X.T @ X / N
    w_min = np.linalg.solve(h + HP.weight_decay * np.eye(P), X.T @ T / N)
    rng, reps, steps = np.random.default_rng(11), 4000, 300
    w, buf = np.repeat(w_min[None], reps, 0), np.zeros((reps, P, C))
    for _ in range(steps):
        idx = rng.integers(N, size=(reps, HP.batch_size))
        xb = X[idx]
        grad = np.einsum("rsi,rsa->ria", xb, xb @ w - T[idx]) / HP.batch_size + HP.weight_decay * w
        buf = HP.momentum * buf + grad
        w_next = w - HP.lr * buf
        speed, w = np.sum((w_next - w) ** 2, axis=(1, 2)), w_next
    moments = discrete_stationary_moments(res.eigenvalues, res.noise_variances, HP)
    predicted = HP.lr**2 * moments.velocity_variance.sum()
    plain = HP.lr**2 * discrete_stationary_moments(res.eigenvalues, res.minimiser_noise_variances,
                                                    HP).velocity_variance.sum()
    se = speed.std(ddof=1) / np.sqrt(reps)
    assert abs(predicted - speed.mean()) < 4 * se, (predicted, speed.mean(), se)
    assert abs(plain - speed.mean()) > 6 * se, (plain, speed.mean(), se)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="residuals.shape"):
        least_squares_stationary_noise(X, ridge_residuals()[:5], HP)
    with pytest.raises(ValueError, match="hyper.sampler"):
        least_squares_stationary_noise(X, ridge_residuals(), Hyperparams(
            lr=0.1, batch_size=2, dataset_size=N, sampler="without_replacement"))
