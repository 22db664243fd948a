"""Hessian of the training loss: Hessian-vector products, extreme eigenpairs and the trace.

The Hessian ``H = nabla^2 L(theta)`` of the mean loss over a whole data set (002 section 2 and appendix
I.1: the ``rho_i, q_i`` of eqs. 9-19 are its eigenpairs) is never formed. Products ``H V`` are exact
Hessian-vector products of each batch (:mod:`~sgd_dynamics.measure.hvp`): forward-over-reverse
``jvp(grad(L))`` with ``torch.func`` (a block of vectors at once through ``vmap``), or reverse-over-reverse
double backward, whose gradient graph is kept when the data is one batch so that each product costs one
backward pass (:class:`~sgd_dynamics.measure.hvp.GradientGraph`). ``hvp="auto"``, the default, tries the
faster of the two (the kept double backward for one batch, forward-over-reverse blocks for several) and
falls back to the other with a warning; the choice is reported. The loss over several batches is
weighted by batch size, ``L = sum_b n_b L_b / N``, so that it is the mean over all examples whatever the
batching. The loss is ``loss_fn(outputs, targets)`` or a closure ``fn(model, batch)``
(:mod:`~sgd_dynamics.measure.objective`). HVPs run in eval mode (BatchNorm running statistics, no
dropout) so the operator is deterministic and symmetric; every module's mode is restored afterwards.

Parameter groups: ``parameters=`` restricts ``H`` to a group (default: the trainable parameters), i.e. the
diagonal block of the full Hessian for that group; its vectors live in the flat space of the group
(:mod:`~sgd_dynamics.measure.flat_params`), the other parameters are held at their values.

Eigenpairs: thick-restart Lanczos (:mod:`~sgd_dynamics.estimation.thick_restart`, the default), whose
residuals ``||H q_i - rho_i q_i||`` come from the Krylov relation without further products; ARPACK's
implicitly restarted Lanczos (``eigsh``) or the block method LOBPCG (block HVPs), whose residuals are
recomputed with one final block product. Which end
of the spectrum: ``which="LA"`` the ``k`` algebraically largest (the default: the sharp directions),
``"SA"`` the ``k`` smallest (negative curvature away from a minimum), ``"BE"`` both ends (``k - k // 2``
largest and ``k // 2`` smallest, ARPACK's convention, as the 002 authors' code used), ``"LM"`` the ``k``
largest in magnitude. Eigenvalues are always returned in descending order (for ``"SA"`` the smallest is
last), with their sign. Trace: Hutchinson (Rademacher probes) and Hutch++ (Meyer, Musco, Musco &
Woodruff 2021, alg. 1) with a standard error from the spread of the probes, or ``"exact"``
(``sum_j e_j^T H e_j``, ``m`` products, for small models).

Cost: Lanczos needs one sequential HVP per iteration and the fewest HVPs (on one batch each is a
backward pass through the kept gradient graph); it is the default. LOBPCG
applies blocks (``vmap`` shares the primal pass, 1.3-1.7x cheaper per vector on CPU) but needs about
3x more of them and ``O(m k^2)`` dense work per iteration (keep BLAS threads from oversubscribing the CPU).

Data shards (:mod:`~sgd_dynamics.measure.data_shards`): with ``process_group=`` each rank passes its own
shard of the batches; every product sums ``n_b H_b V`` and ``n_b`` over the local batches, all-reduces
both and divides, so ``H V`` is the product of the mean loss over the union of the shards, identical on
every rank, and the eigen-solver (seeded the same everywhere) takes the same path on every rank.

Precision: ``tol`` is ARPACK's relative tolerance ``||r_i|| <= tol |rho_i|`` (LOBPCG: relative to the
largest ``|rho|``). ``eigenvalue_tol`` (Lanczos only) asks for the eigenvalues instead: it stops when every
Ritz value's error bound ``min(||r_i||, ||r_i||^2 / gap_i)`` is within ``eigenvalue_tol |rho_i|``, in far
fewer products than a residual test of the same number (the eigenvectors are then accurate to about
``||r_i|| / gap_i``). Tolerances much below the parameter dtype's precision (``~1e-7`` for float32) need a
float64 model, and so may near-zero eigenvalues at the ``"SA"`` end.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from sgd_dynamics._validation import require
from sgd_dynamics.estimation.thick_restart import lanczos_with_bounds
from sgd_dynamics.measure.data_shards import all_reduce_sum, check_process_group
from sgd_dynamics.measure.flat_params import (
    BatchSource,
    ParameterLayout,
    ParameterSelection,
    evaluation_mode,
    reiterable,
    selected_parameters,
)
from sgd_dynamics.measure.hvp import GradientGraph, forward_over_reverse, reverse_over_reverse
from sgd_dynamics.measure.objective import Loss, LossFn, Objective

__all__ = ["HessianOperator", "HessianEigenpairs", "hessian_eigenpairs", "top_eigenpairs", "TraceEstimate",
           "hessian_trace", "trace_estimate", "Loss", "LossFn"]

Which = Literal["LA", "SA", "BE", "LM"]
EigenMethod = Literal["lanczos", "arpack", "lobpcg"]
TraceMethod = Literal["hutchinson", "hutch++", "exact"]
HvpMethod = Literal["auto", "forward-over-reverse", "reverse-over-reverse"]
_HVP_METHODS = ("auto", "forward-over-reverse", "reverse-over-reverse")


class HessianOperator:
    """``V -> H V`` for the Hessian of the batch-size-weighted mean loss at the parameters at construction.

    The parameters are copied when the operator is built, so later training does not change it.
    ``hvp_count`` counts Hessian-vector products (a block of ``b`` vectors counts ``b``).

    Parameters
    ----------
    model : any ``nn.Module``.
    loss_fn : ``loss_fn(outputs, targets) -> scalar`` on ``(inputs, targets)`` batches, or
        :func:`~sgd_dynamics.measure.objective.closure_loss` ``(fn)`` for ``fn(model, batch) -> scalar``.
    batches : re-iterable batches (see :mod:`~sgd_dynamics.measure.flat_params`).
    block_size : at most this many vectors go through one ``vmap`` (bounds memory).
    vectorize : ``False`` computes a block one vector at a time (for modules without vmap support).
    parameters : the group ``H`` is taken over: ``None`` (the trainable parameters), a name filter
        ``name -> bool`` or a list of parameters; vectors are in the group's flat order.
    hvp : ``"forward-over-reverse"``, ``"reverse-over-reverse"`` or ``"auto"`` (for one batch the second,
        on a kept gradient graph, else the first; the other with a warning when it raises);
        ``hvp_method`` says which one is in use. One batch (a tensor pair or a one-element list)
        keeps its gradient graph for the operator's life under ``"reverse-over-reverse"``.
    process_group : ``None`` (one process), or a ``torch.distributed`` group whose ranks each pass their
        own shard as ``batches``: ``H`` is then that of the mean loss over the union of the shards.
    """

    def __init__(self, model: nn.Module, loss_fn: Loss, batches: BatchSource, *, block_size: int = 16,
                 vectorize: bool = True, parameters: ParameterSelection = None,
                 hvp: HvpMethod = "auto", process_group: Any = None) -> None:
        require(isinstance(block_size, int) and block_size >= 1, "block_size", block_size, "an integer >= 1")
        require(hvp in _HVP_METHODS, "hvp", hvp, "'auto', 'forward-over-reverse' or 'reverse-over-reverse'")
        check_process_group(process_group)
        self.process_group = process_group
        self.model, self.loss_fn = model, loss_fn
        self.objective = Objective(model, loss_fn)
        group = selected_parameters(model, parameters)
        self.layout = ParameterLayout.from_named(group)
        self.params = {n: p.detach().clone() for n, p in group}
        self._constants = {n: p.detach().clone() for n, p in model.named_parameters() if n not in self.params}
        self._batches = reiterable(batches)
        self.block_size, self.vectorize = block_size, vectorize
        self.hvp_method: str | None = None if hvp == "auto" else hvp
        self.hvp_count = 0
        self._single_batch = _is_single_batch(batches)
        self._graph: tuple[GradientGraph, int] | None = None
        self._last_count = 0

    @property
    def dim(self) -> int:
        return self.layout.dim

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def _sweep(self, rows: Tensor, method: str) -> Tensor:
        """``H T^T`` rows for the rows ``T`` of shape ``(b, m)``, summed over all batches."""
        with evaluation_mode(self.model):
            if method == "reverse-over-reverse" and self._single_batch:
                graph, total = self._kept_graph()
                if self.process_group is None and total > 0:
                    return graph.rows(rows)   # one batch: its product is the mean loss's, no weighting
                out = graph.rows(rows).mul_(float(total))
            else:
                out, total = torch.zeros_like(rows), 0
                for raw in self._batches():
                    out.add_(self._batch_rows(raw, rows, method), alpha=float(self._last_count))
                    total += self._last_count
        if self.process_group is not None:
            # Weighted by example counts: sum_r sum_b n_b H_b V / sum_r sum_b n_b, the union's mean loss.
            all_reduce_sum(out, self.process_group)
            total = int(all_reduce_sum(torch.tensor([float(total)], dtype=torch.float64,
                                                    device=out.device), self.process_group).item())
        if total == 0:
            raise ValueError("batches yielded no examples: expected at least one non-empty batch")
        return out.div_(total)

    def _batch_rows(self, raw: Any, rows: Tensor, method: str) -> Tensor:
        batch, self._last_count = self.objective.prepare(raw, self.layout.device)
        if method == "forward-over-reverse":
            return forward_over_reverse(self.objective, self.params, self._constants, self.layout, batch,
                                        rows, vectorize=self.vectorize)
        return reverse_over_reverse(self.objective, self.params, self._constants, self.layout, batch, rows)

    def _kept_graph(self) -> tuple[GradientGraph, int]:
        """The single batch's gradient graph, built on first use and kept (see :class:`GradientGraph`)."""
        if self._graph is None:
            (raw,) = list(self._batches())
            batch, n = self.objective.prepare(raw, self.layout.device)
            self._graph = (GradientGraph(self.objective, self.params, self._constants, self.layout, batch), n)
        return self._graph

    def _rows_hvp(self, rows: Tensor) -> Tensor:
        if self.hvp_method is not None:
            return self._sweep(rows, self.hvp_method)
        # One batch: a kept double-backward graph makes each product one backward pass, cheaper than a
        # fresh forward-over-reverse product; several batches: the forward-over-reverse vmap block.
        first, second = ("forward-over-reverse", "reverse-over-reverse")
        if self._single_batch:
            first, second = second, first
        try:
            out = self._sweep(rows, first)
        except (RuntimeError, NotImplementedError) as error:   # torch's errors for a missing derivative
            failure = error
            self._graph = None
        else:
            self.hvp_method = first
            return out
        warnings.warn(
            f"{first} Hessian-vector products failed on {type(self.model).__name__} "
            f"({type(failure).__name__}: {_first_line(failure)}); using the exact {second} products "
            f"instead; pass hvp='{second}' to choose it",
            stacklevel=2)
        self.hvp_method = second
        return self._sweep(rows, self.hvp_method)

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


