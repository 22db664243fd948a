"""Compiled first-passage times of a 1-D overdamped diffusion, for escapes that take billions of steps.

``dx = -U'(x) dt + sqrt(2 T) dW`` started at ``x0``, stopped the first time it reaches ``target``: the same
Euler–Maruyama scheme with the Brownian-bridge crossing correction as
:func:`sgd_dynamics.simulate.langevin.first_passage_times` (crossing probability
``exp(-(b - x_n)(b - x_{n+1}) / (T dt))`` between grid times), but one replica at a time in a loop compiled
by numba, spread over threads. A replica costs ``MFPT / dt`` steps whatever the vectorisation, so at low
temperature (the double well at ``T = 0.1``: MFPT 1.28e4, about 1e10 steps for 2000 replicas) only the
per-step cost can be cut: about 5-10 ns per step here against about 130 ns for the NumPy loop, whose
per-step overhead dominates once few replicas remain (``benchmarks/bench_escape.py``).

Reproducibility: the replicas are split into a fixed number of chunks, chunk ``c`` draws from
``SeedSequence(seed).spawn(chunks)[c]``, so results depend on ``seed`` only, not on the number of threads.

Step size (:func:`escape_time_step`): Euler–Maruyama samples the modified potential
``U_dt = U - dt U'^2/4 + T dt U''/2`` to first order (its invariant law; exact for a quadratic ``U``), whose
barrier is lower by ``T dt (U''(a) - U''(b)) / 2``. The Arrhenius factor then shortens the mean exit time by
the relative amount ``dt (U''(a) + |U''(b)|) / 2``, independent of ``T``. We pick ``dt`` so that this modelled
bias equals the Monte Carlo standard error of ``n`` replicas, ``1/sqrt(n)``. Measured on the double well
from -0.9 to 0 at the step for 2000 replicas (``dt = 3.73e-3``, modelled bias 2.2 %): -0.49 +- 0.19 % at
``T = 0.5``, -0.60 +- 0.39 % at ``T = 0.2``, +0.3 +- 1.1 % at ``T = 0.1``; at ``dt = 0.015`` (model 9 %),
-2.5 +- 0.4 %. The model is conservative by about 4x, so the actual bias is about a quarter of a standard
error (``tests/escape/test_first_passage.py`` checks the bound and the agreement with quadrature).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from sgd_dynamics.simulate.langevin import FirstPassage
from sgd_dynamics.theory.potential import Potential

__all__ = ["escape_time_step", "first_passage_times_1d", "modelled_bias"]

# Fixed so that the seed alone decides every replica's random stream (not the number of threads).
_CHUNKS = 64


def modelled_bias(curvature_well: float, curvature_barrier: float, dt: float) -> float:
    """Relative shortening of the mean exit time by Euler–Maruyama at step ``dt`` (see module docstring)."""
    return dt * (abs(curvature_well) + abs(curvature_barrier)) / 2.0


def escape_time_step(curvature_well: float, curvature_barrier: float, replicas: int) -> float:
    """The step whose modelled bias equals the standard error ``1/sqrt(replicas)``, capped for stability.

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
                if d_new <= 0.0:
                    out[i] = k * dt
                    break
                exponent = d_old * d_new * inverse
                # exp(-30) ~ 1e-13 per step: skipping the draw there changes no result and halves the cost.
                if exponent < 30.0 and rng.random() < math.exp(-exponent):
                    out[i] = k * dt
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
