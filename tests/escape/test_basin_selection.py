import numpy as np
import pytest

from sgd_dynamics.experiments.basin_selection import (
    exit_time_statistics,
    laplace_occupation,
    quadrature_occupation,
    sharp_wide_landscape,
    simulated_occupation,
)
from sgd_dynamics.simulate.langevin import first_passage_times
from sgd_dynamics.theory.escape import mean_first_passage_time
from sgd_dynamics.theory.potential import parse_potential

LANDSCAPE = sharp_wide_landscape()


def test_landscape_has_the_stated_shape():
    L = LANDSCAPE
    np.testing.assert_allclose(L.wide.point, [-1, 0], atol=1e-8)
    np.testing.assert_allclose(L.sharp.point, [1, 0], atol=1e-8)
    np.testing.assert_allclose(L.saddle.point, [0, 0], atol=1e-10)
    assert L.wide.index == 0 and L.sharp.index == 0 and L.saddle.index == 1
    # tanh(3) ~ 0.995: transverse curvatures ~ 0.509 (wide) and ~ 3.991 (sharp); barrier curvature 8a = 4.
    assert L.wide.hessian_eigenvalues[0] == pytest.approx(0.5 + 3.5 * (1 - np.tanh(3)) / 2, rel=1e-8)
    assert L.sharp.hessian_eigenvalues == pytest.approx([0.5 + 3.5 * (1 + np.tanh(3)) / 2, 4.0], rel=1e-8)
    assert L.saddle.energy - L.wide.energy == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="k_wide < k_sharp"):
        sharp_wide_landscape(k_wide=4.0, k_sharp=1.0)


def test_laplace_occupation_converges_to_quadrature_as_temperature_falls():
    errs = [abs(laplace_occupation(LANDSCAPE, T) - quadrature_occupation(LANDSCAPE, T)) for T in (0.25, 0.05, 0.01)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-3
    # Laplace: P_wide / P_sharp = sqrt(det H_sharp / det H_wide) = 2.8 for this landscape.
    p = laplace_occupation(LANDSCAPE, 0.05)
    assert p / (1 - p) == pytest.approx(np.sqrt(np.prod(LANDSCAPE.sharp.hessian_eigenvalues)
                                                 / np.prod(LANDSCAPE.wide.hessian_eigenvalues)), rel=1e-12)


def test_isotropic_simulation_matches_gibbs_and_sgd_noise_shrinks_the_wide_basin_advantage():
    T = 0.25
    gibbs = quadrature_occupation(LANDSCAPE, T)
    iso = simulated_occupation(LANDSCAPE, T, "isotropic", 2000, 150.0, 0.01, seed=1)
    assert abs(iso.wide - gibbs) < 3 * iso.stderr + 0.01  # + 0.01: EM bias at dt = 0.01 (h dt / 2 = 2 %)
    sgd = simulated_occupation(LANDSCAPE, T, "sgd", 2000, 150.0, 0.01, seed=2)
    assert iso.wide - sgd.wide > 5 * np.hypot(iso.stderr, sgd.stderr)
    assert sgd.wide > 0.5 - 3 * sgd.stderr  # the wide basin does not lose outright


def test_exit_times_from_a_metastable_well_are_exponential_and_not_otherwise():
    U = parse_potential("(x**2 - 1)**2")
    T = 0.25
    fp = first_passage_times(U.gradient, np.full(400, -1.0), T, 0.005, 400_000, seed=8, target=0.5)
    st = exit_time_statistics(fp.times)
    assert st.ks_pvalue > 1e-3
    assert abs(st.mean - mean_first_passage_time(U, T, -1.0, 0.5)) < 3 * st.stderr + 0.02 * st.mean
    # Downhill exit without a barrier: the time is nearly deterministic, far from exponential.
    V = parse_potential("x**2")
    fp2 = first_passage_times(V.gradient, np.full(400, -2.0), 0.05, 0.005, 100_000, seed=9, target=-0.5)
    assert exit_time_statistics(fp2.times).ks_pvalue < 1e-6
