"""Predictions vs measurements for the stored sweep of a study (002 sections 7-8, ERRATA 002.2, 002.3, 002.5).

* Speed (eq. 18, corrected by ERRATA 002.3): measured ``mean ||delta_k||^2`` after the burn-in against
  ``eta^2 tr(Sigma) / (S (1 - beta^2))`` with no fitted constant, ``tr(Sigma)`` measured along the
  measured window (and, for reference, at ``theta*``); against the paper's one-run calibration (``sigma^2
  tr H`` inverted from the default point); and against the exact discrete per-mode speed (ERRATA 002.5) of
  the top-k modes plus the rest of ``tr(Sigma)`` in the continuous formula.
* Speed without replacement (issue 11 section 4): eq. 18 assumes noise independent across steps; the
  study's sampler walks a random permutation per epoch (``drop_last``), whose noise is anti-correlated
  within the epoch, and eq. 18 then overshoots. Those points are predicted by the exact reshuffling theory
  (:func:`sgd_dynamics.theory.reshuffled_stationary_speed`), which needs every mode's curvature: the top-k
  eigenvalues with the noise ``s_i`` measured along the trajectory, and for the rest the noise-weighted
  Lanczos measure of the deflated spectrum at ``theta*`` (``displacement.h5``, issue 11 section 3), its
  weights rescaled to the trajectory's ``tr(Sigma) - sum s_i``
  (:func:`sgd_dynamics.theory.spectrum_with_measure`), the same ``tr(Sigma)`` eq. 18 uses. Every
  ``Sigma`` here has the ``1/N`` of gradient_noise, the convention of theory/reshuffling. Without a
  measure (or when the top-k eigenpairs did not converge, so the rule was not deflated), the rest is the
  one bulk mode of :func:`bulk_spectrum`. Negative curvature is taken as flat. On the MLP of
  tests/study/test_study_pipeline.py at momentum 0.9 (eq. 18: +22% to +37%) this gives -2% to -6%; one bulk
  mode instead gives -14% to -22%, the rule with its own mass at ``theta*`` (not rescaled) -5% to -14%.
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
  on ``q_1`` and ``q_k`` (Hann-tapered: the untapered periodogram's leakage biases it upwards) against the
  same statistic of the exact discrete spectrum of the mode, the AR(2) process
  ``x_{k+1} - (1 + beta - eta h) x_k + beta x_{k-1} = -eta xi_k`` whose amplitude spectrum is
  ``|1 - (1 + beta - eta h) e^{-i w} + beta e^{-2 i w}|^-1``, with the estimator's spread (and mean) on
  simulated AR(2) paths of the same length as the error bar.
* Isotropy (Fig. 4) and velocity (Fig. 5): measured ratios of the spread along ``q_1`` and ``q_k`` against
  the stationary moments of the theory and against the Gibbs law of the original loss.

Each analysis is a pure function of the measurements (arrays read from the run directory) and the theory
(:mod:`sgd_dynamics.theory.study_prediction`, :mod:`sgd_dynamics.theory.spectrum_summary`): one
:class:`PointAnalysis` row per finished sweep point, one :class:`DivergedPoint` per diverged point, and the
arrays the figures draw. Internal choices (bootstrap block lengths) adapt to the length of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgd_dynamics._validation import require
from sgd_dynamics.estimation import fit_power_law, local_slope, oscillation_spectrum
from sgd_dynamics.experiments.sweep import Divergence, SweepPoint
from sgd_dynamics.hyper import Hyperparams, UnstableModeError
from sgd_dynamics.simulate import ar2_frequency_spread
from sgd_dynamics.store import load_results, save_results
from sgd_dynamics.theory import (
    ar2_mean_frequency,
    bulk_spectrum,
    discrete_speed,
    displacement_curve,
    gibbs_spread_ratio,
    modified_loss_planes,
    reshuffled_stationary_speed,
    spectrum_with_measure,
    stationary_moments,
    stationary_speed_from_trace,
)

__all__ = [
    "DivergedPoint",
    "PointAnalysis",
    "SweepAnalysis",
    "analyse_default",
    "analyse_sweep",
    "ar2_mean_frequency",
    "block_length",
    "bulk_spectrum",
    "load_analysis",
    "noise_measure_rest",
    "reshuffled_speed_prediction",
    "save_analysis",
]

# Blocks of 50 steps are longer than the velocity correlation time 1/(1-beta) of the studied momenta.
_BLOCK = 50


def block_length(n: int, preferred: int = _BLOCK) -> int:
    """The bootstrap/standard-error block: ``preferred`` steps, shortened to a quarter of a short series.

    >>> block_length(1000), block_length(40)
    (50, 10)
    """
    return max(1, min(preferred, n // 4))


@dataclass(frozen=True)
class PointAnalysis:
    """Predictions against measurements at one sweep point (speeds, exponent ``c``, displacement ends)."""

    name: str
    lr: float
    momentum: float
    batch_size: int
    sampler: str
    measured_speed: float
    measured_speed_sem: float
    predicted_speed: float
    predicted_speed_theta_star: float
    predicted_speed_discrete: float
    calibrated_speed: float
    trace_sigma_trajectory: float
    relative_error: float
    relative_error_theta_star: float
    relative_error_discrete: float
    relative_error_calibrated: float
    c: float
    c_low: float
    c_high: float
    c_theory: float
    c_theory_stationary: float
    first_sq_displacement: float
    theory_first_sq_displacement: float
    theory_stationary_first_sq_displacement: float
    final_sq_displacement: float
    theory_final_sq_displacement: float
    theory_stationary_final_sq_displacement: float
    # sampler without replacement only (NaN otherwise): the exact reshuffling theory (module docstring)
    predicted_speed_reshuffled: float = float("nan")
    relative_error_reshuffled: float = float("nan")


@dataclass(frozen=True)
class DivergedPoint:
    """A sweep point whose loss became non-finite: it is reported, not analysed."""

    name: str
    lr: float
    momentum: float
    batch_size: int
    sampler: str
    step: int
    loss: float


@dataclass(frozen=True)
class SweepAnalysis:
    """Every sweep point's row, the diverged points, the curves of the figures, the paper's calibration."""

    rows: tuple[PointAnalysis, ...]
    diverged: tuple[DivergedPoint, ...]
    curves: dict[str, dict[str, np.ndarray]]
    calibration_sigma2_trH: float | None

    def to_record(self) -> dict[str, Any]:
        """The mapping :func:`save_analysis` stores (rows as JSON objects, curves as HDF5 groups)."""
        return {"rows": [asdict(r) for r in self.rows], "diverged": [asdict(d) for d in self.diverged],
                "curves": self.curves, "calibration_sigma2_trH": self.calibration_sigma2_trH}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SweepAnalysis:
        """Inverse of :meth:`to_record`."""
        return cls(tuple(PointAnalysis(**r) for r in record["rows"]),
                   tuple(DivergedPoint(**d) for d in record.get("diverged", [])), record.get("curves", {}),
                   record.get("calibration_sigma2_trH"))


def _theory_curve(rho: np.ndarray, s: np.ndarray, mult: int, hyper: Hyperparams, steps: np.ndarray,
                  window: tuple[float, float], settle: Hyperparams | None = None,
                  s_settle: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Theory curve, local exponent and exponent fitted on ``window``; NaN where a mode is unstable."""
    try:
        curve, exponent = displacement_curve(rho, s, mult, hyper, steps, settle, s_settle)
        return curve, exponent, fit_power_law(steps, curve, window=window, n_bootstrap=10).exponent
    except ValueError:
        return np.full(len(steps), np.nan), np.full(len(steps), np.nan), float("nan")


