"""Hessian of the training loss: Hessian-vector products, top-k eigenpairs and the trace.

The Hessian ``H = nabla^2 L(theta)`` of the mean loss over a whole data set (002 section 2 and appendix
I.1: the ``rho_i, q_i`` of eqs. 9-19 are its eigenpairs) is never formed. Products ``H V`` are
forward-over-reverse derivatives, ``jvp(grad(L))`` with ``torch.func``, a block of vectors at once
through ``vmap`` (the primal forward and backward pass is shared by the block). The loss over several
batches is weighted by batch size, ``L = sum_b n_b L_b / N``, so that it is the mean over all examples
whatever the batching. HVPs run in eval mode (BatchNorm running statistics, no dropout) so the
operator is deterministic and symmetric; every module's mode is restored afterwards.

Eigenpairs: restarted Lanczos (ARPACK ``eigsh``) or the block method LOBPCG (block HVPs); both report
the residual ``||H q_i - rho_i q_i||`` of every pair, recomputed with one final block product.
Negative eigenvalues are reported with their sign (``which="LA"``: the ``k`` algebraically largest,
which include negative ones only when fewer than ``k`` are positive; ``which="LM"``: the ``k`` largest in
magnitude, which exposes strong negative curvature). Trace: Hutchinson (Rademacher probes) and Hutch++
(Meyer, Musco, Musco & Woodruff 2021, alg. 1) with a standard error from the spread of the probes.

Cost: Lanczos needs one sequential HVP per iteration and the fewest HVPs; it is the default. LOBPCG
applies blocks (``vmap`` shares the primal pass, 1.3-1.7x cheaper per vector on CPU) but needs about
3x more of them and ``O(m k^2)`` dense work per iteration (keep BLAS threads from oversubscribing the CPU).

Precision: ``tol`` is relative to the largest eigenvalue; tolerances much below the parameter dtype's
precision (``~1e-7`` for float32) need a float64 model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from sgd_dynamics.measure.flat_params import (
    BatchSource,
    ParameterLayout,
    evaluation_mode,
    model_output,
    reiterable,
    split_batch,
    to_device,
)

LossFn = Callable[[Tensor, Tensor], Tensor]
Which = Literal["LA", "LM"]
EigenMethod = Literal["lanczos", "lobpcg"]
TraceMethod = Literal["hutchinson", "hutch++"]


class HessianOperator:
    """``V -> H V`` for the Hessian of the batch-size-weighted mean loss at the parameters at construction.

    The parameters are copied when the operator is built, so later training does not change it.
    ``hvp_count`` counts Hessian-vector products (a block of ``b`` vectors counts ``b``).

    Parameters
    ----------
    model : any ``nn.Module``; its parameters define the flat order.
    loss_fn : ``loss_fn(outputs, targets) -> mean loss over the batch``.
    batches : re-iterable ``(inputs, targets)`` batches (see :mod:`~sgd_dynamics.measure.flat_params`).
    block_size : at most this many vectors go through one ``vmap`` (bounds memory).
    vectorize : ``False`` computes a block one vector at a time (for modules without vmap support).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: BatchSource, *, block_size: int = 16,
                 vectorize: bool = True) -> None:
        if not (isinstance(block_size, int) and block_size >= 1):
            raise ValueError(f"block_size={block_size!r} is invalid: expected an integer >= 1")
        self.model, self.loss_fn = model, loss_fn
        self.layout = ParameterLayout.from_module(model)
        self.params = {n: p.detach().clone() for n, p in model.named_parameters()}
        self._batches = reiterable(batches)
        self.block_size, self.vectorize = block_size, vectorize
        self.hvp_count = 0

    @property
    def dim(self) -> int:
        return self.layout.dim

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def _loss(self, params: dict[str, Tensor], inputs, targets: Tensor) -> Tensor:
        return self.loss_fn(model_output(self.model, params, inputs), targets)

    def _batch_hvp(self, tangents: Tensor, inputs, targets: Tensor) -> Tensor:
        """``H_b T`` for rows ``T`` of shape ``(b, m)``: the Hessian of this batch's mean loss."""
        grad = torch.func.grad(lambda p: self._loss(p, inputs, targets))

        def hvp(t: Tensor) -> Tensor:
            _, ht = torch.func.jvp(grad, (self.params,), (self.layout.unflatten(t),))
            return self.layout.flatten(ht)

        if self.vectorize and tangents.shape[0] > 1:
            return torch.func.vmap(hvp)(tangents)
        return torch.stack([hvp(t) for t in tangents])

    def _rows_hvp(self, rows: Tensor) -> Tensor:
        out = torch.zeros_like(rows)
        total = 0
        with evaluation_mode(self.model):
            for batch in self._batches():
                inputs, targets, n = split_batch(batch)
                inputs, targets = to_device(inputs, self.layout.device), targets.to(self.layout.device)
                out.add_(self._batch_hvp(rows, inputs, targets), alpha=float(n))
                total += n
        if total == 0:
            raise ValueError("batches yielded no examples: expected at least one (inputs, targets) batch")
        return out.div_(total)

    def matmat(self, vectors: Tensor) -> Tensor:
        """``H V`` for ``V`` of shape ``(m, b)`` (or ``(m,)``), in the parameters' dtype and device."""
        if vectors.ndim == 1:
            return self.matmat(vectors[:, None])[:, 0]
        if vectors.ndim != 2 or vectors.shape[0] != self.dim:
            raise ValueError(f"vectors has shape {tuple(vectors.shape)}: expected ({self.dim}, b) "
                             f"or ({self.dim},)")
        rows = vectors.T.to(dtype=self.layout.dtype, device=self.layout.device).contiguous()
        step = self.block_size
        parts = [self._rows_hvp(rows[i:i + step]) for i in range(0, rows.shape[0], step)]
        self.hvp_count += rows.shape[0]
        return torch.cat(parts).T

    def __matmul__(self, vectors: Tensor) -> Tensor:
        return self.matmat(vectors)

    def to_scipy(self) -> spla.LinearOperator:
        """The same operator as a float64 ``scipy.sparse.linalg.LinearOperator`` (numpy in, numpy out)."""

        def apply(x: NDArray) -> NDArray:
            x = np.asarray(x)
            y = self.matmat(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)))
            return y.detach().to("cpu", torch.float64).numpy().reshape(x.shape)

        return spla.LinearOperator(self.shape, matvec=apply, rmatvec=apply, matmat=apply, rmatmat=apply,
                                   dtype=np.float64)


