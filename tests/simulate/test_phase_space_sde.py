"""Phase-space SDE samplers vs scipy expm / Lyapunov / quadrature references."""

import numpy as np
import pytest
import scipy.integrate as si
import scipy.linalg as sl

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate import (
    METHODS,
    euler_maruyama_step,
    ou_transition,
    phase_space_drift,
    phase_space_ou,
    simulate_ou_process,
    simulate_phase_space_sde,
    velocity_diffusion_rate,
)

HP = Hyperparams(lr=0.01, momentum=0.9, batch_size=2)


def mode_sde(h, s, hp=HP):
    """Per-mode (A, Q) written out from 002 eqs. 7-8 with ERRATA 002.1."""
    gamma = (1 - hp.momentum) / (hp.lr * (1 + hp.momentum))
    w2 = 2 * h / (hp.lr * (1 + hp.momentum))
    a = np.array([[0.0, -1.0], [w2, 2 * gamma]])
    q = np.diag([0.0, 4 * s / (hp.lr * hp.batch_size * (1 + hp.momentum) ** 2)])
    return a, q


def test_drift_and_diffusion_match_the_written_equations():
    rho = np.array([0.0, 0.5, 7.0])
    a, rate = phase_space_drift(rho, HP), velocity_diffusion_rate([1.0, 2.0, 3.0], HP)
    for i, h in enumerate(rho):
        ref_a, ref_q = mode_sde(h, [1.0, 2.0, 3.0][i])
        np.testing.assert_allclose(a[i], ref_a, rtol=1e-14)
        np.testing.assert_allclose(rate[i], ref_q[1, 1], rtol=1e-14)
    # ERRATA 002.1: stationary E[v^2] = s / (S (1 - beta^2))
    p = sl.solve_continuous_lyapunov(*mode_sde(3.0, 1.0))
    np.testing.assert_allclose(p[1, 1], 1.0 / (HP.batch_size * (1 - HP.momentum**2)), rtol=1e-12)


@pytest.mark.parametrize("dt", [1e-3, 0.05, 1.0, 50.0])
def test_exact_transition_vs_expm_and_lyapunov(dt):
    rho, s = np.array([0.01, 1.0, 30.0]), np.array([1.0, 0.5, 2.0])
    a = phase_space_drift(rho, HP)
    q = np.zeros_like(a)
    q[:, 1, 1] = velocity_diffusion_rate(s, HP)
    f, c = ou_transition(a, q, dt)
    for i in range(rho.size):
        ref_a, ref_q = mode_sde(rho[i], s[i])
        p = sl.solve_continuous_lyapunov(ref_a, ref_q)
        ref_f = sl.expm(-ref_a * dt)
        np.testing.assert_allclose(f[i], ref_f, rtol=1e-8, atol=1e-12)
        # the Lyapunov form cancels at small dt: compare with an absolute tolerance on the scale of P
        np.testing.assert_allclose(c[i], p - ref_f @ p @ ref_f.T, rtol=1e-8, atol=1e-11 * np.abs(p).max())