def _calibration(loaded: Sequence[tuple[SweepPoint, dict]], default: Hyperparams, n: int) -> float | None:
    """The paper's one-run calibration ``sigma^2 tr(H)``, inverted from the default point's speed."""
    for point, data in loaded:
        if (point.lr, point.momentum, point.batch_size, point.sampler) == (
                default.lr, default.momentum, default.batch_size, "with_replacement"):
            hp = point.hyper(n)
            measured = float(np.mean(data["local_sq_displacement"][point.burn_in:]))
            return measured * hp.inverse_temperature / hp.lr**2
    return None


def _speed_sem(local: np.ndarray) -> float:
    block = block_length(len(local))
    blocks = local[: len(local) // block * block].reshape(-1, block).mean(1)
    return float(blocks.std(ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else float("nan")


def noise_measure_rest(nodes: np.ndarray, weights: np.ndarray, probes: int, deflated: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The part of a stored noise-weighted measure beyond its ``deflated`` top modes: ``(nodes, weights)``.

    ``nodes``/``weights`` are :attr:`SpectralMeasure.nodes`/``weights`` (``probes`` rules of equal length,
    concatenated; each rule's first ``deflated`` slots are the deflated eigenpairs).
    """
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    require(probes >= 1 and nodes.size % probes == 0 and nodes.shape == weights.shape, "probes", probes,
            f"a divisor of the {nodes.size} stored nodes")
    width = nodes.size // probes
    require(0 <= deflated < width, "deflated", deflated, f"0..{width - 1} (slots per rule)")
    rest = np.s_[:, deflated:]
    return nodes.reshape(probes, width)[rest].ravel(), weights.reshape(probes, width)[rest].ravel()


def reshuffled_speed_prediction(theta: dict[str, np.ndarray], modes: np.ndarray, trace_sigma: float,
                                hyper: Hyperparams, measure: tuple[np.ndarray, np.ndarray] | None) -> float:
    """Epoch-averaged speed of the study's without-replacement sampler (``drop_last``): module docstring.

    ``modes``, ``trace_sigma``: ``s_i`` and ``tr(Sigma)`` along the trajectory; ``measure``: the deflated
    noise-weighted rule at ``theta*`` (:func:`noise_measure_rest`), or None for the top-k + bulk spectrum.
    NaN where a mode is beyond the stability limit.
    """
    eigenvalues = np.asarray(theta["eigenvalues"], np.float64)
    if measure is None:
        rho, s, mult = bulk_spectrum(eigenvalues, modes, float(theta["hessian_trace"]), trace_sigma,
                                     int(theta["num_parameters"]))
        s = s.copy()
        s[-1] *= mult        # the speed is linear in s: mult equal modes = one mode with mult times the noise
    else:
        rho, s = spectrum_with_measure(eigenvalues, modes, trace_sigma, *measure)
    try:
        return reshuffled_stationary_speed(np.maximum(rho, -hyper.weight_decay), s, hyper, drop_last=True)
    except UnstableModeError:
        return float("nan")


def _analyse_point(theta: dict[str, np.ndarray], point: SweepPoint, data: dict[str, np.ndarray],
                   settle: Hyperparams, calib: float | None, n: int,
                   measure: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[PointAnalysis, dict | None]:
    """One point's row, and its curves when it samples with replacement (the figures show those)."""
    hp = point.hyper(n)
    local, glob = data["local_sq_displacement"], data["global_sq_displacement"]
    steps = np.arange(1, len(glob) + 1)
    trace_traj = float(np.nanmean(data["noise_trace"]))
    modes_traj = np.nanmean(data["noise_modes"], axis=0)
    measured = float(np.mean(local[point.burn_in:]))
    pred_traj = stationary_speed_from_trace(trace_traj, hp)
    pred_star = stationary_speed_from_trace(float(theta["trace_sigma"]), hp)
    pred_disc = discrete_speed(theta["eigenvalues"], modes_traj, trace_traj, hp)
    pred_cal = hp.lr**2 * calib / hp.inverse_temperature if calib is not None else float("nan")
    window = (len(steps) / 3, len(steps))
    in_window = int(np.sum((steps >= window[0]) & (steps <= window[1])))
    fit = fit_power_law(steps, glob, window=window, n_bootstrap=300, block_length=block_length(in_window),
                        seed=0)
    spectrum = (theta["eigenvalues"], float(theta["hessian_trace"]))
    m = int(theta["num_parameters"])
    rho, s, mult = bulk_spectrum(spectrum[0], modes_traj, spectrum[1], trace_traj, m)
    # the state theta* was settled in: the default point's hyperparameters, Sigma measured at theta*
    _, s_settle, _ = bulk_spectrum(spectrum[0], np.asarray(theta["mode_noise"], np.float64), spectrum[1],
                                   float(theta["trace_sigma"]), m)
    theory, theory_exp, theory_fit = _theory_curve(rho, s, mult, hp, steps, window, settle, s_settle)
    stat, stat_exp, stat_fit = _theory_curve(rho, s, mult, hp, steps, window)
    pred_rr = (reshuffled_speed_prediction(theta, modes_traj, trace_traj, hp, measure)
               if point.sampler == "without_replacement" else float("nan"))
    err = {name: (value - measured) / measured for name, value in (
        ("relative_error", pred_traj), ("relative_error_theta_star", pred_star),
        ("relative_error_discrete", pred_disc), ("relative_error_calibrated", pred_cal),
        ("relative_error_reshuffled", pred_rr))}
    row = PointAnalysis(
        name=point.name, lr=point.lr, momentum=point.momentum, batch_size=point.batch_size,
        sampler=point.sampler, measured_speed=measured, measured_speed_sem=_speed_sem(local[point.burn_in:]),
        predicted_speed=pred_traj, predicted_speed_theta_star=pred_star, predicted_speed_discrete=pred_disc,
        calibrated_speed=pred_cal, trace_sigma_trajectory=trace_traj, **err, c=fit.exponent,
        c_low=fit.exponent_interval[0], c_high=fit.exponent_interval[1], c_theory=float(theory_fit),
        c_theory_stationary=float(stat_fit), first_sq_displacement=float(glob[0]),
        theory_first_sq_displacement=float(theory[0]), theory_stationary_first_sq_displacement=float(stat[0]),
        final_sq_displacement=float(glob[-1]), theory_final_sq_displacement=float(theory[-1]),
        theory_stationary_final_sq_displacement=float(stat[-1]), predicted_speed_reshuffled=pred_rr)
    if point.sampler != "with_replacement":
        return row, None
    ls = local_slope(steps, glob)
    curves = {"steps": steps, "measured": glob, "theory": theory, "theory_exponent": theory_exp,
              "theory_stationary": stat, "theory_stationary_exponent": stat_exp, "fit": fit.predict(steps),
              "local_steps": ls.steps, "local_slope": ls.slope, "local": local}
    return row, curves


def analyse_sweep(theta: dict[str, np.ndarray], finished: Sequence[tuple[SweepPoint, dict[str, np.ndarray]]],
                  diverged: Sequence[tuple[SweepPoint, Divergence]], default: Hyperparams,
                  dataset_size: int, measure: tuple[np.ndarray, np.ndarray] | None = None) -> SweepAnalysis:
    """Every prediction and measurement of the sweep: a pure function of the stored arrays and the theory.

    ``default`` holds the default point's hyperparameters (the settle state of ``theta*``); ``measure``
    the deflated noise-weighted rule at ``theta*`` (:func:`noise_measure_rest`) for the without-replacement
    points (None: top-k + bulk).
    """
    calib = _calibration(finished, default, dataset_size)
    rows, curves = [], {}
    for point, data in finished:
        row, curve = _analyse_point(theta, point, data, default, calib, dataset_size, measure)
        rows.append(row)
        if curve is not None:
            curves[point.name] = curve
    bad = tuple(DivergedPoint(p.name, p.lr, p.momentum, p.batch_size, p.sampler, d.step, d.loss)
                for p, d in diverged)
    return SweepAnalysis(tuple(rows), bad, curves, calib)


def _window_fits(glob: np.ndarray) -> dict[str, list]:
    """``c`` fitted on the last 2/3 of the first L steps for L = n/8, n/4, n/2, n (appendix I.7)."""
    steps = np.arange(1, len(glob) + 1)
    lengths = [n for n in (len(glob) // 8, len(glob) // 4, len(glob) // 2, len(glob)) if n >= 12]
    fits = [fit_power_law(steps[:n], glob[:n], window=(n / 3, n), n_bootstrap=300,
                          block_length=max(1, n // 60)) for n in lengths]
    return {"window_lengths": lengths, "window_c": [f.exponent for f in fits],
            "window_low": [f.exponent_interval[0] for f in fits],
            "window_high": [f.exponent_interval[1] for f in fits]}


def _fft_spread(rho: np.ndarray, hp: Hyperparams, length: int) -> dict[str, list[float]]:
    """The mean-frequency estimator on 200 simulated AR(2) paths of each mode: its mean and spread.

    The spread is the error bar of the one measured value; ``nan`` for a mode with ``h <= 0`` or unstable.
    """
    means, stds = [], []
    for r in rho:
        try:
            spread = ar2_frequency_spread(float(r), hp, length, replicas=200, seed=0)
            means.append(spread.mean_frequency)
            stds.append(spread.mean_frequency_std)
        except ValueError:
            means.append(float("nan"))
            stds.append(float("nan"))
    return {"fft_estimator_mean": means, "fft_spread": stds}


def analyse_default(theta: dict[str, np.ndarray], point: SweepPoint, data: dict[str, np.ndarray],
                    dataset_size: int, grid: np.ndarray | None = None) -> dict[str, Any]:
    """Window dependence of ``c``, phase-space frequencies, isotropy and velocity of the default run.

    With the slice ``grid`` of the landscape, also the modified loss on the position and velocity planes
    and the Gibbs spread ratio of the original loss (the Fig. 4 and 5 comparisons).
    """
    hp = point.hyper(dataset_size)
    k = theta["eigenvalues"].size
    pick = [0, k - 1]
    rho = theta["eigenvalues"][pick]
    s = np.nanmean(data["noise_modes"], axis=0)[pick]
    pos = data["position_projection"][point.burn_in:, pick].astype(np.float64)
    vel = data["velocity_projection"][point.burn_in:, pick].astype(np.float64)
    spec = oscillation_spectrum(pos, lr=hp.lr)
    out: dict[str, Any] = {
        **_window_fits(data["global_sq_displacement"]),
        "modes": [1, k],
        "mode_eigenvalues": rho.tolist(),
        "mode_noise": s.tolist(),
        "fft_measured": spec.mean_frequency.tolist(),
        "fft_theory": [ar2_mean_frequency(float(r), hp, spec.frequencies) for r in rho],
        **_fft_spread(rho, hp, pos.shape[0]),
        "damped_frequency": (hp.oscillation_frequency(rho) * hp.lr / (2 * np.pi)).tolist(),
        "spectrum_frequencies": spec.frequencies,
        "spectrum_amplitudes": spec.amplitudes.T,
        "position": pos,
        "velocity": vel,
        "position_std": pos.std(0).tolist(),
        "velocity_std": vel.std(0).tolist(),
        "gibbs_spread_ratio": gibbs_spread_ratio(float(rho[0]), float(rho[1]), hp.weight_decay),
    }
    try:
        mom = stationary_moments(np.maximum(rho, 0.0), s, hp)
        out["position_std_theory"] = np.sqrt(mom.position_variance).tolist()
        out["velocity_std_theory"] = np.sqrt(mom.velocity_variance).tolist()
    except ValueError:
        out["position_std_theory"] = [float("nan")] * 2
        out["velocity_std_theory"] = [float("nan")] * 2
    if grid is not None:
        out.update(modified_loss_planes(rho, s, hp, grid, 1.3 * float(np.max(np.abs(vel)))))
    return out


def save_analysis(directory: Path, name: str, result: dict[str, Any]) -> None:
    """Store an analysis (:func:`sgd_dynamics.store.save_results`: scalars to JSON, arrays to HDF5)."""
    save_results(directory, name, result)


def load_analysis(directory: Path, name: str) -> dict[str, Any]:
    """Inverse of :func:`save_analysis`."""
    return load_results(directory, name)
