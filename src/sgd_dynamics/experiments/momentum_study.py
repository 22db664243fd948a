"""The momentum-scaling study (003) in one run directory: vector UV model, matrix sensing, a classifier.

``run_momentum(config, run_dir) -> run directory -> write_momentum_report(run_dir)``. The three parts run
once each and are stored as typed records (:mod:`sgd_dynamics.store.records`) in ``RUN_DIR/results/``,
together with the theory the page compares them with (``tau_2 / 2`` of 003 eq. 9 at ``gamma = 0.3``, the
exponent curves of eq. 7 and ERRATA 003.8); :func:`momentum_rows` gives the verdicts of ``summary.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sgd_dynamics.config_schema import setting, validate
from sgd_dynamics.experiments.label_noise_classifier import (
    ClassifierConfig,
    ClassifierResult,
    run_classifier_study,
)
from sgd_dynamics.experiments.matrix_sensing import (
    MatrixSensingConfig,
    MatrixSensingResult,
    run_matrix_sensing,
)
from sgd_dynamics.experiments.momentum_uv import UVStudyConfig, UVStudyResult, gamma_key, run_activation_sweep
from sgd_dynamics.store import RunDirectory, load_record, read_config, record_exists, save_record
from sgd_dynamics.theory.momentum_scaling import OPTIMAL_EXPONENT, timescale_exponent, uv_drift_time
from sgd_dynamics.verdicts import Row

__all__ = [
    "DRIFT_GAMMAS",
    "MomentumConfig",
    "MomentumResults",
    "load_momentum",
    "momentum_config",
    "momentum_rows",
    "run_momentum",
]

DRIFT_GAMMAS = (0.3, 0.4, 0.5)


@dataclass(frozen=True)
class MomentumConfig:
    """The three momentum-scaling studies (tables ``[uv]``, ``[sensing]``, ``[classifier]``)."""

    uv: UVStudyConfig = setting(help="vector UV model: timescale T_c against eta per gamma",
                                default_factory=UVStudyConfig)
    sensing: MatrixSensingConfig = setting(help="matrix sensing: trace of the Hessian per momentum",
                                           default_factory=MatrixSensingConfig)
    classifier: ClassifierConfig = setting(help="MLP classifier (digits, MNIST-1D): optimal momentum per eta",
                                           default_factory=ClassifierConfig)
    activations: tuple[str, ...] = setting(("linear", "tanh", "relu"), "first-layer activations of the UV "
                                           "model", choices=("linear", "tanh", "relu"))

    def __post_init__(self) -> None:
        validate(self)

    def with_seed(self, seed: int) -> MomentumConfig:
        """The same configuration with ``seed`` as the seed of all three studies (``--seed``)."""
        return replace(self, uv=replace(self.uv, seed=seed), sensing=replace(self.sensing, seed=seed),
                       classifier=replace(self.classifier, seed=seed))

    @classmethod
    def quick(cls) -> MomentumConfig:
        """The reduced configurations of the tests (seconds instead of minutes)."""
        # uv: 4 repetitions so that alpha(0.8) agrees across --seed values for every activation (issue 16)
        return cls(uv=UVStudyConfig.quick(gammas=(0.3, 0.5, 0.8), lrs=(0.01, 0.0316, 0.1), seeds=4),
                   sensing=MatrixSensingConfig.quick(),
                   classifier=ClassifierConfig.quick())


@dataclass(frozen=True)
class DriftTime:
    """At ``gamma = 0.3``: ``T_c`` (mean over the repetitions, its s.e.) and ``tau_2 / 2`` of 003 eq. 9."""

    lr: float
    fitted: float
    predicted: float
    fitted_stderr: float = math.nan


@dataclass(frozen=True)
class MomentumResults:
    """Everything the page shows: the UV study per activation, matrix sensing, the classifier, the theory."""

    uv: dict[str, UVStudyResult]
    sensing: MatrixSensingResult
    classifier: ClassifierResult
    seconds: dict[str, float]
    drift_times: tuple[DriftTime, ...] = ()
    exponent_gammas: np.ndarray | None = None     # grid of the exponent curves
    paper_exponent: np.ndarray | None = None      # max(2 - 2 gamma, gamma), the paper's law (ERRATA 003.8)

    def __post_init__(self) -> None:
        # the theory the page compares with, from the results when not given
        if not self.drift_times and "linear" in self.uv:
            object.__setattr__(self, "drift_times", drift_times(self.uv["linear"]))
        if self.exponent_gammas is None:
            grid = np.linspace(0.25, 0.95, 200)
            object.__setattr__(self, "exponent_gammas", grid)
            object.__setattr__(self, "paper_exponent", np.array([timescale_exponent(x) for x in grid]))


def drift_times(res: UVStudyResult) -> tuple[DriftTime, ...]:
    """``(eta, T_c over the repetitions, predicted tau_2 / 2)`` at ``gamma = 0.3`` (003 eq. 9)."""
    cfg = res.config
    out = []
    for p in res.points:
        if math.isclose(p.gamma, 0.3) and p.repetition == 0:
            fit = res.timescale_spread(p.gamma, p.lr)
            tau = uv_drift_time(p.lr, p.momentum, cfg.width, cfg.dataset_size, cfg.label_noise, 1.0) / 2
            out.append(DriftTime(p.lr, fit.mean, tau, fit.stderr))
    return tuple(out)


def _uv_rows(results: MomentumResults) -> list[Row]:
    """Rows: alpha below 2/3 against eq. 7, above 2/3 against the paper's claim (ERRATA 003.8), T_c and C.

    Each row carries the standard error over the repetitions, so a row inside its noise is ``reported``.
    """
    rows = []
    for name, res in results.uv.items():
        for g in res.config.gammas:
            est = res.alpha_spread.get(gamma_key(g))
            # near 2/3 neither law is asymptotic on this eta grid: the point is shown, not judged
            if est is None or not (g in DRIFT_GAMMAS or g > OPTIMAL_EXPONENT + 0.05):
                continue
            ci = f"95% CI [{est.interval[0]:.3g}, {est.interval[1]:.3g}] over {len(est.values)} seeds"
            if g in DRIFT_GAMMAS:
                rows.append(Row(f"alpha(gamma={gamma_key(g)}), {name} first layer", 2 * (1 - g), est.mean,
                                0.05, f"2(1 - gamma), 003 eq. 7; {ci}", measured_stderr=est.stderr))
            else:
                rows.append(Row(f"alpha(gamma={gamma_key(g)}), {name} first layer", g, est.mean, 0.10,
                                f"the paper's alpha = gamma above 2/3 (003 L142/L171); ERRATA 003.8 measured "
                                f"0.6-0.7, so 'fails' is a possible, legitimate outcome; {ci}",
                                measured_stderr=est.stderr))
    rows += [Row(f"decay time of |u|^2+|v|^2, gamma=0.3, eta={d.lr:.3g} [steps]", d.predicted, d.fitted, 0.10,
                 "tau_2/2 of 003 eq. 9 (drift governs at gamma=0.3)", measured_stderr=d.fitted_stderr)
             for d in results.drift_times]
    lin = results.uv.get("linear")
    if lin is not None and lin.constant_spread is not None:
        ci = lin.constant_spread.interval
        rows.append(Row("C (common T_0, linear)", lin.theoretical_constant, lin.constant,
                        note=f"eq. 10; the paper fits 0.2 against 0.17; 95% CI [{ci[0]:.3g}, {ci[1]:.3g}]",
                        measured_stderr=lin.constant_spread.stderr))
    return rows


def _run_parts(config: MomentumConfig, results: Path) -> None:
    """Each part once (a stored part is not recomputed); wall seconds kept in ``seconds``."""
    seconds = load_record(results, "seconds", dict) if record_exists(results, "seconds") else {}
    parts = (("uv", "vector UV (3 activations)", lambda: run_activation_sweep(config.uv, config.activations)),
             ("sensing", "matrix sensing", lambda: run_matrix_sensing(config.sensing)),
             ("classifier", "classifier", lambda: run_classifier_study(config.classifier)))
    for name, label, job in parts:
        if not record_exists(results, name):
            t = time.perf_counter()
            save_record(results, name, job())
            seconds[label] = time.perf_counter() - t
            save_record(results, "seconds", seconds)


def load_momentum(run_dir: Path | str) -> MomentumResults:
    """The stored results of a momentum run directory, typed."""
    results = Path(run_dir) / "results"
    if not record_exists(results, "classifier"):
        raise ValueError(f"RUN_DIR={str(run_dir)!r} holds no finished momentum study (no results/): run "
                         "'sgd-dynamics momentum report' first")
    return MomentumResults(load_record(results, "uv", dict[str, UVStudyResult]),
                           load_record(results, "sensing", MatrixSensingResult),
                           load_record(results, "classifier", ClassifierResult),
                           load_record(results, "seconds", dict))


def momentum_rows(results: MomentumResults) -> list[Row]:
    """The verdicts of the momentum study, in the order of the page's summary table."""
    rows = _uv_rows(results)
    cl = results.classifier
    rows.append(sensing_row(results.sensing))
    rows.append(_classifier_row(cl))
    return rows