@pytest.mark.parametrize("dt", [1e-3, 0.1, 10.0])
def test_exact_transition_zero_mode_vs_quadrature(dt):
    a, q = mode_sde(0.0, 1.0)
    f, c = ou_transition(a, q, dt)
    ref = si.quad_vec(lambda u: sl.expm(-a * u) @ q @ sl.expm(-a * u).T, 0, dt, epsabs=0, epsrel=1e-11,
                      limit=1000)[0]
    np.testing.assert_allclose(f, sl.expm(-a * dt), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(c, ref, rtol=1e-8)


def test_full_matrix_model_is_the_rotated_per_mode_model():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    rho, s = np.array([0.0, 0.4, 5.0]), np.array([1.0, 2.0, 0.5])
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=2, weight_decay=0.1)
    a, q = phase_space_ou(u @ np.diag(rho) @ u.T, u @ np.diag(s) @ u.T, hp)
    f, c = ou_transition(a, q, 0.3)
    rot = sl.block_diag(u, u)
    f, c = rot.T @ f @ rot, rot.T @ c @ rot
    am = phase_space_drift(rho, hp)
    qm = np.zeros_like(am)
    qm[:, 1, 1] = velocity_diffusion_rate(s, hp)
    fm, cm = ou_transition(am, qm, 0.3)
    for i in range(3):
        idx = np.ix_([i, 3 + i], [i, 3 + i])
        np.testing.assert_allclose(f[idx], fm[i], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(c[idx], cm[i], rtol=1e-9, atol=1e-12 * np.abs(cm[i]).max())


@pytest.mark.parametrize("dt", [1.0, 0.1, 0.01])
def test_exact_sampler_law_at_any_step(dt, assert_mc_mean):
    rho, s = np.array([0.0, 0.05, 2.0]), np.array([1.0, 1.0, 1.0])
    x0, v0 = np.array([1.0, 1.0, 1.0]), np.array([-3.0, 2.0, 1.0])
    t = 1.0
    tr = simulate_phase_space_sde(rho, s, hyper=HP, t_final=t, dt=dt, replicas=20000, seed=11, start=(x0, v0))
    np.testing.assert_allclose(tr.time[-1], t)
    for i in range(rho.size):
        a, q = mode_sde(rho[i], s[i])
        f = sl.expm(-a * t)
        cov = si.quad_vec(lambda u, a=a, q=q: sl.expm(-a * u) @ q @ sl.expm(-a * u).T, 0, t, epsrel=1e-10)[0]
        mean = f @ [x0[i], v0[i]]
        x, v = tr.position[-1, :, i], tr.velocity[-1, :, i]
        assert_mc_mean(x, mean[0], what=f"E x mode {i}")
        assert_mc_mean(v, mean[1], what=f"E v mode {i}")
        assert_mc_mean((x - mean[0]) ** 2, cov[0, 0], what=f"Var x mode {i}")
        assert_mc_mean((x - mean[0]) * (v - mean[1]), cov[0, 1], what=f"Cov xv mode {i}")
        assert_mc_mean((v - mean[1]) ** 2, cov[1, 1], what=f"Var v mode {i}")


def test_exact_sampler_keeps_the_stationary_law(assert_mc_mean):
    rho, s = np.array([0.3, 4.0]), np.array([1.0, 2.0])
    tr = simulate_phase_space_sde(rho, s, hyper=HP, steps=400, dt=0.5, replicas=20000, seed=12)
    for i in range(2):
        p = sl.solve_continuous_lyapunov(*mode_sde(rho[i], s[i]))
        for k in (0, -1):
            assert_mc_mean(tr.position[k, :, i] ** 2, p[0, 0], what=f"Var x mode {i}")
            assert_mc_mean(tr.velocity[k, :, i] ** 2, p[1, 1], what=f"Var v mode {i}")
            assert_mc_mean(tr.position[k, :, i] * tr.velocity[k, :, i], 0.0, what=f"Cov xv mode {i}")


def test_euler_maruyama_weak_order_one(assert_mc_mean):
    """Bias of the stationary E[v^2] under Euler-Maruyama is O(dt): regress log error on log dt."""
    rho, s = np.array([1.0]), np.array([1.0])
    a, q = mode_sde(1.0, 1.0)
    exact = sl.solve_continuous_lyapunov(a, q)[1, 1]
    assert METHODS["euler_maruyama"](a, q, 0.1).weak_order == 1.0
    dts = np.array([0.016, 0.008, 0.004, 0.002])
    errors = []
    for j, dt in enumerate(dts):
        tr = simulate_phase_space_sde(rho, s, hyper=HP, t_final=1.6, dt=dt, replicas=100000, seed=20 + j,
                                      method="euler_maruyama", record_every=round(1.6 / dt))
        v2 = tr.velocity[-1, :, 0] ** 2
        # the sample is Euler-Maruyama's own law: its discrete Lyapunov solution (independent of the sampler)
        st = euler_maruyama_step(a, q, dt)
        p_em = sl.solve_discrete_lyapunov(st.transition, st.noise_root @ st.noise_root.T)
        mean, _ = assert_mc_mean(v2, p_em[1, 1], what=f"EM law at dt={dt}")
        errors.append(abs(mean - exact) / exact)
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    print(f"Euler-Maruyama relative errors {np.round(errors, 4)} at dt={dts}: weak-order slope {slope:.3f}")
    assert 0.8 < slope < 1.25
    # the exact sampler at the coarsest step has no bias beyond Monte Carlo noise
    tr = simulate_phase_space_sde(rho, s, hyper=HP, t_final=1.6, dt=dts[0], replicas=100000, seed=30,
                                  method="exact", record_every=100)
    assert_mc_mean(tr.velocity[-1, :, 0] ** 2, exact, what="exact sampler stationary E[v^2]")


def test_general_ou_process_nonsymmetric_drift(assert_mc_mean):
    a = np.array([[1.0, 2.0, 0.0], [-1.5, 0.5, 0.3], [0.0, -0.4, 2.0]])
    g = np.array([[1.0, 0.0], [0.5, 0.3], [0.0, 1.0]])
    q, mu, z0 = g @ g.T, np.array([1.0, -1.0, 0.5]), np.array([3.0, 0.0, -2.0])
    assert np.all(np.linalg.eigvals(a).real > 0)
    p = sl.solve_continuous_lyapunov(a, q)
    for method, dt, n in (("exact", 0.7, 2), ("euler_maruyama", 1e-3, 1400)):
        path = simulate_ou_process(a, q, mean=mu, dt=dt, n_steps=n, replicas=20000, seed=40, start=z0,
                                   method=method, record_every=n)
        f = sl.expm(-a * 1.4)
        mean, cov = mu + f @ (z0 - mu), p - f @ p @ f.T
        z = path.state[-1]
        # Euler-Maruyama at dt=1e-3 has O(dt ||A||) ~ 0.3% bias, below 5 standard errors at 20000 replicas
        for i in range(3):
            assert_mc_mean(z[:, i], mean[i], what=f"{method} mean {i}")
            for j in range(i, 3):
                prod = (z[:, i] - mean[i]) * (z[:, j] - mean[j])
                assert_mc_mean(prod, cov[i, j], what=f"{method} cov {i}{j}")
    path = simulate_ou_process(a, q, mean=mu, dt=0.5, n_steps=3, replicas=20000, seed=41)
    for i in range(3):
        assert_mc_mean((path.state[-1, :, i] - mu[i]) ** 2, p[i, i], what=f"stationary var {i}")
