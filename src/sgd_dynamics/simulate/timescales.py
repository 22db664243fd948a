"""Time-scales measured on simulated trajectories: autocorrelation decay and basin-to-basin rate matrices.

Chapter 004, time-scales section (spectral gap, ERRATA 004.6; metastable rates), estimated from data; the
predictions they are compared with live in :mod:`sgd_dynamics.theory.fokker_planck` and
:mod:`sgd_dynamics.theory.metastability`.

* **Autocorrelation** of an observable ``f`` along stationary trajectories (many replicas, sampled every
  ``dt``)::

      rho(t) = <(f(x_0) - mu)(f(x_t) - mu)> / Var f  =  sum_{k>=1} c_k exp(-lambda_k t)

  for a reversible diffusion (``lambda_k`` the Fokker–Planck eigenvalues, ``c_k >= 0`` the squared projections
  of ``f`` on the eigenfunctions). At lags where the faster terms have died out, ``-d log rho / dt`` is the
  slowest rate the observable sees — the spectral gap ``lambda_1`` when ``f`` is not orthogonal to the slow
  eigenfunction (for an OU process ``lambda_1 = lambda_min(H)`` at every ``T``, ERRATA 004.6).
  :func:`fit_decay_rate` fits ``log rho`` linearly over a window; :func:`integrated_autocorrelation_time`
  gives ``tau_int = int_0^inf rho(t) dt = sum_k c_k / lambda_k`` (trapezoid rule, Sokal's automatic window
  ``t_max >= c tau_int``). Standard errors: delete-one-group jackknife over groups of replicas.
* **Core-set (milestoning) transition counts**: a replica's state is the last core set it visited; a
  transition ``i -> j`` is counted when it *enters* core ``j`` having last been in core ``i``, so
  recrossings of the dividing surface between cores never count. The rate estimate ``k_ij = N_ij / T_i``
  (``T_i`` the total time with last core ``i``) is the maximum-likelihood rate of a Markov jump process with
  censored holding times; its standard error is ``k_ij / sqrt(N_ij)`` (Poisson counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import positive as _positive
from sgd_dynamics.estimation.decay import log_linear_decay_rate as _log_slope

Array = NDArray[np.float64]
OUTSIDE = -1  # label of a point outside every core set


# --- autocorrelation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Autocorrelation:
    """Normalised autocorrelation ``rho`` at ``lags`` (times), pooled over all replicas and per replica group.

    ``group_covariances[g]`` is the autocovariance summed over the replicas of group ``g`` (each lag divided
    by its number of products); the pooled ``values`` and every jackknife replicate are built from these sums.
    """

    lags: Array
    values: Array
    group_covariances: Array
    dt: float

    @property
    def n_groups(self) -> int:
        """Number of replica groups used for the jackknife."""
        return int(self.group_covariances.shape[0])

    def jackknife_values(self) -> Array:
        """``rho`` with each group left out in turn: shape ``(n_groups, n_lags)``."""
        total = self.group_covariances.sum(axis=0)
        rest = total[None, :] - self.group_covariances
        return rest / rest[:, :1]


def autocorrelation(series: ArrayLike, dt: float, max_lag: float, n_groups: int = 20) -> Autocorrelation:
    """Autocorrelation of stationary series ``(n_samples, n_replicas)`` sampled every ``dt``, to ``max_lag``.

    The mean is the pooled mean of all samples (the process is stationary); autocovariances come from an FFT
    of each replica's series, averaged over the products available at each lag.

    >>> rng = np.random.default_rng(0)
    >>> x = np.zeros((4000, 40))
    >>> for k in range(1, 4000):  # AR(1) with coefficient 0.9: rho(m) = 0.9**m
    ...     x[k] = 0.9 * x[k - 1] + rng.standard_normal(40)
    >>> acf = autocorrelation(x[500:], dt=1.0, max_lag=3.0, n_groups=4)
    >>> np.round(acf.values, 1).tolist()
    [1.0, 0.9, 0.8, 0.7]
    """
    y = np.asarray(series, dtype=np.float64)
    dt = _positive(dt, "dt")
    if y.ndim != 2 or y.shape[0] < 4:
        raise ValueError(f"series must have shape (n_samples >= 4, n_replicas); got shape {y.shape}")
    n, r = y.shape
    if not (isinstance(n_groups, (int, np.integer)) and 2 <= n_groups <= r):
        raise ValueError(f"n_groups={n_groups!r} is invalid: expected an integer in [2, n_replicas={r}]")
    m = int(round(_positive(max_lag, "max_lag") / dt))
    if not 1 <= m < n:
        raise ValueError(f"max_lag={max_lag!r} is invalid: expected dt <= max_lag < n_samples * dt "
                         f"= {n * dt:g}")
    if not np.all(np.isfinite(y)):
        raise ValueError("series must be finite")
    y = y - y.mean()
    size = 1 << int(math.ceil(math.log2(2 * n)))
    spectrum = np.fft.rfft(y, n=size, axis=0)
    per_replica = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[: m + 1]  # (m+1, r)
    per_replica /= (n - np.arange(m + 1))[:, None]
    groups = np.array_split(np.arange(r), n_groups)
    group_cov = np.stack([per_replica[:, g].sum(axis=1) for g in groups])
    total = group_cov.sum(axis=0)
    if total[0] <= 0:
        raise ValueError("series has zero variance: the observable is constant")
    return Autocorrelation(dt * np.arange(m + 1), total / total[0], group_cov, dt)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its jackknife standard error."""

    value: float
    stderr: float


