"""The HTML report of a limiting-dynamics study, drawn only from what the run directory stores.

:func:`write_study_report` reads ``config.json``, ``theta_star.h5``, ``analysis/`` and ``companions/``
(written by :func:`sgd_dynamics.experiments.study.run_study`) and recomputes nothing: ``sgd-dynamics report
RUN_DIR`` calls it. Every reading is generated from the numbers, so a failed prediction reads as one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from sgd_dynamics.report.html import Comparison, ReportSection, Table, write_report
from sgd_dynamics.store import read_arrays

__all__ = ["write_study_report"]


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    from sgd_dynamics.experiments.analysis import load_analysis

    if not (directory / f"{name}.json").exists():
        return None
    return load_analysis(directory, name)


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.1f}%"


def _early_late(local: np.ndarray) -> tuple[float, float]:
    """Mean of the first tenth and of the last half of a speed series, relative to its last three quarters."""
    local = np.asarray(local, np.float64)
    n = len(local)
    ref = float(np.mean(local[n // 4 :]))
    return float(np.mean(local[: max(1, n // 10)])) / ref, float(np.mean(local[n // 2 :])) / ref


def _displacement_reading(
    lr_rows: list[dict[str, Any]], curves: dict[str, Any], config: dict[str, Any]
) -> str:
    """The theory-vs-measurement sentences of the anomalous-diffusion section, from the stored numbers."""

    def ratios(key: str, at: int) -> list[float]:
        out = []
        for r in lr_rows:
            c = curves[r["name"]]
            out.append(float(c[key][at] / c["measured"][at]) if key in c else float("nan"))
        return out

    def listed(xs: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in xs)

    start_first, start_last = ratios("theory", 0), ratios("theory", -1)
    text = (
        "Every run resumes from theta* with a fresh optimizer, so the theory (dashed; top-k modes exact, the "
        "other modes as one bulk mode) starts each mode from the stationary position law of the settle "
        f"hyperparameters (lr={config['lr']:g}, momentum={config['momentum']:g}, S={config['batch_size']}) "
        f"with a zero momentum buffer. It gives c = {listed([r['c_theory'] for r in lr_rows])} on the same "
        f"window; theory/measured is {listed(start_first)} at the first step and {listed(start_last)} at "
        "the last."
    )
    if not all("theory_stationary" in curves[r["name"]] for r in lr_rows):
        return text
    stat_first, stat_last = ratios("theory_stationary", 0), ratios("theory_stationary", -1)
    closer = sum(abs(math.log(a)) < abs(math.log(b)) for a, b in zip(start_first, stat_first, strict=True)
                 if a > 0 and b > 0)
    return text + (
        " The stationary theory (dotted grey), which assumes the velocity is already stationary, gives "
        f"c = {listed([r.get('c_theory_stationary', float('nan')) for r in lr_rows])} and theory/measured "
        f"{listed(stat_first)} at the first step and {listed(stat_last)} at the last; at the first step "
        f"the prediction from the resumed start is the closer one for {closer} of {len(lr_rows)} learning "
        "rates."
    )


def _one_at_a_time(rows: list[dict], default: dict[str, Any]) -> dict[str, list[dict]]:
    """The lr, momentum and batch-size sweeps through the default point, each sorted by its own value."""
    hyper = ("lr", "momentum", "batch_size")
    return {
        key: sorted((r for r in rows if all(r[o] == default[o] for o in hyper if o != key)),
                    key=lambda r: r[key])
        for key in hyper
    }


def write_study_report(run_dir: Path | str) -> Path:
    """Write ``run_dir/report.html`` (and ``run_dir/figures/``) from the stored study.

    Returns the page path.
    """
    from sgd_dynamics.report import figures as F

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists() or not (run_dir / "analysis" / "sweep.json").exists():
        raise ValueError(
            f"RUN_DIR={str(run_dir)!r} holds no finished study (no config.json or analysis/): run "
            "'sgd-dynamics demo' or 'sgd-dynamics study CONFIG.toml' first"
        )
    config = json.loads((run_dir / "config.json").read_text())
    theta = read_arrays(run_dir / "theta_star.h5")
    sweep = _load(run_dir / "analysis", "sweep")
    default = _load(run_dir / "analysis", "default")
    tol = float(config["speed_tolerance"])
    rows = sweep["rows"]
    wr = [r for r in rows if r["sampler"] == "with_replacement"]
    wor = [r for r in rows if r["sampler"] == "without_replacement"]
    d_lr, d_m, d_s = config["lr"], config["momentum"], config["batch_size"]
    sweeps_wr = _one_at_a_time(wr, config)

    summary: list[Comparison] = []
    for r in rows:
        label = (f"speed, lr={r['lr']:g}, momentum={r['momentum']:g}, S={r['batch_size']}, "
                 f"{r['sampler'].replace('_', ' ')}")
        summary.append(
            Comparison(
                label,
                r["predicted_speed"],
                r["measured_speed"],
                tol if r["sampler"] == "with_replacement" else None,
                "eta^2 tr(Sigma)/(S(1-beta^2)), no fitted constant",
            )
        )
    sections: list[ReportSection] = []
    limitations: list[str] = []

    # --- theta*
    rho = theta["eigenvalues"]
    neg = int(np.sum(rho < 0))
    sections.append(
        ReportSection(
            "Hessian spectrum and gradient noise at theta*",
            f"The top {rho.size} Hessian eigenvalues at theta* span {rho.max():.3g} to {rho.min():.3g} "
            f"({neg} negative; "
            f"Hessian trace {float(theta['hessian_trace']):.4g} +- {float(theta['hessian_trace_se']):.2g}, "
            f"tr(Sigma) {float(theta['trace_sigma']):.4g}), and the right panel compares the per-mode noise "
            "s_i with "
            "the paper's assumption Sigma = sigma^2 H. The theory below uses the measured s_i and tr(Sigma) "
            f"directly, so it does not depend on that assumption.",
            figure=F.hessian_spectrum(rho, theta["mode_noise"]),
            table=Table(
                ("i", "rho_i", "s_i", "residual ||Hq-rho q||"),
                tuple(
                    (i + 1, float(rho[i]), float(theta["mode_noise"][i]), float(theta["residuals"][i]))
                    for i in range(rho.size)
                ),
            ),
        )
    )
    if neg:
        limitations.append(
            f"{neg} of the top Hessian eigenvalues at theta* are negative: theta* is not a minimum "
            "along those directions and the quadratic theory has no stationary law there "
            "(they are clipped to zero curvature plus weight decay in the predictions)."
        )

    # --- speed
    max_err = max(abs(r["relative_error"]) for r in wr)
    holds = max_err <= tol
    wor_dev = [r["relative_error"] for r in wor]
    sweeps_fig: dict[str, dict[str, list]] = {}
    sweeps_wor = _one_at_a_time(wor, config)
    for key, sel_wr in sweeps_wr.items():
        if len(sel_wr) < 2:
            continue
        by = {r[key]: r for r in sweeps_wor[key]}
        sweeps_fig[key] = {
            "values": [r[key] for r in sel_wr],
            "with_replacement": [r["measured_speed"] for r in sel_wr],
            "without_replacement": [by[r[key]]["measured_speed"] if r[key] in by else np.nan for r in sel_wr],
            "predicted": [r["predicted_speed"] for r in sel_wr],
            "calibrated": [r["calibrated_speed"] for r in sel_wr],
        }
    speed_rows = tuple(
        (
            r["lr"],
            r["momentum"],
            r["batch_size"],
            r["sampler"],
            r["measured_speed"],
            r["measured_speed_sem"],
            r["predicted_speed"],
            _pct(r["relative_error"]),
            _pct(r["relative_error_theta_star"]),
            _pct(r["relative_error_discrete"]),
            _pct(r["relative_error_calibrated"]),
        )
        for r in rows
    )
    sections.append(
        ReportSection(
            "Constant instantaneous speed (002 eq. 18, ERRATA 002.3; Fig. 7 top)",
            "The measured mean ||delta_k||^2 after the burn-in is compared with eta^2 "
            "tr(Sigma)/(S(1-beta^2)) with no "
            "fitted constant, tr(Sigma) measured along the same window, and with the paper's one-run "
            "calibration. "
            f"With sampling with replacement the prediction {'holds' if holds else 'fails'}: the largest "
            "relative error "
            f"over the {len(wr)} points is {100 * max_err:.1f}% (tolerance {100 * tol:.0f}%); without "
            "replacement the "
            f"prediction deviates by {_pct(min(wor_dev)) if wor_dev else 'n/a'} to "
            f"{_pct(max(wor_dev)) if wor_dev else 'n/a'}, "
            f"the anti-correlated noise of epoch shuffling that the theory does not model.",
            figure=F.speed_sweep(sweeps_fig) if sweeps_fig else None,
            table=Table(
                (
                    "lr",
                    "momentum",
                    "S",
                    "sampler",
                    "measured",
                    "s.e.",
                    "predicted",
                    "error",
                    "error, Sigma at theta*",
                    "error, discrete modes",
                    "error, one-run calibration",
                ),
                speed_rows,
                "Errors are (predicted - measured)/measured. 'Sigma at theta*' uses tr(Sigma) at the "
                "pretrained "
                "point instead of along the run; 'discrete modes' adds the exact finite-lr factor of the "
                "top-k modes (ERRATA 002.5).",
            ),
        )
    )
    star_err = max(abs(r["relative_error_theta_star"]) for r in wr)
    if star_err > tol:
        limitations.append(
            f"tr(Sigma) changes when the hyperparameters change: with tr(Sigma) taken at theta* "
            f"instead of along each run, the speed error reaches {100 * star_err:.0f}%. The theory "
            "assumes a constant noise covariance; the network's Sigma depends on where the new "
            "stationary state sits."
        )
    if wor_dev:
        limitations.append(
            f"Sampling without replacement (epoch shuffling) gives speeds {_pct(min(wor_dev))} to "
            f"{_pct(max(wor_dev))} off the formula; the SDE treats minibatch noise as independent "
            "across steps, which epoch shuffling violates (ERRATA 002.3)."
        )

    # --- local speed over time and displacement
    curves = sweep["curves"]
    dflt = [r for r in wr if (r["lr"], r["momentum"], r["batch_size"]) == (d_lr, d_m, d_s)][0]
    sections.append(
        ReportSection(
            "Speed over time at the default hyperparameters (Fig. 1, left)",
            f"||delta_k||^2 of resumed training: the mean over the first tenth of the run is "
            f"{_early_late(curves[dflt['name']]['local'])[0]:.2f} times, and over the last half "
            f"{_early_late(curves[dflt['name']]['local'])[1]:.2f} times, the mean after the burn-in, i.e. "
            "the speed is "
            f"constant once the velocity has equilibrated. That mean {dflt['measured_speed']:.4g} is "
            f"{_pct(dflt['relative_error'])} off the prediction {dflt['predicted_speed']:.4g} (dashed).",
            figure=F.speed_over_time(
                curves[dflt["name"]]["steps"],
                {"default": curves[dflt["name"]]["local"]},
                {"default": dflt["predicted_speed"]},
            ),
        )
    )
    lr_rows = sweeps_wr["lr"]
    keys = ("steps", "measured", "theory", "theory_stationary", "fit", "local_slope", "local_steps",
            "theory_exponent", "theory_stationary_exponent")
    disp = {
        f"lr={r['lr']:g}": {k: curves[r["name"]][k] for k in keys if k in curves[r["name"]]}
        for r in lr_rows
    }
    cs = [r["c"] for r in lr_rows]
    falling = all(a > b for a, b in zip(cs, cs[1:], strict=False))
    trend = (" - falling as the learning rate grows, as the theory predicts" if falling
             else " - not monotone in the learning rate")
    sections.append(
        ReportSection(
            "Anomalous diffusion: ||Delta_k||^2 and its local exponent (Fig. 1 right, section 8)",
            f"The global displacement grows as a power law whose exponent c (fitted on the last 2/3) is "
            f"{', '.join(f'{c:.2f}' for c in cs)} for lr = "
            f"{', '.join(f'{r[chr(108) + chr(114)]:g}' for r in lr_rows)}"
            f"{trend}. " + _displacement_reading(lr_rows, curves, config),
            figure=F.displacement_curves(disp),
        )
    )
    limitations.append(
        "The displacement theory needs the whole Hessian spectrum and noise; only the top-k modes "
        "are measured and the remaining modes are summarised by one bulk mode with the mean remaining "
        "curvature and noise, so the predicted ||Delta_k||^2 is only as good as that summary. It treats "
        "theta* as a draw from the stationary law of the settle hyperparameters of the quadratic model "
        "(noise measured at theta*) and the resumed optimizer's momentum buffer as zero; a theta* that "
        "has not settled along the slow modes is outside that description."
    )

    exp_fig: dict[str, dict[str, list]] = {}
    for key, sel in sweeps_wr.items():
        if len(sel) >= 2:
            exp_fig[key] = {
                "values": [r[key] for r in sel],
                "c": [r["c"] for r in sel],
                "low": [r["c_low"] for r in sel],
                "high": [r["c_high"] for r in sel],
                "theory": [r["c_theory"] for r in sel],
            }
    sections.append(
        ReportSection(
            "Exponent c across the sweeps (Fig. 7 bottom)",
            "Each point is the exponent fitted on the last 2/3 of one run, with a block-bootstrap 95% "
            "interval; crosses are the theory of the resumed run (theta* from the settled state, fresh "
            "optimizer) fitted on the same window. "
            + (
                "c falls with the learning rate as predicted."
                if falling
                else "c does not fall monotonically with the "
                "learning rate here, against the theory's prediction."
            ),
            figure=F.exponent_sweep(exp_fig) if exp_fig else None,
        )
    )
    summary.append(
        Comparison(
            f"exponent c falls with lr ({', '.join(f'{c:.2f}' for c in cs)})",
            float(falling),
            1.0,
            0.0,
            "1 = monotone decrease (qualitative check)",
        )
    )

    if default is not None:
        sections.append(
            ReportSection(
                "Dependence of c on the fitted window (appendix I.7)",
                f"The exponent fitted on the last 2/3 of the first L steps is "
                f"{', '.join(f'{c:.2f}' for c in default['window_c'])} for L = "
                f"{', '.join(str(n) for n in default['window_lengths'])}. "
                "A single power law would give a constant c; the drift of c with L shows that ||Delta_k||^2 "
                "is a sum of modes with different time scales, as the theory's sum over eigenmodes says.",
                figure=F.window_dependence(
                    default["window_lengths"],
                    default["window_c"],
                    default["window_low"],
                    default["window_high"],
                ),
            )
        )
        k = int(default["modes"][1])
        labels = ("q_1", f"q_{k}")
        fm, ft = default["fft_measured"], default["fft_theory"]
        ferr = [(a - b) / b for a, b in zip(ft, fm, strict=True)]
        sections.append(
            ReportSection(
                "Phase-space oscillations on q_1 and q_k (Figs. 6, 8)",
                f"The position-velocity projections rotate at rates set by their eigenvalues (rho = "
                f"{default['mode_eigenvalues'][0]:.3g} and {default['mode_eigenvalues'][1]:.3g}). The "
                "amplitude-weighted "
                f"FFT frequencies {fm[0]:.3g} and {fm[1]:.3g} cycles/step compare with {ft[0]:.3g} and "
                f"{ft[1]:.3g} from "
                f"the exact discrete spectrum of each mode (errors {_pct(ferr[0])}, {_pct(ferr[1])}).",
                figure=F.phase_space(default["position"], default["velocity"], labels),
            )
        )
        sections.append(
            ReportSection(
                "Spectra of the projected trajectories (appendix H)",
                "Amplitude spectra of the positions on q_1 and q_k with the theory's amplitude-weighted mean "
                "frequency "
                "(dashed) and the measured one (dotted). The match tests the per-mode damped oscillator of "
                "eq. 9 on the network itself.",
                figure=F.frequency_spectrum(
                    default["spectrum_frequencies"], default["spectrum_amplitudes"], ft, fm, labels
                ),
            )
        )
        for i, lab in enumerate(labels):
            summary.append(
                Comparison(
                    f"mean FFT frequency on {lab} (cycles/step)",
                    ft[i],
                    fm[i],
                    None,
                    "exact discrete spectrum of the mode",
                )
            )
        ps, pst = default["position_std"], default["position_std_theory"]
        vs, vst = default["velocity_std"], default["velocity_std_theory"]
        rho1, rhok = default["mode_eigenvalues"]
        gibbs = math.sqrt(max(rhok + config["weight_decay"], 1e-30) / (rho1 + config["weight_decay"]))
        grid = default["grid"]
        from sgd_dynamics.hyper import Hyperparams
        from sgd_dynamics.theory import modified_loss_curvature

        hp = Hyperparams(lr=d_lr, momentum=d_m, batch_size=d_s, weight_decay=config["weight_decay"])
        try:
            ux, uv = modified_loss_curvature(
                np.maximum(default["mode_eigenvalues"], 0.0), default["mode_noise"], hp
            )
        except ValueError:
            ux = uv = np.array([np.nan, np.nan])
        gx, gy = np.meshgrid(grid, grid, indexing="ij")
        psi_x = 0.5 * (ux[0] * gx**2 + ux[1] * gy**2)
        vmax = 1.3 * float(np.max(np.abs(default["velocity"])))
        vg = np.linspace(-vmax, vmax, len(grid))
        vx, vy = np.meshgrid(vg, vg, indexing="ij")
        psi_v = 0.5 * (uv[0] * vx**2 + uv[1] * vy**2)
        follows_modified = (abs(math.log((ps[0] / ps[1]) / (pst[0] / pst[1])))
                            < abs(math.log((ps[0] / ps[1]) / gibbs)))
        verdict = (
            "The trajectory follows the modified loss rather than the original one."
            if follows_modified
            else "Here the trajectory is closer to the original loss than to the modified loss."
        )
        sections.append(
            ReportSection(
                "Isotropy of the trajectory in the (q_1, q_k) plane (Fig. 4)",
                "The train and test losses are anisotropic in this plane (a Gibbs law of the original loss "
                "would give a "
                f"spread ratio std_1/std_k = {gibbs:.2f}), yet the measured ratio is {ps[0] / ps[1]:.2f} "
                f"against {pst[0] / pst[1]:.2f} from the modified loss (its level sets in the right panel). "
                f"{verdict}",
                figure=F.trajectory_on_slices(
                    gx,
                    gy,
                    {
                        "train loss": default["train_loss"],
                        "test loss": default["test_loss"],
                        "modified loss Psi_theta": psi_x,
                    },
                    default["position"],
                    labels,
                ),
            )
        )
        summary.append(
            Comparison(
                "spread ratio std(q_1)/std(q_k), modified loss",
                pst[0] / pst[1],
                ps[0] / ps[1],
                None,
                f"original-loss Gibbs law would give {gibbs:.3g}",
            )
        )
        sections.append(
            ReportSection(
                "Velocity and the implicit velocity regularisation Psi_v (Fig. 5)",
                "The projected velocities fill the level sets of Psi_v ~ v^T H^-1 v: the measured velocity "
                "spread ratio "
                f"std(v_1)/std(v_k) = {vs[0] / vs[1]:.2f} against {vst[0] / vst[1]:.2f} predicted.",
                figure=F.velocity_on_psi(vx, vy, psi_v, default["velocity"], labels),
            )
        )
        summary.append(
            Comparison("velocity spread ratio std(v_1)/std(v_k)", vst[0] / vst[1], vs[0] / vs[1], None)
        )

    # --- companions
    cdir = run_dir / "companions"
    lin = _load(cdir, "linear_regression")
    if lin is not None:
        st = lin["stationary"]
        sections.append(
            ReportSection(
                "Linear regression: eq. 9's mean vs the trajectory (Fig. 2)",
                f"Projected on the top Hessian eigenvector, the trajectories for momenta "
                f"{', '.join(f'{b:g}' for b in lin['momenta'])} follow eq. 9's mean with R^2 = "
                f"{', '.join(f'{r:.4f}' for r in lin['r2_continuous'])} (exact discrete mean: "
                f"{', '.join(f'{r:.4f}' for r in lin['r2_discrete'])}). At stationarity the exact discrete "
                "theory "
                f"predicts the speed {st['predicted_speed']:.4g} against {st['measured_speed']:.4g} measured "
                f"({_pct((st['predicted_speed'] - st['measured_speed']) / st['measured_speed'])}).",
                figure=F.linear_regression_mean(lin["runs"]),
                table=Table(
                    ("lag", "measured E||Delta||^2", "exact discrete theory"),
                    tuple(
                        (lag, a, b)
                        for lag, a, b in zip(
                            st["lags"], st["measured_displacement"], st["predicted_displacement"], strict=True
                        )
                    ),
                ),
            )
        )
        for b, r2 in zip(lin["momenta"], lin["r2_continuous"], strict=True):
            summary.append(
                Comparison(
                    f"linear regression R^2 of eq. 9 on q_1, momentum {b:g}",
                    r2,
                    1.0,
                    0.01,
                    "R^2 >= 0.99 required",
                )
            )
        summary.append(
            Comparison(
                "linear regression stationary speed (exact discrete)",
                st["predicted_speed"],
                st["measured_speed"],
                0.05,
            )
        )
    ou = _load(cdir, "ou")
    if ou is not None:
        mc, tc = ou["measured_covariance"], ou["theory_covariance"]
        sections.append(
            ReportSection(
                "An anisotropic OU process is driven by a modified loss (Fig. 3)",
                "With a diffusion that does not commute with the drift, the trajectory's stationary law "
                "follows the "
                "modified loss Psi (right), not the original loss (left); the grey lines are the stationary "
                "probability "
                "current (detailed-balance violation ||Q||/||AB|| = "
                f"{float(ou['detailed_balance_violation']):.2f}). The "
                f"measured covariance [{mc[0, 0]:.3g}, {mc[0, 1]:.3g}, {mc[1, 1]:.3g}] matches the Lyapunov "
                "solution "
                f"[{tc[0, 0]:.3g}, {tc[0, 1]:.3g}, {tc[1, 1]:.3g}] within the Monte Carlo error of one path.",
                figure=F.ou_modified_loss(
                    ou["grid_x"],
                    ou["grid_y"],
                    ou["original"],
                    ou["modified"],
                    ou["trajectory"],
                    (ou["current_x"], ou["current_y"]),
                ),
            )
        )
    arch = _load(cdir, "architectures")
    if arch is not None:
        cs_a = {k: v[0] for k, v in arch["c"].items()}
        sections.append(
            ReportSection(
                "Across architectures: constant speed, growing displacement (Fig. 1)",
                "For every architecture the speed stays near a constant while ||Delta_k||^2 keeps growing "
                "as a power "
                f"law, with c = {', '.join(f'{k} {v:.2f}' for k, v in cs_a.items())}. The BatchNorm networks "
                "are scale "
                "invariant in most weights, which the quadratic theory does not describe; the phenomenon is "
                "shared.",
                figure=F.architecture_comparison(arch["curves"]),
            )
        )
        limitations.append(
            "Networks with BatchNorm: the loss is invariant to the scale of most weights, so the "
            "Hessian is singular along those directions and weight decay alone sets the dynamics there; "
            "the per-example noise is measured in eval mode, while training uses batch statistics."
        )
    limitations.append(
        "The theory is the local quadratic model around theta* with a constant noise covariance; "
        "it does not describe how the network drifts to other regions (changing Sigma and H), "
        "which is why tr(Sigma) must be measured along each run."
    )

    meta: dict[str, Any] = {"configuration": config, "seed": config["seed"]}
    for name in ("environment.json", "timings.json"):
        p = run_dir / name
        if p.exists():
            meta[name.removesuffix(".json")] = json.loads(p.read_text())
    meta["theta*"] = {
        "train loss": float(theta["loss"][0]),
        "test loss": float(theta["loss"][1]),
        "train accuracy": float(theta["accuracy"][0]),
        "test accuracy": float(theta["accuracy"][1]),
        "parameters": int(theta["num_parameters"]),
        "Hessian-vector products": int(theta["hvp_count"]),
        "||g||^2 at theta*": float(theta["gradient_sq_norm"]),
    }
    title = f"Limiting dynamics of SGD: {config['model']} on {config['dataset']} ({config['loss']})"
    intro = (
        "Resumed training from a converged network theta*, measured against predictions computed from the "
        "network's own Hessian spectrum and gradient noise (002, with the corrections of ERRATA 002.1-002.5)."
    )
    return write_report(
        run_dir / "report.html",
        title,
        sections,
        summary=summary,
        limitations=limitations,
        metadata=meta,
        introduction=intro,
    )
