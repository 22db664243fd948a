"""Fits and spectra of measured trajectories: power laws, local slopes, timescales, frequencies, hinges.

NumPy/SciPy only (no torch): every function takes plain arrays, so the same code fits a trajectory measured
on a network (``measure``), simulated (``simulate``) or read back from a run directory (``store``).

- :func:`fit_power_law` — anomalous diffusion ``||Delta_k||^2 = a k^c`` (002 sec. 2 and fig. 1, appendix I:
  "a power law of the form alpha k^c ... using the last 2/3 of the saved trajectories"), by least squares in
  log-log on a window of steps, with a seeded bootstrap interval for ``c``.
- :func:`local_slope` — the running exponent ``d log D / d log k`` (002 appendix I.7: the fitted ``c`` grows
  with the length of the window, as for a sum of power laws), by local linear regression in log-log around
  log-spaced centres.
- :func:`fit_exponential_decay` — a timescale ``y(t) = A exp(-t / tau) + c`` (relaxation of a mode, decay of
  an autocorrelation), robust (soft-L1 loss) with a seeded bootstrap interval.
- :func:`oscillation_spectrum` — the dominant and the amplitude-weighted mean FFT frequency of each projected
  coordinate (002 sec. 8 fig. 6 and appendix H), in cycles per step and as an angular frequency per unit of
  continuous time ``t = eta k`` (ERRATA 002.2), the unit of the theory's ``omega``.
- :func:`fit_hinge` — the continuous piecewise-linear fit of 003 eq. 14,
  ``A(x) = a_max + a_1 (x - x_*)`` for ``x <= x_*`` and ``a_max + a_2 (x - x_*)`` for ``x >= x_*``,
  by profiling the breakpoint (linear least squares for the other three parameters at each breakpoint),
  with a seeded bootstrap interval.

Bootstrap intervals are percentile intervals over residual resamples. The residuals of a training
trajectory are autocorrelated; :func:`fit_power_law` therefore offers a moving-block bootstrap
(``block_length > 1``): with ``block_length=1`` the interval assumes independent noise and is too narrow
for strongly correlated data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, signal

from sgd_dynamics._validation import require as _require

__all__ = [
    "ExponentialDecayFit",
    "HingeFit",
    "LocalSlope",
    "OscillationSpectrum",
    "PowerLawFit",
    "fit_exponential_decay",
    "fit_hinge",
    "fit_power_law",
    "local_slope",
    "oscillation_spectrum",
]


# ----------------------------------------------------------------------------------------------- validation

class _Summary(str):
    """A description standing in for a value too large to print, shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _paired_1d(x: ArrayLike, y: ArrayLike, x_name: str, y_name: str) -> tuple[NDArray, NDArray]:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    _require(xa.ndim == 1, f"{x_name}.shape", xa.shape, "a 1-D array")
    _require(ya.shape == xa.shape, f"{y_name}.shape", ya.shape, f"the shape of {x_name}, {xa.shape}")
    _require(bool(np.all(np.isfinite(xa))), x_name, "(non-finite entries)", "finite values")
    _require(bool(np.all(np.isfinite(ya))), y_name, "(non-finite entries)", "finite values")
    return xa, ya


def _check_bootstrap(n_bootstrap: int, confidence: float) -> None:
    _require(isinstance(n_bootstrap, (int, np.integer)) and n_bootstrap >= 10, "n_bootstrap", n_bootstrap,
             "an integer >= 10")
    _require(0 < confidence < 1, "confidence", confidence, "0 < confidence < 1")


