"""Run-to-run spread of the basins study: its simulated numbers with their intervals, and two runs compared.

Issue 16 item 1: every fitted or simulated number of the basins page carries a standard error (over
replicas, replica groups, counted transitions, a jackknife or a bootstrap, or propagated through a fit), and
two runs with different seeds must agree within those intervals. :func:`fitted_numbers` lists the numbers of
a study (or of any of its parts) as :class:`FittedNumber` records, named by what defines them (temperature,
simulated time, fit range) but not by the sample size or the step, so a quick and a full run are compared on
the quantities they share. :func:`seed_agreement` pairs two lists by name and gives each pair's
``z = (a - b) / sqrt(se_a^2 + se_b^2)``, which is standard normal when both intervals are right.

Deterministic numbers (quadrature, Fokker–Planck operators, the discrete Lyapunov equation) are not listed:
they are exact and the same for every seed (the theorem checks draw their problem instances from a fixed
seed, :data:`sgd_dynamics.experiments.theorem_checks.INSTANCE_SEED`). The rate study's time fractions are a
transient from a random start, so they enter as the residual from the master equation from that start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sgd_dynamics.experiments.basins import BasinsResults
from sgd_dynamics.experiments.escape_study import EscapeStudy, arrhenius_slope_stderr
from sgd_dynamics.experiments.theorem_checks import ManyWellsCheck, StabilityCheck, TheoremChecks
from sgd_dynamics.experiments.timescales import AutocorrelationStudy, RateMatrixStudy

__all__ = ["FittedNumber", "SeedComparison", "basins_fitted_numbers", "fitted_numbers", "seed_agreement"]


@dataclass(frozen=True)
class FittedNumber:
    """A simulated or fitted number of the basins page, with its standard error."""

    name: str
    value: float
    stderr: float


@dataclass(frozen=True)
class SeedComparison:
    """The same number from two runs."""

    name: str
    first: FittedNumber
    second: FittedNumber

    @property
    def z(self) -> float:
        """``(a - b) / sqrt(se_a^2 + se_b^2)``: standard normal when both runs' intervals are right."""
        return (self.first.value - self.second.value) / math.hypot(self.first.stderr, self.second.stderr)


def _escape_numbers(study: EscapeStudy) -> list[FittedNumber]:
    a, o, ann = study.arrhenius, study.occupation, study.annealing
    out = [FittedNumber(f"MFPT -1→0 at T={T:g}", float(m), float(s))
           for T, m, s in zip(a.temperatures, a.mc_mean, a.mc_stderr, strict=True)]
    temps = ", ".join(f"{T:g}" for T in np.sort(a.temperatures))
    out.append(FittedNumber(f"Arrhenius slope over T = {temps}", a.fit_mc.barrier,
                            arrhenius_slope_stderr(a.temperatures, a.mc_mean, a.mc_stderr)))
    out += [FittedNumber(f"exit-time std/mean at T={T:g}", s.coefficient_of_variation,
                         s.coefficient_of_variation_stderr)
            for T, s in zip(a.temperatures, a.exit_statistics, strict=True)
            if math.isfinite(s.coefficient_of_variation_stderr)]
    for T, iso, sgd in zip(o.temperatures, o.isotropic, o.sgd, strict=True):
        out += [FittedNumber(f"P(wide), isotropic, T={T:g}", iso.wide, iso.stderr),
                FittedNumber(f"P(wide), SGD-shaped noise, T={T:g}", sgd.wide, sgd.stderr)]
    out += [FittedNumber(f"annealing, {x.kind}: deep-basin fraction at t = {ann.n_steps * ann.dt:g}",
                         x.deep_fraction, x.stderr) for x in ann.outcomes]
    return out


