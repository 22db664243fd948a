"""Compiled first-passage times of a 1-D overdamped diffusion, for escapes that take billions of steps.

``dx = -U'(x) dt + sqrt(2 T) dW`` (ERRATA 004.1, 004.4) started at ``x0``, stopped the first time it reaches
``target``. Scheme: Euler–Maruyama, continued between grid times as a Brownian bridge (the "continuous Euler
scheme": the drift is frozen over a step, and a bridge does not depend on it). The bridge crosses the target
with probability ``exp(-(b - x_n)(b - x_{n+1}) / (T dt))`` (as in
:func:`sgd_dynamics.simulate.langevin.first_passage_times`), and the exit time reported is the bridge's own
crossing time inside the step (:func:`brownian_bridge_hitting_time`), not the end of the step: reporting
``k dt`` adds ``dt / 2`` on average, an ``O(dt)`` error of its own (``0.25 dt`` relative on ``x^2`` from
0 to 1 at ``T = 1``). One replica at a time in a loop compiled by numba, spread over threads: about 5-10 ns
per step against about 130 ns for the NumPy loop (``benchmarks/bench_escape.py``).

Reproducibility: the replicas are split into a fixed number of chunks, chunk ``c`` draws from
``SeedSequence(seed).spawn(chunks)[c]``, so results depend on ``seed`` only, not on the number of threads.

Discretisation bias (:func:`euler_bias`). To first order the Euler chain is the exact solution of the
modified SDE (weak backward error analysis) with drift ``-U' - dt (U' U'' - T U''')/2`` and diffusion
``T (1 + dt U'')``, whose scale potential is ``U - dt (U'^2/4 + T U''/2)``. Its exact MFPT, linearised in
``dt`` (:func:`sgd_dynamics.theory.escape.mfpt_linear_response`), gives
``tau_dt / tau - 1 = rate dt + O(dt^{3/2})``. The force at the target enters through ``-dt U'(b)^2 / (4 T)``:
on a slope the bias grows like ``1/T`` (``x^2`` from 0 to 2: ``rate = -4.41`` at ``T = 1``, ``-13.8`` at
``T = 0.3``), at a barrier top it does not (double well, -0.9 to 0: ``-1.11`` at ``T = 0.5``, ``-1.00`` at
``T = 0.1``); the former curvature-only model said ``1`` and ``6`` for these. Checked against the exact
mean of the simulated chain (a Nyström solve of its backward equation, ``tests/escape/test_euler_bias.py``):
for targets on a slope, at a barrier top and beyond a barrier the chain's error is
``rate dt + C dt^{3/2}``, and its Richardson limit agrees with ``rate`` to 0.1-2 %.

Step size (:func:`choose_time_step`): the step at which ``bound * dt`` is a third of the Monte Carlo standard
error ``1/sqrt(n)`` of ``n`` replicas, with ``bound >= |rate|`` the same integral over absolute contributions,
so a ``rate`` that happens to cancel does not let the higher orders through; and ``dt U'' <= 0.1`` where the
process spends its time. The bias is then at most a third of a standard error for any target.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sgd_dynamics._validation import require
from sgd_dynamics.simulate.langevin import FirstPassage
from sgd_dynamics.theory.escape import MFPTResponse, mfpt_linear_response, reflecting_cutoff
from sgd_dynamics.theory.potential import Potential

__all__ = ["BIAS_FRACTION", "DEFAULT_MAX_STEPS", "TimeStep", "brownian_bridge_hitting_time",
           "choose_time_step", "escape_time_step", "euler_bias", "first_passage_times_1d", "modelled_bias"]

# Fixed so that the seed alone decides every replica's random stream (not the number of threads).
_CHUNKS = 64
# The default cap on the Euler steps of all replicas together: about 10 minutes on two cores at ~4 ns a step.
DEFAULT_MAX_STEPS = 150_000_000_000
# The automatic step keeps the bias bound at this fraction of the standard error.
BIAS_FRACTION = 1.0 / 3.0
# dt U'' at most this where the process spends its time: the first-order bias model's regime, far inside
# Euler's stability limit dt U'' < 2.
_CURVATURE_STEP = 0.1


def brownian_bridge_hitting_time(d_start: float, d_end: float, variance: float, dt: float, normal: float,
                                 uniform: float) -> float:
    """When, in ``(0, dt]``, a Brownian bridge that crosses a level first reaches it.

    The bridge starts at distance ``d_start > 0`` from the level and ends at distance ``d_end >= 0`` (on
    either side); ``variance`` is its variance per unit time (``2 T``). Its crossing time has the density
    ``s^{-3/2} e^{-d_start^2 / (2 v s)} (dt - s)^{-1/2} e^{-d_end^2 / (2 v (dt - s))}`` (first passage, then
    the free path to the end point); with ``u = s / (dt - s)`` that is an inverse Gaussian law of mean
    ``d_start / d_end`` and shape ``d_start^2 / (v dt)``, drawn from one standard ``normal`` and one
    ``uniform`` (Michael, Schucany and Haas 1976, written without cancellation so that ``d_end -> 0`` gives
    the Lévy limit).
    """
    shape = d_start * d_start / (variance * dt)
    ratio = d_end / d_start  # 1 / mean
    y = normal * normal
    if y == 0.0:
        return dt
    root = 1.0 + math.sqrt(1.0 + 4.0 * shape * ratio / y)
    u = 4.0 * shape / (y * root * root)
    if uniform * (1.0 + u * ratio) > 1.0:
        u = 1.0 / (ratio * ratio * u)
    return dt / (1.0 + 1.0 / u) if u > 0.0 else 0.0


def euler_bias(potential: Potential, temperature: float, x0: float, target: float) -> MFPTResponse:
    """First-order relative bias of the Euler mean exit time per unit step: ``tau_dt / tau - 1 ~ rate dt``.

    From the modified SDE of the module docstring: scale-potential shift ``-(U'^2/4 + T U''/2)`` and relative
    diffusion shift ``U''`` per unit ``dt``. ``bound >= |rate|`` sums the contributions' absolute values.
    """
    T = float(temperature)

    def potential_shift(x: np.ndarray) -> np.ndarray:
        return -(potential.gradient(x) ** 2 / 4.0 + T * potential.hessian(x) / 2.0)

    return mfpt_linear_response(potential, T, x0, target, potential_shift=potential_shift,
                                diffusion_shift=potential.hessian)


@dataclass(frozen=True)
class TimeStep:
    """An Euler step with its modelled bias (relative to the exact MFPT) and the replicas' standard error."""

    dt: float
    modelled_bias: float  # rate * dt, signed: negative means the simulated exits come early
    bias_bound: float  # bound * dt >= |modelled_bias|
    relative_stderr: float  # 1 / sqrt(replicas): the standard error of an exponential law's mean
    max_dt: float  # the largest step allowed: dt U'' <= 1 where the process spends its time


def _curvature_scale(potential: Potential, temperature: float, x0: float, target: float) -> float:
    """``max |U''|`` where the process spends its time: within 5 T of the lowest ``U``, and along the path."""
    left = reflecting_cutoff(potential, temperature, x0, target)
    grid = np.linspace(left, target, 20001)
    energy = potential.energy(grid)
    on_path = (grid - x0) * (grid - target) <= 0
    visited = (energy - energy.min() <= 5.0 * temperature) | on_path
    return float(np.max(np.abs(potential.hessian(grid[visited]))))


def choose_time_step(potential: Potential, temperature: float, x0: float, target: float, replicas: int,
                     dt: float | None = None) -> TimeStep:
    """The automatic step (``dt=None``: ``bound dt = BIAS_FRACTION / sqrt(replicas)``) or a given one.

    Raises ``ValueError`` naming ``replicas`` or ``dt`` when they are out of range (``dt`` must keep
    ``dt U'' <= 1`` where the process spends its time).
    """
    require(isinstance(replicas, (int, np.integer)) and replicas >= 2, "replicas", replicas,
            "an integer >= 2")
    bias = euler_bias(potential, temperature, x0, target)
    curvature = _curvature_scale(potential, temperature, x0, target)
    max_dt = 1.0 / curvature if curvature > 0 else math.inf
    stderr = 1.0 / math.sqrt(replicas)
    if dt is None:
        dt = BIAS_FRACTION * stderr / bias.bound if bias.bound > 0 else math.inf
        dt = min(dt, _CURVATURE_STEP * max_dt)
        require(math.isfinite(dt), "potential", getattr(potential, "expression", potential),
                "a potential with curvature along the path (U'' = 0 everywhere leaves no step scale)")
    require(isinstance(dt, (int, float)) and math.isfinite(dt) and 0 < dt <= max_dt, "dt", dt,
            f"a step in (0, {max_dt:.4g}]: dt U'' <= 1 where the process spends its time")
    return TimeStep(float(dt), bias.rate * dt, bias.bound * dt, stderr, max_dt)


def modelled_bias(curvature_well: float, curvature_barrier: float, dt: float) -> float:
    """The former curvature-only bias bound ``dt (U''(a) + |U''(b)|) / 2`` (barrier-top targets only).

    It ignores the force at the target, so it misses the bias of a target on a slope; use :func:`euler_bias`.
    """
    return dt * (abs(curvature_well) + abs(curvature_barrier)) / 2.0


def escape_time_step(curvature_well: float, curvature_barrier: float, replicas: int) -> float:
    """The step of :func:`modelled_bias` equal to ``1/sqrt(replicas)`` (barrier-top targets only).

    Kept for callers that know only the curvatures; :func:`choose_time_step` bounds the bias for any target.

    >>> round(escape_time_step(8.0, -4.0, 2000), 6)
    0.003727
    """
    if replicas < 2:
        raise ValueError(f"replicas={replicas!r} is invalid: expected an integer >= 2")
    scale = abs(curvature_well) + abs(curvature_barrier)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"curvatures ({curvature_well!r}, {curvature_barrier!r}) are invalid: "
                         "expected finite numbers, not both zero")
    # The cap keeps dt U''(a) well inside Euler's stability interval (0, 2) for very few replicas.
    return min(2.0 / (math.sqrt(replicas) * scale), 0.05 / abs(curvature_well or scale))


