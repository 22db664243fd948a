"""Benchmark of the escape-time Monte Carlo (issue 7), baseline measured in the same run.

The same Euler–Maruyama scheme with the Brownian-bridge crossing correction, on the double well
``(x**2-1)**2`` from -0.9 to 0, same step and replicas: the NumPy simulator (vectorised over replicas,
:func:`sgd_dynamics.simulate.langevin.first_passage_times`) against the compiled one
(:func:`sgd_dynamics.simulate.first_passage.first_passage_times_1d`, numba, one thread and all threads).
Both estimate the same mean exit time; the ratio is wall time per simulated step. The last line extrapolates
the headline command ``escape --temperature 0.1`` (2000 replicas) from the measured per-step cost.
"""

from __future__ import annotations

import math
import time

import numpy as np

from sgd_dynamics.simulate.first_passage import escape_time_step, first_passage_times_1d
from sgd_dynamics.simulate.langevin import first_passage_times
from sgd_dynamics.theory.escape import mean_first_passage_time
from sgd_dynamics.theory.potential import parse_potential


def main() -> None:
    U = parse_potential("(x**2-1)**2")
    T, n = 0.25, 2000  # the command's defaults at a temperature the NumPy loop finishes in seconds
    dt = escape_time_step(8.0, -4.0, n)
    exact = mean_first_passage_time(U, T, -0.9, 0.0)
    first_passage_times_1d(U, -0.9, 0.0, T, dt, 8, seed=0, max_steps=10**8)  # compile outside the clock

    runs = {}
    start = time.perf_counter()
    fp = first_passage_times(U.gradient, np.full(n, -0.9), T, dt, 10**8, seed=1, target=0.0)
    runs["numpy (vectorised)"] = (time.perf_counter() - start, fp)
    for workers in (1, None):
        start = time.perf_counter()
        fp = first_passage_times_1d(U, -0.9, 0.0, T, dt, n, seed=1, max_steps=10**8, workers=workers)
        runs[f"compiled, {'1 thread' if workers == 1 else 'all threads'}"] = (time.perf_counter() - start, fp)

    base = runs["numpy (vectorised)"][0]
    print(f"double well, T={T}, {n} replicas, dt={dt:.4g}; exact MFPT {exact:.5g}")
    print(f"{'simulator':<26}{'seconds':>9}{'ns/step':>9}{'speed-up':>10}{'mean':>9}{'stderr':>8}")
    ns_per_step = math.inf
    for name, (seconds, fp) in runs.items():
        mean, stderr = fp.mean_and_stderr()
        steps = float(np.sum(fp.times)) / dt
        ns_per_step = min(ns_per_step, seconds / steps * 1e9)
        print(f"{name:<26}{seconds:9.2f}{seconds / steps * 1e9:9.1f}{base / seconds:10.1f}{mean:9.4f}"
              f"{stderr:8.4f}")
    exact_cold = mean_first_passage_time(U, 0.1, -0.9, 0.0)
    steps_cold = n * exact_cold / dt
    print(f"escape --temperature 0.1: about {steps_cold:.3g} steps, {steps_cold * ns_per_step * 1e-9:.0f} s "
          "at the best per-step cost above")


if __name__ == "__main__":
    main()
