"""Thick-restart Lanczos (Wu & Simon 2000) for extreme eigenpairs, with residuals from the Krylov relation.

For a symmetric operator ``A`` the basis ``V = [v_1 .. v_n]`` (orthonormal, reorthogonalised twice against
all of ``V`` at every step) and the projection ``T = V^T A V`` (kept in full, so that restarted bases need
no special case) satisfy the Krylov relation

    A V = V T + beta v_{n+1} e_n^T.

A Ritz pair ``(theta_i, y_i = V s_i)`` of ``T`` then has the residual ``||A y_i - theta_i y_i|| = |beta|
|e_n^T s_i|`` exactly (up to rounding of the orthogonalisation): no product with ``A`` is spent on it.
A restart keeps ``p`` Ritz vectors and ``v_{n+1}``; their projection is ``diag(theta)`` bordered by
``beta e_n^T S``, which the full ``T`` carries. Stops when every wanted pair has ``||r_i|| <= tol
|theta_i|`` (ARPACK's criterion).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics._validation import require

__all__ = ["thick_restart_lanczos", "wanted_ritz"]


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


def thick_restart_lanczos(matvec: Callable[[NDArray], NDArray], m: int, k: int, *, which: str = "LA",
                          tol: float = 1e-6, ncv: int | None = None, maxiter: int | None = None,
                          v0: NDArray | None = None) -> tuple[NDArray, NDArray, NDArray, int]:
    """``k`` extreme eigenpairs of a symmetric ``m x m`` operator given by ``matvec`` (one vector at a time).

    Returns ``(values ascending, vectors (m, k), residual norms, number of products)``. ``ncv`` is the
    largest basis (default ``max(2 k + 1, 20)``, as ARPACK), ``maxiter`` the number of restarts.

    >>> A = np.diag(np.arange(1.0, 41.0))
    >>> vals, vecs, res, n = thick_restart_lanczos(lambda x: A @ x, 40, 3, tol=1e-10)
    >>> vals.round(8).tolist(), bool(np.all(res <= 1e-8 * 40))
    ([38.0, 39.0, 40.0], True)
    """
    require(isinstance(k, (int, np.integer)) and 1 <= k < m, "k", k, f"an integer with 1 <= k < {m}")
    ncv = min(m, max(2 * k + 1, 20)) if ncv is None else ncv
    require(isinstance(ncv, (int, np.integer)) and k < ncv <= m, "ncv", ncv,
            f"an integer with {k} < ncv <= {m}")
    maxiter = max(100, 10 * m // ncv) if maxiter is None else maxiter
    v = np.random.default_rng(0).standard_normal(m) if v0 is None else np.asarray(v0, dtype=np.float64)
    basis = np.zeros((ncv + 1, m))   # rows: contiguous vectors for the products and the projections
    basis[0] = v / np.linalg.norm(v)
    t = np.zeros((ncv, ncv))
    p, products, beta = 0, 0, 0.0
    # Converged pairs are tested only when the basis is full (as ARPACK does), never mid-cycle: a Krylov
    # space from one vector holds one copy of a repeated eigenvalue until it becomes invariant, so an early
    # stop returned the next distinct values instead of the copies (linear model + MSE: H = I (x) X^T X / N;
    # top-3 came out 0.84, 0.50, 0.33 against 0.84 three times).
    for _ in range(maxiter):
        for j in range(p, ncv):
            w = np.asarray(matvec(basis[j]), dtype=np.float64).reshape(m)
            products += 1
            h = basis[:j + 1] @ w
            w -= h @ basis[:j + 1]
            correction = basis[:j + 1] @ w   # the second pass of classical Gram-Schmidt ("twice is enough")
            w -= correction @ basis[:j + 1]
            h += correction
            t[:j + 1, j] = t[j, :j + 1] = h
            beta = float(np.linalg.norm(w))
            if beta <= np.finfo(float).eps * max(1.0, float(np.abs(h).max())):   # invariant subspace
                w = _fresh_direction(basis[:j + 1], m, products)
                beta = 0.0
            else:
                w /= beta
            basis[j + 1] = w
        theta, s, residuals, wanted, done = _ritz(t, beta, k, which, tol)
        if done or beta == 0.0:
            return theta[wanted], (s[:, wanted].T @ basis[:ncv]).T, residuals[wanted], products
        # Keep the wanted pairs and the nearest others (half the free room), then the residual direction.
        keep = _kept(theta, wanted, k + (ncv - k) // 2, which)
        p = keep.size
        basis[:p] = s[:, keep].T @ basis[:ncv]
        basis[p] = basis[ncv]
        t[:] = 0.0
        t[np.arange(p), np.arange(p)] = theta[keep]
        t[p, :p] = t[:p, p] = beta * s[-1, keep]
    raise RuntimeError(f"thick-restart Lanczos did not converge to tol={tol} in {maxiter} restarts "
                       f"({products} products): raise maxiter or ncv, or loosen tol")


def _ritz(t: NDArray, beta: float, k: int, which: str, tol: float
          ) -> tuple[NDArray, NDArray, NDArray, NDArray, bool]:
    """Ritz pairs of ``T``, their relation residuals ``|beta s_n|``, the wanted ones, and the stop test.

    The test is ARPACK's: every wanted ``||r|| <= tol max(|theta|, eps^(2/3))``.
    """
    theta, s = np.linalg.eigh(t)
    residuals = np.abs(beta * s[-1])
    wanted = wanted_ritz(theta, k, which)
    scale = np.maximum(np.abs(theta[wanted]), np.finfo(float).eps ** (2 / 3))
    return theta, s, residuals, wanted, bool(np.all(residuals[wanted] <= tol * scale))


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
