"""The HTML report of a limiting-dynamics study, drawn only from what the run directory stores.

:func:`write_study_report` reads the typed configuration, ``theta_star.h5``, ``analysis/`` and
``companions/`` (written by :func:`sgd_dynamics.experiments.study.run_study`) and formats them: every number
and curve was computed by the analysis (:mod:`sgd_dynamics.experiments.analysis`) and every verdict by
:mod:`sgd_dynamics.experiments.study_summary`; each section function below turns one part into a
:class:`~sgd_dynamics.report.html.ReportSection`. Every reading is written from the numbers, so a failed
prediction reads as one. ``sgd-dynamics report RUN_DIR`` calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgd_dynamics.experiments.analysis import PointAnalysis, SweepAnalysis, load_analysis
from sgd_dynamics.experiments.settle import load_settle
from sgd_dynamics.experiments.study_config import StudyConfig
from sgd_dynamics.experiments.study_summary import displacement_rows, one_at_a_time, study_rows
from sgd_dynamics.report import figures as F
from sgd_dynamics.report import stationarity_figures as SF
from sgd_dynamics.report.html import ReportSection, Table, write_report
from sgd_dynamics.report.run_metadata import run_metadata
from sgd_dynamics.store import read_arrays, read_config

__all__ = ["write_study_report"]


@dataclass(frozen=True)
class _Study:
    """What the sections format: the typed config, theta* arrays, the analyses and the companions."""

    config: StudyConfig
    theta: dict[str, np.ndarray]
    sweep: SweepAnalysis
    default: dict[str, Any] | None
    companions: dict[str, dict[str, Any]]
    settle: dict[str, Any] | None = None        # the settle loop's series and certificate
    parts: dict[str, Any] | None = None         # displacement.h5: replica drift/diffusion and predictions

    @property
    def stationary(self) -> bool | None:
        """The certificate's verdict on theta* (None: the run did not settle)."""
        return None if self.settle is None else bool(self.settle["certificate"]["stationary"])

    @property
    def wr(self) -> tuple[PointAnalysis, ...]:
        return tuple(r for r in self.sweep.rows if r.sampler == "with_replacement")

    @property
    def wor(self) -> tuple[PointAnalysis, ...]:
        return tuple(r for r in self.sweep.rows if r.sampler == "without_replacement")


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.1f}%"


