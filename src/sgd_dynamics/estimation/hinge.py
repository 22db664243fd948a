"""The hinge of 003 eq. 14: a continuous piecewise-linear fit with a profiled breakpoint.

``A(x) = a_max + a_1 (x - x_*)`` for ``x <= x_*`` and ``a_max + a_2 (x - x_*)`` for ``x >= x_*``; the
breakpoint is profiled (linear least squares for the other three parameters at each candidate), with a
seeded bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require as _require
from sgd_dynamics.estimation.resampling import Summary, check_bootstrap, paired_1d, percentile_interval

__all__ = ["HingeFit", "fit_hinge"]


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
    xa, ya = paired_1d(x, y, "x", "y")
    check_bootstrap(n_bootstrap, confidence)
    distinct = np.unique(xa)
    _require(distinct.size >= 4, "x", Summary(f"({distinct.size} distinct values)"),
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
        breakpoint_interval=percentile_interval(boot[:, 0] + x0, confidence),
        slope_left_interval=percentile_interval(boot[:, 2], confidence),
        slope_right_interval=percentile_interval(boot[:, 3], confidence),
        confidence=float(confidence),
        rms_residual=float(np.sqrt(np.mean(residuals**2))),
    )
