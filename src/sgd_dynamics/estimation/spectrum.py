"""Oscillation spectra of projected trajectories (002 sec. 8, fig. 6, appendix H; ERRATA 002.2).

:func:`oscillation_spectrum` gives the dominant and the amplitude-weighted mean FFT frequency of each
coordinate, in cycles per step and as an angular frequency per unit of continuous time ``t = eta k``, the
unit of the theory's ``omega``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal

from sgd_dynamics._validation import require as _require
from sgd_dynamics.estimation.resampling import Summary

__all__ = ["OscillationSpectrum", "oscillation_spectrum"]


@dataclass(frozen=True)
class OscillationSpectrum:
    """FFT frequencies of projected trajectories, one column per mode (002 appendix H).

    ``frequencies`` (n_freq,) and ``amplitudes`` (n_freq, modes) are the one-sided spectrum ``|rfft|``
    in cycles per step (``amplitudes[0]``, the mean, is excluded from both summaries).
    ``dominant_frequency`` and ``mean_frequency`` (modes,) are in cycles per step; the ``*_angular``
    fields are ``2 pi f / eta`` in radians per unit of ``t = eta k`` (NaN when ``lr`` was not given).
    ``resolution = 1 / n_steps`` is the bin width.
    """

    frequencies: NDArray
    amplitudes: NDArray
    dominant_frequency: NDArray
    mean_frequency: NDArray
    dominant_angular: NDArray
    mean_angular: NDArray
    resolution: float


def oscillation_spectrum(
    trajectory: ArrayLike,
    *,
    lr: float | None = None,
    detrend: Literal["constant", "linear"] = "linear",
    window: Literal["hann", "boxcar"] = "hann",
) -> OscillationSpectrum:
    """Dominant and amplitude-weighted mean FFT frequency of each column of ``trajectory`` (steps, modes).

    The amplitude-weighted mean is ``sum_f f |X(f)| / sum_f |X(f)|`` over the positive frequencies
    (002 appendix H). Projected positions drift slowly (anomalous diffusion), so a linear trend is removed
    by default; its leakage would otherwise pull the mean frequency towards zero. The detrended series is
    tapered by a periodic Hann window by default: without it (``"boxcar"``) the leakage of a peaked,
    steeply falling spectrum (an SGD mode's AR(2) amplitude falls as ``f^-2``) lifts the high-frequency
    tail, and the mean frequency comes out 3% (``eta h = 0.07``) to 11% (``eta h = 0.018``) above the
    exact spectrum's on 1600 steps at momentum 0.9; Hann's sidelobes fall as ``f^-3`` (bias <= 0.2%).

    >>> k = np.arange(200)
    >>> s = oscillation_spectrum(np.cos(2 * np.pi * 0.1 * k), lr=0.01, detrend="constant")
    >>> float(s.dominant_frequency[0]), round(float(s.mean_frequency[0]), 9)
    (0.1, 0.1)
    >>> round(float(s.dominant_angular[0] / (2 * np.pi)), 9)   # 0.1 cycles per step = 10 cycles per unit t
    10.0
    """
    x = np.asarray(trajectory, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    _require(x.ndim == 2, "trajectory.shape", x.shape, "(steps,) or (steps, modes)")
    _require(x.shape[0] >= 4, "trajectory.shape[0]", x.shape[0], "at least 4 steps")
    _require(bool(np.all(np.isfinite(x))), "trajectory", Summary("(non-finite entries)"), "finite values")
    _require(detrend in ("constant", "linear"), "detrend", detrend, "'constant' or 'linear'")
    _require(window in ("hann", "boxcar"), "window", window, "'hann' or 'boxcar'")
    _require(lr is None or (np.isfinite(lr) and lr > 0), "lr", lr, "None or a learning rate > 0")
    n = x.shape[0]
    taper = signal.get_window(window, n)[:, None]  # periodic: a line on a bin spreads to exactly 3 bins
    amplitudes = np.abs(np.fft.rfft(signal.detrend(x, axis=0, type=detrend) * taper, axis=0))
    frequencies = np.fft.rfftfreq(n, d=1.0)
    positive = amplitudes[1:]
    total = positive.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, frequencies[1:] @ positive / np.where(total > 0, total, 1.0), np.nan)
    dominant = frequencies[1:][np.argmax(positive, axis=0)]
    to_angular = 2 * np.pi / lr if lr is not None else np.nan
    return OscillationSpectrum(
        frequencies=frequencies,
        amplitudes=amplitudes,
        dominant_frequency=dominant,
        mean_frequency=mean,
        dominant_angular=dominant * to_angular,
        mean_angular=mean * to_angular,
        resolution=1.0 / n,
    )