def _is_single_batch(batches: BatchSource) -> bool:
    """One fixed batch: an ``(inputs, targets)`` pair of tensors or a list/tuple holding one batch."""
    pair = isinstance(batches, tuple) and len(batches) == 2 and all(isinstance(b, Tensor) for b in batches)
    return pair or (isinstance(batches, (list, tuple)) and len(batches) == 1)


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:160]


@dataclass(frozen=True)
class HessianEigenpairs:
    """Eigenpairs, eigenvalues descending; ``residuals[i] = ||H q_i - rho_i q_i||``.

    The residuals are those of the Krylov relation for ``method="lanczos"``, recomputed with one block
    product otherwise.

    ``which`` is the end of the spectrum asked for, ``hvp`` how the Hessian-vector products were computed.
    ``eigenvalue_tol`` is set when the run stopped on eigenvalue error bounds instead of residuals; then
    ``error_bounds[i]`` bounds ``|rho_i - lambda|`` for the nearest eigenvalue ``lambda`` (see
    :func:`~sgd_dynamics.estimation.ritz_error_bounds`), else it is ``None``.
    """

    eigenvalues: NDArray[np.float64]
    eigenvectors: NDArray[np.float64] = field(repr=False)
    residuals: NDArray[np.float64]
    hvp_count: int
    method: str
    tol: float
    which: str = "LA"
    hvp: str = "forward-over-reverse"
    eigenvalue_tol: float | None = None
    error_bounds: NDArray[np.float64] | None = None

    @property
    def converged(self) -> NDArray[np.bool_]:
        """Pairs whose residual is within ``tol`` times the largest ``|rho|`` (norm-wise backward error).

        With ``eigenvalue_tol``: pairs whose eigenvalue error bound is within ``eigenvalue_tol |rho_i|``
        (the stopping rule of that run; the residuals are larger, about ``sqrt(eigenvalue_tol)``).
        """
        if self.eigenvalue_tol is not None and self.error_bounds is not None:
            scale = np.maximum(np.abs(self.eigenvalues), np.finfo(float).eps ** (2 / 3))
            return self.error_bounds <= self.eigenvalue_tol * scale
        return self.residuals <= self.tol * np.max(np.abs(self.eigenvalues))


