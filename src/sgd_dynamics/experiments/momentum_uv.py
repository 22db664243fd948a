"""Vector-UV study: training timescale against ``eta`` and ``gamma`` (003 Sec. 4.1, App. A.1).

For each ``gamma`` and learning rate ``eta`` the momentum is ``beta = 1 - C_sim eta^gamma`` (003 eq. 2) and
label-noise SGD (003 eq. 1) runs from a fixed point of the valley ``u . v = 0`` (ERRATA 003.9), ``pi = 0``,
with many replicas. The timescale ``T_c`` is ``-1 / slope`` of a least-squares line through
``log mean_R (|u|^2 + |v|^2)`` against the step, over the window where the mean lies between ``upper`` and
``lower`` times its initial value, after discarding ``transient_relaxations * 2 / (1 - beta)`` steps (at most
half the time to reach ``lower``).
Why a log-linear fit rather than a first-passage time: in the drift regime the decay is a clean exponential
(no longitudinal diffusion in this model: the noise direction ``(v, u)`` is normal to the valley), and
the slope
is insensitive to the momentum transient and to where exactly the threshold is crossed. The first time below
``lower`` is recorded as well; above ``gamma = 2/3`` the longitudinal motion is underdamped (oscillates
through
the origin), and both measures are reported as measured (ERRATA 003.8), not asserted to scale as
``eta^-gamma``.

Fits: ``T_c = T_0(gamma) eta^-alpha(gamma)`` per ``gamma`` (free ``T_0``, ``alpha``) gives ``alpha(gamma)``,
predicted ``2 (1 - gamma)`` below ``2/3``. The constant ``C`` is the one that makes ``T_0`` independent of
``gamma``: below ``2/3`` the theory is ``T_c = (C_sim^2 / D) eta^-(2 - 2 gamma)`` (003 eq. 9) and the
relaxation
regime has ``T_0 = 1 / C`` (the ``beta^k`` decay of ``|u|^2 + |v|^2``); a common intercept ``T_0`` fitted
over the
drift-regime ``gamma`` values then gives ``C^3 = C_sim^2 / T_0``, to compare with eq. 10, ``C = D^(1/3)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
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
    lower: float = setting(0.1, "end of the fitted decay window (< upper)", minimum=0, maximum=1,
                           exclusive_minimum=True, exclusive_maximum=True)
    transient_relaxations: float = setting(2.0, "relaxation times skipped before the fit", minimum=0)
    max_steps: int = setting(400_000, "step cap per run", minimum=1)
    seed: int = setting(0, "random seed", minimum=0)

    @classmethod
    def quick(cls, **overrides) -> UVStudyConfig:
        """A reduced grid (one and a half decades of ``eta``, 16 replicas) that runs in seconds."""
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


@dataclass(frozen=True)
class TimescalePoint:
    """One ``(gamma, eta)`` run: the fitted ``T_c``, the first time below ``lower``, and the fit window."""

    gamma: float
    lr: float
    momentum: float
    timescale: float
    first_passage: float
    window: tuple[int, int]


@dataclass(frozen=True)
class UVStudyResult:
    """Timescales per point, ``alpha(gamma)`` and ``T_0(gamma)`` per ``gamma``, and the fitted ``C``."""

    config: UVStudyConfig
    simulated_constant: float
    theoretical_constant: float
    points: tuple[TimescalePoint, ...]
    alpha: dict[str, float]
    prefactor: dict[str, float]
    alpha_first_passage: dict[str, float]
    constant: float
    drift_gammas: tuple[float, ...] = field(default_factory=tuple)


def gamma_key(gamma: float) -> str:
    """The JSON key of a ``gamma`` value, as written (``0.3 -> "0.3"``)."""
    return f"{gamma:g}"


def uv_dataset(dataset_size: int, seed: int) -> NDArray[np.float64]:
    """``x_a ~ N(0, 1)`` drawn once, rescaled so that ``mu_2 = (1/P) sum x_a^2 = 1`` exactly."""
    x = np.random.default_rng(seed).standard_normal(dataset_size)
    return x / math.sqrt(np.mean(x**2))


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
    # Record spacing from the slower of the two predicted scales; it sets resolution only, not the result.
    guess = max(
        1 / (1 - beta),
        cfg.width * cfg.dataset_size * (1 - beta) ** 2 / (cfg.label_noise**2 * model.input_variance * eta**2),
    )
    every = max(1, int(guess / 100))
    chunk = every * 200
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
        if min(norms) <= cfg.lower * n0 or state.step >= cfg.max_steps:
            break
    s, m = np.asarray(steps, dtype=np.float64), np.asarray(norms)
    below = np.flatnonzero(m <= cfg.lower * n0)
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
    slope, intercept = np.polyfit(np.log(lrs[ok]), np.log(times[ok]), 1)
    return float(-slope), float(math.exp(intercept))


def run_uv_study(cfg: UVStudyConfig = UVStudyConfig()) -> UVStudyResult:
    """Run the sweep and fit ``alpha(gamma)`` and ``C``."""
    x = uv_dataset(cfg.dataset_size, cfg.seed)
    model = TwoLayerUV.vector(x, cfg.width, cfg.activation)
    c_theory = uv_optimal_constant(cfg.width, cfg.dataset_size, cfg.label_noise, model.input_variance)
    c_sim = c_theory if cfg.constant is None else cfg.constant
    start = uv_valley_start(model, cfg.replicas, cfg.seed)
    points = []
    with threadpool_limits(limits=1):  # tiny matmuls: BLAS threads only add contention
        for i, gamma in enumerate(cfg.gammas):
            for j, eta in enumerate(cfg.lrs):
                points.append(_measure_point(model, start, gamma, eta, c_sim, cfg, cfg.seed + 1000 * i + j))
    alpha, pref, alpha_fp = {}, {}, {}
    for gamma in cfg.gammas:
        pts = [p for p in points if p.gamma == gamma]
        lrs = np.array([p.lr for p in pts])
        alpha[gamma_key(gamma)], pref[gamma_key(gamma)] = _power_law(
            lrs, np.array([p.timescale for p in pts])
        )
        alpha_fp[gamma_key(gamma)] = _power_law(lrs, np.array([p.first_passage for p in pts]))[0]
    drift = tuple(g for g in cfg.gammas if g < OPTIMAL_EXPONENT - 0.05)
    constant = _common_intercept_constant(points, drift, c_sim) if drift else math.nan
    return UVStudyResult(cfg, c_sim, c_theory, tuple(points), alpha, pref, alpha_fp, constant, drift)


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
