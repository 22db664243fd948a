"""Report sections for the time-scales studies (chapter 004; ERRATA 004.4, 004.6).

:func:`timescale_sections` formats the two studies of :mod:`sgd_dynamics.experiments.timescales` (as stored
by :func:`sgd_dynamics.experiments.basins.run_basins`) into two
:class:`~sgd_dynamics.report.html.ReportSection` objects, the escape report's ``extra_sections``:

1. autocorrelation of ``x`` in the double well against the Fokker–Planck prediction, and the fitted decay rate
   against the operator's spectral gap at each temperature;
2. the basin-to-basin rate matrix of a three-well potential counted along trajectories against the exact 1-D
   rates and the Eyring–Kramers rates, with the Eyring–Kramers / exact ratio against temperature.

Each reading is written from the measured numbers, so a failed prediction reads as one.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from sgd_dynamics.experiments.timescales import (
    AutocorrelationStudy,
    RateMatrixStudy,
    autocorrelation_study,
    rate_matrix_study,
)
from sgd_dynamics.report.html import ReportSection, Table

_HOPS = ("0->1", "1->0", "1->2", "2->1")


def autocorrelation_figure(study: AutocorrelationStudy) -> Figure:
    """Left: measured ``rho(t)`` (dots) and the operator's prediction (lines); right: fitted rate vs gap."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, p in enumerate(study.points):
        color = f"C{i}"
        keep = p.measured > 0
        step = max(1, p.lags.size // 120)
        left.semilogy(p.lags[keep][::step], p.measured[keep][::step], ".", color=color, ms=3,
                      label=f"measured, T={p.temperature:g}")
        left.semilogy(p.lags, p.predicted, "-", color=color, lw=1,
                      label=f"Fokker–Planck, T={p.temperature:g}")
    for edge in study.fit_window:
        left.axvline(edge, color="k", lw=0.6, ls=":")
    left.set_ylim(1e-3, 1.2)
    left.set_xlim(0, 5 * max(p.predicted_integrated_time for p in study.points))
    left.set_xlabel("lag t")
    left.set_ylabel(r"autocorrelation of $x$")
    left.set_title(r"$U=(x^2-1)^2$; dotted: fit window")
    left.legend(fontsize=7)
    T = np.array([p.temperature for p in study.points])
    right.errorbar(T, [p.decay_rate.value for p in study.points],
                   yerr=[3 * p.decay_rate.stderr for p in study.points],
                   fmt="o", capsize=3, label="fitted decay rate (±3 SE)")
    right.plot(T, [p.fokker_planck_gap for p in study.points], "s-", mfc="none", label=r"FP gap $\lambda_1$")
    right.plot(T, [p.eyring_kramers_rate for p in study.points], "^--", mfc="none",
               label="Eyring–Kramers $k_{LR}+k_{RL}$")
    right.set_yscale("log")
    right.set_xlabel("temperature T")
    right.set_ylabel("rate")
    right.legend(fontsize=8)
    return fig


def rate_matrix_figure(study: RateMatrixStudy) -> Figure:
    """Left: the four hop rates counted (±3 SE), exact and Eyring–Kramers; right: EK / exact vs ``T``."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    e = study.edges
    pos = np.arange(len(_HOPS))
    left.errorbar(pos - 0.1, study.measured.generator[e], yerr=3 * study.measured.stderr[e], fmt="o",
                  capsize=3,
                  label="counted (milestoning, ±3 SE)")
    left.plot(pos, study.exact.generator[e], "s", mfc="none", ms=8, label="exact 1-D (quadrature)")
    left.plot(pos + 0.1, study.eyring_kramers.generator[e], "^", mfc="none", ms=8, label="Eyring–Kramers")
    left.set_xticks(pos, _HOPS)
    left.set_xlabel("hop between wells (0: x≈-2, 1: x≈0, 2: x≈2)")
    left.set_ylabel("rate")
    left.set_title(f"three wells, T={study.temperature:g}")
    left.legend(fontsize=8)
    for k, hop in enumerate(_HOPS):
        right.plot(study.ratio_temperatures, study.ratio_eyring_kramers_to_exact[:, k], "o-", ms=3, label=hop)
    right.axhline(1.0, color="k", lw=0.6)
    right.set_xlabel("temperature T")
    right.set_ylabel("Eyring–Kramers / exact rate")
    right.set_xlim(0, None)
    right.legend(fontsize=8)
    return fig


def _autocorrelation_section(study: AutocorrelationStudy) -> ReportSection:
    ratios = [p.decay_rate.value / p.fokker_planck_gap for p in study.points]
    z = [(p.decay_rate.value - p.fokker_planck_gap) / p.decay_rate.stderr for p in study.points]
    holds = all(abs(v) <= 3 for v in z)
    per_t = ", ".join(f"{p.decay_rate.value:.4g} ± {p.decay_rate.stderr:.2g} vs {p.fokker_planck_gap:.4g} at "
                      f"T={p.temperature:g}" for p in study.points)
    reading = (f"The autocorrelation of x along {study.replicas} stationary trajectories of length "
               f"{study.duration:g} decays on the fit window t in {study.fit_window} at rates {per_t} "
               f"(fitted / Fokker–Planck gap = {', '.join(f'{r:.3f}' for r in ratios)}), and the measured "
               "curve follows "
               "the operator's eigen-expansion. "
               + ("So the trajectory gap agrees with the operator's gap within 3 standard errors at every "
                  "temperature." if holds else
                  f"The trajectory gap misses the operator's gap by up to {max(abs(v) for v in z):.1f} "
                  "standard errors, so the agreement fails at this resolution."))
    rows = tuple((p.temperature, p.decay_rate.value, p.decay_rate.stderr, p.fokker_planck_gap,
                  p.eyring_kramers_rate, p.integrated_time.value, p.integrated_time.stderr,
                  p.predicted_integrated_time) for p in study.points)
    table = Table(("T", "fitted rate", "SE", "FP gap", "EK rate", "tau_int", "SE", "FP tau_int"), rows,
                  caption=f"Euler–Maruyama dt={study.dt:g}; jackknife standard errors over replica groups")
    return ReportSection("Autocorrelation decay against the Fokker–Planck spectral gap", reading,
                         figure=autocorrelation_figure(study), table=table, name="timescales_autocorrelation")


def _rate_matrix_section(study: RateMatrixStudy) -> ReportSection:
    e = study.edges
    meas, se = study.measured.generator[e], study.measured.stderr[e]
    exact, ek = study.exact.generator[e], study.eyring_kramers.generator[e]
    z = (meas - exact) / se
    low = study.ratio_temperatures.argmin()
    holds = bool(np.all(np.abs(z) <= 3))
    reading = (f"Counting core-to-core transitions (cores of radius {study.core_radius:g}) over a total "
               f"time of {study.total_time:.3g} gives hop rates {', '.join(f'{m:.3g}' for m in meas)} for "
               f"{', '.join(_HOPS)}, against exact 1-D rates {', '.join(f'{x:.3g}' for x in exact)} "
               f"(largest deviation {np.abs(z).max():.1f} standard errors) and Eyring–Kramers rates "
               f"{', '.join(f'{x:.3g}' for x in ek)}, which are {100 * (ek / exact - 1).min():.0f}–"
               f"{100 * (ek / exact - 1).max():.0f}% too fast at T={study.temperature:g}. "
               + ("The counted rates agree with the exact ones within 3 standard errors"
                  if holds else "The counted rates disagree with the exact ones beyond 3 standard errors")
               + f", and the Eyring–Kramers error shrinks like O(T), to "
               f"{100 * np.abs(study.ratio_eyring_kramers_to_exact[low] - 1).max():.1f}% at "
               f"T={study.ratio_temperatures[low]:g}.")
    rows = tuple((hop, int(study.measured.counts[e][k]), float(meas[k]), float(se[k]), float(exact[k]),
                  float(ek[k]), float(z[k]))
                 for k, hop in enumerate(_HOPS))
    table = Table(("hop", "transitions", "counted rate", "SE", "exact rate", "Eyring–Kramers", "z vs exact"),
                  rows, caption=_fractions_caption(study))
    return ReportSection("Basin-to-basin rate matrix: counted against predicted", reading,
                         figure=rate_matrix_figure(study), table=table, name="timescales_rate_matrix")


def _fractions_caption(study: RateMatrixStudy) -> str:
    """Time fractions beside the master equation from the same start; ``pi`` only as the law not reached."""
    f = study.time_fractions
    if f is None:
        pim = ", ".join(f"{p:.3f}" for p in study.measured.residence / study.measured.residence.sum())
        return f"measured time fractions by last core: ({pim}); no master-equation comparison stored"
    def fmt(v: np.ndarray) -> str:
        return ", ".join(f"{p:.3f}" for p in v)
    z = np.abs(f.measured - f.master_equation) / f.stderr
    measured = ", ".join(f"{p:.3f}±{e:.3f}" for p, e in zip(f.measured, f.stderr, strict=True))
    return (f"time fractions by last core over the run: ({measured}) against the master equation "
            f"(1/t) int p(0) exp(Q s) ds from the same start p(0) = ({fmt(f.start)}): "
            f"({fmt(f.master_equation)}), largest deviation {z.max():.1f} SE. With {f.hops_per_replica:.1f} "
            f"hops per replica the run is a transient: the exact stationary law ({fmt(f.stationary)}) is not "
            "reached and is not what the fractions estimate")


def timescale_sections(*, autocorrelation: AutocorrelationStudy | None = None,
                       rate_matrix: RateMatrixStudy | None = None, quick: bool = False, seed: int = 0
                       ) -> list[ReportSection]:
    """The report sections (autocorrelation, rate matrix) of the two time-scales studies.

    Pass the studies a run directory holds. Without them both are run here (``quick``, ``seed``): kept only
    so older callers work; the basins study stores them (:func:`sgd_dynamics.experiments.basins.run_basins`).
    """
    if autocorrelation is None:
        autocorrelation = autocorrelation_study(quick, seed)
    if rate_matrix is None:
        rate_matrix = rate_matrix_study(quick, seed)
    return [_autocorrelation_section(autocorrelation), _rate_matrix_section(rate_matrix)]
