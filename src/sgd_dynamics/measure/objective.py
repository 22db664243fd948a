"""The loss a measurement differentiates: ``loss_fn(outputs, targets)`` or a closure ``fn(model, batch)``.

Every measurement of :mod:`sgd_dynamics.measure` (Hessian eigenpairs and trace, gradient noise, noise
geometry, loss-surface slices) takes the loss in one of two forms, told apart by type, never by inspecting
a callable's signature:

- a loss of the model's outputs, ``loss_fn(outputs, targets) -> scalar`` (``nn.MSELoss()``,
  ``nn.functional.cross_entropy``, ``lambda out, y: ...``) on ``(inputs, targets)`` batches, with
  ``outputs = model(inputs)`` (``model(*inputs)`` for a tuple or list of inputs);
- a closure wrapped by :func:`closure_loss`, ``fn(model, batch) -> scalar``, for objectives that are not a
  function of ``(outputs, targets)``: physics-informed residuals, custom objectives. ``batch`` is whatever
  the batches yield (a tensor, a tuple, a dict of tensors). The closure calls ``model`` as it likes and may
  differentiate inside (``torch.autograd.grad(..., create_graph=True)`` or ``torch.func``); it must call
  the ``model`` it is given, into which the measurements substitute the parameters.

The loss over several batches is the mean over examples, ``L = sum_b n_b L_b / sum_b n_b`` (002 sec. 2:
the full-batch loss). ``n_b = len(targets)`` for an ``(inputs, targets)`` batch; for a closure it is
``batch_size(batch)`` when :func:`closure_loss` was given one, else the common leading dimension of the
batch's tensors. Per-example quantities (gradient noise, 002 eq. 3) evaluate the loss on batches of one
example, ``x[n:n+1]`` for every tensor ``x`` of the batch. A closure therefore has a per-example
decomposition only when its batches' tensors share a leading example dimension and it accepts a batch of
one example; otherwise per-example measurements raise ``ValueError`` (a closure over, say, interior and
boundary points of different counts has no per-example gradients; its Hessian is still defined).

Forward-mode derivatives and symbolic zeros: a batch tensor that enters the loss without a tangent is
given a symbolic zero tangent (an immutable ``ZeroTensor``) inside PyTorch's forward-AD formulas, and some
formulas write into it in place; ``mse_loss``'s double backward does so for the target
(pytorch/pytorch#123996, ``RuntimeError: ZeroTensors are immutable``, which made every forward-over-reverse
Hessian-vector product of ``nn.MSELoss`` fail). :meth:`Objective.loss_operands` names the floating-point
tensors of a batch that reach the loss itself (the targets; every tensor of a closure's batch), so that
:mod:`~sgd_dynamics.measure.hvp` passes them through ``jvp`` with materialised zero tangents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_flatten, tree_unflatten

from sgd_dynamics._validation import require
from sgd_dynamics.measure.flat_params import model_output, split_batch, to_device

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ClosureLoss:
    """A loss ``fn(model, batch) -> scalar`` over batches of any structure; made by :func:`closure_loss`."""

    fn: Callable[[nn.Module, Any], Tensor]
    batch_size: Callable[[Any], int] | None = None


Loss = LossFn | ClosureLoss


def closure_loss(fn: Callable[[nn.Module, Any], Tensor], *,
                 batch_size: Callable[[Any], int] | None = None) -> ClosureLoss:
    """Mark ``fn(model, batch) -> scalar`` as a closure loss, accepted wherever a ``loss_fn`` is.

    ``batch_size(batch)`` is the number of examples of a batch (its weight in the mean over batches);
    by default the common leading dimension of the batch's tensors.

    >>> model = nn.Linear(1, 1)
    >>> energy = closure_loss(lambda m, x: m(x).square().mean())
    >>> Objective(model, energy).count(torch.zeros(5, 1))   # examples in a batch of 5 points
    5
    """
    require(callable(fn) and not isinstance(fn, ClosureLoss), "fn", fn,
            "a callable fn(model, batch) -> scalar loss")
    require(batch_size is None or callable(batch_size), "batch_size", batch_size,
            "None or a callable batch -> number of examples")
    return ClosureLoss(fn, batch_size)


class _ClosureModule(nn.Module):
    """The model as a submodule, so that ``functional_call`` substitutes its parameters for the closure."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module, Any], Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, batch: Any) -> Tensor:
        return self.fn(self.model, batch)


