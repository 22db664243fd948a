"""Escape and basin selection study: the numbers behind the escape report page (chapter 004, issue 7).

Four parts, each computed from the theory layer and checked against simulation:

1. **Arrhenius** — on ``U = (x^2 - 1)^2`` from the well ``x = -1`` to the barrier top ``x = 0``: Monte Carlo
   mean exit times (:func:`sgd_dynamics.simulate.langevin.first_passage_times`, Brownian-bridge corrected) at
   several temperatures against the exact MFPT by quadrature (ERRATA 004.4); the exact well-to-well time
   (``-1 -> +1``) against Kramers ``2 pi / sqrt(U''(a) |U''(b)|) e^{dU/T}``; and the slope of ``log tau``
   against ``1/T`` (:func:`sgd_dynamics.theory.escape.fit_arrhenius`) against the barrier ``dU = 1``. The
   Monte Carlo slope's standard error is propagated from the per-temperature standard errors through the
   least-squares weights.
2. **Exit-time law** — the same exit times against the exponential law of their mean (KS test,
   :func:`sgd_dynamics.experiments.basin_selection.exit_time_statistics`).
3. **Basin occupation** — on the verified sharp/wide landscape of :mod:`.basin_selection`: the wide basin's
   Gibbs probability by Laplace and by quadrature, and the simulated fraction with isotropic noise and with
   SGD-shaped noise ``B B^T = 2 T H_i / h_x`` (ERRATA 004.3), with the SGD-noise prediction of
   :func:`sgd_dynamics.experiments.basin_selection.sgd_noise_occupation` (transverse coordinate eliminated).
   Each simulation runs a fixed number of two-state relaxation times ``1 / (1/tau_wide + 1/tau_sharp)`` from
   the Eyring–Kramers times, so it has mixed.
4. **Annealing** — :func:`sgd_dynamics.experiments.annealing.run_annealing`.

Apart from the study, :func:`run_escape_times` answers one escape problem (the ``escape`` command): exact
MFPT, the multi-barrier Kramers asymptotic (:func:`sgd_dynamics.theory.escape.kramers_path_time`) and a
Monte Carlo mean at a step whose modelled bias is bounded for any target
(:func:`sgd_dynamics.simulate.first_passage.choose_time_step`).

``quick=True`` gives the reduced configuration of the tests (seconds, not minutes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.experiments.annealing import AnnealingResult, run_annealing
from sgd_dynamics.experiments.basin_selection import (
    ExitTimeStatistics,
    Landscape,
    Occupation,
    exit_time_statistics,
    laplace_occupation,
    quadrature_occupation,
    sgd_noise_occupation,
    sharp_wide_landscape,
    simulated_occupation,
)
from sgd_dynamics.simulate.first_passage import (
    DEFAULT_MAX_STEPS,
    TimeStep,
    choose_time_step,
    first_passage_times_1d,
)
from sgd_dynamics.simulate.langevin import first_passage_times
from sgd_dynamics.theory.escape import (
    ArrheniusFit,
    KramersNotApplicable,
    KramersPath,
    QuadratureNotConverged,
    eyring_kramers_time,
    fit_arrhenius,
    kramers_path_time,
    kramers_time,
    log_mean_first_passage_time,
    mean_first_passage_time,
    path_barrier,
)
from sgd_dynamics.theory.potential import Potential, parse_potential

Array = NDArray[np.float64]

DOUBLE_WELL = "(x**2 - 1)**2"
WELL, BARRIER, OTHER_WELL = -1.0, 0.0, 1.0


@dataclass(frozen=True)
class EscapeStudyConfig:
    """Temperatures, replica counts and steps of every part (``quick()``: the reduced version)."""

    arrhenius_temperatures: tuple[float, ...] = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
    exit_replicas: int = 4000
    exit_dt: float = 0.001
    occupation_temperatures: tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7)
    occupation_replicas: int = 4000
    occupation_dt: float = 0.005
    relaxation_times: float = 8.0  # simulated time in units of the two-state relaxation time
    annealing_replicas: int = 4000
    annealing_steps: int = 40_000
    annealing_dt: float = 0.0025

    @classmethod
    def quick(cls) -> EscapeStudyConfig:
        """The reduced configuration: about 20 s on one core."""
        return cls(arrhenius_temperatures=(0.25, 0.3, 0.4, 0.5, 0.6), exit_replicas=1000, exit_dt=0.0025,
                   occupation_temperatures=(0.2, 0.3, 0.5), occupation_replicas=1000, occupation_dt=0.01,
                   annealing_replicas=2000, annealing_steps=20_000, annealing_dt=0.005)

    def __post_init__(self) -> None:
        for name in ("arrhenius_temperatures", "occupation_temperatures"):
            temps = getattr(self, name)
            if len(temps) < (3 if name == "arrhenius_temperatures" else 1) or not all(
                    isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in temps):
                raise ValueError(f"{name}={temps!r} is invalid: expected finite temperatures > 0 "
                                 f"(at least 3 for the Arrhenius fit)")
        for name in ("exit_replicas", "occupation_replicas", "annealing_replicas", "annealing_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 10):
                raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 10")
        for name in ("exit_dt", "occupation_dt", "annealing_dt", "relaxation_times"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} is invalid: expected a finite number > 0")


@dataclass(frozen=True)
class ArrheniusData:
    """Exit times from ``x = -1`` to the barrier top ``x = 0`` of ``(x^2 - 1)^2`` per temperature."""

    temperatures: Array
    barrier: float  # U(0) - U(-1)
    mc_mean: Array
    mc_stderr: Array
    exact: Array  # exact MFPT -1 -> 0 by quadrature
    exact_well_to_well: Array  # exact MFPT -1 -> +1
    kramers: Array  # Kramers well-to-well time
    fit_mc: ArrheniusFit
    fit_exact: ArrheniusFit
    mc_slope_stderr: float  # propagated from mc_stderr (the fit's own stderr measures curvature instead)
    exit_times: tuple[Array, ...]
    exit_statistics: tuple[ExitTimeStatistics, ...]


@dataclass(frozen=True)
class OccupationData:
    """The wide basin's probability per temperature: Laplace, quadrature, isotropic and SGD-noise runs."""

    landscape: Landscape
    temperatures: Array
    laplace: Array
    quadrature: Array
    isotropic: tuple[Occupation, ...]
    sgd: tuple[Occupation, ...]
    sgd_prediction: Array  # exp(-F/T) with the transverse coordinate eliminated (sgd_noise_occupation)
    relaxation_time: Array  # 1 / (1/tau_wide + 1/tau_sharp), Eyring–Kramers
    simulated_time: Array