_WHICH = "'LA' (largest algebraic), 'SA' (smallest algebraic), 'BE' (both ends) or 'LM' (largest magnitude)"


def top_eigenpairs(operator: spla.LinearOperator, k: int, *, tol: float = 1e-6, which: Which = "LA",
                   method: EigenMethod = "lanczos", seed: int = 0, maxiter: int | None = None,
                   ncv: int | None = None, eigenvalue_tol: float | None = None
                   ) -> tuple[NDArray, NDArray, NDArray]:
    """``k`` extreme eigenpairs of a symmetric operator: ``(values descending, vectors (m, k), residuals)``.

    ``which``: ``"LA"`` the ``k`` largest, ``"SA"`` the ``k`` smallest, ``"BE"`` ``k - k // 2`` from the
    top and ``k // 2`` from the bottom, ``"LM"`` the ``k`` largest in magnitude. ``lanczos``: thick-restart
    Lanczos, residuals from the Krylov relation; ``arpack``: ARPACK ``eigsh`` (implicitly restarted
    Lanczos), residuals recomputed with ``k`` products; both stop when every wanted Ritz pair has
    ``||r|| <= tol |rho|``; ``eigenvalue_tol`` (``lanczos`` only) stops instead when every wanted Ritz
    value's error bound ``min(||r||, ||r||^2 / gap)`` (:func:`~sgd_dynamics.estimation.ritz_error_bounds`)
    is within ``eigenvalue_tol |rho|``: for eigenvalues alone, far fewer products than the same ``tol``.
    ``lobpcg``: scipy's LOBPCG on a block of vectors, stops when every ``||r|| <= tol max|rho|``; ``"LA"``,
    ``"SA"`` and ``"BE"`` (one block per end). Works on any operator, so dense test matrices and
    Hessian-vector products go through the same code.

    >>> A = np.diag([5.0, -7.0, 1.0, 0.5])
    >>> vals, _, res = top_eigenpairs(spla.aslinearoperator(A), 2, which="LM", ncv=4)
    >>> vals.round(8).tolist(), bool(np.all(res < 1e-8))
    ([5.0, -7.0], True)
    >>> top_eigenpairs(spla.aslinearoperator(A), 2, which="BE", ncv=4)[0].round(8).tolist()
    [5.0, -7.0]
    """
    return _eigenpairs(operator, k, tol=tol, which=which, method=method, seed=seed, maxiter=maxiter, ncv=ncv,
                       eigenvalue_tol=eigenvalue_tol)[:3]


