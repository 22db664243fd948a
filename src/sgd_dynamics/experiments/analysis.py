"""Predictions vs measurements for the stored sweep of a study (002 sections 7-8, ERRATA 002.2, 002.3, 002.5).

* Speed (eq. 18, corrected by ERRATA 002.3): measured ``mean ||delta_k||^2`` after the burn-in against
  ``eta^2 tr(Sigma) / (S (1 - beta^2))`` with no fitted constant, ``tr(Sigma)`` measured along the
  measured window (and, for reference, at ``theta*``); against the paper's one-run calibration (``sigma^2
  tr H`` inverted from the default point); and against the exact discrete per-mode speed (ERRATA 002.5) of
  the top-k modes plus the rest of ``tr(Sigma)`` in the continuous formula.
* Anomalous diffusion: the exponent ``c`` of ``||Delta_k||^2 ~ k^c`` on the last 2/3 of each run (002
  appendix I.6) with a block-bootstrap interval, its dependence on the window (appendix I.7), and the theory
  (exact discrete). Every point resumes from ``theta*`` with a fresh optimizer, so the main theory curve is
  ``E||theta_k - theta_0||^2`` from that start: per mode ``x_0`` drawn from the stationary law of the settle
  hyperparameters (the default point's, with the noise ``s_i`` measured at ``theta*``) and the momentum
  buffer ``b_0 = 0``. The stationary ``E||theta_{k+t} - theta_k||^2`` (start drawn with its stationary
  velocity at the point's own hyperparameters) is kept beside it. The theory needs every mode; the measured
  top-k modes are used exactly and the remaining ``m - k`` modes are modelled as identical modes carrying
  the rest of the Hessian trace and of ``tr(Sigma)`` (the "bulk" approximation, stated in the report).
* Oscillations (002 Figs. 6, 8, appendix H): the amplitude-weighted mean FFT frequency of the projections
  on ``q_1`` and ``q_k`` against the same statistic of the exact discrete spectrum of the mode, the AR(2)
  process ``x_{k+1} - (1 + beta - eta h) x_k + beta x_{k-1} = -eta xi_k`` whose amplitude spectrum is
  ``|1 - (1 + beta - eta h) e^{-i w} + beta e^{-2 i w}|^-1``.
* Isotropy (Fig. 4) and velocity (Fig. 5): measured ratios of the spread along ``q_1`` and ``q_k`` against
  the stationary moments of the theory and against the Gibbs law of the original loss.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sgd_dynamics.experiments.sweep import SweepPoint, load_point
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure.fits import fit_power_law, local_slope, oscillation_spectrum
from sgd_dynamics.store import read_arrays, write_arrays

__all__ = [
    "analyse_default",
    "analyse_sweep",
    "ar2_mean_frequency",
    "bulk_spectrum",
    "load_analysis",
    "save_analysis",
]


def ar2_mean_frequency(eigenvalue: float, hyper: Hyperparams, frequencies: np.ndarray) -> float:
    """Amplitude-weighted mean frequency (cycles/step) of one stationary mode of discrete SGD with momentum.

    Checked against the FFT of a simulated path of the recursion (independent of the closed form):

    >>> from sgd_dynamics.measure.fits import oscillation_spectrum
    >>> hp, rng, x = Hyperparams(lr=0.1, momentum=0.9), np.random.default_rng(0), np.zeros(20000)
    >>> for k in range(1, 19999):
    ...     x[k + 1] = (1 + 0.9 - 0.1 * 1.0) * x[k] - 0.9 * x[k - 1] - 0.1 * rng.standard_normal()
    >>> spec = oscillation_spectrum(x, detrend="constant")
    >>> bool(abs(ar2_mean_frequency(1.0, hp, spec.frequencies) / spec.mean_frequency[0] - 1) < 0.02)
    True
    """
    h = eigenvalue + hyper.weight_decay
    w = 2 * np.pi * np.asarray(frequencies[1:], np.float64)
    z = np.exp(-1j * w)
    amplitude = 1.0 / np.abs(1 - (1 + hyper.momentum - hyper.lr * h) * z + hyper.momentum * z**2)
    return float(np.sum(frequencies[1:] * amplitude) / np.sum(amplitude))


def bulk_spectrum(
    eigenvalues: np.ndarray,
    mode_noise: np.ndarray,
    hessian_trace: float,
    trace_sigma: float,
    num_parameters: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-k modes plus one "bulk" mode standing for the other ``m - k`` modes.

    Returns ``(rho, s, bulk multiplicity)``.
    The bulk mode has the mean remaining curvature ``(tr H - sum rho_i) / (m - k)`` (clipped at 0) and the
    mean remaining noise ``(tr Sigma - sum s_i) / (m - k)`` (clipped at 0).
    """
    k = len(eigenvalues)
    rest = max(num_parameters - k, 1)
    rho_bulk = max((hessian_trace - float(np.sum(eigenvalues))) / rest, 0.0)
    s_bulk = max((trace_sigma - float(np.sum(mode_noise))) / rest, 0.0)
    return np.append(eigenvalues, rho_bulk), np.append(mode_noise, s_bulk), rest


