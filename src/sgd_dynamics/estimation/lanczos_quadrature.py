"""Stochastic Lanczos quadrature: ``tr(Sigma f(H))`` and ``tr f(H) / m`` from matrix-vector products only.

For a symmetric ``H`` (``m x m``) and a probe ``u``, ``n`` Lanczos steps from ``u / ||u||`` give the Jacobi
matrix ``T`` (tridiagonal: ``alpha`` on the diagonal, ``beta`` beside it) whose eigenpairs ``(theta_j, y_j)``
are the nodes and weights of the Gauss rule of the spectral measure of ``H`` seen from ``u`` (Golub &
Meurant, *Matrices, Moments and Quadrature*, 2010, ch. 6)::

    u^T f(H) u  ~  ||u||^2 sum_j y_j[0]^2 f(theta_j),     exact for polynomials f of degree <= 2 n - 1.

Averaged over probes with ``E[u u^T] = Sigma`` it estimates ``tr(Sigma f(H)) = sum_l s_l f(rho_l)``
(``s_l = q_l^T Sigma q_l``); over probes with ``E[u u^T] = I / m``, the eigenvalue density of ``H``
(stochastic Lanczos quadrature, Ubaru, Chen & Saad 2017, eq. 7; broadened as in PyHessian, Yao et al. 2020).
The nodes are Ritz values, so they lie in ``[rho_min, rho_max]``.

Deflation: for exact top eigenpairs ``(rho_i, q_i)`` and ``w = (I - Q Q^T) u``,
``u^T f(H) u = sum_i (q_i^T u)^2 f(rho_i) + w^T f(H) w``; the second term is the Gauss rule of ``H`` on the
orthogonal complement of ``Q`` (every Lanczos vector is kept orthogonal to it), whose spectrum ends at
``rho_{k+1}``. Both parts are nodes and weights of one rule per probe.

Error bar of :meth:`SpectralMeasure.estimate`: the probe spread (standard error of the per-probe
quadratures) and the truncation error of ``n`` steps, estimated as the largest change of the probe-mean
quadrature from the rules of ``n/2, 5n/8, 3n/4, 7n/8`` steps (leading blocks of the same ``T``: no extra
products) to the ``n``-step rule. Once the rules converge (an error shrinking at least like ``1/n``) this
overestimates the truncation error (by about 4x, median over the trials on small MLPs); before, when all
these rules miss the same feature of ``f``, it can underestimate it.

The stationary displacement ``E||theta_{k+t} - theta_k||^2 = sum_l g_t(rho_l; s_l)`` (002 eq. 19, in the exact
discrete form of ERRATA 002.5 and 002.6) is linear in ``s_l``: feeding a rule's nodes as eigenvalues and its
weights as noise variances to :func:`sgd_dynamics.theory.global_displacement` is its quadrature
(:func:`full_spectrum_displacement`). ``g_t`` has its sharp feature at the low end of the spectrum,
``rho ~ (1 - beta) / (eta t)``, where a Gauss rule places few nodes: a polynomial resolving
``exp(-rho eta t / (1 - beta))`` on ``[0, rho_top]`` needs degree ``~ sqrt(eta rho_top t / (1 - beta))``. So
long times need more steps, and deflating the top eigenpairs lowers ``rho_top`` from ``rho_max`` to
``rho_{k+1}``; both are what remove the long-time bias (at ``t = 1e4`` on a 361-parameter tanh MLP with
``beta = 0.9``: 18% with 40 steps, 1.5% with 120, 0.5% with 120 and the top 30 eigenpairs deflated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import global_displacement, global_displacement_from_start, stationary_moments

Matmat = Callable[[NDArray[np.float64]], NDArray[np.float64]]
RuleFunction = Callable[[NDArray[np.float64], NDArray[np.float64]], ArrayLike]

# A Lanczos recursion stops (its Krylov space is invariant, its rule exact) when the next off-diagonal entry
# falls below this fraction of the largest entry of T so far.
_BREAKDOWN = 1e-12
# Leading blocks of T, as fractions of the Lanczos steps, whose rules estimate the truncation error.
_CHECK_FRACTIONS = (4 / 8, 5 / 8, 6 / 8, 7 / 8)


@dataclass(frozen=True)
class QuadratureEstimate:
    """A probe-mean quadrature with its two error terms; ``stderr`` combines them in quadrature."""

    value: NDArray[np.float64]
    probe_stderr: NDArray[np.float64]
    truncation_error: NDArray[np.float64]

    @property
    def stderr(self) -> NDArray[np.float64]:
        """``sqrt(probe_stderr^2 + truncation_error^2)``."""
        return np.hypot(self.probe_stderr, self.truncation_error)


@dataclass(frozen=True)
class SpectralMeasure:
    """Per-probe Gauss rules of a spectral measure, kept as their Jacobi matrices.

    ``alpha[p, :lengths[p]]`` and ``beta[p, :lengths[p] - 1]`` are probe ``p``'s Jacobi matrix; where
    ``invariant[p]``, its Krylov space is invariant (a breakdown) and its rule exact.
    ``start_weights[p] = ||(I - Q Q^T) u_p||^2``; the deflated part is ``deflated_eigenvalues`` (``k``) with
    ``deflated_weights[p, i] = (q_i^T u_p)^2``. ``steps`` is the number of Lanczos steps asked for;
    ``hvp_count`` and ``backward_count`` are the matrix-vector products and gradient passes spent on the
    measure (not counting the deflated eigenpairs).
    """

    alpha: NDArray[np.float64] = field(repr=False)
    beta: NDArray[np.float64] = field(repr=False)
    lengths: NDArray[np.int64]
    invariant: NDArray[np.bool_]
    start_weights: NDArray[np.float64] = field(repr=False)
    deflated_eigenvalues: NDArray[np.float64]
    deflated_weights: NDArray[np.float64] = field(repr=False)
    steps: int
    hvp_count: int
    backward_count: int = 0

    @property
    def num_probes(self) -> int:
        return int(self.lengths.size)

    def rule(self, steps: int | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Nodes and weights, shape ``(probes, k + n)``, of the rules of the first ``steps`` Lanczos steps.

        A probe whose recursion is shorter uses all of it; unused slots carry weight 0 at a valid node.
        """
        n = self.steps if steps is None else min(int(steps), self.steps)
        k = self.deflated_eigenvalues.size
        nodes = np.empty((self.num_probes, k + n))
        weights = np.zeros_like(nodes)
        nodes[:, :k] = self.deflated_eigenvalues
        weights[:, :k] = self.deflated_weights
        for p, length in enumerate(self.lengths):
            j = min(n, int(length))
            theta, vectors = scipy.linalg.eigh_tridiagonal(self.alpha[p, :j], self.beta[p, :j - 1])
            nodes[p, k:] = theta[0]
            nodes[p, k:k + j] = theta
            weights[p, k:k + j] = self.start_weights[p] * vectors[0] ** 2
        return nodes, weights

    @property
    def nodes(self) -> NDArray[np.float64]:
        """All probes' nodes, concatenated (``probes * (k + steps)``)."""
        return self.rule()[0].ravel()

    @property
    def weights(self) -> NDArray[np.float64]:
        """All probes' weights divided by the number of probes: ``sum_j w_j f(nodes_j)`` is the estimate."""
        return self.rule()[1].ravel() / self.num_probes

    def quadrature(self, fn: RuleFunction, steps: int | None = None) -> NDArray[np.float64]:
        """``fn(nodes_p, weights_p)`` for every probe ``p`` (stacked), for the rules of ``steps`` steps.

        ``fn`` must be linear in the weights, e.g. ``lambda r, w: w @ f(r)`` for ``sum_j w_j f(r_j)``.
        """
        nodes, weights = self.rule(steps)
        return np.stack([np.asarray(fn(r, w), dtype=np.float64) for r, w in zip(nodes, weights, strict=True)])

    def estimate(self, fn: RuleFunction) -> QuadratureEstimate:
        """Probe mean of ``fn`` (see :meth:`quadrature`) with probe spread and truncation error."""
        per_probe = self.quadrature(fn)
        value = per_probe.mean(axis=0)
        spread = per_probe.std(axis=0, ddof=1) / np.sqrt(self.num_probes)
        truncation = np.zeros_like(value)
        exact = self.invariant.reshape((-1,) + (1,) * (per_probe.ndim - 1))
        for check in sorted({max(1, int(np.ceil(f * self.steps))) for f in _CHECK_FRACTIONS} - {self.steps}):
            coarse = np.where(exact, per_probe, self.quadrature(fn, check))
            truncation = np.maximum(truncation, np.abs(value - coarse.mean(axis=0)))
        return QuadratureEstimate(value, spread, truncation)


