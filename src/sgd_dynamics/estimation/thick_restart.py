"""Thick-restart Lanczos (Wu & Simon 2000) for extreme eigenpairs, with residuals from the Krylov relation.

For a symmetric operator ``A`` the basis ``V = [v_1 .. v_n]`` (orthonormal) and the projection ``T = V^T A V``
(kept in full, so that restarted bases need no special case) satisfy the Krylov relation

    A V = V T + beta v_{n+1} e_n^T.

A Ritz pair ``(theta_i, y_i = V s_i)`` of ``T`` then has the residual ``||A y_i - theta_i y_i|| = |beta|
|e_n^T s_i|`` exactly (up to rounding of the orthogonalisation): no product with ``A`` is spent on it.
A restart keeps ``p`` Ritz vectors and ``v_{n+1}``; their projection is ``diag(theta)`` bordered by
``beta e_n^T S``, which the full ``T`` carries. Each new direction is orthogonalised against the couplings
the relation already knows (``beta_{j-1} v_{j-1}``, or the kept vectors right after a restart), then once
against all of ``V``, and a second time only when that pass cancelled most of it (Daniel, Gragg, Kaufman &
Stewart 1976: "twice is enough"), so that a step reads the basis twice rather than four times.

Stopping rules. ``tol``: every wanted pair has ``||r_i|| <= tol |theta_i|`` (ARPACK's criterion).
``eigenvalue_tol``: every wanted Ritz value's error bound ``min(||r_i||, ||r_i||^2 / gap_i) <=
eigenvalue_tol |theta_i|``, ``gap_i`` the distance to the nearest other Ritz value: the residual bound,
and the Kato-Temple bound for an eigenvalue isolated by ``gap_i`` from the rest of the spectrum (Saad 2011,
"Numerical Methods for Large Eigenvalue Problems", ch. 3). An eigenvalue error ``eps`` then needs a
residual of only ``sqrt(eps gap |theta|)``; the Ritz gaps stand in for the true ones, which they match
once the neighbours have converged. Converged pairs are tested only once the first basis is full (as
ARPACK does), then after every product: a Krylov space from one vector holds one copy of a repeated
eigenvalue until it becomes invariant, so an early stop in the first cycle returned the next distinct
values instead of the copies (linear model + MSE: ``H = I (x) X^T X / N``; top-3 came out 0.84, 0.50,
0.33 against 0.84 three times). Copies are found when the space becomes invariant within the first basis;
a copy that appears later only through rounding can still be missed, as by ARPACK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics._validation import require

__all__ = ["thick_restart_lanczos", "lanczos_with_bounds", "wanted_ritz", "ritz_error_bounds"]

# A pass that keeps less than this fraction of the vector's norm lost digits to cancellation: repeat it
# (DGKS; 1/sqrt(2) is their choice).
_REORTHOGONALISE_BELOW = 0.7071


def wanted_ritz(theta: NDArray, k: int, which: str) -> NDArray[np.int64]:
    """Indices of the ``k`` wanted values of ``theta`` (ascending): ``"LA"``, ``"SA"``, ``"BE"``, ``"LM"``.

    >>> wanted_ritz(np.array([-3.0, 0.1, 1.0, 2.0]), 2, "LM").tolist()
    [0, 3]
    """
    n = theta.size
    if which == "LA":
        return np.arange(n - k, n)
    if which == "SA":
        return np.arange(k)
    if which == "BE":
        return np.concatenate([np.arange(k // 2), np.arange(n - (k - k // 2), n)])
    return np.sort(np.argsort(-np.abs(theta), kind="stable")[:k])


def ritz_error_bounds(theta: NDArray, residuals: NDArray) -> NDArray[np.float64]:
    """Eigenvalue error bounds ``min(||r_i||, ||r_i||^2 / gap_i)`` of Ritz values ``theta`` (all of them).

    ``gap_i = min_{j != i} |theta_i - theta_j|`` stands in for the distance from ``theta_i`` to the rest of
    the spectrum. ``||r_i||`` bounds the distance to the nearest eigenvalue always; ``||r_i||^2 / gap`` does
    when the other eigenvalues are at least ``gap`` away (Kato-Temple; Saad 2011, ch. 3), which the
    other Ritz values estimate once they have converged. A single Ritz value has only the residual bound.

    >>> ritz_error_bounds(np.array([1.0, 3.0]), np.array([1e-3, 1.0])).tolist()
    [5e-07, 0.5]
    """
    theta, residuals = np.asarray(theta, dtype=np.float64), np.asarray(residuals, dtype=np.float64)
    if theta.size < 2:
        return residuals.copy()
    distance = np.abs(theta[:, None] - theta[None, :])
    np.fill_diagonal(distance, np.inf)
    gap = distance.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        quadratic = np.where(gap > 0, residuals ** 2 / gap, np.inf)
    return np.minimum(residuals, quadratic)


@dataclass(frozen=True)
class _Stop:
    """The stopping rule: ARPACK's relative residual ``tol``, or the eigenvalue error bound's."""

    k: int
    which: str
    tol: float
    eigenvalue_tol: float | None

    def check(self, t: NDArray, beta: float) -> tuple[NDArray, NDArray, NDArray, NDArray, bool]:
        """Ritz pairs of ``T``, their relation residuals ``|beta s_n|``, the wanted ones, and the test."""
        theta, s = np.linalg.eigh(t)
        residuals = np.abs(beta * s[-1])
        wanted = wanted_ritz(theta, self.k, self.which)
        scale = np.maximum(np.abs(theta[wanted]), np.finfo(float).eps ** (2 / 3))
        if self.eigenvalue_tol is None:
            return theta, s, residuals, wanted, bool(np.all(residuals[wanted] <= self.tol * scale))
        bounds = ritz_error_bounds(theta, residuals)[wanted]
        return theta, s, residuals, wanted, bool(np.all(bounds <= self.eigenvalue_tol * scale))


def thick_restart_lanczos(matvec: Callable[[NDArray], NDArray], m: int, k: int, *, which: str = "LA",
                          tol: float = 1e-6, ncv: int | None = None, maxiter: int | None = None,
                          v0: NDArray | None = None, eigenvalue_tol: float | None = None
                          ) -> tuple[NDArray, NDArray, NDArray, int]:
    """``k`` extreme eigenpairs of a symmetric ``m x m`` operator given by ``matvec`` (one vector at a time).

    Returns ``(values ascending, vectors (m, k), residual norms, number of products)``. ``ncv`` is the
    largest basis (default ``max(2 k + 1, 20)``, as ARPACK), ``maxiter`` the number of restarts. Stops when
    every wanted pair has ``||r|| <= tol |theta|``, or, with ``eigenvalue_tol``, when every wanted Ritz
    value's error bound (:func:`ritz_error_bounds`) is below ``eigenvalue_tol |theta|`` instead.

    >>> A = np.diag(np.arange(1.0, 41.0))
    >>> vals, vecs, res, n = thick_restart_lanczos(lambda x: A @ x, 40, 3, tol=1e-10)
    >>> vals.round(8).tolist(), bool(np.all(res <= 1e-8 * 40))
    ([38.0, 39.0, 40.0], True)
    """
    vals, vecs, residuals, _, products = lanczos_with_bounds(matvec, m, k, which=which, tol=tol, ncv=ncv,
                                                             maxiter=maxiter, v0=v0,
                                                             eigenvalue_tol=eigenvalue_tol)
    return vals, vecs, residuals, products


def lanczos_with_bounds(matvec: Callable[[NDArray], NDArray], m: int, k: int, *, which: str = "LA",
                        tol: float = 1e-6, ncv: int | None = None, maxiter: int | None = None,
                        v0: NDArray | None = None, eigenvalue_tol: float | None = None
                        ) -> tuple[NDArray, NDArray, NDArray, NDArray, int]:
    """:func:`thick_restart_lanczos` that also returns the wanted Ritz values' error bounds.

    Returns ``(values ascending, vectors (m, k), residual norms, error bounds, number of products)``; the
    bounds are :func:`ritz_error_bounds` over all Ritz values of the final basis.
    """
    require(isinstance(k, (int, np.integer)) and 1 <= k < m, "k", k, f"an integer with 1 <= k < {m}")
    ncv = min(m, max(2 * k + 1, 20)) if ncv is None else ncv
    require(isinstance(ncv, (int, np.integer)) and k < ncv <= m, "ncv", ncv,
            f"an integer with {k} < ncv <= {m}")
    require(eigenvalue_tol is None or (bool(np.isfinite(eigenvalue_tol)) and 0 < eigenvalue_tol < 1),
            "eigenvalue_tol", eigenvalue_tol, "None or 0 < eigenvalue_tol < 1")
    maxiter = max(100, 10 * m // ncv) if maxiter is None else maxiter
    stop = _Stop(int(k), which, tol, eigenvalue_tol)
    v = np.random.default_rng(0).standard_normal(m) if v0 is None else np.asarray(v0, dtype=np.float64)
    basis = np.zeros((ncv + 1, m))   # rows: contiguous vectors for the products and the projections
    basis[0] = v / np.linalg.norm(v)
    t = np.zeros((ncv, ncv))
    p, products, beta = 0, 0, 0.0
    for cycle in range(maxiter):
        for j in range(p, ncv):
            w = np.asarray(matvec(basis[j]), dtype=np.float64).reshape(m)
            products += 1
            beta = _extend(basis, t, j, p, w, beta, m, products)
            # Mid-cycle tests from the second cycle on (see the module docstring: repeated eigenvalues).
            if cycle > 0 and j + 1 > k and j + 1 < ncv:
                theta, s, residuals, wanted, done = stop.check(t[:j + 1, :j + 1], beta)
                if done:
                    return _pairs(theta, s, residuals, wanted, basis[:j + 1], products)
        theta, s, residuals, wanted, done = stop.check(t, beta)
        if done or beta == 0.0:
            return _pairs(theta, s, residuals, wanted, basis[:ncv], products)
        # Keep the wanted pairs and the nearest others (half the free room), then the residual direction.
        keep = _kept(theta, wanted, k + (ncv - k) // 2, which)
        p = keep.size
        basis[:p] = s[:, keep].T @ basis[:ncv]
        basis[p] = basis[ncv]
        t[:] = 0.0
        t[np.arange(p), np.arange(p)] = theta[keep]
        t[p, :p] = t[:p, p] = beta * s[-1, keep]
    rule = f"tol={tol}" if eigenvalue_tol is None else f"eigenvalue_tol={eigenvalue_tol}"
    raise RuntimeError(f"thick-restart Lanczos did not converge to {rule} in {maxiter} restarts "
                       f"({products} products): raise maxiter or ncv, or loosen {rule.split('=')[0]}")


def _pairs(theta: NDArray, s: NDArray, residuals: NDArray, wanted: NDArray, basis: NDArray, products: int
           ) -> tuple[NDArray, NDArray, NDArray, NDArray, int]:
    bounds = ritz_error_bounds(theta, residuals)[wanted]
    return theta[wanted], (s[:, wanted].T @ basis).T, residuals[wanted], bounds, products


def _extend(basis: NDArray, t: NDArray, j: int, p: int, w: NDArray, beta: float, m: int, seed: int) -> float:
    """Orthogonalise ``w = A v_j`` into ``basis[j + 1]``, fill column ``j`` of ``T``; returns the new beta.

    The couplings the Krylov relation already knows go first (``beta_{j-1}`` to ``v_{j-1}``; right after
    a restart, the border ``T[:p, p]`` to the kept Ritz vectors), so the pass over all of ``V`` only
    removes rounding; it is repeated when it kept less than ``1/sqrt(2)`` of the norm.
    """
    h = np.zeros(j + 1)
    if j == p:
        lo, h[:p] = 0, t[:p, p]
    else:
        lo, h[j - 1] = j - 1, beta
    w -= h[lo:j] @ basis[lo:j]
    h[j] = basis[j] @ w
    w -= h[j] * basis[j]
    for _ in range(2):
        before = float(np.linalg.norm(w))
        correction = basis[:j + 1] @ w
        w -= correction @ basis[:j + 1]
        h += correction
        if np.linalg.norm(w) >= _REORTHOGONALISE_BELOW * before:
            break
    t[:j + 1, j] = t[j, :j + 1] = h
    beta = float(np.linalg.norm(w))
    if beta <= np.finfo(float).eps * max(1.0, float(np.abs(h).max())):   # invariant subspace
        basis[j + 1] = _fresh_direction(basis[:j + 1], m, seed)
        return 0.0
    basis[j + 1] = w / beta
    return beta


def _kept(theta: NDArray, wanted: NDArray, p: int, which: str) -> NDArray[np.int64]:
    """The ``p`` Ritz values kept at a restart: the wanted ones first, then those nearest to them."""
    order = {"LA": np.argsort(-theta), "SA": np.argsort(theta),
             "LM": np.argsort(-np.abs(theta), kind="stable")}.get(which)
    if order is None:   # both ends: alternate from the top and the bottom
        n = theta.size
        order = np.ravel(np.column_stack([np.arange(n)[::-1], np.arange(n)]))[:n]
        order = np.array(list(dict.fromkeys(order.tolist())))
    rest = [i for i in order if i not in set(wanted.tolist())]
    return np.sort(np.concatenate([wanted, np.asarray(rest[:max(0, p - wanted.size)], dtype=np.int64)]))


def _fresh_direction(basis: NDArray, m: int, seed: int) -> NDArray:
    """A unit vector orthogonal to ``basis``, to continue past an invariant subspace."""
    w = np.random.default_rng(seed).standard_normal(m)
    for _ in range(2):
        w -= (basis @ w) @ basis
    return w / np.linalg.norm(w)
