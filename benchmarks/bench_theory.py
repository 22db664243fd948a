"""Closed-form E||Delta_t||^2 against direct summation over lags, and its cost at scale.

Prints, in one run: (1) the speed-up of the closed form over direct summation of the lag sum at a size
where summation is still feasible, with the largest relative difference; (2) the wall time for 10^5
modes at 10^3 log-spaced time points up to t = 10^7, for each model; for the two lag-sum models also the
per-mode ``(steps x modes)`` evaluation summed afterwards (how ``global_displacement`` worked before it
summed over modes inside its compiled loops), its ratio and the largest relative difference.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from goals import goal_line

from sgd_dynamics import Hyperparams
from sgd_dynamics.theory import discrete, global_displacement, phase_space


def direct_summation(rho: np.ndarray, s: np.ndarray, hp: Hyperparams, steps: np.ndarray) -> np.ndarray:
    """eta^2 [t c0 + 2 sum_l (t - l) c(l)] with c(l) from the recursion, vectorised over modes."""
    m = discrete.transition_matrix(rho, hp)
    p = discrete.discrete_stationary_moments(rho, s, hp).as_matrices()
    column = p[:, :, 1]
    tmax = int(steps.max())
    c = np.empty((tmax, rho.size))
    for lag in range(tmax):
        c[lag] = column[:, 1]
        column = np.einsum("mij,mj->mi", m, column)
    out = []
    for t in steps:
        lags = np.arange(1, t)[:, None]
        out.append(hp.lr**2 * np.sum(t * c[0] + 2 * np.sum((t - lags) * c[1:t], axis=0)))
    return np.array(out)


def best_of(fn, repeats=3):
    """Median wall time of ``repeats`` runs (the machine is shared: the median, not the minimum)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    rng = np.random.default_rng(0)
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=32)
    rho = rng.uniform(0, 300, size=200)
    s = rng.uniform(0.1, 2.0, size=200)
    steps = np.unique(np.logspace(0, np.log10(4000), 40).astype(int))
    t_direct, ref = best_of(lambda: direct_summation(rho, s, hp, steps), repeats=1)
    t_closed, got = best_of(lambda: global_displacement(rho, s, hp, steps))
    print(f"[1] 200 modes, {steps.size} time points up to t={steps.max()}:")
    print(f"    direct summation {t_direct:.3f} s, closed form {t_closed * 1e3:.2f} ms: "
          f"closed form is {t_direct / t_closed:.0f}x faster; max relative difference "
          f"{np.max(np.abs(got - ref) / ref):.2e}")
    rho = rng.uniform(0, 300, size=100_000)
    s = rng.uniform(0.1, 2.0, size=100_000)
    steps = np.unique(np.logspace(0, 7, 1000).astype(np.int64))
    global_displacement(rho[:10], s[:10], hp, steps)  # compile (or load) the numba kernel first
    per_mode = {"discrete": discrete.discrete_displacement_per_mode,
                "eq19_sampled_sum": phase_space.eq19_sampled_sum_per_mode}
    for model in ("discrete", "continuous", "eq19_sampled_sum"):
        t_big, big = best_of(lambda m=model: global_displacement(rho, s, hp, steps, model=m), repeats=3)
        print(f"[2] {model}: 10^5 modes x {steps.size} time points up to t=10^7: {t_big:.2f} s "
              f"({t_big / (rho.size * steps.size) * 1e9:.1f} ns per mode-time point); finite: "
              f"{np.all(np.isfinite(big))}")
        if model == "discrete":   # global_displacement's default
            print(goal_line(3, f"global_displacement 1e5 modes x {steps.size} times (finite: "
                            f"{np.all(np.isfinite(big))})", 1.0, t_big, unit=" s", at_most=True))
        if model in per_mode:
            t_old, old = best_of(lambda f=per_mode[model]: per_mode_sum(f, rho, s, hp, steps), repeats=1)
            print(f"    per mode, then summed: {t_old:.2f} s; summed inside is {t_old / t_big:.1f}x faster; "
                  f"max relative difference {np.max(np.abs(big - old) / np.abs(old)):.1e}")


def per_mode_sum(per_mode, rho: np.ndarray, s: np.ndarray, hp: Hyperparams, steps: np.ndarray) -> np.ndarray:
    """The ``(steps x modes)`` evaluation in chunks of ``2^19`` numbers, summed over modes afterwards."""
    chunk = max(1, (1 << 19) // steps.size)
    return sum(per_mode(rho[i:i + chunk], s[i:i + chunk], hp, steps).sum(axis=1)
               for i in range(0, rho.size, chunk))

if __name__ == "__main__":
    main()
