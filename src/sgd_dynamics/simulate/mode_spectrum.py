"""Sampling distribution of the FFT frequency of one SGD mode (002 Figs. 6, 8, appendix H), by simulation.

One stationary mode of discrete SGD with momentum on a quadratic is the AR(2) process
``x_{k+1} = (1 + beta - eta h) x_k - beta x_{k-1} - eta xi_k`` (white ``xi``, ``h = rho + lambda``).
:func:`ar2_frequency_spread` simulates it ``replicas`` times with the length of a measured projection and
applies the same estimator (:func:`~sgd_dynamics.estimation.oscillation_spectrum`): the spread of the
estimates is the Monte Carlo error bar of one measured mean frequency, and their mean exposes any bias of
the estimator against :func:`~sgd_dynamics.theory.ar2_mean_frequency`. The frequency statistic does not
depend on the noise scale, so unit noise is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from sgd_dynamics._validation import require
from sgd_dynamics.estimation import oscillation_spectrum
from sgd_dynamics.hyper import Hyperparams

__all__ = ["FrequencySpread", "ar2_frequency_spread", "ar2_paths"]

@dataclass(frozen=True)
class FrequencySpread:
    """Mean and standard deviation over replicas of the mean and dominant FFT frequencies (cycles/step)."""

    mean_frequency: float
    mean_frequency_std: float
    dominant_frequency: float
    dominant_frequency_std: float
    replicas: int


def ar2_paths(eigenvalue: float, hyper: Hyperparams, length: int, replicas: int,
              seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """``replicas`` stationary paths ``(length, replicas)`` of the mode's AR(2) recursion with unit noise.

    Each starts from the exact stationary law of ``(x_{-1}, x_{-2})`` (for ``x_k = a_1 x_{k-1} +
    a_2 x_{k-2} + e_k``: ``gamma_0 = (1 - a_2) / ((1 + a_2)((1 - a_2)^2 - a_1^2))``, ``gamma_1 = a_1
    gamma_0 / (1 - a_2)``), so no burn-in is needed. Needs a stable mode (``h = rho + lambda > 0``).
    """
    h = eigenvalue + hyper.weight_decay
    require(math.isfinite(h) and h > 0, "eigenvalue + weight_decay", h, "> 0 (a stationary mode)")
    require(int(length) >= 4, "length", length, "an integer >= 4")
    require(int(replicas) >= 2, "replicas", replicas, "an integer >= 2")
    a1, a2 = 1 + hyper.momentum - hyper.lr * h, -hyper.momentum
    radius = float(np.max(np.abs(np.roots([1.0, -a1, -a2]))))
    require(radius < 1, "hyper.lr", hyper.lr, f"a stable mode (root modulus {radius:.4g} < 1)")
    rng = np.random.default_rng(seed)
    gamma0 = (1 - a2) / ((1 + a2) * ((1 - a2) ** 2 - a1**2))
    gamma1 = a1 * gamma0 / (1 - a2)
    past = np.linalg.cholesky([[gamma0, gamma1], [gamma1, gamma0]]) @ rng.standard_normal((2, int(replicas)))
    # lfilter's transposed direct form: the state that continues the outputs y_{-1}, y_{-2}
    zi = np.stack([a1 * past[0] + a2 * past[1], a2 * past[0]])
    return signal.lfilter([1.0], [1.0, -a1, -a2], rng.standard_normal((int(length), int(replicas))),
                          axis=0, zi=zi)[0]


def ar2_frequency_spread(eigenvalue: float, hyper: Hyperparams, length: int, *, replicas: int = 200,
                         seed: int | np.random.SeedSequence = 0, detrend: str = "linear",
                         window: str = "hann") -> FrequencySpread:
    """The estimator's distribution on ``replicas`` stationary AR(2) paths (:func:`ar2_paths`)."""
    spec = oscillation_spectrum(ar2_paths(eigenvalue, hyper, length, replicas, seed), detrend=detrend,
                                window=window)
    return FrequencySpread(float(spec.mean_frequency.mean()), float(spec.mean_frequency.std(ddof=1)),
                           float(spec.dominant_frequency.mean()), float(spec.dominant_frequency.std(ddof=1)),
                           int(replicas))
