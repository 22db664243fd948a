import math

import numpy as np
import pytest
from scipy import integrate

from sgd_dynamics.theory.escape import (
    KramersNotApplicable,
    eyring_kramers_time,
    find_minimum,
    find_saddle,
    fit_arrhenius,
    kramers_path_time,
    kramers_time,
    locate_well_and_barrier,
    log_mean_first_passage_time,
    mean_first_passage_time,
    path_barrier,
)
from sgd_dynamics.theory.potential import parse_potential

DOUBLE_WELL = parse_potential("(x**2 - 1)**2")


def nested_quad_mfpt(U, T, x0, b):
    """Independent reference: scipy's adaptive QUADPACK on both integrals (no shared code)."""
    shift = 0.0  # min U = 0 for the double well

    def inner(y):
        return integrate.quad(lambda z: math.exp(-(U(z) - shift) / T), -math.inf, y, epsabs=0,
                              epsrel=1e-13, limit=200, points=None)[0]

    outer = integrate.quad(lambda y: math.exp((U(y) - shift) / T) * inner(y), x0, b, epsabs=0,
                           epsrel=1e-12, limit=200)[0]
    return outer / T


@pytest.mark.parametrize(("T", "errata"), [(0.1, 1.276e4), (0.2, 90.35), (0.5, 4.541)])
def test_exact_mfpt_matches_errata_and_independent_quadrature(T, errata):
    tau = mean_first_passage_time(DOUBLE_WELL, T, -0.9, 0.0)
    assert float(f"{tau:.4g}") == errata  # the four significant figures of ERRATA 004.4
    reference = nested_quad_mfpt(lambda x: (x * x - 1) ** 2, T, -0.9, 0.0)
    assert abs(tau / reference - 1) < 1e-6


def test_mfpt_mirror_symmetry_and_log_form_at_very_low_temperature():
    left = mean_first_passage_time(DOUBLE_WELL, 0.2, -0.9, 0.0)
    assert mean_first_passage_time(DOUBLE_WELL, 0.2, 0.9, 0.0) == pytest.approx(left, rel=1e-12)
    # At T = 0.002 tau ~ e^500 (near overflow): log form vs Kramers/2 to the barrier top, which is
    # asymptotically exact up to O(T) corrections.
    log_tau = log_mean_first_passage_time(DOUBLE_WELL, 0.002, -0.9, 0.0)
    log_kramers_half = math.log(math.pi / math.sqrt(32)) + 1 / 0.002
    assert abs(log_tau - log_kramers_half) < 0.01


def test_kramers_over_exact_well_to_well_tends_to_one():
    well, barrier = locate_well_and_barrier(DOUBLE_WELL, -0.9, 0.0)
    assert well == pytest.approx(-1.0, abs=1e-12) and barrier == pytest.approx(0.0, abs=1e-12)
    temps = [0.2, 0.1, 0.05, 0.025]
    ratios = [kramers_time(DOUBLE_WELL, T, well, barrier) / mean_first_passage_time(DOUBLE_WELL, T, -1.0, 1.0)
              for T in temps]
    gaps = [abs(1 - r) for r in ratios]
    assert all(a > b for a, b in zip(gaps[:-1], gaps[1:], strict=True))  # monotone approach
    assert gaps[-1] < 0.015
    # Kramers prefactor of ERRATA 004.4: 2 pi / sqrt(8 * 4) = 1.111
    assert kramers_time(DOUBLE_WELL, 1.0, -1.0, 0.0) / math.e == pytest.approx(1.1107, abs=1e-4)


def test_eyring_kramers_finds_critical_points_and_reduces_to_kramers_on_a_separable_potential():
    k = 3.0
    U2 = parse_potential(f"(x**2 - 1)**2 + {k}/2 * y**2")
    m = find_minimum(U2, [-0.8, 0.2])
    s = find_saddle(U2, [0.1, 0.05])
    np.testing.assert_allclose(m.point, [-1, 0], atol=1e-9)
    np.testing.assert_allclose(s.point, [0, 0], atol=1e-12)
    np.testing.assert_allclose(m.hessian_eigenvalues, [k, 8], rtol=1e-9)
    np.testing.assert_allclose(s.hessian_eigenvalues, [-4, k], rtol=1e-12)
    for T in (0.3, 0.1):
        assert eyring_kramers_time(m, s, T) == pytest.approx(kramers_time(DOUBLE_WELL, T, -1.0, 0.0),
                                                             rel=1e-8)
    # Rotating the landscape leaves the Eyring–Kramers time unchanged.
    c, sn = math.cos(0.6), math.sin(0.6)
    u, v = f"({c}*x + {sn}*y)", f"(-{sn}*x + {c}*y)"
    R = parse_potential(f"({u}**2 - 1)**2 + {k}/2 * {v}**2")
    mr = find_minimum(R, [-0.7, -0.5])
    sr = find_saddle(R, [0.05, -0.05])
    assert eyring_kramers_time(mr, sr, 0.1) == pytest.approx(eyring_kramers_time(m, s, 0.1), rel=1e-8)


