"""The gradient noise as training sees it: the covariance of minibatch gradients in train mode (issue 11 §5).

:func:`sgd_dynamics.measure.gradient_noise` measures ``Sigma`` from per-example gradients in eval mode (002
eq. 3): there a BatchNorm layer uses its running statistics and Dropout is off. A training step sees
something else: Dropout adds its own noise and BatchNorm normalises with the statistics of the batch,
coupling its examples. This module measures the noise of the step itself. At fixed parameters ``theta``,
``M`` minibatches ``B_1..B_M`` of ``S`` examples (drawn by the study's sampler) give the train-mode
minibatch gradients ``g_j = grad L_{B_j}(theta)``, and::

    Sigma_eff = S Cov(g_B)  ~  S / (M - 1) sum_j (g_j - gbar)(g_j - gbar)^T,

reported as ``S tr Cov(g_B)`` (comparable with ``tr Sigma``) and ``S q_i^T Cov(g_B) q_i`` (comparable with
``s_i``). With minibatches drawn with replacement from a network with neither Dropout nor BatchNorm,
``Cov(g_B) = Sigma / S`` exactly (``Sigma`` in the ``1/N`` convention), so both agree with
:func:`gradient_noise` in expectation. A minibatch drawn without replacement has
``Cov(g_B) = Sigma (N - S) / (S (N - 1))`` (the finite-population factor); the minibatches of one epoch are
moreover disjoint, hence weakly anti-correlated (ERRATA 002.3), which the standard error below ignores.

Standard errors: the delete-a-group jackknife (Quenouille 1956; Kott 2001, "The delete-a-group jackknife")
over ``G`` groups of consecutive minibatches, ``se^2 = (G - 1)/G sum_g (est_(-g) - mean_g est_(-g))^2``.
It needs only per-group sums of ``u_j = g_j - c`` (count, ``sum u_j``, ``sum ||u_j||^2``, and the same for
the projections ``q_i . u_j``), ``G m`` numbers, never the ``M m`` gradients. The pilot centre ``c`` (the
mean gradient of the first chunk) removes the cancellation of ``mean ||g||^2 - ||gbar||^2``; sums are in
float64.

Vectorised over minibatches: chunks of ``chunk_size`` minibatches go through one
``torch.func.vmap(torch.func.grad(...))`` of ``functional_call`` with the modules in train mode (each
minibatch gets its own BatchNorm batch statistics). Buffers enter as per-minibatch copies, so the model's
parameters and buffers (running statistics, batch counts) are never modified; Dropout masks are
independent per minibatch (``randomness="different"``) and drawn from ``torch.manual_seed(seed)`` inside
``torch.random.fork_rng``, which restores the global RNG afterwards. Every module's train/eval flag is
restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from sgd_dynamics._validation import require as _require
from sgd_dynamics.measure.flat_params import ParameterLayout, detached_parameters
from sgd_dynamics.measure.gradient_noise import _directions_matrix
from sgd_dynamics.measure.replicas import LossFn, training_mode
from sgd_dynamics.measure.seeding import seeded_torch_rng

__all__ = ["MinibatchNoise", "minibatch_noise"]


@dataclass(frozen=True)
class MinibatchNoise:
    """``S Cov(g_B)`` of train-mode minibatch gradients at fixed parameters, with jackknife errors."""

    trace: float                              # S tr Cov(g_B)
    trace_se: float
    mode_noise: NDArray[np.float64]           # S q_i^T Cov(g_B) q_i, one per direction
    mode_noise_se: NDArray[np.float64]
    mean_gradient: NDArray[np.float64] = field(repr=False)   # mean of the M minibatch gradients
    batch_size: int
    num_minibatches: int
    groups: int


def _indices(minibatches: Tensor | Sequence[Tensor], num_examples: int) -> Tensor:
    idx = minibatches if isinstance(minibatches, Tensor) else torch.stack(list(minibatches))
    _require(idx.ndim == 2 and idx.shape[0] >= 4 and not idx.dtype.is_floating_point, "minibatches",
             f"tensor of shape {tuple(idx.shape)} and dtype {idx.dtype}",
             "integer indices of shape (M, S) with M >= 4 minibatches")
    _require(bool(((idx >= 0) & (idx < num_examples)).all()), "minibatches", "(indices out of range)",
             f"indices in [0, {num_examples})")
    return idx


@dataclass
class _GroupSums:
    """Per-group sums of ``u_j = g_j - c``, of ``||u_j||^2`` and of the projections ``p_j = Q^T u_j``."""

    count: Tensor        # (G,)
    u: Tensor            # (G, m)
    u_sq: Tensor         # (G,)
    p: Tensor            # (G, k)
    p_sq: Tensor         # (G, k)

    def add(self, group: Tensor, u: Tensor, q: Tensor) -> None:
        p = u @ q
        self.count.index_add_(0, group, torch.ones_like(group, dtype=torch.float64))
        self.u.index_add_(0, group, u)
        self.u_sq.index_add_(0, group, u.square().sum(1))
        self.p.index_add_(0, group, p)
        self.p_sq.index_add_(0, group, p.square())


def _covariance_and_jackknife(s: _GroupSums) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``tr Cov``, ``diag(Q^T Cov Q)`` (``1/(n-1)``) and their delete-a-group jackknife s.e."""
    n, u, u_sq, p, p_sq = s.count.sum(), s.u.sum(0), s.u_sq.sum(), s.p.sum(0), s.p_sq.sum(0)
    trace = (u_sq - u @ u / n) / (n - 1)
    modes = (p_sq - p.square() / n) / (n - 1)
    n_out = (n - s.count)[:, None]                                   # (G, 1)
    u_out = u - s.u                                                  # (G, m): sums without group g
    trace_out = (u_sq - s.u_sq - u_out.square().sum(1) / n_out[:, 0]) / (n_out[:, 0] - 1)
    modes_out = (p_sq - s.p_sq - (p - s.p).square() / n_out) / (n_out - 1)
    g = s.count.shape[0]

    def jackknife(values: Tensor) -> Tensor:
        return torch.sqrt((g - 1) / g * (values - values.mean(0)).square().sum(0))

    return trace, modes, jackknife(trace_out), jackknife(modes_out)


