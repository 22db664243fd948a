"""Annealing schedules and reaching the deeper basin of an asymmetric double well.

Chapter 004 (samplers and schedules; its annealing exercises use broken potentials, ERRATA 004.5, so the
landscape is rebuilt here and *verified*). The tilted double well::

    U(x) = (x^2 - 1)^2 + c x,   0 < c < 8 / (3 sqrt 3)

has a deeper minimum near ``x = -1`` (``U ~ -c``), a shallower one near ``x = +1`` (``U ~ +c``) and a barrier
top near ``x = c / 4`` between them; :func:`tilted_double_well` locates all three numerically and checks the
ordering. Replicas of ``dx = -U'(x) dt + sqrt(2 T_k) dW`` (Euler–Maruyama,
:func:`sgd_dynamics.simulate.langevin.euler_maruyama`) start in the shallower minimum and run the same number
of steps under each schedule of :func:`sgd_dynamics.simulate.langevin.annealing_schedule` (constant, step,
cosine, ``T0 / log(e + k / every)`` with ``every = n_steps // 100``), all starting at the same ``T0``. The
fraction ending on the deep side of the barrier top is compared with the Gibbs fraction

    P_deep(T) = int_{x < x_b} e^{-U/T} dx / int e^{-U/T} dx

(adaptive quadrature, :func:`scipy.integrate.quad`) at the temperature of each schedule's last step; the
fraction carries the binomial standard error ``sqrt(p (1 - p) / n)`` (0 when no or every replica crossed).

Hajek's theorem for ``c / log t`` cooling needs ``c`` at least the depth of the shallower well
(``U(x_b) - U(x_shallow)``); the ``log`` schedule decays like ``T0 / log(k / every)``, so
:attr:`AnnealingResult.log_constant` reports ``c = T0`` for that comparison. Its time scale is a fixed
fraction of the run, so for a fixed simulated time its outcome does not depend on ``dt`` (beyond the
Euler–Maruyama bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import integrate

from sgd_dynamics._validation import require
from sgd_dynamics.simulate.langevin import SCHEDULES, annealing_schedule, euler_maruyama
from sgd_dynamics.theory.escape import locate_well_and_barrier
from sgd_dynamics.theory.potential import Potential, parse_potential

Array = NDArray[np.float64]
MAX_TILT = 8.0 / (3.0 * math.sqrt(3.0))  # beyond it U' = 4x^3 - 4x + c has a single root: one well


@dataclass(frozen=True)
class TiltedDoubleWell:
    """A verified asymmetric double well: deep and shallow minima and the barrier top between them."""

    potential: Potential
    tilt: float
    deep: float
    shallow: float
    barrier: float

    @property
    def shallow_depth(self) -> float:
        """``U(x_b) - U(x_shallow)``: the barrier seen from the shallower minimum."""
        return float(self.potential.energy(self.barrier) - self.potential.energy(self.shallow))

    @property
    def deep_depth(self) -> float:
        """``U(x_b) - U(x_deep)``: the barrier seen from the deeper minimum."""
        return float(self.potential.energy(self.barrier) - self.potential.energy(self.deep))

    def in_deep_basin(self, x: Array) -> NDArray[np.bool_]:
        """Whether each point lies on the deep minimum's side of the barrier top."""
        return (np.asarray(x) < self.barrier) if self.deep < self.barrier else (np.asarray(x) > self.barrier)


def tilted_double_well(tilt: float = 0.3) -> TiltedDoubleWell:
    """Build ``(x^2 - 1)^2 + tilt x``; verify a deeper and a shallower minimum with a barrier between."""
    require(isinstance(tilt, (int, float)) and math.isfinite(tilt) and 0 < tilt < MAX_TILT,
            'tilt', tilt, f"0 < tilt < {MAX_TILT:.4f} (two minima)")
    U = parse_potential(f"(x**2 - 1)**2 + {float(tilt)!r}*x")
    deep, barrier = locate_well_and_barrier(U, -1.0, 1.0)
    shallow, barrier_back = locate_well_and_barrier(U, 1.0, -1.0)
    if not (deep < barrier < shallow and math.isclose(barrier, barrier_back, abs_tol=1e-9)):
        raise ValueError(f"tilt={tilt!r}: landscape check failed, expected minimum < barrier < minimum; got "
                         f"{deep:.6g}, {barrier:.6g} ({barrier_back:.6g}), {shallow:.6g}")
    if not float(U.energy(deep)) < float(U.energy(shallow)):
        raise ValueError(f"tilt={tilt!r}: landscape check failed, the left minimum is not the deeper one")
    return TiltedDoubleWell(U, float(tilt), deep, shallow, barrier)


