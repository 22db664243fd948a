"""Stationarity certificate: has a monitored series stopped trending? (issue 11 section 1).

002's limiting dynamics (eqs. 9-19) describe SGD after it has settled at ``theta*``; a ``theta*`` that is
still training shows up as a trend in the training loss, ``||theta||^2``, ``tr Sigma`` or the top Hessian
eigenvalue. Each monitored series is split into consecutive windows (the settle loop's windows) and the
last two are compared.

Standard error: non-overlapping batch means (Schmeiser 1982, "Batch size effects in the analysis of
simulation output"; Law & Kelton, *Simulation Modeling and Analysis*, sec. 9.5.3). A window of ``n``
observations is cut into ``b = min(batches, n)`` contiguous batches of ``n // b`` observations (the oldest
``n mod b`` are dropped). For a stationary series whose correlation time is short against a batch, the
batch means are nearly independent and normal, so the autocorrelation enters through their spread and
the difference of the window means ``m_2 - m_1`` has the Welch (1947) standard error and degrees of
freedom::

    se^2 = s_1^2 / b_1 + s_2^2 / b_2,
    nu   = se^4 / ((s_1^2 / b_1)^2 / (b_1 - 2) + (s_2^2 / b_2)^2 / (b_2 - 2)),

with ``s_i^2`` the residual variance of window ``i``'s batch means about their least-squares line in the
batch index (``b_i - 2`` degrees of freedom). Under stationarity it estimates the same variance as the
plain sample variance; the line keeps a trend inside the window out of the noise estimate, which would
otherwise inflate ``se`` by ``~ |r| / sqrt(6 b)`` and let a trend of a few ``rel_tol`` pass. A series
sampled at a few snapshots (``tr Sigma``, the top eigenvalue; at least 3 per window) gets one observation
per batch, i.e. the snapshots are taken as independent.

The relative change is ``r = (m_2 - m_1) / |m_1|`` with ``se_r = se / |m_1|``, and the critical value
``t* = t_nu^{-1}(1 - alpha / 2)`` with ``alpha = false_alarm`` (default 0.0027, the two-sided rate of
``|z| > 3``).

Two criteria per series, both in units of relative change, each holding when ``value <= threshold``:

- ``"<series>: trend"``: ``value = max(|r| - t* se_r, 0)``, the lower confidence bound of ``|r|``,
  ``threshold = rel_tol``. It fails only when the change is both relevant (``|r| > rel_tol``) and
  significant: a one-sided test of the interval null hypothesis ``|r| <= rel_tol`` (Hodges & Lehmann 1954,
  "Testing the approximate validity of statistical hypotheses"). A stationary series fails it with
  probability ``alpha`` when ``rel_tol = 0`` and with less when ``rel_tol > 0`` (the stated false-alarm
  rate); a tiny trend that is significant only because the windows are long passes.
- ``"<series>: resolution"``: ``value = t* se_r``, ``threshold = max_resolution``: the windows are long or
  quiet enough that a relative change of ``max_resolution`` would have been significant. Without it a
  large trend buried in noise would pass the trend criterion for lack of evidence; with it such a series
  is not certified (use longer windows or more snapshots per window).

The run is certified stationary when every criterion of every series holds.
:meth:`StationarityCertificate.to_json` gives the ``summary.json`` contract ``{"stationary": bool,
"criteria": [{"name", "value", "threshold", "holds"}]}``; :class:`StationarityMonitor` and
:func:`settle_until_stationary` are the streaming form the settle loop calls after each window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from sgd_dynamics._validation import require as _require

__all__ = [
    "Criterion",
    "SettleResult",
    "StationarityCertificate",
    "StationarityMonitor",
    "WindowTrend",
    "settle_until_stationary",
    "split_into_windows",
    "stationarity_certificate",
    "window_trend",
]

FALSE_ALARM = 0.0027     # two-sided normal tail beyond 3 sigma
REL_TOL = 0.02
MAX_RESOLUTION = 0.05
BATCHES = 10


@dataclass(frozen=True)
class Criterion:
    """One measured criterion: it holds when ``value <= threshold``."""

    name: str
    value: float
    threshold: float
    holds: bool

    def to_json(self) -> dict[str, object]:
        """``{"name", "value", "threshold", "holds"}`` with plain Python types."""
        return {"name": self.name, "value": float(self.value), "threshold": float(self.threshold),
                "holds": bool(self.holds)}


@dataclass(frozen=True)
class WindowTrend:
    """Batch-means comparison of two consecutive windows of one series (module docstring)."""

    previous_mean: float
    last_mean: float
    relative_change: float           # r = (m_2 - m_1) / |m_1|
    relative_standard_error: float   # se_r
    degrees_of_freedom: float        # Welch-Satterthwaite nu (inf when both windows are constant)
    critical_value: float            # t* = t_nu^{-1}(1 - false_alarm / 2)

    @property
    def lower_bound(self) -> float:
        """``max(|r| - t* se_r, 0)``: the change is at least this large at the false-alarm level."""
        return max(abs(self.relative_change) - self.critical_value * self.relative_standard_error, 0.0)

    @property
    def resolution(self) -> float:
        """``t* se_r``: the smallest relative change these windows can detect."""
        return self.critical_value * self.relative_standard_error


def _batch_means(window: NDArray[np.float64], batches: int) -> NDArray[np.float64]:
    b = min(batches, window.size)
    size = window.size // b
    return window[window.size - b * size:].reshape(b, size).mean(axis=1)


def _detrended_variance(means: NDArray[np.float64]) -> float:
    """Residual variance of ``means`` about their least-squares line in the index (``b - 2`` dof)."""
    j = np.arange(means.size) - (means.size - 1) / 2
    centred = means - means.mean()
    residual = centred - j * (j @ centred) / (j @ j)
    return float(residual @ residual) / (means.size - 2)


def _window(values: ArrayLike, name: str) -> NDArray[np.float64]:
    w = np.asarray(values, dtype=np.float64)
    _require(w.ndim == 1 and w.size >= 3, f"{name}.shape", w.shape, "a 1-D window of >= 3 observations")
    _require(bool(np.all(np.isfinite(w))), name, "(non-finite entries)", "finite observations")
    return w


def _check_settings(false_alarm: float, batches: int) -> None:
    _require(isinstance(false_alarm, (int, float)) and 0 < false_alarm < 1, "false_alarm", false_alarm,
             "a probability in (0, 1)")
    _require(isinstance(batches, (int, np.integer)) and batches >= 3, "batches", batches, "an integer >= 3")


def window_trend(previous: ArrayLike, last: ArrayLike, *, false_alarm: float = FALSE_ALARM,
                 batches: int = BATCHES, name: str = "series") -> WindowTrend:
    """Compare the last window with the previous one by batch means and Welch's t (module docstring).

    >>> t = window_trend([1.0, 1.1, 0.9, 1.0], [1.2, 1.3, 1.1, 1.2], batches=4)
    >>> round(t.relative_change, 6), round(t.degrees_of_freedom, 6)
    (0.2, 4.0)
    """
    _check_settings(false_alarm, batches)
    means = [_batch_means(_window(w, f"{name} window"), batches) for w in (previous, last)]
    m1, m2 = (float(m.mean()) for m in means)
    _require(m1 != 0, f"{name} previous-window mean", m1, "a nonzero mean (the change is relative to it)")
    v1, v2 = (_detrended_variance(m) / m.size for m in means)     # squared s.e. of each window mean
    se = math.sqrt(v1 + v2)
    if se == 0:
        nu, t_star = math.inf, float(stats.norm.isf(false_alarm / 2))
    else:
        nu = se**4 / (v1**2 / (means[0].size - 2) + v2**2 / (means[1].size - 2))
        t_star = float(stats.t.isf(false_alarm / 2, nu))
    return WindowTrend(m1, m2, (m2 - m1) / abs(m1), se / abs(m1), nu, t_star)


@dataclass(frozen=True)
class StationarityCertificate:
    """The criteria of every monitored series; stationary when all hold."""

    criteria: tuple[Criterion, ...]
    trends: Mapping[str, WindowTrend] = field(repr=False)

    @property
    def stationary(self) -> bool:
        """Whether every criterion holds."""
        return all(c.holds for c in self.criteria)

    def failed(self) -> tuple[Criterion, ...]:
        """The criteria that do not hold."""
        return tuple(c for c in self.criteria if not c.holds)

    def to_json(self) -> dict[str, object]:
        """``{"stationary": bool, "criteria": [{"name", "value", "threshold", "holds"}, ...]}``."""
        return {"stationary": self.stationary, "criteria": [c.to_json() for c in self.criteria]}


def _check_tolerances(rel_tol: float, max_resolution: float) -> None:
    _require(isinstance(rel_tol, (int, float)) and math.isfinite(rel_tol) and rel_tol >= 0, "rel_tol",
             rel_tol, "a finite number >= 0 (a relative change, e.g. 0.02)")
    _require(isinstance(max_resolution, (int, float)) and max_resolution > 0, "max_resolution",
             max_resolution, "a number > 0 (a relative change, e.g. 0.05; inf to skip the criterion)")


def stationarity_certificate(windows: Mapping[str, Sequence[ArrayLike]], *, rel_tol: float = REL_TOL,
                             max_resolution: float = MAX_RESOLUTION, false_alarm: float = FALSE_ALARM,
                             batches: int = BATCHES) -> StationarityCertificate:
    """Certify stationarity from the last two windows of each series.

    ``windows[name]`` is the series' consecutive windows in time order (each a 1-D array; see
    :func:`split_into_windows` for a flat series). Criteria ``"<name>: trend"`` and
    ``"<name>: resolution"`` as in the module docstring.

    >>> rng = np.random.default_rng(0)
    >>> flat = stationarity_certificate({"loss": [1 + 0.01 * rng.standard_normal(500) for _ in range(2)]})
    >>> falling = stationarity_certificate({"loss": [np.full(500, 1.0), np.full(500, 0.9)]})
    >>> flat.stationary, falling.stationary, [c.name for c in falling.failed()]
    (True, False, ['loss: trend'])
    """
    _check_tolerances(rel_tol, max_resolution)
    _require(len(windows) >= 1, "windows", dict(windows), "at least one monitored series")
    criteria: list[Criterion] = []
    trends: dict[str, WindowTrend] = {}
    for name, series in windows.items():
        _require(len(series) >= 2, f"windows[{name!r}]", f"{len(series)} window(s)", ">= 2 windows")
        trend = window_trend(series[-2], series[-1], false_alarm=false_alarm, batches=batches, name=name)
        trends[name] = trend
        criteria.append(Criterion(f"{name}: trend", trend.lower_bound, rel_tol, trend.lower_bound <= rel_tol))
        criteria.append(Criterion(f"{name}: resolution", trend.resolution, max_resolution,
                                  trend.resolution <= max_resolution))
    return StationarityCertificate(tuple(criteria), trends)


def split_into_windows(series: ArrayLike, window: int) -> list[NDArray[np.float64]]:
    """Consecutive windows of ``window`` observations, the last ending at the end of ``series``.

    The oldest ``len(series) mod window`` observations are dropped.

    >>> [w.tolist() for w in split_into_windows(np.arange(7.0), 3)]
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    """
    s = np.asarray(series, dtype=np.float64)
    _require(s.ndim == 1, "series.shape", s.shape, "a 1-D array")
    _require(isinstance(window, (int, np.integer)) and 2 <= window <= s.size // 2, "window", window,
             f"an integer in [2, len(series) // 2 = {s.size // 2}]")
    count = s.size // window
    return list(s[s.size - count * window:].reshape(count, window))


@dataclass
class StationarityMonitor:
    """Streaming certificate: add each settle window's observations, keep the last two windows only.

    >>> monitor = StationarityMonitor()
    >>> monitor.add_window(loss=np.full(100, 2.0)) is None      # one window: nothing to compare yet
    True
    >>> monitor.add_window(loss=np.full(100, 1.0)).stationary
    False
    """

    rel_tol: float = REL_TOL
    max_resolution: float = MAX_RESOLUTION
    false_alarm: float = FALSE_ALARM
    batches: int = BATCHES
    windows_seen: int = 0
    _recent: dict[str, list[NDArray[np.float64]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _check_tolerances(self.rel_tol, self.max_resolution)
        _check_settings(self.false_alarm, self.batches)

    def add_window(self, **observations: ArrayLike) -> StationarityCertificate | None:
        """Register one window (the same series every time); the certificate once two are in."""
        _require(len(observations) >= 1, "observations", observations, "at least one series")
        if self._recent:
            _require(set(observations) == set(self._recent), "series", sorted(observations),
                     f"the series of the first window, {sorted(self._recent)}")
        for name, values in observations.items():
            self._recent[name] = [*self._recent.get(name, [])[-1:], _window(values, name)]
        self.windows_seen += 1
        if self.windows_seen < 2:
            return None
        return stationarity_certificate(self._recent, rel_tol=self.rel_tol,
                                        max_resolution=self.max_resolution, false_alarm=self.false_alarm,
                                        batches=self.batches)


@dataclass(frozen=True)
class SettleResult:
    """Outcome of :func:`settle_until_stationary`."""

    stationary: bool
    windows: int                                   # settle windows run
    certificate: StationarityCertificate | None    # of the last two windows (None after one window)


def settle_until_stationary(run_window: Callable[[int], Mapping[str, ArrayLike]], *, max_windows: int,
                            min_windows: int = 2, monitor: StationarityMonitor | None = None
                            ) -> SettleResult:
    """Keep settling until the criteria hold or ``max_windows`` windows have run.

    ``run_window(i)`` runs settle window ``i`` (0-based; e.g. ``W`` training steps) and returns that
    window's observations per series (``{"loss": per-step losses, "tr_sigma": snapshots, ...}``).
    Stops after the first window ``>= min_windows`` whose certificate holds.

    >>> drops = iter([np.full(50, v) for v in (4.0, 2.0, 1.5, 1.49, 1.49)])
    >>> result = settle_until_stationary(lambda i: {"loss": next(drops)}, max_windows=5)
    >>> result.stationary, result.windows
    (True, 4)
    """
    _require(isinstance(max_windows, (int, np.integer)) and max_windows >= 2, "max_windows", max_windows,
             "an integer >= 2")
    _require(isinstance(min_windows, (int, np.integer)) and 2 <= min_windows <= max_windows, "min_windows",
             min_windows, f"an integer in [2, max_windows = {max_windows}]")
    monitor = StationarityMonitor() if monitor is None else monitor
    certificate = None
    for i in range(max_windows):
        certificate = monitor.add_window(**run_window(i))
        if i + 1 >= min_windows and certificate is not None and certificate.stationary:
            return SettleResult(True, i + 1, certificate)
    return SettleResult(False, max_windows, certificate)
