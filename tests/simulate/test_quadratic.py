"""Discrete quadratic SGD vs the exact discrete theory, computed here independently (scipy Lyapunov, M^k)."""

import numpy as np
import scipy.linalg as sl

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate import simulate_quadratic_sgd

ETA, BETA, S = 0.1, 0.9, 4
HP = Hyperparams(lr=ETA, momentum=BETA, batch_size=S)
H_CRIT = (1 - BETA) ** 2 / (2 * ETA * (1 + BETA))  # damping ratio 1 (hyper.damping_ratio)
# overdamped, critical, underdamped, near the stability limit eta*h < 2(1+beta) = 3.8 (eta*h = 3.7)
RHO = np.array([0.2 * H_CRIT, H_CRIT, 1.0, 37.0])
SV = np.array([1.0, 2.0, 0.5, 3.0])


def transition(h, eta=ETA, beta=BETA):
    return np.array([[1 - eta * h, eta * beta], [-h, beta]])


def step_noise(s, eta=ETA, batch=S):
    return s / batch * np.array([[eta**2, eta], [eta, 1.0]])


def stationary(h, s, eta=ETA, beta=BETA, batch=S):
    return sl.solve_discrete_lyapunov(transition(h, eta, beta), step_noise(s, eta, batch))


def test_regimes_are_what_they_claim():
    z = HP.damping_ratio(RHO)
    assert z[0] > 1 and np.isclose(z[1], 1) and z[2] < 1 and z[3] < 1
    assert ETA * RHO[3] / (2 * (1 + BETA)) > 0.97


def test_stationary_start_matches_discrete_lyapunov(assert_mc_mean):
    tr = simulate_quadratic_sgd(RHO, SV, hyper=HP, steps=60, replicas=20000, seed=1)
    for k in (0, 60):
        x, v = tr.position[k], tr.velocity[k]
        for i, (h, s) in enumerate(zip(RHO, SV, strict=True)):
            p = stationary(h, s)
            assert_mc_mean(x[:, i] ** 2, p[0, 0], what=f"Var x mode {i} step {k}")
            assert_mc_mean(x[:, i] * v[:, i], p[0, 1], what=f"Cov xv mode {i} step {k}")
            assert_mc_mean(v[:, i] ** 2, p[1, 1], what=f"Var v mode {i} step {k}")
    # the closed form of ERRATA 003.4 with its quoted numbers (beta=0.9, eta=0.1, lambda=2, s^2=1)
    np.testing.assert_allclose(sl.solve_discrete_lyapunov(transition(2.0), step_noise(1.0, batch=1))
                               [[0, 0, 1], [0, 1, 1]], [0.26389, 0.27778, 5.5556], rtol=1e-4)


def test_zero_start_covariance_grows_as_lyapunov_sum(assert_mc_mean):
    k = 40
    tr = simulate_quadratic_sgd(RHO, SV, hyper=HP, steps=k, replicas=20000, seed=2, start="zero")
    for i, (h, s) in enumerate(zip(RHO, SV, strict=True)):
        m, p = transition(h), stationary(h, s)
        mk = np.linalg.matrix_power(m, k)
        pk = p - mk @ p @ mk.T
        assert_mc_mean(tr.position[k, :, i] ** 2, pk[0, 0], what=f"Var x_k mode {i}")
        assert_mc_mean(tr.velocity[k, :, i] ** 2, pk[1, 1], what=f"Var v_k mode {i}")


def test_stationary_speed_and_lagged_displacement(assert_mc_mean):
    lags = (1, 3, 10, 30, 100)
    tr = simulate_quadratic_sgd(RHO, SV, hyper=HP, steps=max(lags), replicas=8000, seed=3)
    # E||theta_{k+1} - theta_k||^2 = eta^2 E||v||^2 at every step, and position differences agree exactly
    local = tr.local_sq_displacement()
    np.testing.assert_allclose(local, np.sum(np.diff(tr.position, axis=0) ** 2, axis=-1), rtol=1e-10)
    speed = sum(ETA**2 * stationary(h, s)[1, 1] for h, s in zip(RHO, SV, strict=True))
    for k in (0, 49, 99):
        assert_mc_mean(local[k], speed, what=f"speed at step {k + 1}")
    for t in lags:
        per_mode = []
        for h, s in zip(RHO, SV, strict=True):
            p = stationary(h, s)
            cross = np.linalg.matrix_power(transition(h), t) @ p  # Cov(z_{k+t}, z_k)
            per_mode.append(2 * (p[0, 0] - cross[0, 0]))
        d = tr.position[t] - tr.position[0]
        for i in range(RHO.size):
            assert_mc_mean(d[:, i] ** 2, per_mode[i], what=f"E(x_t - x_0)^2 mode {i} lag {t}")
        assert_mc_mean(tr.global_sq_displacement()[t], sum(per_mode), what=f"E||Delta_t||^2 lag {t}")


