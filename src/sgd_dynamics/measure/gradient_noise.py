"""Gradient-noise statistics from per-example gradients: ``tr Sigma``, ``q^T Sigma q``, ``Sigma = sigma^2 H``.

The per-example gradient covariance at the current parameters (002 eq. 3, population form)::

    Sigma = (1/N) sum_n (g_n - g)(g_n - g)^T,   g = (1/N) sum_n g_n,

uses ``1/N``, not ``1/(N-1)``: a minibatch of ``S`` examples drawn with replacement from the ``N`` has
gradient covariance exactly ``Sigma / S``, the noise of 002 eqs. 5-8. Its trace feeds the stationary
speed ``E||delta||^2 = eta^2 tr(Sigma) / (S (1 - beta^2))`` with no fitted constant (002 eq. 18, valid for
any constant ``Sigma``: ERRATA 002.3). ``s_i = q_i^T Sigma q_i`` along Hessian eigenvectors and the
least-squares ``sigma^2`` of ``Sigma = sigma^2 H`` (002 section 4, ``s_i = sigma^2 rho_i``) test the
paper's noise model.

For ``nn.Sequential`` stacks of ``nn.Linear`` and elementwise layers, :func:`gradient_noise` never forms
per-example gradients: each example's gradient is a sum of per-layer outer products ``delta_n a_n^T``, and
``||g_n||^2``, ``q^T g_n`` and ``sum_n g_n`` follow from the activations and output gradients of one
batched forward and backward (:mod:`~sgd_dynamics.measure.linear_gradients`, exact). Otherwise,
per-example gradients come from ``torch.func.vmap(torch.func.grad(...))`` over chunks of
``chunk_size`` examples, so memory is bounded by one ``(chunk_size, m)`` block; chunk statistics are
merged with the pairwise update of Chan, Golub & LeVeque (1979), which avoids the cancellation of
``mean ||g_n||^2 - ||g||^2``. Where ``torch.func`` cannot transform the loss (a closure that calls
``torch.autograd.grad``, a module vmap cannot batch) they fall back, with a warning, to one
``torch.autograd.grad`` call per example (exact, slower). They are taken in eval mode: a BatchNorm layer
uses its running statistics (a per-example gradient through batch statistics is not defined), dropout is
off. The loss of example ``n`` is the loss of a batch holding that example alone; for a closure loss
(:func:`~sgd_dynamics.measure.objective.closure_loss`) that needs batches whose tensors share a leading
example dimension (a clear ``ValueError`` otherwise). Gradients are taken over a parameter group
(``parameters=``, default the trainable parameters) in its flat order, as the Hessian's.

Top eigenpairs of ``Sigma``: ``Sigma = G_c^T G_c / N`` for the centred ``(N, m)`` per-example gradient
matrix ``G_c``, so its nonzero eigenvalues are those of the Gram matrix ``K = G_c G_c^T / N`` and
``q = G_c^T u / sqrt(N lambda)``. ``method="gram"`` keeps ``G_c`` (``N m`` numbers) and solves ``K``
exactly; ``method="randomized"`` runs a randomized subspace iteration (Halko, Martinsson & Tropp 2011,
alg. 4.4) whose every product ``Sigma X`` is one chunked sweep over the data, with memory ``O(m (k + p))``.

Data shards (:mod:`~sgd_dynamics.measure.data_shards`): with ``process_group=`` each rank passes its own
shard and :func:`gradient_noise` returns, on every rank, the statistics of the union of the shards with
the same ``1/N`` convention, ``N = sum_r N_r``. The shards are merged exactly as two chunks are: from the
all-reduced counts and first moments ``N_r g_r`` comes the global ``g``, and the centred second moments
``M2 = sum_r [M2_r + N_r ||g_r - g||^2]`` (Chan et al.'s merge over ranks) are all-reduced in turn, so
``tr Sigma = M2 / N`` and ``s_i`` equal the single-process values over the union up to rounding, never a
mean of per-shard ``tr Sigma_r`` (which would miss the spread of the shard means).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from sgd_dynamics._validation import require
from sgd_dynamics.measure.data_shards import all_reduce_sum, check_process_group
from sgd_dynamics.measure.flat_params import (
    BatchSource,
    ParameterLayout,
    ParameterSelection,
    evaluation_mode,
    reiterable,
    selected_parameters,
)
from sgd_dynamics.measure.linear_gradients import (
    ChunkMoments,
    chunk_moments,
    layer_directions,
    linear_layers,
)
from sgd_dynamics.measure.objective import Loss, Objective


def per_example_gradients(model: nn.Module, loss_fn: Loss, batches: BatchSource, *,
                          chunk_size: int = 64, parameters: ParameterSelection = None) -> Iterator[Tensor]:
    """Flat per-example gradients in blocks of shape ``(c, m)``, ``c <= chunk_size`` (eval mode).

    The loss of example ``n`` is that of a batch of one: ``loss_fn(model(x_n[None]), y_n[None])``, or
    ``fn(model, batch[n:n+1])`` for a closure loss. Columns follow the flat order of the parameter group.
    """
    blocks = _GradientBlocks(model, loss_fn, parameters)
    with evaluation_mode(model):
        for chunk, rebuild in _example_chunks(blocks.objective, blocks.layout, batches, chunk_size):
            yield blocks(chunk, rebuild)


def _example_chunks(objective: Objective, layout: ParameterLayout, batches: BatchSource, chunk_size: int
                    ) -> Iterator[tuple[list[Tensor], Callable[[list[Tensor]], Any]]]:
    """The examples of every batch in chunks of at most ``chunk_size``, with the batch's rebuild function."""
    require(isinstance(chunk_size, int) and chunk_size >= 1, "chunk_size", chunk_size, "an integer >= 1")
    for raw in reiterable(batches)():
        batch, _ = objective.prepare(raw, layout.device)
        parts, rebuild, n = objective.examples(batch)
        for start in range(0, n, chunk_size):
            yield [t[start:start + chunk_size] for t in parts], rebuild


