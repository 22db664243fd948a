"""Matrix sensing with label noise: Hessian trace and test error against steps for a sweep of ``beta``.

Scaled-down version of 003 App. A.2.1 (``d = 20``, ``r = 2``, ``P = 5 r d``, ``eps^2 = 0.1``, ``eta = 0.1``,
``U = V = I_d``, full batch with fresh label noise every step, 003 eq. 12). The speed along the valley is
summarised per ``beta`` by the first step at which the replica-mean trace of the Hessian (003 eq. 127) comes
within a fraction ``level`` of the lowest trace seen anywhere in the sweep (the start ``U = V = I`` is off the
valley and the trace first rises, so a level relative to the start is meaningless); ``beta*`` minimises it.
The corrected prediction (ERRATA 003.6) is ``1 - beta* = C eta^(2/3)``
with ``C = (4 eps^2 <a^2> / (d P))^(1/3)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from sgd_dynamics.simulate.label_noise import LabelNoiseState, MatrixSensing, simulate_label_noise
from sgd_dynamics.theory.momentum_scaling import OPTIMAL_EXPONENT, matrix_sensing_optimal_constant


@dataclass(frozen=True)
class MatrixSensingConfig:
    """The sweep (defaults: the scaled-down 003 App. A.2.1 setting)."""

    dimension: int = 20
    rank: int = 2
    dataset_size: int = 200
    label_noise_variance: float = 0.1
    lr: float = 0.1
    momenta: tuple[float, ...] = (0.0, 0.9, 0.97, 0.99, 0.995, 0.998)
    steps: int = 20_000
    record_every: int = 100
    replicas: int = 4
    level: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if not all(0 <= b < 1 for b in self.momenta) or not self.momenta:
            raise ValueError(f"momenta={self.momenta!r} is invalid: expected values in [0, 1)")
        if not (0 < self.level < 1):
            raise ValueError(f"level={self.level!r} is invalid: expected 0 < level < 1")


@dataclass(frozen=True)
class MatrixSensingResult:
    """Curves ``(momenta, records)`` (replica means), time to ``level`` per ``beta``, ``beta*`` and ``C``."""

    config: MatrixSensingConfig
    steps: NDArray[np.int64]
    trace_hessian: NDArray[np.float64]
    test_error: NDArray[np.float64]
    time_to_level: NDArray[np.float64]
    best_momentum: float
    fitted_constant: float
    predicted_constant: float


def run_matrix_sensing(cfg: MatrixSensingConfig = MatrixSensingConfig()) -> MatrixSensingResult:
    """Run all ``beta`` at once (one replica block per ``beta``) and summarise."""
    model = MatrixSensing.random(cfg.dimension, cfg.rank, cfg.dataset_size, cfg.seed)
    nb, r, d = len(cfg.momenta), cfg.replicas, cfg.dimension
    eye = np.broadcast_to(np.eye(d), (nb * r, d, d))
    state = LabelNoiseState.at_rest((eye, eye))
    beta = np.repeat(np.asarray(cfg.momenta, dtype=np.float64), r)
    # Small matmuls: a multi-threaded BLAS only oversubscribes the cores (40x slower on a loaded 2-core box).
    with threadpool_limits(limits=1):
        tr = simulate_label_noise(
            model,
            state,
            cfg.lr,
            beta,
            math.sqrt(cfg.label_noise_variance),
            cfg.steps,
            cfg.record_every,
            cfg.seed + 1,
        )
    trace = tr.trace_hessian.reshape(-1, nb, r).mean(axis=2).T
    test = tr.test_error.reshape(-1, nb, r).mean(axis=2).T
    times = np.full(nb, math.inf)
    floor = float(trace.min())
    for i in range(nb):
        hit = np.flatnonzero(trace[i] <= (1 + cfg.level) * floor)
        if hit.size:
            times[i] = tr.steps[hit[0]]
    best = float(cfg.momenta[int(np.argmin(times))]) if np.isfinite(times).any() else math.nan
    entry_variance = float(np.mean(model.sensing**2))
    return MatrixSensingResult(
        cfg,
        tr.steps,
        trace,
        test,
        times,
        best,
        (1 - best) / cfg.lr**OPTIMAL_EXPONENT,
        matrix_sensing_optimal_constant(
            math.sqrt(cfg.label_noise_variance), d, cfg.dataset_size, entry_variance
        ),
    )
