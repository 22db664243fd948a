"""Convergence to a minimum: gradient flow, SGD's stationary neighbourhood and step-size bound (004).

Chapter 004, Theorems 1 and 9 and Key idea 5, each made checkable and corrected where it is loose:

* **Theorem 1** (gradient flow on a ``mu``-strongly convex loss):
  ``||theta(t) - theta*|| <= ||theta_0 - theta*|| e^{-mu t}``. Holds as written; on a quadratic
  ``theta(t) - theta* = exp(-H t)(theta_0 - theta*)`` and the bound is attained along the eigenvector of
  ``lambda_min(H) = mu``.
* **Theorem 9** (SGD ``delta_{k+1} = (I - eta H) delta_k - eta xi_k``, ``Cov xi = Sigma / B``). Corrections:

  - the neighbourhood: its exact second moment solves the discrete Lyapunov equation
    ``C = (I - eta H) C (I - eta H) + (eta^2 / B) Sigma``; for commuting ``H, Sigma`` the radius is
    ``tr C = (eta / B) sum_i s_i / (h_i (2 - eta h_i))`` (ERRATA 004.2), i.e. ``sqrt(eta / B)`` times
    ``sqrt(tr(H^-1 Sigma) / 2)`` only as ``eta h_max -> 0``; the relative correction is
    ``1 / (1 - eta h / 2)``.
    The statement's ``E V <= e^{-beta t} V_0 + eta tr(Sigma) / (2 beta B)`` mixes a per-step ``beta`` with a
    ``sqrt(eta/B)`` radius; the proof's own constant is ``eta tr(H Sigma) / (2 c B)`` with
    ``1 - c eta = max_i (1 - eta h_i)^2`` (:func:`chapter_lyapunov_bound`);
  - the step-size bound ``eta < 2 / lambda_max(H)`` is exact only for noise that does not depend on
    ``theta``. SGD's own noise on least squares is multiplicative: at an interpolating minimum with Gaussian
    inputs ``x ~ N(0, H)`` the minibatch gradient noise has ``Cov = (H C H + tr(H C) H) / B`` given
    ``E delta delta^T = C``, so in the eigenbasis of ``H`` the diagonal of ``C`` obeys
    ``c' = A c`` with ``A = diag((1 - eta h)^2 + eta^2 h^2 / B) + (eta^2 / B) h h^T``. The second moment
    is stable iff the spectral radius of ``A`` is below 1 (:func:`critical_step_size`), a bound far below
    ``2 / lambda_max`` for small batches (isotropic ``H = I_d``: ``eta_c = 2 / (1 + (d + 1) / B)``).
* **Key idea 5** ("certification via Langevin overdamping"): the claim that can be checked is that the
  overdamped Langevin process at SGD's temperature ``T = eta s / (2 B (1 - beta))`` (ERRATA 004.1 with the
  momentum-rescaled step ``eta / (1 - beta)``) has the Gibbs law whose variance ``T / h`` certifies SGD's
  stationary spread. Exactly (ERRATA 003.4), SGD with heavy-ball momentum has
  ``Var x = eta s (1 + beta) / (B h (1 - beta) (2 (1 + beta) - eta h))``, so the Gibbs variance is low by the
  factor ``1 - eta h / (2 (1 + beta))``: the certificate holds to ``O(eta h)``, not uniformly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import integrate, linalg, optimize

from sgd_dynamics._validation import positive, require
from sgd_dynamics.theory.noise_geometry import stationary_covariance_discrete

Array = NDArray[np.float64]


def _symmetric_positive(hessian: ArrayLike) -> tuple[Array, Array, Array]:
    H = np.asarray(hessian, dtype=np.float64)
    require(H.ndim == 2 and H.shape[0] == H.shape[1] and np.allclose(H, H.T), "hessian", hessian,
            "a symmetric square matrix")
    h, U = np.linalg.eigh(H)
    require(bool(h[0] > 0), "hessian", hessian, "a positive definite matrix (a strict minimum)")
    return H, h, U


# ---------------------------------------------------------------------------------------------- Theorem 1

def quadratic_gradient_flow(hessian: ArrayLike, start: ArrayLike, times: ArrayLike) -> Array:
    """``theta(t) - theta* = exp(-H t)(theta_0 - theta*)`` at each time: shape ``(len(times), d)``."""
    H, _, _ = _symmetric_positive(hessian)
    x0 = np.asarray(start, dtype=np.float64)
    return np.array([linalg.expm(-H * t) @ x0 for t in np.atleast_1d(times)])


def gradient_flow(gradient: Callable[[Array], Array], start: ArrayLike, times: ArrayLike) -> Array:
    """Gradient flow ``d theta / dt = -grad L(theta)`` of any loss by an adaptive ODE solver (rtol 1e-10)."""
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    require(bool(np.all(np.diff(t) > 0) and t[0] >= 0), "times", times, "increasing times >= 0")
    sol = integrate.solve_ivp(lambda _, x: -gradient(x), (0.0, float(t[-1])), np.asarray(start, np.float64),
                              t_eval=t, rtol=1e-10, atol=1e-13, method="DOP853")
    return sol.y.T


def gradient_flow_bound(strong_convexity: float, start_distance: float, times: ArrayLike) -> Array:
    """Theorem 1's bound ``||theta_0 - theta*|| e^{-mu t}``."""
    mu = positive(strong_convexity, "strong_convexity")
    return start_distance * np.exp(-mu * np.asarray(times, dtype=np.float64))