# ERRATA 003.6 leaves a factor 2 in the drift of 003 eq. 129 open, so C (and 1 - beta*) is known only up to
# 2^(1/3) = 1.26: a tolerance below 26% would judge the factor, not the scaling law.
SENSING_TOLERANCE = 0.3


def sensing_row(ms: MatrixSensingResult) -> Row:
    """``1 - beta*`` against ``C eta^(2/3)``; ``reported`` (not judged) while 2 s.e. exceed the tolerance."""
    opt = ms.optimum
    lo, hi = (1 - opt.best_momentum_interval[1], 1 - opt.best_momentum_interval[0])
    how = "parabola vertex in log(1 - beta) of log t" if opt.interior else "grid argmin (no interior vertex)"
    if not opt.reached.any():   # nothing to locate: the grid's first point would be a number without meaning
        how = "no beta reached the floor, not measured"
    return Row("matrix sensing: 1 - beta*", ms.predicted_constant * ms.config.lr**OPTIMAL_EXPONENT,
               1 - opt.best_momentum, SENSING_TOLERANCE,
               note=f"{how}, {opt.confidence:.0%} CI [{lo:.4g}, {hi:.4g}] over {ms.config.replicas} "
                    f"replicas; {int(opt.reached.sum())}/{opt.reached.size} beta reach the floor "
                    "(ERRATA 003.6)",
               measured_stderr=opt.one_minus_best_stderr)