def _eigenpairs(operator: spla.LinearOperator, k: int, *, tol: float, which: str, method: str, seed: int,
                maxiter: int | None, ncv: int | None, eigenvalue_tol: float | None
                ) -> tuple[NDArray, NDArray, NDArray, NDArray | None]:
    """:func:`top_eigenpairs` and, for ``lanczos``, the error bounds of its Ritz values (else ``None``)."""
    m = operator.shape[0]
    require(isinstance(k, (int, np.integer)) and 1 <= k < m, "k", k,
            f"an integer with 1 <= k < {m} (the number of parameters)")
    require(bool(np.isfinite(tol)) and 0 < tol < 1, "tol", tol, "0 < tol < 1")
    require(which in ("LA", "SA", "BE", "LM"), "which", which, _WHICH)
    require(eigenvalue_tol is None or method == "lanczos", "eigenvalue_tol", eigenvalue_tol,
            f"None for method={method!r} (error-bound stopping is method='lanczos' only)")
    rng = np.random.default_rng(seed)
    residuals = bounds = None
    if method == "lanczos":
        # The wanted Ritz pairs' residuals come with the Krylov relation: no products are spent on them.
        vals, vecs, residuals, bounds, _ = lanczos_with_bounds(
            operator.matvec, m, k, which=which, tol=tol, ncv=ncv, maxiter=maxiter, v0=rng.standard_normal(m),
            eigenvalue_tol=eigenvalue_tol)
    elif method == "arpack":
        arpack_which = "LA" if which == "BE" and k == 1 else which   # ARPACK refuses BE for one pair
        try:
            vals, vecs = spla.eigsh(operator, k=k, which=arpack_which, tol=tol, v0=rng.standard_normal(m),
                                    maxiter=maxiter, ncv=ncv)
        except spla.ArpackNoConvergence as err:
            raise RuntimeError(f"ARPACK did not converge to tol={tol} ({len(err.eigenvalues)} of {k} pairs): "
                               "raise maxiter or ncv, loosen tol, or use a float64 model") from err
    elif method == "lobpcg":
        require(which != "LM", "which", which, "'LA', 'SA' or 'BE' for method='lobpcg'")
        top = k if which == "LA" else 0 if which == "SA" else k - k // 2
        blocks = [_lobpcg_end(operator, n, tol, rng, maxiter, largest)
                  for n, largest in ((top, True), (k - top, False)) if n > 0]
        vals = np.concatenate([b[0] for b in blocks])
        vecs = np.concatenate([b[1] for b in blocks], axis=1)
    else:
        raise ValueError(f"method={method!r} is invalid: expected 'lanczos', 'arpack' or 'lobpcg'")
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    # A fixed sign (largest-magnitude entry positive) makes eigenvectors reproducible across runs.
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    if residuals is None:
        residuals = np.linalg.norm(operator.matmat(vecs) - vecs * vals, axis=0)
    else:
        residuals, bounds = residuals[order], bounds[order]
    return vals, vecs, residuals, bounds


