"""Matrix sensing with label noise: Hessian trace and test error against steps for a sweep of ``beta``.

Scaled-down version of 003 App. A.2.1 (``d = 20``, ``r = 2``, ``P = 5 r d``, ``eps^2 = 0.1``, ``eta = 0.1``,
``U = V = I_d``, full batch with fresh label noise every step, 003 eq. 12), with ``replicas`` runs per
``beta``: replica ``j`` solves its own random problem ``(A_i, X*)_j`` (shared by all ``beta``) under its own
label noise, so the spread over replicas covers both the draw of the problem and the noise.

The speed along the valley is summarised per ``beta`` by the *time to level*: the first step (linearly
interpolated between records) at which the replica-mean trace of the Hessian (003 eq. 127) comes within a
fraction ``level`` of the *floor*. The start ``U = V = I`` is off the valley and the trace first rises, so a
level relative to the start is meaningless; the floor is the lowest, over ``beta``, of the median of the
replica-mean trace over the last quarter of the run (a median, not the lowest recorded value, which is a
noise dip that slower runs never reach). Runs are extended by ``steps`` until every ``beta`` reaches the level
and the curve that sets the floor has stopped falling, or up to ``max_steps``; a ``beta`` still above the
level is *censored* (time ``inf``, reported as not reached), and one whose trace overflows is censored as
diverged.

``beta*`` is continuous: the vertex of the parabola of ``log t`` against ``log(1 - beta)`` through the grid
argmin and its two neighbours; its interval comes from a bootstrap over replicas (replica indices resampled,
the same for every ``beta`` since replica ``j`` is problem ``j`` throughout; floor, times and vertex
recomputed). The corrected prediction (ERRATA 003.6) is
``1 - beta* = C eta^(2/3)`` with ``C = (4 eps^2 <a^2> / (d P))^(1/3)``; the default grid is geometric in
``1 - beta`` (ratio ``sqrt 2``) and brackets the prediction ``0.0100`` without containing it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from sgd_dynamics._validation import require
from sgd_dynamics.config_schema import setting, validate
from sgd_dynamics.estimation.resampling import check_bootstrap, percentile_interval
from sgd_dynamics.simulate.label_noise import LabelNoiseState, MatrixSensingEnsemble, simulate_label_noise
from sgd_dynamics.theory.momentum_scaling import OPTIMAL_EXPONENT, matrix_sensing_optimal_constant

__all__ = ["MatrixSensingConfig", "MatrixSensingResult", "OptimalMomentum", "estimate_optimal_momentum",
           "run_matrix_sensing"]

# 1 - beta = 0.003 * 2^(k/2), k = 0..8: the prediction 0.0100 sits between 0.0085 and 0.012, 18% from each
DEFAULT_MOMENTA = tuple(round(1 - 0.003 * 2 ** (k / 2), 7) for k in range(9))
# A grid point this close (relative, in 1 - beta) to the prediction makes the grid argmin a test of the grid
PREDICTION_CLEARANCE = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class MatrixSensingConfig:
    """The sweep (defaults: the scaled-down 003 App. A.2.1 setting)."""

    dimension: int = setting(20, "matrix dimension d", minimum=1)
    rank: int = setting(2, "rank of the target X*", minimum=1)
    dataset_size: int = setting(200, "measurements", minimum=1)
    label_noise_variance: float = setting(0.1, "label-noise variance", minimum=0, exclusive_minimum=True)
    lr: float = setting(0.1, "learning rate eta", minimum=0, exclusive_minimum=True)
    momenta: tuple[float, ...] = setting(DEFAULT_MOMENTA, "momenta beta swept (at least 3; geometric in "
                                         "1 - beta, bracketing the prediction)", minimum=0, maximum=1,
                                         exclusive_maximum=True)
    steps: int = setting(5000, "steps of the first run, and of each extension", minimum=1)
    max_steps: int = setting(40_000, "cap on the steps per run; a beta that has not reached the level by "
                             "then is censored", minimum=1)
    record_every: int = setting(10, "steps between recorded points", minimum=1)
    replicas: int = setting(8, "replicas per momentum, each its own random problem and label noise; the "
                            "bootstrap resamples them", minimum=2)
    level: float = setting(0.02, "relative level above the floor that defines the time to level", minimum=0,
                           maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    n_bootstrap: int = setting(400, "bootstrap resamples of the replicas", minimum=10)
    seed: int = setting(0, "random seed", minimum=0)

    def __post_init__(self) -> None:
        validate(self)
        require(len(self.momenta) >= 3, "momenta", self.momenta, "at least three values in [0, 1) (a vertex "
                "needs the grid argmin and two neighbours)")
        require(len(set(self.momenta)) == len(self.momenta), "momenta", self.momenta, "distinct values")
        require(self.max_steps >= self.steps, "max_steps", self.max_steps, f">= steps={self.steps}")

    @classmethod
    def quick(cls, **overrides) -> MatrixSensingConfig:
        """Five ``beta`` of the default grid around the prediction, runs of a few thousand steps."""
        base = dict(momenta=DEFAULT_MOMENTA[2:7], steps=2000, max_steps=8000, replicas=8, n_bootstrap=200)
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class OptimalMomentum:
    """Times to the level per ``beta`` and the continuous ``beta*``, with bootstrap intervals over replicas.

    ``time_to_level[i]`` is ``inf`` for a censored ``beta`` (never within ``level`` of ``floor`` in the
    recorded steps); ``time_to_level_interval`` is its bootstrap interval (upper end ``inf`` when some
    resamples are censored); ``floor_settled`` says whether the curve that sets the floor has stopped
    falling, ``diverged`` which ``beta`` had a replica blow up (censored too, never ``nan``).
    ``best_momentum`` is the parabola vertex when ``interior`` (the grid argmin has two uncensored
    neighbours), else the grid argmin; ``one_minus_best_stderr`` is the bootstrap standard error of
    ``1 - beta*`` (``inf`` without an interior vertex) and ``interior_fraction`` the share of resamples with
    an interior vertex.
    """

    momenta: tuple[float, ...]
    floor: float
    time_to_level: NDArray[np.float64]
    time_to_level_interval: NDArray[np.float64]
    floor_settled: bool
    diverged: NDArray[np.bool_]
    grid_best_momentum: float
    best_momentum: float
    best_momentum_interval: tuple[float, float]
    one_minus_best_stderr: float
    interior: bool
    interior_fraction: float
    confidence: float = CONFIDENCE

    @property
    def reached(self) -> NDArray[np.bool_]:
        """Which ``beta`` reached the level (the others are censored)."""
        return np.isfinite(self.time_to_level)


@dataclass(frozen=True)
class MatrixSensingResult:
    """Curves ``(momenta, records)`` (replica means), the optimum with its intervals, ``C`` (fit, theory).

    ``fitted_constant = (1 - beta*) / eta^(2/3)`` with the interval mapped from ``optimum``'s.
    """

    config: MatrixSensingConfig
    steps: NDArray[np.int64]
    trace_hessian: NDArray[np.float64]
    test_error: NDArray[np.float64]
    optimum: OptimalMomentum
    fitted_constant: float
    fitted_constant_interval: tuple[float, float]
    predicted_constant: float


def robust_floor(mean_traces: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lowest over ``beta`` of the median over the last quarter: ``(..., beta, records) -> (...)``.

    A diverged ``beta`` (non-finite trace) takes no part; ``inf`` when every one diverged.
    """
    n = mean_traces.shape[-1]
    late = np.median(mean_traces[..., n - max(1, n // 4):], axis=-1)
    return np.where(np.isfinite(late), late, math.inf).min(axis=-1)


def floor_settled(mean_traces: NDArray[np.float64], level: float) -> bool:
    """Whether the ``beta`` that sets the floor has stopped falling.

    Its last two quarters' medians must differ by less than a quarter of the level band; while it still
    falls, the floor is only an upper bound.
    """
    n = mean_traces.shape[-1]
    q = max(1, n // 4)
    last = np.median(mean_traces[:, n - q:], axis=1)
    before = np.median(mean_traces[:, n - 2 * q:n - q], axis=1)
    last = np.where(np.isfinite(last), last, math.inf)
    i = int(np.argmin(last))
    return bool(np.isfinite(last[i]) and abs(before[i] - last[i]) < level * last[i] / 4)


def diverged(mean_traces: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which ``beta`` had a replica leave the valley for good (a non-finite trace): ``(beta, records)``."""
    return ~np.isfinite(mean_traces).all(axis=-1)


def time_to_level(curves: NDArray[np.float64], steps: NDArray, level: ArrayLike) -> NDArray[np.float64]:
    """First step at which each curve comes down to ``<= level``, interpolated linearly; ``inf`` where never.

    ``curves``: ``(..., records)`` recorded at ``steps``; ``level`` broadcasts against ``curves[..., 0]``.
    A curve that starts inside the band counts from its first record above it (the trace rises off the
    start before it falls along the valley); a non-finite value counts as above.
    """
    above = ~(curves <= np.asarray(level)[..., None])
    left = np.logical_or.accumulate(above, axis=-1) | ~above.any(axis=-1, keepdims=True)
    below = ~above & left
    k = np.argmax(below, axis=-1)
    hit = np.take_along_axis(below, k[..., None], axis=-1)[..., 0]
    t = np.asarray(steps, dtype=np.float64)
    km = np.maximum(k - 1, 0)
    y0 = np.take_along_axis(curves, km[..., None], axis=-1)[..., 0]
    y1 = np.take_along_axis(curves, k[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(k > 0, (y0 - level) / (y0 - y1), 0.0)
    crossing = t[km] + np.clip(np.nan_to_num(frac), 0.0, 1.0) * (t[k] - t[km])
    return np.where(hit, crossing, math.inf)


def parabola_vertex(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, bool]:
    """Vertex of the parabola through the argmin of ``y`` and its two neighbours (``x`` increasing).

    Returns ``(x*, True)``; ``(x[argmin], False)`` when the argmin is at an end of the grid or a neighbour is
    not finite (a censored time), so no interior minimum is resolved.

    >>> x = np.array([0.0, 1.0, 3.0, 4.0])
    >>> parabola_vertex(x, (x - 1.3) ** 2)   # exact for a parabola, on any spacing
    (1.3, True)
    """
    i = int(np.argmin(y))
    if i == 0 or i == len(y) - 1 or not np.all(np.isfinite(y[i - 1:i + 2])):
        return float(x[i]), False
    (x0, x1, x2), (y0, y1, y2) = x[i - 1:i + 2], y[i - 1:i + 2]
    # Lagrange form: y'' and y' at x1 of the interpolating parabola (any spacing)
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curvature = 2 * (d12 - d01) / (x2 - x0)
    slope = d01 + curvature * (x1 - x0) / 2
    return float(x1 - slope / curvature), True


@dataclass(frozen=True)
class _Optimum:
    """Floor, times and ``log(1 - beta*)`` of one set of replica-mean curves."""

    floor: float
    times: NDArray[np.float64]
    log_one_minus: float
    interior: bool


def _optimum(mean_traces: NDArray[np.float64], steps: NDArray, log_q: NDArray, level: float) -> _Optimum:
    """``mean_traces``: ``(beta, records)`` with ``beta`` ordered by increasing ``log_q = log(1 - beta)``."""
    floor = float(robust_floor(mean_traces))
    times = time_to_level(mean_traces, steps, np.float64((1 + level) * floor))
    times[diverged(mean_traces)] = math.inf
    x, interior = parabola_vertex(log_q, np.log(np.maximum(times, 1.0)))
    return _Optimum(floor, times, x, interior)


def _bootstrap(traces: NDArray[np.float64], steps: NDArray, log_q: NDArray, level: float, n_bootstrap: int,
               seed: int) -> list[_Optimum]:
    """Replicas resampled with replacement; ``traces``: ``(beta, replicas, records)``.

    Replica ``j`` of every ``beta`` runs on problem instance ``j``, so an index is drawn for all ``beta`` at
    once (the pairing is what makes the ``beta`` comparable); the label noise of each run is its own.
    """
    rng = np.random.default_rng([seed, 2])
    r = traces.shape[1]
    counts = rng.multinomial(r, np.full(r, 1 / r), size=n_bootstrap) / r
    out = []
    for block in np.array_split(counts, -(-n_bootstrap // 50)):   # bounded memory: 50 resamples at once
        out += [_optimum(m, steps, log_q, level) for m in np.einsum("br,irt->bit", block, traces)]
    return out


def estimate_optimal_momentum(momenta: tuple[float, ...], steps: NDArray, traces: NDArray[np.float64],
                              level: float, n_bootstrap: int = 400, seed: int = 0) -> OptimalMomentum:
    """Floor, times to ``(1 + level) floor`` and ``beta*`` from traces ``(beta, replicas, records)``.

    Replica ``j`` must be the same problem for every ``beta`` (the bootstrap resamples ``j`` jointly).
    """
    traces = np.asarray(traces, dtype=np.float64)
    require(traces.ndim == 3 and traces.shape[0] == len(momenta) and traces.shape[2] == len(steps),
            "traces.shape", traces.shape, f"(len(momenta)={len(momenta)}, replicas, len(steps)={len(steps)})")
    require(traces.shape[1] >= 2, "replicas", traces.shape[1], ">= 2 (the interval resamples them)")
    require(len(momenta) >= 3, "momenta", momenta, "at least three values")
    require(0 < level < 1, "level", level, "0 < level < 1")
    check_bootstrap(n_bootstrap, CONFIDENCE)
    order = np.argsort(-np.asarray(momenta))          # increasing 1 - beta
    log_q = np.log1p(-np.asarray(momenta, dtype=np.float64))[order]
    point = _optimum(traces.mean(axis=1)[order], steps, log_q, level)
    boot = _bootstrap(traces[order], steps, log_q, level, n_bootstrap, seed)
    one_minus = np.exp([b.log_one_minus for b in boot])
    times, boot_times = np.empty(len(order)), np.empty((len(boot), len(order)))
    times[order] = point.times
    boot_times[:, order] = np.array([b.times for b in boot])
    lo_q, hi_q = percentile_interval(one_minus, CONFIDENCE)
    # Without an interior vertex beta* is a grid point next to an edge or a censored beta (or, with no beta at
    # the floor, the grid's first): located only to the grid, so an infinite error keeps it unjudged.
    stderr = float(np.std(one_minus, ddof=1)) if point.interior else math.inf
    mean_traces = traces.mean(axis=1)
    return OptimalMomentum(
        tuple(float(b) for b in momenta), point.floor, times,
        np.array([_interval(boot_times[:, i]) for i in range(len(order))]),
        floor_settled(mean_traces, level), diverged(mean_traces),
        float(np.asarray(momenta)[order][int(np.argmin(point.times))]), 1 - math.exp(point.log_one_minus),
        (1 - hi_q, 1 - lo_q),
        stderr, point.interior, float(np.mean([b.interior for b in boot])),
    )


def _interval(samples: NDArray[np.float64]) -> tuple[float, float]:
    """Percentile interval by nearest rank: censored (``inf``) resamples give an ``inf`` end, not ``nan``."""
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail], method="nearest")
    return float(lo), float(hi)


def _simulate(cfg: MatrixSensingConfig, model: MatrixSensingEnsemble):
    """Traces and test errors ``(beta, replicas, records)``, extended until all reach the level."""
    nb, r, d = len(cfg.momenta), cfg.replicas, cfg.dimension
    eye = np.broadcast_to(np.eye(d), (nb * r, d, d))
    state = LabelNoiseState.at_rest((eye, eye))
    beta = np.repeat(np.asarray(cfg.momenta, dtype=np.float64), r)
    rng = np.random.default_rng(cfg.seed + 1)
    steps, traces, tests = [], [], []
    while True:
        n = min(cfg.steps, cfg.max_steps - state.step)
        # Small matmuls: a multi-threaded BLAS only oversubscribes the cores (40x slower, loaded 2-core box).
        # An unstable beta overflows: it is reported as diverged, not warned about step by step.
        with threadpool_limits(limits=1), np.errstate(over="ignore", invalid="ignore"):
            tr = simulate_label_noise(model, state, cfg.lr, beta, math.sqrt(cfg.label_noise_variance), n,
                                      cfg.record_every, rng)
        skip = 1 if steps else 0   # a continued run records its starting state again
        steps.append(tr.steps[skip:])
        traces.append(tr.trace_hessian[skip:])
        tests.append(tr.test_error[skip:])
        state = tr.final
        trace = np.concatenate(traces).reshape(-1, nb, r).transpose(1, 2, 0)
        mean = trace.mean(axis=1)
        level = (1 + cfg.level) * robust_floor(mean)
        reached = np.isfinite(time_to_level(mean, np.concatenate(steps), level)) | diverged(mean)
        if (reached.all() and floor_settled(mean, cfg.level)) or state.step >= cfg.max_steps:
            test = np.concatenate(tests).reshape(-1, nb, r).transpose(1, 2, 0)
            return np.concatenate(steps), trace, test


def _warn_if_grid_hits(cfg: MatrixSensingConfig, predicted_one_minus: float) -> None:
    near = [b for b in cfg.momenta if abs((1 - b) / predicted_one_minus - 1) < PREDICTION_CLEARANCE]
    if near:
        warnings.warn(f"momenta contain {near}, within {PREDICTION_CLEARANCE:.0%} of the predicted "
                      f"beta* = {1 - predicted_one_minus:.5f}: a grid argmin there matches by construction; "
                      "choose a grid that brackets the prediction without containing it", UserWarning,
                      stacklevel=3)


def run_matrix_sensing(cfg: MatrixSensingConfig = MatrixSensingConfig()) -> MatrixSensingResult:
    """Run all ``beta`` at once (a replica block per ``beta``), then estimate ``beta*`` with its interval."""
    model = MatrixSensingEnsemble.random(cfg.replicas, cfg.dimension, cfg.rank, cfg.dataset_size, cfg.seed)
    predicted = matrix_sensing_optimal_constant(math.sqrt(cfg.label_noise_variance), cfg.dimension,
                                                cfg.dataset_size, float(np.mean(model.sensing**2)))
    _warn_if_grid_hits(cfg, predicted * cfg.lr**OPTIMAL_EXPONENT)
    steps, traces, tests = _simulate(cfg, model)
    optimum = estimate_optimal_momentum(cfg.momenta, steps, traces, cfg.level, cfg.n_bootstrap, cfg.seed)
    scale = cfg.lr**OPTIMAL_EXPONENT
    lo, hi = optimum.best_momentum_interval
    return MatrixSensingResult(cfg, steps, traces.mean(axis=1), tests.mean(axis=1), optimum,
                               (1 - optimum.best_momentum) / scale, ((1 - hi) / scale, (1 - lo) / scale),
                               predicted)
