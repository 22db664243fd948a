"""Metastable dynamics between basins as a Markov jump process: rate matrix, stationary law, slowest rate.

Chapter 004, time-scales section ("metastable rates between basins"), for ``dx = -grad U dt + sqrt(2 T) dW``.
At low ``T`` the diffusion hops between the basins of the minima ``m_i`` of ``U`` like a Markov jump process
with generator ``Q`` (``Q_ij`` the rate ``i -> j``, rows summing to zero):

* **Eyring–Kramers rates** (ERRATA 004.4), for minima ``i, j`` joined by the index-1 saddle ``s``::

      Q_ij = 1 / tau_EK(m_i, s)
           = (|lambda_-(s)| / 2 pi) sqrt(det H(m_i) / |det H(s)|) exp(-(U(s) - U(m_i)) / T)

  They satisfy detailed balance with the Laplace occupation ``pi_i ∝ exp(-U(m_i)/T) / sqrt(det H(m_i))``, so
  that is the stationary law of ``Q``; the nonzero eigenvalue of ``-Q`` closest to 0 approximates the
  Fokker–Planck spectral gap, with relative error ``O(T)``.
* **Exact 1-D milestoning rates** by quadrature: with core sets ``C_i = [m_i - r, m_i + r]``, the rate out of
  well ``i`` is ``1 / tau_i`` with ``tau_i`` the exact mean first-passage time from ``m_i`` to the
  neighbouring cores, split between left and right by the exact splitting probability. With ``psi = e^{U/T}``,
  ``R(y) = int_a^y e^{-U/T}``, on ``(a, b)``::

      absorbing at a and b:  tau(x) = (1/T) [P(x) I(b) - I(x)],   P(x) = int_a^x psi / int_a^b psi,
                             I(x) = int_a^x psi(y) R(y) dy,        P(x) = probability of leaving at b;
      reflecting at a:       tau(x) = (1/T) int_x^b psi(y) R(y) dy  (a far out where e^{-U/T} is negligible).

  These are the rates that core-set transition counts along simulated trajectories estimate
  (:func:`sgd_dynamics.simulate.timescales.estimate_rate_matrix`).
* **Master equation** (issue 16 item 5): from a start ``p(0)`` the occupation is ``p(t) = p(0) exp(Q t)``, and
  the fraction of ``[0, t]`` spent in each basin is ``(1/t) int_0^t p(0) exp(Q s) ds``, the last row block of
  ``exp([[Q, I], [0, 0]] t)`` (Van Loan). A finite run's time fractions are this transient, not ``pi``.

>>> from sgd_dynamics.theory.escape import find_minimum, find_saddle
>>> from sgd_dynamics.theory.potential import parse_potential
>>> U = parse_potential("(x**2 - 1)**2")
>>> Q = eyring_kramers_rate_matrix([find_minimum(U, -1.0), find_minimum(U, 1.0)],
...                                [(0, 1, find_saddle(U, 0.1))], temperature=0.1)
>>> # slowest rate = 2 sqrt(32) e^{-1/T} / (2 pi)
>>> round(Q.slowest_relaxation_rate * math.pi / math.sqrt(2) * math.exp(10), 6)
4.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

from sgd_dynamics._validation import positive, require
from sgd_dynamics.theory.escape import CriticalPoint, eyring_kramers_time

Array = NDArray[np.float64]
_NEGLIGIBLE_RISE = 50.0  # e^{-50}: beyond this rise of U the Gibbs weight does not matter to 1e-20


@dataclass(frozen=True)
class RateMatrix:
    """Generator ``Q`` of a jump process between basins (``Q[i, j]``: the rate ``i -> j``; rows sum to 0)."""

    generator: Array

    @property
    def n_states(self) -> int:
        """Number of basins."""
        return int(self.generator.shape[0])

    @property
    def exit_rates(self) -> Array:
        """Total rate of leaving each basin, ``-Q_ii``."""
        return -np.diag(self.generator).copy()

    @property
    def stationary_distribution(self) -> Array:
        """``pi`` with ``pi Q = 0``, ``sum pi = 1``, by the Grassmann–Taksar–Heyman elimination.

        GTH uses only the off-diagonal rates and never subtracts, so basins whose rates differ by many orders
        of magnitude (low ``T``) keep full relative accuracy. Needs an irreducible ``Q``.
        """
        n = self.n_states
        k = self.generator.copy()
        np.fill_diagonal(k, 0.0)
        for last in range(n - 1, 0, -1):
            out = k[last, :last].sum()
            if out <= 0:
                raise ValueError(f"rate matrix is reducible: state {last} cannot reach states 0..{last - 1}")
            k[:last, last] /= out
            k[:last, :last] += np.outer(k[:last, last], k[last, :last])
        pi = np.zeros(n)
        pi[0] = 1.0
        for j in range(1, n):
            pi[j] = pi[:j] @ k[:j, j]
        return pi / pi.sum()

    def occupation(self, start: ArrayLike, times: ArrayLike) -> Array:
        """Master equation ``p(t) = p(0) exp(Q t)`` at each time: shape ``(len(times), n_states)``."""
        p0 = self._start(start)
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        require(bool(np.all(t >= 0)), "times", times, "times >= 0")
        return np.array([p0 @ linalg.expm(self.generator * s) for s in t])

    def time_averaged_occupation(self, start: ArrayLike, duration: float) -> Array:
        """Fraction of ``[0, duration]`` in each basin, ``(1/t) int_0^t p(0) exp(Q s) ds`` (Van Loan)."""
        p0 = self._start(start)
        t = positive(duration, "duration")
        n = self.n_states
        block = np.zeros((2 * n, 2 * n))
        block[:n, :n] = self.generator
        block[:n, n:] = np.eye(n)
        integral = linalg.expm(block * t)[:n, n:]  # int_0^t exp(Q s) ds
        return p0 @ integral / t

    def _start(self, start: ArrayLike) -> Array:
        p0 = np.asarray(start, dtype=np.float64)
        require(p0.shape == (self.n_states,) and bool(np.all(p0 >= 0)) and math.isclose(float(p0.sum()), 1.0),
                "start", start, f"{self.n_states} non-negative probabilities summing to 1")
        return p0

    @property
    def relaxation_rates(self) -> Array:
        """Eigenvalues of ``-Q`` in ascending order (real parts; real for a reversible ``Q``): ``0, ...``."""
        rates = np.sort(-np.linalg.eigvals(self.generator).real)
        rates[0] = max(rates[0], 0.0)  # rounding: the exact value is 0 (rows sum to zero)
        return rates

    @property
    def slowest_relaxation_rate(self) -> float:
        """The nonzero eigenvalue of ``-Q`` closest to 0: the metastable estimate of the spectral gap."""
        return float(self.relaxation_rates[1])


def rate_matrix(rates: ArrayLike) -> RateMatrix:
    """Generator from off-diagonal rates ``k[i, j] >= 0`` (the diagonal of ``rates`` is ignored)."""
    k = np.array(rates, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] < 2:
        raise ValueError(f"rates must be a square matrix of size >= 2; got shape {k.shape}")
    np.fill_diagonal(k, 0.0)
    if np.any(k < 0) or not np.all(np.isfinite(k)):
        raise ValueError("rates must be finite and >= 0 off the diagonal")
    return RateMatrix(k - np.diag(k.sum(axis=1)))


def eyring_kramers_rate_matrix(minima: Sequence[CriticalPoint],
                               saddles: Sequence[tuple[int, int, CriticalPoint]],
                               temperature: float) -> RateMatrix:
    """``Q`` with ``Q_ij = 1 / tau_EK(m_i, s_ij)`` for each ``(i, j, saddle)`` joining minima ``i``, ``j``."""
    n = len(minima)
    if n < 2:
        raise ValueError(f"minima has {n} entries: expected at least 2")
    k = np.zeros((n, n))
    for i, j, saddle in saddles:
        if not (0 <= i < n and 0 <= j < n and i != j):
            raise ValueError(f"saddle joins minima ({i}, {j}): expected two different indices in [0, {n})")
        k[i, j] += 1.0 / eyring_kramers_time(minima[i], saddle, temperature)
        k[j, i] += 1.0 / eyring_kramers_time(minima[j], saddle, temperature)
    return rate_matrix(k)


def laplace_occupation(minima: Sequence[CriticalPoint], temperature: float) -> Array:
    """``pi_i ∝ exp(-U(m_i)/T) / sqrt(det H(m_i))``, normalised over the given minima."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature={temperature!r} is invalid: expected a finite temperature > 0")
    u0 = min(m.energy for m in minima)
    w = np.array([math.exp(-(m.energy - u0) / temperature) / math.sqrt(float(np.prod(m.hessian_eigenvalues)))
                  for m in minima])
    return w / w.sum()


