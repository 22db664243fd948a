import numpy as np
import pytest

from sgd_dynamics.theory.escape import mean_first_passage_time
from sgd_dynamics.theory.fokker_planck import fokker_planck_operator
from sgd_dynamics.theory.potential import parse_potential


@pytest.mark.parametrize("curvature", [0.5, 2.0])
@pytest.mark.parametrize("T", [0.05, 0.3, 2.0])
def test_ou_spectral_gap_is_the_curvature_for_every_temperature(curvature, T):
    width = 12 * np.sqrt(T / curvature)  # +-12 standard deviations of the Gibbs law
    fp = fokker_planck_operator(lambda x: curvature * x**2 / 2, T, -width, width, 1200)
    assert fp.spectral_gap == pytest.approx(curvature, rel=2e-4)
    # The OU spectrum is k * curvature; second-order convergence of the scheme:
    err = [abs(fokker_planck_operator(lambda x: curvature * x**2 / 2, T, -width, width, n).spectral_gap
               - curvature) for n in (300, 600)]
    assert 3.0 < err[0] / err[1] < 5.0
    np.testing.assert_allclose(fp.eigenvalues[:4] / curvature, [0, 1, 2, 3], atol=2e-3)


def test_stationary_law_is_gibbs_and_the_solver_relaxes_to_it():
    U = parse_potential("(x**2 - 1)**2 + 0.3*x")
    T = 0.4
    fp = fokker_planck_operator(U, T, -3.0, 3.0, 600)
    grid = np.linspace(-3, 3, 60001)
    w = np.exp(-U.energy(grid) / T)
    gibbs = np.exp(-U.energy(fp.x) / T) / np.trapezoid(w, grid)
    np.testing.assert_allclose(fp.density(fp.gibbs), gibbs, rtol=2e-4, atol=1e-8)
    p0 = np.zeros(600)
    p0[np.searchsorted(fp.x, 1.0)] = 1.0
    p = fp.evolve(p0, [0.0, 1.0, 200.0])
    # Mass is conserved up to eigenvector rounding amplified by pi^(-1/2) in the tails.
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-8)
    np.testing.assert_allclose(p[-1], fp.gibbs, atol=1e-9)
    L = fp.generator()
    np.testing.assert_allclose(L @ fp.gibbs, 0.0, atol=1e-8 * np.abs(L).max())


def test_ou_transient_density_matches_the_exact_gaussian():
    h, T, m0, t = 1.3, 0.5, 1.5, 0.4
    fp = fokker_planck_operator(lambda x: h * x**2 / 2, T, -5.0, 6.0, 1500)
    p0 = np.exp(-(fp.x - m0) ** 2 / (2 * 0.01))
    p0 /= p0.sum()
    p = fp.evolve(p0, t)[0]
    mean = m0 * np.exp(-h * t)
    var = T / h * (1 - np.exp(-2 * h * t)) + 0.01 * np.exp(-2 * h * t)
    assert np.sum(p * fp.x) == pytest.approx(mean, rel=1e-4)
    assert np.sum(p * (fp.x - mean) ** 2) == pytest.approx(var, rel=1e-3)


def test_double_well_gap_is_the_sum_of_hopping_rates():
    # Two-state reduction at low T: lambda_1 = k_LR + k_RL = 2 / tau(well -> other well) up to O(e^{-dU/T}).
    U = parse_potential("(x**2 - 1)**2")
    T = 0.1
    fp = fokker_planck_operator(U, T, -2.5, 2.5, 2000)
    tau = mean_first_passage_time(U, T, -1.0, 1.0)
    assert fp.spectral_gap * tau / 2 == pytest.approx(1.0, rel=0.01)
    assert fp.eigenvalues[2] > 50 * fp.spectral_gap  # clear time-scale separation (metastability)
