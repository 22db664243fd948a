"""Loss-landscape slices: the loss on a 2-D grid of parameters around a reference point.

002 sec. 8 and fig. 4: the train and test loss are sampled on the plane

    theta(alpha, beta) = theta_ref + alpha * d_1 + beta * d_2

spanned by two directions (there ``q_1`` and ``q_30``, Hessian eigenvectors) around the pre-trained
parameters. The loss at each grid point is the batch-size-weighted mean of ``loss_fn`` over all batches,
i.e. the mean loss over all examples; ``loss_fn(outputs, targets)`` or a closure ``fn(model, batch)``
(:func:`~sgd_dynamics.measure.objective.closure_loss`, evaluated with autograd enabled, since a closure
may differentiate inside, e.g. a physics-informed residual). The modified loss of 002 eq. 15 on the same
plane is a quadratic that the theory layer evaluates from ``LossSurface.alphas``/``betas`` (see
:meth:`LossSurface.grid`).

Several grid points share one forward pass: ``torch.func.vmap`` over ``torch.func.functional_call``
with the stacked parameters of ``points_per_pass`` grid points. Models that vmap cannot batch
(data-dependent Python control flow, ``.item()``, in-place updates of buffers) are evaluated one point at a
time (``method="loop"``; ``"auto"`` falls back with a warning). The model is evaluated in eval mode
(BatchNorm uses its running statistics, dropout is off), so the slice is deterministic; its mode, parameters
and buffers are left as they were.

Directions and ``theta_ref`` are flat vectors of a parameter group (``parameters=``, default the trainable
parameters, so that Hessian eigenvectors can be passed as they are), in the order of
``torch.nn.utils.parameters_to_vector(group)``; parameters outside the group keep their values.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn
from torch.func import vmap

from sgd_dynamics._validation import require as _require
from sgd_dynamics.measure.flat_params import ParameterSelection, selected_parameters
from sgd_dynamics.measure.objective import Loss, Objective

__all__ = ["LossSurface", "loss_surface"]

Batches = Iterable[Any]


@dataclass(frozen=True)
class LossSurface:
    """Loss at ``theta_ref + alphas[i] * d_1 + betas[j] * d_2``: ``train_loss[i, j]`` (and ``test_loss``).

    ``method`` is how it was evaluated: ``"vmap"`` or ``"loop"``.
    """

    alphas: NDArray
    betas: NDArray
    train_loss: NDArray
    test_loss: NDArray | None
    method: str

    def grid(self) -> tuple[NDArray, NDArray]:
        """The coordinates ``(A, B)`` of every grid point, each of shape ``(len(alphas), len(betas))``."""
        return np.meshgrid(self.alphas, self.betas, indexing="ij")


def _flat(vector: Tensor | ArrayLike, name: str, size: int, like: Tensor) -> Tensor:
    t = torch.as_tensor(vector).detach()
    _require(t.ndim == 1 and t.numel() == size, f"{name}.shape", tuple(t.shape),
             f"({size},), the number of parameters in the group (by default the trainable ones)")
    return t.to(device=like.device, dtype=like.dtype)


def _coordinates(values: ArrayLike, name: str) -> NDArray:
    a = np.asarray(values, dtype=np.float64)
    _require(a.ndim == 1 and a.size >= 1, f"{name}.shape", a.shape, "a non-empty 1-D array")
    _require(bool(np.all(np.isfinite(a))), name, "(non-finite entries)", "finite values")
    return a


def _split(flat: Tensor, shapes: list[torch.Size], lead: tuple[int, ...] = ()) -> list[Tensor]:
    sizes = [s.numel() for s in shapes]
    return [p.reshape(*lead, *s) for p, s in zip(torch.split(flat, sizes, dim=-1), shapes, strict=True)]


def loss_surface(
    model: nn.Module,
    loss_fn: Loss,
    batches: Batches,
    direction_1: Tensor | ArrayLike,
    direction_2: Tensor | ArrayLike,
    alphas: ArrayLike,
    betas: ArrayLike,
    *,
    theta_ref: Tensor | ArrayLike | None = None,
    test_batches: Batches | None = None,
    points_per_pass: int = 16,
    method: Literal["auto", "vmap", "loop"] = "auto",
    parameters: ParameterSelection = None,
) -> LossSurface:
    """Train (and test) loss on the grid ``theta_ref + alpha * direction_1 + beta * direction_2``.

    Parameters
    ----------
    model
        Any ``nn.Module``, called as ``model(inputs)`` (``model(*inputs)`` for a tuple or list); evaluated
        in eval mode, its modes restored after.
    loss_fn
        ``loss_fn(outputs, targets) -> mean loss`` over the batch (a scalar tensor), or
        ``closure_loss(fn)`` for ``fn(model, batch) -> scalar``.
    batches
        Iterable of ``(inputs, targets)`` batches (of the closure's batches) for the train loss, iterated
        once.
    direction_1, direction_2
        Flat directions (m,) of the parameter group, in ``parameters_to_vector`` order; not normalised.
    alphas, betas
        Grid coordinates along ``direction_1`` and ``direction_2``.
    theta_ref
        Flat centre (m,); default the model's current parameters.
    test_batches
        Optional second iterable (the test loss), iterated once.
    points_per_pass
        Grid points per vmapped forward pass; lower it if memory runs out (activation memory grows by
        this factor).
    method
        ``"vmap"``, ``"loop"`` (one point per forward pass) or ``"auto"`` (vmap, and the loop with a
        warning if vmap fails on this model).
    parameters
        The group the plane lies in: ``None`` (the trainable parameters), a name filter or a list of
        parameters (:func:`~sgd_dynamics.measure.flat_params.selected_parameters`).
    """
    _require(method in ("auto", "vmap", "loop"), "method", method, "'auto', 'vmap' or 'loop'")
    _require(isinstance(points_per_pass, (int, np.integer)) and points_per_pass >= 1, "points_per_pass",
             points_per_pass, "an integer >= 1")
    objective = Objective(model, loss_fn)
    named = selected_parameters(model, parameters)
    constants = {n: p.detach() for n, p in model.named_parameters() if n not in dict(named)}
    names = tuple(name for name, _ in named)
    tensors = [t for _, t in named]
    like = tensors[0]
    shapes = [t.shape for t in tensors]
    size = sum(s.numel() for s in shapes)
    centre = (torch.nn.utils.parameters_to_vector(tensors).detach() if theta_ref is None
              else _flat(theta_ref, "theta_ref", size, like))
    d1 = _flat(direction_1, "direction_1", size, like)
    d2 = _flat(direction_2, "direction_2", size, like)
    a, b = _coordinates(alphas, "alphas"), _coordinates(betas, "betas")

    ga, gb = np.meshgrid(a, b, indexing="ij")
    coords = torch.as_tensor(np.stack([ga.ravel(), gb.ravel()], axis=1), device=like.device, dtype=like.dtype)

    was_training = [m.training for m in model.modules()]
    model.eval()
    try:
        evaluate = _Evaluator(objective, constants, names, shapes, centre, d1, d2, coords, points_per_pass)
        used = method
        if method in ("auto", "vmap"):
            try:
                train = evaluate.mean_loss(batches, use_vmap=True)
                used = "vmap"
            except _VmapFailed as failure:
                if method == "vmap":
                    raise RuntimeError(
                        f"method='vmap' failed on {type(model).__name__}: {failure.__cause__!r}; use "
                        "method='loop' for models that torch.func.vmap cannot batch") from failure.__cause__
                warnings.warn(f"torch.func.vmap failed on {type(model).__name__} ({failure.__cause__!r}); "
                              "evaluating the loss surface one grid point at a time", stacklevel=2)
                used = "loop"
                train = evaluate.mean_loss(failure.remaining, use_vmap=False)
        else:
            train = evaluate.mean_loss(batches, use_vmap=False)
        test = None if test_batches is None else evaluate.mean_loss(test_batches, use_vmap=used == "vmap")
    finally:
        for m, mode in zip(model.modules(), was_training, strict=True):
            m.training = mode

    shape = (a.size, b.size)
    return LossSurface(alphas=a, betas=b, train_loss=train.reshape(shape),
                       test_loss=None if test is None else test.reshape(shape), method=used)


class _VmapFailed(Exception):
    """vmap raised on the first batch; ``remaining`` replays the batches (the first one included)."""

    def __init__(self, remaining: Batches) -> None:
        super().__init__("vmap failed")
        self.remaining = remaining


class _Evaluator:
    """Mean loss over batches at every grid point, accumulated in float64 on the model's device."""

    def __init__(self, objective: Objective, constants: dict[str, Tensor], names: tuple[str, ...],
                 shapes: list[torch.Size], centre: Tensor, d1: Tensor, d2: Tensor, coords: Tensor,
                 points_per_pass: int) -> None:
        self.objective, self.constants, self.names, self.shapes = objective, constants, names, shapes
        self.centre, self.d1, self.d2, self.coords = centre, d1, d2, coords
        self.points_per_pass = points_per_pass

    def _params(self, coords: Tensor) -> dict[str, Tensor]:
        flat = self.centre + coords[:, :1] * self.d1 + coords[:, 1:] * self.d2
        return dict(zip(self.names, _split(flat, self.shapes, (coords.shape[0],)), strict=True))

    def _loss(self, params: dict[str, Tensor], batch: Any) -> Tensor:
        return self.objective.loss({**self.constants, **params}, batch)

    def _batch_losses_vmap(self, batch: Any) -> Tensor:
        batched = vmap(lambda params: self._loss(params, batch))
        out = [batched(self._params(chunk)) for chunk in torch.split(self.coords, int(self.points_per_pass))]
        return torch.cat(out)

    def _batch_losses_loop(self, batch: Any) -> Tensor:
        out = []
        for point in self.coords:
            params = {k: v[0] for k, v in self._params(point[None]).items()}
            out.append(self._loss(params, batch).detach())
        return torch.stack(out)

    def mean_loss(self, batches: Batches, *, use_vmap: bool) -> NDArray:
        total = torch.zeros(self.coords.shape[0], dtype=torch.float64, device=self.coords.device)
        count = 0
        iterator = iter(batches)
        first = True
        # A closure may differentiate inside (torch.autograd.grad needs a graph); a loss of outputs need not.
        grad_mode = torch.enable_grad() if self.objective.is_closure else torch.no_grad()
        with grad_mode:
            for raw in iterator:
                batch, n = self.objective.prepare(raw, self.coords.device)
                if use_vmap and first:
                    try:
                        losses = self._batch_losses_vmap(batch)
                    except Exception as error:   # vmap's failures have many types; re-raised or reported
                        raise _VmapFailed(_replay(raw, iterator)) from error
                elif use_vmap:
                    losses = self._batch_losses_vmap(batch)
                else:
                    losses = self._batch_losses_loop(batch)
                first = False
                total += n * losses.detach().to(torch.float64)
                count += n
        _require(count > 0, "batches", "(empty)", "at least one non-empty batch")
        return (total / count).cpu().numpy()


def _replay(first: Any, rest: Iterable[Any]) -> Batches:
    yield first
    yield from rest