@dataclass(frozen=True)
class HessianEigenpairs:
    """Top eigenpairs, descending; ``residuals[i] = ||H q_i - rho_i q_i||`` (recomputed, not estimated)."""

    eigenvalues: NDArray[np.float64]
    eigenvectors: NDArray[np.float64] = field(repr=False)
    residuals: NDArray[np.float64]
    hvp_count: int
    method: str
    tol: float

    @property
    def converged(self) -> NDArray[np.bool_]:
        """Pairs whose residual is within ``tol`` times the largest ``|rho|`` (norm-wise backward error)."""
        return self.residuals <= self.tol * np.max(np.abs(self.eigenvalues))


def top_eigenpairs(operator: spla.LinearOperator, k: int, *, tol: float = 1e-6, which: Which = "LA",
                   method: EigenMethod = "lanczos", seed: int = 0, maxiter: int | None = None,
                   ncv: int | None = None) -> tuple[NDArray, NDArray, NDArray]:
    """Top-``k`` eigenpairs of a symmetric operator: ``(values descending, vectors (m, k), residual norms)``.

    ``lanczos``: ARPACK ``eigsh`` (implicitly restarted Lanczos, stops when every Ritz pair has
    ``||r|| <= tol |rho|``). ``lobpcg``: scipy's LOBPCG on a block of ``k`` vectors, stops when every
    ``||r|| <= tol max|rho|``; ``which="LA"`` only. Works on any operator, so dense test matrices and
    Hessian-vector products go through the same code.

    >>> A = np.diag([5.0, -7.0, 1.0, 0.5])
    >>> vals, _, res = top_eigenpairs(spla.aslinearoperator(A), 2, which="LM", ncv=4)
    >>> vals.round(8).tolist(), bool(np.all(res < 1e-8))
    ([5.0, -7.0], True)
    """
    m = operator.shape[0]
    if not (isinstance(k, (int, np.integer)) and 1 <= k < m):
        raise ValueError(f"k={k!r} is invalid: expected an integer with 1 <= k < {m} "
                         "(the number of parameters)")
    if not (np.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"tol={tol!r} is invalid: expected 0 < tol < 1")
    if which not in ("LA", "LM"):
        raise ValueError(f"which={which!r} is invalid: expected 'LA' (algebraically largest) "
                         "or 'LM' (largest magnitude)")
    rng = np.random.default_rng(seed)
    if method == "lanczos":
        try:
            vals, vecs = spla.eigsh(operator, k=k, which=which, tol=tol, v0=rng.standard_normal(m),
                                    maxiter=maxiter, ncv=ncv)
        except spla.ArpackNoConvergence as err:
            raise RuntimeError(f"ARPACK did not converge to tol={tol} ({len(err.eigenvalues)} of {k} pairs): "
                               "raise maxiter or ncv, loosen tol, or use a float64 model") from err
    elif method == "lobpcg":
        if which != "LA":
            raise ValueError(f"which={which!r} is invalid for method='lobpcg': expected 'LA'")
        vals, vecs = _lobpcg_top(operator, k, tol, rng, maxiter)
    else:
        raise ValueError(f"method={method!r} is invalid: expected 'lanczos' or 'lobpcg'")
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    # A fixed sign (largest-magnitude entry positive) makes eigenvectors reproducible across runs.
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    residuals = np.linalg.norm(operator.matmat(vecs) - vecs * vals, axis=0)
    return vals, vecs, residuals