def _displacement_theory(
    rho: np.ndarray,
    s: np.ndarray,
    mult: int,
    hyper: Hyperparams,
    steps: np.ndarray,
    settle: Hyperparams | None = None,
    s_settle: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``E||Delta_k||^2`` of the top-k modes plus ``mult`` bulk modes, and its local exponent.

    Stationary when ``settle`` is None; otherwise from ``theta_0`` drawn from the stationary law of
    ``settle`` (noise ``s_settle``) with a zero momentum buffer.
    """
    from sgd_dynamics.theory import global_displacement, global_displacement_from_start, stationary_moments

    rho = np.maximum(rho, -hyper.weight_decay * 0.999)  # negative modes have no stationary law
    if settle is None:
        top = global_displacement(rho[:-1], s[:-1], hyper, steps)
        bulk = global_displacement(rho[-1:], s[-1:], hyper, steps)
    else:
        x0_var = stationary_moments(rho, s_settle, settle).position_variance
        top = global_displacement_from_start(rho[:-1], s[:-1], hyper, steps, x0_var[:-1])
        bulk = global_displacement_from_start(rho[-1:], s[-1:], hyper, steps, x0_var[-1:])
    total = top + mult * bulk
    logt = np.log(steps.astype(float))
    exponent = np.gradient(np.log(total), logt)
    return total, exponent


def _theory_curve(
    rho: np.ndarray,
    s: np.ndarray,
    mult: int,
    hyper: Hyperparams,
    steps: np.ndarray,
    window: tuple[float, float],
    settle: Hyperparams | None = None,
    s_settle: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Theory curve, local exponent and exponent fitted on ``window``; NaN where a mode is unstable."""
    try:
        curve, exponent = _displacement_theory(rho, s, mult, hyper, steps, settle, s_settle)
        return curve, exponent, fit_power_law(steps, curve, window=window, n_bootstrap=10).exponent
    except ValueError:
        return np.full(len(steps), np.nan), np.full(len(steps), np.nan), float("nan")


def _speed_discrete(rho: np.ndarray, s: np.ndarray, trace_sigma: float, hyper: Hyperparams) -> float:
    from sgd_dynamics.theory import stationary_speed, stationary_speed_from_trace

    try:
        top = stationary_speed(np.maximum(rho, 0.0), s, hyper, model="discrete")
    except ValueError:
        return float("nan")
    rest = max(trace_sigma - float(np.sum(s)), 0.0)
    return float(top + stationary_speed_from_trace(rest, hyper))


def analyse_sweep(
    theta: dict[str, np.ndarray], point_dirs: Sequence[Path], default: dict[str, Any], dataset_size: int
) -> dict[str, Any]:
    """Every prediction and measurement of the sweep, as JSON-ready rows plus arrays for the figures."""
    from sgd_dynamics.theory import stationary_speed_from_trace

    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, np.ndarray]] = {}
    loaded = [load_point(d) for d in point_dirs]
    default_key = (default["lr"], default["momentum"], default["batch_size"], "with_replacement")
    calib = None
    for point, data in loaded:
        if (point.lr, point.momentum, point.batch_size, point.sampler) == default_key:
            hp = point.hyper(dataset_size)
            measured = float(np.mean(data["local_sq_displacement"][point.burn_in :]))
            calib = measured * hp.inverse_temperature / hp.lr**2  # the paper's sigma^2 tr(H)
    for point, data in loaded:
        hp = point.hyper(dataset_size)
        local = data["local_sq_displacement"]
        glob = data["global_sq_displacement"]
        steps = np.arange(1, len(glob) + 1)
        trace_traj = float(np.nanmean(data["noise_trace"]))
        modes_traj = np.nanmean(data["noise_modes"], axis=0)
        measured = float(np.mean(local[point.burn_in :]))
        # block standard error: blocks of 50 steps are longer than the velocity correlation time 1/(1-beta)
        blocks = local[point.burn_in :][: (len(local) - point.burn_in) // 50 * 50].reshape(-1, 50).mean(1)
        sem = float(blocks.std(ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else float("nan")
        pred_traj = stationary_speed_from_trace(trace_traj, hp)
        pred_star = stationary_speed_from_trace(float(theta["trace_sigma"]), hp)
        pred_disc = _speed_discrete(theta["eigenvalues"], modes_traj, trace_traj, hp)
        pred_cal = hp.lr**2 * calib / hp.inverse_temperature if calib is not None else float("nan")
        window = (len(steps) / 3, len(steps))
        fit = fit_power_law(steps, glob, window=window, n_bootstrap=300, block_length=50, seed=0)
        rho, s, mult = bulk_spectrum(
            theta["eigenvalues"],
            modes_traj,
            float(theta["hessian_trace"]),
            trace_traj,
            int(theta["num_parameters"]),
        )
        # the state theta* was settled in: the default point's hyperparameters, Sigma measured at theta*
        settle = Hyperparams(
            lr=default["lr"],
            momentum=default["momentum"],
            batch_size=default["batch_size"],
            weight_decay=default.get("weight_decay", point.weight_decay),
        )
        _, s_settle, _ = bulk_spectrum(
            theta["eigenvalues"],
            np.asarray(theta["mode_noise"], np.float64),
            float(theta["hessian_trace"]),
            float(theta["trace_sigma"]),
            int(theta["num_parameters"]),
        )
        theory, theory_exp, theory_fit = _theory_curve(rho, s, mult, hp, steps, window, settle, s_settle)
        stat, stat_exp, stat_fit = _theory_curve(rho, s, mult, hp, steps, window)
        rows.append(
            {
                "name": point.name,
                "lr": point.lr,
                "momentum": point.momentum,
                "batch_size": point.batch_size,
                "sampler": point.sampler,
                "measured_speed": measured,
                "measured_speed_sem": sem,
                "predicted_speed": pred_traj,
                "predicted_speed_theta_star": pred_star,
                "predicted_speed_discrete": pred_disc,
                "calibrated_speed": pred_cal,
                "trace_sigma_trajectory": trace_traj,
                "relative_error": (pred_traj - measured) / measured,
                "relative_error_theta_star": (pred_star - measured) / measured,
                "relative_error_discrete": (pred_disc - measured) / measured,
                "relative_error_calibrated": (pred_cal - measured) / measured,
                "c": fit.exponent,
                "c_low": fit.exponent_interval[0],
                "c_high": fit.exponent_interval[1],
                "c_theory": float(theory_fit),
                "c_theory_stationary": float(stat_fit),
                "first_sq_displacement": float(glob[0]),
                "theory_first_sq_displacement": float(theory[0]),
                "theory_stationary_first_sq_displacement": float(stat[0]),
                "final_sq_displacement": float(glob[-1]),
                "theory_final_sq_displacement": float(theory[-1]),
                "theory_stationary_final_sq_displacement": float(stat[-1]),
            }
        )
        if point.sampler == "with_replacement":
            ls = local_slope(steps, glob)
            curves[point.name] = {
                "steps": steps,
                "measured": glob,
                "theory": theory,
                "theory_exponent": theory_exp,
                "theory_stationary": stat,
                "theory_stationary_exponent": stat_exp,
                "fit": fit.predict(steps),
                "local_steps": ls.steps,
                "local_slope": ls.slope,
                "local": local,
            }
    return {"rows": rows, "curves": curves, "calibration_sigma2_trH": calib}


def analyse_default(
    theta: dict[str, np.ndarray], point: SweepPoint, data: dict[str, np.ndarray], dataset_size: int
) -> dict[str, Any]:
    """Window dependence of ``c``, phase-space frequencies, isotropy and velocity of the default run."""
    from sgd_dynamics.theory import stationary_moments

    hp = point.hyper(dataset_size)
    glob = data["global_sq_displacement"]
    steps = np.arange(1, len(glob) + 1)
    lengths = [n for n in (len(glob) // 8, len(glob) // 4, len(glob) // 2, len(glob)) if n >= 12]
    fits = [
        fit_power_law(steps[:n], glob[:n], window=(n / 3, n), n_bootstrap=300, block_length=max(1, n // 60))
        for n in lengths
    ]
    k = theta["eigenvalues"].size
    pick = [0, k - 1]
    rho = theta["eigenvalues"][pick]
    s = np.nanmean(data["noise_modes"], axis=0)[pick]
    pos = data["position_projection"][point.burn_in :, pick].astype(np.float64)
    vel = data["velocity_projection"][point.burn_in :, pick].astype(np.float64)
    spec = oscillation_spectrum(pos, lr=hp.lr)
    theory_freq = [ar2_mean_frequency(float(r), hp, spec.frequencies) for r in rho]
    peak = hp.oscillation_frequency(rho) * hp.lr / (2 * np.pi)
    out: dict[str, Any] = {
        "window_lengths": lengths,
        "window_c": [f.exponent for f in fits],
        "window_low": [f.exponent_interval[0] for f in fits],
        "window_high": [f.exponent_interval[1] for f in fits],
        "modes": [1, k],
        "mode_eigenvalues": rho.tolist(),
        "mode_noise": s.tolist(),
        "fft_measured": spec.mean_frequency.tolist(),
        "fft_theory": theory_freq,
        "damped_frequency": peak.tolist(),
        "spectrum_frequencies": spec.frequencies,
        "spectrum_amplitudes": spec.amplitudes.T,
        "position": pos,
        "velocity": vel,
        "position_std": pos.std(0).tolist(),
        "velocity_std": vel.std(0).tolist(),
    }
    try:
        mom = stationary_moments(np.maximum(rho, 0.0), s, hp)
        out["position_std_theory"] = np.sqrt(mom.position_variance).tolist()
        out["velocity_std_theory"] = np.sqrt(mom.velocity_variance).tolist()
    except ValueError:
        out["position_std_theory"] = [float("nan")] * 2
        out["velocity_std_theory"] = [float("nan")] * 2
    return out


def save_analysis(directory: Path, name: str, result: dict[str, Any]) -> None:
    """Scalars and lists to ``name.json``; arrays to ``name.h5`` (HDF5); each atomic, the JSON last.

    An array ``result[key]`` is the dataset ``key``; a nested array ``result[key][sub][name]`` is the dataset
    ``name`` in the group ``key/sub`` (:func:`sgd_dynamics.store.write_arrays`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    scalars: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in result.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for sub, d in value.items():
                for k2, arr in d.items():
                    arrays[f"{key}/{sub}/{k2}"] = np.asarray(arr)
        else:
            scalars[key] = value
    write_arrays(directory / f"{name}.h5", arrays)
    tmp_json = directory / f"{name}.json.tmp"
    tmp_json.write_text(json.dumps(scalars, indent=1, default=_jsonable))
    os.replace(tmp_json, directory / f"{name}.json")


def load_analysis(directory: Path, name: str) -> dict[str, Any]:
    """Inverse of :func:`save_analysis` (nested arrays come back as ``{key: {sub: {name: array}}}``)."""
    out: dict[str, Any] = json.loads((directory / f"{name}.json").read_text())
    for key, array in read_arrays(directory / f"{name}.h5").items():
        parts = key.split("/")
        if len(parts) == 3:
            out.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = array
        else:
            out[key] = array
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
