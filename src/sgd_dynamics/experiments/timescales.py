"""Time-scales of the Langevin diffusion on potentials with several wells: measured against predicted.

Chapter 004, time-scales section (spectral gap, ERRATA 004.6; metastable rates, ERRATA 004.4), two studies:

* :func:`autocorrelation_study` — the double well ``U = (x^2 - 1)^2`` at several temperatures: autocorrelation
  of ``x`` along stationary Euler–Maruyama trajectories (Gibbs start), its fitted decay rate and integrated
  autocorrelation time, against the Fokker–Planck operator's gap ``lambda_1`` and its prediction
  ``rho(t) = sum_k c_k e^{-lambda_k t}`` (:mod:`sgd_dynamics.theory.fokker_planck`), and the Eyring–Kramers
  two-state rate ``k_LR + k_RL``.
* :func:`rate_matrix_study` — a tilted three-well potential (wells near ``-2, 0, 2``, all of different depth):
  the milestoning rate matrix counted along trajectories (:mod:`sgd_dynamics.simulate.timescales`) against
  the exact 1-D rates by quadrature and the Eyring–Kramers rates (:mod:`sgd_dynamics.theory.metastability`).
  The measured time fractions of a finite run from a given start are a transient: they are compared with the
  master equation ``(1/t) int_0^t p(0) exp(Q s) ds`` from the same start (issue 16 item 5), with a standard
  error over replica groups, and the stationary law ``pi`` is only quoted beside them.

Both return plain data; figures are drawn in :mod:`sgd_dynamics.report.timescale_figures`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics.simulate.langevin import euler_maruyama
from sgd_dynamics.simulate.timescales import (
    CoreTransitionCounts,
    Estimate,
    MeasuredRateMatrix,
    autocorrelation,
    core_labels,
    count_core_transitions,
    estimate_rate_matrix,
    fit_decay_rate,
    integrated_autocorrelation_time,
)
from sgd_dynamics.theory.escape import find_minimum, find_saddle
from sgd_dynamics.theory.fokker_planck import fokker_planck_operator
from sgd_dynamics.theory.metastability import RateMatrix, exact_rate_matrix_1d, eyring_kramers_rate_matrix
from sgd_dynamics.theory.potential import parse_potential

Array = NDArray[np.float64]
DOUBLE_WELL = "(x**2 - 1)**2"
THREE_WELLS = "4*(x/2)**2*((x/2)**2 - 1)**2 + 0.05*x"
SAMPLE_EVERY = 0.05  # time between recorded samples for the autocorrelation
# After the intra-well modes (rates >= 3.7) have died out, before rho sinks into noise:
FIT_WINDOW = (1.0, 6.0)
_GROUPS = 20  # replica groups for the standard error of the time fractions


@dataclass(frozen=True)
class AutocorrelationPoint:
    """One temperature: measured autocorrelation of ``x`` and its fits, with the operator's predictions."""

    temperature: float
    lags: Array
    measured: Array
    predicted: Array
    decay_rate: Estimate
    fokker_planck_gap: float
    eyring_kramers_rate: float
    integrated_time: Estimate
    predicted_integrated_time: float


@dataclass(frozen=True)
class AutocorrelationStudy:
    """The double-well autocorrelation study; ``fit_window`` is where the decay rate was fitted."""

    points: tuple[AutocorrelationPoint, ...]
    fit_window: tuple[float, float]
    dt: float
    replicas: int
    duration: float


def autocorrelation_study(quick: bool, seed: int) -> AutocorrelationStudy:
    """Run the double-well autocorrelation study (quick: 2 temperatures, fewer and shorter trajectories)."""
    U = parse_potential(DOUBLE_WELL)
    temperatures = (0.5, 0.7) if quick else (0.4, 0.5, 0.7)
    replicas, duration, dt = (300, 120.0, 0.002) if quick else (1000, 300.0, 0.001)
    minima = [find_minimum(U, -1.0), find_minimum(U, 1.0)]
    saddle = find_saddle(U, 0.1)
    rng = np.random.default_rng(seed)
    every = int(round(SAMPLE_EVERY / dt))
    points = []
    for i, T in enumerate(temperatures):
        fp = fokker_planck_operator(U, T, -3.0, 3.0, 1200)
        cells = rng.choice(fp.x.size, p=fp.gibbs, size=replicas)
        x0 = fp.x[cells] + fp.cell_width * (rng.random(replicas) - 0.5)
        n_steps = int(round(duration / dt))
        path = euler_maruyama(U.gradient, x0, T, dt, n_steps, seed + 1 + i, record_every=every)
        acf = autocorrelation(path, every * dt, min(60.0, duration / 2))
        weights = fp.autocorrelation_weights(fp.x)
        two_state = eyring_kramers_rate_matrix(minima, [(0, 1, saddle)], T)
        points.append(AutocorrelationPoint(
            temperature=T, lags=acf.lags, measured=acf.values,
            predicted=fp.stationary_autocorrelation(fp.x, acf.lags),
            decay_rate=fit_decay_rate(acf, FIT_WINDOW), fokker_planck_gap=fp.spectral_gap,
            eyring_kramers_rate=two_state.slowest_relaxation_rate,
            integrated_time=integrated_autocorrelation_time(acf),
            predicted_integrated_time=float(np.sum(weights[1:] / fp.eigenvalues[1:]))))
    return AutocorrelationStudy(tuple(points), FIT_WINDOW, dt, replicas, duration)


