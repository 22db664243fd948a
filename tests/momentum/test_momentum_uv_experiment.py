"""The vector-UV study reproduces alpha(gamma) = 2 (1 - gamma) below 2/3 and C ~ 0.2 (003 Sec. 4.1).

Every fitted number is a mean over independent repetitions (own dataset, start and noise) with a Student-t
interval; two runs with different seeds agree within those intervals (issue 16 items 1-2).
"""

import dataclasses
import math

import numpy as np
import pytest

from sgd_dynamics.experiments.momentum_uv import (
    UVStudyConfig,
    UVStudyResult,
    repetition_seed,
    run_uv_study,
    seed_estimate,
    uv_dataset,
)
from sgd_dynamics.simulate.label_noise import LabelNoiseState, TwoLayerUV, simulate_label_noise
from sgd_dynamics.store import load_record, save_record
from sgd_dynamics.theory.limiting_drift import valley_ou_moments


@pytest.fixture(scope="module")
def two_seeds():
    # the report's quick grid (16 replicas, 3 seeds), one gamma per regime, run with --seed 0 and 1
    cfg = UVStudyConfig.quick(gammas=(0.3, 0.5, 0.8), lrs=(0.01, 0.0316, 0.1))
    return [run_uv_study(dataclasses.replace(cfg, seed=s)) for s in (0, 1)]


def test_quick_study_recovers_drift_exponent_and_constant(two_seeds):
    # Tolerance: the study's 5 % plus 3 s.e. of the mean over 3 seeds (measured at --seed 0: 1.49 +- 0.06
    # and 0.92 +- 0.04; eta = 0.1 is near the crossover at gamma = 0.5 and pulls alpha low).
    for res in two_seeds:
        for gamma in (0.3, 0.5):
            est = res.alpha_spread[f"{gamma:g}"]
            assert abs(est.mean - 2 * (1 - gamma)) <= 0.05 * 2 * (1 - gamma) + 3 * est.stderr, (gamma, est)
        # Paper: fitted 0.2 against the theoretical 0.17 (eq. 10); accept within 0.05 of 0.2.
        assert abs(res.constant - 0.2) < 0.05 + 3 * res.constant_spread.stderr
        assert res.theoretical_constant == pytest.approx(0.171, abs=1e-3)


def test_two_seeds_agree_within_their_intervals(two_seeds):
    # The acceptance check of issue 16: alpha and C of --seed 0 and --seed 1 differ by less than 3 combined
    # standard errors. It has teeth: with intervals 10x narrower (what one seed's replica spread alone
    # suggests above 2/3) the same runs would disagree.
    first, second = two_seeds
    z = []
    for key in first.alpha:
        a, b = first.alpha_spread[key], second.alpha_spread[key]
        lo, hi = max(a.interval[0], b.interval[0]), min(a.interval[1], b.interval[1])
        assert lo <= hi, (key, a.interval, b.interval)   # the 95% intervals overlap
        z.append(abs(a.mean - b.mean) / math.hypot(a.stderr, b.stderr))
    c1, c2 = first.constant_spread, second.constant_spread
    z.append(abs(c1.mean - c2.mean) / math.hypot(c1.stderr, c2.stderr))
    assert max(z) < 3, z
    assert max(z) > 0.3, z   # a 10x narrower interval would fail the check above


def test_above_two_thirds_is_reported_with_an_interval(two_seeds):
    # ERRATA 003.8: no claim alpha = gamma; a finite measurement with a finite interval for every gamma.
    for res in two_seeds:
        assert set(res.alpha) == set(res.alpha_interval) == {"0.3", "0.5", "0.8"}
        low, high = res.alpha_interval["0.8"]
        assert math.isfinite(low) and math.isfinite(high) and low < res.alpha["0.8"] < high
        assert math.isfinite(res.alpha_first_passage["0.8"])


def test_seed_estimate_interval_covers_95_percent_of_normal_means():
    # Monte Carlo against the nominal level: with 3 draws the t quantile (4.30) is needed; the normal 1.96
    # would cover about 80 %. Tolerance: 4 binomial standard errors of the coverage.
    rng = np.random.default_rng(0)
    trials = 4000
    hits = sum(lo <= 0.0 <= hi for lo, hi in
               (seed_estimate(rng.normal(0.0, 2.0, 3)).interval for _ in range(trials)))
    assert abs(hits / trials - 0.95) < 4 * math.sqrt(0.95 * 0.05 / trials)
    est = seed_estimate([1.0, 2.0, 4.0])
    assert est.mean == pytest.approx(7 / 3) and est.stderr == pytest.approx(math.sqrt(7) / 3)  # by hand
    assert math.isnan(seed_estimate([1.0, math.inf]).mean)   # a failed repetition is not averaged away
    with pytest.raises(ValueError, match="values=1"):
        seed_estimate([1.0])


def test_repetitions_of_different_seeds_share_no_stream():
    first = {repetition_seed(0, k) for k in range(8)}
    second = {repetition_seed(1, k) for k in range(8)}
    assert len(first) == len(second) == 8 and not first & second


def test_study_result_round_trips_through_the_store(tmp_path, two_seeds):
    save_record(tmp_path, "uv", two_seeds[0])
    loaded = load_record(tmp_path, "uv", UVStudyResult)
    assert loaded == two_seeds[0]
    assert loaded.alpha_interval == two_seeds[0].alpha_interval


def test_transverse_fluctuation_matches_valley_ou_variance():
    # On the vector-UV valley the one transverse direction is n_hat = (v, u) / |Y|, with curvature
    # lambda = mu2 |Y|^2 / n and label-noise variance s^2 = eps^2 mu2 |Y|^2 / (n P) on pi. To first order the
    # normal displacement is X = n_hat . dw = d(u . v) / |Y|. A wide model keeps |Y| nearly frozen over
    # the run
    # (the drift changes |Y|^2 by about 1 % in 200 steps), and 200 steps are 10 relaxation times 2 / (1 -
    # beta).
    n, p, eps, lr, beta, reps = 200, 5, 0.5, 0.05, 0.9, 2000
    model = TwoLayerUV.vector(uv_dataset(p, seed=3), n)
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((1, 1, n)), rng.standard_normal((1, n, 1))
    v = v - (u[0, 0] @ v[0, :, 0]) / (u[0, 0] @ u[0, 0]) * u[0, 0][None, :, None]
    y2 = float(np.sum(u**2) + np.sum(v**2))
    state = LabelNoiseState.at_rest((np.repeat(u, reps, 0), np.repeat(v, reps, 0)))
    tr = simulate_label_noise(model, state, lr, beta, eps, steps=200, record_every=200, seed=1)
    uu, vv = tr.final.params
    normal = np.einsum("rn,rn->r", uu[:, 0], vv[:, :, 0]) / math.sqrt(y2)
    lam = model.input_variance * y2 / n
    s2 = eps**2 * model.input_variance * y2 / (n * p)
    expected = valley_ou_moments(lr, beta, lam, s2).position_variance
    measured = np.mean(normal**2)  # the mean of X is zero on the valley
    se = expected * math.sqrt(2 / reps)  # standard error of a Gaussian second moment
    assert abs(measured - expected) < 4 * se
