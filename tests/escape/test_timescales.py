import math

import numpy as np
import pytest
from scipy import linalg

from sgd_dynamics.simulate.langevin import euler_maruyama
from sgd_dynamics.simulate.timescales import (
    autocorrelation,
    core_labels,
    count_core_transitions,
    estimate_rate_matrix,
    fit_decay_rate,
    integrated_autocorrelation_time,
)
from sgd_dynamics.theory.escape import find_minimum, find_saddle
from sgd_dynamics.theory.fokker_planck import fokker_planck_operator
from sgd_dynamics.theory.metastability import exact_rate_matrix_1d, eyring_kramers_rate_matrix
from sgd_dynamics.theory.potential import parse_potential


def em_ou_rate(h: float, dt: float) -> float:
    """Euler–Maruyama on ``U = h x^2 / 2`` is AR(1) with coefficient ``1 - h dt``: its decay rate."""
    return -math.log(1.0 - h * dt) / dt


def within(estimate, reference, n_se=3.0):
    return abs(estimate.value - reference) <= n_se * estimate.stderr


# --- estimators on hand-made data --------------------------------------------------------------------
def test_autocorrelation_of_an_ar1_chain():
    rng = np.random.default_rng(5)
    phi, n, r = 0.95, 6000, 64
    x = np.empty((n, r))
    x[0] = rng.standard_normal(r) / math.sqrt(1 - phi**2)
    for k in range(1, n):
        x[k] = phi * x[k - 1] + rng.standard_normal(r)
    acf = autocorrelation(x, dt=0.1, max_lag=20.0, n_groups=16)
    rate = fit_decay_rate(acf, (0.5, 4.0))
    exact = -math.log(phi) / 0.1
    assert within(rate, exact) and rate.stderr < 0.05 * exact
    # trapezoid rule on rho_m = phi^m: dt (1/2 + phi / (1 - phi)); the window cut-off at 6 tau loses ~e^-6
    tau = integrated_autocorrelation_time(acf)
    assert within(tau, 0.1 * (0.5 + phi / (1 - phi)) * (1 - math.exp(-6)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"series": np.zeros((3, 5)), "dt": 1.0, "max_lag": 1.0}, r"n_samples >= 4"),
    ({"series": np.ones((10, 5)), "dt": 1.0, "max_lag": 2.0, "n_groups": 2}, "zero variance"),
    ({"series": np.zeros((10, 5)), "dt": 1.0, "max_lag": 20.0}, r"max_lag=20.0 is invalid"),
    ({"series": np.zeros((10, 5)), "dt": 1.0, "max_lag": 2.0, "n_groups": 9}, r"n_groups=9 is invalid"),
    ({"series": np.zeros((10, 5)), "dt": 0.0, "max_lag": 2.0}, r"dt=0.0 is invalid"),
])
def test_autocorrelation_rejects_bad_input(kwargs, match):
    kwargs.setdefault("n_groups", 2)
    with pytest.raises(ValueError, match=match):
        autocorrelation(**kwargs)


def test_fit_window_is_validated():
    rng = np.random.default_rng(0)
    acf = autocorrelation(rng.standard_normal((100, 8)), 1.0, 10.0, n_groups=4)
    with pytest.raises(ValueError, match=r"window=\(5.0, 20.0\) is invalid"):
        fit_decay_rate(acf, (5.0, 20.0))
    with pytest.raises(ValueError, match="rho is lost in noise"):  # white noise: rho ~ 0 beyond lag 0
        fit_decay_rate(acf, (1.0, 10.0))


def test_milestoning_counts_by_hand_and_ignores_recrossings():
    # Replica 0 wanders 0 -> (out) -> 1 -> (out) -> 0 -> 1; replica 1 recrosses between the cores without
    # entering the other one: no transition.
    labels = np.array([[-1, 0], [0, -1], [-1, -1], [1, -1], [-1, 0], [0, -1], [0, -1], [1, 0]])
    c = count_core_transitions(labels, 0.5, 2)
    np.testing.assert_array_equal(c.counts, [[0, 2], [1, 0]])
    # replica 0: last core 0 at samples 1, 2, 5, 6 and 1 at 3, 4, 7; replica 1: core 0 at all 8 samples
    np.testing.assert_allclose(c.residence, [0.5 * (4 + 8), 0.5 * 3])
    # counting in two chunks gives the same result
    split = count_core_transitions(labels[4:], 0.5, 2, count_core_transitions(labels[:4], 0.5, 2))
    np.testing.assert_array_equal(split.counts, c.counts)
    np.testing.assert_allclose(split.residence, c.residence)
    est = estimate_rate_matrix(c)
    np.testing.assert_allclose(est.generator, [[-2 / 6, 2 / 6], [1 / 1.5, -1 / 1.5]])
    np.testing.assert_allclose(est.stderr[0, 1], (2 / 6) / math.sqrt(2))


