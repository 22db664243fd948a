"""Stationary minibatch noise of SGD on least squares, multiplicative part included (exact, with replacement).

For ``L(W) = mean_n ||W^T x_n - t_n||^2 / 2`` (``W`` of shape ``(p, c)``) the per-example gradient at
``W = W* + D`` is ``G_n = x_n r_n^T + x_n x_n^T D`` with ``r_n`` the residual at the minimiser ``W*``. Its
covariance over examples grows with ``D`` (multiplicative noise), and the noise ``Sigma*`` measured at
``W*`` underestimates what the stationary chain sees. The mean gradient is exactly ``H D`` (``H =
mean_n x_n x_n^T``, the same for every class column), and the noise ``xi_k`` is a martingale difference
whose stationary mean covariance is, per class column ``a`` (the term linear in ``D`` averages to zero, and
a column's noise block involves only that column's covariance ``C_a = E[D_a D_a^T]``)::

    Sigma_eff[a, a] = Sigma*[a, a] + mean_n x_n x_n^T (x_n^T C_a x_n) - H C_a H.

The second moments of the phase-space state then obey the discrete Lyapunov equation of
:mod:`sgd_dynamics.theory.discrete` with the noise ``Sigma_eff / S`` (i.i.d. minibatches of ``S``), and
every lagged covariance is ``M^t C``: the per-mode theory (stationary speed, displacement) is exact with
the eigenbasis diagonal of ``Sigma_eff`` as its noise variances. :func:`least_squares_stationary_noise`
solves the fixed point ``C_a <-> Sigma_eff[a, a]`` mode pair by mode pair: in the eigenbasis of ``H`` the
position covariance of modes ``i, j`` is ``f_ij Sigma_ij / S`` with ``f_ij`` from the 4x4 system
``C_ij = M_i C_ij M_j^T + b b^T`` (``b`` the noise direction of one step). The relative correction is of
order ``eta tr(H) / (S (1 - beta))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory.discrete import noise_matrix, transition_matrix

__all__ = ["LeastSquaresNoise", "least_squares_stationary_noise", "pair_position_factors"]


@dataclass(frozen=True)
class LeastSquaresNoise:
    """Per-mode eigenvalues and noise variances (``(c * r,)``, class-major) of the stationary chain.

    ``noise_variances`` include the multiplicative part, ``minimiser_noise_variances`` are those of
    ``Sigma*`` alone (the usual input of the theory); ``iterations`` of the fixed point were needed.
    """

    eigenvalues: NDArray[np.float64]
    noise_variances: NDArray[np.float64]
    minimiser_noise_variances: NDArray[np.float64]
    iterations: int


def pair_position_factors(eigenvalues: ArrayLike, hyper: Hyperparams) -> NDArray[np.float64]:
    """``f_ij``: stationary ``E[x_i x_j]`` of modes ``i, j`` per unit of their per-example noise ``Sigma_ij``.

    Solves ``C = M_i C M_j^T + W(1)`` for the 2x2 cross-covariance of each pair, ``M`` the modes'
    transition matrices and ``W(1)`` the one-step noise matrix for a unit per-example noise variance
    (minibatch noise ``1 / S``).
    """
    m = transition_matrix(np.asarray(eigenvalues, np.float64), hyper)
    r = m.shape[0]
    w = noise_matrix(np.ones(1), hyper)[0]
    # vec(M_i C M_j^T) = (M_i (x) M_j) vec(C) in row-major vec
    kron = np.einsum("iab,jcd->ijacbd", m, m).reshape(r, r, 4, 4)
    cov = np.linalg.solve(np.eye(4) - kron, np.broadcast_to(w.reshape(4), (r, r, 4))[..., None])
    return cov[..., 0, 0]


def least_squares_stationary_noise(features: ArrayLike, residuals: ArrayLike, hyper: Hyperparams,
                                   rtol: float = 1e-10, max_iterations: int = 200) -> LeastSquaresNoise:
    """Stationary per-mode noise of SGD with momentum on least squares (module docstring).

    ``features``: ``(N, p)`` inputs ``x_n`` (a bias column included by the caller); ``residuals``:
    ``(N, c)`` residuals ``W*^T x_n - t_n`` at a minimiser. Modes with ``H``-eigenvalue below
    ``1e-12 max`` are dropped: no gradient or noise acts along them. Minibatches are drawn with
    replacement (``hyper.sampler``); ``hyper.weight_decay`` adds to the curvature of the dynamics.
    """
    x = np.asarray(features, np.float64)
    r = np.asarray(residuals, np.float64)
    require(x.ndim == 2 and r.ndim == 2 and r.shape[0] == x.shape[0], "residuals.shape", r.shape,
            f"(N, c) with N = features.shape[0] = {x.shape[0]}")
    require(hyper.sampler == "with_replacement", "hyper.sampler", hyper.sampler, "'with_replacement'")
    n = x.shape[0]
    evals, evecs = np.linalg.eigh(x.T @ x / n)
    keep = evals > 1e-12 * evals[-1]
    lam, xe = evals[keep], x @ evecs[:, keep]
    f = pair_position_factors(lam, hyper)
    require(bool(np.all(np.isfinite(f)) and np.all(np.diag(f) > 0)), "hyper", hyper,
            "stable hyperparameters for every mode of H")
    base, total, worst = [], [], 0
    for a in range(r.shape[1]):
        g = xe * r[:, a:a + 1]
        sigma0 = g.T @ g / n - np.outer(g.mean(0), g.mean(0))
        sigma, it = _fixed_point(sigma0, xe, lam, f, rtol, max_iterations)
        base.append(np.diag(sigma0))
        total.append(np.diag(sigma))
        worst = max(worst, it)
    c = r.shape[1]
    return LeastSquaresNoise(np.tile(lam, c), np.concatenate(total), np.concatenate(base), worst)


def _fixed_point(sigma0: NDArray, xe: NDArray, lam: NDArray, f: NDArray, rtol: float,
                 max_iterations: int) -> tuple[NDArray, int]:
    """Iterate ``Sigma <- Sigma* + mean_n x x^T (x^T C x) - H C H`` with ``C = f * Sigma`` (a contraction)."""
    n, sigma = xe.shape[0], sigma0
    for it in range(1, max_iterations + 1):
        cov = f * sigma
        quad = np.sum((xe @ cov) * xe, axis=1)
        new = sigma0 + (xe * quad[:, None]).T @ xe / n - lam[:, None] * cov * lam[None, :]
        if np.max(np.abs(new - sigma)) <= rtol * np.max(np.abs(new)):
            return new, it
        sigma = new
    raise ValueError(f"max_iterations={max_iterations!r} is invalid: the fixed point did not converge "
                     f"(rtol={rtol!r}); expected hyperparameters well inside the stable region")
