"""Per-example gradient moments of ``nn.Linear`` layers from activations and output gradients.

For a linear layer ``z = W a + b`` applied to each example alone, the gradient of example ``n``'s loss is
the outer product ``dL_n/dW = delta_n a_n^T``, ``dL_n/db = delta_n`` with ``delta_n = dL_n/dz_n``, so with
the augmented input ``a~_n = (a_n, 1)`` (Goodfellow 2015; BackPACK's ``BatchL2Grad``, Dangel et al. 2020):

    ||g_n||^2 = sum_layers ||a~_n||^2 ||delta_n||^2,
    q^T g_n   = sum_layers delta_n^T Q_layer a~_n          (Q_layer: q's block, reshaped out x in~),
    sum_n g_n = sum_layers A~^T Delta                       (one matrix product per layer).

The moments :func:`sgd_dynamics.measure.gradient_noise.gradient_noise` merges (chunk mean, centred second
moment ``sum_n ||g_n - mean||^2 = sum_n ||g_n||^2 - c ||mean||^2``, projections) therefore come from one
batched forward and one backward per chunk, never from a ``(c, m)`` block of per-example gradients. The
sums are taken in float64, so the cancellation in the centred moment costs ``eps_64 ||g_n||^2 /
||g_n - mean||^2``, far below the float32 rounding of the activations themselves.

``delta_n`` is the gradient of the loss of a batch holding example ``n`` alone (the definition of
:mod:`~sgd_dynamics.measure.gradient_noise`): the output gradients ``dL_n/dout_n`` come from
``vmap(grad)`` of ``loss_fn(out_n[None], y_n[None])`` (no assumption on the loss's reduction), and one
backward of the batched outputs with those as ``grad_outputs`` carries them to every layer. That is exact
only when the network treats examples independently, so :func:`linear_layers` accepts only
``nn.Sequential`` stacks of ``nn.Linear`` (each used once, 2-D inputs) and elementwise modules; anything
else (convolutions, normalisation layers, custom ``forward``) returns ``None`` and the caller falls back to
``vmap(grad)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sgd_dynamics.measure.flat_params import ParameterLayout, model_output

# Modules that act on each example alone and have no parameters (in eval mode: dropout is the identity).
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus,
                nn.Identity, nn.Dropout, nn.Hardtanh, nn.Mish, nn.CELU, nn.SELU)


@dataclass(frozen=True)
class LinearSlot:
    """One ``nn.Linear`` of the group: its flat slices (``None`` when the tensor is outside the group)."""

    module: nn.Linear
    weight: slice | None
    bias: slice | None


@dataclass(frozen=True)
class LinearLayers:
    """A network whose group gradient is a sum of per-layer outer products (see :func:`linear_layers`)."""

    model: nn.Module
    slots: tuple[LinearSlot, ...]
    loss_fn: Callable[[Tensor, Tensor], Tensor]

    def numbers_per_example(self, k: int) -> int:
        """Numbers held per example of a chunk: inputs, output gradients and ``k`` projections per layer."""
        return sum(s.module.in_features + 1 + s.module.out_features * (k + 2) for s in self.slots)


@dataclass(frozen=True)
class ChunkMoments:
    """Moments of the per-example gradients of a chunk of ``count`` examples (float64)."""

    count: int
    mean: Tensor                 # (m,) chunk mean of g_n, flat order
    centred_m2: float            # sum_n ||g_n - mean||^2
    projections: Tensor          # (count, k): q_i^T g_n


def linear_layers(model: nn.Module, loss_fn: object, layout: ParameterLayout) -> LinearLayers | None:
    """The identity's plan for ``model`` in eval mode, or ``None`` where it does not apply (``vmap(grad)``).

    ``layout``: the parameter group; every tensor of it must be the weight or bias of an ``nn.Linear``.
    """
    if not callable(loss_fn) or not _independent_per_example(model):
        return None
    offsets = layout.offsets()
    slots, seen = [], set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        if not isinstance(module, nn.Linear):
            continue
        names = {kind: f"{prefix}.{kind}" if prefix else kind for kind in ("weight", "bias")}
        tensors = [module.weight, module.bias]
        if any(id(p) in seen for p in tensors if p is not None):
            return None                   # a tied weight: the gradient is a sum of two outer products
        seen.update(id(p) for p in tensors if p is not None)
        w, b = offsets.get(names["weight"]), offsets.get(names["bias"]) if module.bias is not None else None
        if w is not None or b is not None:
            slots.append(LinearSlot(module, w, b))
    covered = sum(1 for s in slots for part in (s.weight, s.bias) if part is not None)
    if not slots or covered != len(layout.names):
        return None
    return LinearLayers(model, tuple(slots), loss_fn)


def _independent_per_example(model: nn.Module) -> bool:
    """Only ``nn.Sequential`` containers of linear layers and elementwise modules (no example mixing)."""
    for module in model.modules():
        kind = type(module)
        if isinstance(module, nn.Sequential):
            ok = kind.forward is nn.Sequential.forward
        elif isinstance(module, nn.Linear):
            ok = kind.forward is nn.Linear.forward
        elif isinstance(module, nn.Flatten):
            ok = kind.forward is nn.Flatten.forward and module.start_dim >= 1   # keeps the example axis
        else:
            ok = kind in _ELEMENTWISE      # exactly: a subclass may override forward
        if not ok:
            return False
    return True


def layer_directions(layers: LinearLayers, q: Tensor, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """Per slot, the group rows of the directions ``q`` (m, k) as an ``(in~, k out)`` matrix ``Q_layer``."""
    out = []
    for slot in layers.slots:
        n_out, n_in = slot.module.out_features, slot.module.in_features
        blocks = []
        if slot.weight is not None:     # weight rows are W[o, i] at o * in + i
            blocks.append(q[slot.weight].reshape(n_out, n_in, -1).permute(1, 2, 0))
        if slot.bias is not None:
            blocks.append(q[slot.bias].T[None])
        rows = torch.cat(blocks)                               # (in~, k, out)
        out.append(rows.reshape(rows.shape[0], -1).to(dtype).contiguous())
    return tuple(out)


def chunk_moments(layers: LinearLayers, params: dict[str, Tensor], constants: dict[str, Tensor],
                  layout: ParameterLayout, inputs: Tensor, targets: Tensor, directions: tuple[Tensor, ...],
                  k: int) -> ChunkMoments | None:
    """The chunk's :class:`ChunkMoments` by the outer-product identity; ``None`` if the chunk defeats it.

    ``directions``: :func:`layer_directions` of the ``k`` directions. The projections' products are taken
    in the model's dtype (as a block of gradients times ``q`` would be), the other sums in float64.
    """
    captured = _forward_backward(layers, params, constants, inputs, targets)
    if captured is None:
        return None
    c = int(inputs.shape[0])
    mean = torch.zeros(layout.dim, dtype=torch.float64, device=layout.device)
    sq_norms = torch.zeros(c, dtype=torch.float64, device=layout.device)
    proj = torch.zeros(c, k, dtype=torch.float64, device=layout.device)
    for slot, (a, delta), q_layer in zip(layers.slots, captured, directions, strict=True):
        a_aug = _augmented_input(slot, a)
        a64, delta64 = a_aug.double(), delta.double()
        layer_mean = a64.T @ delta64 / c                       # (in~, out)
        sq_norms += a64.square().sum(1) * delta64.square().sum(1)
        if slot.weight is not None:
            mean[slot.weight] = layer_mean[:slot.module.in_features].T.reshape(-1)
        if slot.bias is not None:
            mean[slot.bias] = layer_mean[-1]
        if k:
            t = (a_aug @ q_layer).reshape(c, k, delta.shape[1])
            proj += (t @ delta[:, :, None])[..., 0].double()
    centred = float(sq_norms.sum()) - c * float(mean @ mean)
    return ChunkMoments(c, mean, max(centred, 0.0), proj)


def _augmented_input(slot: LinearSlot, a: Tensor) -> Tensor:
    """``a~ = (a, 1)`` restricted to the tensors of the group (weight: ``a``; bias: the 1)."""
    parts = ([a] if slot.weight is not None else []) + ([a.new_ones(a.shape[0], 1)] if slot.bias is not None
                                                          else [])
    return torch.cat(parts, dim=1)


def _forward_backward(layers: LinearLayers, params: dict[str, Tensor], constants: dict[str, Tensor],
                      inputs: Tensor, targets: Tensor) -> list[tuple[Tensor, Tensor]] | None:
    """Per slot, the inputs ``a`` (c, in) and output gradients ``delta`` (c, out) of the chunk's examples."""
    calls: dict[int, list[tuple[Tensor, Tensor]]] = {id(s.module): [] for s in layers.slots}

    def capture(module: nn.Module, args: tuple, output: Tensor) -> None:
        calls[id(module)].append((args[0], output))

    handles = [s.module.register_forward_hook(capture) for s in layers.slots]
    try:
        with torch.enable_grad():
            leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
            out = model_output(layers.model, {**constants, **leaves}, inputs)
    finally:
        for h in handles:
            h.remove()
    seen = [calls[id(s.module)] for s in layers.slots]
    if any(len(c) != 1 or c[0][0].ndim != 2 for c in seen) or out.ndim < 1:
        return None                       # a layer called twice, or on (batch, seq, in) inputs
    out_grads = _output_gradients(layers.loss_fn, out.detach(), targets)
    if out_grads is None:
        return None
    deltas = torch.autograd.grad(out, [c[0][1] for c in seen], grad_outputs=out_grads, allow_unused=True)
    return [(c[0][0].detach(), torch.zeros_like(c[0][1]) if d is None else d)
            for c, d in zip(seen, deltas, strict=True)]


def _output_gradients(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, targets: Tensor
                      ) -> Tensor | None:
    """``dL_n / dout_n`` of ``loss_fn(out_n[None], y_n[None])`` for every example, or ``None``."""
    def example_loss(o: Tensor, y: Tensor) -> Tensor:
        return loss_fn(o[None], y[None]).reshape(())

    try:
        return torch.func.vmap(torch.func.grad(example_loss))(out, targets)
    except (RuntimeError, NotImplementedError, ValueError):     # what torch.func raises
        return None