# ---------------------------------------------------------------------------------------------- Theorem 9

@dataclass(frozen=True)
class SGDNeighbourhood:
    """SGD's stationary neighbourhood of a minimum: exact and as Theorem 9 states it."""

    radius_squared: float        # tr C, C the exact discrete Lyapunov solution
    leading_order: float         # (eta / 2B) tr(H^-1 Sigma): the sqrt(eta/B) scaling
    excess_loss: float           # E V = tr(H C) / 2 (V = L - L*, alpha -> 0)
    chapter_bound: float         # eta tr(H Sigma) / (2 c B), the proof's stationary constant
    contraction: float           # c with 1 - c eta = max_i (1 - eta h_i)^2


def sgd_neighbourhood(hessian: ArrayLike, sigma: ArrayLike, lr: float, batch_size: int) -> SGDNeighbourhood:
    """Exact stationary neighbourhood of plain SGD with constant noise ``Sigma``, and the chapter's forms."""
    H, h, _ = _symmetric_positive(hessian)
    S = np.asarray(sigma, dtype=np.float64)
    eta = positive(lr, "lr")
    require(isinstance(batch_size, (int, np.integer)) and batch_size >= 1, "batch_size", batch_size,
            "an integer >= 1")
    C = stationary_covariance_discrete(H, S, eta, batch_size)
    c = (1 - float(np.max((1 - eta * h) ** 2))) / eta
    return SGDNeighbourhood(
        radius_squared=float(np.trace(C)),
        leading_order=float(eta / (2 * batch_size) * np.trace(np.linalg.solve(H, S))),
        excess_loss=float(np.trace(H @ C) / 2),
        chapter_bound=float(eta * np.trace(H @ S) / (2 * c * batch_size)),
        contraction=c)


def least_squares_moment_operator(curvatures: ArrayLike, lr: float, batch_size: int) -> Array:
    """``A`` with ``c_{k+1} = A c_k`` for ``c = diag E delta delta^T`` (Gaussian x, no label noise)."""
    h = np.asarray(curvatures, dtype=np.float64)
    require(h.ndim == 1 and bool(np.all(h > 0)), "curvatures", curvatures, "positive Hessian eigenvalues")
    eta = positive(lr, "lr")
    B = batch_size
    return np.diag((1 - eta * h) ** 2 + eta**2 * h**2 / B) + (eta**2 / B) * np.outer(h, h)


def second_moment_growth(curvatures: ArrayLike, lr: float, batch_size: int) -> float:
    """Spectral radius of :func:`least_squares_moment_operator`: ``E||delta||^2`` grows like its power."""
    return float(np.max(np.abs(np.linalg.eigvals(least_squares_moment_operator(curvatures, lr, batch_size)))))


def critical_step_size(curvatures: ArrayLike, batch_size: int) -> float:
    """Largest ``eta`` at which SGD's second moment on Gaussian least squares is stable (radius of ``A`` = 1).

    Always ``<= 2 / lambda_max``, the bound for noise that does not depend on ``theta`` (Theorem 9).
    """
    h = np.asarray(curvatures, dtype=np.float64)
    top = 2 / float(np.max(h))
    return float(optimize.brentq(lambda e: second_moment_growth(h, e, batch_size) - 1, 1e-9 * top, top,
                                 xtol=1e-14, rtol=1e-12))


# --------------------------------------------------------------------------------------------- Key idea 5

def gibbs_certificate_error(curvature: float, lr: float, momentum: float = 0.0) -> float:
    """``Var_Gibbs / Var_SGD - 1 = -eta h / (2 (1 + beta))``: how far the overdamped Gibbs law is off.

    ``Var_Gibbs = T / h`` with ``T = eta s / (2 B (1 - beta))``; ``Var_SGD`` the exact discrete variance.
    """
    h, eta = positive(curvature, "curvature"), positive(lr, "lr")
    require(0 <= momentum < 1, "momentum", momentum, "0 <= beta < 1")
    require(eta * h < 2 * (1 + momentum), "lr", lr, f"eta h < 2 (1 + beta) = {2 * (1 + momentum):g}")
    return -eta * h / (2 * (1 + momentum))


def gibbs_variance(curvature: float, lr: float, noise_variance: float, batch_size: int,
                   momentum: float = 0.0) -> float:
    """``T / h`` with SGD's temperature ``T = eta s / (2 B (1 - beta))`` (overdamped Langevin's Gibbs law)."""
    return lr * noise_variance / (2 * batch_size * (1 - momentum) * positive(curvature, "curvature"))