@lru_cache(maxsize=32)
def _compiled_kernel(gradient_source: str) -> Callable:
    import numba  # a hard dependency, imported here so that importing the simulators stays light

    # The source is rendered by Potential.scalar_source from a parsed tree: numbers, ``x``, operators and
    # math functions only, never user text, so executing it runs no user code.
    namespace: dict = {"math": math}
    exec(f"def gradient(x):\n    return {gradient_source}\n", namespace)  # noqa: S102
    sign = numba.njit(lambda v: (v > 0.0) - (v < 0.0))
    namespace["_sign"] = sign
    gradient = numba.njit(namespace["gradient"])
    hitting_time = numba.njit(brownian_bridge_hitting_time)

    @numba.njit(nogil=True)
    def kernel(rng, x0, target, temperature, dt, max_steps, out):  # pragma: no cover - compiled
        noise = math.sqrt(2.0 * temperature * dt)
        inverse = 1.0 / (temperature * dt)
        side = 1.0 if x0 < target else -1.0
        for i in range(out.size):
            x = x0
            out[i] = np.nan
            for k in range(1, max_steps + 1):
                x_new = x - dt * gradient(x) + noise * rng.standard_normal()
                d_old = side * (target - x)
                d_new = side * (target - x_new)
                exponent = d_old * d_new * inverse
                # exp(-30) ~ 1e-13 per step: skipping the draw there changes no result and halves the cost.
                if d_new <= 0.0 or (exponent < 30.0 and rng.random() < math.exp(-exponent)):
                    s = hitting_time(d_old, abs(d_new), 2.0 * temperature, dt, rng.standard_normal(),
                                     rng.random())
                    out[i] = (k - 1) * dt + s
                    break
                x = x_new

    return kernel