def _early_late(local: np.ndarray) -> tuple[float, float]:
    """Mean of the first tenth and of the last half of a speed series, relative to its last three quarters."""
    local = np.asarray(local, np.float64)
    n = len(local)
    ref = float(np.mean(local[n // 4:]))
    return float(np.mean(local[: max(1, n // 10)])) / ref, float(np.mean(local[n // 2:])) / ref


def _load(run_dir: Path) -> _Study:
    if not (run_dir / "analysis" / "sweep.json").exists():
        raise ValueError(f"RUN_DIR={str(run_dir)!r} holds no finished study (no analysis/): run "
                         "'sgd-dynamics demo' or 'sgd-dynamics study CONFIG.toml' first")
    config = read_config(run_dir, StudyConfig)
    adir, cdir = run_dir / "analysis", run_dir / "companions"
    default = load_analysis(adir, "default") if (adir / "default.json").exists() else None
    companions = {name: load_analysis(cdir, name) for name in config.companions
                  if (cdir / f"{name}.json").exists()}
    return _Study(config, read_arrays(run_dir / "theta_star.h5"),
                  SweepAnalysis.from_record(load_analysis(adir, "sweep")), default, companions,
                  load_settle(run_dir, config.pretrain_key()),
                  read_arrays(parts) if (parts := run_dir / "displacement.h5").exists() else None)


# ----------------------------------------------------------------------------------------------- replicas

def _replica_sections(s: _Study) -> list[ReportSection]:
    p, c = s.parts, s.config
    rows = [r for r in displacement_rows(p, s.stationary) if "diffusion part" in r.quantity]
    share = float(p["drift"][-1] / p["total"][-1])
    judged = [r for r in rows if r.tolerance is not None]
    reading = (
        f"{c.replicas} replicas restart from theta* at the default point with a fresh momentum buffer and "
        "independent minibatch streams (sampling with replacement); their mean and spread split "
        "||theta_k - theta*||^2 into drift ||E theta_k - theta*||^2 and diffusion tr Cov(theta_k) (band: one "
        f"jackknife standard error). At the last step (k = {int(p['step'][-1])}) the drift is "
        f"{100 * share:.0f}% of the total. Dashed: the exact discrete theory on the whole Hessian spectrum "
        f"(noise-weighted Lanczos quadrature, {c.spectral_probes} probes, the top {int(p['deflated'])} "
        "eigenpairs deflated); dotted: the top-k modes plus one bulk mode. The full-spectrum diffusion part "
        "is within the 50% goal at " + (", ".join(r.quantity.split(" (")[0].split("= ")[1] for r in judged
                                                  if r.verdict == "holds") or "none") +
        f" of the {len(judged)} checked steps.")
    if float(p["negative_weight"]) > 0:
        reading += (f" Nodes of negative curvature (rho + weight decay < 0) carry noise weight "
                    f"{float(p['negative_weight']):.3g} of {float(np.sum(p['weights'])):.3g}; they are "
                    "taken as flat (free diffusion).")
    table = Table(("quantity", "predicted", "measured", "relative error", "verdict"),
                  tuple((r.quantity, r.predicted, r.measured, _pct(r.relative_error), r.verdict)
                        for r in rows))
    data = {"step": p["step"], "total": p["total"], "drift": p["drift"], "diffusion": p["diffusion"],
            "diffusion_se": p["diffusion_se"], "predicted_drift": p["full_drift"],
            "predicted_diffusion": p["full_diffusion"],
            "predicted_total": p["full_drift"] + p["full_diffusion"],
            "bulk_drift": p["bulk_drift"], "bulk_diffusion": p["bulk_diffusion"]}
    measure = ReportSection(
        "Noise-weighted spectral measure and Hessian eigenvalue density at theta*",
        "Left: the quadrature nodes rho_j and weights w_j with sum_j w_j f(rho_j) ~ tr(Sigma f(H)), which "
        "the full-spectrum theory integrates; right: the Hessian's eigenvalue density (stochastic Lanczos "
        "quadrature). Where the noise weight sits against the density shows which modes the gradient noise "
        "excites.",
        figure=SF.spectral_measures(p["nodes"], p["weights"], p["esd_grid"], p["esd_density"]))
    return [ReportSection("Drift and diffusion of the default point (replicas)", reading,
                          figure=SF.displacement_parts(data), table=table), measure]

# ----------------------------------------------------------------------------------------------- stationarity

def _stationarity_section(s: _Study) -> ReportSection:
    c, settle = s.config, s.settle
    cert = settle["certificate"]
    windows = int(np.max(settle["window"])) + 1
    failed = [x["name"] for x in cert["criteria"] if not x["holds"]]
    verdict = ("holds: theta* is certified stationary" if cert["stationary"] else
               "FAILS (" + ", ".join(failed) + "): theta* is NOT certified stationary, and every row that "
               "assumes a stationary start is marked not_stationary")
    reading = (
        f"After the anneal, SGD settled at the default point (lr={c.lr:g}, momentum={c.momentum:g}, "
        f"S={c.batch_size}) for {windows} window(s) of {c.settle_steps} steps (at most "
        f"{c.settle_windows_max}), observing each series {c.settle_observations} times per window. The "
        "certificate compares the last two windows by batch means and Welch's t: a trend criterion (the "
        "lower confidence bound of the relative change must stay below its threshold) and a resolution "
        f"criterion (the windows must be able to detect a change of that size). The certificate {verdict}.")
    rows = tuple((x["name"], x["value"], x["threshold"], "holds" if x["holds"] else "FAILS")
                 for x in cert["criteria"])
    return ReportSection("Stationarity of theta*", reading,
                         figure=SF.monitored_series(settle["series"], settle["step"], settle["window"]),
                         table=Table(("criterion", "value (relative change)", "threshold", "verdict"), rows))


# ----------------------------------------------------------------------------------------------- theta*

def _spectrum_section(s: _Study) -> tuple[ReportSection, list[str]]:
    theta, rho = s.theta, s.theta["eigenvalues"]
    neg = int(np.sum(rho < 0))
    section = ReportSection(
        "Hessian spectrum and gradient noise at theta*",
        f"The top {rho.size} Hessian eigenvalues at theta* span {rho.max():.3g} to {rho.min():.3g} "
        f"({neg} negative; "
        f"Hessian trace {float(theta['hessian_trace']):.4g} +- {float(theta['hessian_trace_se']):.2g}, "
        f"tr(Sigma) {float(theta['trace_sigma']):.4g}), and the right panel compares the per-mode noise "
        "s_i with the paper's assumption Sigma = sigma^2 H. The theory below uses the measured s_i and "
        "tr(Sigma) directly, so it does not depend on that assumption.",
        figure=F.hessian_spectrum(rho, theta["mode_noise"]),
        table=Table(("i", "rho_i", "s_i", "residual ||Hq-rho q||"),
                    tuple((i + 1, float(rho[i]), float(theta["mode_noise"][i]), float(theta["residuals"][i]))
                          for i in range(rho.size))))
    limits = [] if not neg else [
        f"{neg} of the top Hessian eigenvalues at theta* are negative: theta* is not a minimum "
        "along those directions and the quadratic theory has no stationary law there "
        "(they are clipped to zero curvature plus weight decay in the predictions)."]
    return section, limits


def _noise_limitations(s: _Study) -> list[str]:
    """Which noise estimator the study used (stored in theta_star.h5), and what Dropout/BatchNorm change."""
    theta = s.theta
    if "noise_estimator" not in theta:        # a run from before the estimator was recorded
        return ["The gradient noise was measured as the eval-mode per-example Sigma (this run did not "
                "record its noise estimator, nor whether the network has Dropout or BatchNorm)."]
    estimator, modules = str(theta["noise_estimator"]), str(theta["noise_modules"])
    size = s.config.batch_size
    if estimator == "minibatch":
        how = (f"noise estimator: minibatch, the train-mode covariance S Cov(g_B) of "
               f"{int(theta['noise_minibatches'])} minibatch gradients of S = {size} (sweep points: their "
               f"own S) drawn with replacement, tr = {float(theta['trace_sigma']):.4g} +- "
               f"{float(theta['trace_sigma_se']):.2g} at theta*, used as tr(Sigma) and s_i")
    else:
        how = "noise estimator: per_example, the per-example Sigma in eval mode, used as S Cov(g_B) = Sigma"
    if not modules:
        return [f"The network has no Dropout or BatchNorm, so a step's noise is Sigma / S ({how})."]
    if estimator == "per_example":
        return [f"The network has {modules}, but the noise was measured in eval mode ({how}): that misses "
                "the Dropout masks and BatchNorm's coupling of the examples of a batch, so the speed "
                "predictions are expected to fall short (noise_estimator = auto or minibatch measures the "
                "noise a training step sees)."]
    return [f"The network has {modules}: a training step draws Dropout masks and normalises with the "
            "batch's own statistics (coupling its examples), which the per-example Sigma of eval mode does "
            f"not see ({how}). The per-example noise model Sigma / S does not describe such a network; the "
            "Hessian and the noise-weighted (full-spectrum) measure are still those of eval mode."]


# ----------------------------------------------------------------------------------------------- speed

def _speed_figure_data(s: _Study) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {}
    sweeps_wor = one_at_a_time(s.wor, s.config)
    for key, sel in one_at_a_time(s.wr, s.config).items():
        if len(sel) < 2:
            continue
        by = {getattr(r, key): r for r in sweeps_wor[key]}
        values = [getattr(r, key) for r in sel]
        out[key] = {"values": values, "with_replacement": [r.measured_speed for r in sel],
                    "without_replacement": [by[v].measured_speed if v in by else np.nan for v in values],
                    "predicted": [r.predicted_speed for r in sel],
                    "calibrated": [r.calibrated_speed for r in sel]}
    return out


def _speed_table(rows: tuple[PointAnalysis, ...]) -> Table:
    return Table(
        ("lr", "momentum", "S", "sampler", "measured", "s.e.", "predicted", "error", "error, Sigma at theta*",
         "error, discrete modes", "error, one-run calibration"),
        tuple((r.lr, r.momentum, r.batch_size, r.sampler, r.measured_speed, r.measured_speed_sem,
               r.predicted_speed, _pct(r.relative_error), _pct(r.relative_error_theta_star),
               _pct(r.relative_error_discrete), _pct(r.relative_error_calibrated)) for r in rows),
        "Errors are (predicted - measured)/measured. 'Sigma at theta*' uses tr(Sigma) at the pretrained "
        "point instead of along the run; 'discrete modes' adds the exact finite-lr factor of the "
        "top-k modes (ERRATA 002.5).")


def _speed_section(s: _Study) -> tuple[ReportSection, list[str]]:
    tol = s.config.speed_tolerance
    max_err = max((abs(r.relative_error) for r in s.wr), default=math.nan)
    holds = max_err <= tol
    wor_dev = [r.relative_error for r in s.wor]
    fig = _speed_figure_data(s)
    section = ReportSection(
        "Constant instantaneous speed (002 eq. 18, ERRATA 002.3; Fig. 7 top)",
        "The measured mean ||delta_k||^2 after the burn-in is compared with eta^2 "
        "tr(Sigma)/(S(1-beta^2)) with no fitted constant, tr(Sigma) measured along the same window, and with "
        "the paper's one-run calibration. "
        f"With sampling with replacement the prediction {'holds' if holds else 'fails'}: the largest "
        f"relative error over the {len(s.wr)} points is {100 * max_err:.1f}% (tolerance {100 * tol:.0f}%); "
        + _without_replacement_sentence(s.wor, tol),
        figure=F.speed_sweep(fig) if fig else None, table=_speed_table(s.sweep.rows))
    limits = []
    star_err = max((abs(r.relative_error_theta_star) for r in s.wr), default=0.0)
    if star_err > tol:
        limits.append(
            f"tr(Sigma) changes when the hyperparameters change: with tr(Sigma) taken at theta* "
            f"instead of along each run, the speed error reaches {100 * star_err:.0f}%. The theory "
            "assumes a constant noise covariance; the network's Sigma depends on where the new "
            "stationary state sits.")
    if wor_dev:
        limits.append(
            f"Sampling without replacement (epoch shuffling) gives speeds {_pct(min(wor_dev))} to "
            f"{_pct(max(wor_dev))} off eq. 18; the SDE treats minibatch noise as independent "
            "across steps, which epoch shuffling violates (ERRATA 002.3). The exact discrete theory of "
            "reshuffling, which the rows use, needs every mode's curvature: beyond the top-k eigenpairs it "
            "takes the noise-weighted spectral measure at theta*, rescaled to each run's tr(Sigma).")
    return section, limits


def _without_replacement_sentence(wor: tuple[PointAnalysis, ...], tol: float) -> str:
    """Eq. 18's deviation without replacement, and how the reshuffling theory does on the same points."""
    if not wor:
        return "no point samples without replacement."
    eq18 = [r.relative_error for r in wor]
    exact = [abs(r.relative_error_reshuffled) for r in wor if math.isfinite(r.relative_error_reshuffled)]
    text = (f"without replacement eq. 18 deviates by {_pct(min(eq18))} to {_pct(max(eq18))} (epoch "
            "shuffling anti-correlates the noise within an epoch)")
    if not exact:
        return text + "."
    verdict = (f"(tolerance {100 * tol:.0f}%)" if max(exact) <= tol
               else f"(above the tolerance of {100 * tol:.0f}%)")
    return (f"{text}; the exact reshuffling theory is within {100 * max(exact):.1f}% at all {len(wor)} "
            f"points {verdict}.")


def _diverged_section(s: _Study) -> tuple[ReportSection, list[str]]:
    d = s.sweep.diverged
    section = ReportSection(
        "Diverged sweep points",
        f"{len(d)} sweep point{'s' if len(d) != 1 else ''} diverged (the loss became non-finite) and "
        "{} not analysed: ".format("is" if len(d) == 1 else "are")
        + "; ".join(f"lr={x.lr:g}, momentum={x.momentum:g}, S={x.batch_size}, {x.sampler.replace('_', ' ')} "
                    f"at step {x.step} (loss {x.loss:.3g})" for x in d)
        + ". The quadratic theory has no stationary state there; every other point is analysed as usual.",
        table=Table(("lr", "momentum", "S", "sampler", "diverged at step", "loss"),
                    tuple((x.lr, x.momentum, x.batch_size, x.sampler, x.step, x.loss) for x in d)))
    return section, [f"{len(d)} sweep point(s) diverged and are missing from the sweeps and the fits."]


def _default_row(s: _Study) -> PointAnalysis | None:
    c = s.config
    return next((r for r in s.wr if (r.lr, r.momentum, r.batch_size) == (c.lr, c.momentum, c.batch_size)),
                None)


def _speed_over_time_section(s: _Study, dflt: PointAnalysis) -> ReportSection:
    curve = s.sweep.curves[dflt.name]
    early, late = _early_late(curve["local"])
    return ReportSection(
        "Speed over time at the default hyperparameters (Fig. 1, left)",
        f"||delta_k||^2 of resumed training: the mean over the first tenth of the run is {early:.2f} times, "
        f"and over the last half {late:.2f} times, the mean after the burn-in, i.e. the speed is "
        f"constant once the velocity has equilibrated. That mean {dflt.measured_speed:.4g} is "
        f"{_pct(dflt.relative_error)} off the prediction {dflt.predicted_speed:.4g} (dashed).",
        figure=F.speed_over_time(curve["steps"], {"default": curve["local"]},
                                 {"default": dflt.predicted_speed}))


# ----------------------------------------------------------------------------------------------- diffusion

def _displacement_reading(lr_rows: list[PointAnalysis], curves: dict[str, Any], config: StudyConfig) -> str:
    """The theory-vs-measurement sentences of the anomalous-diffusion section, from the stored numbers."""

    def ratios(key: str, at: int) -> list[float]:
        return [float(curves[r.name][key][at] / curves[r.name]["measured"][at]) if key in curves[r.name]
                else float("nan") for r in lr_rows]

    def listed(xs: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in xs)

    start_first, start_last = ratios("theory", 0), ratios("theory", -1)
    text = (
        "Every run resumes from theta* with a fresh optimizer, so the theory (dashed; top-k modes exact, the "
        "other modes as one bulk mode) starts each mode from the stationary position law of the settle "
        f"hyperparameters (lr={config.lr:g}, momentum={config.momentum:g}, S={config.batch_size}) "
        f"with a zero momentum buffer. It gives c = {listed([r.c_theory for r in lr_rows])} on the same "
        f"window; theory/measured is {listed(start_first)} at the first step and {listed(start_last)} at "
        "the last.")
    if not all("theory_stationary" in curves[r.name] for r in lr_rows):
        return text
    stat_first, stat_last = ratios("theory_stationary", 0), ratios("theory_stationary", -1)
    closer = sum(abs(math.log(a)) < abs(math.log(b)) for a, b in zip(start_first, stat_first, strict=True)
                 if a > 0 and b > 0)
    return text + (
        " The stationary theory (dotted grey), which assumes the velocity is already stationary, gives "
        f"c = {listed([r.c_theory_stationary for r in lr_rows])} and theory/measured "
        f"{listed(stat_first)} at the first step and {listed(stat_last)} at the last; at the first step "
        f"the prediction from the resumed start is the closer one for {closer} of {len(lr_rows)} learning "
        "rates.")


def _falling(lr_rows: list[PointAnalysis]) -> bool:
    cs = [r.c for r in lr_rows]
    return all(a > b for a, b in zip(cs, cs[1:], strict=False))


def _displacement_section(s: _Study) -> tuple[ReportSection, list[str]]:
    lr_rows = one_at_a_time(s.wr, s.config)["lr"]
    curves = s.sweep.curves
    keys = ("steps", "measured", "theory", "theory_stationary", "fit", "local_slope", "local_steps",
            "theory_exponent", "theory_stationary_exponent")
    disp = {f"lr={r.lr:g}": {k: curves[r.name][k] for k in keys if k in curves[r.name]} for r in lr_rows}
    trend = (" - falling as the learning rate grows, as the theory predicts" if _falling(lr_rows)
             else " - not monotone in the learning rate")
    section = ReportSection(
        "Anomalous diffusion: ||Delta_k||^2 and its local exponent (Fig. 1 right, section 8)",
        f"The global displacement grows as a power law whose exponent c (fitted on the last 2/3) is "
        f"{', '.join(f'{r.c:.2f}' for r in lr_rows)} for lr = {', '.join(f'{r.lr:g}' for r in lr_rows)}"
        f"{trend}. " + _displacement_reading(lr_rows, curves, s.config),
        figure=F.displacement_curves(disp))
    return section, [
        "The displacement theory needs the whole Hessian spectrum and noise; only the top-k modes "
        "are measured and the remaining modes are summarised by one bulk mode with the mean remaining "
        "curvature and noise, so the predicted ||Delta_k||^2 is only as good as that summary. It treats "
        "theta* as a draw from the stationary law of the settle hyperparameters of the quadratic model "
        "(noise measured at theta*) and the resumed optimizer's momentum buffer as zero; a theta* that "
        "has not settled along the slow modes is outside that description."]


def _exponent_section(s: _Study) -> ReportSection:
    exp_fig: dict[str, dict[str, list]] = {}
    for key, sel in one_at_a_time(s.wr, s.config).items():
        if len(sel) >= 2:
            exp_fig[key] = {"values": [getattr(r, key) for r in sel], "c": [r.c for r in sel],
                            "low": [r.c_low for r in sel], "high": [r.c_high for r in sel],
                            "theory": [r.c_theory for r in sel]}
    falling = _falling(one_at_a_time(s.wr, s.config)["lr"])
    return ReportSection(
        "Exponent c across the sweeps (Fig. 7 bottom)",
        "Each point is the exponent fitted on the last 2/3 of one run, with a block-bootstrap 95% "
        "interval; crosses are the theory of the resumed run (theta* from the settled state, fresh "
        "optimizer) fitted on the same window. "
        + ("c falls with the learning rate as predicted." if falling else
           "c does not fall monotonically with the learning rate here, against the theory's prediction."),
        figure=F.exponent_sweep(exp_fig) if exp_fig else None)


# ----------------------------------------------------------------------------------------------- default run

def _window_section(d: dict[str, Any]) -> ReportSection:
    return ReportSection(
        "Dependence of c on the fitted window (appendix I.7)",
        f"The exponent fitted on the last 2/3 of the first L steps is "
        f"{', '.join(f'{c:.2f}' for c in d['window_c'])} for L = "
        f"{', '.join(str(n) for n in d['window_lengths'])}. "
        "A single power law would give a constant c; the drift of c with L shows that ||Delta_k||^2 "
        "is a sum of modes with different time scales, as the theory's sum over eigenmodes says.",
        figure=F.window_dependence(d["window_lengths"], d["window_c"], d["window_low"], d["window_high"]))


def _oscillation_sections(d: dict[str, Any]) -> list[ReportSection]:
    labels = ("q_1", f"q_{int(d['modes'][1])}")
    fm, ft = d["fft_measured"], d["fft_theory"]
    ferr = [(a - b) / b for a, b in zip(ft, fm, strict=True)]
    return [
        ReportSection(
            "Phase-space oscillations on q_1 and q_k (Figs. 6, 8)",
            f"The position-velocity projections rotate at rates set by their eigenvalues (rho = "
            f"{d['mode_eigenvalues'][0]:.3g} and {d['mode_eigenvalues'][1]:.3g}). The amplitude-weighted "
            f"FFT frequencies {fm[0]:.3g} and {fm[1]:.3g} cycles/step compare with {ft[0]:.3g} and "
            f"{ft[1]:.3g} from the exact discrete spectrum of each mode (errors {_pct(ferr[0])}, "
            f"{_pct(ferr[1])}).",
            figure=F.phase_space(d["position"], d["velocity"], labels)),
        ReportSection(
            "Spectra of the projected trajectories (appendix H)",
            "Amplitude spectra of the positions on q_1 and q_k with the theory's amplitude-weighted mean "
            "frequency (dashed) and the measured one (dotted). The match tests the per-mode damped "
            "oscillator of eq. 9 on the network itself.",
            figure=F.frequency_spectrum(d["spectrum_frequencies"], d["spectrum_amplitudes"], ft, fm, labels)),
    ]


def _isotropy_sections(d: dict[str, Any]) -> list[ReportSection]:
    labels = ("q_1", f"q_{int(d['modes'][1])}")
    ps, pst = d["position_std"], d["position_std_theory"]
    vs, vst = d["velocity_std"], d["velocity_std_theory"]
    gibbs = d["gibbs_spread_ratio"]
    gx, gy = np.meshgrid(d["grid"], d["grid"], indexing="ij")
    vx, vy = np.meshgrid(d["velocity_grid"], d["velocity_grid"], indexing="ij")
    follows_modified = (abs(math.log((ps[0] / ps[1]) / (pst[0] / pst[1])))
                        < abs(math.log((ps[0] / ps[1]) / gibbs)))
    verdict = ("The trajectory follows the modified loss rather than the original one." if follows_modified
               else "Here the trajectory is closer to the original loss than to the modified loss.")
    return [
        ReportSection(
            "Isotropy of the trajectory in the (q_1, q_k) plane (Fig. 4)",
            "The train and test losses are anisotropic in this plane (a Gibbs law of the original loss "
            f"would give a spread ratio std_1/std_k = {gibbs:.2f}), yet the measured ratio is "
            f"{ps[0] / ps[1]:.2f} against {pst[0] / pst[1]:.2f} from the modified loss (its level sets in "
            f"the right panel). {verdict}",
            figure=F.trajectory_on_slices(gx, gy, {"train loss": d["train_loss"], "test loss": d["test_loss"],
                                                   "modified loss Psi_theta": d["psi_x"]}, d["position"],
                                          labels)),
        ReportSection(
            "Velocity and the implicit velocity regularisation Psi_v (Fig. 5)",
            "The projected velocities fill the level sets of Psi_v ~ v^T H^-1 v: the measured velocity "
            f"spread ratio std(v_1)/std(v_k) = {vs[0] / vs[1]:.2f} against {vst[0] / vst[1]:.2f} predicted.",
            figure=F.velocity_on_psi(vx, vy, d["psi_v"], d["velocity"], labels)),
    ]


# ----------------------------------------------------------------------------------------------- companions

def _linear_regression_section(lin: dict[str, Any]) -> ReportSection:
    st = lin["stationary"]
    return ReportSection(
        "Linear regression: eq. 9's mean vs the trajectory (Fig. 2)",
        f"Projected on the top Hessian eigenvector, the trajectories for momenta "
        f"{', '.join(f'{b:g}' for b in lin['momenta'])} follow eq. 9's mean with R^2 = "
        f"{', '.join(f'{r:.4f}' for r in lin['r2_continuous'])} (exact discrete mean: "
        f"{', '.join(f'{r:.4f}' for r in lin['r2_discrete'])}). At stationarity the exact discrete theory "
        f"predicts the speed {st['predicted_speed']:.4g} against {st['measured_speed']:.4g} measured "
        f"({_pct((st['predicted_speed'] - st['measured_speed']) / st['measured_speed'])}).",
        figure=F.linear_regression_mean(lin["runs"]),
        table=Table(("lag", "measured E||Delta||^2", "exact discrete theory"),
                    tuple(zip(st["lags"], st["measured_displacement"], st["predicted_displacement"],
                              strict=True))))


def _ou_section(ou: dict[str, Any]) -> ReportSection:
    mc, tc = ou["measured_covariance"], ou["theory_covariance"]
    return ReportSection(
        "An anisotropic OU process is driven by a modified loss (Fig. 3)",
        "With a diffusion that does not commute with the drift, the trajectory's stationary law follows the "
        "modified loss Psi (right), not the original loss (left); the grey lines are the stationary "
        "probability current (detailed-balance violation ||Q||/||AB|| = "
        f"{float(ou['detailed_balance_violation']):.2f}). The "
        f"measured covariance [{mc[0, 0]:.3g}, {mc[0, 1]:.3g}, {mc[1, 1]:.3g}] against the Lyapunov "
        f"solution [{tc[0, 0]:.3g}, {tc[0, 1]:.3g}, {tc[1, 1]:.3g}]: {_ou_agreement(ou)}",
        figure=F.ou_modified_loss(ou["grid_x"], ou["grid_y"], ou["original"], ou["modified"],
                                  ou["trajectory"], (ou["current_x"], ou["current_y"])))


def _ou_agreement(ou: dict[str, Any]) -> str:
    """The OU rows' verdict in words, from the stored standard errors (older runs: one path, none)."""
    if "measured_covariance_stderr" not in ou:
        return "one path, no standard error (a run of an older version)."
    z = (np.asarray(ou["measured_covariance"]) - np.asarray(ou["theory_covariance"])) / np.asarray(
        ou["measured_covariance_stderr"])
    worst = float(np.max(np.abs(z[np.triu_indices(2)])))
    return (f"{ou['replicas']} independent exact-transition paths; the largest deviation is {worst:.1f} "
            f"standard errors ({'within' if worst <= 3 else 'beyond'} the 3 s.e. tolerance of its rows).")


def _architecture_section(arch: dict[str, Any]) -> tuple[ReportSection, list[str]]:
    cs_a = {k: v[0] for k, v in arch["c"].items()}
    section = ReportSection(
        "Across architectures: constant speed, growing displacement (Fig. 1)",
        "For every architecture the speed stays near a constant while ||Delta_k||^2 keeps growing as a power "
        f"law, with c = {', '.join(f'{k} {v:.2f}' for k, v in cs_a.items())}. The BatchNorm networks are "
        "scale invariant in most weights, which the quadratic theory does not describe; the phenomenon is "
        "shared.",
        figure=F.architecture_comparison(arch["curves"]))
    return section, [
        "Networks with BatchNorm: the loss is invariant to the scale of most weights, so the "
        "Hessian is singular along those directions and weight decay alone sets the dynamics there; "
        "the per-example noise is measured in eval mode, while training uses batch statistics."]


# ----------------------------------------------------------------------------------------------- page

def _sections(s: _Study) -> tuple[list[ReportSection], list[str]]:
    """Every section in page order, and the limitations they raise."""
    sections, limits = [], []
    if s.settle is not None:
        sections.append(_stationarity_section(s))
    else:
        limits.append("settle_steps = 0: theta* was not settled, so its stationarity is not certified "
                      "either way.")
    if s.parts is not None:
        sections += _replica_sections(s)
    for build in (_spectrum_section, _speed_section):
        section, more = build(s)
        sections.append(section)
        limits += more
    limits += _noise_limitations(s)
    if s.sweep.diverged:
        section, more = _diverged_section(s)
        sections.append(section)
        limits += more
    dflt = _default_row(s)
    if dflt is not None:
        sections.append(_speed_over_time_section(s, dflt))
    section, more = _displacement_section(s)
    sections += [section, _exponent_section(s)]
    limits += more
    if s.default is not None:
        sections += [_window_section(s.default), *_oscillation_sections(s.default),
                     *_isotropy_sections(s.default)]
    if "linear_regression" in s.companions:
        sections.append(_linear_regression_section(s.companions["linear_regression"]))
    if "ou" in s.companions:
        sections.append(_ou_section(s.companions["ou"]))
    if "architectures" in s.companions:
        section, more = _architecture_section(s.companions["architectures"])
        sections.append(section)
        limits += more
    limits.append(
        "The theory is the local quadratic model around theta* with a constant noise covariance; "
        "it does not describe how the network drifts to other regions (changing Sigma and H), "
        "which is why tr(Sigma) must be measured along each run.")
    return sections, limits


def _theta_star_metadata(theta: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "train loss": float(theta["loss"][0]),
        "test loss": float(theta["loss"][1]),
        "train accuracy": float(theta["accuracy"][0]),
        "test accuracy": float(theta["accuracy"][1]),
        "parameters": int(theta["num_parameters"]),
        "training examples": int(theta["num_examples"]),
        "Hessian-vector products": int(theta["hvp_count"]),
        "||g||^2 at theta*": float(theta["gradient_sq_norm"]),
    }


def write_study_report(run_dir: Path | str) -> Path:
    """Write ``run_dir/report.html`` (and ``run_dir/figures/``) from the stored study; returns its path."""
    run_dir = Path(run_dir)
    s = _load(run_dir)
    sections, limitations = _sections(s)
    c = s.config
    meta = run_metadata(run_dir, c) | {"theta*": _theta_star_metadata(s.theta)}
    return write_report(
        run_dir / "report.html",
        f"Limiting dynamics of SGD: {c.model} on {c.dataset} ({c.loss})",
        sections,
        summary=study_rows(c, s.sweep, s.default, s.companions, s.stationary, s.parts),
        limitations=limitations,
        metadata=meta,
        introduction=_stationarity_banner(s) + "Resumed training from a converged network theta*, measured "
        "against predictions computed from the network's own Hessian spectrum and gradient noise (002, with "
        "the corrections of ERRATA 002.1-002.5).")


def _stationarity_banner(s: _Study) -> str:
    if s.stationary is None:
        return "Stationarity of theta* was not certified (no settle windows). "
    if s.stationary:
        return "theta* is certified stationary (first section). "
    return ("WARNING: theta* is NOT certified stationary (first section); the rows that assume a stationary "
            "start are marked not_stationary. ")