def _percentile_interval(samples: NDArray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def _block_resample(residuals: NDArray, n_bootstrap: int, block_length: int,
                    rng: np.random.Generator) -> NDArray:
    """``(n_bootstrap, n)`` resamples of ``residuals`` by the moving-block bootstrap (Kuensch 1989)."""
    n = residuals.size
    n_blocks = -(-n // block_length)
    starts = rng.integers(0, n - block_length + 1, size=(n_bootstrap, n_blocks))
    index = (starts[:, :, None] + np.arange(block_length)).reshape(n_bootstrap, -1)[:, :n]
    return residuals[index]


# ----------------------------------------------------------------------------------------------- power law

@dataclass(frozen=True)
class PowerLawFit:
    """``values ~ prefactor * steps**exponent`` fitted in log-log on ``window``.

    ``exponent_interval`` is the bootstrap percentile interval at level ``confidence``;
    ``residual_std`` is the standard deviation of the log-residuals (natural log).
    """

    exponent: float
    prefactor: float
    exponent_interval: tuple[float, float]
    confidence: float
    window: tuple[float, float]
    n_points: int
    residual_std: float

    def predict(self, steps: ArrayLike) -> NDArray:
        """The fitted power law at ``steps``."""
        return self.prefactor * np.asarray(steps, dtype=np.float64) ** self.exponent


def fit_power_law(
    steps: ArrayLike,
    values: ArrayLike,
    *,
    window: tuple[float, float] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    block_length: int = 1,
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``values = a * steps**c`` by least squares of ``log values`` on ``log steps``.

    Parameters
    ----------
    steps
        Step numbers ``k > 0`` (1-D).
    values
        The measured quantity, e.g. ``||theta_k - theta_ref||^2`` (same shape, ``> 0`` in the window).
    window
        Inclusive ``(k_min, k_max)``; ``None`` uses all points. The paper fits the last 2/3 of a
        trajectory: ``window=(k_max / 3, k_max)``.
    n_bootstrap
        Bootstrap resamples of the log-residuals (percentile interval for ``c``).
    confidence
        Level of the interval.
    block_length
        Length of the moving blocks of residuals; use ``> 1`` (e.g. a few correlation times) for
        autocorrelated trajectories.
    seed
        Seed of the bootstrap.

    >>> k = np.arange(1, 101)
    >>> fit = fit_power_law(k, 3.0 * k**0.5, n_bootstrap=100)
    >>> round(fit.exponent, 12), round(fit.prefactor, 12)
    (0.5, 3.0)
    """
    k, d = _paired_1d(steps, values, "steps", "values")
    _check_bootstrap(n_bootstrap, confidence)
    if window is not None:
        _require(len(window) == 2 and window[0] < window[1], "window", window,
                 "a pair (k_min, k_max), k_min < k_max")
        inside = (k >= window[0]) & (k <= window[1])
        k, d = k[inside], d[inside]
    _require(k.size >= 3, "window", window, "at least 3 points inside the window")
    _require(bool(np.all(k > 0)), "steps", _Summary("(entries <= 0 in the window)"),
             "steps > 0 for a log-log fit")
    _require(bool(np.all(d > 0)), "values", _Summary("(entries <= 0 in the window)"),
             "values > 0 for a log-log fit")
    _require(isinstance(block_length, (int, np.integer)) and 1 <= block_length <= k.size, "block_length",
             block_length, f"an integer in [1, {k.size}] (the number of points in the window)")
    x, y = np.log(k), np.log(d)
    _require(np.ptp(x) > 0, "steps", _Summary("(a single distinct value)"), "at least two distinct steps")

    xc = x - x.mean()
    sxx = xc @ xc
    slope = (xc @ (y - y.mean())) / sxx
    intercept = y.mean() - slope * x.mean()
    residuals = y - (intercept + slope * x)

    # Residual bootstrap: y* = fit + resampled residuals; the slope is linear in y*, so the refit is one
    # matrix product over all resamples.
    rng = np.random.default_rng(seed)
    y_star = (intercept + slope * x) + _block_resample(residuals, n_bootstrap, block_length, rng)
    slopes = (y_star - y_star.mean(axis=1, keepdims=True)) @ xc / sxx
    return PowerLawFit(
        exponent=float(slope),
        prefactor=float(np.exp(intercept)),
        exponent_interval=_percentile_interval(slopes, confidence),
        confidence=float(confidence),
        window=(float(k.min()), float(k.max())),
        n_points=int(k.size),
        residual_std=float(residuals.std(ddof=2)) if k.size > 2 else 0.0,
    )


@dataclass(frozen=True)
class LocalSlope:
    """The running exponent ``slope[i] = d log D / d log k`` at ``steps[i]`` (its window's centre)."""

    steps: NDArray
    slope: NDArray
    n_points: NDArray


def local_slope(
    steps: ArrayLike,
    values: ArrayLike,
    *,
    points_per_decade: int = 8,
    window_decades: float = 0.5,
    min_points: int = 4,
) -> LocalSlope:
    """``d log values / d log steps`` as a function of ``steps``, smoothed over log-spaced windows.

    Around centres spaced ``1 / points_per_decade`` decades apart, a straight line is fitted to
    ``(log k, log D)`` over the points within ``window_decades / 2`` decades of the centre; its slope is
    reported at the geometric mean step of those points (where a local linear fit estimates the derivative
    to second order). Centres with fewer than ``min_points`` points are skipped.

    >>> k = np.arange(1, 10001)
    >>> ls = local_slope(k, k**1.5)
    >>> bool(np.allclose(ls.slope, 1.5))
    True
    """
    k, d = _paired_1d(steps, values, "steps", "values")
    _require(bool(np.all(k > 0)), "steps", _Summary("(entries <= 0)"), "steps > 0")
    _require(bool(np.all(d > 0)), "values", _Summary("(entries <= 0)"), "values > 0")
    _require(isinstance(points_per_decade, (int, np.integer)) and points_per_decade >= 1, "points_per_decade",
             points_per_decade, "an integer >= 1")
    _require(window_decades > 0, "window_decades", window_decades, "a width > 0 in decades")
    _require(isinstance(min_points, (int, np.integer)) and min_points >= 2, "min_points", min_points,
             "an integer >= 2")
    order = np.argsort(k, kind="stable")
    lk, ld = np.log10(k[order]), np.log10(d[order])
    centres = np.arange(lk[0], lk[-1] + 1e-12, 1.0 / points_per_decade)
    half = window_decades / 2
    starts = np.searchsorted(lk, centres - half, side="left")
    stops = np.searchsorted(lk, centres + half, side="right")
    out_k, out_s, out_n = [], [], []
    for start, stop in zip(starts, stops, strict=True):
        n = int(stop - start)
        if n < min_points:
            continue
        x, y = lk[start:stop], ld[start:stop]
        xc = x - x.mean()
        sxx = xc @ xc
        if sxx == 0:
            continue
        out_k.append(10 ** x.mean())
        out_s.append((xc @ (y - y.mean())) / sxx)
        out_n.append(n)
    _require(len(out_k) > 0, "window_decades", window_decades,
             f"a window holding at least min_points={min_points} points somewhere in the data")
    return LocalSlope(steps=np.asarray(out_k), slope=np.asarray(out_s), n_points=np.asarray(out_n))


# ----------------------------------------------------------------------------------------------- timescale

@dataclass(frozen=True)
class ExponentialDecayFit:
    """``y(t) = amplitude * exp(-t / timescale) + offset``; the timescale is in the units of ``t``."""

    timescale: float
    amplitude: float
    offset: float
    timescale_interval: tuple[float, float]
    confidence: float
    rms_residual: float

    def predict(self, t: ArrayLike) -> NDArray:
        """The fitted curve at ``t``."""
        return self.amplitude * np.exp(-np.asarray(t, dtype=np.float64) / self.timescale) + self.offset


def _decay_design(t: NDArray, tau: float, with_offset: bool) -> NDArray:
    e = np.exp(-t / tau)
    return np.stack([e, np.ones_like(t)], axis=1) if with_offset else e[:, None]


def _decay_start(t: NDArray, y: NDArray, with_offset: bool, tau_grid: NDArray) -> tuple[NDArray, float]:
    """Least-absolute-deviation start ``(log tau, amplitude[, offset])`` and a robust residual scale.

    For each ``tau`` of the grid the linear coefficients are fitted by iteratively reweighted least squares
    for the L1 loss, so a few wild points (even one at ``t = 0``, which a very short ``tau`` could absorb)
    do not choose the start.
    """
    best_loss, best, best_scale = np.inf, None, 1.0
    floor = 1e-12 * (float(np.ptp(y)) or 1.0)
    for tau in tau_grid:
        design = _decay_design(t, tau, with_offset)
        weights = np.ones_like(t)
        for _ in range(12):
            root = np.sqrt(weights)
            coef, *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
            r = np.abs(y - design @ coef)
            weights = 1.0 / np.maximum(r, floor)
        loss = float(r.sum())
        if loss < best_loss:
            best_loss, best, best_scale = loss, np.r_[np.log(tau), coef], 1.4826 * float(np.median(r))
    return best, max(best_scale, floor)


def _decay_refine(t: NDArray, y: NDArray, with_offset: bool, start: NDArray, f_scale: float,
                  log_tau_bounds: tuple[float, float]) -> NDArray:
    """Soft-L1 least squares from ``start``; returns ``(log tau, amplitude, offset)``."""

    def residual(p: NDArray) -> NDArray:
        c = p[2] if with_offset else 0.0
        return p[1] * np.exp(-t * np.exp(-p[0])) + c - y

    lower = np.full(start.size, -np.inf)
    upper = np.full(start.size, np.inf)
    lower[0], upper[0] = log_tau_bounds
    sol = optimize.least_squares(residual, np.clip(start, lower, upper), bounds=(lower, upper),
                                 loss="soft_l1", f_scale=f_scale, x_scale="jac")
    return sol.x if with_offset else np.r_[sol.x, 0.0]


def fit_exponential_decay(
    t: ArrayLike,
    y: ArrayLike,
    *,
    offset: bool = True,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> ExponentialDecayFit:
    """Fit ``y = A exp(-t / tau) (+ c)`` robustly (soft-L1 loss), with a bootstrap interval for ``tau``.

    ``t`` is in any unit (steps, or continuous time ``eta * k``); ``tau`` comes back in the same unit.
    ``A`` may be negative (relaxation up to a plateau). The start is the best ``tau`` (least absolute
    deviation) on a log grid from a tenth of the smallest spacing to ten times the span, with ``A`` and ``c``
    solved linearly at each; the refinement minimises the soft-L1 loss at the robust residual scale.

    >>> t = np.linspace(0, 10, 200)
    >>> fit = fit_exponential_decay(t, 2.0 * np.exp(-t / 1.5) + 0.3, n_bootstrap=20)
    >>> round(fit.timescale, 6), round(fit.amplitude, 6), round(fit.offset, 6)
    (1.5, 2.0, 0.3)
    """
    ta, ya = _paired_1d(t, y, "t", "y")
    _check_bootstrap(n_bootstrap, confidence)
    _require(ta.size >= (4 if offset else 3), "t.size", ta.size, f"at least {4 if offset else 3} points")
    order = np.argsort(ta)
    ta, ya = ta[order], ya[order]
    span = ta[-1] - ta[0]
    _require(span > 0, "t", _Summary("(a single distinct value)"), "at least two distinct times")
    spacing = np.diff(ta)
    dt = spacing[spacing > 0].min()
    tau_grid = np.geomspace(dt / 10, 10 * span, 60)
    bounds = (float(np.log(dt / 100)), float(np.log(100 * span)))
    # Shift time so the amplitude is the value at the first sample: better conditioned, same tau.
    t0 = ta[0]
    start, f_scale = _decay_start(ta - t0, ya, offset, tau_grid)
    p = _decay_refine(ta - t0, ya, offset, start[: 3 if offset else 2], f_scale, bounds)
    tau, amp, c = float(np.exp(p[0])), float(p[1]), float(p[2])
    fitted = amp * np.exp(-(ta - t0) / tau) + c
    residuals = ya - fitted

    # Residual bootstrap; each resample is refitted from the fit itself (the resamples stay near it).
    rng = np.random.default_rng(seed)
    taus = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        y_star = fitted + residuals[rng.integers(0, residuals.size, size=residuals.size)]
        taus[b] = np.exp(_decay_refine(ta - t0, y_star, offset, p[: 3 if offset else 2], f_scale, bounds)[0])
    return ExponentialDecayFit(
        timescale=tau,
        amplitude=amp * float(np.exp(t0 / tau)),
        offset=c,
        timescale_interval=_percentile_interval(taus, confidence),
        confidence=float(confidence),
        rms_residual=float(np.sqrt(np.mean(residuals**2))),
    )


# ----------------------------------------------------------------------------------------------- spectra

@dataclass(frozen=True)
class OscillationSpectrum:
    """FFT frequencies of projected trajectories, one column per mode (002 appendix H).

    ``frequencies`` (n_freq,) and ``amplitudes`` (n_freq, modes) are the one-sided spectrum ``|rfft|``
    in cycles per step (``amplitudes[0]``, the mean, is excluded from both summaries).
    ``dominant_frequency`` and ``mean_frequency`` (modes,) are in cycles per step; the ``*_angular``
    fields are ``2 pi f / eta`` in radians per unit of ``t = eta k`` (NaN when ``lr`` was not given).
    ``resolution = 1 / n_steps`` is the bin width.
    """

    frequencies: NDArray
    amplitudes: NDArray
    dominant_frequency: NDArray
    mean_frequency: NDArray
    dominant_angular: NDArray
    mean_angular: NDArray
    resolution: float


def oscillation_spectrum(
    trajectory: ArrayLike,
    *,
    lr: float | None = None,
    detrend: Literal["constant", "linear"] = "linear",
) -> OscillationSpectrum:
    """Dominant and amplitude-weighted mean FFT frequency of each column of ``trajectory`` (steps, modes).

    The amplitude-weighted mean is ``sum_f f |X(f)| / sum_f |X(f)|`` over the positive frequencies
    (002 appendix H). Projected positions drift slowly (anomalous diffusion), so a linear trend is removed
    by default; its leakage would otherwise pull the mean frequency towards zero.

    >>> k = np.arange(200)
    >>> s = oscillation_spectrum(np.cos(2 * np.pi * 0.1 * k), lr=0.01, detrend="constant")
    >>> float(s.dominant_frequency[0]), round(float(s.mean_frequency[0]), 9)
    (0.1, 0.1)
    >>> round(float(s.dominant_angular[0] / (2 * np.pi)), 9)   # 0.1 cycles per step = 10 cycles per unit t
    10.0
    """
    x = np.asarray(trajectory, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    _require(x.ndim == 2, "trajectory.shape", x.shape, "(steps,) or (steps, modes)")
    _require(x.shape[0] >= 4, "trajectory.shape[0]", x.shape[0], "at least 4 steps")
    _require(bool(np.all(np.isfinite(x))), "trajectory", _Summary("(non-finite entries)"), "finite values")
    _require(detrend in ("constant", "linear"), "detrend", detrend, "'constant' or 'linear'")
    _require(lr is None or (np.isfinite(lr) and lr > 0), "lr", lr, "None or a learning rate > 0")
    n = x.shape[0]
    amplitudes = np.abs(np.fft.rfft(signal.detrend(x, axis=0, type=detrend), axis=0))
    frequencies = np.fft.rfftfreq(n, d=1.0)
    positive = amplitudes[1:]
    total = positive.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, frequencies[1:] @ positive / np.where(total > 0, total, 1.0), np.nan)
    dominant = frequencies[1:][np.argmax(positive, axis=0)]
    to_angular = 2 * np.pi / lr if lr is not None else np.nan
    return OscillationSpectrum(
        frequencies=frequencies,
        amplitudes=amplitudes,
        dominant_frequency=dominant,
        mean_frequency=mean,
        dominant_angular=dominant * to_angular,
        mean_angular=mean * to_angular,
        resolution=1.0 / n,
    )


# ----------------------------------------------------------------------------------------------- hinge

@dataclass(frozen=True)
class HingeFit:
    """The continuous two-slope hinge of 003 eq. 14.

    ``y = value_at_breakpoint + slope_left (x - breakpoint)`` left of the breakpoint and
    ``value_at_breakpoint + slope_right (x - breakpoint)`` right of it. Intervals are bootstrap
    percentile intervals at level ``confidence``.
    """

    breakpoint: float
    value_at_breakpoint: float
    slope_left: float
    slope_right: float
    breakpoint_interval: tuple[float, float]
    slope_left_interval: tuple[float, float]
    slope_right_interval: tuple[float, float]
    confidence: float
    rms_residual: float

    def predict(self, x: ArrayLike) -> NDArray:
        """The fitted hinge at ``x``."""
        dx = np.asarray(x, dtype=np.float64) - self.breakpoint
        return self.value_at_breakpoint + np.where(dx <= 0, self.slope_left * dx, self.slope_right * dx)


def _line_fits(n: NDArray, sx: NDArray, sxx: NDArray, sy: NDArray, sxy: NDArray, syy: NDArray):
    """Least-squares lines ``y = c + a x`` from sums (broadcasting); returns ``(c, a, sse)``."""
    vx = sxx - sx * sx / n
    cxy = sxy - sx * sy / n
    a = cxy / vx
    c = (sy - a * sx) / n
    sse = np.maximum(syy - sy * sy / n - a * cxy, 0.0)
    return c, a, sse


def _fit_hinges(x: NDArray, ys: NDArray) -> NDArray:
    """Exact least-squares hinges for each row of ``ys`` (B, n) on sorted ``x``.

    Returns ``(B, 4)`` rows of ``(breakpoint, value, slope_left, slope_right)``. The global optimum is
    either at a data point (a knot: linear least squares in the three other parameters) or strictly
    between two consecutive distinct ``x``; there the partition of the points is fixed, the constrained
    optimum is the pair of independent line fits, and it counts when their intersection lies inside that
    gap (Hudson 1966). Any other stationary point has equal slopes, which a knot fit already includes.
    """
    n_rows = ys.shape[0]
    best_sse = np.full(n_rows, np.inf)
    best = np.full((n_rows, 4), np.nan)
    distinct = np.unique(x)

    def consider(sse: NDArray, params: NDArray) -> None:
        better = sse < best_sse
        best_sse[better] = sse[better]
        best[better] = params[better]

    for xb in distinct[1:-1]:
        dx = x - xb
        design = np.stack([np.ones_like(x), np.minimum(dx, 0.0), np.maximum(dx, 0.0)], axis=1)
        coef = ys @ np.linalg.pinv(design).T
        sse = np.sum((ys - coef @ design.T) ** 2, axis=1)
        consider(sse, np.column_stack([np.full(n_rows, xb), coef]))

    cn = np.arange(1, x.size + 1, dtype=np.float64)
    cx, cxx = np.cumsum(x), np.cumsum(x * x)
    cy, cxy, cyy = np.cumsum(ys, axis=1), np.cumsum(ys * x, axis=1), np.cumsum(ys * ys, axis=1)
    for m in range(1, distinct.size - 2):
        i = int(np.searchsorted(x, distinct[m], side="right")) - 1   # last index of the left part
        left = _line_fits(cn[i], cx[i], cxx[i], cy[:, i], cxy[:, i], cyy[:, i])
        right = _line_fits(cn[-1] - cn[i], cx[-1] - cx[i], cxx[-1] - cxx[i], cy[:, -1] - cy[:, i],
                           cxy[:, -1] - cxy[:, i], cyy[:, -1] - cyy[:, i])
        with np.errstate(divide="ignore", invalid="ignore"):
            xb = (right[0] - left[0]) / (left[1] - right[1])
        inside = np.isfinite(xb) & (xb >= distinct[m]) & (xb <= distinct[m + 1])
        sse = np.where(inside, left[2] + right[2], np.inf)
        consider(sse, np.column_stack([xb, left[0] + left[1] * xb, left[1], right[1]]))
    return best


def fit_hinge(
    x: ArrayLike,
    y: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> HingeFit:
    """Fit the continuous two-slope hinge of 003 eq. 14 (e.g. test accuracy against momentum).

    The least-squares fit is exact (no grid): for a fixed breakpoint the model is linear in
    ``(a_max, a_1, a_2)``, and the optimal breakpoint is either a data point or the intersection of two
    independent line fits inside a gap between consecutive ``x`` (see ``_fit_hinges``). The breakpoint is
    searched between the second smallest and the second largest distinct ``x``, so each side keeps a point
    that fixes its slope. Intervals come from a seeded residual bootstrap (all resamples fitted at once).

    >>> xs = np.linspace(0.0, 1.0, 21)
    >>> fit = fit_hinge(xs, 1.0 - np.abs(xs - 0.37), n_bootstrap=20)
    >>> round(fit.breakpoint, 6), round(fit.slope_left, 6), round(fit.slope_right, 6)
    (0.37, 1.0, -1.0)
    """
    xa, ya = _paired_1d(x, y, "x", "y")
    _check_bootstrap(n_bootstrap, confidence)
    distinct = np.unique(xa)
    _require(distinct.size >= 4, "x", _Summary(f"({distinct.size} distinct values)"),
             "at least 4 distinct values")
    order = np.argsort(xa, kind="stable")
    # Centre both axes: the sums of squares in the gap fits then lose no digits to the offsets.
    x0, y0 = float(distinct.mean()), float(ya.mean())
    xs, ys = xa[order] - x0, ya[order] - y0
    xb, value, a1, a2 = _fit_hinges(xs, ys[None, :])[0]
    fit_values = value + np.where(xs <= xb, a1, a2) * (xs - xb)
    residuals = ys - fit_values

    rng = np.random.default_rng(seed)
    y_star = fit_values + residuals[rng.integers(0, residuals.size, size=(n_bootstrap, residuals.size))]
    boot = _fit_hinges(xs, y_star)
    return HingeFit(
        breakpoint=float(xb + x0),
        value_at_breakpoint=float(value + y0),
        slope_left=float(a1),
        slope_right=float(a2),
        breakpoint_interval=_percentile_interval(boot[:, 0] + x0, confidence),
        slope_left_interval=_percentile_interval(boot[:, 2], confidence),
        slope_right_interval=_percentile_interval(boot[:, 3], confidence),
        confidence=float(confidence),
        rms_residual=float(np.sqrt(np.mean(residuals**2))),
    )