def lanczos_tridiagonal(matmat: Matmat, starts: NDArray[np.float64], steps: int,
                        deflation: NDArray[np.float64] | None = None
                        ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64],
                                   NDArray[np.bool_]]:
    """Independent Lanczos recursions from the columns of ``starts`` (``m x b``, unit norm), in lockstep.

    One ``matmat`` of ``b`` columns per step. Full reorthogonalisation (classical Gram-Schmidt, twice),
    against the recursion's own basis and the orthonormal columns of ``deflation``. Returns
    ``alpha (b, steps)``, ``beta (b, steps - 1)``, each recursion's length and whether its Krylov space
    turned out invariant (a breakdown: the recursion stops there, its rule is exact, entries beyond are 0).
    Memory: ``b * steps * m`` floats.
    """
    dim, b = starts.shape
    basis = np.zeros((b, steps, dim))
    alpha, beta = np.zeros((b, steps)), np.zeros((b, steps))
    lengths = np.full(b, steps, dtype=np.int64)
    invariant = np.zeros(b, dtype=bool)
    active = np.ones(b, dtype=bool)
    v = starts.T.copy()
    previous = np.zeros_like(v)
    for j in range(steps):
        basis[:, j] = v
        w = np.asarray(matmat(np.ascontiguousarray(v.T)), dtype=np.float64).T * active[:, None]
        alpha[:, j] = np.einsum("bd,bd->b", v, w)
        w -= alpha[:, j, None] * v + (beta[:, j - 1, None] if j else 0.0) * previous
        for _ in range(2):
            w -= np.einsum("bjd,bj->bd", basis[:, :j + 1], np.einsum("bjd,bd->bj", basis[:, :j + 1], w))
            if deflation is not None:
                w -= (w @ deflation) @ deflation.T
        beta[:, j] = np.linalg.norm(w, axis=1)
        scale = np.maximum(np.abs(alpha[:, :j + 1]).max(axis=1), beta[:, :j + 1].max(axis=1))
        broke = active & (beta[:, j] <= _BREAKDOWN * scale)
        lengths[broke] = j + 1
        invariant |= broke
        active &= ~broke
        beta[~active, j] = 0.0
        previous, v = v, np.where(active[:, None], w / np.where(active, beta[:, j], 1.0)[:, None], 0.0)
        if not active.any():
            break
    return alpha, beta[:, :steps - 1], lengths, invariant


