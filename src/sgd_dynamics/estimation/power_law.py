"""Power laws of anomalous diffusion: the exponent ``c`` of ``||Delta_k||^2 = a k^c`` and its running value.

- :func:`fit_power_law` — least squares in log-log on a window of steps (002 sec. 2, fig. 1, appendix I: the
  last 2/3 of the trajectory), with a seeded (moving-block) bootstrap interval for ``c``.
- :func:`local_slope` — ``d log D / d log k`` by local linear regression around log-spaced centres (002
  appendix I.7: the fitted ``c`` grows with the window, as for a sum of power laws).

With ``block_length=1`` the interval assumes independent residuals and is too narrow for the strongly
correlated residuals of a training trajectory; use a block of a few correlation times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require as _require
from sgd_dynamics.estimation.resampling import (
    Summary,
    block_resample,
    check_bootstrap,
    paired_1d,
    percentile_interval,
)

__all__ = ["LocalSlope", "PowerLawFit", "fit_power_law", "local_slope"]


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
    k, d = paired_1d(steps, values, "steps", "values")
    check_bootstrap(n_bootstrap, confidence)
    if window is not None:
        _require(len(window) == 2 and window[0] < window[1], "window", window,
                 "a pair (k_min, k_max), k_min < k_max")
        inside = (k >= window[0]) & (k <= window[1])
        k, d = k[inside], d[inside]
    _require(k.size >= 3, "window", window, "at least 3 points inside the window")
    _require(bool(np.all(k > 0)), "steps", Summary("(entries <= 0 in the window)"),
             "steps > 0 for a log-log fit")
    _require(bool(np.all(d > 0)), "values", Summary("(entries <= 0 in the window)"),
             "values > 0 for a log-log fit")
    _require(isinstance(block_length, (int, np.integer)) and 1 <= block_length <= k.size, "block_length",
             block_length, f"an integer in [1, {k.size}] (the number of points in the window)")
    x, y = np.log(k), np.log(d)
    _require(np.ptp(x) > 0, "steps", Summary("(a single distinct value)"), "at least two distinct steps")

    xc = x - x.mean()
    sxx = xc @ xc
    slope = (xc @ (y - y.mean())) / sxx
    intercept = y.mean() - slope * x.mean()
    residuals = y - (intercept + slope * x)

    # Residual bootstrap: y* = fit + resampled residuals; the slope is linear in y*, so the refit is one
    # matrix product over all resamples.
    rng = np.random.default_rng(seed)
    y_star = (intercept + slope * x) + block_resample(residuals, n_bootstrap, block_length, rng)
    slopes = (y_star - y_star.mean(axis=1, keepdims=True)) @ xc / sxx
    return PowerLawFit(
        exponent=float(slope),
        prefactor=float(np.exp(intercept)),
        exponent_interval=percentile_interval(slopes, confidence),
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
    k, d = paired_1d(steps, values, "steps", "values")
    _require(bool(np.all(k > 0)), "steps", Summary("(entries <= 0)"), "steps > 0")
    _require(bool(np.all(d > 0)), "values", Summary("(entries <= 0)"), "values > 0")
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