@dataclass(frozen=True)
class EscapeStudy:
    """Everything the escape report shows."""

    config: EscapeStudyConfig
    seed: int
    arrhenius: ArrheniusData
    occupation: OccupationData
    annealing: AnnealingResult
    seconds: dict[str, float]


def _child_seed(seed: int, *keys: int) -> int:
    """An independent integer seed for one part of the study (numpy SeedSequence spawning by key)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def arrhenius_slope_stderr(temperatures: Array, mean: Array, stderr: Array) -> float:
    """Standard error of the least-squares slope of ``log tau`` on ``1/T`` from independent point errors."""
    X = np.column_stack([np.ones_like(temperatures), 1.0 / temperatures])
    weights = np.linalg.pinv(X)[1]  # slope = weights @ log(tau)
    return float(np.sqrt(np.sum((weights * stderr / mean) ** 2)))


def run_arrhenius(config: EscapeStudyConfig, seed: int) -> ArrheniusData:
    """Parts 1 and 2: Monte Carlo, exact and Kramers exit times, Arrhenius fits, exit-time statistics."""
    U = parse_potential(DOUBLE_WELL)
    temps = np.asarray(config.arrhenius_temperatures, dtype=np.float64)
    means, ses, exact, w2w, kramers, times, st = [], [], [], [], [], [], []
    for i, T in enumerate(temps):
        tau = mean_first_passage_time(U, T, WELL, BARRIER)
        # 60 mean times: an exponential tail beyond that has probability e^-60 per replica.
        max_steps = int(math.ceil(60 * tau / config.exit_dt))
        fp = first_passage_times(U.gradient, np.full(config.exit_replicas, WELL), float(T), config.exit_dt,
                                 max_steps, _child_seed(seed, 1, i), target=BARRIER)
        m, se = fp.mean_and_stderr()
        means.append(m)
        ses.append(se)
        exact.append(tau)
        w2w.append(mean_first_passage_time(U, T, WELL, OTHER_WELL))
        kramers.append(kramers_time(U, T, well=WELL, barrier=BARRIER))
        times.append(fp.times)
        st.append(exit_time_statistics(fp.times))
    mc_mean, mc_se = np.array(means), np.array(ses)
    return ArrheniusData(temps, float(U.energy(BARRIER) - U.energy(WELL)), mc_mean, mc_se, np.array(exact),
                         np.array(w2w), np.array(kramers), fit_arrhenius(temps, mc_mean),
                         fit_arrhenius(temps, np.array(exact)),
                         arrhenius_slope_stderr(temps, mc_mean, mc_se), tuple(times), tuple(st))


def run_occupation(config: EscapeStudyConfig, seed: int) -> OccupationData:
    """Part 3: wide-basin probability by Laplace, quadrature and simulation (isotropic, SGD-shaped noise)."""
    land = sharp_wide_landscape()
    temps = np.asarray(config.occupation_temperatures, dtype=np.float64)
    relax, sim_time, iso, sgd = [], [], [], []
    for i, T in enumerate(temps):
        rate = (1 / eyring_kramers_time(land.wide, land.saddle, T)
                + 1 / eyring_kramers_time(land.sharp, land.saddle, T))
        relax.append(1 / rate)
        # At least 20 time units, so the within-basin relaxation (rate ~ k_wide = 0.5) is complete too.
        t_sim = max(config.relaxation_times / rate, 20.0)
        sim_time.append(t_sim)
        for noise, out, key in (("isotropic", iso, 2), ("sgd", sgd, 3)):
            out.append(simulated_occupation(land, float(T), noise, config.occupation_replicas, t_sim,
                                            config.occupation_dt, _child_seed(seed, key, i)))
    return OccupationData(land, temps, np.array([laplace_occupation(land, T) for T in temps]),
                          np.array([quadrature_occupation(land, T) for T in temps]), tuple(iso), tuple(sgd),
                          np.array([sgd_noise_occupation(land, T) for T in temps]), np.array(relax),
                          np.array(sim_time))


def run_escape_study(*, quick: bool = False, seed: int = 0, config: EscapeStudyConfig | None = None
                     ) -> EscapeStudy:
    """Run all four parts (``config`` overrides ``quick``)."""
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed={seed!r} is invalid: expected an integer >= 0")
    cfg = config if config is not None else (EscapeStudyConfig.quick() if quick else EscapeStudyConfig())
    seconds = {}
    t = time.perf_counter()
    arrhenius = run_arrhenius(cfg, int(seed))
    seconds["arrhenius and exit times"] = time.perf_counter() - t
    t = time.perf_counter()
    occupation = run_occupation(cfg, int(seed))
    seconds["basin occupation"] = time.perf_counter() - t
    t = time.perf_counter()
    annealing = run_annealing(seed=_child_seed(int(seed), 4), temperature=0.5, n_steps=cfg.annealing_steps,
                              dt=cfg.annealing_dt, replicas=cfg.annealing_replicas)
    seconds["annealing"] = time.perf_counter() - t
    return EscapeStudy(cfg, int(seed), arrhenius, occupation, annealing, seconds)


# --- one escape problem (the ``escape`` command) -----------------------------------------------------
MAX_REPLICAS = 10_000_000  # 80 MB of exit times
# A replica still inside after this many mean first-passage times is reported as not exited.
_PATIENCE = 50
# e^700 steps are beyond any machine; below this the MFPT is also a finite float.
_LOG_MFPT_LIMIT = 700.0


@dataclass(frozen=True)
class EscapeTimes:
    """Exact MFPT, its Kramers asymptotic and the Monte Carlo mean for one potential, start and target."""

    exact_mfpt: float
    kramers: KramersPath | None
    kramers_note: str  # why ``kramers`` is None, else empty
    monte_carlo_mean: float
    monte_carlo_stderr: float
    replicas: int
    step: TimeStep

    def as_json(self) -> dict:
        """The ``escape --json`` object (keys ``exact_mfpt``, ``kramers``, ``monte_carlo``)."""
        return {"exact_mfpt": self.exact_mfpt, "kramers": None if self.kramers is None else self.kramers.time,
                "monte_carlo": {"mean": self.monte_carlo_mean, "stderr": self.monte_carlo_stderr,
                                "replicas": self.replicas}}


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_escape_input(temperature: float, start: float, target: float, replicas: int, seed: int,
                        max_steps: int) -> None:
    require(isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0,
            "temperature", temperature, "a finite temperature > 0")
    for name, value in (("start", start), ("target", target)):
        require(isinstance(value, (int, float)) and math.isfinite(value), name, value, "a finite number")
    require(start != target, "start", start, f"a point other than the target ({target!r})")
    require(_is_integer(replicas) and 2 <= replicas <= MAX_REPLICAS, "replicas", replicas,
            f"an integer in [2, {MAX_REPLICAS}]")
    require(_is_integer(seed) and seed >= 0, "seed", seed, "an integer >= 0")
    require(_is_integer(max_steps) and max_steps >= 1, "max_steps", max_steps, "an integer >= 1")


def _log_exact_mfpt(U: Potential, expression: str, temperature: float, start: float, target: float,
                    limit: str) -> float:
    """``log`` of the exact MFPT; refused when it is far beyond any Monte Carlo (``limit`` says why)."""
    require(math.isfinite(float(U.energy(start))), "start", start, "a point where the potential is finite")
    try:
        exponent = path_barrier(U, temperature, start, target) / temperature
        if exponent < _LOG_MFPT_LIMIT:  # else not worth a quadrature that cannot resolve e^{-U/T} anyway
            exponent = log_mean_first_passage_time(U, temperature, start, target)
    except QuadratureNotConverged as exc:
        raise ValueError(f"temperature={temperature!r} is invalid for this potential, start and target: "
                         f"{exc}") from None
    except ValueError as exc:
        raise ValueError(f"potential={expression!r} is invalid for start={start!r}, target={target!r}: "
                         f"{exc}") from None
    require(exponent < _LOG_MFPT_LIMIT, "temperature", temperature,
            f"{limit}: here the exact MFPT alone is about 10^{exponent / math.log(10):.4g}")
    return exponent


def _kramers(U: Potential, temperature: float, start: float, target: float) -> tuple[KramersPath | None, str]:
    try:
        return kramers_path_time(U, temperature, start, target), ""
    except KramersNotApplicable as exc:
        return None, str(exc)


def run_escape_times(expression: str, temperature: float, start: float, target: float, *,
                     replicas: int = 2000, seed: int = 0, dt: float | None = None,
                     max_steps: int = DEFAULT_MAX_STEPS,
                     progress: Callable[[int], None] | None = None) -> EscapeTimes:
    """Exact MFPT (ERRATA 004.4), Kramers over the barriers up to ``target``, and the Monte Carlo mean.

    The Monte Carlo uses :func:`~sgd_dynamics.simulate.first_passage.first_passage_times_1d` at the step of
    :func:`~sgd_dynamics.simulate.first_passage.choose_time_step` (``dt=None``: modelled bias at most a third
    of the standard error). A run whose expected Euler steps (``replicas x MFPT / dt``) exceed ``max_steps``
    is refused before it starts. ``ValueError`` names the parameter on bad input.
    """
    U = parse_potential(expression, variables=("x",))
    _check_escape_input(temperature, start, target, replicas, seed, max_steps)
    limit = f"replicas x MFPT / dt <= max_steps={max_steps:.3g}"
    exact = math.exp(_log_exact_mfpt(U, expression, temperature, start, target, limit))
    step = choose_time_step(U, temperature, start, target, replicas, dt)
    needed = replicas * exact / step.dt
    require(needed <= max_steps, "temperature", temperature,
            f"{limit}: the Monte Carlo needs about {needed:.3g} steps of dt={step.dt:.3g} "
            f"({replicas} replicas x exact MFPT {exact:.4g}); raise the temperature or max_steps, or lower "
            "replicas")
    kramers, note = _kramers(U, temperature, start, target)
    fp = first_passage_times_1d(U, start, target, temperature, step.dt, replicas, seed,
                                max_steps=int(math.ceil(_PATIENCE * exact / step.dt)), progress=progress)
    mean, stderr = fp.mean_and_stderr()
    return EscapeTimes(exact, kramers, note, mean, stderr, int(replicas), step)
