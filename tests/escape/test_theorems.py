"""Chapter 004's theorems (issue 16 items 5-6): each function against an independent computation.

References: the jump process simulated by Gillespie's algorithm, scipy's discrete Lyapunov solver, dense
eigen-decompositions, scipy quadrature, and SGD / Langevin simulations with tolerances from their standard
errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, linalg

from sgd_dynamics.theory.fokker_planck import fokker_planck_operator
from sgd_dynamics.theory.local_stability import (
    critical_step_size,
    gibbs_certificate_error,
    gibbs_variance,
    gradient_flow,
    gradient_flow_bound,
    least_squares_moment_operator,
    quadratic_gradient_flow,
    sgd_neighbourhood,
)
from sgd_dynamics.theory.many_wells import (
    claimed_critical_temperature,
    hop_rate,
    kramers_hop_rate,
    lattice_gradient,
    stationary_loss_moments,
)
from sgd_dynamics.theory.metastability import rate_matrix
from sgd_dynamics.theory.mixing import (
    chapter_mixing_time,
    chi_square_divergence,
    gaussian_start,
    gaussian_total_variation,
    mixing_time,
    ou_total_variation,
    spectral_mixing_bound,
    total_variation_over_time,
)

Q3 = np.array([[-0.3, 0.3, 0.0], [0.2, -0.5, 0.3], [0.0, 0.1, -0.1]])


# ------------------------------------------------------------------------------------- master equation

def test_master_equation_matches_the_eigen_expansion_and_its_time_average_a_quadrature():
    Q = rate_matrix(Q3 - np.diag(np.diag(Q3)))
    p0 = np.array([0.5, 0.5, 0.0])
    w, V = np.linalg.eig(Q.generator.T)  # p(t) = sum_k c_k e^{w_k t} v_k
    c = np.linalg.solve(V, p0)
    for t in (0.0, 1.5, 40.0):
        np.testing.assert_allclose(Q.occupation(p0, [t])[0], (V @ (c * np.exp(w * t))).real, atol=1e-12)
    avg = integrate.quad_vec(lambda s: p0 @ linalg.expm(Q.generator * s), 0.0, 7.0, epsrel=1e-11)[0] / 7.0
    np.testing.assert_allclose(Q.time_averaged_occupation(p0, 7.0), avg, rtol=1e-9)
    # a long run reaches the stationary law; a short one does not
    np.testing.assert_allclose(Q.time_averaged_occupation(p0, 1e5), Q.stationary_distribution, atol=1e-3)
    assert np.abs(Q.time_averaged_occupation(p0, 7.0) - Q.stationary_distribution).max() > 0.1
    with pytest.raises(ValueError, match="start=.* is invalid"):
        Q.occupation([1.0, 0.0], [1.0])


def test_time_averaged_occupation_matches_a_gillespie_simulation_within_3_standard_errors():
    Q = rate_matrix(Q3 - np.diag(np.diag(Q3)))
    p0, duration, n = np.array([1 / 3, 1 / 3, 1 / 3]), 10.0, 4000
    rng = np.random.default_rng(5)
    k = Q3 - np.diag(np.diag(Q3))
    fractions = np.zeros((n, 3))
    for r in range(n):
        state, t = rng.choice(3, p=p0), 0.0
        while t < duration:
            out = k[state].sum()
            stay = min(rng.exponential(1 / out), duration - t)
            fractions[r, state] += stay / duration
            t += stay
            state = rng.choice(3, p=k[state] / out)
    se = fractions.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(fractions.mean(axis=0) - Q.time_averaged_occupation(p0, duration)) <= 3 * se)


# ------------------------------------------------------------------------------------------ Theorem 1

def test_gradient_flow_matches_the_eigen_solution_and_theorem1_bound_holds_on_a_nonquadratic_loss():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))
    H = A @ A.T + 0.4 * np.eye(3)
    h, U = np.linalg.eigh(H)
    x0, t = np.array([1.0, -2.0, 0.5]), np.linspace(0.1, 6.0, 30)
    exact = np.array([U @ (np.exp(-h * s) * (U.T @ x0)) for s in t])
    np.testing.assert_allclose(quadratic_gradient_flow(H, x0, t), exact, atol=1e-12)
    np.testing.assert_allclose(gradient_flow(lambda x: H @ x, x0, t), exact, atol=1e-9)
    quartic = np.linalg.norm(gradient_flow(lambda x: H @ x + 0.1 * x**3, x0, t), axis=1)
    assert np.all(quartic <= gradient_flow_bound(h[0], np.linalg.norm(x0), t) * (1 + 1e-9))


# ------------------------------------------------------------------------------------------ Theorem 9

def test_sgd_neighbourhood_matches_scipys_discrete_lyapunov_solution():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    H, S = A @ A.T / 4 + 0.3 * np.eye(4), B @ B.T / 4 + 0.1 * np.eye(4)
    eta, batch = 0.6 / np.linalg.eigvalsh(H).max(), 8
    G = np.eye(4) - eta * H
    C = linalg.solve_discrete_lyapunov(G, eta**2 * S / batch)
    n = sgd_neighbourhood(H, S, eta, batch)
    assert n.radius_squared == pytest.approx(np.trace(C), rel=1e-10)
    assert n.excess_loss == pytest.approx(np.trace(H @ C) / 2, rel=1e-10)
    assert n.excess_loss <= n.chapter_bound  # the proof's bound holds
    # the sqrt(eta/B) scaling is the eta -> 0 limit only
    small = sgd_neighbourhood(H, S, 1e-4, batch)
    assert small.radius_squared == pytest.approx(small.leading_order, rel=1e-3)
    assert abs(n.radius_squared / n.leading_order - 1) > 0.1


def test_critical_step_size_has_the_isotropic_closed_form_and_is_below_2_over_lambda_max():
    for d, B in ((10, 1), (4, 3)):
        assert critical_step_size(np.ones(d), B) == pytest.approx(2 / (1 + (d + 1) / B), rel=1e-9)
    h = np.linspace(0.5, 2.0, 10)
    assert critical_step_size(h, 1) < 0.2 * 2 / h.max()


def test_second_moment_operator_matches_an_sgd_simulation_on_gaussian_least_squares():
    h, eta, steps, n = np.array([0.5, 1.0, 2.0]), 0.3, 6, 200_000
    rng = np.random.default_rng(2)
    delta = np.tile([1.0, -1.0, 0.5], (n, 1))
    for _ in range(steps):
        x = rng.standard_normal(delta.shape) * np.sqrt(h)
        delta -= eta * x * np.sum(x * delta, axis=1, keepdims=True)
    sq = delta**2
    A = least_squares_moment_operator(h, eta, 1)
    pred = np.linalg.matrix_power(A, steps) @ np.array([1.0, 1.0, 0.25])
    se = sq.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(sq.mean(axis=0) - pred) <= 3 * se)


# ----------------------------------------------------------------------------------------- Key idea 5

@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_gibbs_certificate_error_matches_the_discrete_lyapunov_variance_of_heavy_ball_sgd(beta):
    h, s, B = 1.5, 0.7, 4
    for eta in (0.01, 0.4, 1.2):
        # b' = beta b + (h x + xi), x' = x - eta b'
        M = np.array([[beta, h], [-eta * beta, 1 - eta * h]])
        W = (s / B) * np.array([[1.0, -eta], [-eta, eta**2]])
        var_x = linalg.solve_discrete_lyapunov(M, W)[1, 1]
        ratio = gibbs_variance(h, eta, s, B, beta) / var_x - 1
        assert ratio == pytest.approx(gibbs_certificate_error(h, eta, beta), rel=1e-9, abs=1e-13)


# ------------------------------------------------------------------------------------------ Theorem 7

def test_gaussian_total_variation_matches_quadrature():
    def gap(x: float, m1: float, s1: float, m2: float, s2: float) -> float:
        return abs(np.exp(-0.5 * ((x - m1) / s1) ** 2) / s1 - np.exp(-0.5 * ((x - m2) / s2) ** 2) / s2)

    for (m1, s1, m2, s2) in ((0.3, 0.5, 0.0, 1.0), (2.0, 1.0, 0.0, 1.0), (-1.0, 2.0, 0.5, 0.3)):
        ref = 0.5 * integrate.quad(gap, -30, 30, args=(m1, s1, m2, s2), points=[m1, m2], limit=200)[0]
        ref /= np.sqrt(2 * np.pi)
        assert gaussian_total_variation(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-7)


def test_fokker_planck_total_variation_matches_the_exact_ou_law_and_the_spectral_bound_holds():
    fp = fokker_planck_operator(lambda x: 0.5 * x**2, 0.1, -2.5, 3.5, 600)
    t = np.linspace(0.0, 8.0, 81)
    p0 = gaussian_start(fp, 1.5, 0.1)
    exact = ou_total_variation(1.0, 0.1, 1.5, t, 0.1)
    np.testing.assert_allclose(total_variation_over_time(fp, p0, t), exact, atol=1e-3)
    dw = fokker_planck_operator(lambda x: (x**2 - 1) ** 2, 0.15, -2.2, 2.2, 400)
    q0 = gaussian_start(dw, -1.0, 0.1)
    s = np.linspace(0.0, 2000.0, 101)
    tv = total_variation_over_time(dw, q0, s)
    assert np.all(tv <= spectral_mixing_bound(dw, q0, s) * (1 + 1e-9))
    assert chi_square_divergence(dw, q0) == pytest.approx(np.sum(q0**2 / dw.gibbs) - 1)


def test_chapter_mixing_time_fails_from_a_far_start_and_holds_near_the_minimum():
    t = np.linspace(0.0, 12.0, 481)
    far = mixing_time(t, ou_total_variation(1.0, 0.01, 10.0, t), 0.1)
    near = mixing_time(t, ou_total_variation(1.0, 0.1, 0.5, t), 0.1)
    assert far > 1.2 * chapter_mixing_time(1.0, 0.1) > near
    # the arrival time of the mean, log(x0 / sqrt(T/m)), is what the chapter's bound leaves out
    assert far == pytest.approx(np.log(10.0 / 0.1) + 1.4, abs=0.3)


# ----------------------------------------------------------------------------------------- Theorem 10

def test_hop_rate_tends_to_kramers_and_matches_a_langevin_simulation():
    ratios = [hop_rate(1.0, T) / kramers_hop_rate(1.0, T) for T in (0.2, 0.1, 0.05)]
    assert abs(ratios[2] - 1) < abs(ratios[1] - 1) < abs(ratios[0] - 1) < 0.3
    assert abs(ratios[2] - 1) < 0.06
    T, dt, steps, n = 0.4, 0.001, 8000, 1500
    rng = np.random.default_rng(3)
    x, anchor, hops = np.zeros(n), np.zeros(n), np.zeros(n)
    for _ in range(steps):
        x += -dt * lattice_gradient(x, 1.0) + np.sqrt(2 * T * dt) * rng.standard_normal(n)
        hit = np.abs(x - anchor) >= 1.0
        anchor = np.where(hit, np.rint(x), anchor)
        hops += hit
    rate = hops / (steps * dt)
    euler = dt * np.pi**2 * 1.0 / T  # (dt U''/2) dL / T, U'' = 2 pi^2 dL
    assert abs(rate.mean() / hop_rate(1.0, T) - 1) <= 3 * rate.std(ddof=1) / np.sqrt(n) / rate.mean() + euler


def test_stationary_loss_moments_match_a_grid_sum_and_the_claimed_tc():
    T, d = 0.3, 16
    y = np.linspace(0.0, 1.0, 200_001)
    u = np.sin(np.pi * y) ** 2
    w = np.exp(-u / T)
    mean, var = stationary_loss_moments(1.0, T, d)
    m1 = np.trapezoid(u * w, y) / np.trapezoid(w, y)
    assert mean == pytest.approx(d * m1, rel=1e-8)
    assert var == pytest.approx(d * (np.trapezoid(u**2 * w, y) / np.trapezoid(w, y) - m1**2), rel=1e-8)
    assert claimed_critical_temperature(2.0, 100) == pytest.approx(2.0 / np.log(100))


# ------------------------------------------------------------------------------- the basins page's rows

def test_theorem_rows_name_each_theorem_and_give_the_verdicts_measured(theorem_checks_quick):
    from sgd_dynamics.experiments.theorem_checks import theorem_rows

    rows = theorem_rows(theorem_checks_quick)
    assert all(r.quantity.startswith(("Theorem ", "Key idea 5")) for r in rows)
    named = {r.quantity.split(":")[0].split(" (")[0] for r in rows}
    assert named == {"Theorem 1", "Theorem 7", "Theorem 9", "Theorem 10", "Key idea 5"}
    by = {r.quantity: r for r in rows}

    def verdict(start: str) -> set[str]:
        return {r.verdict for q, r in by.items() if q.startswith(start)}

    assert verdict("Theorem 1: gradient-flow rate") == {"holds"}
    assert verdict("Theorem 9: step-size bound") == {"fails"}
    assert verdict("Theorem 9 (corrected)") == {"holds"}
    assert verdict("Theorem 7: tau_mix") == {"fails"}
    assert verdict("Theorem 10: hop rate per coordinate") == {"holds"}
    assert verdict("Theorem 10: total hop rate") == {"fails"}
    assert verdict("Theorem 10: Arrhenius slope") == {"holds"}
    w = theorem_checks_quick.many_wells
    assert np.all(np.diff(np.log(w.hop_rate)) > 0)  # smooth, increasing: no jump at T_c
    bounds = [r for q, r in by.items() if "<= 1" in q]
    assert bounds and all(r.measured <= 1 for r in bounds)
