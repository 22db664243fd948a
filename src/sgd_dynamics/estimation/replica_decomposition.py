"""Drift/diffusion split of the displacement from ``theta*`` over independent replicas (issue 11 section 2).

``R`` replicas restart from the same ``theta*`` with independent minibatch streams, so at step ``k`` the
displacements ``d_r = theta_k^r - theta*`` are i.i.d. with mean ``mu_k = E theta_k - theta*`` and
covariance ``C_k``. The single-run ``E||theta_k - theta*||^2`` of 002 section 2 (the anomalous-diffusion
curve ``||Delta_k||^2``) is ``||mu_k||^2 + tr C_k``: a deterministic drift (a ``theta*`` still training)
plus the diffusion the theory describes. Unbiased estimators, with ``dbar = (1/R) sum_r d_r``::

    diffusion  D = tr Cov   = 1/(R-1) sum_r ||d_r - dbar||^2             E D = tr C_k
    drift      A = ||dbar||^2 - D / R = 1/(R(R-1)) sum_{r != s} d_r . d_s  E A = ||mu_k||^2
    total      T = (1/R) sum_r ||d_r||^2 = ||dbar||^2 + (R-1)/R D = A + D  E T = ||mu_k||^2 + tr C_k

so the total splits into drift plus diffusion exactly, estimate by estimate; the factor ``(R-1)/R``
appears only against the biased ``||dbar||^2``. ``A`` can be negative when the drift is small against
``D / R``.

All three depend on the replicas only through the Gram matrix ``G_rs = d_r . d_s`` (``R^2`` numbers per
step: a measurement never keeps parameter vectors). Each is a U-statistic (Hoeffding 1948; kernels
``||d||^2``, ``d_r . d_s``, ``||d_r - d_s||^2 / 2``), so its jackknife over replicas (Quenouille 1956,
Tukey 1958; Arvesen 1969 for U-statistics) gives the standard error::

    se^2 = (R - 1)/R sum_r (est_(-r) - mean_r est_(-r))^2,

with ``est_(-r)`` the estimate from the ``R - 1`` other replicas (rows and columns ``r`` of ``G``
removed). By the Efron-Stein inequality (1981) its expectation is at least the true variance; intervals
``est +- t_{R-1} se`` use the Student quantile with ``R - 1`` degrees of freedom. A leave-one-out
diffusion needs two replicas, so the standard errors need ``R >= 3`` (NaN for ``R = 2``).

Precision: with ``G`` in float64 the cancellation in ``D`` costs ``~1e-16 A / D`` relative, negligible
unless the drift exceeds the diffusion by ``~1e10``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require as _require

__all__ = ["ReplicaDecomposition", "replica_decomposition", "replica_gram"]


@dataclass(frozen=True)
class ReplicaDecomposition:
    """Total, drift and diffusion of ``||theta_k - theta*||^2`` with jackknife standard errors.

    Arrays have the leading shape of the Gram matrices they come from (e.g. one value per recorded step).
    """

    total: NDArray[np.float64]          # (1/R) sum_r ||d_r||^2, unbiased for E||theta_k - theta*||^2
    drift: NDArray[np.float64]          # unbiased for ||E theta_k - theta*||^2
    diffusion: NDArray[np.float64]      # unbiased for tr Cov(theta_k)
    total_se: NDArray[np.float64]
    drift_se: NDArray[np.float64]
    diffusion_se: NDArray[np.float64]
    replicas: int

    @property
    def drift_fraction(self) -> NDArray[np.float64]:
        """``drift / total``: the part of the displacement common to all replicas."""
        return self.drift / self.total


def replica_gram(displacements: ArrayLike) -> NDArray[np.float64]:
    """``G_rs = d_r . d_s`` in float64 for displacements of shape ``(..., R, m)``.

    >>> replica_gram([[1.0, 0.0], [1.0, 2.0]]).tolist()
    [[1.0, 1.0], [1.0, 5.0]]
    """
    d = np.asarray(displacements, dtype=np.float64)
    _require(d.ndim >= 2 and d.shape[-2] >= 2, "displacements.shape", d.shape, "(..., R, m) with R >= 2")
    return d @ np.swapaxes(d, -1, -2)


def _estimates(trace: NDArray, total_sum: NDArray, n: int) -> tuple[NDArray, NDArray, NDArray]:
    """``(T, A, D)`` of ``n`` replicas from ``tr G`` and the sum of all entries ``1^T G 1``."""
    mean_sq = total_sum / n**2                      # ||dbar||^2
    diffusion = (trace - total_sum / n) / (n - 1)
    return trace / n, mean_sq - diffusion / n, diffusion


def replica_decomposition(gram: ArrayLike) -> ReplicaDecomposition:
    """Total, drift and diffusion from Gram matrices ``(..., R, R)`` of the displacements (module docstring).

    >>> d = np.array([[2.0, 0.0, 1.0], [1.0, 2.0, 0.0], [0.0, 1.0, 2.0]])   # three replicas, mean (1, 1, 1)
    >>> parts = replica_decomposition(replica_gram(d))
    >>> float(parts.total), float(parts.drift), float(parts.diffusion)
    (5.0, 2.0, 3.0)
    """
    g = np.asarray(gram, dtype=np.float64)
    _require(g.ndim >= 2 and g.shape[-1] == g.shape[-2] >= 2, "gram.shape", g.shape,
             "(..., R, R) with R >= 2 replicas")
    _require(bool(np.all(np.isfinite(g))), "gram", "(non-finite entries)", "finite entries (a diverged "
             "replica has an infinite displacement)")
    r = g.shape[-1]
    trace = np.trace(g, axis1=-2, axis2=-1)
    total_sum = g.sum(axis=(-2, -1))
    estimates = _estimates(trace, total_sum, r)
    if r < 3:
        nan = np.full(trace.shape, np.nan)
        return ReplicaDecomposition(*estimates, nan, nan, nan.copy(), r)
    diagonal = np.diagonal(g, axis1=-2, axis2=-1)            # (..., R)
    row_sums = g.sum(axis=-1)
    # Leave replica r out: remove its diagonal entry from the trace, its row and column from the sum.
    leave_out = _estimates(trace[..., None] - diagonal, total_sum[..., None] - 2 * row_sums + diagonal, r - 1)
    errors = [np.sqrt((r - 1) / r * np.sum((e - e.mean(-1, keepdims=True)) ** 2, axis=-1)) for e in leave_out]
    return ReplicaDecomposition(*estimates, *errors, r)