def test_mean_from_fixed_start_is_matrix_power(assert_mc_mean):
    x0, v0 = np.array([1.0, -1.0, 0.5, 0.1]), np.array([0.5, 0.0, -2.0, 1.0])
    tr = simulate_quadratic_sgd(RHO, SV, hyper=HP, steps=100, replicas=4000, seed=4, start=(x0, v0))
    np.testing.assert_array_equal(tr.position[0], np.broadcast_to(x0, (4000, 4)))
    for k in (1, 10, 100):
        for i, h in enumerate(RHO):
            mean = np.linalg.matrix_power(transition(h), k) @ [x0[i], v0[i]]
            assert_mc_mean(tr.position[k, :, i], mean[0], what=f"E x_k mode {i} k={k}")
            assert_mc_mean(tr.velocity[k, :, i], mean[1], what=f"E v_k mode {i} k={k}")


def test_mean_at_small_lr_follows_continuous_eq9():
    # 002 eq. 9: damped oscillator x'' + 2 gamma x' + omega^2 x = 0 in t = eta k (overdamped modes here)
    hp = Hyperparams(lr=1e-3, momentum=0.9, batch_size=1)
    rho, t = np.array([0.2, 1.0]), 0.2
    steps = round(t / hp.lr)
    tr = simulate_quadratic_sgd(rho, [0.01, 0.01], hyper=hp, steps=steps, replicas=1000, seed=5,
                                start=(np.ones(2), np.zeros(2)))
    for i, w2 in enumerate(hp.natural_frequency(rho) ** 2):
        a = np.array([[0.0, -1.0], [w2, 2 * hp.damping_rate]])
        cont = sl.expm(-a * t) @ [1.0, 0.0]
        x = tr.position[-1, :, i]
        mean, se = x.mean(), x.std(ddof=1) / np.sqrt(x.size)
        # tolerance: 5 standard errors plus the discrete-vs-continuous bias, O(eta * rate) ~ 1e-3 here
        assert abs(mean - cont[0]) <= 5 * se + 5e-3, (mean, cont[0])


def test_full_noise_covariance_cross_modes(assert_mc_mean):
    rho = np.array([0.5, 2.0, 10.0])
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, 3))
    sigma = g @ g.T
    tr = simulate_quadratic_sgd(rho, hyper=HP, noise_covariance=sigma, steps=30, replicas=20000, seed=6)
    # independent reference: vec(P) = (I - M (x) M)^-1 vec(W) for the 6-dim state (x, v)
    m = np.block([[np.diag(1 - ETA * rho), ETA * BETA * np.eye(3)], [-np.diag(rho), BETA * np.eye(3)]])
    w = np.kron(np.array([[ETA**2, ETA], [ETA, 1.0]]), sigma / S)
    p = np.linalg.solve(np.eye(36) - np.kron(m, m), w.ravel()).reshape(6, 6)
    for k in (0, 30):
        z = np.concatenate([tr.position[k], tr.velocity[k]], axis=1)
        for a, b in [(0, 1), (0, 2), (1, 2), (0, 4), (3, 5), (2, 2), (5, 5), (1, 4)]:
            assert_mc_mean(z[:, a] * z[:, b], p[a, b], what=f"P[{a},{b}] step {k}")


def test_zero_mode_and_weight_decay(assert_mc_mean):
    hp = Hyperparams(lr=ETA, momentum=BETA, batch_size=S, weight_decay=0.5)
    rho = np.array([-0.5, 0.0])  # curvatures 0 (zero mode) and 0.5 (from weight decay)
    k = 50
    tr = simulate_quadratic_sgd(rho, [1.0, 2.0], hyper=hp, steps=k, replicas=20000, seed=7)
    assert np.all(tr.position[0, :, 0] == 0)
    # zero mode: v stationary N(0, s/(S(1-beta^2))), x a random walk; propagate P_{j+1} = M P_j M^T + W
    p = np.diag([0.0, 1.0 / (S * (1 - BETA**2))])
    for _ in range(k):
        p = transition(0.0) @ p @ transition(0.0).T + step_noise(1.0)
    assert_mc_mean(tr.velocity[k, :, 0] ** 2, p[1, 1], what="zero-mode Var v")
    assert_mc_mean(tr.position[k, :, 0] ** 2, p[0, 0], what="zero-mode Var x_k")
    assert_mc_mean(tr.position[k, :, 1] ** 2, stationary(0.5, 2.0)[0, 0], what="weight-decay mode Var x")