class _GradientBlocks:
    """Per-example gradient blocks of chunks: ``vmap(grad)``, or (once it failed, with a warning) a loop."""

    def __init__(self, model: nn.Module, loss_fn: Loss, parameters: ParameterSelection) -> None:
        self.model, self.objective = model, Objective(model, loss_fn)
        group = selected_parameters(model, parameters)
        self.layout = ParameterLayout.from_named(group)
        self.params = {n: p.detach() for n, p in group}
        self.constants = {n: p.detach() for n, p in model.named_parameters() if n not in self.params}
        self.vectorized = True

    def __call__(self, chunk: list[Tensor], rebuild: Callable[[list[Tensor]], Any]) -> Tensor:
        args = (self.objective, self.params, self.constants, self.layout, chunk, rebuild)
        if self.vectorized:
            try:
                return _vmapped_gradients(*args)
            except (RuntimeError, NotImplementedError) as error:   # what torch.func raises
                self.vectorized = False
                first = (str(error).splitlines() or [""])[0][:160]
                warnings.warn(f"torch.func.vmap(grad) failed on {type(self.model).__name__} "
                              f"({type(error).__name__}: {first}); computing per-example "
                              "gradients one example at a time with torch.autograd.grad", stacklevel=3)
        return _looped_gradients(*args)


