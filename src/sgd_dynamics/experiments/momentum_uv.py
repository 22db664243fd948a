"""Vector-UV study: training timescale against ``eta`` and ``gamma`` (003 Sec. 4.1, App. A.1).

For each ``gamma`` and learning rate ``eta`` the momentum is ``beta = 1 - C_sim eta^gamma`` (003 eq. 2) and
label-noise SGD (003 eq. 1) runs from a fixed point of the valley ``u . v = 0`` (ERRATA 003.9), ``pi = 0``,
with many replicas. The timescale ``T_c`` is ``-1 / slope`` of a least-squares line through
``log mean_R (|u|^2 + |v|^2)`` against the step, over the window where the mean lies between ``upper`` and
``lower`` times its initial value, after discarding ``transient_relaxations * 2 / (1 - beta)`` steps (at most
half the time to reach ``lower``).
Why a log-linear fit rather than a first-passage time: in the drift regime the decay is a clean exponential
(no longitudinal diffusion in this model: the noise direction ``(v, u)`` is normal to the valley), and the
slope is insensitive to the momentum transient and to where exactly the threshold is crossed. The first time
below ``lower`` is recorded as well.
Where the longitudinal motion is underdamped (above ``gamma = 2/3``, and near it at large ``eta``) the mean
falls, overshoots and bounces, at 0.15-0.2 of its start for a linear first layer and up to 0.36 for ReLU.
A window into the bounce (the former ``lower = 0.1``) made ``T_c`` a matter of replica noise (issue 16:
``alpha(0.8)`` of 0.87 and 1.97 in two runs), so such points end the window at ``lower_underdamped``. A point
counts as underdamped when the eq. 9 drift time of ``|u|^2 + |v|^2``, ``tau_2 / 2``, is below twice the
momentum time ``1 / (1 - beta)`` (critical damping of ``x'' + (1 - beta) x' + (1 - beta) x / tau_2 = 0``).
The first fall is then the underdamped drift's quarter period, not the ``beta^k`` envelope, so ``alpha``
there is reported as measured (ERRATA 003.8), not asserted to be ``gamma``.

Spread: the whole sweep is repeated ``seeds`` times, each repetition with its own dataset, valley start and
noise (seeds from :func:`repetition_seed`); every fitted number (``alpha``, ``T_0``, ``C``, each point's
``T_c``) is the mean over the repetitions with its standard error and 95% Student-t interval
(:class:`SeedEstimate`).

Fits: ``T_c = T_0(gamma) eta^-alpha(gamma)`` per ``gamma`` (free ``T_0``, ``alpha``) gives ``alpha(gamma)``,
predicted ``2 (1 - gamma)`` below ``2/3``. The constant ``C`` is the one that makes ``T_0`` independent of
``gamma``: below ``2/3`` the theory is ``T_c = (C_sim^2 / D) eta^-(2 - 2 gamma)`` (003 eq. 9) and the
relaxation regime has ``T_0 = 1 / C`` (the ``beta^k`` decay of ``|u|^2 + |v|^2``); a common intercept ``T_0``
fitted over the drift-regime ``gamma`` values then gives ``C^3 = C_sim^2 / T_0``, to compare with eq. 10,
``C = D^(1/3)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from threadpoolctl import threadpool_limits

from sgd_dynamics._validation import require
from sgd_dynamics.config_schema import setting, validate
from sgd_dynamics.simulate.label_noise import (
    Activation,
    LabelNoiseState,
    TwoLayerUV,
    descend_to_valley,
    project_to_uv_valley,
    simulate_label_noise,
)
from sgd_dynamics.theory.momentum_scaling import OPTIMAL_EXPONENT, uv_optimal_constant


@dataclass(frozen=True)
class UVStudyConfig:
    """The sweep. ``constant=None`` uses eq. 10 for ``C_sim``. Inputs are rescaled to ``mu_2 = 1`` exactly."""

    gammas: tuple[float, ...] = setting((0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                                        "exponents gamma of 1 - beta = C eta^gamma", minimum=0, maximum=1,
                                        exclusive_minimum=True, exclusive_maximum=True)
    lrs: tuple[float, ...] = setting(tuple(float(x) for x in np.logspace(-3, -1, 5)),
                                     "learning rates eta (at least two)", minimum=0, maximum=1,
                                     exclusive_minimum=True, exclusive_maximum=True)
    width: int = setting(10, "hidden width n", minimum=1)
    dataset_size: int = setting(5, "training examples P", minimum=1)
    label_noise: float = setting(0.5, "label-noise standard deviation eps", minimum=0, exclusive_minimum=True)
    activation: Activation = setting("linear", "first-layer activation")
    constant: float | None = setting(None, "C_sim (none: eq. 10)", minimum=0, exclusive_minimum=True)
    replicas: int = setting(32, "independent replicas per (gamma, eta)", minimum=1)
    upper: float = setting(0.8, "start of the fitted decay window (fraction of the start)", minimum=0,
                           maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    # 0.3 rather than 0.1: half the steps; eq. 9's ratio at gamma = 0.3 moves by 1-3 % (0.96-0.99 measured)
    lower: float = setting(0.3, "end of the fitted decay window (< upper)", minimum=0, maximum=1,
                           exclusive_minimum=True, exclusive_maximum=True)
    # above the measured bounce levels (0.15-0.36): the window holds the first fall only
    lower_underdamped: float = setting(0.45, "end of the window where the drift is underdamped (< upper)",
                                       minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    transient_relaxations: float = setting(2.0, "relaxation times skipped before the fit", minimum=0)
    max_steps: int = setting(400_000, "step cap per run", minimum=1)
    seeds: int = setting(3, "independent repetitions (own dataset, start and noise each); intervals come "
                         "from their spread", minimum=2)
    seed: int = setting(0, "random seed (the repetitions' seeds are derived from it)", minimum=0)

    @classmethod
    def quick(cls, **overrides) -> UVStudyConfig:
        """A reduced grid (1.5 decades of ``eta``, 16 replicas, 3 repetitions) that runs in seconds."""
        base = dict(
            gammas=(0.3, 0.4, 0.5, 0.8), lrs=tuple(float(x) for x in np.logspace(-2.5, -1, 4)), replicas=16
        )
        base.update(overrides)
        return cls(**base)

    def __post_init__(self) -> None:
        validate(self)
        require(len(self.gammas) >= 1, "gammas", self.gammas, "at least one value in (0, 1)")
        require(len(self.lrs) >= 2, "lrs", self.lrs, "at least two learning rates in (0, 1)")
        require(self.lower < self.upper, "lower", self.lower, f"0 < lower < upper={self.upper!r} < 1")
        require(self.lower_underdamped < self.upper, "lower_underdamped", self.lower_underdamped,
                f"0 < lower_underdamped < upper={self.upper!r} < 1")


@dataclass(frozen=True)
class TimescalePoint:
    """One ``(gamma, eta)`` run of one repetition: fitted ``T_c``, first time below the window end, window."""

    gamma: float
    lr: float
    momentum: float
    timescale: float
    first_passage: float
    window: tuple[int, int]
    repetition: int = 0


@dataclass(frozen=True)
class SeedEstimate:
    """A fitted number over independent repetitions: mean, standard error and 95% Student-t interval."""

    mean: float
    stderr: float
    interval: tuple[float, float]
    values: tuple[float, ...]


def seed_estimate(values) -> SeedEstimate:
    """Mean of the per-repetition values with the t interval of ``len(values) - 1`` degrees of freedom.

    A non-finite repetition (no fit) makes every entry ``nan``: the spread of the others would understate it.
    """
    x = np.asarray(values, dtype=np.float64)
    require(x.size >= 2, "values", x.size, "at least two repetitions for an interval")
    if not np.all(np.isfinite(x)):
        return SeedEstimate(math.nan, math.nan, (math.nan, math.nan), tuple(x.tolist()))
    mean, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(stats.t.ppf(0.975, x.size - 1)) * se
    return SeedEstimate(mean, se, (mean - half, mean + half), tuple(x.tolist()))


@dataclass(frozen=True)
class UVStudyResult:
    """Timescales per point and repetition; ``alpha``, ``T_0`` and ``C`` as means over the repetitions.

    ``alpha_spread`` etc. hold each mean's standard error, 95% interval and per-repetition values (``C_sim``
    is the eq. 10 value of repetition 0's dataset; ``mu_2 = 1`` for every repetition).
    """

    config: UVStudyConfig
    simulated_constant: float
    theoretical_constant: float
    points: tuple[TimescalePoint, ...]
    alpha: dict[str, float]
    prefactor: dict[str, float]
    alpha_first_passage: dict[str, float]
    constant: float
    drift_gammas: tuple[float, ...] = field(default_factory=tuple)
    alpha_spread: dict[str, SeedEstimate] = field(default_factory=dict)
    alpha_first_passage_spread: dict[str, SeedEstimate] = field(default_factory=dict)
    constant_spread: SeedEstimate | None = None

    @property
    def alpha_interval(self) -> dict[str, list[float]]:
        """``{gamma_key: [low, high]}``, the 95% interval of ``alpha`` (``--json``'s ``alpha_interval``)."""
        return {k: list(e.interval) for k, e in self.alpha_spread.items()}

    def timescale_spread(self, gamma: float, lr: float) -> SeedEstimate:
        """``T_c`` at one ``(gamma, eta)`` over the repetitions."""
        return seed_estimate([p.timescale for p in self.points if p.gamma == gamma and p.lr == lr])


def gamma_key(gamma: float) -> str:
    """The JSON key of a ``gamma`` value, as written (``0.3 -> "0.3"``)."""
    return f"{gamma:g}"


def uv_dataset(dataset_size: int, seed: int) -> NDArray[np.float64]:
    """``x_a ~ N(0, 1)`` with both signs, each sign's half rescaled to ``(1/P) sum x_a^2 = 1/2``.

    So ``mu_2 = 1`` exactly, as eq. 10 assumes, and so are the one-sided moments that a ReLU unit sees (a unit
    with ``v_i > 0`` is driven by the ``x_a > 0`` only). Without the second rescaling the sign balance of
    five draws set the ReLU timescale: a draw whose negative inputs were -0.04 and -0.08 decayed 60x slower
    at ``gamma = 0.3`` and ran into ``max_steps``. ``P = 1``: only ``mu_2 = 1``.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(dataset_size)
    if dataset_size == 1:
        return x / math.sqrt(np.mean(x**2))
    while not ((x > 0).any() and (x < 0).any()):  # one sign (probability 2^(1-P)): draw again
        x = rng.standard_normal(dataset_size)
    for side in (x > 0, x < 0):
        x[side] *= math.sqrt(dataset_size / 2 / np.sum(x[side] ** 2))
    return x


def uv_valley_start(
    model: TwoLayerUV, replicas: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One fixed Gaussian ``(u, v)`` on the valley, copied to every replica (003 A.1, ERRATA 003.9).

    Linear model: exact projection to ``u . v = 0``. Nonlinear: noiseless gradient descent from the
    projection.
    """
    rng = np.random.default_rng(seed + 1)
    n = model.width
    u = np.broadcast_to(rng.standard_normal((1, 1, n)), (replicas, 1, n))
    v = np.broadcast_to(rng.standard_normal((1, n, 1)), (replicas, n, 1))
    u, v = project_to_uv_valley(u, v)
    if model.activation != "linear":
        u, v = descend_to_valley(model, (u[:1], v[:1]), lr=0.1, steps=20_000)
        u, v = np.repeat(u, replicas, axis=0), np.repeat(v, replicas, axis=0)
    return u, v


def _measure_point(
    model: TwoLayerUV, start, gamma: float, eta: float, c_sim: float, cfg: UVStudyConfig, seed: int
) -> TimescalePoint:
    beta = 1 - c_sim * eta**gamma
    state = LabelNoiseState.at_rest(start)
    skip = cfg.transient_relaxations * 2 / (1 - beta)
    momentum_time = 1 / (1 - beta)
    noise = cfg.label_noise**2 * model.input_variance * eta**2
    drift_time = cfg.width * cfg.dataset_size * (1 - beta) ** 2 / noise   # tau_2 / 2 of eq. 9
    lower = cfg.lower_underdamped if drift_time < 2 * momentum_time else cfg.lower
    # Record spacing from the slower of the two predicted scales; it sets resolution only, not the result.
    guess = max(momentum_time, drift_time)
    every = max(1, int(guess / 50))  # records cost a Hessian trace each; 50 per timescale resolve the window
    chunk = every * 10  # a fifth of a timescale: the run stops at most that far past the window end
    rng = np.random.default_rng(seed)
    steps, norms = [], []
    n0 = None
    while True:
        tr = simulate_label_noise(model, state, eta, beta, cfg.label_noise, chunk, every, rng)
        first = 0 if not steps else 1  # the chunk's first record repeats the previous chunk's last one
        steps.extend(tr.steps[first:].tolist())
        norms.extend(tr.squared_norm.mean(axis=1)[first:].tolist())
        state = tr.final
        n0 = norms[0] if n0 is None else n0
        if min(norms) <= lower * n0 or state.step >= cfg.max_steps:
            break
    s, m = np.asarray(steps, dtype=np.float64), np.asarray(norms)
    below = np.flatnonzero(m <= lower * n0)
    stop = int(below[0]) if below.size else len(m) - 1
    # The transient discard never eats more than half the run (above 2/3 the relaxation *is* the timescale).
    start_i = int(np.argmax((m <= cfg.upper * n0) & (s >= min(skip, 0.5 * s[stop]))))
    if stop - start_i < 3:  # too few records inside the window: widen it to everything before the stop
        start_i = max(0, stop - 3)
    slope = np.polyfit(s[start_i : stop + 1], np.log(m[start_i : stop + 1]), 1)[0]
    timescale = -1 / slope if slope < 0 else math.inf
    first_passage = float(s[stop]) if below.size else math.inf
    return TimescalePoint(gamma, eta, beta, float(timescale), first_passage, (int(s[start_i]), int(s[stop])))


def _power_law(lrs: NDArray[np.float64], times: NDArray[np.float64]) -> tuple[float, float]:
    ok = np.isfinite(times)
    if np.count_nonzero(ok) < 2:  # no line through fewer than two points: nan, and the estimate says so
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log(lrs[ok]), np.log(times[ok]), 1)
    return float(-slope), float(math.exp(intercept))


