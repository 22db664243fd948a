"""Fits and spectra against known truths: synthetic power laws, exact hinges, heavy-ball oscillations."""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics.estimation import (
    fit_exponential_decay,
    fit_hinge,
    fit_power_law,
    local_slope,
    oscillation_spectrum,
)

# ----------------------------------------------------------------------------------------------- power law


def _noisy_power_law(seed: int, n: int = 2000, c: float = 0.7, sigma: float = 0.3):
    k = np.arange(1, n + 1, dtype=float)
    rng = np.random.default_rng(seed)
    return k, 2.0 * k**c * np.exp(sigma * rng.standard_normal(n))


def test_power_law_recovers_exponent_within_its_interval():
    k, d = _noisy_power_law(seed=3)
    fit = fit_power_law(k, d, window=(100, 2000), seed=3)
    lo, hi = fit.exponent_interval
    assert lo < 0.7 < hi
    # independent least squares in log-log
    slope, intercept = np.polyfit(np.log(k[99:]), np.log(d[99:]), 1)
    assert fit.exponent == pytest.approx(slope, abs=1e-12)
    assert fit.prefactor == pytest.approx(np.exp(intercept), rel=1e-10)
    assert fit.n_points == 1901 and fit.window == (100.0, 2000.0)
    # the interval width matches the OLS standard error 0.3 / sqrt(Sxx) (z = 1.96)
    x = np.log(k[99:])
    se = 0.3 / np.sqrt(np.sum((x - x.mean()) ** 2))
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)   # 1000 resamples: ~5% Monte Carlo error


def test_power_law_interval_covers_truth_about_95_percent_of_seeds():
    covered = 0
    for seed in range(100):
        k, d = _noisy_power_law(seed, n=300)
        lo, hi = fit_power_law(k, d, n_bootstrap=400, seed=seed).exponent_interval
        covered += lo <= 0.7 <= hi
    # binomial(100, 0.95): standard deviation 2.2; 88 is three of them below
    assert 88 <= covered <= 100


def test_power_law_window_excludes_the_other_regime():
    k = np.arange(1, 1001, dtype=float)
    d = np.where(k < 100, k**2.0, 1e4 * (k / 100) ** 0.5)
    fit = fit_power_law(k, d, window=(100, 1000), n_bootstrap=50)
    assert fit.exponent == pytest.approx(0.5, abs=1e-12)
    assert fit.predict(400.0) == pytest.approx(1e4 * 2.0, rel=1e-10)