def _chunk_moments(model: nn.Module, loss_fn: Loss, batches: BatchSource, q: Tensor, chunk_size: int,
                   parameters: ParameterSelection) -> Iterator[ChunkMoments]:
    """Every chunk's gradient moments: by the linear-layer identity where it applies, else from blocks.

    The identity holds ``O(widths (k + 2))`` numbers per example instead of ``m``, so it takes chunks of
    as many examples as fit in one ``(chunk_size, m)`` block; a chunk it cannot do goes to ``vmap(grad)``
    in pieces of ``chunk_size``.
    """
    blocks = _GradientBlocks(model, loss_fn, parameters)
    layers = None if blocks.objective.is_closure else linear_layers(model, loss_fn, blocks.layout)
    directions = () if layers is None else layer_directions(layers, q, blocks.layout.dtype)
    per_example = 1 if layers is None else layers.numbers_per_example(q.shape[1])
    span = chunk_size * max(1, blocks.layout.dim // per_example)
    with evaluation_mode(model):
        for chunk, rebuild in _example_chunks(blocks.objective, blocks.layout, batches, span):
            moments = None
            if layers is not None:
                inputs, targets = rebuild(chunk)
                if isinstance(inputs, Tensor):
                    moments = chunk_moments(layers, blocks.params, blocks.constants, blocks.layout, inputs,
                                            targets, directions, q.shape[1])
                layers = layers if moments is not None else None    # it failed: blocks from here on
            if moments is not None:
                yield moments
                continue
            for start in range(0, chunk[0].shape[0], chunk_size):
                piece = [t[start:start + chunk_size] for t in chunk]
                yield _block_moments(blocks(piece, rebuild), q)


def _block_moments(block: Tensor, q: Tensor) -> ChunkMoments:
    block_mean = block.mean(0)
    return ChunkMoments(block.shape[0], block_mean.double(), float((block - block_mean).square().sum()),
                        block @ q)


def _vmapped_gradients(objective: Objective, params: dict[str, Tensor], constants: dict[str, Tensor],
                       layout: ParameterLayout, chunk: list[Tensor],
                       rebuild: Callable[[list[Tensor]], Any]) -> Tensor:
    def example_loss(p: dict[str, Tensor], example: list[Tensor]) -> Tensor:
        return objective.loss({**constants, **p}, rebuild([t.unsqueeze(0) for t in example]))

    grads = torch.func.vmap(torch.func.grad(example_loss), in_dims=(None, 0))(params, chunk)
    return layout.flatten(grads, batch_dims=1)


def _looped_gradients(objective: Objective, params: dict[str, Tensor], constants: dict[str, Tensor],
                      layout: ParameterLayout, chunk: list[Tensor],
                      rebuild: Callable[[list[Tensor]], Any]) -> Tensor:
    leaves = [params[name].detach().requires_grad_(True) for name in layout.names]
    named = {**constants, **dict(zip(layout.names, leaves, strict=True))}
    rows = torch.zeros(chunk[0].shape[0], layout.dim, dtype=layout.dtype, device=layout.device)
    with torch.enable_grad():
        for i in range(rows.shape[0]):
            loss = objective.loss(named, rebuild([t[i:i + 1] for t in chunk]))
            if not loss.requires_grad:        # constant in the group: zero gradient
                continue
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            rows[i] = layout.flatten({name: torch.zeros_like(leaf) if g is None else g
                                      for name, leaf, g in zip(layout.names, leaves, grads, strict=True)})
    return rows


@dataclass(frozen=True)
class GradientNoise:
    """Per-example gradient statistics at fixed parameters (population covariance, ``1/N``)."""

    trace: float                              # tr Sigma
    mode_noise: NDArray[np.float64]           # s_i = q_i^T Sigma q_i, one per direction
    mean_gradient: NDArray[np.float64] = field(repr=False)   # g, flat order
    num_examples: int

    @property
    def mean_gradient_sq_norm(self) -> float:
        """``||g||^2``, the squared norm of the full-batch gradient."""
        return float(self.mean_gradient @ self.mean_gradient)


def _directions_matrix(directions: ArrayLike | Tensor | None, layout: ParameterLayout,
                       dtype: torch.dtype | None = None) -> Tensor:
    """``directions`` as an ``(m, k)`` matrix of columns (``dtype``: the layout's unless given)."""
    m, dtype = layout.dim, dtype or layout.dtype
    if directions is None:
        return torch.zeros(m, 0, dtype=dtype, device=layout.device)
    d = torch.as_tensor(directions)
    if d.ndim != 2 or d.shape[0] != m:
        hint = " (transpose a (k, m) matrix of rows)" if d.ndim == 2 and d.shape[1] == m else ""
        raise ValueError(f"directions has shape {tuple(d.shape)}: expected ({m}, k), one direction per "
                         f"column in the flat parameter order{hint}")
    return d.to(dtype=dtype, device=layout.device)


def gradient_noise(model: nn.Module, loss_fn: Loss, batches: BatchSource,
                   directions: ArrayLike | Tensor | None = None, *, chunk_size: int = 64,
                   parameters: ParameterSelection = None, process_group: Any = None) -> GradientNoise:
    """``tr Sigma``, ``s_i = q_i^T Sigma q_i`` for the columns ``q_i`` of ``directions`` (m, k), and ``g``.

    One sweep over the examples of ``batches``; memory one ``(chunk_size, m)`` block of gradients.
    ``Sigma`` is over the parameter group ``parameters`` (default: the trainable parameters), the space
    of ``directions``. ``process_group``: ``batches`` is this rank's shard, and the result (the same on
    every rank) is that of the union of the shards (see the module docstring); a rank's shard may be empty.
    """
    check_process_group(process_group)
    layout = ParameterLayout.from_group(model, parameters)
    q = _directions_matrix(directions, layout)
    count, mean = 0, torch.zeros(layout.dim, dtype=torch.float64, device=layout.device)
    m2, proj_mean = 0.0, torch.zeros(q.shape[1], dtype=torch.float64, device=layout.device)
    proj_m2 = torch.zeros_like(proj_mean)
    for chunk in _chunk_moments(model, loss_fn, batches, q, chunk_size, parameters):
        c, proj = chunk.count, chunk.projections
        proj_block_mean = proj.mean(0)
        proj_block_m2 = (proj - proj_block_mean).square().sum(0).double()
        # Chan et al.: merge (count, mean, M2) of two groups without forming E||g||^2 - ||E g||^2.
        total = count + c
        delta = chunk.mean - mean
        m2 += chunk.centred_m2 + float(delta @ delta) * count * c / total
        mean += delta * (c / total)
        proj_delta = proj_block_mean.double() - proj_mean
        proj_m2 += proj_block_m2 + proj_delta.square() * (count * c / total)
        proj_mean += proj_delta * (c / total)
        count = total
    if process_group is not None:
        count, mean, m2, proj_mean, proj_m2 = _merge_shards(count, mean, m2, proj_mean, proj_m2,
                                                            process_group)
    if count == 0:
        raise ValueError("batches yielded no examples: expected at least one (inputs, targets) batch")
    return GradientNoise(m2 / count, (proj_m2 / count).cpu().numpy(), mean.cpu().numpy(), count)


def _merge_shards(count: int, mean: Tensor, m2: float, proj_mean: Tensor, proj_m2: Tensor,
                  process_group: Any) -> tuple[int, Tensor, float, Tensor, Tensor]:
    """Chan et al.'s merge of every rank's ``(N_r, g_r, M2_r)``, by two all-reduces (float64)."""
    m, k = mean.shape[0], proj_mean.shape[0]
    first = all_reduce_sum(torch.cat([mean.new_tensor([float(count)]), mean * count, proj_mean * count]),
                           process_group)
    total = int(round(float(first[0])))
    if total == 0:
        return 0, mean, m2, proj_mean, proj_m2
    global_mean, global_proj = first[1:1 + m] / total, first[1 + m:] / total
    # A shard's centred moment about the global mean: M2_r + N_r ||g_r - g||^2 (zero for an empty shard).
    spread, proj_spread = mean - global_mean, proj_mean - global_proj
    second = torch.cat([mean.new_tensor([m2 + count * float(spread @ spread)]),
                        proj_m2 + count * proj_spread.square()])
    second = all_reduce_sum(second, process_group)
    return total, global_mean, float(second[0]), global_proj, second[1:1 + k]


@dataclass(frozen=True)
class NoiseCurvatureFit:
    """Least-squares fit ``s_i = sigma^2 rho_i`` through the origin (002: ``Sigma = sigma^2 H``).

    ``r_squared = 1 - sum (s - sigma^2 rho)^2 / sum (s - mean s)^2`` (centred, so a poor fit through the
    origin can make it negative). The arrays are kept for a scatter plot of ``s_i`` against ``rho_i``.
    """

    sigma2: float
    r_squared: float
    eigenvalues: NDArray[np.float64]
    mode_noise: NDArray[np.float64]

    def predicted(self) -> NDArray[np.float64]:
        """``sigma^2 rho_i``, the fitted line at the measured curvatures."""
        return self.sigma2 * self.eigenvalues


def fit_noise_to_curvature(eigenvalues: ArrayLike, mode_noise: ArrayLike) -> NoiseCurvatureFit:
    """Fit ``sigma^2`` in ``q_i^T Sigma q_i = sigma^2 rho_i`` by least squares through the origin.

    >>> fit = fit_noise_to_curvature([1.0, 2.0, 4.0], [0.5, 1.0, 2.0])
    >>> fit.sigma2, fit.r_squared
    (0.5, 1.0)
    """
    rho = np.asarray(eigenvalues, dtype=np.float64)
    s = np.asarray(mode_noise, dtype=np.float64)
    if rho.ndim != 1 or rho.shape != s.shape or rho.size < 2:
        raise ValueError(f"eigenvalues and mode_noise have shapes {rho.shape} and {s.shape}: expected two "
                         "1-D arrays of the same length >= 2")
    if not (np.all(np.isfinite(rho)) and np.all(np.isfinite(s))):
        raise ValueError("eigenvalues and mode_noise must be finite")
    if not np.any(rho != 0):
        raise ValueError("eigenvalues are all zero: expected at least one nonzero curvature to fit sigma^2")
    sigma2 = float(rho @ s / (rho @ rho))
    spread = float(np.sum((s - s.mean()) ** 2))
    residual = float(np.sum((s - sigma2 * rho) ** 2))
    r_squared = 1.0 - residual / spread if spread > 0 else (1.0 if residual == 0 else -np.inf)
    return NoiseCurvatureFit(sigma2, r_squared, rho, s)


@dataclass(frozen=True)
class NoiseEigenpairs:
    """Top eigenpairs of ``Sigma``, descending, eigenvectors as columns in the flat order."""

    eigenvalues: NDArray[np.float64]
    eigenvectors: NDArray[np.float64] = field(repr=False)
    method: str
    num_examples: int


def noise_eigenpairs(model: nn.Module, loss_fn: Loss, batches: BatchSource, k: int = 10, *,
                     method: Literal["auto", "gram", "randomized"] = "auto", chunk_size: int = 64,
                     max_gram_numbers: int = 2**26, oversampling: int = 10, power_iterations: int = 3,
                     seed: int = 0, parameters: ParameterSelection = None) -> NoiseEigenpairs:
    """Top-``k`` eigenpairs of the per-example gradient covariance ``Sigma``.

    ``"gram"``: exact, from the ``N x N`` Gram matrix of centred per-example gradients (keeps ``N m``
    numbers). ``"randomized"``: ``power_iterations + 2`` sweeps over the data with a block of
    ``k + oversampling`` vectors, then Rayleigh-Ritz; accurate when the spectrum decays.
    ``"auto"``: ``"gram"`` when ``N m <= max_gram_numbers``, else ``"randomized"``. Eigenvectors are in
    the flat order of the parameter group ``parameters`` (default: the trainable parameters).
    """
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k={k!r} is invalid: expected an integer >= 1")
    if method not in ("auto", "gram", "randomized"):
        raise ValueError(f"method={method!r} is invalid: expected 'auto', 'gram' or 'randomized'")
    layout = ParameterLayout.from_group(model, parameters)
    if method == "auto":
        objective = Objective(model, loss_fn)
        n = sum(objective.count(b) for b in reiterable(batches)())
        method = "gram" if n * layout.dim <= max_gram_numbers else "randomized"
    if method == "gram":
        g = torch.cat(list(per_example_gradients(model, loss_fn, batches, chunk_size=chunk_size,
                                                 parameters=parameters))).double()
        n = g.shape[0]
        if k > n - 1:
            raise ValueError(f"k={k} is invalid: Sigma from N={n} examples has rank <= N - 1 = {n - 1}")
        g -= g.mean(0)
        lam, u = torch.linalg.eigh(g @ g.T / n)
        lam, u = lam.flip(0)[:k], u.flip(1)[:, :k]
        vecs = g.T @ u / torch.sqrt(n * lam.clamp_min(torch.finfo(lam.dtype).tiny))
        return NoiseEigenpairs(lam.cpu().numpy(), vecs.cpu().numpy(), "gram", n)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((layout.dim, k + oversampling)), dtype=torch.float64,
                        device=layout.device)
    for _ in range(power_iterations + 1):
        x, _ = torch.linalg.qr(_covariance_product(model, loss_fn, batches, x, chunk_size, parameters)[0])
    y, n = _covariance_product(model, loss_fn, batches, x, chunk_size, parameters)
    lam, s = torch.linalg.eigh(x.T @ y)
    lam, s = lam.flip(0)[:k], s.flip(1)[:, :k]
    return NoiseEigenpairs(lam.cpu().numpy(), (x @ s).cpu().numpy(), "randomized", n)


def _covariance_product(model: nn.Module, loss_fn: Loss, batches: BatchSource, x: Tensor,
                        chunk_size: int, parameters: ParameterSelection) -> tuple[Tensor, int]:
    """``Sigma X = (1/N) G^T (G X) - g (g^T X)`` in one sweep (float64 accumulation)."""
    acc = torch.zeros_like(x)
    grad_sum = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    count = 0
    for block in per_example_gradients(model, loss_fn, batches, chunk_size=chunk_size, parameters=parameters):
        block = block.double()
        acc += block.T @ (block @ x)
        grad_sum += block.sum(0)
        count += block.shape[0]
    mean = grad_sum / count
    return acc / count - torch.outer(mean, mean @ x), count