def lanczos_quadrature(matmat: Matmat, probes: ArrayLike, steps: int, *,
                       deflation: tuple[ArrayLike, ArrayLike] | None = None,
                       block_size: int = 8) -> SpectralMeasure:
    """Gauss rules of ``H`` (``matmat``: ``m x b`` in and out) from the columns ``u_p`` of ``probes``.

    ``deflation = (eigenvalues (k,), eigenvectors (m, k))``: exact eigenpairs of ``H`` handled exactly
    (module docstring). Probes run ``block_size`` at a time (the basis holds ``block_size * steps * m``
    floats). The mean over probes of ``u_p^T f(H) u_p`` is :meth:`SpectralMeasure.estimate`.

    >>> h = np.diag([1.0, 2.0, 3.0, 4.0])
    >>> measure = lanczos_quadrature(lambda x: h @ x, np.eye(4), steps=4)
    >>> round(float(measure.estimate(lambda r, w: w @ r**3).value), 10)   # tr(H^3) / 4
    25.0
    """
    u = np.asarray(probes, dtype=np.float64)
    require(u.ndim == 2 and u.shape[1] >= 2 and np.all(np.isfinite(u)), "probes",
            f"array of shape {u.shape}", "a finite (m, P) array with P >= 2 probes as columns")
    dim = u.shape[0]
    values, vectors = _deflation_pairs(deflation, dim)
    require(isinstance(steps, (int, np.integer)) and 2 <= steps <= dim - values.size, "steps", steps,
            f"an integer with 2 <= steps <= {dim - values.size} (parameters minus deflated eigenpairs)")
    require(isinstance(block_size, int) and block_size >= 1, "block_size", block_size, "an integer >= 1")
    coefficients = vectors.T @ u
    rest = u - vectors @ coefficients
    norms = np.linalg.norm(rest, axis=0)
    # a probe with nothing left after deflation gets any unit start: its weight ||rest||^2 = 0 cancels it
    fallback = np.full(dim, 1.0 / np.sqrt(dim))
    fallback -= vectors @ (vectors.T @ fallback)
    starts = np.where(norms > 0, rest / np.where(norms > 0, norms, 1.0), fallback[:, None] /
                      max(np.linalg.norm(fallback), np.finfo(float).tiny))
    parts = [lanczos_tridiagonal(matmat, starts[:, i:i + block_size], int(steps),
                                 vectors if values.size else None) for i in range(0, u.shape[1], block_size)]
    alpha, beta, lengths, invariant = (np.concatenate(a) for a in zip(*parts, strict=True))
    # a block runs until its longest recursion stops, one product per column and step
    hvps = sum(part[2].size * int(part[2].max()) for part in parts)
    return SpectralMeasure(alpha, beta, lengths, invariant, norms**2, values, coefficients.T**2, int(steps),
                           hvps)


