"""One-dimensional Fokker–Planck operator: finite-volume discretisation, spectral gap, density over time.

For ``dx = -U'(x) dt + sqrt(2 T) dW`` the density obeys ``dp/dt = d/dx (U' p + T dp/dx)`` (chapter 004,
time-scales section; the gap of ERRATA 004.6). On ``n`` equal cells of width ``h`` with centres ``x_i`` and
reflecting (zero-flux) ends, the flux between neighbours uses the square-root approximation

    k_{i -> i+1} = (T / h^2) exp(-(U_{i+1} - U_i) / (2 T)),
    k_{i+1 -> i} = (T / h^2) exp(-(U_i - U_{i+1}) / (2 T)),

a second-order finite-volume scheme (Scharfetter–Gummel type) that satisfies detailed balance with the
discrete Gibbs weights ``pi_i ∝ exp(-U_i / T)`` exactly, so its stationary law is Gibbs at any resolution.
The generator is symmetrised by ``pi^(1/2)`` into a tridiagonal matrix; eigenpairs come from
:func:`scipy.linalg.eigh_tridiagonal`. Its eigenvalues ``0 = lambda_0 < lambda_1 <= ...``: ``lambda_1`` is the
spectral gap; for the Ornstein–Uhlenbeck process ``U = h x^2 / 2`` it is ``h`` for every ``T`` (ERRATA 004.6).

>>> import numpy as np
>>> fp = fokker_planck_operator(lambda x: 1.5 * x**2, 0.3, -4.0, 4.0, 800)
>>> round(fp.spectral_gap, 3)
3.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

Array = NDArray[np.float64]


@dataclass(frozen=True)
class FokkerPlanck1D:
    """Finite-volume Fokker–Planck generator on cells with centres ``x`` (acts on cell probabilities)."""

    x: Array
    gibbs: Array  # stationary cell probabilities pi_i, summing to 1
    eigenvalues: Array  # of -L, ascending: 0, gap, ...
    eigenvectors: Array  # orthonormal eigenvectors of the symmetrised generator (columns)

    @property
    def cell_width(self) -> float:
        """Width ``h`` of each cell."""
        return float(self.x[1] - self.x[0])

    @property
    def spectral_gap(self) -> float:
        """``lambda_1``: the slowest relaxation rate."""
        return float(self.eigenvalues[1])

    def generator(self) -> Array:
        """The dense generator ``L`` with ``dp/dt = L p`` (columns sum to zero)."""
        s = np.sqrt(self.gibbs)
        sym = -(self.eigenvectors * self.eigenvalues) @ self.eigenvectors.T
        return s[:, None] * sym / s[None, :]

    def evolve(self, p0: ArrayLike, times: ArrayLike) -> Array:
        """Cell probabilities ``p(t) = exp(L t) p0`` at each time: shape ``(len(times), n)``."""
        p0 = np.asarray(p0, dtype=np.float64)
        if p0.shape != self.x.shape or np.any(p0 < 0) or not math.isclose(float(p0.sum()), 1.0, rel_tol=1e-9):
            raise ValueError(f"p0 must be {self.x.size} non-negative cell probabilities summing to 1")
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        if np.any(t < 0):
            raise ValueError("times must be >= 0")
        s = np.sqrt(self.gibbs)
        coeff = self.eigenvectors.T @ (p0 / s)
        return (s[None, :] * ((np.exp(-np.outer(t, self.eigenvalues)) * coeff) @ self.eigenvectors.T))

    def density(self, p: ArrayLike) -> Array:
        """Cell probabilities to a density (divide by the cell width)."""
        return np.asarray(p) / self.cell_width

    def stationary_autocorrelation(self, observable: ArrayLike, lags: ArrayLike) -> Array:
        """Stationary autocorrelation ``rho(t) = sum_{k>=1} c_k e^{-lambda_k t}`` of ``f`` at ``lags``.

        ``observable`` holds ``f`` at the cell centres ``x``; ``c_k = <f, psi_k>_pi^2 / Var_pi f`` with the
        right eigenfunctions ``psi_k = v_k / pi^(1/2)`` (``v_k`` the columns of ``eigenvectors``), so
        ``sum_k c_k = 1`` and ``int_0^inf rho = sum_k c_k / lambda_k`` (the integrated autocorrelation time).
        """
        f = np.asarray(observable, dtype=np.float64)
        if f.shape != self.x.shape:
            raise ValueError(f"observable must hold f at the {self.x.size} cell centres; got shape {f.shape}")
        weights = self.autocorrelation_weights(f)
        t = np.atleast_1d(np.asarray(lags, dtype=np.float64))
        return np.exp(-np.outer(t, self.eigenvalues[1:])) @ weights[1:]

    def autocorrelation_weights(self, observable: ArrayLike) -> Array:
        """``c_k``: the share of ``Var_pi f`` carried by each eigenmode (``c_0 = 0``; they sum to 1)."""
        f = np.asarray(observable, dtype=np.float64)
        f = f - np.sum(self.gibbs * f)
        proj = (np.sqrt(self.gibbs) * f) @ self.eigenvectors
        proj[0] = 0.0
        var = float(np.sum(self.gibbs * f * f))
        if var <= 0:
            raise ValueError("observable is constant under the stationary law: no autocorrelation")
        return proj**2 / var


def fokker_planck_operator(potential: Callable[[Array], Array], temperature: float, x_min: float,
                           x_max: float, n_cells: int) -> FokkerPlanck1D:
    """Discretise the Fokker–Planck operator of ``U`` at temperature ``T`` on ``[x_min, x_max]``."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature={temperature!r} is invalid: expected a finite temperature > 0")
    if not (math.isfinite(x_min) and math.isfinite(x_max) and x_min < x_max):
        raise ValueError(f"x_min={x_min!r}, x_max={x_max!r} are invalid: expected finite x_min < x_max")
    if not (isinstance(n_cells, (int, np.integer)) and n_cells >= 3):
        raise ValueError(f"n_cells={n_cells!r} is invalid: expected an integer >= 3")
    energy = getattr(potential, "energy", potential)
    h = (x_max - x_min) / n_cells
    x = x_min + h * (np.arange(n_cells) + 0.5)
    u = np.asarray(energy(x), dtype=np.float64)
    if not np.all(np.isfinite(u)):
        raise ValueError("potential must be finite on the grid")
    log_pi = -(u - u.min()) / temperature
    pi = np.exp(log_pi - np.log(np.sum(np.exp(log_pi))))
    rate = temperature / h**2
    up = rate * np.exp(-np.diff(u) / (2 * temperature))  # i -> i+1
    down = rate * np.exp(np.diff(u) / (2 * temperature))  # i+1 -> i
    diag = np.zeros(n_cells)
    diag[:-1] += up
    diag[1:] += down
    # Symmetrised off-diagonal: sqrt(k_{i->i+1} k_{i+1->i}) = T / h^2 by construction of the SQRA rates.
    off = -np.sqrt(up * down)
    eigenvalues, eigenvectors = linalg.eigh_tridiagonal(diag, off)
    eigenvalues[0] = max(eigenvalues[0], 0.0)  # rounding: the exact value is 0 (Gibbs)
    eigenvectors[:, 0] *= np.sign(eigenvectors[:, 0].sum())
    return FokkerPlanck1D(x, pi, eigenvalues, eigenvectors)