def _autocorrelation_numbers(study: AutocorrelationStudy) -> list[FittedNumber]:
    out = []
    for p in study.points:
        out += [FittedNumber(f"autocorrelation decay rate at T={p.temperature:g}", p.decay_rate.value,
                             p.decay_rate.stderr),
                FittedNumber(f"integrated autocorrelation time at T={p.temperature:g}",
                             p.integrated_time.value, p.integrated_time.stderr)]
    return out


def _rate_numbers(study: RateMatrixStudy) -> list[FittedNumber]:
    e = study.edges
    out = [FittedNumber(f"hop rate {i}->{j} at T={study.temperature:g}", float(k), float(s))
           for i, j, k, s in zip(*e, study.measured.generator[e], study.measured.stderr[e], strict=True)]
    f = study.time_fractions
    if f is not None:
        out += [FittedNumber(f"time fraction in well {i} minus the master equation from the same start",
                             float(m - p), float(s))
                for i, (m, p, s) in enumerate(zip(f.measured, f.master_equation, f.stderr, strict=True))]
    return out


def _stability_numbers(s: StabilityCheck) -> list[FittedNumber]:
    return [FittedNumber(f"Theorem 9: E||delta_K||^2 at eta = 1.05 eta_c, K = {s.mc_steps}",
                         s.mc_second_moment, s.mc_stderr)]


def _many_wells_numbers(w: ManyWellsCheck) -> list[FittedNumber]:
    out = []
    for i, T in enumerate(w.temperatures):
        out += [FittedNumber(f"Theorem 10: hop rate per coordinate at T={T:.3g}", float(w.hop_rate[i]),
                             float(w.hop_stderr[i])),
                FittedNumber(f"Theorem 10: Var L at T={T:.3g}", float(w.loss_variance[i]),
                             float(w.loss_variance_stderr[i]))]
        if w.relaxation_stderr is not None:
            out.append(FittedNumber(f"Theorem 10: loss relaxation time at T={T:.3g}",
                                    float(w.relaxation_time[i]), float(w.relaxation_stderr[i])))
    return out


def fitted_numbers(*, study: EscapeStudy | None = None, autocorrelation: AutocorrelationStudy | None = None,
                   rate_matrix: RateMatrixStudy | None = None, stability: StabilityCheck | None = None,
                   many_wells: ManyWellsCheck | None = None) -> tuple[FittedNumber, ...]:
    """The simulated numbers of the parts given, each with its standard error."""
    out: list[FittedNumber] = []
    for part, numbers in ((study, _escape_numbers), (autocorrelation, _autocorrelation_numbers),
                          (rate_matrix, _rate_numbers), (stability, _stability_numbers),
                          (many_wells, _many_wells_numbers)):
        if part is not None:
            out += numbers(part)
    return tuple(out)


def basins_fitted_numbers(results: BasinsResults) -> tuple[FittedNumber, ...]:
    """Every simulated number of a basins page, with its standard error, from its loaded run directory."""
    t: TheoremChecks | None = results.theorems
    return fitted_numbers(study=results.study, autocorrelation=results.autocorrelation,
                          rate_matrix=results.rate_matrix, stability=None if t is None else t.stability,
                          many_wells=None if t is None else t.many_wells)


def seed_agreement(first: tuple[FittedNumber, ...], second: tuple[FittedNumber, ...]
                   ) -> tuple[SeedComparison, ...]:
    """The numbers both runs have (matched by name), paired in ``first``'s order.

    Raises ``ValueError`` when the two share no number, or when a standard error is not finite and positive
    (a zero interval cannot be compared).
    """
    by_name = {x.name: x for x in second}
    pairs = tuple(SeedComparison(x.name, x, by_name[x.name]) for x in first if x.name in by_name)
    if not pairs:
        raise ValueError("first and second share no fitted number: expected runs of the same study")
    for p in pairs:
        for run in (p.first, p.second):
            if not (math.isfinite(run.stderr) and run.stderr > 0):
                raise ValueError(f"stderr={run.stderr!r} of {p.name!r} is invalid: expected a finite "
                                 "standard error > 0")
    return pairs
