"""Matrix sensing (003 App. A.2, scaled down): times to the floor per beta, beta* with intervals."""

import math
from dataclasses import replace

import numpy as np
import pytest

from sgd_dynamics.experiments.matrix_sensing import (
    DEFAULT_MOMENTA,
    MatrixSensingConfig,
    estimate_optimal_momentum,
    parabola_vertex,
    run_matrix_sensing,
    time_to_level,
)
from sgd_dynamics.experiments.momentum_study import SENSING_TOLERANCE, sensing_row
from sgd_dynamics.simulate import MatrixSensing, MatrixSensingEnsemble


@pytest.fixture(scope="module")
def small_seeds():
    # the three betas of the default grid around the minimum, 8 replicas: about 2 s a seed
    cfg = MatrixSensingConfig(momenta=DEFAULT_MOMENTA[3:6], steps=1000, max_steps=2000, n_bootstrap=100)
    return {seed: run_matrix_sensing(replace(cfg, seed=seed)) for seed in (0, 1)}


def test_time_to_level_interpolates_the_first_crossing_and_marks_censored_runs_inf():
    steps = np.arange(0, 101, 10)
    falling = 10.0 - 0.1 * steps                   # crosses 3.5 at t = 65 exactly
    flat = np.full(steps.size, 5.0)                # never below 3.5
    dip = np.where(steps == 40, 3.0, 6.0)          # first below at the record t = 40, from 6 at t = 30
    rise = np.where(steps < 20, 3.0, np.where(steps < 60, 5.0, 2.0))   # starts inside: counts after it left
    t = time_to_level(np.stack([falling, flat, dip, rise]), steps, 3.5)
    assert t[0] == pytest.approx(65.0)
    assert t[1] == math.inf
    assert t[2] == pytest.approx(30 + 10 * (6 - 3.5) / (6 - 3))
    assert t[3] == pytest.approx(50 + 10 * (5 - 3.5) / (5 - 2))


def test_parabola_vertex_matches_the_polyfit_vertex_and_declines_edges_and_censored_neighbours():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(-3, 0, 7))
    y = 0.7 * (x - x[3] - 0.05) ** 2 + 0.01 * rng.standard_normal(7)
    i = int(np.argmin(y))
    a, b, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)   # independent: least squares on three points
    vertex, interior = parabola_vertex(x, y)
    assert interior and vertex == pytest.approx(-b / (2 * a), rel=1e-9)
    assert parabola_vertex(x, x) == (x[0], False)              # minimum at the grid's end
    censored = y.copy()
    censored[i + 1] = math.inf
    assert parabola_vertex(x, censored) == (x[i], False)


def test_estimator_recovers_the_minimum_of_a_known_timescale_from_synthetic_replicas():
    # Each replica decays as F_j (1 + A exp(-t / tau(q))) to its own floor F_j, q = 1 - beta, with
    # tau = q + q*^3 / (2 q^2), minimal at q* = 0.0105 (calculus, not the estimator). The time to (1 + level)
    # floor is tau log(A / level), so its argmin is q*. The three-point parabola of log tau against log q has
    # a vertex error below |g'''/g''| h^2 / 6 = h^2 / 6 = 2.0% (g = log tau, h = log sqrt 2 the spacing).
    q_star, amplitude, level = 0.0105, 0.2, 0.02
    momenta = DEFAULT_MOMENTA
    q = 1 - np.asarray(momenta)
    tau = 1e5 * (q + q_star**3 / (2 * q**2))
    steps = np.arange(0, 20_001, 5)
    rng = np.random.default_rng(0)
    floors = 1 + 0.05 * rng.standard_normal(6)
    clean = floors[None, :, None] * (1 + amplitude * np.exp(-steps / tau[:, None, None]))
    traces = clean + 2e-4 * rng.standard_normal(clean.shape)
    est = estimate_optimal_momentum(momenta, steps, traces, level, n_bootstrap=200, seed=1)
    assert est.reached.all() and est.interior and est.interior_fraction == 1.0
    assert est.floor == pytest.approx(floors.mean(), rel=1e-3)
    expected_times = tau * math.log(amplitude / level)
    assert est.time_to_level == pytest.approx(expected_times, rel=0.02)
    lo, hi = 1 - est.best_momentum_interval[1], 1 - est.best_momentum_interval[0]
    bias = 0.021   # the parabola bound above
    assert lo / (1 + bias) <= q_star <= hi * (1 + bias)
    assert 1 - est.best_momentum == pytest.approx(q_star, rel=bias)


def test_a_diverged_replica_censors_its_beta_and_leaves_no_nan():
    steps = np.arange(0, 2001, 10)
    tau = np.array([300.0, 200.0, 250.0, 400.0])
    traces = np.broadcast_to(1 + 0.2 * np.exp(-steps / tau[:, None, None]), (4, 3, steps.size)).copy()
    traces[1, 2, 150:] = np.nan                   # the fastest beta blows up in one replica
    est = estimate_optimal_momentum((0.99, 0.98, 0.97, 0.96), steps, traces, 0.02, n_bootstrap=50)
    assert est.diverged.tolist() == [False, True, False, False]
    assert est.time_to_level[1] == math.inf and np.isfinite(est.time_to_level[[0, 2, 3]]).all()
    # the lowest late median (last quarter, 50 records) among the finite betas: tau = 250
    assert est.floor == pytest.approx(1 + 0.2 * np.median(np.exp(-steps[-50:] / 250.0)), rel=1e-12)
    assert not est.interior and est.grid_best_momentum == 0.97    # its neighbour 0.98 is censored
    assert not np.isnan(est.time_to_level_interval).any()
    assert est.one_minus_best_stderr == math.inf     # located only to the grid: never judged