def test_block_bootstrap_widens_the_interval_for_correlated_noise():
    rng = np.random.default_rng(0)
    n, phi = 3000, 0.95
    noise = np.empty(n)
    noise[0] = rng.standard_normal()
    for i in range(1, n):
        noise[i] = phi * noise[i - 1] + np.sqrt(1 - phi**2) * rng.standard_normal()
    k = np.arange(1, n + 1, dtype=float)
    d = k**0.7 * np.exp(0.2 * noise)
    iid = np.diff(fit_power_law(k, d, seed=1).exponent_interval)[0]
    blocks = np.diff(fit_power_law(k, d, block_length=100, seed=1).exponent_interval)[0]
    # long-run variance inflation sqrt((1 + phi) / (1 - phi)) = 6.2; blocks recover most of it
    assert blocks > 3 * iid


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"values": -np.ones(10)}, r"values=.* is invalid: expected values > 0"),
    ({"window": (5, 2)}, r"window=\(5, 2\) is invalid"),
    ({"window": (100, 200)}, r"window=\(100, 200\) is invalid: expected at least 3 points"),
    ({"n_bootstrap": 5}, "n_bootstrap=5 is invalid"),
    ({"confidence": 1.0}, "confidence=1.0 is invalid"),
    ({"block_length": 11}, r"block_length=11 is invalid: expected an integer in \[1, 10\]"),
])
def test_power_law_rejects_bad_input(kwargs, match):
    args = {"steps": np.arange(1.0, 11.0), "values": np.arange(1.0, 11.0), **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_power_law(args.pop("steps"), args.pop("values"), **args)


# ----------------------------------------------------------------------------------------------- local slope

def _two_regimes(k):
    """D = k^0.5 (1 + k/100): exponent 0.5 well below k = 100 and 1.5 well above."""
    return k**0.5 * (1 + k / 100), 0.5 + (k / 100) / (1 + k / 100)


def test_local_slope_of_a_two_regime_curve():
    k = np.arange(1, 100_001, dtype=float)
    d, _ = _two_regimes(k)
    ls = local_slope(k, d)
    _, exact = _two_regimes(ls.steps)
    error = np.abs(ls.slope - exact)
    # window bias: the points are log-spaced unevenly (denser to the right), measured 0.017 at 0.5 decades
    assert error.max() < 0.02
    assert ls.slope[0] == pytest.approx(0.5, abs=0.04) and ls.slope[-1] == pytest.approx(1.5, abs=0.01)
    assert np.all(np.diff(ls.steps) > 0) and np.all(np.diff(ls.slope) > -1e-12)   # monotone crossover
    # the bias shrinks like the window squared: half the window, a quarter of the error (with slack)
    finer = local_slope(k, d, window_decades=0.25)
    _, exact_finer = _two_regimes(finer.steps)
    assert np.abs(finer.slope - exact_finer).max() < 0.35 * error.max()


def test_local_slope_rejects_too_narrow_window():
    with pytest.raises(ValueError, match="window_decades=0.001 is invalid"):
        local_slope(np.arange(1.0, 20.0), np.arange(1.0, 20.0), window_decades=0.001)


# ----------------------------------------------------------------------------------------------- timescale

def test_exponential_decay_recovers_timescale_with_interval():
    t = np.arange(300.0)
    rng = np.random.default_rng(4)
    y = 3.0 * np.exp(-t / 40.0) + 0.5 + 0.05 * rng.standard_normal(t.size)
    fit = fit_exponential_decay(t, y, seed=4)
    lo, hi = fit.timescale_interval
    assert lo < 40.0 < hi and hi - lo < 4.0
    assert fit.amplitude == pytest.approx(3.0, abs=0.05) and fit.offset == pytest.approx(0.5, abs=0.02)
    assert fit.rms_residual == pytest.approx(0.05, rel=0.15)


def test_exponential_decay_is_robust_to_outliers_and_handles_growth():
    t = np.linspace(0.0, 5.0, 200)
    y = 1.0 - np.exp(-t / 0.8)   # relaxation up to a plateau: negative amplitude
    y_bad = y.copy()
    y_bad[::25] += 5.0   # 8 wild points
    fit = fit_exponential_decay(t, y_bad, n_bootstrap=20)
    assert fit.timescale == pytest.approx(0.8, rel=0.02)
    assert fit.amplitude == pytest.approx(-1.0, rel=0.02)


def test_exponential_decay_without_offset_and_shifted_time():
    t = np.linspace(10.0, 20.0, 50)   # amplitude refers to t = 0, not to the first sample
    fit = fit_exponential_decay(t, 7.0 * np.exp(-t / 4.0), offset=False, n_bootstrap=20)
    assert fit.timescale == pytest.approx(4.0, rel=1e-8)
    assert fit.amplitude == pytest.approx(7.0, rel=1e-7) and fit.offset == 0.0


# ----------------------------------------------------------------------------------------------- spectra

def test_fft_frequency_of_a_damped_sinusoid_within_one_bin():
    n, f0 = 1000, 0.0173   # between bins
    k = np.arange(n)
    x = np.exp(-k / 300) * np.cos(2 * np.pi * f0 * k + 0.4)
    s = oscillation_spectrum(np.column_stack([x, 2 * x]), lr=0.01)
    assert s.resolution == 1 / n
    assert np.all(np.abs(s.dominant_frequency - f0) <= s.resolution)
    np.testing.assert_allclose(s.dominant_angular, 2 * np.pi * s.dominant_frequency / 0.01)


def test_fft_frequency_of_heavy_ball_oscillation():
    # deterministic heavy ball on one mode: x_{k+1} = (1 + beta - eta h) x_k - beta x_{k-1}; the roots of
    # z^2 - (1 + beta - eta h) z + beta are sqrt(beta) exp(+-i theta)
    beta, eta, h = 0.99, 0.01, 5.0
    x = [1.0, 1.0]
    for _ in range(3000):
        x.append((1 + beta - eta * h) * x[-1] - beta * x[-2])
    theta = np.angle(np.roots([1.0, -(1 + beta - eta * h), beta])).max()
    s = oscillation_spectrum(np.asarray(x), lr=eta)
    assert abs(s.dominant_frequency[0] - theta / (2 * np.pi)) <= s.resolution
    assert abs(s.dominant_angular[0] - theta / eta) <= 2 * np.pi * s.resolution / eta


def test_amplitude_weighted_mean_frequency():
    n = 1024
    k = np.arange(n)
    f1, f2, a1, a2 = 40 / n, 200 / n, 3.0, 1.0   # on bins: each sinusoid is one spectral line
    x = a1 * np.sin(2 * np.pi * f1 * k) + a2 * np.cos(2 * np.pi * f2 * k)
    s = oscillation_spectrum(x, detrend="constant")
    assert s.mean_frequency[0] == pytest.approx((a1 * f1 + a2 * f2) / (a1 + a2), rel=1e-9)
    assert s.dominant_frequency[0] == f1
    assert np.isnan(s.mean_angular[0])   # no learning rate given
    drifting = oscillation_spectrum(x + 0.05 * k)   # linear detrend (default) removes a drift
    assert drifting.dominant_frequency[0] == f1


def test_spectrum_rejects_bad_input():
    with pytest.raises(ValueError, match="lr=0.0 is invalid"):
        oscillation_spectrum(np.ones(10), lr=0.0)
    with pytest.raises(ValueError, match="detrend='quadratic' is invalid"):
        oscillation_spectrum(np.ones(10), detrend="quadratic")


# ----------------------------------------------------------------------------------------------- hinge

def _hinge(x, xb=0.931, value=0.9, left=0.5, right=-2.0):
    return value + np.where(x <= xb, left, right) * (x - xb)


def test_hinge_exact_recovery_between_data_points():
    x = np.linspace(0.8, 0.99, 20)   # 0.931 is not a data point
    fit = fit_hinge(x, _hinge(x), n_bootstrap=20)
    assert fit.breakpoint == pytest.approx(0.931, abs=1e-10)
    assert fit.slope_left == pytest.approx(0.5, abs=1e-8) and fit.slope_right == pytest.approx(-2.0, abs=1e-8)
    assert fit.value_at_breakpoint == pytest.approx(0.9, abs=1e-10)
    np.testing.assert_allclose(fit.predict(x), _hinge(x), atol=1e-10)


def test_hinge_noisy_recovery_and_brute_force_scan():
    rng = np.random.default_rng(5)
    x = np.repeat(np.linspace(0.8, 0.99, 15), 2)   # two seeds per momentum value
    y = _hinge(x) + 0.004 * rng.standard_normal(x.size)
    fit = fit_hinge(x, y, seed=5)
    assert fit.breakpoint_interval[0] < 0.931 < fit.breakpoint_interval[1]
    assert fit.slope_left_interval[0] < 0.5 < fit.slope_left_interval[1]
    assert fit.slope_right_interval[0] < -2.0 < fit.slope_right_interval[1]
    # independent: scan 4001 breakpoints, linear least squares in (value, left, right) at each
    best_sse, best_xb = np.inf, None
    for xb in np.linspace(np.unique(x)[1], np.unique(x)[-2], 4001):
        design = np.column_stack([np.ones_like(x), np.minimum(x - xb, 0), np.maximum(x - xb, 0)])
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        sse = np.sum((design @ coef - y) ** 2)
        if sse < best_sse:
            best_sse, best_xb = sse, xb
    ours = np.sum((fit.predict(x) - y) ** 2)
    assert ours <= best_sse * (1 + 1e-9)
    assert fit.breakpoint == pytest.approx(best_xb, abs=0.17 / 4000)   # one scan step


def test_hinge_rejects_too_few_points():
    with pytest.raises(ValueError, match=r"x=\(3 distinct values\) is invalid: expected at least 4"):
        fit_hinge([0.1, 0.2, 0.3, 0.3], [1.0, 2.0, 3.0, 3.0])


# ----------------------------------------------------------------------------------------------- the layer


def test_estimation_layer_imports_without_torch_and_measure_reexports_it():
    import subprocess
    import sys

    code = ("import sys, sgd_dynamics.estimation as e; assert 'torch' not in sys.modules; "
            "from sgd_dynamics.measure import fit_power_law; "
            "from sgd_dynamics.measure.fits import fit_hinge; "
            "assert fit_power_law is e.fit_power_law and fit_hinge is e.fit_hinge")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_log_linear_decay_rate_matches_scipy_linregress():
    from scipy import stats

    from sgd_dynamics.estimation import log_linear_decay_rate

    rng = np.random.default_rng(4)
    t = np.linspace(0.0, 3.0, 40)
    y = 2.0 * np.exp(-0.8 * t) * np.exp(0.05 * rng.standard_normal(t.size))
    assert log_linear_decay_rate(t, y) == pytest.approx(-stats.linregress(t, np.log(y)).slope, rel=1e-12)
    with pytest.raises(ValueError, match="<= 0 inside window"):
        log_linear_decay_rate(t, y - 1.0)