# --- exact 1-D rates by quadrature ---------------------------------------------------------------------
def _far_point(U: Callable[[Array], Array], T: float, start: float, direction: float) -> float:
    """A point beyond which U has risen by 50 T above its minimum on the way and keeps rising."""
    for k in range(1, 40):
        far = start + direction * 0.25 * (2.0**k - 1.0)
        u = U(np.linspace(start, far, 2001))
        if u[-1] - u.min() >= _NEGLIGIBLE_RISE * T and np.all(np.diff(u[-200:]) > 0):
            return far
    raise ValueError(f"potential is not confining in direction {direction:+g} from x={start:g}")


def _exit_statistics(U: Callable[[Array], Array], T: float, x0: float, a: float, b: float, reflect_a: bool,
                     n_points: int) -> tuple[float, float]:
    """(MFPT from ``x0`` out of ``(a, b)``, probability of leaving at ``b``); ``b`` is always absorbing."""
    y = np.linspace(a, b, n_points)
    u = U(y)
    lo, hi = float(u.min()), float(u.max())
    psi = np.exp((u - hi) / T)  # true psi = e^{hi/T} * psi
    rho = np.exp(-(u - lo) / T)  # true rho = e^{-lo/T} * rho
    h = y[1] - y[0]

    def cumtrapz(f: Array) -> Array:
        return np.concatenate([[0.0], np.cumsum(0.5 * h * (f[1:] + f[:-1]))])

    R = cumtrapz(rho)
    i_cum = cumtrapz(psi * R)
    big_psi = cumtrapz(psi)
    scale = math.exp((hi - lo) / T) / T
    i0 = int(np.argmin(np.abs(y - x0)))
    if reflect_a:
        return scale * float(i_cum[-1] - i_cum[i0]), 1.0
    p = float(big_psi[i0] / big_psi[-1])
    return scale * float(p * i_cum[-1] - i_cum[i0]), p


