import math

import numpy as np
import pytest
from scipy import integrate

from sgd_dynamics.experiments.annealing import (
    MAX_TILT,
    gibbs_deep_fraction,
    run_annealing,
    tilted_double_well,
)

TILT = 0.3


@pytest.fixture(scope="module")
def result():
    # 2000 replicas, t = 100 at dt = 0.005: the constant schedule at T0 = 0.5 relaxes in ~4 time units
    # (escape rates ~0.2 and ~0.07 from the two wells), so it has reached its stationary law.
    return run_annealing(seed=11, tilt=TILT, temperature=0.5, n_steps=20_000, dt=0.005, replicas=2000)


def test_tilted_double_well_has_a_deeper_and_a_shallower_minimum_with_a_barrier_between():
    well = tilted_double_well(TILT)
    # Independent check: the critical points are the real roots of U' = 4x^3 - 4x + c.
    roots = np.sort(np.roots([4.0, 0.0, -4.0, TILT]).real)
    np.testing.assert_allclose([well.deep, well.barrier, well.shallow], roots, atol=1e-8)

    def U(x):
        return (x**2 - 1) ** 2 + TILT * x

    def U2(x):
        return 12 * x**2 - 4

    assert U2(roots[0]) > 0 and U2(roots[1]) < 0 and U2(roots[2]) > 0
    assert U(roots[0]) < U(roots[2])  # the left minimum is the deeper one
    assert well.shallow_depth == pytest.approx(U(roots[1]) - U(roots[2]), rel=1e-9)
    assert well.deep_depth == pytest.approx(U(roots[1]) - U(roots[0]), rel=1e-9)
    assert well.in_deep_basin(np.array([-1.0, 1.0])).tolist() == [True, False]


def test_gibbs_deep_fraction_against_trapezoidal_quadrature_on_a_fine_grid():
    well = tilted_double_well(TILT)
    x = np.linspace(-4.0, 4.0, 400_001)
    for T in (0.05, 0.5, 2.0):
        w = np.exp(-((x**2 - 1) ** 2 + TILT * x - well.potential.energy(well.deep)) / T)
        deep = integrate.trapezoid(np.where(x < well.barrier, w, 0.0), x)
        assert gibbs_deep_fraction(well, T) == pytest.approx(deep / integrate.trapezoid(w, x), rel=1e-6)
    # Low-temperature limit: Laplace, ratio of Boltzmann weights over sqrt(curvature).
    T = 0.02
    U = well.potential
    r = math.exp(-(U.energy(well.shallow) - U.energy(well.deep)) / T) * math.sqrt(
        U.hessian(well.deep) / U.hessian(well.shallow))
    assert 1 - gibbs_deep_fraction(well, T) == pytest.approx(r / (1 + r), rel=0.05)


def test_constant_schedule_reaches_the_gibbs_fraction_within_three_binomial_standard_errors(result):
    const = result.outcome("constant")
    assert const.final_temperature == 0.5
    assert const.stderr == pytest.approx(math.sqrt(const.deep_fraction * (1 - const.deep_fraction) / 2000))
    assert abs(const.deep_fraction - const.gibbs_fraction) < 3 * const.stderr
    assert const.gibbs_fraction == pytest.approx(gibbs_deep_fraction(result.well, 0.5))
    assert const.deep_fraction_history[0] == 0.0  # all replicas start in the shallow well


def test_slow_cooling_beats_constant_and_the_log_schedule_below_hajeks_constant_freezes(result):
    const, step, cosine, log = (result.outcome(k) for k in ("constant", "step", "cosine", "log"))
    # Cooling slowly moves the replicas' law towards the colder Gibbs law, which favours the deep basin.
    for cooled in (step, cosine):
        assert cooled.deep_fraction - const.deep_fraction > 3 * math.hypot(cooled.stderr, const.stderr)
        assert cooled.deep_fraction < cooled.gibbs_fraction  # frozen before the final temperature
        assert cooled.final_temperature == pytest.approx(0.5 * 0.5**3, rel=1e-6)
    # log: T0 / log(e + k / every), every = n_steps // 100 = 200 steps (one time unit), so c = T0 = 0.5 is
    # below the shallow well's depth (0.72): Hajek's condition fails. It cools faster than the replicas
    # escape (T = 0.25 by t = 5) and freezes below both the constant schedule and its own final Gibbs law.
    assert result.log_constant == 0.5 < result.well.shallow_depth
    assert log.final_temperature == pytest.approx(0.5 / math.log(math.e + 19_999 / 200))
    assert const.deep_fraction - log.deep_fraction > 3 * math.hypot(const.stderr, log.stderr)
    assert log.gibbs_fraction - log.deep_fraction > 3 * log.stderr
    assert log.deep_fraction > 3 * log.stderr  # replicas do cross while T is still high


def test_log_schedule_outcome_does_not_depend_on_the_step_size_at_fixed_simulated_time(result):
    # The schedule's time scale is n_steps // 100 steps, i.e. 1 % of the run in time whatever dt is; the
    # old step-unit schedule log 2 / log(k + 2) did not have this property.
    log = result.outcome("log")
    fine = run_annealing(seed=12, tilt=TILT, temperature=0.5, n_steps=40_000, dt=0.0025, replicas=2000,
                         schedules=("log",)).outcome("log")
    assert fine.final_temperature == pytest.approx(log.final_temperature, rel=1e-4)
    np.testing.assert_allclose(fine.temperature_history, log.temperature_history, rtol=1e-3)
    assert abs(fine.deep_fraction - log.deep_fraction) < 3 * math.hypot(fine.stderr, log.stderr)


def test_histories_and_temperatures_are_recorded_on_the_same_steps(result):
    for o in result.outcomes:
        assert o.record_steps[0] == 0 and o.record_steps[-1] == result.n_steps
        assert o.deep_fraction_history.shape == o.temperature_history.shape == o.record_steps.shape
        assert o.deep_fraction_history[-1] == o.deep_fraction
        assert o.temperature_history[0] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tilt": 0.0}, r"tilt=0.0 is invalid: expected 0 < tilt < 1.5396"),
        ({"tilt": 2.0}, r"tilt=2.0 is invalid"),
        ({"temperature": -1.0}, r"temperature=-1.0 is invalid: expected a finite temperature > 0"),
        ({"dt": 0.1}, r"dt=0.1 is invalid: expected 0 < dt < 0.05"),
        ({"n_steps": 1001}, r"n_steps=1001 is invalid: expected a multiple of n_records=50"),
        ({"replicas": 1}, r"replicas=1 is invalid: expected an integer >= 2"),
        ({"schedules": ("linear",)}, r"schedules=\('linear',\) is invalid"),
        ({"factor": 1.5}, r"factor=1.5 is invalid: expected 0 < factor < 1"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_annealing(seed=0, **kwargs)


def test_max_tilt_is_where_the_two_minima_merge():
    # The cubic 4x^3 - 4x + c has three real roots iff its discriminant is positive: c < 8 / (3 sqrt 3).
    for c, n_real in ((MAX_TILT * 0.999, 3), (MAX_TILT * 1.001, 1)):
        roots = np.roots([4.0, 0.0, -4.0, c])
        assert int(np.sum(np.abs(roots.imag) < 1e-6)) == n_real
    with pytest.raises(ValueError, match="temperature=0 is invalid"):
        gibbs_deep_fraction(tilted_double_well(TILT), 0)
    with pytest.raises(ValueError, match="kind='linear' is invalid"):
        run_annealing(seed=0, n_steps=100, n_records=10, replicas=2,
                      schedules=("constant",)).outcome("linear")