def _jackknife(point: float, replicates: Array) -> Estimate:
    g = replicates.size
    return Estimate(point, float(math.sqrt((g - 1) / g * np.sum((replicates - replicates.mean()) ** 2))))


def fit_decay_rate(acf: Autocorrelation, window: tuple[float, float]) -> Estimate:
    """Exponential decay rate ``-d log rho / dt`` fitted by least squares on ``window = (t_min, t_max)``.

    Start the window after the fast components have decayed (then the rate is the slowest one the observable
    projects on) and end it while ``rho`` is still well above its noise.
    """
    t_min, t_max = (float(w) for w in window)
    if not (0 <= t_min < t_max <= acf.lags[-1]):
        raise ValueError(f"window={window!r} is invalid: expected 0 <= t_min < t_max <= "
                         f"max_lag={acf.lags[-1]:g}")
    sel = (acf.lags >= t_min - 1e-12 * acf.dt) & (acf.lags <= t_max + 1e-12 * acf.dt)
    if sel.sum() < 2:
        raise ValueError(f"window={window!r} is invalid: it holds fewer than 2 lags of spacing dt={acf.dt:g}")
    point = _log_slope(acf.lags[sel], acf.values[sel], repr(window))
    reps = np.array([_log_slope(acf.lags[sel], v[sel], repr(window)) for v in acf.jackknife_values()])
    return _jackknife(point, reps)


def _tau_int(rho: Array, dt: float, c: float) -> float:
    partial = dt * (np.cumsum(rho) - 0.5 * rho[0] - 0.5 * rho)  # trapezoid from 0 to each lag
    ok = np.nonzero(np.arange(rho.size) * dt >= c * partial)[0]
    ok = ok[ok > 0]
    if ok.size == 0:
        raise ValueError(f"max_lag={(rho.size - 1) * dt:g} is too short for the automatic window "
                         f"(needs t >= {c:g} tau_int); raise max_lag")
    return float(partial[ok[0]])


def integrated_autocorrelation_time(acf: Autocorrelation, window_factor: float = 6.0) -> Estimate:
    """``tau_int = int_0^t rho`` with the first ``t >= window_factor * tau_int(t)`` (Sokal's window)."""
    c = _positive(window_factor, "window_factor")
    point = _tau_int(acf.values, acf.dt, c)
    reps = np.array([_tau_int(v, acf.dt, c) for v in acf.jackknife_values()])
    return _jackknife(point, reps)


# --- core sets and milestoning ---------------------------------------------------------------------
def core_labels(x: ArrayLike, centers: ArrayLike, radius: float) -> NDArray[np.int64]:
    """Index of the core set (ball of ``radius`` around each centre) containing each point, else ``-1``.

    ``x`` has shape ``(...)`` for 1-D points with ``centers`` of shape ``(m,)``, or ``(..., d)`` with
    ``centers`` of shape ``(m, d)``. Cores must not overlap.
    """
    c = np.asarray(centers, dtype=np.float64)
    q = np.asarray(x, dtype=np.float64)
    r = _positive(radius, "radius")
    if c.ndim == 1:
        c, q = c[:, None], q[..., None]
    if c.ndim != 2 or q.shape[-1] != c.shape[1]:
        raise ValueError(f"centers of shape {np.shape(centers)} do not match points of shape {np.shape(x)}")
    gaps = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1) + np.eye(len(c)) * 4 * r
    if np.any(gaps <= 2 * r):
        raise ValueError(f"radius={radius!r} is invalid: cores overlap (closest centres "
                         f"{float(gaps.min()):.4g} apart; need radius < half of that)")
    dist = np.linalg.norm(q[..., None, :] - c, axis=-1)
    inside = dist < r
    return np.where(inside.any(axis=-1), np.argmax(inside, axis=-1), OUTSIDE).astype(np.int64)


