"""A model seen as a function of its flat parameter vector, and the data it is evaluated on.

Every measurement in :mod:`sgd_dynamics.measure` works with one flat parameter vector ``theta`` in
the order of ``torch.nn.utils.parameters_to_vector(model.parameters())`` (002 section 2: ``theta`` is
the concatenation of all weights). :class:`ParameterLayout` converts between that vector and the
named tensors ``torch.func.functional_call`` expects, as views (no copies).

Data sets are passed as *re-iterable* collections of ``(inputs, targets)`` batches, because a
Hessian-vector product or a gradient-noise estimate sweeps the whole data set many times:

- a list or tuple of batches, a ``torch.utils.data.DataLoader`` (each ``iter()`` restarts it);
- a callable with no arguments returning a fresh iterator of batches;
- a single batch ``(inputs, targets)`` of two tensors.

``inputs`` is a tensor (``model(inputs)``) or a tuple/list of tensors (``model(*inputs)``);
``targets`` is a tensor whose first dimension is the batch size. One-shot iterators (generators)
are refused, since a second sweep would silently see no data.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Batch = tuple[Any, Tensor]
BatchSource = Iterable[Batch] | Callable[[], Iterator[Batch]] | tuple[Tensor, Tensor]


@dataclass(frozen=True)
class ParameterLayout:
    """Names, shapes and offsets of a module's parameters in the flat order.

    >>> layout = ParameterLayout.from_module(nn.Linear(3, 2))
    >>> layout.dim, layout.names
    (8, ('weight', 'bias'))
    >>> {k: tuple(v.shape) for k, v in layout.unflatten(torch.arange(8.0)).items()}
    {'weight': (2, 3), 'bias': (2,)}
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def from_module(cls, model: nn.Module) -> ParameterLayout:
        """Layout of ``model.named_parameters()`` (the order of ``model.parameters()``)."""
        named = list(model.named_parameters())
        if not named:
            raise ValueError(f"model={type(model).__name__} has no parameters: expected at least one")
        dtypes = {p.dtype for _, p in named}
        devices = {p.device for _, p in named}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(
                f"model parameters have dtypes {sorted(map(str, dtypes))} on devices "
                f"{sorted(map(str, devices))}: expected one dtype on one device (a flat parameter vector "
                "needs both)")
        return cls(tuple(n for n, _ in named), tuple(p.shape for _, p in named), dtypes.pop(), devices.pop())

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def dim(self) -> int:
        """Number of parameters ``m``."""
        return sum(self.numels)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Views of ``flat`` (shape ``(..., m)``) as named tensors of shape ``(..., *param_shape)``."""
        lead = flat.shape[:-1]
        out, offset = {}, 0
        for name, shape, n in zip(self.names, self.shapes, self.numels, strict=True):
            out[name] = flat[..., offset:offset + n].reshape(*lead, *shape)
            offset += n
        return out

    def flatten(self, tensors: dict[str, Tensor], batch_dims: int = 0) -> Tensor:
        """Concatenate named tensors (with ``batch_dims`` leading dimensions) into ``(..., m)``."""
        parts = [tensors[name] for name in self.names]
        lead = parts[0].shape[:batch_dims]
        return torch.cat([p.reshape(*lead, -1) for p in parts], dim=batch_dims)


def detached_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The model's parameters as detached tensors (shared storage), for ``functional_call``."""
    return {name: p.detach() for name, p in model.named_parameters()}


def model_output(model: nn.Module, params: dict[str, Tensor], inputs: Any) -> Tensor:
    """``model(inputs)`` with ``params`` substituted (``model(*inputs)`` for a tuple or list)."""
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    return torch.func.functional_call(model, params, args)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode (BatchNorm running statistics, no dropout); restore each after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def reiterable(batches: BatchSource, name: str = "batches") -> Callable[[], Iterator[Batch]]:
    """A function returning a fresh iterator over the batches; refuses one-shot iterators."""
    if isinstance(batches, tuple) and len(batches) == 2 and all(isinstance(b, Tensor) for b in batches):
        single = [batches]
        return lambda: iter(single)
    if callable(batches) and not hasattr(batches, "__iter__"):
        return batches
    if not hasattr(batches, "__iter__"):
        raise ValueError(f"{name}={type(batches).__name__} is invalid: expected a list of (inputs, targets) "
                         "batches, a DataLoader, or a callable returning an iterator of batches")
    if iter(batches) is batches:
        raise ValueError(f"{name}={type(batches).__name__} is a one-shot iterator: expected a re-iterable "
                         "collection (list, DataLoader) or a callable returning a fresh iterator, because "
                         "the data set is swept many times")
    return lambda: iter(batches)


def to_device(inputs: Any, device: torch.device) -> Any:
    """Move a tensor or a tuple/list of tensors to ``device`` (no-op when already there)."""
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_device(x, device) for x in inputs)
    return inputs.to(device, non_blocking=True) if isinstance(inputs, Tensor) else inputs


def split_batch(batch: Batch, name: str = "batches") -> tuple[Any, Tensor, int]:
    """Unpack ``(inputs, targets)`` and return them with the batch size ``len(targets)``."""
    try:
        inputs, targets = batch
    except (TypeError, ValueError):
        raise ValueError(f"{name} yielded {type(batch).__name__}: expected (inputs, targets) pairs") from None
    if not isinstance(targets, Tensor) or targets.ndim == 0 or targets.shape[0] == 0:
        raise ValueError(f"{name} yielded targets={targets!r:.60}: expected a tensor with a non-empty "
                         "batch dimension")
    return inputs, targets, int(targets.shape[0])