def _deflation_pairs(deflation: tuple[ArrayLike, ArrayLike] | None, dim: int
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if deflation is None:
        return np.zeros(0), np.zeros((dim, 0))
    values = np.atleast_1d(np.asarray(deflation[0], dtype=np.float64))
    vectors = np.asarray(deflation[1], dtype=np.float64)
    require(values.ndim == 1 and vectors.shape == (dim, values.size), "deflation",
            f"(eigenvalues {values.shape}, eigenvectors {vectors.shape})",
            f"(eigenvalues (k,), eigenvectors ({dim}, k)) with one eigenvector column per eigenvalue")
    gram_error = float(np.abs(vectors.T @ vectors - np.eye(values.size)).max(initial=0.0))
    require(gram_error <= 1e-8, "deflation", f"eigenvectors with |Q^T Q - I| = {gram_error:.3g}",
            "orthonormal eigenvector columns (|Q^T Q - I| <= 1e-8)")
    return values, vectors


def full_spectrum_displacement(measure: SpectralMeasure, hyper: Hyperparams, steps: ArrayLike, *,
                               model: Literal["continuous", "discrete"] = "discrete",
                               settle: Hyperparams | None = None
                               ) -> QuadratureEstimate:
    """``E||Delta_t||^2 = tr(Sigma g_t(H))`` from a noise-weighted spectral measure, with its error bar.

    Stationary (:func:`~sgd_dynamics.theory.global_displacement`), or, with ``settle``, from ``theta_0``
    drawn from the stationary law of the ``settle`` hyperparameters and a fresh momentum buffer
    (:func:`~sgd_dynamics.theory.global_displacement_from_start`, exact discrete; the same ``Sigma`` at both).
    A node of negative curvature ``rho + weight_decay < 0`` is taken as flat (``h = 0``, free diffusion), as
    the study treats negative Hessian modes: the estimate is then that of ``tr(Sigma g_t(max(H, -lambda)))``.
    """
    floor = -min(hyper.weight_decay, settle.weight_decay if settle is not None else hyper.weight_decay)
    if settle is None:
        def fn(nodes: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
            return global_displacement(np.maximum(nodes, floor), weights, hyper, steps, model)
    else:
        require(model == "discrete", "model", model, "'discrete' when settle is given (exact discrete only)")

        def fn(nodes: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
            rho = np.maximum(nodes, floor)
            x0 = stationary_moments(rho, weights, settle).position_variance
            return global_displacement_from_start(rho, weights, hyper, steps, np.where(weights > 0, x0, 0.0))
    return measure.estimate(fn)


@dataclass(frozen=True)
class SpectralDensity:
    """Gaussian-broadened eigenvalue density of ``H`` on ``grid`` (integrates to 1), from per-probe rules."""

    grid: NDArray[np.float64]
    density: NDArray[np.float64]
    nodes: NDArray[np.float64]      # (probes, steps)
    weights: NDArray[np.float64]    # (probes, steps); each row sums to 1
    width: float                    # standard deviation of the Gaussian put on every node


def spectral_density(measure: SpectralMeasure, *, width: float | None = None, num_points: int = 1000,
                     margin: float = 0.05) -> SpectralDensity:
    """PyHessian's ESD: ``density(x) = mean_p sum_j w_pj N(x; theta_pj, width^2)`` on a uniform grid.

    ``measure`` must come from unit-norm probes with ``E[v v^T] = I / m`` (rows of weights sum to 1).
    ``width`` defaults to 1% of the node range; the grid covers the nodes plus ``margin`` of the range and
    three widths on each side. The density is that of the probe-averaged rule, not renormalised.
    """
    nodes, weights = measure.rule()
    low, high = float(nodes.min()), float(nodes.max())
    span = max(high - low, np.finfo(float).eps * max(abs(low), abs(high), 1.0))
    sigma = 0.01 * span if width is None else float(width)
    require(np.isfinite(sigma) and sigma > 0, "width", width, "a finite broadening > 0")
    require(isinstance(num_points, int) and num_points >= 2, "num_points", num_points, "an integer >= 2")
    pad = margin * span + 3 * sigma
    grid = np.linspace(low - pad, high + pad, num_points)
    z = (grid[:, None] - nodes.ravel()[None, :]) / sigma
    density = np.exp(-0.5 * z**2) @ weights.ravel() / (measure.num_probes * sigma * np.sqrt(2 * np.pi))
    return SpectralDensity(grid, density, nodes, weights, sigma)