def repetition_seed(seed: int, repetition: int) -> int:
    """The seed of one repetition: independent streams for different ``(seed, repetition)`` pairs.

    ``seed + repetition`` would let ``--seed 0`` and ``--seed 1`` share all but one repetition, and two such
    runs would agree for that reason alone.
    """
    return int(np.random.SeedSequence((seed, repetition)).generate_state(1)[0])


def _fits(points: list[TimescalePoint], gamma: float) -> tuple[float, float, float]:
    pts = [p for p in points if p.gamma == gamma]
    lrs = np.array([p.lr for p in pts])
    alpha, t0 = _power_law(lrs, np.array([p.timescale for p in pts]))
    return alpha, t0, _power_law(lrs, np.array([p.first_passage for p in pts]))[0]


def _run_repetition(cfg: UVStudyConfig, repetition: int, c_sim: float) -> list[TimescalePoint]:
    """Every ``(gamma, eta)`` point on repetition ``repetition``'s own dataset, start and noise."""
    seed = repetition_seed(cfg.seed, repetition)
    model = TwoLayerUV.vector(uv_dataset(cfg.dataset_size, seed), cfg.width, cfg.activation)
    start = uv_valley_start(model, cfg.replicas, seed)
    points = []
    for i, gamma in enumerate(cfg.gammas):
        for j, eta in enumerate(cfg.lrs):
            p = _measure_point(model, start, gamma, eta, c_sim, cfg, seed + 1000 * i + j)
            points.append(dataclasses.replace(p, repetition=repetition))
    return points


