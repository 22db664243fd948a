"""The escape and basin-selection report (chapter 004, issue 7): one self-contained HTML page.

Figures, each with a two-sentence reading written from the measured numbers
(:mod:`sgd_dynamics.experiments.escape_study` computes them):

1. Arrhenius plot: Monte Carlo mean exit times against the exact MFPT by quadrature and Kramers
   (ERRATA 004.4), with the fitted slope against the barrier;
2. exit-time histograms against the exponential law of the same mean (KS test);
3. wide-basin occupation against temperature, Laplace vs quadrature vs simulation, for isotropic Langevin
   noise and SGD-shaped noise ``Sigma ∝ H`` (ERRATA 004.3) on the verified sharp/wide landscape, with the
   SGD-noise prediction (transverse coordinate eliminated,
   :func:`~sgd_dynamics.experiments.basin_selection.sgd_noise_occupation`);
4. annealing schedules (constant, step, cosine, ``c / log t``) and the fraction reaching the deeper basin.

:func:`write_basins_report` writes ``RUN_DIR/report.html`` from the run directory that
:func:`sgd_dynamics.experiments.basins.run_basins` wrote, with the time-scale sections of
:mod:`sgd_dynamics.report.timescale_figures` after these four; :func:`build_escape_report` formats a loaded
study and its theory curves (``extra_sections``, any :class:`~sgd_dynamics.report.html.ReportSection`, are
appended). Nothing here runs a simulation or a theory formula: the curves and verdicts come stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sgd_dynamics.experiments.basin_selection import SGD_ELIMINATION_ALLOWANCE, coefficient_of_variation
from sgd_dynamics.experiments.basins import BasinsCurves, basins_config, basins_rows, load_basins
from sgd_dynamics.experiments.escape_study import DOUBLE_WELL, EscapeStudy
from sgd_dynamics.report.html import ReportSection, Table, write_report
from sgd_dynamics.report.run_metadata import run_metadata
from sgd_dynamics.verdicts import Row

__all__ = ["REPORT_NAME", "SECTION_TITLES", "build_escape_report", "write_basins_report"]

REPORT_NAME = "report.html"
SECTION_TITLES = (
    "Arrhenius plot: mean exit time against 1/T",
    "Exit-time distributions against the exponential law",
    "Basin occupation against temperature: isotropic vs SGD-shaped noise",
    "Annealing schedules: reaching the deeper basin",
)
_COLORS = {"constant": "C0", "step": "C1", "cosine": "C2", "log": "C3"}


def write_basins_report(run_dir: Path | str) -> Path:
    """Write ``run_dir/report.html`` (figures in ``run_dir/figures``) from the stored basins study."""
    from sgd_dynamics.report.theorem_report import theorem_section
    from sgd_dynamics.report.timescale_figures import timescale_sections

    run_dir = Path(run_dir)
    results = load_basins(run_dir)
    extra = timescale_sections(autocorrelation=results.autocorrelation, rate_matrix=results.rate_matrix)
    if results.theorems is not None:
        extra.append(theorem_section(results.theorems))
    return build_escape_report(run_dir, results.study, results.curves, extra_sections=extra,
                               metadata=run_metadata(run_dir, basins_config(run_dir)),
                               summary=basins_rows(results.study, results.rate_matrix, results.theorems,
                                                   results.autocorrelation))


def _figure(ncols: int = 1, width: float = 4.4, height: float = 3.4):
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, np.atleast_1d(fig.subplots(1, ncols, squeeze=False)).ravel()


def _list(values, fmt: str = ".3f") -> str:
    return ", ".join(f"{v:{fmt}}" for v in values)


def _pm(values, errors, fmt: str = ".3f") -> str:
    """``v ± e`` for each pair: a measured number is never quoted without its standard error."""
    return ", ".join(f"{v:{fmt}} ± {e:{fmt}}" for v, e in zip(values, errors, strict=True))


def _mean_se(errors) -> float:
    """Standard error of the mean of independent estimates with these standard errors."""
    errors = np.asarray(errors, dtype=np.float64)
    return float(np.sqrt(np.sum(errors**2)) / errors.size)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------- 1. Arrhenius
def _arrhenius_figure(a, curves: BasinsCurves):
    """The figure of the section (theory curves as stored, simulation points)."""
    fig, (ax, ax_ratio) = _figure(2, width=4.8, height=3.8)
    inv = 1.0 / curves.arrhenius_temperatures
    ax.plot(
        inv,
        curves.exact_to_top,
        "k-",
        lw=1,
        label=r"exact MFPT $-1\to 0$ (quadrature)",
    )
    ax.plot(
        inv,
        curves.exact_well_to_well,
        "k--",
        lw=1,
        label=r"exact well-to-well $-1\to +1$",
    )
    ax.plot(inv, curves.kramers, ":", color="C3", lw=1.4, label="Kramers")
    ax.errorbar(
        1.0 / a.temperatures,
        a.mc_mean,
        yerr=2 * a.mc_stderr,
        fmt="o",
        color="C0",
        ms=4,
        capsize=2,
        label=r"Monte Carlo $-1\to 0$ ($\pm$2 SE)",
    )
    ax.plot(
        inv,
        np.exp(a.fit_mc.log_prefactor + a.fit_mc.barrier * inv),
        "-",
        color="C0",
        lw=0.8,
        alpha=0.7,
        label=f"fit: slope {a.fit_mc.barrier:.3f}",
    )
    ax.set(yscale="log", xlabel="1 / T", ylabel="mean exit time")
    ax.legend(fontsize=7)
    ratio = a.mc_mean / a.exact
    ax_ratio.errorbar(
        a.temperatures,
        ratio,
        yerr=2 * a.mc_stderr / a.exact,
        fmt="o",
        color="C0",
        ms=4,
        capsize=2,
        label="Monte Carlo / exact",
    )
    ax_ratio.plot(
        a.temperatures,
        a.kramers / a.exact_well_to_well,
        "s-",
        color="C3",
        ms=4,
        lw=1,
        label="Kramers / exact well-to-well",
    )
    ax_ratio.plot(
        a.temperatures,
        2 * a.exact / a.exact_well_to_well,
        "^-",
        color="grey",
        ms=4,
        lw=1,
        label="2 x MFPT to top / well-to-well",
    )
    ax_ratio.axhline(1.0, color="k", lw=0.6)
    ax_ratio.set(xlabel="T", ylabel="ratio")
    ax_ratio.legend(fontsize=7)
    return fig


def _arrhenius_section(study: EscapeStudy, curves: BasinsCurves) -> ReportSection:
    a = study.arrhenius
    fig = _arrhenius_figure(a, curves)
    ratio = a.mc_mean / a.exact

    z = (a.mc_mean - a.exact) / a.mc_stderr
    k_ratio = a.kramers / a.exact_well_to_well
    order = np.argsort(a.temperatures)
    k_sorted = k_ratio[order]
    approaching = bool(np.all(np.abs(1 - k_sorted[:-1]) < np.abs(1 - k_sorted[1:])))
    slope, se = a.fit_mc.barrier, a.mc_slope_stderr
    slope_ok = abs(slope - a.barrier) <= 3 * se
    mc_ok = bool(np.all(np.abs(z) < 3))
    reading = (
        f"Mean exit times of dx = -U'dt + sqrt(2T)dW from x=-1 to the barrier top of U=(x^2-1)^2 at "
        f"T = {_list(a.temperatures, 'g')} ({study.config.exit_replicas} replicas each) lie on a line in 1/T "
        f"with fitted slope {slope:.3f} ± {se:.3f} (barrier dU = {a.barrier:g}; the exact-quadrature times "
        "over "
        f"the same temperatures give {a.fit_exact.barrier:.3f}). "
        f"Monte Carlo/exact ratios are {_pm(ratio, a.mc_stderr / a.exact)} (± 1 SE; "
        f"{'all within' if mc_ok else 'not all within'} 3 "
        "standard "
        f"errors, largest |z| = {np.max(np.abs(z)):.1f}), the slope "
        f"{'agrees with' if slope_ok else 'differs from'} the barrier within 3 SE, and Kramers/exact "
        "well-to-well "
        f"is {k_sorted[0]:.3f} at T={a.temperatures[order[0]]:g} and {k_sorted[-1]:.3f} at "
        f"T={a.temperatures[order[-1]]:g}, "
        f"{'approaching 1 as T falls' if approaching else 'not monotone in T'} "
        f"(ERRATA 004.4)."
    )
    rows = tuple(
        (float(T), float(m), float(s), float(e), float(m / e), float(zz), float(w), float(k), float(k / w))
        for T, m, s, e, zz, w, k in zip(
            a.temperatures, a.mc_mean, a.mc_stderr, a.exact, z, a.exact_well_to_well, a.kramers, strict=True
        )
    )
    table = Table(
        (
            "T",
            "MC mean -1→0",
            "SE",
            "exact -1→0",
            "MC/exact",
            "z",
            "exact -1→+1",
            "Kramers",
            "Kramers/exact -1→+1",
        ),
        rows,
    )
    return ReportSection(SECTION_TITLES[0], reading, figure=fig, table=table, name="arrhenius")


# ----------------------------------------------------------------------------------- 2. exit-time law
def _exit_time_section(study: EscapeStudy) -> ReportSection:
    a = study.arrhenius
    order = np.argsort(a.temperatures)
    picks = sorted(
        {int(order[0]), int(order[len(order) // 2]), int(order[-1])}, key=lambda j: a.temperatures[j]
    )
    fig, axes = _figure(len(picks), width=3.6, height=3.2)
    for ax, j in zip(axes, picks, strict=True):
        t, mean = a.exit_times[j], a.exit_statistics[j].mean
        ax.hist(t / mean, bins=40, range=(0, 6), density=True, color="C0", alpha=0.6, label="Monte Carlo")
        s = np.linspace(0, 6, 200)
        ax.plot(s, np.exp(-s), "k-", lw=1, label="exponential, same mean")
        ax.set(
            yscale="log",
            xlabel="exit time / mean",
            ylabel="density",
            title=f"T={a.temperatures[j]:g}, KS p={a.exit_statistics[j].ks_pvalue:.2g}",
        )
        ax.legend(fontsize=7)
    pvals = np.array([s.ks_pvalue for s in a.exit_statistics])
    cv, cv_se = np.array([_coefficient_of_variation(s, t) for s, t in zip(a.exit_statistics, a.exit_times,
                                                                          strict=True)]).T
    ratio = a.barrier / a.temperatures
    rejected = [j for j in range(len(pvals)) if pvals[j] < 0.01]
    if not rejected:
        verdict = (
            "The exponential law is not rejected at the 1% level at any temperature: escape from the well is "
            f"memoryless down to dU/T = {ratio.min():.2f}"
        )
    else:
        verdict = (
            f"The exponential law is rejected at the 1% level at T = "
            f"{_list(a.temperatures[rejected], 'g')} (dU/T = {_list(ratio[rejected], '.2f')}) and not "
            "at the others: where the barrier is low the relaxation inside the well is a visible part of the "
            "exit time"
        )
    reading = (
        f"Histograms of the exit times of the Arrhenius runs (scaled by their mean) at "
        f"T = {_list(a.temperatures[picks], 'g')} against the exponential density; the coefficients of "
        f"variation are {_pm(cv[picks], cv_se[picks])} (± 1 SE, jackknife; 1 for an exponential) and the KS "
        "p-values over all temperatures "
        f"{_list(pvals, '.2g')}. {verdict}."
    )
    rows = tuple(
        (float(T), float(r), float(c), float(e), float(s.ks_statistic), float(s.ks_pvalue))
        for T, r, c, e, s in zip(a.temperatures, ratio, cv, cv_se, a.exit_statistics, strict=True)
    )
    return ReportSection(
        SECTION_TITLES[1],
        reading,
        figure=fig,
        name="exit_time_histograms",
        table=Table(("T", "dU/T", "std/mean", "SE", "KS distance", "KS p-value"), rows,
                    caption="SE of std/mean: jackknife over the exit times; KS: test statistic, exact"),
    )


def _coefficient_of_variation(statistics, times) -> tuple[float, float]:
    """The stored ``std / mean`` and its SE; recomputed from the times for records written before them."""
    if math.isfinite(statistics.coefficient_of_variation_stderr):
        return statistics.coefficient_of_variation, statistics.coefficient_of_variation_stderr
    return coefficient_of_variation(times)


# --------------------------------------------------------------------------------------- 3. occupation
def _occupation_figure(o, curves: BasinsCurves):
    """The figure of the section (theory curves as stored, simulation points)."""
    land = o.landscape
    fig, (ax_map, ax) = _figure(2, width=4.6, height=3.6)
    X, Y = np.meshgrid(curves.map_grid, curves.map_grid, indexing="ij")
    u = curves.energy_map
    filled = ax_map.contourf(X, Y, np.minimum(u, 1.5), levels=20, cmap="viridis")
    filled.set_rasterized(True)  # keeps the SVG small
    for cp, mark, lab in (
        (land.wide, "o", "wide min"),
        (land.sharp, "s", "sharp min"),
        (land.saddle, "x", "saddle"),
    ):
        ax_map.plot(*cp.point, mark, color="w", ms=7, label=lab)
    ax_map.set(xlabel="x", ylabel="y", title="U(x, y) (clipped at 1.5)")
    ax_map.legend(fontsize=7, loc="lower left")
    temps = curves.occupation_temperatures
    ax.plot(temps, curves.gibbs_occupation, "k-", lw=1, label="Gibbs, quadrature")
    ax.plot(temps, curves.sgd_occupation, "-", color="C3", lw=1,
            label=r"SGD noise, $e^{-F/T}$ (y eliminated)")
    ax.axhline(o.laplace[0], color="k", ls="--", lw=1, label="Gibbs, Laplace")
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    iso = np.array([s.wide for s in o.isotropic])
    iso_se = np.array([s.stderr for s in o.isotropic])
    sgd = np.array([s.wide for s in o.sgd])
    sgd_se = np.array([s.stderr for s in o.sgd])
    ax.errorbar(
        o.temperatures, iso, yerr=2 * iso_se, fmt="o", color="C0", capsize=2, label="isotropic Langevin"
    )
    ax.errorbar(
        o.temperatures,
        sgd,
        yerr=2 * sgd_se,
        fmt="s",
        color="C3",
        capsize=2,
        label=r"SGD-shaped noise $\Sigma\propto H$",
    )
    ax.set(xlabel="T", ylabel="P(wide basin, x < 0)", ylim=(0.35, 0.9))
    ax.legend(fontsize=7)
    return fig


def _occupation_section(study: EscapeStudy, curves: BasinsCurves) -> ReportSection:
    o = study.occupation
    land = o.landscape
    fig = _occupation_figure(o, curves)
    iso = np.array([s.wide for s in o.isotropic])
    iso_se = np.array([s.stderr for s in o.isotropic])
    sgd = np.array([s.wide for s in o.sgd])
    sgd_se = np.array([s.stderr for s in o.sgd])

    z_iso = (iso - o.quadrature) / iso_se
    shift = sgd - iso
    shift_se = np.hypot(sgd_se, iso_se)
    det_ratio = math.sqrt(
        float(np.prod(land.sharp.hessian_eigenvalues) / np.prod(land.wide.hessian_eigenvalues))
    )
    iso_ok = bool(np.all(np.abs(z_iso) < 3))
    significant = bool(np.all(shift < -3 * shift_se))
    pred = o.sgd_prediction
    gap = sgd - pred
    pred_ok = bool(np.all((gap > -3 * sgd_se) & (gap < 3 * sgd_se + SGD_ELIMINATION_ALLOWANCE)))
    reading = (
        f"On U = 0.5(x^2-1)^2 + k(x)y^2/2 with equal minimum energies and transverse curvatures "
        f"{land.wide.hessian_eigenvalues[0]:.3f} (wide) and {land.sharp.hessian_eigenvalues[0]:.3f} "
        "(sharp), the "
        f"Gibbs probability of the wide basin is {_list(o.quadrature)} by quadrature at T = "
        f"{_list(o.temperatures, 'g')} (Laplace, T → 0: {o.laplace[0]:.3f} = "
        f"{det_ratio:.2f}/(1+{det_ratio:.2f})), "
        f"and isotropic Langevin runs give {_pm(iso, iso_se)} (± 1 SE; "
        f"{'all within' if iso_ok else 'not all within'} 3 "
        "SE of "
        f"quadrature, largest |z| = {np.max(np.abs(z_iso)):.1f}). "
        "With SGD-shaped noise at the same temperature across the barrier the wide basin holds "
        f"{_pm(sgd, sgd_se)}, on average {abs(float(np.mean(shift))):.3f} ± {_mean_se(shift_se):.3f} "
        f"{'less' if np.mean(shift) < 0 else 'more'} than with isotropic noise, "
        + (
            "below it by more than 3 SE at every temperature, so the Gibbs law of U does not predict the "
            "occupation under SGD noise."
            if significant
            else "a difference not beyond 3 SE at every temperature, so these runs do not resolve an effect "
            "of the noise shape on the occupation."
        )
        + f" Eliminating the fast y (variance T_perp/k(x), T_perp = T k_i/h_x in basin i) predicts "
        f"{_list(pred)}: Sigma ∝ H makes the noise across the wide valley {land.barrier_curvature:g}/"
        f"{land.wide.hessian_eigenvalues[0]:.3f} = "
        f"{land.barrier_curvature / land.wide.hessian_eigenvalues[0]:.1f} times colder than along the "
        "barrier, which removes most of the det(H)^(-1/2) volume bonus of the wide basin along the "
        "transverse direction, and the simulated fractions "
        + (
            f"agree with it (all within 3 SE plus the measured elimination error "
            f"+{SGD_ELIMINATION_ALLOWANCE:g}; mean excess {float(np.mean(gap)):+.3f} ± "
            f"{_mean_se(sgd_se):.3f})."
            if pred_ok
            else f"do not all agree with it within 3 SE plus the elimination allowance "
            f"+{SGD_ELIMINATION_ALLOWANCE:g} (excess {_pm(gap, sgd_se, '+.3f')})."
        )
    )
    rows = tuple(
        (float(T), float(lp), float(q), float(i), float(ie), float(s), float(se), float(sp), float(r),
         float(ts))
        for T, lp, q, i, ie, s, se, sp, r, ts in zip(
            o.temperatures,
            o.laplace,
            o.quadrature,
            iso,
            iso_se,
            sgd,
            sgd_se,
            pred,
            o.relaxation_time,
            o.simulated_time,
            strict=True,
        )
    )
    table = Table(
        (
            "T",
            "Laplace",
            "quadrature",
            "isotropic",
            "SE",
            "SGD noise",
            "SE",
            "SGD prediction",
            "relaxation time",
            "simulated time",
        ),
        rows,
        caption=f"{study.config.occupation_replicas} replicas, half started in each minimum, "
        f"dt = {study.config.occupation_dt:g}",
    )
    return ReportSection(SECTION_TITLES[2], reading, figure=fig, table=table, name="basin_occupation")


# ---------------------------------------------------------------------------------------- 4. annealing
def _annealing_section(study: EscapeStudy) -> ReportSection:
    res = study.annealing
    well = res.well
    fig, (ax_t, ax_p) = _figure(2, width=4.6, height=3.5)
    for o in res.outcomes:
        c = _COLORS.get(o.kind)
        time_axis = o.record_steps * res.dt
        ax_t.plot(time_axis, o.temperature_history, color=c, lw=1.2, label=o.kind)
        ax_p.plot(
            time_axis, o.deep_fraction_history, color=c, lw=1.2, label=f"{o.kind}: {o.deep_fraction:.3f}"
        )
        ax_p.errorbar(
            [time_axis[-1]], [o.deep_fraction], yerr=[2 * o.stderr], fmt="o", color=c, ms=3, capsize=2
        )
    const = [o for o in res.outcomes if o.kind == "constant"]
    if const:
        ax_p.axhline(
            const[0].gibbs_fraction,
            color=_COLORS["constant"],
            ls="--",
            lw=0.8,
            label=f"Gibbs at T0: {const[0].gibbs_fraction:.3f}",
        )
    ax_t.set(xlabel="time t = k dt", ylabel="temperature", yscale="log")
    ax_t.legend(fontsize=7)
    ax_p.set(xlabel="time t = k dt", ylabel="fraction in the deeper basin", ylim=(-0.02, 1.02))
    ax_p.legend(fontsize=7)

    parts = ", ".join(
        f"{o.kind} {o.deep_fraction:.3f} ± {o.stderr:.3f} (final T {o.final_temperature:.3g}, "
        f"Gibbs {o.gibbs_fraction:.3f})"
        for o in res.outcomes
    )
    second = []
    for o in res.outcomes:
        if o.kind == "constant":
            z = (o.deep_fraction - o.gibbs_fraction) / o.stderr if o.stderr > 0 else math.inf
            second.append(
                f"the constant schedule {'reaches' if abs(z) < 3 else 'misses'} its Gibbs fraction "
                f"(z = {z:.1f})"
            )
    cooled = [o for o in res.outcomes if o.kind in ("step", "cosine")]
    if cooled:
        gaps = ", ".join(f"{o.kind} {o.gibbs_fraction - o.deep_fraction:.3f} ± {o.stderr:.3f}"
                         for o in cooled)
        second.append(
            f"the step and cosine schedules freeze before their final temperature, short of its Gibbs "
            f"fraction by {gaps}"
        )
    if any(o.kind == "log" for o in res.outcomes):
        lg = res.outcome("log")
        hajek = res.log_constant >= well.shallow_depth
        second.append(
            f"the log schedule T0/log(e + k/every) has c = T0 = {res.log_constant:.3f} "
            f"{'>=' if hajek else '<'} the shallow well's depth {well.shallow_depth:.3f} "
            f"(Hajek's condition {'met' if hajek else 'not met'}) and ends at {lg.deep_fraction:.3f}"
            + (
                f", below its own final Gibbs fraction by more than 3 SE: with {res.n_steps // 100} steps "
                f"per unit of its time scale it has cooled to T0/2 by step "
                f"{int(math.ceil((math.exp(2.0) - math.e) * max(res.n_steps // 100, 1)))} "
                f"(t = {(math.exp(2.0) - math.e) * max(res.n_steps // 100, 1) * res.dt:.3g}), faster than "
                "replicas escape the shallow well, so they freeze"
                if lg.gibbs_fraction - lg.deep_fraction > 3 * lg.stderr
                else ""
            )
        )
    best = max(res.outcomes, key=lambda o: o.deep_fraction)
    reading = (
        f"From the shallower minimum x={well.shallow:.3f} of U=(x^2-1)^2+{well.tilt:g}x (depths "
        f"{well.shallow_depth:.3f} shallow, {well.deep_depth:.3f} deep; barrier at x={well.barrier:.3f}), "
        f"{res.replicas} replicas per schedule, T0={res.initial_temperature:g}, {res.n_steps} steps of "
        f"dt={res.dt:g}, end in the deeper basin with fractions {parts}. "
        + _sentence("; ".join(second))
        + f"; the most replicas reach the deeper basin with the {best.kind} schedule."
    )
    rows = tuple(
        (o.kind, o.final_temperature, o.deep_fraction, o.stderr, o.gibbs_fraction) for o in res.outcomes
    )
    table = Table(("schedule", "final T", "deep fraction", "SE", "Gibbs at final T"), rows)
    return ReportSection(SECTION_TITLES[3], reading, figure=fig, table=table, name="annealing")


# ------------------------------------------------------------------------------------------------ page
def build_escape_report(out_dir: Path | str, study: EscapeStudy, curves: BasinsCurves, *,
                        extra_sections: Sequence[ReportSection] = (), metadata: dict | None = None,
                        summary: Sequence[Row] | None = None) -> Path:
    """Write ``out_dir/report.html`` from a loaded study and its theory curves.

    ``extra_sections`` follow the built-in four; ``metadata`` (the run directory's) precedes the study's;
    ``summary`` replaces the escape study's own rows (the run directory's ``summary.json`` rows).
    """
    extra = tuple(extra_sections)
    bad = [i for i, s in enumerate(extra) if not isinstance(s, ReportSection)]
    if bad:
        raise ValueError(f"extra_sections[{bad[0]}]={extra[bad[0]]!r} is invalid: expected a ReportSection")
    sections = [_arrhenius_section(study, curves), _exit_time_section(study),
                _occupation_section(study, curves), _annealing_section(study), *extra]
    cfg = study.config
    limitations = [
        "Monte Carlo exit times are taken to the barrier top x = 0, which a trajectory reaches about halfway "
        "through a well-to-well transition (the MFPT to the top is half the well-to-well time only as T → "
        "0), so "
        "Kramers is compared with the exact well-to-well time, not with the simulation.",
        f"Euler–Maruyama at dt = {cfg.exit_dt:g} (exit times) and {cfg.occupation_dt:g} (occupation) has "
        "an O(dt) "
        "bias; the Brownian-bridge correction removes only the boundary-crossing part of it.",
        "The Arrhenius slope over a finite temperature range includes the temperature dependence of the "
        "prefactor; it equals the barrier only as T → 0.",
        "SGD-shaped noise is modelled as B B^T = 2 T H_i / h_x with H_i the Hessian of the basin's own "
        "minimum, switching at x = 0; this process is not reversible. Its predicted occupation eliminates y "
        "adiabatically, which the jump of the transverse noise at the saddle breaks: a 2-D stationary "
        "Fokker–Planck solve puts the exact value 0.008–0.010 above the prediction for T = 0.15–0.7 "
        f"(allowance {SGD_ELIMINATION_ALLOWANCE:g} in the summary).",
        "The log schedule T0 / log(e + k / every) runs on the time scale every = n_steps / 100 (1% of the "
        "run), so its outcome at fixed simulated time does not depend on dt; Hajek's guarantee is "
        "asymptotic in time and needs c = T0 at least the shallow well's depth.",
    ]
    metadata = (metadata or {}) | {
        "seed": study.seed,
        "configuration": asdict(cfg),
        "double well (Arrhenius, exit times)": DOUBLE_WELL,
        "sharp/wide landscape": study.occupation.landscape.potential.expression,
        "annealing potential": study.annealing.well.potential.expression,
        "wall seconds": {k: round(v, 2) for k, v in study.seconds.items()},
    }
    return write_report(
        Path(out_dir) / REPORT_NAME,
        "Escape over barriers and basin selection by noise",
        sections,
        summary=basins_rows(study) if summary is None else list(summary),
        limitations=limitations,
        metadata=metadata,
        introduction="Overdamped Langevin dx = -grad U dt + sqrt(2T) dW with T the effective temperature "
        "of SGD "
        "(ERRATA 004.1): exit times against the exact mean first-passage time and Kramers, the exit-time "
        "law, "
        "basin occupation for isotropic and curvature-shaped noise, and annealing schedules.",
    )