def test_critical_point_checks_reject_the_wrong_kind():
    U2 = parse_potential("(x**2 - 1)**2 + y**2")
    with pytest.raises(ValueError, match="no index-1 saddle"):
        find_saddle(U2, [-1.05, 0.01])
    with pytest.raises(ValueError, match="temperature=0"):
        mean_first_passage_time(DOUBLE_WELL, 0, -0.9, 0.0)
    with pytest.raises(ValueError, match="not confining"):
        mean_first_passage_time(parse_potential("x**3 - x"), 0.1, -0.3, 0.5)


def test_arrhenius_slope_of_exact_times_is_the_barrier():
    temps = np.array([0.1, 0.08, 0.06, 0.05])
    times = [mean_first_passage_time(DOUBLE_WELL, T, -1.0, 1.0) for T in temps]
    fit = fit_arrhenius(temps, times)
    assert fit.barrier == pytest.approx(1.0, abs=0.02)  # O(T) prefactor corrections bend the line slightly
    assert math.exp(fit.log_prefactor) == pytest.approx(2 * math.pi / math.sqrt(32), rel=0.1)


TRIPLE_WELL = parse_potential("0.5*x**2*(x**2-2)**2+0.1*x")  # minima near -1.42, -0.03, 1.41


def test_kramers_path_over_two_barriers_tends_to_the_exact_well_to_well_time():
    # Issue 12, defect 4: the first barrier alone gave 156.8 against the exact 1273 at T = 0.12, and the ratio
    # fell like e^{-0.16/T}. Laplace on the double integral sums every (well, saddle) pair with m < s.
    start, target = -1.4203, 1.4078
    temps = [0.12, 0.06, 0.03, 0.015]
    ratios = [kramers_path_time(TRIPLE_WELL, T, start, target).time
              / mean_first_passage_time(TRIPLE_WELL, T, start, target) for T in temps]
    gaps = [abs(1 - r) for r in ratios]
    assert all(a > b for a, b in zip(gaps[:-1], gaps[1:], strict=True))
    # The relative correction is O(T): the gap per unit T stays bounded (about 0.9 here).
    assert all(g / T < 1.2 for g, T in zip(gaps, temps, strict=True)) and gaps[-1] < 0.02
    path = kramers_path_time(TRIPLE_WELL, 0.12, start, target)
    assert len(path.saddles) == 2 and len(path.minima) == 2
    well, saddle = path.dominant  # the deep left well under the higher right barrier
    assert well == pytest.approx(-1.42034, abs=1e-4) and saddle == pytest.approx(0.83505, abs=1e-4)
    barrier = float(TRIPLE_WELL.energy(saddle) - TRIPLE_WELL.energy(well))
    assert path_barrier(TRIPLE_WELL, 0.12, start, target) == pytest.approx(barrier, abs=1e-6)


def test_kramers_path_mirrors_and_reduces_to_one_barrier():
    one = kramers_path_time(DOUBLE_WELL, 0.3, -0.9, 0.0)
    assert one.time == pytest.approx(kramers_time(DOUBLE_WELL, 0.3, -1.0, 0.0), rel=1e-10)
    assert kramers_path_time(DOUBLE_WELL, 0.3, 0.9, 0.0).time == pytest.approx(one.time, rel=1e-10)
    back = kramers_path_time(TRIPLE_WELL, 0.05, 1.4078, -1.4203)  # right to left: other barriers dominate
    exact_back = mean_first_passage_time(TRIPLE_WELL, 0.05, 1.4078, -1.4203)
    assert back.time / exact_back == pytest.approx(1, abs=0.06)
    with pytest.raises(KramersNotApplicable, match="no barrier between start=-0.9 and target=-0.1"):
        kramers_path_time(DOUBLE_WELL, 0.3, -0.9, -0.1)
    with pytest.raises(KramersNotApplicable, match="degenerate"):
        kramers_path_time(parse_potential("x**4 - x**5/2"), 0.3, 0.1, 2.0)  # U'' = 0 at the well x = 0


def test_kramers_time_is_infinite_not_an_overflow_error_at_very_low_temperature():
    assert kramers_time(DOUBLE_WELL, 0.001, -1.0, 0.0) == math.inf
    assert kramers_path_time(DOUBLE_WELL, 0.001, -0.9, 0.0).log_time == pytest.approx(
        math.log(2 * math.pi / math.sqrt(32)) + 1000, rel=1e-12)


def test_path_barrier_is_the_arrhenius_slope_of_the_exact_mfpt():
    assert path_barrier(parse_potential("x**2"), 0.5, 0.0, 2.0) == pytest.approx(4.0, abs=1e-9)
    assert path_barrier(parse_potential("x**2"), 0.5, 2.0, 0.0) == 0.0  # downhill
    temps = np.array([0.05, 0.04, 0.03])
    logs = [log_mean_first_passage_time(TRIPLE_WELL, T, -1.4203, 1.4078) for T in temps]
    slope = np.polyfit(1 / temps, logs, 1)[0]
    assert slope == pytest.approx(path_barrier(TRIPLE_WELL, 0.05, -1.4203, 1.4078), rel=0.02)
