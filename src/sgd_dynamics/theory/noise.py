"""Gradient-noise models: the per-example covariance ``Sigma`` seen along the Hessian eigenbasis.

``Sigma`` is the covariance of a single example's gradient; a minibatch of ``S`` examples drawn with
replacement has gradient noise ``Sigma / S`` (002 Assumption 1). The per-mode predictions of
:mod:`phase_space` and :mod:`discrete` (speed, displacement, marginal moments) depend on ``Sigma`` only
through ``s_i = q_i^T Sigma q_i``: each mode is a linear filter of its own noise, so off-diagonal
entries in the Hessian eigenbasis change cross-mode correlations but not these quantities. Three ways
to give it:

* ``sigma2``: the paper's Assumption 3, ``Sigma = sigma^2 H`` so ``s_i = sigma^2 rho_i``;
* ``noise_variances``: measured ``s_i`` directly;
* ``covariance`` (small dimension) with the Hessian ``eigenvectors``: ``s_i = q_i^T Sigma q_i``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def per_mode_noise(eigenvalues: ArrayLike, *, sigma2: float | None = None,
                   noise_variances: ArrayLike | None = None, covariance: ArrayLike | None = None,
                   eigenvectors: ArrayLike | None = None) -> NDArray[np.float64]:
    """Per-mode per-example noise variances ``s_i`` from exactly one of the three descriptions.

    >>> per_mode_noise([0.5, 2.0], sigma2=0.1).tolist()
    [0.05, 0.2]
    """
    rho = np.atleast_1d(np.asarray(eigenvalues, dtype=np.float64))
    given = [name for name, v in (("sigma2", sigma2), ("noise_variances", noise_variances),
                                  ("covariance", covariance)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of sigma2, noise_variances, covariance; got {given or 'none'}")
    if sigma2 is not None:
        if not (np.isfinite(sigma2) and sigma2 >= 0):
            raise ValueError(f"sigma2={sigma2!r} is invalid: expected a finite value >= 0")
        if np.any(rho < 0):
            raise ValueError("sigma2 * H needs non-negative Hessian eigenvalues; got "
                             f"min eigenvalue {rho.min()!r} (give noise_variances instead)")
        return sigma2 * rho
    if noise_variances is not None:
        s = np.atleast_1d(np.asarray(noise_variances, dtype=np.float64))
        if s.shape != rho.shape:
            raise ValueError(f"noise_variances must have one entry per eigenvalue ({rho.size}); "
                         f"got shape {s.shape}")
    else:
        sig = np.asarray(covariance, dtype=np.float64)
        if sig.ndim != 2 or sig.shape[0] != sig.shape[1]:
            raise ValueError(f"covariance must be a square matrix; got shape {sig.shape}")
        if eigenvectors is None:
            raise ValueError("covariance needs the Hessian eigenvectors (columns) to project on")
        q = np.asarray(eigenvectors, dtype=np.float64)
        if q.shape != (sig.shape[0], rho.size):
            raise ValueError(f"eigenvectors must have shape ({sig.shape[0]}, {rho.size}); got {q.shape}")
        s = np.einsum("ik,ij,jk->k", q, sig, q)
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        bad = int(np.argmin(np.where(np.isfinite(s), s, -np.inf)))
        raise ValueError(f"noise_variances[{bad}]={float(s[bad])!r} is invalid: expected finite values >= 0")
    return s
