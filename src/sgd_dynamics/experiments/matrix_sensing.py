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

from sgd_dynamics._validation import require
from sgd_dynamics.config_schema import setting, validate
from sgd_dynamics.simulate.label_noise import LabelNoiseState, MatrixSensing, simulate_label_noise
from sgd_dynamics.theory.momentum_scaling import OPTIMAL_EXPONENT, matrix_sensing_optimal_constant


@dataclass(frozen=True)
class MatrixSensingConfig:
    """The sweep (defaults: the scaled-down 003 App. A.2.1 setting)."""

    dimension: int = setting(20, "matrix dimension d", minimum=1)
    rank: int = setting(2, "rank of the target X*", minimum=1)
    dataset_size: int = setting(200, "measurements", minimum=1)
    label_noise_variance: float = setting(0.1, "label-noise variance", minimum=0, exclusive_minimum=True)
    lr: float = setting(0.1, "learning rate eta", minimum=0, exclusive_minimum=True)
    momenta: tuple[float, ...] = setting((0.0, 0.9, 0.97, 0.99, 0.995, 0.998), "momenta beta swept",
                                         minimum=0, maximum=1, exclusive_maximum=True)
    steps: int = setting(20_000, "steps per run", minimum=1)
    record_every: int = setting(100, "steps between recorded points", minimum=1)
    replicas: int = setting(4, "replicas per momentum", minimum=1)
    level: float = setting(0.02, "relative level above the floor that defines the time to level", minimum=0,
                           maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    seed: int = setting(0, "random seed", minimum=0)

    def __post_init__(self) -> None:
        validate(self)
        require(len(self.momenta) >= 1, "momenta", self.momenta, "at least one value in [0, 1)")


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