@dataclass(frozen=True)
class CoreTransitionCounts:
    """Milestoning statistics of a set of trajectories.

    ``counts[i, j]``: entries into core ``j`` after core ``i``; ``residence[i]``: time with last core ``i``;
    ``last_core``: per replica (``-1`` before its first core visit), to continue counting on the next chunk.
    """

    counts: NDArray[np.int64]
    residence: Array
    last_core: NDArray[np.int64]

    @property
    def n_cores(self) -> int:
        """Number of core sets."""
        return int(self.counts.shape[0])


def count_core_transitions(labels: ArrayLike, dt: float, n_cores: int,
                           previous: CoreTransitionCounts | None = None) -> CoreTransitionCounts:
    """Count milestoning transitions in ``labels`` ``(n_samples, n_replicas)`` (from :func:`core_labels`).

    Each sample stands for the interval ``dt`` that follows it. Pass ``previous`` to continue a count over
    consecutive chunks of the same trajectories (a chunk starts at the sample after the last one counted).
    """
    lab = np.asarray(labels)
    dt = _positive(dt, "dt")
    if lab.ndim != 2:
        raise ValueError(f"labels must have shape (n_samples, n_replicas); got shape {lab.shape}")
    if not (isinstance(n_cores, (int, np.integer)) and n_cores >= 2):
        raise ValueError(f"n_cores={n_cores!r} is invalid: expected an integer >= 2")
    if np.any((lab < OUTSIDE) | (lab >= n_cores)):
        raise ValueError(f"labels must lie in [-1, n_cores={n_cores}); got values in "
                         f"[{lab.min()}, {lab.max()}]")
    if previous is None:
        counts = np.zeros((n_cores, n_cores), dtype=np.int64)
        residence = np.zeros(n_cores)
        last = np.full(lab.shape[1], OUTSIDE, dtype=np.int64)
    else:
        if previous.n_cores != n_cores or previous.last_core.shape != (lab.shape[1],):
            raise ValueError("previous counts do not match: different n_cores or number of replicas")
        counts, residence, last = previous.counts.copy(), previous.residence.copy(), previous.last_core.copy()
    # Forward-fill the last visited core along time (per replica), starting from the carried-over state.
    n = lab.shape[0]
    idx = np.where(lab != OUTSIDE, np.arange(n)[:, None], -1)
    idx = np.maximum.accumulate(idx, axis=0)
    rows = np.maximum(idx, 0)
    milestone = np.where(idx >= 0, lab[rows, np.arange(lab.shape[1])], last[None, :])
    before = np.vstack([last[None, :], milestone[:-1]])
    jump = (before != OUTSIDE) & (milestone != before)
    np.add.at(counts, (before[jump], milestone[jump]), 1)
    defined = milestone != OUTSIDE
    residence += dt * np.bincount(milestone[defined], minlength=n_cores)
    return CoreTransitionCounts(counts, residence, milestone[-1].copy())


@dataclass(frozen=True)
class MeasuredRateMatrix:
    """Rates ``k_ij = N_ij / T_i`` with Poisson standard errors ``k_ij / sqrt(N_ij)``; rows of Q sum to 0."""

    generator: Array
    stderr: Array
    counts: NDArray[np.int64]
    residence: Array


def estimate_rate_matrix(
        transitions: CoreTransitionCounts | Sequence[CoreTransitionCounts]) -> MeasuredRateMatrix:
    """Maximum-likelihood rate matrix of the milestoning process (several independent counts are pooled)."""
    items = [transitions] if isinstance(transitions, CoreTransitionCounts) else list(transitions)
    if not items:
        raise ValueError("transitions is empty: expected at least one CoreTransitionCounts")
    counts = sum(t.counts for t in items)
    residence = sum(t.residence for t in items)
    if np.any(residence <= 0):
        raise ValueError(f"some core was never visited (residence times {residence.tolist()}); "
                         "no rate out of it")
    k = counts / residence[:, None]
    np.fill_diagonal(k, 0.0)
    se = np.where(counts > 0, k / np.sqrt(np.maximum(counts, 1)), 0.0)
    np.fill_diagonal(se, 0.0)
    q = k - np.diag(k.sum(axis=1))
    return MeasuredRateMatrix(q, se, counts, residence)