@dataclass(frozen=True)
class TimeFractions:
    """Fraction of the run spent in each basin (by last core), and the master equation from the same start."""

    start: Array                # p(0): the replicas' starting basins, as fractions
    measured: Array
    stderr: Array               # over replica groups
    master_equation: Array      # (1/t) int_0^t p(0) exp(Q_exact s) ds
    stationary: Array           # pi of Q_exact, which the run has not reached
    hops_per_replica: float     # mean number of core-to-core transitions per replica


@dataclass(frozen=True)
class RateMatrixStudy:
    """Milestoning rates measured on the three-well potential, with the exact and Eyring–Kramers rates."""

    temperature: float
    minima: Array
    core_radius: float
    measured: MeasuredRateMatrix
    exact: RateMatrix
    eyring_kramers: RateMatrix
    total_time: float
    # Eyring–Kramers / exact rate ratio on a grid of temperatures (the O(T) prefactor error).
    ratio_temperatures: Array
    ratio_eyring_kramers_to_exact: Array  # (n_temperatures, 4): rates 0->1, 1->0, 1->2, 2->1
    time_fractions: TimeFractions | None = None

    @property
    def edges(self) -> tuple[list[int], list[int]]:
        """Index arrays of the nonzero off-diagonal rates (nearest-neighbour hops)."""
        return [0, 1, 1, 2], [1, 0, 2, 1]


def rate_matrix_study(quick: bool, seed: int) -> RateMatrixStudy:
    """Count core-to-core transitions on the three-well potential at ``T = 0.2`` and compare with theory."""
    U = parse_potential(THREE_WELLS)
    minima = [find_minimum(U, g) for g in (-2.0, 0.0, 2.0)]
    saddles = [find_saddle(U, g) for g in (-1.1, 1.1)]
    links = [(0, 1, saddles[0]), (1, 2, saddles[1])]
    m = np.array([float(c.point[0]) for c in minima])
    T, radius, dt, record, chunk = 0.2, 0.3, 0.001, 10, 5000
    replicas, n_chunks = (500, 12) if quick else (2000, 40)
    rng = np.random.default_rng(seed)
    x = m[rng.integers(0, m.size, replicas)]
    start = np.bincount(np.argmin(np.abs(x[:, None] - m[None, :]), axis=1), minlength=m.size) / replicas
    groups = np.array_split(np.arange(replicas), _GROUPS)
    counts: list[CoreTransitionCounts | None] = [None] * _GROUPS
    for c in range(n_chunks):
        path = euler_maruyama(U.gradient, x, T, dt, chunk, seed + 1 + c, record_every=record)
        x = path[-1]
        labels = core_labels(path[1:], m, radius)
        counts = [count_core_transitions(labels[:, g], dt * record, m.size, prev)
                  for g, prev in zip(groups, counts, strict=True)]
    done = [k for k in counts if k is not None]
    exact = exact_rate_matrix_1d(U, T, m, radius)
    fractions = _time_fractions(done, exact, start, n_chunks * chunk * dt, replicas)
    grid = np.array([0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03])
    edges = ([0, 1, 1, 2], [1, 0, 2, 1])
    ratios = np.array([eyring_kramers_rate_matrix(minima, links, t).generator[edges]
                       / exact_rate_matrix_1d(U, t, m, radius).generator[edges] for t in grid])
    return RateMatrixStudy(T, m, radius, estimate_rate_matrix(done), exact,
                           eyring_kramers_rate_matrix(minima, links, T), replicas * n_chunks * chunk * dt,
                           grid, ratios, fractions)


def _time_fractions(counts: list[CoreTransitionCounts], exact: RateMatrix, start: Array, duration: float,
                    replicas: int) -> TimeFractions:
    """Pooled time fractions, their standard error over replica groups, and the master equation's."""
    per_group = np.array([k.residence / k.residence.sum() for k in counts])
    weights = np.array([k.residence.sum() for k in counts])
    pooled = weights @ per_group / weights.sum()
    stderr = per_group.std(axis=0, ddof=1) / np.sqrt(len(counts))
    hops = sum(int(k.counts.sum()) for k in counts) / replicas
    return TimeFractions(start, pooled, stderr, exact.time_averaged_occupation(start, duration),
                         exact.stationary_distribution, hops)