def test_core_labels_and_their_validation():
    x = np.array([-1.05, -0.5, 0.0, 0.95, 2.0])
    np.testing.assert_array_equal(core_labels(x, [-1.0, 1.0], 0.2), [0, -1, -1, 1, -1])
    pts = np.array([[0.1, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(core_labels(pts, [[0.0, 0.0], [3.0, 0.0]], 0.5), [0, -1])
    with pytest.raises(ValueError, match="radius=1.5 is invalid: cores overlap"):
        core_labels(x, [-1.0, 1.0], 1.5)
    with pytest.raises(ValueError, match=r"labels must lie in \[-1, n_cores=2\)"):
        count_core_transitions(np.array([[0], [2]]), 1.0, 2)


# --- spectral gap from trajectories --------------------------------------------------------------------
@pytest.mark.parametrize("T", [0.1, 1.0])
def test_ou_1d_autocorrelation_decays_at_the_curvature_for_every_temperature(T):
    h, dt, replicas = 1.5, 0.01, 400
    rng = np.random.default_rng(11)
    # exact stationary variance of the Euler–Maruyama chain: 2 T dt / (1 - (1 - h dt)^2)
    x0 = rng.standard_normal(replicas) * math.sqrt(2 * T * dt / (1 - (1 - h * dt) ** 2))
    path = euler_maruyama(lambda x: h * x, x0, T, dt, 15000, seed=12, record_every=5)
    acf = autocorrelation(path, 5 * dt, 6.0)
    rate = fit_decay_rate(acf, (0.2, 1.5))
    assert within(rate, em_ou_rate(h, dt))  # = h (1 + h dt / 2 + ...): the gap lambda_min = h, whatever T
    assert rate.stderr < 0.03 * h
    tau = integrated_autocorrelation_time(acf)
    assert within(tau, 1.0 / em_ou_rate(h, dt))


@pytest.mark.parametrize("T", [0.2, 2.0])
def test_ou_2d_anisotropic_gap_is_the_smallest_hessian_eigenvalue(T):
    angle, curvatures, dt, replicas = 0.5, np.array([0.8, 4.0]), 0.01, 400
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    H = rot @ np.diag(curvatures) @ rot.T
    A = np.eye(2) - dt * H  # the Euler–Maruyama chain x <- A x + sqrt(2 T dt) xi
    cov = linalg.solve_discrete_lyapunov(A, 2 * T * dt * np.eye(2))
    rng = np.random.default_rng(21)
    x0 = rng.multivariate_normal(np.zeros(2), cov, size=replicas)
    path = euler_maruyama(lambda x: x @ H, x0, T, dt, 20000, seed=22, record_every=5)
    acf = autocorrelation(path[..., 0], 5 * dt, 5.0)  # x_1 sees both modes
    window = (1.5, 3.5)
    rate = fit_decay_rate(acf, window)
    # Precondition: over this window the fast mode has died out. The exact chain autocorrelation
    # rho(m) = e_1^T A^m C e_1 / C_11 fitted on the window gives the slow rate to well within the error bar.
    lags = np.arange(int(round(window[0] / (5 * dt))), int(round(window[1] / (5 * dt))) + 1) * 5
    exact_rho = np.array([(np.linalg.matrix_power(A, m) @ cov)[0, 0] for m in lags]) / cov[0, 0]
    slow = em_ou_rate(curvatures.min(), dt)
    assert abs(-np.polyfit(lags * dt, np.log(exact_rho), 1)[0] - slow) < 0.2 * rate.stderr
    assert within(rate, slow)
    assert rate.stderr < 0.05 * curvatures.min()


def test_double_well_autocorrelation_decays_at_the_fokker_planck_gap():
    U = parse_potential("(x**2 - 1)**2")
    T, dt, replicas = 0.5, 0.001, 500
    fp = fokker_planck_operator(U, T, -3.0, 3.0, 1200)
    rng = np.random.default_rng(31)
    cells = rng.choice(fp.x.size, p=fp.gibbs, size=replicas)  # stationary start: Gibbs by inverse CDF
    x0 = fp.x[cells] + fp.cell_width * (rng.random(replicas) - 0.5)
    path = euler_maruyama(lambda x: 4 * x * (x * x - 1), x0, T, dt, 200_000, seed=32, record_every=50)
    acf = autocorrelation(path, 0.05, 40.0)
    weights = fp.autocorrelation_weights(fp.x)
    # x is odd: it projects on the slow (odd) eigenfunction, and the next odd mode is ~30 times faster.
    assert weights[1] > 0.9 and fp.eigenvalues[3] > 30 * fp.spectral_gap
    rate = fit_decay_rate(acf, (1.0, 6.0))
    assert within(rate, fp.spectral_gap)  # Euler–Maruyama bias O(dt) ~ 0.5 %, far below the error bar
    assert rate.stderr < 0.05 * fp.spectral_gap
    tau = integrated_autocorrelation_time(acf)
    assert within(tau, float(np.sum(weights[1:] / fp.eigenvalues[1:])))
    # The whole measured curve against the operator's prediction, lag by lag (jackknife errors).
    jack = acf.jackknife_values()
    g = acf.n_groups
    se = np.sqrt((g - 1) / g * np.sum((jack - jack.mean(axis=0)) ** 2, axis=0))
    sel = np.searchsorted(acf.lags, [0.5, 2.0, 5.0, 10.0])
    predicted = fp.stationary_autocorrelation(fp.x, acf.lags[sel])
    assert np.all(np.abs(acf.values[sel] - predicted) < 3.5 * se[sel])


# --- rate matrix from trajectories -----------------------------------------------------------------------
def test_core_set_rates_match_exact_rates_and_eyring_kramers_within_its_o_t_error():
    U = parse_potential("4*(x/2)**2*((x/2)**2 - 1)**2 + 0.05*x")
    minima = [find_minimum(U, g) for g in (-2.0, 0.0, 2.0)]
    saddles = [find_saddle(U, g) for g in (-1.1, 1.1)]
    m = np.array([float(c.point[0]) for c in minima])
    T, dt, radius, replicas, chunk, record = 0.2, 0.001, 0.3, 1000, 5000, 10
    rng = np.random.default_rng(41)
    x = m[rng.integers(0, 3, replicas)]
    counts = None
    for c in range(20):  # 20 chunks x 5 time units x 1000 replicas = 1e5 time units
        path = euler_maruyama(U.gradient, x, T, dt, chunk, seed=4100 + c, record_every=record)
        x = path[-1]
        counts = count_core_transitions(core_labels(path[1:], m, radius), dt * record, 3, counts)
    measured = estimate_rate_matrix(counts)
    edges = ([0, 1, 1, 2], [1, 0, 2, 1])
    assert np.all(measured.counts[edges] > 300) and np.all(measured.counts[[0, 2], [2, 0]] == 0)
    exact = exact_rate_matrix_1d(U, T, m, radius).generator
    z = (measured.generator[edges] - exact[edges]) / measured.stderr[edges]
    assert np.all(np.abs(z) < 3.0), z
    ek = eyring_kramers_rate_matrix(minima, [(0, 1, saddles[0]), (1, 2, saddles[1])], T).generator
    # Eyring–Kramers overestimates by its O(T) prefactor error (~20 % here): the data must sit within that
    # error (taken from the exact rates) plus 3 standard errors of the EK value, and below EK.
    gap = np.abs(ek[edges] / exact[edges] - 1.0)
    rel = np.abs(measured.generator[edges] / ek[edges] - 1.0)
    assert np.all(rel <= gap + 3 * measured.stderr[edges] / ek[edges])
    assert np.all(measured.generator[edges] < ek[edges])


def test_timescale_report_sections_state_their_measured_numbers():
    from matplotlib.figure import Figure

    from sgd_dynamics.report.timescale_figures import timescale_sections

    sections = timescale_sections(quick=True, seed=0)
    assert [s.name for s in sections] == ["timescales_autocorrelation", "timescales_rate_matrix"]
    for s in sections:
        assert isinstance(s.figure, Figure) and s.table is not None
    acf_rows, rate_rows = sections[0].table.rows, sections[1].table.rows
    assert f"{acf_rows[0][1]:.4g}" in sections[0].reading  # the fitted gap at the first temperature
    assert f"{rate_rows[0][2]:.3g}" in sections[1].reading  # the counted 0 -> 1 rate
    assert len(rate_rows) == 4 and all(abs(row[-1]) < 3 for row in rate_rows)
