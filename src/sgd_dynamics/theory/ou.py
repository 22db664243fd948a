"""The general multivariate Ornstein–Uhlenbeck process and its Fokker–Planck structure.

``dx = -A (x - mu) dt + sqrt(2 / kappa) D^(1/2) dW`` for any stable drift ``A`` (eigenvalues with positive
real part) and symmetric positive semi-definite diffusion ``D`` (002 eq. 7, appendix D).

* Mean: ``mu + exp(-A t)(x0 - mu)``.
* Lyapunov solution ``B``: ``A B + B A^T = 2 D``; covariance from a deterministic start
  ``kappa^-1 (B - exp(-A t) B exp(-A^T t))`` (eq. 10); stationary law ``N(mu, kappa^-1 B)`` (eq. 11);
  stationary cross-covariance ``Cov(x_s, x_t) = exp(-A (s - t)) kappa^-1 B`` for ``s >= t``.
* Decomposition ``A = (D + Q) U`` for a *non-symmetric* drift (ERRATA 002.4, replacing appendix D.2's
  eigenvector construction which assumes ``A = A^T``): ``U = B^-1``, ``Q = A B - D`` (skew-symmetric
  because ``A B + B A^T = 2 D``).
* Modified potential ``Psi(x) = (x - mu)^T U (x - mu) / 2`` with ``p_ss ~ exp(-kappa Psi)`` (eq. 13), and the
  stationary probability current ``J = -Q U (x - mu) p_ss`` (eq. 13). Detailed balance holds iff ``Q = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from numpy.typing import NDArray


@dataclass(frozen=True)
class OrnsteinUhlenbeck:
    """A multivariate OU process ``dx = -A (x - mu) dt + sqrt(2/kappa) D^(1/2) dW``.

    >>> ou = OrnsteinUhlenbeck(drift=np.array([[1.0, 0.5], [-0.5, 1.0]]), diffusion=np.eye(2))
    >>> U, Q = ou.decomposition()
    >>> bool(np.allclose(Q, -Q.T)), bool(np.allclose((ou.diffusion + Q) @ U, ou.drift))
    (True, True)
    """

    drift: NDArray[np.float64]
    diffusion: NDArray[np.float64]
    inverse_temperature: float = 1.0
    mean: NDArray[np.float64] | None = None
    _b: NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = np.asarray(self.drift, dtype=np.float64)
        d = np.asarray(self.diffusion, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"drift must be a square matrix; got shape {a.shape}")
        if d.shape != a.shape:
            raise ValueError(f"diffusion must have the drift's shape {a.shape}; got {d.shape}")
        if not np.allclose(d, d.T, rtol=1e-12, atol=1e-14 * max(1.0, np.abs(d).max())):
            raise ValueError("diffusion must be symmetric")
        if np.linalg.eigvalsh(d).min() < -1e-12 * max(1.0, np.abs(d).max()):
            raise ValueError(f"diffusion must be positive semi-definite; smallest eigenvalue "
                             f"{np.linalg.eigvalsh(d).min():.3g}")
        real_parts = np.linalg.eigvals(a).real
        if real_parts.min() <= 0:
            raise ValueError(f"drift must be stable (eigenvalues with real part > 0); smallest real part "
                             f"{real_parts.min():.3g}: no stationary law exists")
        if not (np.isfinite(self.inverse_temperature) and self.inverse_temperature > 0):
            raise ValueError(f"inverse_temperature={self.inverse_temperature!r} is invalid: "
                             "expected a finite value > 0")
        mu = np.zeros(a.shape[0]) if self.mean is None else np.asarray(self.mean, dtype=np.float64)
        if mu.shape != (a.shape[0],):
            raise ValueError(f"mean must have shape ({a.shape[0]},); got {mu.shape}")
        object.__setattr__(self, "drift", a)
        object.__setattr__(self, "diffusion", d)
        object.__setattr__(self, "mean", mu)
        # scipy solves A X + X A^H = Q; symmetrise away rounding
        b = scipy.linalg.solve_continuous_lyapunov(a, 2 * d)
        object.__setattr__(self, "_b", (b + b.T) / 2)

    @property
    def dimension(self) -> int:
        return self.drift.shape[0]

    def lyapunov_solution(self) -> NDArray[np.float64]:
        """``B`` with ``A B + B A^T = 2 D``."""
        return self._b.copy()

    def stationary_covariance(self) -> NDArray[np.float64]:
        """``kappa^-1 B`` (eq. 11)."""
        return self._b / self.inverse_temperature

    def mean_at(self, t: float, x0: NDArray[np.float64]) -> NDArray[np.float64]:
        """``E[x_t] = mu + exp(-A t)(x0 - mu)``."""
        return self.mean + scipy.linalg.expm(-self.drift * t) @ (np.asarray(x0, float) - self.mean)

    def covariance_at(self, t: float) -> NDArray[np.float64]:
        """``Cov(x_t)`` from a deterministic start: ``kappa^-1 (B - exp(-A t) B exp(-A^T t))`` (eq. 10)."""
        e = scipy.linalg.expm(-self.drift * t)
        c = (self._b - e @ self._b @ e.T) / self.inverse_temperature
        return (c + c.T) / 2

    def cross_covariance(self, t: float, s: float) -> NDArray[np.float64]:
        """``Cov(x_s, x_t)`` for ``0 <= t <= s`` from a deterministic start: ``exp(-A (s - t)) Cov(x_t)``."""
        if not 0 <= t <= s:
            raise ValueError(f"cross_covariance needs 0 <= t <= s; got t={t!r}, s={s!r}")
        return scipy.linalg.expm(-self.drift * (s - t)) @ self.covariance_at(t)

    def stationary_cross_covariance(self, lag: float) -> NDArray[np.float64]:
        """``Cov(x_{t+lag}, x_t)`` at stationarity, ``lag >= 0``."""
        if lag < 0:
            raise ValueError(f"lag={lag!r} is invalid: expected lag >= 0")
        return scipy.linalg.expm(-self.drift * lag) @ self.stationary_covariance()

    def decomposition(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(U, Q)`` with ``A = (D + Q) U`` (ERRATA 002.4).

        ``U = B^-1`` is symmetric positive definite, ``Q`` skew.
        """
        u = np.linalg.inv(self._b)
        q = self.drift @ self._b - self.diffusion
        return (u + u.T) / 2, (q - q.T) / 2

    def modified_potential(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``Psi(x) = (x - mu)^T U (x - mu) / 2``; points along the last axis."""
        u, _ = self.decomposition()
        y = np.asarray(x, dtype=np.float64) - self.mean
        return 0.5 * np.einsum("...i,ij,...j->...", y, u, y)

    def stationary_density(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The Gaussian ``p_ss(x) ~ exp(-kappa Psi(x))``, normalised."""
        cov = self.stationary_covariance()
        norm = np.sqrt(np.linalg.det(2 * np.pi * cov))
        return np.exp(-self.inverse_temperature * self.modified_potential(x)) / norm

    def probability_current(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Stationary current ``J(x) = -Q U (x - mu) p_ss(x)`` (eq. 13); points along the last axis."""
        u, q = self.decomposition()
        y = np.asarray(x, dtype=np.float64) - self.mean
        return -(y @ (q @ u).T) * self.stationary_density(x)[..., None]

    def detailed_balance_violation(self) -> float:
        """``||Q||_F / ||A B||_F``: zero iff the stationary state is in detailed balance."""
        _, q = self.decomposition()
        return float(np.linalg.norm(q) / np.linalg.norm(self.drift @ self._b))
