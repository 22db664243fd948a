"""Stationarity certificate on synthetic series whose truth is known (stationary AR(1), drift, relaxation).

Independent references: the exact variance of a difference of window means of an AR(1) process, by direct
summation of its autocovariance matrix; the binomial standard error of a rejection rate over seeds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import lfilter

from sgd_dynamics.estimation.stationarity import (
    StationarityMonitor,
    settle_until_stationary,
    split_into_windows,
    stationarity_certificate,
    window_trend,
)

W = 1000          # observations per window
PHI = 0.8         # AR(1) coefficient: integrated autocorrelation time (1 + phi) / (1 - phi) = 9 steps


def ar1(count: int, n: int, seed: int, phi: float = PHI, sd: float = 1.0) -> np.ndarray:
    """``count`` stationary AR(1) series ``x_t = phi x_{t-1} + sd e_t`` of length ``n`` (300-step burn-in)."""
    e = sd * np.random.default_rng(seed).standard_normal((count, n + 300))
    return lfilter([1.0], [1.0, -phi], e, axis=1)[:, 300:]


def exact_difference_variance(phi: float, window: int) -> float:
    """``Var(mean(last window) - mean(previous window))`` of a unit-innovation AR(1), by direct summation."""
    i = np.arange(2 * window)
    gamma = phi ** np.abs(i[:, None] - i[None, :]) / (1 - phi**2)
    w = np.r_[-np.ones(window), np.ones(window)] / window
    return float(w @ gamma @ w)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_stationary_ar1_fails_the_trend_test_at_the_nominal_rate(alpha):
    # rel_tol = 0 makes the trend criterion a plain two-sided test: a stationary series must fail it with
    # probability alpha. Binomial s.e. over K seeds; 4 s.e. bounds a false failure to ~6e-5.
    k = 3000
    x = 10.0 + ar1(k, 2 * W, seed=1)
    rejected = np.mean([window_trend(s[:W], s[W:], false_alarm=alpha).lower_bound > 0 for s in x])
    assert abs(rejected - alpha) < 4 * np.sqrt(alpha * (1 - alpha) / k)


def test_stationary_ar1_passes_the_default_certificate():
    # Defaults: false_alarm 0.0027 and rel_tol 0.02, so the failure rate is at most 0.0027 (expected 0 here:
    # a 2% change is ~14 s.e. of the relative change away). Resolution holds at this noise level.
    k = 1000
    x = 100.0 + ar1(k, 2 * W, seed=2)
    passed = [stationarity_certificate({"loss": [s[:W], s[W:]]}).stationary for s in x]
    assert np.mean(passed) > 1 - 0.0027 - 4 * np.sqrt(0.0027 / k)


def test_batch_means_standard_error_accounts_for_autocorrelation():
    # The mean over seeds of se^2 from batch means against the exact variance of m_2 - m_1 (direct summation
    # of the AR(1) autocovariance). Batch means of 100 steps (11 autocorrelation times) are biased low by
    # O(tau / batch) ~ 4%; the MC error of the mean of se^2 (a ~chi^2_18 variable) over 2000 seeds is ~0.8%.
    # An i.i.d. standard error would be 9x too small.
    k = 2000
    x = ar1(k, 2 * W, seed=3) + 10.0
    se2 = np.array([(window_trend(s[:W], s[W:]).relative_standard_error * 10.0) ** 2 for s in x])
    truth = exact_difference_variance(PHI, W)
    assert se2.mean() == pytest.approx(truth, rel=0.07)
    iid = np.mean([s[:W].var(ddof=1) / W + s[W:].var(ddof=1) / W for s in x])
    assert iid < truth / 5


@pytest.mark.parametrize("seed", range(5))
def test_slow_linear_drift_that_matters_fails(seed):
    # 5% relative drift per window, AR(1) noise of 1% relative: the change is relevant and significant.
    t = np.arange(2 * W)
    x = 1.0 - 0.05 * t / W + 0.01 * ar1(1, 2 * W, seed=10 + seed)[0]
    cert = stationarity_certificate({"loss": split_into_windows(x, W)})
    assert not cert.stationary
    assert [c.name for c in cert.failed()] == ["loss: trend"]
    assert cert.trends["loss"].relative_change == pytest.approx(-0.05 / 0.975, abs=0.01)


@pytest.mark.parametrize("seed", range(5))
def test_exponential_relaxation_slower_than_the_window_fails(seed):
    # y = 1 + 0.3 exp(-t / tau), tau = 5 windows: between the two windows the mean falls by
    # 0.3 (1 - e^{-1/5}) e^{-1/10} / 1.27 ~ 3.9%, above rel_tol = 2%, while the curve looks smooth.
    t = np.arange(2 * W)
    x = 1.0 + 0.3 * np.exp(-t / (5 * W)) + 0.005 * ar1(1, 2 * W, seed=20 + seed)[0]
    cert = stationarity_certificate({"tr_sigma": split_into_windows(x, W)})
    assert not cert.stationary
    assert not cert.criteria[0].holds and cert.criteria[0].name == "tr_sigma: trend"


def test_tiny_significant_trend_in_a_long_series_passes_but_a_pure_significance_test_fails():
    # 0.5% change per window at very low noise: significant (|t| >> 3) yet irrelevant at rel_tol = 2%.
    t = np.arange(2 * W)
    x = 1.0 - 0.005 * t / W + 1e-4 * ar1(1, 2 * W, seed=4)[0]
    windows = {"theta_sq_norm": split_into_windows(x, W)}
    trend = window_trend(*windows["theta_sq_norm"])
    assert abs(trend.relative_change) / trend.relative_standard_error > 10
    assert stationarity_certificate(windows).stationary
    assert not stationarity_certificate(windows, rel_tol=0.0).stationary


def test_large_trend_buried_in_noise_is_not_certified():
    # 10% change per window, but five snapshots per window with 30% noise: not significant, so the trend
    # criterion cannot reject; the resolution criterion refuses to certify.
    rng = np.random.default_rng(5)
    previous, last = 1.0 + 0.3 * rng.standard_normal(5), 0.9 + 0.3 * rng.standard_normal(5)
    cert = stationarity_certificate({"top_eigenvalue": [previous, last]})
    trend, resolution = cert.criteria
    assert trend.holds and not resolution.holds and not cert.stationary
    assert resolution.value == pytest.approx(cert.trends["top_eigenvalue"].critical_value
                                             * cert.trends["top_eigenvalue"].relative_standard_error)


def test_standard_error_is_welch_on_detrended_batch_means():
    # Independent references: scipy's linregress (its slope s.e. gives the residual variance of the batch
    # means about their line) and ttest_ind_from_stats (Welch's t from those variances).
    from scipy import stats

    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(200) + 5.0, 1.3 * rng.standard_normal(160) + 5.2 + np.linspace(0, 1, 160)
    trend = window_trend(a, b, batches=8)
    residual_sd = []
    for batch_means in (a.reshape(8, 25).mean(1), b.reshape(8, 20).mean(1)):
        fit = stats.linregress(np.arange(8.0), batch_means)
        residual_sd.append(fit.stderr * np.sqrt(np.sum((np.arange(8.0) - 3.5) ** 2)))
    ref = stats.ttest_ind_from_stats(b.mean(), residual_sd[1], 8, a.mean(), residual_sd[0], 8,
                                     equal_var=False)
    assert trend.relative_change / trend.relative_standard_error == pytest.approx(ref.statistic, rel=1e-10)
    v = np.array(residual_sd) ** 2 / 8
    assert trend.degrees_of_freedom == pytest.approx(v.sum() ** 2 / np.sum(v**2 / 6), rel=1e-10)
    assert trend.critical_value == pytest.approx(stats.t.isf(0.0027 / 2, trend.degrees_of_freedom), rel=1e-12)


def test_a_trend_inside_the_windows_does_not_inflate_the_standard_error():
    # A noise-free linear trend: the batch means lie on a line, so the residual variance and se vanish and
    # a 3% change per window fails rel_tol = 2% (a plain variance of the batch means would give
    # se_r ~ 3% / sqrt(6 b) and t* se_r ~ 1.4%, letting it pass).
    x = 1.0 - 0.03 * np.arange(2 * W) / W
    trend = window_trend(x[:W], x[W:])
    assert trend.relative_standard_error < 1e-12
    assert not stationarity_certificate({"loss": [x[:W], x[W:]]}).stationary


def test_to_json_is_the_summary_contract():
    rng = np.random.default_rng(7)
    cert = stationarity_certificate({"loss": [1 + 0.01 * rng.standard_normal(300) for _ in range(2)],
                                     "tr_sigma": [np.array([2.0, 2.1, 1.9]), np.array([2.0, 2.05, 1.95])]})
    out = json.loads(json.dumps(cert.to_json(), allow_nan=False))
    assert set(out) == {"stationary", "criteria"} and out["stationary"] is cert.stationary
    assert [c["name"] for c in out["criteria"]] == ["loss: trend", "loss: resolution", "tr_sigma: trend",
                                                   "tr_sigma: resolution"]
    for c in out["criteria"]:
        assert set(c) == {"name", "value", "threshold", "holds"}
        assert c["holds"] == (c["value"] <= c["threshold"])


def test_settle_keeps_going_until_the_relaxation_has_decayed():
    # Windows of a relaxation 1 + exp(-t / tau) with tau = 2 windows and 1% white noise; the exact window
    # means give the window after which the relative change first drops below rel_tol = 2% (the noise moves
    # the decision by at most one window: t* se_r ~ 0.2%).
    rng = np.random.default_rng(8)

    def level(i):
        return 1.0 + np.exp(-np.arange(i * W, (i + 1) * W) / (2 * W))

    result = settle_until_stationary(lambda i: {"loss": level(i) + 0.01 * rng.standard_normal(W)},
                                     max_windows=20)
    assert result.stationary
    means = [level(i).mean() for i in range(20)]
    expected = 1 + next(i for i in range(1, 20) if abs(means[i] / means[i - 1] - 1) < 0.02)
    assert expected - 1 <= result.windows <= expected + 1
    assert result.windows > 4
    assert result.certificate.to_json()["stationary"] is True


def test_settle_stops_at_the_cap_when_the_series_keeps_drifting():
    result = settle_until_stationary(lambda i: {"loss": np.full(100, 0.9**i)}, max_windows=6)
    assert not result.stationary and result.windows == 6
    assert result.certificate.failed()[0].name == "loss: trend"


def test_monitor_keeps_only_the_last_two_windows():
    monitor = StationarityMonitor()
    for level in (5.0, 1.0, 1.0):
        cert = monitor.add_window(loss=np.full(50, level))
    assert cert.stationary and monitor.windows_seen == 3


@pytest.mark.parametrize(("call", "match"), [
    (lambda: window_trend([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], false_alarm=1.5), r"false_alarm=1\.5 is invalid"),
    (lambda: window_trend([1.0, 2.0], [1.0, 2.0, 3.0]), r"series window\.shape=\(2,\) is invalid: expected a "
                                                        r"1-D window of >= 3"),
    (lambda: window_trend([0.0] * 3, [1.0, 2.0, 3.0], name="loss"), r"loss previous-window mean=0\.0"),
    (lambda: window_trend([1.0, np.nan, 1.0], [1.0, 2.0, 3.0]), r"non-finite"),
    (lambda: stationarity_certificate({"loss": [np.ones(5)]}), r"windows\['loss'\]=.*expected >= 2"),
    (lambda: stationarity_certificate({"loss": [np.ones(5)] * 2}, rel_tol=-0.1), r"rel_tol=-0\.1"),
    (lambda: split_into_windows(np.ones(10), 6), r"window=6 is invalid"),
    (lambda: settle_until_stationary(lambda i: {}, max_windows=1), r"max_windows=1 is invalid"),
    (lambda: StationarityMonitor(batches=2), r"batches=2 is invalid"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_monitor_refuses_a_changed_set_of_series():
    monitor = StationarityMonitor()
    monitor.add_window(loss=np.ones(10))
    with pytest.raises(ValueError, match=r"series=\['tr_sigma'\] is invalid"):
        monitor.add_window(tr_sigma=np.ones(10))
