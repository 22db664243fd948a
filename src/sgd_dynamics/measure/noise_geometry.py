"""Noise geometry of a real network at its current parameters: ``Sigma`` against ``H`` from top eigenpairs.

Chapter 004 (noise geometry; stationary covariance of Thm 8 corrected by ERRATA 004.2, ``Sigma ≈ H`` near a
minimum per ERRATA 004.3), measured on a PyTorch model with the dense-matrix definitions of
:mod:`sgd_dynamics.theory.noise_geometry` replaced by their top-``k`` versions. ``H`` is the Hessian of the
mean loss (:func:`~sgd_dynamics.measure.hessian.hessian_eigenpairs`, eigenpairs ``mu_j, w_j``), ``Sigma`` the
per-example gradient covariance (:func:`~sgd_dynamics.measure.gradient_noise.noise_eigenpairs`, eigenpairs
``lambda_i, u_i``; ``tr Sigma`` and ``s_j = w_j^T Sigma w_j`` from
:func:`~sgd_dynamics.measure.gradient_noise.gradient_noise`), ``m`` the number of parameters:

* top-``k`` eigenspace overlap ``||U_Sigma^T U_H||_F^2 / k`` (exact: it only involves top eigenvectors);
* anisotropy ``lambda_max(Sigma) / (tr Sigma / m)`` (exact);
* alignment of the rank-``k`` truncations ``Sigma_k = sum_i lambda_i u_i u_i^T`` and
  ``H_k = sum_j mu_j w_j w_j^T``::

      tr(Sigma_k H_k) / (||Sigma_k||_F ||H_k||_F)
        = sum_ij lambda_i mu_j (u_i . w_j)^2 / (sqrt(sum_i lambda_i^2) sqrt(sum_j mu_j^2)).

  This is an approximation of ``tr(Sigma H) / (||Sigma||_F ||H||_F)``, exact at ``k = m``. Its numerator
  misses at most ``||Sigma - Sigma_k||_F ||H||_F + ||Sigma_k||_F ||H - H_k||_F`` (Cauchy-Schwarz) and each
  norm misses the Frobenius tail of its spectrum, so it converges as the tails
  ``sqrt(sum_{i>k} lambda_i^2)`` and ``sqrt(sum_{j>k} mu_j^2)`` vanish — fast for the sharply decaying spectra
  of trained networks, not monotonically in ``k``. Since ``Sigma`` is PSD,
  ``||Sigma - Sigma_k||_F <= tr Sigma - sum_{i<=k} lambda_i``: ``noise_captured`` (the fraction of
  ``tr Sigma`` in the top ``k``) bounds the noise side of the error.
* stationary variance along each Hessian eigenvector ``w_j`` of SGD on the quadratic model
  ``L(theta) ≈ theta^T H theta / 2`` (plus weight decay) with minibatch noise ``N(0, Sigma / S)``: continuous
  (Lyapunov ``H C + C H = (eta / S) Sigma``; :func:`sgd_dynamics.theory.phase_space.sde_stationary_moments`,
  ``eta s_j / (2 S h_j (1 - beta))``) and the exact discrete recursion
  (:func:`sgd_dynamics.theory.discrete.discrete_stationary_moments`, ``eta s_j / (S h_j (2 - eta h_j))`` at
  ``beta = 0``, ERRATA 004.2), with ``h_j = mu_j + weight_decay``. These per-mode formulas are the
  commuting-``H, Sigma`` results, but the *diagonal* of the stationary covariance in the Hessian eigenbasis
  is exact for any ``Sigma``: the drift is diagonal in that basis, so ``w_j^T C w_j`` solves a scalar (or
  2x2 with momentum) Lyapunov equation driven by ``s_j`` alone (the ``C'_jj`` of
  :mod:`sgd_dynamics.theory.noise_geometry`). A mode with ``h_j <= 0`` has no stationary law, nor one with
  ``eta h_j >= 2 (1 + beta)`` in discrete time: its variance is ``inf``.

Cost: ``k < m`` uses Lanczos on Hessian-vector products and the Gram (or randomized) eigensolver of
``Sigma``; ``k = m`` forms both matrices (``m`` HVPs and ``N m`` gradient numbers), for small models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure.flat_params import BatchSource, ParameterLayout, ParameterSelection
from sgd_dynamics.measure.gradient_noise import gradient_noise, noise_eigenpairs, per_example_gradients
from sgd_dynamics.measure.hessian import HessianOperator, hessian_eigenpairs
from sgd_dynamics.measure.objective import Loss
from sgd_dynamics.theory import discrete, phase_space

Array = NDArray[np.float64]


@dataclass(frozen=True)
class NetworkNoiseGeometry:
    """Top-``k`` noise geometry of a network; eigenpairs descending, eigenvectors as columns (flat order).

    ``mode_noise[j] = w_j^T Sigma w_j`` along the Hessian eigenvector ``w_j``. The stationary variances are
    ``None`` unless hyperparameters were given; ``inf`` where the mode has no stationary law. They describe
    the quadratic model around ``theta``, meaningful near a minimum: ``gradient_norm`` is ``||grad L||``.
    """

    k: int
    num_parameters: int
    num_examples: int
    hessian_eigenvalues: Array
    hessian_eigenvectors: Array = field(repr=False)
    hessian_residuals: Array
    noise_eigenvalues: Array
    noise_eigenvectors: Array = field(repr=False)
    noise_trace: float
    mode_noise: Array
    gradient_norm: float
    top_overlap: float
    alignment: float
    anisotropy: float
    noise_captured: float
    hyper: Hyperparams | None = None
    variance_continuous: Array | None = None
    variance_discrete: Array | None = None


def truncated_alignment(noise_eigenvalues: Array, noise_eigenvectors: Array, hessian_eigenvalues: Array,
                        hessian_eigenvectors: Array) -> float:
    """``tr(Sigma_k H_k) / (||Sigma_k||_F ||H_k||_F)`` from the eigenpairs of the two truncations.

    Sigma = diag(2, 1, 0) against H = diag(2, 4, 0): ``(2 * 2 + 1 * 4) / (sqrt(5) sqrt(20)) = 0.8``.

    >>> e = np.eye(3)
    >>> round(truncated_alignment(np.array([2.0, 1.0]), e[:, :2], np.array([4.0, 2.0]), e[:, [1, 0]]), 12)
    0.8
    """
    lam = np.asarray(noise_eigenvalues, dtype=np.float64)
    mu = np.asarray(hessian_eigenvalues, dtype=np.float64)
    cosines = np.asarray(noise_eigenvectors).T @ np.asarray(hessian_eigenvectors)
    numerator = float(lam @ cosines**2 @ mu)
    return numerator / float(np.linalg.norm(lam) * np.linalg.norm(mu))


def stationary_variances(hyper: Hyperparams, hessian_eigenvalues: Array, mode_noise: Array
                         ) -> tuple[Array, Array]:
    """Per-mode stationary ``Var(w_j^T theta)``: ``(continuous, exact discrete)``; ``inf`` without a law.

    >>> c, d = stationary_variances(Hyperparams(lr=0.5, batch_size=2), np.array([2.0, -1.0]), np.ones(2))
    >>> c.round(12).tolist(), d.round(12).tolist()
    ([0.0625, inf], [0.125, inf])
    """
    rho = np.asarray(hessian_eigenvalues, dtype=np.float64)
    s = np.asarray(mode_noise, dtype=np.float64)
    h = hyper.curvature(rho)
    continuous, exact = np.full(h.shape, np.inf), np.full(h.shape, np.inf)
    ok = h > 0
    continuous[ok] = phase_space.sde_stationary_moments(rho[ok], s[ok], hyper).position_variance
    ok &= h < hyper.stability_limit
    exact[ok] = discrete.discrete_stationary_moments(rho[ok], s[ok], hyper).position_variance
    return continuous, exact


def _dense_hessian_eigenpairs(model: nn.Module, loss_fn: Loss, batches: BatchSource,
                              parameters: ParameterSelection) -> tuple[Array, Array, Array]:
    op = HessianOperator(model, loss_fn, batches, parameters=parameters)
    eye = torch.eye(op.dim, dtype=op.layout.dtype, device=op.layout.device)
    h = op.matmat(eye).detach().to("cpu", torch.float64).numpy()
    mu, w = np.linalg.eigh((h + h.T) / 2)
    mu, w = mu[::-1].copy(), w[:, ::-1].copy()
    return mu, w, np.linalg.norm(h @ w - w * mu, axis=0)


def _dense_noise_eigenpairs(model: nn.Module, loss_fn: Loss, batches: BatchSource,
                            parameters: ParameterSelection) -> tuple[Array, Array]:
    g = torch.cat(list(per_example_gradients(model, loss_fn, batches, parameters=parameters)))
    g = g.to("cpu", torch.float64)
    g = g - g.mean(0)
    lam, u = np.linalg.eigh((g.T @ g / g.shape[0]).numpy())
    return lam[::-1].copy(), u[:, ::-1].copy()


def network_noise_geometry(model: nn.Module, loss_fn: Loss, batches: BatchSource, k: int = 10, *,
                           hyper: Hyperparams | None = None, seed: int = 0, tol: float = 1e-6,
                           chunk_size: int = 64, parameters: ParameterSelection = None
                           ) -> NetworkNoiseGeometry:
    """Top-``k`` noise geometry of ``model`` at its current parameters over the examples of ``batches``.

    ``loss_fn(outputs, targets)`` is the mean loss over a batch; ``tol`` is the Lanczos tolerance of the
    Hessian eigenpairs (relative; below ~1e-7 needs a float64 model); ``seed`` starts Lanczos and the
    randomized ``Sigma`` solver. With ``hyper`` the stationary variance along each Hessian eigenvector is
    predicted for SGD with those hyperparameters (momentum and weight decay included). ``loss_fn`` may be
    a :func:`~sgd_dynamics.measure.objective.closure_loss` over batches with a per-example decomposition;
    ``parameters`` restricts ``H`` and ``Sigma`` to a parameter group (default: the trainable parameters).
    """
    layout = ParameterLayout.from_group(model, parameters)
    m = layout.dim
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= m:
        raise ValueError(f"k={k!r} is invalid: expected an integer in [1, {m}] (the number of parameters)")
    if hyper is not None and not isinstance(hyper, Hyperparams):
        raise ValueError(f"hyper={hyper!r} is invalid: expected a Hyperparams or None")
    k = int(k)
    if k == m:
        lam, u = _dense_noise_eigenpairs(model, loss_fn, batches, parameters)
        mu, w, residuals = _dense_hessian_eigenpairs(model, loss_fn, batches, parameters)
    else:
        noise = noise_eigenpairs(model, loss_fn, batches, k, chunk_size=chunk_size, seed=seed,
                                 parameters=parameters)
        lam, u = noise.eigenvalues, noise.eigenvectors
        # Below the numerical rank the top-k eigenspace of Sigma is not unique (a cross-entropy network has
        # a null space: shifting all logits together) and the Gram eigenvectors there are rounding noise.
        floor = m * torch.finfo(layout.dtype).eps * lam[0]
        if lam[-1] <= floor:
            rank = int(np.sum(lam > floor))
            raise ValueError(f"k={k} is invalid: Sigma has numerical rank {rank} < k, so its top-k "
                             f"eigenspace is not defined; expected k <= {rank} or k = {m} (the number of "
                             "parameters)")
        hess = hessian_eigenpairs(model, loss_fn, batches, k, tol, seed=seed, parameters=parameters)
        mu, w, residuals = hess.eigenvalues, hess.eigenvectors, hess.residuals
    stats = gradient_noise(model, loss_fn, batches, w, chunk_size=chunk_size, parameters=parameters)
    trace = stats.trace
    continuous = exact = None
    if hyper is not None:
        continuous, exact = stationary_variances(hyper, mu, stats.mode_noise)
    return NetworkNoiseGeometry(
        k=k, num_parameters=m, num_examples=stats.num_examples,
        hessian_eigenvalues=mu, hessian_eigenvectors=w, hessian_residuals=residuals,
        noise_eigenvalues=lam, noise_eigenvectors=u, noise_trace=trace, mode_noise=stats.mode_noise,
        gradient_norm=float(np.sqrt(stats.mean_gradient_sq_norm)),
        top_overlap=float(np.sum((u.T @ w) ** 2) / k),
        alignment=truncated_alignment(lam, u, mu, w),
        anisotropy=float(lam[0] / (trace / m)) if trace > 0 else float("nan"),
        noise_captured=float(lam.sum() / trace) if trace > 0 else float("nan"),
        hyper=hyper, variance_continuous=continuous, variance_discrete=exact)
