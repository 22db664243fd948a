import math

import numpy as np
import pytest
from scipy.sparse import diags
from scipy.sparse.linalg import spsolve

from sgd_dynamics.theory.escape import find_minimum, find_saddle, mean_first_passage_time
from sgd_dynamics.theory.fokker_planck import fokker_planck_operator
from sgd_dynamics.theory.metastability import (
    exact_rate_matrix_1d,
    eyring_kramers_rate_matrix,
    laplace_occupation,
    rate_matrix,
)
from sgd_dynamics.theory.potential import parse_potential

THREE_WELLS = "4*(x/2)**2*((x/2)**2 - 1)**2 + 0.05*x"  # wells near -2, 0, 2; tilted so that all differ
EDGES = ([0, 1, 1, 2], [1, 0, 2, 1])  # the four nonzero off-diagonal rates of a 1-D chain of three wells


def three_wells():
    U = parse_potential(THREE_WELLS)
    minima = [find_minimum(U, g) for g in (-2.0, 0.0, 2.0)]
    saddles = [find_saddle(U, g) for g in (-1.1, 1.1)]
    return U, minima, saddles


def test_three_well_potential_has_the_stated_shape():
    U, minima, saddles = three_wells()
    xs = [float(m.point[0]) for m in minima]
    assert xs[0] < float(saddles[0].point[0]) < xs[1] < float(saddles[1].point[0]) < xs[2]
    assert all(m.index == 0 for m in minima) and all(s.index == 1 for s in saddles)
    assert len({round(m.energy, 3) for m in minima}) == 3
    # no other stationary point: U' changes sign exactly five times on a fine grid
    g = U.gradient(np.linspace(-3.5, 3.5, 200001))
    assert np.count_nonzero(np.diff(np.sign(g)) != 0) == 5


