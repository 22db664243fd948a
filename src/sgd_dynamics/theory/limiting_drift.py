"""Limiting drift along a valley of minima for heavy-ball SGD (003 eq. 6, Def. 3.3, App. F).

Linear algebra only; the third-derivative contraction ``d^2(grad L)[S] = grad_w Tr(H(w) S)`` is supplied by
the caller (:mod:`sgd_dynamics.measure.limiting_drift` computes it by autodiff).

Operator of Definition 3.3, with ``C^-2 eta^(1 - 2 gamma) = eta / (1 - beta)^2`` (003 eq. 2)::

    L~_H S = {H, S} + (1/2) (eta / (1 - beta)^2) [[S, H], H]

on symmetric matrices supported on the range of ``H``. In the eigenbasis of ``H`` (ERRATA 003.5)
``(L~^-1 M)~_ij = M~_ij / (lambda_i + lambda_j + (1/2) (eta/(1-beta)^2) (lambda_i - lambda_j)^2)`` for
``lambda_i, lambda_j > 0`` and 0 otherwise, so ``L~^-1 H = P_T / 2`` (003 eq. 120).

Drift of eq. 6 per SGD step (time rescaled back to ``k``; ``eta^(2 - 2 gamma) / C^2 = eta^2 / (1 - beta)^2``),
noise covariance ``eps^2 Sigma``::

    b = -eps^2 eta^2 / (1 - beta)^2
        * ((1/2) H^+ T[Sigma_LL] + P_L T[H^+ Sigma_TL] + (1/2) P_L T[L~^-1 Sigma_TT])

with ``T[S] = d^2(grad L)[S]``. Under label noise ``Sigma = c H`` it reduces to eq. 7,
``b = -(eps^2 eta^2 / (4 (1 - beta)^2)) P_L grad Tr(c H)``. The diffusion prefactor is ``eta / (1 - beta)``
exactly (ERRATA 003.7).

Valley OU process (003 App. F, corrected eq. 171, ERRATA 003.4): for ``Pi_{k+1} = beta Pi_k - lambda X_k
+ s xi_k``,
``X_{k+1} = X_k + eta Pi_{k+1}`` the stationary moments are, with ``q = s^2 / ((1 - beta)(2 (1 + beta) -
eta lambda))``,
``Var X = eta (1 + beta) q / lambda``, ``Cov(Pi, X) = eta q``, ``Var Pi = 2 q``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.hyper import Hyperparams

#: Eigenvalues below ``ZERO_MODE_RTOL * max |lambda|`` count as zero modes (directions along the valley).
ZERO_MODE_RTOL: float = 1e-9

ThirdDerivative = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def _symmetric(matrix: ArrayLike, name: str) -> NDArray[np.float64]:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square matrix; got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} must be finite")
    scale = max(float(np.abs(m).max()), 1.0)
    if not np.allclose(m, m.T, rtol=0, atol=1e-10 * scale):
        raise ValueError(f"{name} must be symmetric; max |M - M^T| = {np.abs(m - m.T).max():.3g}")
    return (m + m.T) / 2


@dataclass(frozen=True)
class ValleyFrame:
    """Eigen-decomposition of the valley Hessian split into transverse (``lambda > 0``) and zero modes."""

    eigenvalues: NDArray[np.float64]
    eigenvectors: NDArray[np.float64]
    transverse: NDArray[np.bool_]

    @property
    def tangent_projector(self) -> NDArray[np.float64]:
        """``P_L``: projector onto the kernel of ``H`` (the tangent space of the valley)."""
        q = self.eigenvectors[:, ~self.transverse]
        return q @ q.T

    @property
    def normal_projector(self) -> NDArray[np.float64]:
        """``P_T = Id - P_L``: projector onto the range of ``H``."""
        q = self.eigenvectors[:, self.transverse]
        return q @ q.T

    @property
    def pseudo_inverse(self) -> NDArray[np.float64]:
        """``H^+`` with the zero modes dropped."""
        q = self.eigenvectors[:, self.transverse]
        return (q / self.eigenvalues[self.transverse]) @ q.T


def valley_frame(hessian: ArrayLike, rtol: float = ZERO_MODE_RTOL) -> ValleyFrame:
    """Split a positive semi-definite valley Hessian into zero and transverse modes.

    >>> f = valley_frame([[2.0, 0.0], [0.0, 0.0]])
    >>> f.tangent_projector.tolist(), f.pseudo_inverse.tolist()
    ([[0.0, 0.0], [0.0, 1.0]], [[0.5, 0.0], [0.0, 0.0]])
    """
    h = _symmetric(hessian, "hessian")
    lam, q = np.linalg.eigh(h)
    scale = float(np.abs(lam).max()) if lam.size else 0.0
    tol = rtol * max(scale, np.finfo(np.float64).tiny)
    if np.any(lam < -tol):
        raise ValueError(
            f"hessian has a negative eigenvalue {lam.min():.6g}: expected positive semi-definite "
            "(a point of the valley of minima)"
        )
    return ValleyFrame(lam, q, lam > tol)


def _coupling(lr: float, momentum: float) -> float:
    hp = Hyperparams(lr=lr, momentum=momentum)
    return hp.lr / (1 - hp.momentum) ** 2


def apply_momentum_lyapunov(
    hessian: ArrayLike, s: ArrayLike, lr: float, momentum: float
) -> NDArray[np.float64]:
    """``L~_H S = {H, S} + (1/2) (eta / (1 - beta)^2) [[S, H], H]`` (003 Definition 3.3).

    >>> apply_momentum_lyapunov([[1.0, 0.0], [0.0, 3.0]], [[0.0, 1.0], [1.0, 0.0]], lr=0.5, momentum=0.5)
    array([[0., 8.],
           [8., 0.]])
    """
    h, sm = np.asarray(hessian, dtype=np.float64), np.asarray(s, dtype=np.float64)
    comm = sm @ h - h @ sm
    return h @ sm + sm @ h + 0.5 * _coupling(lr, momentum) * (comm @ h - h @ comm)


def solve_momentum_lyapunov(
    hessian: ArrayLike, m: ArrayLike, lr: float, momentum: float, rtol: float = ZERO_MODE_RTOL
) -> NDArray[np.float64]:
    """``L~_H^-1 M`` in the eigenbasis of ``H``, zero outside the transverse block (ERRATA 003.5).

    >>> h = np.diag([2.0, 0.0])
    >>> solve_momentum_lyapunov(h, h, lr=0.1, momentum=0.9).tolist()  # L~^-1 H = P_T / 2
    [[0.5, 0.0], [0.0, 0.0]]
    """
    frame = valley_frame(hessian, rtol)
    mm = _symmetric(m, "m")
    if mm.shape != frame.eigenvectors.shape:
        raise ValueError(f"m has shape {mm.shape}; expected {frame.eigenvectors.shape} like hessian")
    lam, q, t = frame.eigenvalues, frame.eigenvectors, frame.transverse
    denom = lam[:, None] + lam[None, :] + 0.5 * _coupling(lr, momentum) * (lam[:, None] - lam[None, :]) ** 2
    keep = t[:, None] & t[None, :]
    mt = q.T @ mm @ q
    st = np.zeros_like(mt)
    st[keep] = mt[keep] / denom[keep]
    return q @ st @ q.T


def limiting_drift(
    hessian: ArrayLike,
    noise_covariance: ArrayLike,
    third_derivative: ThirdDerivative,
    lr: float,
    momentum: float,
    label_noise: float = 1.0,
    rtol: float = ZERO_MODE_RTOL,
) -> NDArray[np.float64]:
    """Drift per SGD step along the valley, 003 eq. 6 (leading order in ``eta``, ERRATA 003.7).

    Args:
        hessian: ``H = grad^2 L(w)`` at a point ``w`` of the valley.
        noise_covariance: ``Sigma = sigma sigma^T`` at ``w`` (the noise on ``pi`` is ``eps sigma xi``).
        third_derivative: ``S -> d^2(grad L)[S] = grad_w Tr(H(w) S)`` for symmetric ``S``.
        lr: learning rate ``eta``.
        momentum: ``beta``.
        label_noise: ``eps``.
        rtol: relative threshold below which Hessian eigenvalues count as zero modes.
    """
    frame = valley_frame(hessian, rtol)
    sigma = _symmetric(noise_covariance, "noise_covariance")
    if sigma.shape != frame.eigenvectors.shape:
        raise ValueError(f"noise_covariance has shape {sigma.shape}; expected {frame.eigenvectors.shape}")
    p_l, p_t, h_pinv = frame.tangent_projector, frame.normal_projector, frame.pseudo_inverse
    sigma_ll, sigma_tl, sigma_tt = p_l @ sigma @ p_l, p_t @ sigma @ p_l, p_t @ sigma @ p_t

    def t(s: NDArray[np.float64]) -> NDArray[np.float64]:
        # d^2(grad L)[S] only sees the symmetric part of S.
        return np.asarray(third_derivative((s + s.T) / 2), dtype=np.float64)

    geometric = 0.5 * h_pinv @ t(sigma_ll)
    mixed = p_l @ t(h_pinv @ sigma_tl)
    transverse = 0.5 * p_l @ t(solve_momentum_lyapunov(hessian, sigma_tt, lr, momentum, rtol))
    hp = Hyperparams(lr=lr, momentum=momentum)
    return -(label_noise**2) * hp.lr**2 / (1 - hp.momentum) ** 2 * (geometric + mixed + transverse)


def label_noise_drift(
    trace_hessian_gradient: ArrayLike,
    tangent_projector: ArrayLike,
    c: float,
    lr: float,
    momentum: float,
    label_noise: float,
) -> NDArray[np.float64]:
    """Corollary 3.5 (003 eq. 7) per step: ``-(eps^2 eta^2 / (4 (1 - beta)^2)) P_L grad Tr(c H)``."""
    hp = Hyperparams(lr=lr, momentum=momentum)
    g = np.asarray(trace_hessian_gradient, dtype=np.float64)
    return (
        -(label_noise**2) * hp.lr**2 / (4 * (1 - hp.momentum) ** 2) * c * (np.asarray(tangent_projector) @ g)
    )


@dataclass(frozen=True)
class ValleyOUMoments:
    """Stationary moments of one transverse mode of the linearised valley dynamics (ERRATA 003.4)."""

    position_variance: float
    cross_covariance: float
    momentum_variance: float


def valley_ou_moments(lr: float, momentum: float, curvature: float, noise_variance: float) -> ValleyOUMoments:
    """Stationary ``Var X``, ``Cov(Pi, X)``, ``Var Pi`` of 003 eqs. 164-165 (eq. 171 corrected, ERRATA 003.4).

    >>> m = valley_ou_moments(lr=0.1, momentum=0.9, curvature=2.0, noise_variance=1.0)
    >>> round(m.position_variance, 5), round(m.cross_covariance, 5), round(m.momentum_variance, 4)
    (0.26389, 0.27778, 5.5556)
    """
    hp = Hyperparams(lr=lr, momentum=momentum)
    eta, beta = hp.lr, hp.momentum
    if not (curvature > 0 and eta * curvature < 2 * (1 + beta)):
        raise ValueError(
            f"curvature={curvature!r} is invalid: expected 0 < curvature < 2 (1 + momentum) / lr "
            f"= {2 * (1 + beta) / eta:.6g} (a stable transverse mode)"
        )
    if not (np.isfinite(noise_variance) and noise_variance >= 0):
        raise ValueError(f"noise_variance={noise_variance!r} is invalid: expected a finite s^2 >= 0")
    q = noise_variance / ((1 - beta) * (2 * (1 + beta) - eta * curvature))
    return ValleyOUMoments(eta * (1 + beta) * q / curvature, eta * q, 2 * q)