def _classifier_row(cl: ClassifierResult) -> Row:
    """``gamma*`` against 2/3, with the standard error of the replica resampling.

    The tolerance 0.2 is "closer to 2/3 than to 1": ``|2/3 - g| <= 0.2 g`` holds for ``g`` in [0.56, 5/6].
    The row is ``reported`` while 2 s.e. exceed it.
    """
    ci = cl.exponent_interval
    fitted = ", ".join(f"{e:g}" for e in cl.fitted_lrs) or "none"
    need = (f"; width {cl.config.target_width:g} needs ~{cl.replicas_needed} replicas per eta or "
            f"~{cl.lrs_needed} learning rates" if cl.replicas_needed is not None else "")
    return Row("classifier: gamma*", OPTIMAL_EXPONENT, cl.exponent, tolerance=0.2,
               measured_stderr=cl.exponent_stderr,
               note=f"95% CI [{ci[0]:.3g}, {ci[1]:.3g}] from {cl.config.replicas} replicas, bracketed eta: "
               f"{fitted}{need}")


def run_momentum(config: MomentumConfig, run_dir: Path | str, force: bool = False) -> Path:
    """Run (or continue) the three studies in ``run_dir``, write its ``summary.json``; returns ``run_dir``."""
    with RunDirectory.open(run_dir, "momentum", config, force=force) as run:
        with run.stage("momentum studies"):
            _run_parts(config, run.path / "results")
        run.write_summary(momentum_rows(load_momentum(run.path)))
    return Path(run_dir)


def momentum_config(run_dir: Path | str) -> MomentumConfig:
    """The stored configuration of a momentum run directory."""
    return read_config(run_dir, MomentumConfig)
