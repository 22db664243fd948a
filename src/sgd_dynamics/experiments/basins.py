"""The escape and basin-selection study (chapter 004, issue 7) in one run directory.

``run_basins(config, run_dir) -> run directory -> write_basins_report(run_dir)``. It runs
:func:`sgd_dynamics.experiments.escape_study.run_escape_study` (Arrhenius, exit-time law, basin occupation,
annealing) and the time-scale studies of :mod:`sgd_dynamics.experiments.timescales` (autocorrelation vs
spectral gap, rate matrix) and the checks of the chapter's theorems
(:mod:`sgd_dynamics.experiments.theorem_checks`, issue 16), computes the theory curves the figures draw
(:class:`BasinsCurves`: exact MFPT by quadrature and Kramers on a temperature grid, ERRATA 004.4; the Gibbs
and SGD-noise occupations, ERRATA 004.3; the landscape's energy map), and stores all of it as typed records
in ``RUN_DIR/results/``. :func:`basins_rows` gives the verdicts of ``summary.json`` and of the page's
summary table; every simulated number in them carries its standard error (``measured_stderr``, so no verdict
is given inside the noise, and ``± SE`` in the note) and every deterministic one says it is exact (issue 16).
Two runs are compared number by number with :mod:`sgd_dynamics.experiments.seed_spread`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics.config_schema import setting, validate
from sgd_dynamics.experiments import theorem_checks
from sgd_dynamics.experiments.basin_selection import (
    SGD_ELIMINATION_ALLOWANCE,
    quadrature_occupation,
    sgd_noise_occupation,
)
from sgd_dynamics.experiments.escape_study import (
    DOUBLE_WELL,
    EscapeStudy,
    EscapeStudyConfig,
    run_escape_study,
)
from sgd_dynamics.experiments.theorem_checks import TheoremChecks, spread_note, theorem_rows
from sgd_dynamics.experiments.timescales import (
    AutocorrelationStudy,
    RateMatrixStudy,
    autocorrelation_study,
    rate_matrix_study,
)
from sgd_dynamics.store import RunDirectory, load_record, read_config, record_exists, save_record
from sgd_dynamics.theory.escape import kramers_time, mean_first_passage_time
from sgd_dynamics.theory.potential import parse_potential
from sgd_dynamics.verdicts import Row

__all__ = ["BasinsConfig", "BasinsCurves", "BasinsResults", "basins_curves", "basins_rows", "load_basins",
           "run_basins"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class BasinsConfig:
    """The escape study's configuration (table ``[escape]``), the seed, and the time-scale studies' size."""

    escape: EscapeStudyConfig = setting(help="temperatures, replicas and steps of the escape study",
                                        default_factory=EscapeStudyConfig)
    seed: int = setting(0, "random seed of every part", minimum=0)
    quick_timescales: bool = setting(False, "reduced autocorrelation and rate-matrix studies")

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def quick(cls, seed: int = 0) -> BasinsConfig:
        """The reduced configuration (seconds, not minutes)."""
        return cls(escape=EscapeStudyConfig.quick(), seed=seed, quick_timescales=True)


@dataclass(frozen=True)
class BasinsCurves:
    """Theory curves of the figures, on grids finer than the simulated temperatures."""

    arrhenius_temperatures: Array
    exact_to_top: Array          # exact MFPT -1 -> 0 (quadrature)
    exact_well_to_well: Array    # exact MFPT -1 -> +1
    kramers: Array               # Kramers -1 -> 0 over the barrier
    occupation_temperatures: Array
    gibbs_occupation: Array      # quadrature
    sgd_occupation: Array        # transverse coordinate eliminated (SGD-shaped noise)
    map_grid: Array
    energy_map: Array            # U(x, y) of the sharp/wide landscape on map_grid x map_grid


@dataclass(frozen=True)
class BasinsResults:
    """Everything the basins page shows."""

    study: EscapeStudy
    curves: BasinsCurves
    autocorrelation: AutocorrelationStudy
    rate_matrix: RateMatrixStudy
    theorems: TheoremChecks | None = None  # absent from run directories written before issue 16


def basins_curves(study: EscapeStudy) -> BasinsCurves:
    """The theory curves of the Arrhenius and occupation figures, from the theory layer."""
    U = parse_potential(DOUBLE_WELL)
    a, o = study.arrhenius, study.occupation
    grid = np.linspace(a.temperatures.min() * 0.9, a.temperatures.max() * 1.05, 60)
    temps = np.linspace(o.temperatures.min() * 0.8, o.temperatures.max() * 1.1, 30)
    g = np.linspace(-1.8, 1.8, 241)
    X, Y = np.meshgrid(g, g, indexing="ij")
    land = o.landscape
    return BasinsCurves(
        grid, np.array([mean_first_passage_time(U, T, -1.0, 0.0) for T in grid]),
        np.array([mean_first_passage_time(U, T, -1.0, 1.0) for T in grid]),
        np.array([kramers_time(U, T, -1.0, 0.0) for T in grid]), temps,
        np.array([quadrature_occupation(land, T) for T in temps]),
        np.array([sgd_noise_occupation(land, T) for T in temps]), g,
        np.asarray(land.potential.energy(np.stack([X, Y], -1)), np.float64))


def _run_parts(config: BasinsConfig, results: Path) -> None:
    """Each part once; a stored part is not recomputed."""
    if not record_exists(results, "escape"):
        study = run_escape_study(config=config.escape, seed=config.seed)
        save_record(results, "curves", basins_curves(study))
        save_record(results, "escape", study)
    for name, job in (("autocorrelation", autocorrelation_study), ("rate_matrix", rate_matrix_study)):
        if not record_exists(results, name):
            save_record(results, name, job(config.quick_timescales, config.seed))
    if not record_exists(results, "theorems"):
        checks = theorem_checks.run_theorem_checks(config.quick_timescales, config.seed)
        save_record(results, "theorems", checks)


def load_basins(run_dir: Path | str) -> BasinsResults:
    """The stored results of a basins run directory, typed."""
    results = Path(run_dir) / "results"
    if not record_exists(results, "rate_matrix"):
        raise ValueError(f"RUN_DIR={str(run_dir)!r} holds no finished basins study (no results/): run "
                         "'sgd-dynamics basins' first")
    return BasinsResults(load_record(results, "escape", EscapeStudy),
                         load_record(results, "curves", BasinsCurves),
                         load_record(results, "autocorrelation", AutocorrelationStudy),
                         load_record(results, "rate_matrix", RateMatrixStudy),
                         load_record(results, "theorems", TheoremChecks)
                         if record_exists(results, "theorems") else None)


def run_basins(config: BasinsConfig, run_dir: Path | str, force: bool = False) -> Path:
    """Run (or continue) the basins study in ``run_dir``, write its ``summary.json``; returns ``run_dir``."""
    with RunDirectory.open(run_dir, "basins", config, force=force) as run:
        with run.stage("escape and time scales"):
            _run_parts(config, run.path / "results")
        done = load_basins(run.path)
        run.write_summary(basins_rows(done.study, done.rate_matrix, done.theorems, done.autocorrelation))
    return Path(run_dir)


def basins_config(run_dir: Path | str) -> BasinsConfig:
    """The stored configuration of a basins run directory."""
    return read_config(run_dir, BasinsConfig)


# ----------------------------------------------------------------------------------------------- verdicts

def _arrhenius_rows(study: EscapeStudy) -> list[Row]:
    a, n = study.arrhenius, study.config.exit_replicas
    rows = [Row(f"MFPT -1→0 at T={T:g}", float(e), float(m), tolerance=float(3 * s / m),
                measured_stderr=float(s),
                note=spread_note(float(s), f"over {n} replicas") + "; exact quadrature vs Monte Carlo; "
                "tolerance 3 SE")
            for T, m, s, e in zip(a.temperatures, a.mc_mean, a.mc_stderr, a.exact, strict=True)]
    slope, se = a.fit_mc.barrier, a.mc_slope_stderr
    rows.append(Row("Arrhenius slope: exact quadrature vs Monte Carlo", a.fit_exact.barrier, slope,
                    tolerance=3 * se / abs(slope), measured_stderr=se,
                    note=spread_note(se, "propagated from the exit times") + "; tolerance 3 SE"))
    rows.append(Row("Arrhenius slope: barrier dU vs Monte Carlo", a.barrier, slope, measured_stderr=se,
                    note=spread_note(se, "propagated from the exit times") + "; a T → 0 statement"))
    i = int(np.argsort(a.temperatures)[0])
    rows.append(Row(f"Kramers vs exact well-to-well at T={a.temperatures[i]:g}", float(a.kramers[i]),
                    float(a.exact_well_to_well[i]),
                    note=spread_note(None, "quadrature") + "; Kramers is asymptotic as T → 0"))
    return rows


def _occupation_rows(study: EscapeStudy) -> list[Row]:
    o, rows = study.occupation, []
    over = f"binomial, {study.config.occupation_replicas} replicas"
    for T, q, lp, iso, sgd, sp in zip(o.temperatures, o.quadrature, o.laplace, o.isotropic, o.sgd,
                                      o.sgd_prediction, strict=True):
        rows.append(Row(f"P(wide), isotropic, T={T:g}", float(q), float(iso.wide),
                        tolerance=float(3 * iso.stderr / iso.wide), measured_stderr=float(iso.stderr),
                        note=spread_note(float(iso.stderr), over) + "; Gibbs quadrature vs simulation; "
                        "tolerance 3 SE"))
        rows.append(Row(f"P(wide), Laplace vs quadrature, T={T:g}", float(lp), float(q),
                        note=spread_note(None, "quadrature") + "; Laplace is the T → 0 limit"))
        rows.append(Row(f"P(wide), SGD-shaped noise, T={T:g}", float(sp), float(sgd.wide),
                        tolerance=float((3 * sgd.stderr + SGD_ELIMINATION_ALLOWANCE) / sgd.wide),
                        measured_stderr=float(sgd.stderr),
                        note=spread_note(float(sgd.stderr), over) + "; y eliminated, exp(-F/T), vs "
                        "simulation; tolerance 3 SE + "
                        f"{SGD_ELIMINATION_ALLOWANCE:g} (measured elimination error; isotropic Gibbs: "
                        f"{q:.3f})"))
    return rows


def _annealing_rows(study: EscapeStudy) -> list[Row]:
    rows, over = [], f"binomial, {study.annealing.replicas} replicas"
    for o in study.annealing.outcomes:
        if o.kind == "constant":
            rows.append(Row("annealing: constant T0, deep-basin fraction", o.gibbs_fraction, o.deep_fraction,
                            tolerance=3 * o.stderr / max(o.deep_fraction, 1e-12), measured_stderr=o.stderr,
                            note=spread_note(o.stderr, over) + "; Gibbs quadrature vs simulation; "
                            "tolerance 3 SE"))
        else:
            rows.append(Row(f"annealing: {o.kind}, deep-basin fraction", o.gibbs_fraction, o.deep_fraction,
                            measured_stderr=o.stderr,
                            note=spread_note(o.stderr, over) + f"; Gibbs at the final T = "
                            f"{o.final_temperature:.3g}; freezing keeps it below"))
    return rows


def _time_fraction_rows(rates: RateMatrixStudy | None) -> list[Row]:
    f = None if rates is None else rates.time_fractions
    if f is None:
        return []
    return [Row(f"rate matrix: time fraction in well {i}, master equation from the same start",
                float(p), float(m), tolerance=float(3 * e / m), measured_stderr=float(e),
                note=spread_note(float(e), "over replica groups") + f"; (1/t) int p(0) exp(Q s) ds; "
                f"{f.hops_per_replica:.1f} hops per replica, so not the stationary law {s:.3f}; "
                "tolerance 3 SE")
            for i, (p, m, e, s) in enumerate(zip(f.master_equation, f.measured, f.stderr, f.stationary,
                                                 strict=True))]


def _autocorrelation_rows(study: AutocorrelationStudy | None) -> list[Row]:
    rows: list[Row] = []
    for p in () if study is None else study.points:
        over = f"jackknife over replica groups of {study.replicas} trajectories"
        rate, tau = p.decay_rate, p.integrated_time
        rows.append(Row(f"autocorrelation decay rate at T={p.temperature:g}: Fokker–Planck gap vs fit",
                        p.fokker_planck_gap, rate.value, tolerance=3 * rate.stderr / abs(rate.value),
                        measured_stderr=rate.stderr,
                        note=spread_note(rate.stderr, over) + f"; fit on t in {study.fit_window}; "
                        "tolerance 3 SE"))
        rows.append(Row(f"integrated autocorrelation time at T={p.temperature:g}: Fokker–Planck vs "
                        "trajectories",
                        p.predicted_integrated_time, tau.value, tolerance=3 * tau.stderr / abs(tau.value),
                        measured_stderr=tau.stderr, note=spread_note(tau.stderr, over) + "; tolerance 3 SE"))
    return rows


def _hop_rate_rows(rates: RateMatrixStudy | None) -> list[Row]:
    if rates is None:
        return []
    e = rates.edges
    return [Row(f"rate matrix: hop rate {i}->{j} at T={rates.temperature:g}, exact 1-D vs counted",
                float(x), float(m), tolerance=float(3 * se / m), measured_stderr=float(se),
                note=spread_note(float(se), f"Poisson, {n} transitions")
                + f"; Eyring–Kramers {float(k):.3g}; tolerance 3 SE")
            for i, j, x, m, se, n, k in zip(*e, rates.exact.generator[e], rates.measured.generator[e],
                                            rates.measured.stderr[e], rates.measured.counts[e],
                                            rates.eyring_kramers.generator[e], strict=True)]


def basins_rows(study: EscapeStudy, rate_matrix: RateMatrixStudy | None = None,
                theorems: TheoremChecks | None = None,
                autocorrelation: AutocorrelationStudy | None = None) -> list[Row]:
    """Every verdict of the basins study, in the order of the page's summary table.

    Each measured number comes with its standard error (``measured_stderr``, and ``± SE`` in the note), so a
    row whose tolerance does not exceed twice it reads ``reported``; exact numbers say so in the note.
    """
    return [*_arrhenius_rows(study), *_occupation_rows(study), *_annealing_rows(study),
            *_autocorrelation_rows(autocorrelation), *_hop_rate_rows(rate_matrix),
            *_time_fraction_rows(rate_matrix), *([] if theorems is None else theorem_rows(theorems))]