def run_uv_study(cfg: UVStudyConfig = UVStudyConfig()) -> UVStudyResult:
    """Run the sweep ``cfg.seeds`` times and fit ``alpha(gamma)``, ``T_0`` and ``C`` per repetition."""
    c_theory = uv_optimal_constant(cfg.width, cfg.dataset_size, cfg.label_noise, 1.0)  # mu_2 = 1 exactly
    c_sim = c_theory if cfg.constant is None else cfg.constant
    points: list[TimescalePoint] = []
    with threadpool_limits(limits=1):  # tiny matmuls: BLAS threads only add contention
        for k in range(cfg.seeds):
            points += _run_repetition(cfg, k, c_sim)
    drift = tuple(g for g in cfg.gammas if g < OPTIMAL_EXPONENT - 0.05)
    reps = [[p for p in points if p.repetition == k] for k in range(cfg.seeds)]
    alpha, alpha_fp, log_t0 = {}, {}, {}
    for gamma in cfg.gammas:
        fits = np.array([_fits(rep, gamma) for rep in reps])
        key = gamma_key(gamma)
        alpha[key], alpha_fp[key] = seed_estimate(fits[:, 0]), seed_estimate(fits[:, 2])
        log_t0[key] = seed_estimate(np.log(fits[:, 1]))
    constant = (seed_estimate([_common_intercept_constant(rep, drift, c_sim) for rep in reps])
                if drift else None)
    return UVStudyResult(
        cfg, c_sim, c_theory, tuple(points), {k: e.mean for k, e in alpha.items()},
        {k: math.exp(e.mean) for k, e in log_t0.items()}, {k: e.mean for k, e in alpha_fp.items()},
        constant.mean if constant else math.nan, drift, alpha, alpha_fp, constant,
    )