def exact_rate_matrix_1d(potential: Callable[[Array], Array], temperature: float, minima: Sequence[float],
                         core_radius: float, n_points: int = 200_001) -> RateMatrix:
    """Exact milestoning rates between the wells at ``minima`` (ascending) of a 1-D potential, by quadrature.

    The rate out of well ``i`` to ``i +- 1`` is ``P_+-(m_i) / tau_i`` where ``tau_i`` is the mean time from
    ``m_i`` to the edge of a neighbouring core (``m_{i-1} + r`` or ``m_{i+1} - r``) and ``P_+-`` the splitting
    probabilities; the outermost wells are reflected on their outer side. Trapezoid rule, ``n_points`` nodes.
    """
    T = float(temperature)
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"temperature={temperature!r} is invalid: expected a finite temperature > 0")
    m = np.asarray(minima, dtype=np.float64)
    if m.ndim != 1 or m.size < 2 or np.any(np.diff(m) <= 0):
        raise ValueError(f"minima={list(np.atleast_1d(m))!r} is invalid: expected >= 2 ascending positions")
    r = float(core_radius)
    if not (0 < r < 0.5 * float(np.diff(m).min())):
        raise ValueError(f"core_radius={core_radius!r} is invalid: expected 0 < r < half the closest spacing "
                         f"{0.5 * float(np.diff(m).min()):.4g}")
    energy = getattr(potential, "energy", potential)

    def U(x: Array) -> Array:
        return np.asarray(energy(np.asarray(x, dtype=np.float64)), dtype=np.float64)

    def mirrored(x: Array) -> Array:
        return U(-x)

    n = m.size
    k = np.zeros((n, n))
    for i in range(n):
        if i == 0:  # reflect far left, absorb at the next core: tau = 1 / k_01
            tau, _ = _exit_statistics(U, T, m[0], _far_point(U, T, m[0], -1.0), m[1] - r, True, n_points)
            k[0, 1] = 1.0 / tau
        elif i == n - 1:  # mirror image of the case above
            far = _far_point(mirrored, T, -m[-1], -1.0)
            tau, _ = _exit_statistics(mirrored, T, -m[-1], far, -(m[-2] + r), True, n_points)
            k[i, i - 1] = 1.0 / tau
        else:
            tau, p_right = _exit_statistics(U, T, m[i], m[i - 1] + r, m[i + 1] - r, False, n_points)
            k[i, i + 1], k[i, i - 1] = p_right / tau, (1.0 - p_right) / tau
    return rate_matrix(k)