def test_two_state_generator_by_hand():
    Q = rate_matrix([[0.0, 0.3], [0.1, 0.0]])
    np.testing.assert_allclose(Q.generator.sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(Q.stationary_distribution, [0.25, 0.75])
    assert Q.slowest_relaxation_rate == pytest.approx(0.4)
    np.testing.assert_allclose(Q.exit_rates, [0.3, 0.1])


@pytest.mark.parametrize(("rates", "match"), [
    ([[0.0, -1.0], [1.0, 0.0]], "finite and >= 0"),
    ([[0.0, 1.0, 2.0]], "square matrix"),
])
def test_rate_matrix_rejects_bad_rates(rates, match):
    with pytest.raises(ValueError, match=match):
        rate_matrix(rates)


def test_eyring_kramers_rate_matrix_rejects_bad_indices():
    U, minima, saddles = three_wells()
    with pytest.raises(ValueError, match=r"saddle joins minima \(0, 0\)"):
        eyring_kramers_rate_matrix(minima, [(0, 0, saddles[0])], 0.1)
    with pytest.raises(ValueError, match="core_radius=1.5 is invalid"):
        exact_rate_matrix_1d(U, 0.1, [float(m.point[0]) for m in minima], 1.5)
    with pytest.raises(ValueError, match="temperature=-0.1 is invalid"):
        exact_rate_matrix_1d(U, -0.1, [-2.0, 0.0, 2.0], 0.3)


def test_double_well_slowest_rate_tends_to_the_fokker_planck_gap():
    U = parse_potential("(x**2 - 1)**2")
    minima = [find_minimum(U, -1.0), find_minimum(U, 1.0)]
    saddle = find_saddle(U, 0.1)
    errors = []
    for T in (0.2, 0.1, 0.05):
        Q = eyring_kramers_rate_matrix(minima, [(0, 1, saddle)], T)
        gap = fokker_planck_operator(U, T, -2.5, 2.5, 2000).spectral_gap
        errors.append(Q.slowest_relaxation_rate / gap - 1.0)
    # Eyring–Kramers misses an O(T) prefactor correction: the error shrinks with T, and stays below T.
    assert abs(errors[0]) > abs(errors[1]) > abs(errors[2])
    assert all(abs(e) < T for e, T in zip(errors, (0.2, 0.1, 0.05), strict=True))
    assert abs(errors[2]) < 0.03


def test_stationary_law_is_the_laplace_occupation_and_tends_to_the_gibbs_mass():
    U = parse_potential("(x**2 - 1)**2 + 0.2*x")
    minima = [find_minimum(U, -1.0), find_minimum(U, 1.0)]
    saddle = find_saddle(U, 0.0)
    grid = np.linspace(-3.0, 3.0, 600001)
    errors = []
    for T in (0.2, 0.1, 0.05):
        pi = eyring_kramers_rate_matrix(minima, [(0, 1, saddle)], T).stationary_distribution
        w = [math.exp(-m.energy / T) / math.sqrt(float(m.hessian_eigenvalues[0])) for m in minima]
        np.testing.assert_allclose(pi, np.array(w) / sum(w), rtol=1e-10)  # detailed balance of EK rates
        np.testing.assert_allclose(laplace_occupation(minima, T), pi, rtol=1e-9)
        gibbs = np.exp(-(U.energy(grid) - U.energy(grid).min()) / T)
        left = np.trapezoid(np.where(grid < saddle.point[0], gibbs, 0.0), grid) / np.trapezoid(gibbs, grid)
        errors.append(abs(pi[0] - left))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01


def test_exact_outer_rates_agree_with_the_reflecting_mfpt_quadrature():
    U, minima, _ = three_wells()
    m = [float(c.point[0]) for c in minima]
    r = 0.3
    for T in (0.2, 0.08):
        Q = exact_rate_matrix_1d(U, T, m, r).generator
        assert 1.0 / Q[0, 1] == pytest.approx(mean_first_passage_time(U, T, m[0], m[1] - r), rel=1e-5)
        assert 1.0 / Q[2, 1] == pytest.approx(mean_first_passage_time(U, T, m[2], m[1] + r), rel=1e-5)
        np.testing.assert_allclose(Q.sum(axis=1), 0.0, atol=1e-12 * np.abs(Q).max())


def test_exact_middle_well_rates_agree_with_a_finite_difference_solution():
    # Independent reference: T tau'' - U' tau' = -1 and T p'' - U' p' = 0 on (m0 + r, m2 - r), Dirichlet ends.
    U, minima, _ = three_wells()
    m = [float(c.point[0]) for c in minima]
    T, r, n = 0.2, 0.3, 20000
    x = np.linspace(m[0] + r, m[2] - r, n + 1)
    h = x[1] - x[0]
    g = U.gradient(x[1:-1])
    upper, lower = T / h**2 - g / (2 * h), T / h**2 + g / (2 * h)
    A = diags([lower[1:], np.full(n - 1, -2 * T / h**2), upper[:-1]], [-1, 0, 1], format="csc")
    tau = spsolve(A, -np.ones(n - 1))
    rhs = np.zeros(n - 1)
    rhs[-1] = -upper[-1]
    p = spsolve(A, rhs)
    i = int(np.argmin(np.abs(x[1:-1] - m[1])))
    Q = exact_rate_matrix_1d(U, T, m, r).generator
    assert Q[1, 2] == pytest.approx(p[i] / tau[i], rel=1e-3)
    assert Q[1, 0] == pytest.approx((1 - p[i]) / tau[i], rel=1e-3)


def test_eyring_kramers_rates_tend_to_the_exact_three_well_rates():
    U, minima, saddles = three_wells()
    m = [float(c.point[0]) for c in minima]
    worst = []
    for T in (0.1, 0.05, 0.03):
        ek = eyring_kramers_rate_matrix(minima, [(0, 1, saddles[0]), (1, 2, saddles[1])], T)
        exact = exact_rate_matrix_1d(U, T, m, 0.3)
        ratio = ek.generator[EDGES] / exact.generator[EDGES]
        worst.append(float(np.max(np.abs(ratio - 1.0))))
        assert ek.generator[0, 2] == exact.generator[0, 2] == 0.0  # no direct hop over the middle well
        assert ek.slowest_relaxation_rate / exact.slowest_relaxation_rate == pytest.approx(1.0, abs=1.2 * T)
    # O(T) correction to the prefactor: roughly proportional to T.
    assert worst[0] > worst[1] > worst[2]
    assert worst[2] < 0.03
    assert 0.5 < (worst[0] / 0.1) / (worst[2] / 0.03) < 2.0
