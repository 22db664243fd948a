"""Intervals of the basins page's simulated numbers, and two seeds agreeing within them (issue 16 item 1)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from sgd_dynamics.experiments.basin_selection import coefficient_of_variation
from sgd_dynamics.experiments.escape_study import EscapeStudyConfig, run_escape_study
from sgd_dynamics.experiments.seed_spread import FittedNumber, fitted_numbers, seed_agreement
from sgd_dynamics.experiments.theorem_checks import _relaxation_time, stability_check

# Small enough for seconds per seed; every part of the escape study still runs.
SMALL = EscapeStudyConfig(arrhenius_temperatures=(0.5, 0.6, 0.8), exit_replicas=300, exit_dt=0.005,
                          occupation_temperatures=(0.5,), occupation_replicas=300, occupation_dt=0.02,
                          annealing_replicas=300, annealing_steps=2000, annealing_dt=0.005)


@pytest.fixture(scope="module")
def two_seeds():
    return tuple(fitted_numbers(study=run_escape_study(config=SMALL, seed=s),
                                stability=stability_check(True, s)) for s in (0, 1))


def _z_limit(n: int) -> float:
    """|z| any of ``n`` independent standard normals exceeds with probability 1% (Bonferroni)."""
    return float(stats.norm.isf(0.01 / (2 * n)))


def test_two_seeds_of_a_small_configuration_agree_within_their_intervals(two_seeds):
    pairs = seed_agreement(*two_seeds)
    assert len(pairs) == len(two_seeds[0]) >= 14  # every number of the small run is compared
    # the seed reaches every part: identical values would make the agreement empty
    assert sum(p.first.value != p.second.value for p in pairs) >= len(pairs) - 2
    worst = max(pairs, key=lambda p: abs(p.z))
    assert abs(worst.z) < _z_limit(len(pairs)), (worst.name, worst.first, worst.second)


def test_the_comparison_fails_when_the_intervals_are_too_narrow(two_seeds):
    narrow = [tuple(dataclasses.replace(x, stderr=x.stderr / 5) for x in run) for run in two_seeds]
    assert max(abs(p.z) for p in seed_agreement(*narrow)) > _z_limit(len(narrow[0]))


def test_seed_agreement_matches_by_name_and_rejects_what_it_cannot_compare():
    a = (FittedNumber("x", 1.0, 0.1), FittedNumber("only in a", 2.0, 0.1))
    (pair,) = seed_agreement(a, (FittedNumber("x", 1.3, 0.4),))
    assert pair.z == pytest.approx(-0.3 / math.hypot(0.1, 0.4))
    with pytest.raises(ValueError, match="share no fitted number"):
        seed_agreement(a, (FittedNumber("y", 1.0, 0.1),))
    with pytest.raises(ValueError, match="stderr=0.0 of 'x' is invalid: expected a finite standard error"):
        seed_agreement(a, (FittedNumber("x", 1.0, 0.0),))


def test_coefficient_of_variation_and_its_jackknife_error_match_scipy_and_independent_samples():
    rng = np.random.default_rng(3)
    shape, n = 2.0, 400  # gamma: std/mean = 1/sqrt(shape), finite fourth moment
    samples = rng.gamma(shape, 1.0, (300, n))
    cv, se = np.array([coefficient_of_variation(s) for s in samples]).T
    assert cv[0] == pytest.approx(stats.variation(samples[0], ddof=1), rel=1e-12)
    # 300 samples: the spread of cv has a relative standard error 1/sqrt(2 * 299) = 4 %; 3 of those
    assert np.mean(se) == pytest.approx(np.std(cv, ddof=1), rel=0.13)
    assert abs(np.mean(cv) - 1 / math.sqrt(shape)) < 3 * np.std(cv, ddof=1) / math.sqrt(cv.size) + 1e-3


def test_relaxation_time_is_the_e_folding_time_and_its_bootstrap_error_matches_independent_replica_sets():
    dt, t = 0.01, np.arange(201) * 0.01
    tau = 0.3037  # between two steps: the interpolation is exercised
    curves = np.exp(-t / tau)[:, None] * np.ones((1, 4))
    exact, _ = _relaxation_time(curves, 0.0, dt, np.random.default_rng(0))
    assert exact == pytest.approx(tau, rel=1e-3)  # linear interpolation between steps of dt ~ tau / 30
    rng = np.random.default_rng(4)
    estimates, errors = [], []
    for _ in range(120):
        taus = tau * rng.lognormal(0.0, 0.3, 24)  # replicas relax at different rates
        loss = 1.0 + np.exp(-t[:, None] / taus[None, :]) + 0.02 * rng.standard_normal((t.size, taus.size))
        value, err = _relaxation_time(loss, 1.0, dt, rng)
        estimates.append(value)
        errors.append(err)
    # 120 sets: the spread has a relative standard error of 1/sqrt(2 * 119) = 6.5 %; 3 of those
    assert np.mean(errors) == pytest.approx(np.std(estimates, ddof=1), rel=0.2)
