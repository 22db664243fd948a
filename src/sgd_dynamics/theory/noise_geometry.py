"""Geometry of gradient noise against curvature, and the stationary covariance it produces.

Chapter 004 (noise geometry; Thm 8 corrected by ERRATA 004.2/004.3). ``Sigma`` is the per-example gradient
covariance and ``H`` the Hessian, both ``d x d`` symmetric; the minibatch noise has covariance ``Sigma / B``.

* alignment ``tr(Sigma H) / (||Sigma||_F ||H||_F)`` (1 when ``Sigma ∝ H``, the Fisher-like case of
  ERRATA 004.3);
* top-``k`` eigenspace overlap ``||U_Sigma^T U_H||_F^2 / k`` in ``[0, 1]``;
* anisotropy ``lambda_max(Sigma) / (tr Sigma / d)`` (1 when isotropic, ``d`` when rank one) and effective rank
  ``(tr Sigma)^2 / ||Sigma||_F^2``;
* stationary covariance of SGD (no momentum) near a minimum: continuous Lyapunov ``H C + C H = (eta/B) Sigma``
  and the exact discrete ``C = (I - eta H) C (I - eta H) + (eta^2 / B) Sigma``. In the eigenbasis of ``H``
  (``h_i``), with ``Sigma'`` = ``Sigma`` in that basis::

      C'_ij = (eta / B) Sigma'_ij / (h_i + h_j)                    (continuous)
      C'_ij = (eta / B) Sigma'_ij / (h_i + h_j - eta h_i h_j)      (discrete)

  so when ``H`` and ``Sigma`` commute ``Var_i = eta s_i / (2 B h_i)`` and ``eta s_i / (B h_i (2 - eta h_i))``.

>>> import numpy as np
>>> H = np.diag([4.0, 1.0]); S = np.diag([2.0, 0.5])
>>> np.diag(stationary_covariance_continuous(H, S, lr=0.1, batch_size=1)).round(6).tolist()
[0.025, 0.025]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _symmetric(a: ArrayLike, name: str) -> Array:
    m = np.asarray(a, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square matrix; got shape {m.shape}")
    if not np.allclose(m, m.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(m).max()))):
        raise ValueError(f"{name} must be symmetric")
    return (m + m.T) / 2


@dataclass(frozen=True)
class NoiseGeometry:
    """Alignment of ``Sigma`` with ``H`` and the shape of ``Sigma``."""

    alignment: float
    top_overlap: float
    anisotropy: float
    effective_rank: float


def alignment(sigma: ArrayLike, hessian: ArrayLike) -> float:
    """``tr(Sigma H) / (||Sigma||_F ||H||_F)``."""
    S, H = _symmetric(sigma, "sigma"), _symmetric(hessian, "hessian")
    return float(np.sum(S * H) / (np.linalg.norm(S) * np.linalg.norm(H)))


def top_eigenspace_overlap(sigma: ArrayLike, hessian: ArrayLike, k: int) -> float:
    """``||U_Sigma^T U_H||_F^2 / k`` for the top-``k`` eigenvectors of each.

    1: same subspace, ~k/d: random.
    """
    S, H = _symmetric(sigma, "sigma"), _symmetric(hessian, "hessian")
    if S.shape != H.shape:
        raise ValueError(f"sigma and hessian must have the same shape; got {S.shape} and {H.shape}")
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= S.shape[0]):
        raise ValueError(f"k={k!r} is invalid: expected an integer in [1, {S.shape[0]}]")
    us = np.linalg.eigh(S)[1][:, -k:]
    uh = np.linalg.eigh(H)[1][:, -k:]
    return float(np.sum((us.T @ uh) ** 2) / k)


def noise_geometry(sigma: ArrayLike, hessian: ArrayLike, k: int = 1) -> NoiseGeometry:
    """All geometry summaries at once."""
    S = _symmetric(sigma, "sigma")
    ev = np.linalg.eigvalsh(S)
    tr = float(ev.sum())
    return NoiseGeometry(alignment(S, hessian), top_eigenspace_overlap(S, hessian, k),
                         float(ev[-1] / (tr / S.shape[0])), float(tr**2 / np.sum(ev**2)))


def _in_hessian_basis(hessian: ArrayLike, sigma: ArrayLike) -> tuple[Array, Array, Array]:
    H, S = _symmetric(hessian, "hessian"), _symmetric(sigma, "sigma")
    h, U = np.linalg.eigh(H)
    if h[0] <= 0:
        raise ValueError("hessian must be positive definite for a stationary covariance; "
                         f"lambda_min={h[0]:.3g}")
    return h, U, U.T @ S @ U


def stationary_covariance_continuous(hessian: ArrayLike, sigma: ArrayLike, lr: float,
                                     batch_size: int) -> Array:
    """Solution ``C`` of ``H C + C H = (eta / B) Sigma``."""
    h, U, Sp = _in_hessian_basis(hessian, sigma)
    Cp = (lr / batch_size) * Sp / (h[:, None] + h[None, :])
    return U @ Cp @ U.T


def stationary_covariance_discrete(hessian: ArrayLike, sigma: ArrayLike, lr: float, batch_size: int) -> Array:
    """Solution ``C`` of ``C = (I - eta H) C (I - eta H) + (eta^2 / B) Sigma`` (plain SGD).

    Needs ``eta h < 2``.
    """
    h, U, Sp = _in_hessian_basis(hessian, sigma)
    if lr * h[-1] >= 2:
        raise ValueError(f"lr={lr!r} is unstable: lr * lambda_max(H) = {lr * h[-1]:.4g} must be < 2")
    Cp = (lr / batch_size) * Sp / (h[:, None] + h[None, :] - lr * np.outer(h, h))
    return U @ Cp @ U.T


def stationary_variance_per_direction(hessian: ArrayLike, sigma: ArrayLike, lr: float, batch_size: int,
                                      *, discrete: bool = True) -> Array:
    """Stationary variance along each Hessian eigenvector (ascending curvature order)."""
    h, U, _ = _in_hessian_basis(hessian, sigma)
    solve = stationary_covariance_discrete if discrete else stationary_covariance_continuous
    return np.diag(U.T @ solve(hessian, sigma, lr, batch_size) @ U).copy()