class Objective:
    """A model and its loss as a function of ``(named parameters, batch)``; see the module docstring.

    ``params`` dictionaries are keyed by the names of ``model.named_parameters()``; entries left out keep
    the module's own tensors (``torch.func.functional_call``), tied parameters follow their first name.
    """

    def __init__(self, model: nn.Module, loss: Loss, name: str = "loss_fn") -> None:
        require(isinstance(model, nn.Module), "model", type(model).__name__, "a torch.nn.Module")
        require(callable(loss) or isinstance(loss, ClosureLoss), name, loss,
                "a callable loss_fn(outputs, targets) or closure_loss(fn) for fn(model, batch)")
        self.model, self.loss_fn, self.name = model, loss, name
        self.is_closure = isinstance(loss, ClosureLoss)
        self._wrapped = _ClosureModule(model, loss.fn) if self.is_closure else None

    def loss(self, params: dict[str, Tensor], batch: Any) -> Tensor:
        """The loss of one prepared batch at ``params``, as a 0-d tensor."""
        if self.is_closure:
            out = functional_call(self._wrapped, {f"model.{k}": v for k, v in params.items()}, (batch,))
        else:
            inputs, targets = batch
            out = self.loss_fn(model_output(self.model, params, inputs), targets)
        require(isinstance(out, Tensor) and out.numel() == 1, f"{self.name}(...)",
                f"{type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}",
                "a scalar loss tensor (reduction 'mean' or 'sum', not 'none')")
        return out.reshape(())

    def prepare(self, batch: Any, device: torch.device) -> tuple[Any, int]:
        """The batch on ``device`` and its number of examples ``n_b`` (its weight in the mean)."""
        if not self.is_closure:
            inputs, targets, n = split_batch(batch)
            return (to_device(inputs, device), targets.to(device)), n
        return to_device(batch, device), self.count(batch)

    def count(self, batch: Any) -> int:
        """The number of examples ``n_b`` of a batch."""
        if not self.is_closure:
            return split_batch(batch)[2]
        if self.loss_fn.batch_size is None:
            return _leading_dimension(batch, "closure_loss(fn, batch_size=...) to weight its batches")
        n = self.loss_fn.batch_size(batch)
        require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, "batch_size(batch)", n,
                "an integer >= 1, the number of examples in the batch")
        return n

    def loss_operands(self, batch: Any) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
        """The floating-point tensors of a batch that reach the loss itself, and how to rebuild the batch.

        ``rebuild(replacements)`` is the batch with those tensors replaced, in the order returned.
        """
        if self.is_closure:
            return _replaceable(batch, lambda t: t.is_floating_point() or t.is_complex())
        inputs, targets = batch
        if not (targets.is_floating_point() or targets.is_complex()):
            return [], lambda _: batch
        return [targets], lambda parts: (inputs, parts[0])

    def examples(self, batch: Any) -> tuple[list[Tensor], Callable[[list[Tensor]], Any], int]:
        """The batch's tensors (leading dimension ``n_b`` each), a rebuild function and ``n_b``.

        Slicing every tensor at ``[n:n+1]`` and rebuilding gives the batch of example ``n``.
        """
        n = self.count(batch)
        parts, rebuild = _replaceable(batch, lambda t: True)
        dims = sorted({t.shape[0] if t.ndim else -1 for t in parts})
        require(dims == [n], "batches", f"a batch with tensors of leading dimensions {dims} and {n} examples",
                "the examples along the leading dimension of every tensor of a batch, as per-example "
                "gradients need (use (inputs, targets) batches, or a closure over batches whose tensors "
                "share one leading dimension)")
        return parts, rebuild, n


def _replaceable(batch: Any, keep: Callable[[Tensor], bool]
                 ) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
    leaves, spec = tree_flatten(batch)
    where = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Tensor) and keep(leaf)]

    def rebuild(parts: list[Tensor]) -> Any:
        new = list(leaves)
        for i, part in zip(where, parts, strict=True):
            new[i] = part
        return tree_unflatten(new, spec)

    return [leaves[i] for i in where], rebuild


def _leading_dimension(batch: Any, hint: str) -> int:
    dims = sorted({leaf.shape[0] if leaf.ndim else -1 for leaf in tree_flatten(batch)[0]
                   if isinstance(leaf, Tensor)})
    require(len(dims) == 1 and dims[0] >= 1, "batches", f"a batch with tensors of leading dimensions {dims}",
            f"tensors sharing one leading (example) dimension, or pass {hint}")
    return dims[0]
