"""Exponential decays: the timescale of ``y(t) = A exp(-t / tau) + c`` and the log-linear decay rate.

- :func:`fit_exponential_decay` — robust (soft-L1) nonlinear fit with a seeded residual-bootstrap interval
  (relaxation of a mode, decay of an autocorrelation over its whole range).
- :func:`log_linear_decay_rate` — ``-d log y / dt`` by least squares of ``log y`` on ``t``: the rate of a
  single exponential on a window where faster terms have died out (chapter 004, spectral gap, ERRATA
  004.6). The one decay estimator of ``simulate/`` and ``measure/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from sgd_dynamics._validation import require as _require
from sgd_dynamics.estimation.resampling import Summary, check_bootstrap, paired_1d, percentile_interval

__all__ = ["ExponentialDecayFit", "fit_exponential_decay", "log_linear_decay_rate"]


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
    ta, ya = paired_1d(t, y, "t", "y")
    check_bootstrap(n_bootstrap, confidence)
    _require(ta.size >= (4 if offset else 3), "t.size", ta.size, f"at least {4 if offset else 3} points")
    order = np.argsort(ta)
    ta, ya = ta[order], ya[order]
    span = ta[-1] - ta[0]
    _require(span > 0, "t", Summary("(a single distinct value)"), "at least two distinct times")
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
        timescale_interval=percentile_interval(taus, confidence),
        confidence=float(confidence),
        rms_residual=float(np.sqrt(np.mean(residuals**2))),
    )


def log_linear_decay_rate(t: ArrayLike, y: ArrayLike, name: str = "window") -> float:
    """Decay rate ``-slope`` of the least-squares line through ``(t, log y)``; ``y`` must be > 0.

    >>> t = np.linspace(0.0, 2.0, 11)
    >>> round(log_linear_decay_rate(t, 3.0 * np.exp(-0.7 * t)), 12)
    0.7
    """
    ya = np.asarray(y, dtype=np.float64)
    if np.any(ya <= 0):
        raise ValueError(f"autocorrelation is <= 0 inside window={name}: the window reaches lags where "
                         "rho is lost in noise; end it earlier or simulate longer")
    return -float(np.polyfit(np.asarray(t, dtype=np.float64), np.log(ya), 1)[0])