def minibatch_noise(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor,
                    minibatches: Tensor | Sequence[Tensor], directions: ArrayLike | Tensor | None = None, *,
                    chunk_size: int = 32, groups: int = 16, seed: int = 0) -> MinibatchNoise:
    """``S tr Cov(g_B)`` and ``S q_i^T Cov(g_B) q_i`` of train-mode minibatch gradients (module docstring).

    ``minibatches``: ``(M, S)`` integer indices into ``x, y`` (or a sequence of ``(S,)`` index tensors),
    e.g. ``torch.stack([next(minibatch_indices(N, S, sampler, seed)) ...])`` with the study's sampler.
    ``directions``: ``(m, k)`` columns ``q_i`` in the flat parameter order. ``groups``: jackknife groups,
    at most ``M // 2``. ``seed``: the Dropout masks.
    """
    _require(isinstance(chunk_size, int) and chunk_size >= 1, "chunk_size", chunk_size, "an integer >= 1")
    _require(isinstance(groups, int) and groups >= 2, "groups", groups, "an integer >= 2")
    layout = ParameterLayout.from_module(model)
    idx = _indices(minibatches, len(x)).to(x.device)
    num, size = idx.shape
    g = min(groups, num // 2)
    q = _directions_matrix(directions, layout, torch.float64)
    group_of = torch.as_tensor(np.repeat(np.arange(g), [len(a) for a in np.array_split(np.arange(num), g)]),
                               device=layout.device)
    params = detached_parameters(model)
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def minibatch_loss(p: dict[str, Tensor], b: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return loss_fn(torch.func.functional_call(model, (p, b), (xb,)), yb)

    per_minibatch = torch.func.vmap(torch.func.grad(minibatch_loss), in_dims=(None, 0, 0, 0),
                                    randomness="different")
    dim, k, f64 = layout.dim, q.shape[1], dict(dtype=torch.float64, device=layout.device)
    sums = _GroupSums(torch.zeros(g, **f64), torch.zeros(g, dim, **f64), torch.zeros(g, **f64),
                      torch.zeros(g, k, **f64), torch.zeros(g, k, **f64))
    centre = None
    with seeded_torch_rng(seed, layout.device), training_mode(model):
        for start in range(0, num, chunk_size):
            chunk = idx[start:start + chunk_size]
            c = chunk.shape[0]
            copies = {name: b.unsqueeze(0).repeat(c, *([1] * b.ndim)) for name, b in buffers.items()}
            grads = layout.flatten(per_minibatch(params, copies, x[chunk], y[chunk]), batch_dims=1).double()
            if centre is None:
                centre = grads.mean(0)
            sums.add(group_of[start:start + c], grads - centre, q)
    trace, modes, trace_se, modes_se = _covariance_and_jackknife(sums)
    mean = centre + sums.u.sum(0) / num
    return MinibatchNoise(size * float(trace), size * float(trace_se), size * modes.cpu().numpy(),
                          size * modes_se.cpu().numpy(), mean.cpu().numpy(), int(size), int(num), g)