def _lobpcg_top(operator: spla.LinearOperator, k: int, tol: float, rng: np.random.Generator,
                maxiter: int | None) -> tuple[NDArray, NDArray]:
    m = operator.shape[0]
    x, _ = np.linalg.qr(rng.standard_normal((m, k)))
    # LOBPCG's tolerance is absolute; one Rayleigh-Ritz step on the start block gives the scale
    # (a lower bound on ||H||, so the criterion is at least as strict as tol * ||H||).
    ax = operator.matmat(x)
    theta, s = scipy.linalg.eigh(x.T @ ax)
    scale = max(np.max(np.abs(theta)), np.finfo(float).tiny)
    x = x @ s
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not reaching the requested tolerance.*")
        vals, vecs = spla.lobpcg(operator, x, tol=tol * scale, largest=True,
                                 maxiter=maxiter if maxiter is not None else 500)
    return np.asarray(vals, dtype=np.float64), np.asarray(vecs, dtype=np.float64)


def hessian_eigenpairs(model: nn.Module, loss_fn: LossFn, batches: BatchSource, k: int = 10,
                       tol: float = 1e-6, *, which: Which = "LA", method: EigenMethod = "lanczos",
                       seed: int = 0, maxiter: int | None = None, ncv: int | None = None,
                       block_size: int = 16) -> HessianEigenpairs:
    """Top-``k`` Hessian eigenpairs of the mean loss over ``batches`` at the model's current parameters.

    Eigenvectors are columns in the flat parameter order (``parameters_to_vector``), orthonormal, with
    the largest-magnitude entry positive; pass ``res.eigenvectors.T`` as the tracker's ``directions``.
    ``hvp_count`` includes the final block of ``k`` products that measures the residuals.
    """
    op = HessianOperator(model, loss_fn, batches, block_size=block_size)
    vals, vecs, residuals = top_eigenpairs(op.to_scipy(), k, tol=tol, which=which, method=method, seed=seed,
                                           maxiter=maxiter, ncv=ncv)
    return HessianEigenpairs(vals, vecs, residuals, op.hvp_count, method, tol)


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic trace estimate with its standard error and the number of matrix-vector products."""

    estimate: float
    stderr: float
    hvp_count: int
    method: str


def trace_estimate(matmat: Callable[[NDArray], NDArray], dim: int, num_matvecs: int = 99, *,
                   method: TraceMethod = "hutch++", seed: int = 0) -> TraceEstimate:
    """Trace of a symmetric operator from ``num_matvecs`` products (Rademacher probes).

    Hutchinson: ``mean_j z_j^T A z_j``, standard error ``std / sqrt(n)``. Hutch++: a third of the budget
    sketches ``Q = orth(A S)``, a third gives ``tr(Q^T A Q)`` exactly, and the last third runs Hutchinson
    on the deflated ``(I - QQ^T) A (I - QQ^T)``, whose probe spread gives the standard error.

    >>> A = np.diag(np.arange(1.0, 7.0))
    >>> round(trace_estimate(lambda x: A @ x, 6, 18, method="hutch++").estimate, 10)   # rank <= n/3: exact
    21.0
    """
    min_n = 3 if method == "hutch++" else 2
    if not (isinstance(num_matvecs, (int, np.integer)) and num_matvecs >= min_n):
        raise ValueError(f"num_matvecs={num_matvecs!r} is invalid: expected an integer >= {min_n} "
                         f"for {method}")
    rng = np.random.default_rng(seed)
    if method == "hutchinson":
        z = rng.choice([-1.0, 1.0], size=(dim, num_matvecs))
        samples = np.einsum("ij,ij->j", z, matmat(z))
        return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(num_matvecs)),
                             int(num_matvecs), method)
    if method != "hutch++":
        raise ValueError(f"method={method!r} is invalid: expected 'hutchinson' or 'hutch++'")
    n = num_matvecs // 3
    s = rng.choice([-1.0, 1.0], size=(dim, n))
    g = rng.choice([-1.0, 1.0], size=(dim, n))
    q, _ = np.linalg.qr(matmat(s))
    exact_part = float(np.trace(q.T @ matmat(q)))
    g = g - q @ (q.T @ g)
    samples = np.einsum("ij,ij->j", g, matmat(g))
    stderr = float(samples.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return TraceEstimate(exact_part + float(samples.mean()), stderr, 3 * n, method)


def hessian_trace(model: nn.Module, loss_fn: LossFn, batches: BatchSource, num_matvecs: int = 99, *,
                  method: TraceMethod = "hutch++", seed: int = 0, block_size: int = 16) -> TraceEstimate:
    """``tr H`` of the mean loss over ``batches`` by Hutch++ (default) or Hutchinson, seeded."""
    op = HessianOperator(model, loss_fn, batches, block_size=block_size).to_scipy()
    return trace_estimate(op.matmat, op.shape[0], num_matvecs, method=method, seed=seed)
