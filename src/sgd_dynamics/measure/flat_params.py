"""A model seen as a function of its flat parameter vector, and the data it is evaluated on.

Every measurement in :mod:`sgd_dynamics.measure` works with one flat parameter vector ``theta`` in
the order of ``torch.nn.utils.parameters_to_vector(model.parameters())`` (002 section 2: ``theta`` is
the concatenation of all weights). :class:`ParameterLayout` converts between that vector and the
named tensors ``torch.func.functional_call`` expects, as views (no copies).

Parameter groups: a measurement differentiates a *group* of parameters (:func:`selected_parameters`),
and its vectors live in the flat space of that group, ``parameters_to_vector(group)``. The group is

- ``None`` (the default): the trainable parameters (``requires_grad=True``) in ``model.parameters()``
  order — the parameters SGD moves; for a model without frozen parameters that is all of them;
- a callable ``name -> bool``: the trainable parameters whose name (as in ``model.named_parameters()``)
  it accepts, in model order (per-layer operators: ``lambda name: name.startswith("2.")``);
- an iterable of parameter tensors of the model: exactly those, in the order given (frozen ones too).

Shared (tied) parameters appear once, under their first name, as in ``model.parameters()``.
:meth:`ParameterLayout.embed` writes group vectors into the flat space of all parameters (zeros
elsewhere), e.g. to hand per-layer eigenvectors to the trajectory tracker.

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

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from sgd_dynamics._validation import require

Batch = tuple[Any, Tensor]
BatchSource = Iterable[Batch] | Callable[[], Iterator[Batch]] | tuple[Tensor, Tensor]
ParameterSelection = Iterable[Tensor] | Callable[[str], bool] | None


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
        """Layout of all of ``model.named_parameters()`` (the order of ``model.parameters()``)."""
        named = list(model.named_parameters())
        if not named:
            raise ValueError(f"model={type(model).__name__} has no parameters: expected at least one")
        return cls.from_named(named)

    @classmethod
    def from_group(cls, model: nn.Module, parameters: ParameterSelection = None) -> ParameterLayout:
        """Layout of a parameter group (see :func:`selected_parameters`; default: the trainable ones)."""
        return cls.from_named(selected_parameters(model, parameters))

    @classmethod
    def from_named(cls, named: list[tuple[str, Tensor]]) -> ParameterLayout:
        """Layout of ``(name, tensor)`` pairs in the order given; one dtype on one device."""
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

    def flatten(self, tensors: dict[str, Tensor], batch_dims: int = 0, out: Tensor | None = None) -> Tensor:
        """Concatenate named tensors (with ``batch_dims`` leading dimensions) into ``(..., m)``.

        ``out``: write into this tensor (e.g. a row of a preallocated block) instead of a new one.
        """
        parts = [tensors[name] for name in self.names]
        lead = parts[0].shape[:batch_dims]
        return torch.cat([p.reshape(*lead, -1) for p in parts], dim=batch_dims, out=out)

    def offsets(self) -> dict[str, slice]:
        """The slice of every named tensor in the flat vector."""
        out, offset = {}, 0
        for name, n in zip(self.names, self.numels, strict=True):
            out[name] = slice(offset, offset + n)
            offset += n
        return out

    def embed(self, vectors: Tensor | np.ndarray, into: ParameterLayout) -> np.ndarray:
        """A group vector ``(m_group,)`` or columns ``(m_group, k)`` in the flat space ``into``, 0 elsewhere.

        >>> model = nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 1))
        >>> group = ParameterLayout.from_group(model, lambda name: name.startswith("1."))
        >>> group.embed(np.array([5.0, 6.0]), ParameterLayout.from_module(model)).tolist()
        [0.0, 0.0, 0.0, 5.0, 6.0]
        """
        v = np.asarray(vectors.detach().cpu() if isinstance(vectors, Tensor) else vectors, dtype=np.float64)
        require(v.ndim in (1, 2) and v.shape[0] == self.dim, "vectors.shape", v.shape,
                f"({self.dim},) or ({self.dim}, k), the size of the parameter group")
        missing = [n for n in self.names if n not in into.names]
        require(not missing, "into", f"a layout without {missing}",
                "a layout containing every parameter of the group")
        out = np.zeros((into.dim, *v.shape[1:]))
        src, dst = self.offsets(), into.offsets()
        for name in self.names:
            out[dst[name]] = v[src[name]]
        return out


def selected_parameters(model: nn.Module, parameters: ParameterSelection = None,
                        name: str = "parameters") -> list[tuple[str, Tensor]]:
    """The ``(name, parameter)`` pairs of a group, in its flat order (see the module docstring)."""
    named = list(model.named_parameters())
    require(bool(named), "model", type(model).__name__, "a module with parameters")
    if parameters is None:
        group = [(n, p) for n, p in named if p.requires_grad]
        require(bool(group), name, None, "a group of parameters: the model has no trainable parameters "
                "(requires_grad=True), so pass the ones to differentiate explicitly")
        return group
    if callable(parameters) and not isinstance(parameters, (Tensor, nn.Module)):
        group = [(n, p) for n, p in named if p.requires_grad and parameters(n)]
        require(bool(group), name, getattr(parameters, "__name__", parameters),
                "a name filter accepting at least one trainable parameter of "
                f"{[n for n, _ in named][:8]}")
        return group
    require(not isinstance(parameters, (str, bytes, Tensor, nn.Module)) and hasattr(parameters, "__iter__"),
            name, type(parameters).__name__,
            "None, a callable name -> bool, or a list of the model's parameters")
    by_id = {id(p): n for n, p in named}
    group, seen = [], set()
    for p in parameters:
        require(isinstance(p, Tensor) and id(p) in by_id, name,
                f"[... {type(p).__name__} of shape {tuple(getattr(p, 'shape', ()))} ...]",
                "parameters of the model (model.parameters() entries)")
        require(id(p) not in seen, name, f"[... {by_id[id(p)]} twice ...]", "each parameter at most once")
        seen.add(id(p))
        group.append((by_id[id(p)], p))
    require(bool(group), name, [], "a non-empty list of the model's parameters")
    return group


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
    # Iterating a tensor yields its rows: each would silently be taken for a batch.
    require(not isinstance(batches, Tensor), name, f"Tensor of shape {tuple(getattr(batches, 'shape', ()))}",
            "a collection of batches: wrap a single batch in a list, [batch]")
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
    """Move every tensor of a tensor, tuple, list or dict of tensors to ``device`` (no-op when there)."""
    return tree_map(lambda t: t.to(device, non_blocking=True) if isinstance(t, Tensor) else t, inputs)


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