def _common_intercept_constant(
    points: list[TimescalePoint], gammas: tuple[float, ...], c_sim: float
) -> float:
    """Fit ``log T_c = log T_0 - alpha_gamma log eta`` with one ``T_0``; ``C = (C_sim^2 / T_0)^(1/3)``."""
    rows, rhs = [], []
    for p in points:
        if p.gamma in gammas and math.isfinite(p.timescale):
            row = np.zeros(1 + len(gammas))
            row[0] = 1.0
            row[1 + gammas.index(p.gamma)] = -math.log(p.lr)
            rows.append(row)
            rhs.append(math.log(p.timescale))
    if len(rows) < 1 + len(gammas):
        return math.nan
    coef = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return float((c_sim**2 / math.exp(coef[0])) ** (1 / 3))


def run_activation_sweep(
    cfg: UVStudyConfig = UVStudyConfig(), activations: tuple[Activation, ...] = ("linear", "tanh", "relu")
) -> dict[str, UVStudyResult]:
    """The same study with a linear, tanh and ReLU first layer (003 Fig. 1b-d and App. A.1).

    For a nonlinear first layer the start is the noiseless-descent point nearest the linear projection (see
    :func:`uv_valley_start`); ``C_sim`` stays the linear eq. 10 value, so ``alpha`` is compared across
    activations at the same momenta.
    """
    return {a: run_uv_study(dataclasses.replace(cfg, activation=a)) for a in activations}
