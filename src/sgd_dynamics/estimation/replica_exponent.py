"""The anomalous-diffusion exponent of the diffusion part over replicas, with a bootstrap over replicas.

002 section 2 fits ``||Delta_k||^2 ~ k^c``; issue 11 section 6 scores ``c`` of the diffusion part alone,
``D_k = tr Cov(theta_k)`` (:mod:`sgd_dynamics.estimation.replica_decomposition`), since a drift (a
``theta*`` still training) inflates the exponent of the total. The exponent is the least-squares slope of
``log D_k`` on ``log k`` over a window of recorded steps (:func:`log_log_slope`).

Its uncertainty comes from the replicas, the only independent units (the steps of one replica are strongly
correlated): :func:`replica_exponent` resamples the ``R`` replicas with replacement (Efron 1979), rebuilds
each resample's Gram matrices ``G[idx][:, idx]`` and its diffusion part, and refits. A resample that repeats
a replica has a diffusion estimate biased by a constant factor (the sample variance of a resample with
ties), which a log-slope does not see. Resamples with a non-positive diffusion somewhere in the window (all
replicas the same, or ``D`` cancelling to ``<= 0``) have no exponent and are left out; their number is
returned. The interval is the percentile interval at level ``confidence``.

With few replicas the bootstrap is coarse (``R = 4`` allows 35 distinct resamples) and too narrow: on
replicas of a process of known exponent (``W(k^0.6)`` in 5 dimensions, 200 seeds) its 95% interval covers
0.87 of the time at ``R = 4``, 0.885 at ``R = 8``, 0.925 at ``R = 16``. The jackknife over replicas
(leave one out, ``R >= 3``; Quenouille 1956, Tukey 1958) is too narrow too (0.885 at ``R = 4``), but the two
err on different resamples: ``stderr`` is the larger of the jackknife standard error and the bootstrap
interval's half-width over the normal quantile, and ``exponent +- 1.96 stderr`` then covers 0.945 at
``R = 4`` and 0.935 at ``R = 8``. It is the standard error a verdict weighs against its tolerance
(:attr:`sgd_dynamics.verdicts.Row.measured_stderr`).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.estimation.replica_decomposition import replica_decomposition
from sgd_dynamics.estimation.resampling import check_bootstrap, percentile_interval

__all__ = ["ReplicaExponent", "log_log_slope", "replica_exponent"]


@dataclass(frozen=True)
class ReplicaExponent:
    """Exponent ``c`` of the diffusion part ``D_k ~ k^c`` on ``window``, with its bootstrap over replicas."""

    exponent: float
    interval: tuple[float, float]   # bootstrap percentile interval
    stderr: float                   # max(jackknife s.e., interval half-width / normal quantile)
    jackknife_stderr: float         # leave one replica out; NaN for R = 2
    confidence: float
    window: tuple[float, float]
    n_points: int
    replicas: int
    resamples: int          # bootstrap resamples with an exponent (the others are left out)


def _in_window(steps: NDArray, window: tuple[float, float]) -> NDArray[np.bool_]:
    inside = (steps >= window[0]) & (steps <= window[1])
    require(int(inside.sum()) >= 2, "window", window, f"a range holding >= 2 of the steps {steps[:3]}...")
    return inside


def log_log_slope(steps: ArrayLike, values: ArrayLike, window: tuple[float, float]) -> NDArray[np.float64]:
    """Least-squares slope of ``log values`` on ``log steps`` over ``window`` (inclusive), along axis 0.

    ``values`` may carry trailing axes (one slope each); NaN where a value in the window is ``<= 0``.

    >>> k = np.array([1.0, 10.0, 100.0])
    >>> round(float(log_log_slope(k, 3 * k**0.5, (1, 100))), 12)
    0.5
    """
    k = np.asarray(steps, np.float64)
    v = np.asarray(values, np.float64)
    require(k.ndim == 1 and v.shape[:1] == k.shape and bool(np.all(k > 0)), "steps", k.shape,
            f"1-D positive steps, one per row of values {v.shape}")
    inside = _in_window(k, window)
    x = np.log(k[inside])
    x = x - x.mean()
    y = v[inside]
    positive = np.all(y > 0, axis=0)
    logs = np.log(np.where(y > 0, y, 1.0))
    slope = np.tensordot(x, logs, axes=(0, 0)) / float(x @ x)
    return np.where(positive, slope, np.nan)


def replica_exponent(steps: ArrayLike, gram: ArrayLike, window: tuple[float, float], *,
                     n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> ReplicaExponent:
    """``c`` of the diffusion part from Gram matrices ``(T, R, R)`` at ``steps``, bootstrapped over replicas.

    See the module docstring; ``seed`` fixes the resamples.
    """
    g = np.asarray(gram, np.float64)
    k = np.asarray(steps, np.float64)
    require(g.ndim == 3 and g.shape[1] == g.shape[2] >= 2 and g.shape[0] == k.size, "gram.shape", g.shape,
            f"(T, R, R) with T = {k.size} steps and R >= 2 replicas")
    check_bootstrap(n_bootstrap, confidence)
    inside = _in_window(k, window)
    r = g.shape[1]
    exponent = float(log_log_slope(k, replica_decomposition(g).diffusion, window))
    idx = np.random.default_rng(seed).integers(r, size=(n_bootstrap, r))
    resampled = g[inside][:, idx[:, :, None], idx[:, None, :]]          # (T_window, B, R, R)
    boot = log_log_slope(k[inside], replica_decomposition(resampled).diffusion, window)
    boot = boot[np.isfinite(boot)]
    jackknife = _jackknife_stderr(k[inside], g[inside], window)
    if boot.size < 10:
        low = high = stderr = float("nan")
    else:
        low, high = percentile_interval(boot, confidence)
        half_width = (high - low) / (2 * NormalDist().inv_cdf((1 + confidence) / 2))
        stderr = float(np.nanmax([half_width, jackknife]))
    return ReplicaExponent(exponent, (low, high), stderr, jackknife, confidence,
                           (float(window[0]), float(window[1])), int(inside.sum()), r, int(boot.size))


def _jackknife_stderr(steps: NDArray, gram: NDArray, window: tuple[float, float]) -> float:
    """Leave-one-replica-out standard error of the exponent (NaN below 3 replicas or where one has none)."""
    r = gram.shape[-1]
    if r < 3:
        return float("nan")
    keep = ~np.eye(r, dtype=bool)
    loo = np.stack([gram[:, keep[i]][:, :, keep[i]] for i in range(r)], axis=1)     # (T, R, R-1, R-1)
    c = log_log_slope(steps, replica_decomposition(loo).diffusion, window)
    return float(np.sqrt((r - 1) / r * np.sum((c - c.mean()) ** 2)))