def first_passage_times_1d(potential: Potential, x0: float, target: float, temperature: float, dt: float,
                           replicas: int, seed: int, *, max_steps: int, workers: int | None = None,
                           progress: Callable[[int], None] | None = None) -> FirstPassage:
    """Exit times of ``replicas`` independent paths from ``x0`` to ``target``; ``nan`` after ``max_steps``.

    ``workers`` threads (default: the CPUs this process may use); ``progress(done_replicas)`` is called as
    chunks finish. Raises ``ValueError`` naming the parameter for invalid input.
    """
    if potential.dimension != 1:
        raise ValueError(f"potential {potential.expression!r} is {potential.dimension}-D: expected 1-D")
    for name, value in (("temperature", temperature), ("dt", dt)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r} is invalid: expected a finite number > 0")
    if not (math.isfinite(x0) and math.isfinite(target)) or x0 == target:
        raise ValueError(f"x0={x0!r}, target={target!r} are invalid: expected finite numbers, x0 != target")
    if replicas < 1:
        raise ValueError(f"replicas={replicas!r} is invalid: expected an integer >= 1")
    if max_steps < 1:
        raise ValueError(f"max_steps={max_steps!r} is invalid: expected an integer >= 1")
    require(isinstance(seed, (int, np.integer)) and seed >= 0, "seed", seed, "an integer >= 0")
    kernel = _compiled_kernel(potential.scalar_source(1))
    chunks = np.array_split(np.empty(replicas), min(_CHUNKS, replicas))
    streams = np.random.SeedSequence(seed).spawn(len(chunks))
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def run(c: int) -> int:
        kernel(np.random.default_rng(streams[c]), float(x0), float(target), float(temperature), float(dt),
               int(max_steps), chunks[c])
        return chunks[c].size

    done = 0
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        futures = [pool.submit(run, c) for c in range(len(chunks))]
        try:
            for future in futures:
                done += future.result()
                if progress is not None:
                    progress(done)
        except BaseException:
            for future in futures:  # Ctrl-C: drop chunks not started; running ones finish their replicas
                future.cancel()
            raise
    return FirstPassage(np.concatenate(chunks), float(dt), int(max_steps))