def test_ensemble_replicas_solve_their_own_instance():
    ens = MatrixSensingEnsemble.random(3, 5, 2, 12, seed=7)
    rng = np.random.default_rng(0)
    u, v, shift = rng.standard_normal((6, 5, 5)), rng.standard_normal((6, 5, 5)), rng.standard_normal((6, 12))
    gu, gv = ens.gradient((u, v), shift)
    for n in range(6):
        single: MatrixSensing = ens.instances[n % 3]
        p = (u[n:n + 1], v[n:n + 1])
        su, sv = single.gradient(p, shift[n:n + 1])
        np.testing.assert_allclose((gu[n], gv[n]), (su[0], sv[0]), rtol=1e-12, atol=1e-14)
        assert ens.trace_hessian((u, v))[n] == pytest.approx(single.trace_hessian(p)[0], rel=1e-12)
        assert ens.test_error((u, v))[n] == pytest.approx(single.test_error(p)[0], rel=1e-12)
    with pytest.raises(ValueError, match="replicas=4 is invalid: expected a multiple of instances=3"):
        ens.loss((u[:4], v[:4]))


def test_two_seeds_agree_within_their_intervals_and_every_beta_reaches_the_floor(small_seeds):
    (a, b) = (small_seeds[0].optimum, small_seeds[1].optimum)
    for opt in (a, b):
        assert opt.reached.all() and opt.interior
        assert np.isfinite(opt.time_to_level_interval[:, 0]).all()
        lo, hi = opt.best_momentum_interval
        assert lo <= opt.best_momentum <= hi and hi - lo > 0
    assert max(a.best_momentum_interval[0], b.best_momentum_interval[0]) <= min(
        a.best_momentum_interval[1], b.best_momentum_interval[1])   # the intervals overlap
    gap = abs(a.best_momentum - b.best_momentum)
    assert gap <= 2 * math.hypot(a.one_minus_best_stderr, b.one_minus_best_stderr)


def test_the_default_grid_brackets_the_prediction_without_containing_it(small_seeds):
    ms = small_seeds[0]
    predicted = ms.predicted_constant * ms.config.lr ** (2 / 3)
    assert ms.predicted_constant == pytest.approx((4 * 0.1 * 1.0 / (20 * 200)) ** (1 / 3), rel=0.05)
    for grid in (DEFAULT_MOMENTA, MatrixSensingConfig.quick().momenta):
        q = 1 - np.asarray(grid)
        assert q.min() < predicted < q.max()
        assert np.min(np.abs(q / predicted - 1)) > 0.1
    with pytest.warns(UserWarning, match="within 5% of the predicted"):
        run_matrix_sensing(MatrixSensingConfig(momenta=(0.98, 0.99, 0.995), steps=20, max_steps=20,
                                               replicas=2, n_bootstrap=10))


def test_row_is_judged_only_outside_the_noise(small_seeds):
    ms = small_seeds[0]
    row = sensing_row(ms)
    assert row.measured == pytest.approx(1 - ms.optimum.best_momentum)
    assert row.measured_stderr == ms.optimum.one_minus_best_stderr
    inside = 2 * row.measured_stderr >= SENSING_TOLERANCE * abs(row.measured)
    assert (row.verdict == "reported") == inside
    noisy = replace(ms, optimum=replace(ms.optimum, one_minus_best_stderr=0.2 * row.measured))
    assert sensing_row(noisy).verdict == "reported"   # 2 s.e. = 40% > the 30% tolerance
    assert "CI [" in row.note and "nan" not in row.note


def test_runs_are_extended_until_every_beta_reaches_the_floor_or_censored_at_the_cap():
    cfg = MatrixSensingConfig(momenta=(0.95, 0.988, 0.9915), steps=400, max_steps=1200, replicas=2,
                              n_bootstrap=20)
    res = run_matrix_sensing(cfg)
    assert res.steps[-1] == 1200 and np.all(np.diff(res.steps) == cfg.record_every)   # extended twice
    assert res.optimum.reached.tolist() == [False, True, True]     # 0.95 needs ~1e4 steps: censored
    assert res.optimum.time_to_level[0] == math.inf and not res.optimum.interior
    assert sensing_row(res).verdict == "reported"     # beta* is only a grid point here
    assert math.isfinite(res.test_error[1, -1]) and res.test_error[1, -1] < 0.05 * res.test_error[1, 0]


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(momenta=(0.9, 0.99)), "momenta=.* at least three"),
    (dict(steps=5000, max_steps=100), "max_steps=100 is invalid: expected >= steps=5000"),
    (dict(replicas=1), "replicas"),
])
def test_bad_settings_are_refused_with_the_valid_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MatrixSensingConfig(**kwargs)