def _lobpcg_end(operator: spla.LinearOperator, k: int, tol: float, rng: np.random.Generator,
                maxiter: int | None, largest: bool) -> tuple[NDArray, NDArray]:
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
        vals, vecs = spla.lobpcg(operator, x, tol=tol * scale, largest=largest,
                                 maxiter=maxiter if maxiter is not None else 500)
    return np.asarray(vals, dtype=np.float64), np.asarray(vecs, dtype=np.float64)


def hessian_eigenpairs(model: nn.Module, loss_fn: Loss, batches: BatchSource, k: int = 10,
                       tol: float = 1e-6, *, which: Which = "LA", method: EigenMethod = "lanczos",
                       seed: int = 0, maxiter: int | None = None, ncv: int | None = None,
                       block_size: int = 16, parameters: ParameterSelection = None,
                       hvp: HvpMethod = "auto", process_group: Any = None,
                       eigenvalue_tol: float | None = None) -> HessianEigenpairs:
    r"""``k`` Hessian eigenpairs of the mean loss over ``batches`` at the model's current parameters.

    The pairs solve the symmetric eigenproblem of the Hessian of the batch-size weighted mean loss,

    .. math::

        H q_i = \rho_i q_i, \qquad H = \nabla^2_\theta L(\theta), \quad
        L = \frac{1}{N} \sum_b n_b L_b, \qquad \|q_i\| = 1,

    by restarted Lanczos (ARPACK ``eigsh``, the default) or LOBPCG on exact Hessian-vector products
    (``H`` is never formed), and each pair reports its residual
    :math:`r_i = \|H q_i - \rho_i q_i\|`, recomputed with one final block of products; ARPACK
    stops when :math:`r_i \le \mathrm{tol}\, |\rho_i|`.

    ``which`` picks the end of the spectrum (``"LA"`` top, ``"SA"`` bottom, ``"BE"`` both, ``"LM"``
    magnitude); eigenvalues are descending whatever ``which``. Eigenvectors are columns in the flat order
    of the parameter group (``parameters_to_vector`` of the trainable parameters by default; see
    ``parameters``), orthonormal, with the largest-magnitude entry positive; pass ``res.eigenvectors.T``
    as the tracker's ``directions`` (through :meth:`ParameterLayout.embed` for a group smaller than all
    parameters). ``loss_fn`` may be a :func:`~sgd_dynamics.measure.objective.closure_loss`.
    ``hvp_count`` counts every product; for ``arpack`` and ``lobpcg`` it includes the final block of ``k``
    products that measures the residuals (``lanczos`` has them from the Krylov relation).
    ``process_group``: ``batches`` is this rank's shard; the eigenpairs (the same on every rank) are those
    of the mean loss over the union of the shards.
    ``eigenvalue_tol`` (``lanczos`` only): stop when every eigenvalue's error bound
    ``min(r_i, r_i^2 / gap_i)`` is within ``eigenvalue_tol |rho_i|`` rather than on the residuals (the
    eigenvalues to that accuracy, in fewer products; the eigenvectors only to about ``r_i / gap_i``);
    the result then carries the bounds as ``error_bounds``.
    """
    op = HessianOperator(model, loss_fn, batches, block_size=block_size, parameters=parameters, hvp=hvp,
                         process_group=process_group)
    vals, vecs, residuals, bounds = _eigenpairs(op.to_scipy(), k, tol=tol, which=which, method=method,
                                                seed=seed, maxiter=maxiter, ncv=ncv,
                                                eigenvalue_tol=eigenvalue_tol)
    return HessianEigenpairs(vals, vecs, residuals, op.hvp_count, method, tol, which, str(op.hvp_method),
                             eigenvalue_tol, bounds if eigenvalue_tol is not None else None)


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate with its standard error and the number of matrix-vector products.

    ``hvp`` says how Hessian-vector products were computed (``None`` for a generic operator).
    """

    estimate: float
    stderr: float
    hvp_count: int
    method: str
    hvp: str | None = None


def trace_estimate(matmat: Callable[[NDArray], NDArray], dim: int, num_matvecs: int = 99, *,
                   method: TraceMethod = "hutch++", seed: int = 0) -> TraceEstimate:
    """Trace of a symmetric operator from ``num_matvecs`` products (Rademacher probes), or exactly.

    Hutchinson: ``mean_j z_j^T A z_j``, standard error ``std / sqrt(n)``. Hutch++: a third of the budget
    sketches ``Q = orth(A S)``, a third gives ``tr(Q^T A Q)`` exactly, and the last third runs Hutchinson
    on the deflated ``(I - QQ^T) A (I - QQ^T)``, whose probe spread gives the standard error. ``"exact"``:
    ``sum_j e_j^T A e_j`` from ``dim`` products (``num_matvecs`` is not used), standard error 0.

    >>> A = np.diag(np.arange(1.0, 7.0))
    >>> round(trace_estimate(lambda x: A @ x, 6, 18, method="hutch++").estimate, 10)   # rank <= n/3: exact
    21.0
    >>> trace_estimate(lambda x: A @ x, 6, method="exact").estimate
    21.0
    """
    require(method in ("hutchinson", "hutch++", "exact"), "method", method,
            "'hutchinson', 'hutch++' or 'exact'")
    if method == "exact":
        return _exact_trace(matmat, dim)
    min_n = 3 if method == "hutch++" else 2
    require(isinstance(num_matvecs, (int, np.integer)) and num_matvecs >= min_n, "num_matvecs", num_matvecs,
            f"an integer >= {min_n} for {method}")
    rng = np.random.default_rng(seed)
    if method == "hutchinson":
        z = rng.choice([-1.0, 1.0], size=(dim, num_matvecs))
        samples = np.einsum("ij,ij->j", z, matmat(z))
        return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(num_matvecs)),
                             int(num_matvecs), method)
    n = num_matvecs // 3
    s = rng.choice([-1.0, 1.0], size=(dim, n))
    g = rng.choice([-1.0, 1.0], size=(dim, n))
    q, _ = np.linalg.qr(matmat(s))
    exact_part = float(np.trace(q.T @ matmat(q)))
    g = g - q @ (q.T @ g)
    samples = np.einsum("ij,ij->j", g, matmat(g))
    stderr = float(samples.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return TraceEstimate(exact_part + float(samples.mean()), stderr, 3 * n, method)


def _exact_trace(matmat: Callable[[NDArray], NDArray], dim: int, block: int = 256) -> TraceEstimate:
    total = 0.0
    for start in range(0, dim, block):
        cols = np.arange(start, min(start + block, dim))
        basis = np.zeros((dim, cols.size))
        basis[cols, np.arange(cols.size)] = 1.0
        total += float(np.sum(matmat(basis)[cols, np.arange(cols.size)]))
    return TraceEstimate(total, 0.0, int(dim), "exact")


def hessian_trace(model: nn.Module, loss_fn: Loss, batches: BatchSource, num_matvecs: int = 99, *,
                  method: TraceMethod = "hutch++", seed: int = 0, block_size: int = 16,
                  parameters: ParameterSelection = None, hvp: HvpMethod = "auto",
                  process_group: Any = None) -> TraceEstimate:
    """``tr H`` of the mean loss over ``batches`` by Hutch++ (default), Hutchinson (seeded) or exactly.

    ``parameters`` restricts ``H`` to a group (the trace of its diagonal block); ``loss_fn`` may be a
    :func:`~sgd_dynamics.measure.objective.closure_loss`. ``process_group``: as for
    :func:`hessian_eigenpairs`, ``batches`` is this rank's shard.
    """
    op = HessianOperator(model, loss_fn, batches, block_size=block_size, parameters=parameters, hvp=hvp,
                         process_group=process_group)
    estimate = trace_estimate(op.to_scipy().matmat, op.dim, num_matvecs, method=method, seed=seed)
    return dataclasses.replace(estimate, hvp=op.hvp_method)
