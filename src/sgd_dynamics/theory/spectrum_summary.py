"""Summaries of a measured spectrum for the theory: the top-k modes plus one "bulk" mode, and AR(2) spectra.

* :func:`bulk_spectrum` — only the top-k Hessian eigenpairs of a network are measured. The other ``m - k``
  modes are modelled as identical modes carrying the rest of the Hessian trace and of ``tr(Sigma)``: the
  bulk curvature ``(tr H - sum rho_i) / (m - k)`` and noise ``(tr Sigma - sum s_i) / (m - k)`` (each
  clipped at 0), with multiplicity ``m - k``. Sums over modes (speed, displacement; 002 eqs. 18-19) then
  see the whole trace.
* :func:`spectrum_with_measure` — the top-k modes plus a quadrature rule for the rest, with no bulk
  assumption: nodes ``rho_j`` and weights ``w_j`` of the noise-weighted measure of the deflated spectrum
  (``sum_j w_j f(rho_j) ~ tr(Sigma f(H)) - sum_i s_i f(rho_i)``, issue 11 section 3), taken as modes of
  curvature ``rho_j`` and noise ``w_j``. The rule's weights are rescaled to carry ``tr(Sigma) - sum s_i``,
  so a rule measured at one state (``theta*``) serves the noise level measured at another (a trajectory).
  Every sum over modes that is linear in the noise (speed, displacement) is then a quadrature of it.
* :func:`ar2_mean_frequency` — one stationary mode of discrete SGD with momentum is the AR(2) process
  ``x_{k+1} - (1 + beta - eta h) x_k + beta x_{k-1} = -eta xi_k`` (002 appendix H, exact discrete form of
  eq. 9), with amplitude spectrum ``|1 - (1 + beta - eta h) e^{-i w} + beta e^{-2 i w}|^-1``; its
  amplitude-weighted mean frequency is the statistic measured by the FFT of a projected trajectory.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import Hyperparams

__all__ = ["ar2_mean_frequency", "bulk_spectrum", "spectrum_with_measure"]


def bulk_spectrum(eigenvalues: NDArray, mode_noise: NDArray, hessian_trace: float, trace_sigma: float,
                  num_parameters: int) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
    """Top-k modes plus one bulk mode standing for the other ``m - k``: ``(rho, s, multiplicity)``.

    >>> rho, s, mult = bulk_spectrum(np.array([3.0, 1.0]), np.array([0.3, 0.1]), 10.0, 1.0, 5)
    >>> rho.tolist(), s.round(6).tolist(), mult
    ([3.0, 1.0, 2.0], [0.3, 0.1, 0.2], 3)
    """
    k = len(eigenvalues)
    rest = max(num_parameters - k, 1)
    rho_bulk = max((hessian_trace - float(np.sum(eigenvalues))) / rest, 0.0)
    s_bulk = max((trace_sigma - float(np.sum(mode_noise))) / rest, 0.0)
    return np.append(eigenvalues, rho_bulk), np.append(mode_noise, s_bulk), rest


def spectrum_with_measure(eigenvalues: NDArray, mode_noise: NDArray, trace_sigma: float, nodes: NDArray,
                          weights: NDArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Top-k modes plus the rule ``(nodes, weights)`` rescaled to carry ``tr Sigma - sum s_i``: ``(rho, s)``.

    The rest ``tr Sigma - sum s_i`` is clipped at 0 (the top-k noise measured above the trace).

    >>> rho, s = spectrum_with_measure(np.array([3.0]), np.array([0.5]), 2.0, np.array([1.0, 0.1]),
    ...                                np.array([1.0, 2.0]))
    >>> rho.tolist(), s.tolist()
    ([3.0, 1.0, 0.1], [0.5, 0.5, 1.0])
    """
    eigenvalues, mode_noise = np.asarray(eigenvalues, np.float64), np.asarray(mode_noise, np.float64)
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    require(nodes.shape == weights.shape and nodes.ndim == 1, "nodes.shape", (nodes.shape, weights.shape),
            "1-D, one weight per node")
    require(bool(np.all(weights >= 0)) and float(weights.sum()) > 0, "weights", "(sum <= 0 or negative)",
            "non-negative weights with a positive sum (a Gauss rule)")
    rest = max(float(trace_sigma) - float(np.sum(mode_noise)), 0.0)
    return (np.concatenate([eigenvalues, nodes]),
            np.concatenate([mode_noise, weights * (rest / float(weights.sum()))]))


def ar2_mean_frequency(eigenvalue: float, hyper: Hyperparams, frequencies: NDArray) -> float:
    """Amplitude-weighted mean frequency (cycles/step) of one stationary mode of SGD with momentum.

    ``frequencies`` are the FFT frequencies (cycles/step, first one 0) the measured statistic uses.
    Checked against the FFT of a simulated path of the recursion (independent of the closed form):

    >>> hp, rng, x = Hyperparams(lr=0.1, momentum=0.9), np.random.default_rng(0), np.zeros(20000)
    >>> for k in range(1, 19999):
    ...     x[k + 1] = (1 + 0.9 - 0.1 * 1.0) * x[k] - 0.9 * x[k - 1] - 0.1 * rng.standard_normal()
    >>> f, amp = np.fft.rfftfreq(x.size), np.abs(np.fft.rfft(x - x.mean()))
    >>> measured = float(f[1:] @ amp[1:] / amp[1:].sum())
    >>> bool(abs(ar2_mean_frequency(1.0, hp, f) / measured - 1) < 0.02)
    True
    """
    h = eigenvalue + hyper.weight_decay
    w = 2 * np.pi * np.asarray(frequencies[1:], np.float64)
    z = np.exp(-1j * w)
    amplitude = 1.0 / np.abs(1 - (1 + hyper.momentum - hyper.lr * h) * z + hyper.momentum * z**2)
    return float(np.sum(frequencies[1:] * amplitude) / np.sum(amplitude))