def gibbs_deep_fraction(well: TiltedDoubleWell, temperature: float) -> float:
    """Gibbs probability of the deep side of the barrier at ``temperature``, by adaptive quadrature."""
    require(isinstance(temperature, (int, float, np.floating)) and math.isfinite(temperature)
            and temperature > 0,
            'temperature', temperature, "a finite temperature > 0")
    T = float(temperature)
    U = well.potential
    u_min = float(U.energy(well.deep))

    def weight(x: float) -> float:
        return math.exp(-(float(U.energy(x)) - u_min) / T)

    # Cut where U has risen by 60 T (weight e^-60) beyond both minima: (x^2 - 1)^2 grows like x^4.
    reach = 1.0
    while float(min(U.energy(-reach), U.energy(reach))) - u_min < 60.0 * T:
        reach *= 1.5
    deep_lo, deep_hi = sorted((-reach, well.barrier)) if well.deep < well.barrier else (well.barrier, reach)
    sh_lo, sh_hi = (well.barrier, reach) if well.deep < well.barrier else (-reach, well.barrier)
    opts = {"limit": 400, "epsabs": 0.0, "epsrel": 1e-10}
    p_deep = integrate.quad(weight, deep_lo, deep_hi, points=[well.deep], **opts)[0]
    p_shallow = integrate.quad(weight, sh_lo, sh_hi, points=[well.shallow], **opts)[0]
    return p_deep / (p_deep + p_shallow)


@dataclass(frozen=True)
class ScheduleOutcome:
    """One schedule: its final temperature, the deep-basin fraction over time and at the end, and Gibbs."""

    kind: str
    final_temperature: float  # temperature of the last step taken (k = n_steps - 1)
    deep_fraction: float
    stderr: float  # binomial sqrt(p (1 - p) / n)
    gibbs_fraction: float  # at final_temperature
    record_steps: NDArray[np.int64]
    deep_fraction_history: Array
    temperature_history: Array  # schedule at record_steps (the step about to be taken)


@dataclass(frozen=True)
class AnnealingResult:
    """Deep-basin fractions per schedule after the same number of steps from the shallower minimum."""

    well: TiltedDoubleWell
    initial_temperature: float
    n_steps: int
    dt: float
    replicas: int
    seed: int
    outcomes: tuple[ScheduleOutcome, ...]

    @property
    def log_constant(self) -> float:
        """``c = T0``: the ``log`` schedule ``T0 / log(e + k / every)`` is ``~ c / log k`` for ``k >> every``.

        Hajek's condition for reaching the deeper basin is ``c >= shallow_depth``.
        """
        return self.initial_temperature

    def outcome(self, kind: str) -> ScheduleOutcome:
        """The outcome of schedule ``kind``."""
        for o in self.outcomes:
            if o.kind == kind:
                return o
        raise ValueError(f"kind={kind!r} is invalid: this run has {', '.join(o.kind for o in self.outcomes)}")


def _check_int(value: int, name: str, low: int) -> int:
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low,
            name, value, f"an integer >= {low}")
    return int(value)


def run_annealing(*, seed: int, tilt: float = 0.3, temperature: float = 0.5, n_steps: int = 20_000,
                  dt: float = 0.005, replicas: int = 2000, schedules: tuple[str, ...] = SCHEDULES,
                  factor: float = 0.5, n_records: int = 50) -> AnnealingResult:
    """Run every schedule from the shallower minimum and count the replicas ending in the deeper basin.

    ``step`` multiplies ``T`` by ``factor`` every ``n_steps // 4`` steps; ``cosine`` ends at the step
    schedule's last temperature ``T0 factor^3``, so the two cool to the same point along different paths.
    """
    require(isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0,
            'temperature', temperature, "a finite temperature > 0")
    require(isinstance(dt, (int, float)) and math.isfinite(dt) and 0 < dt < 0.05,
            'dt', dt, "0 < dt < 0.05 (U'' ~ 8 at the minima)")
    n_steps = _check_int(n_steps, "n_steps", 4)
    replicas = _check_int(replicas, "replicas", 2)
    n_records = _check_int(n_records, "n_records", 1)
    if n_steps % n_records:
        raise ValueError(f"n_steps={n_steps!r} is invalid: expected a multiple of n_records={n_records}")
    unknown = [s for s in schedules if s not in SCHEDULES]
    require(bool(schedules) and not unknown, "schedules", schedules, f"a non-empty subset of {SCHEDULES}")
    require(0 < factor < 1, "factor", factor, "0 < factor < 1")
    well = tilted_double_well(tilt)
    every = n_steps // n_records
    outcomes = []
    for i, kind in enumerate(schedules):
        schedule = annealing_schedule(kind, temperature, n_steps, final_temperature=temperature * factor**3,
                                      factor=factor)
        # A fresh stream per schedule (seed, i): schedules are compared on independent replicas.
        path = euler_maruyama(well.potential.gradient, np.full(replicas, well.shallow), schedule, dt, n_steps,
                              int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), record_every=every)
        steps = np.arange(path.shape[0], dtype=np.int64) * every
        history = well.in_deep_basin(path).mean(axis=1)
        p = float(history[-1])
        t_final = float(schedule(np.asarray(n_steps - 1)))
        used = np.asarray(schedule(np.maximum(steps - 1, 0)), dtype=np.float64)  # last temperature applied
        outcomes.append(ScheduleOutcome(kind, t_final, p, math.sqrt(p * (1 - p) / replicas),
                                        gibbs_deep_fraction(well, t_final), steps, history, used))
    return AnnealingResult(well, float(temperature), n_steps, float(dt), replicas, int(seed), tuple(outcomes))
