"""Minibatch SGD loops on in-memory tensors, with both samplers of ``Hyperparams.sampler``.

``"with_replacement"`` draws every minibatch independently (uniform indices, 002's model of the noise);
``"without_replacement"`` shuffles once per epoch and walks through the permutation (the usual
``DataLoader(shuffle=True)``; ERRATA 002.3: its noise is anti-correlated within an epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import SAMPLERS, Hyperparams

__all__ = ["LOSSES", "full_batches", "make_optimizer", "minibatch_indices", "resolve_loss", "train"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits against integer labels."""
    return nn.functional.cross_entropy(outputs, targets)


def mse_onehot(outputs: Tensor, targets: Tensor) -> Tensor:
    """``mean_n ||f(x_n) - onehot(y_n)||^2 / 2`` (002 Fig. 2's linear regression on one-hot labels)."""
    if targets.dtype in (torch.int64, torch.int32):
        # A comparison, not F.one_hot: one_hot reads the number of classes with .item(), which fails under
        # torch.func.vmap (per-example gradients, the spectral probes).
        classes = torch.arange(outputs.shape[-1], device=targets.device)
        targets = (targets.unsqueeze(-1) == classes).to(outputs.dtype)
    return 0.5 * (outputs - targets).square().sum(-1).mean()


LOSSES: dict[str, LossFn] = {"cross_entropy": cross_entropy, "mse_onehot": mse_onehot}


def resolve_loss(name: str) -> LossFn:
    """A built-in loss by name, or a user's entry point returning a loss function (or being one)."""
    from sgd_dynamics.experiments.entry_points import is_entry_point, resolve_entry_point

    if name in LOSSES:
        return LOSSES[name]
    if is_entry_point(name):
        fn = resolve_entry_point(name, "loss")
        # A factory ``make_loss() -> fn`` or the loss itself ``fn(outputs, targets)``.
        try:
            import inspect

            if len(inspect.signature(fn).parameters) == 0:
                return fn()
        except (TypeError, ValueError):
            pass
        return fn
    raise ValueError(
        f"loss={name!r} is not built in: expected one of {', '.join(LOSSES)} or an entry point "
        "'package.module:function'"
    )


def minibatch_indices(num_examples: int, batch_size: int, sampler: str, seed: int) -> Iterator[Tensor]:
    """An endless stream of minibatch index tensors for the given sampler (seeded)."""
    require(sampler in SAMPLERS, "sampler", sampler, f"one of {', '.join(SAMPLERS)}")
    gen = torch.Generator().manual_seed(int(seed))
    if sampler == "with_replacement":
        while True:
            yield torch.randint(num_examples, (batch_size,), generator=gen)
    per_epoch = num_examples // batch_size  # drop_last: every step has exactly S examples
    while True:
        perm = torch.randperm(num_examples, generator=gen)
        for j in range(per_epoch):
            yield perm[j * batch_size : (j + 1) * batch_size]


def make_optimizer(model: nn.Module, hyper: Hyperparams) -> torch.optim.SGD:
    """``torch.optim.SGD`` with the hyperparameters' lr, momentum and weight decay.

    Dampening 0, no Nesterov. Fused (one kernel for all parameters) on CPU and CUDA: the per-parameter
    loop of the default implementation was a sixth of a small network's step (issue 15 goal 7); the
    update is the same, rounded differently.
    """
    params = list(model.parameters())
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay,
                           fused=fused or None)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    steps: int,
    batches: Iterator[Tensor],
    on_step: Callable[[int, float], None] | None = None,
    lr_at: Callable[[int], float] | None = None,
) -> None:
    """Run ``steps`` SGD steps in train mode.

    ``on_step(k, loss)`` is called after each (k from 1); optional lr schedule.
    """
    model.train()
    for k in range(1, steps + 1):
        idx = next(batches)
        if lr_at is not None:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(k)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(k, float(loss.detach()))
        elif not np.isfinite(float(loss.detach())):
            raise FloatingPointError(f"training diverged at step {k}: loss={float(loss):.3g}; lower the lr")


def full_batches(x: Tensor, y: Tensor, chunk: int = 1000) -> list[tuple[Tensor, Tensor]]:
    """The whole dataset as a re-iterable list of chunks, for full-dataset Hessians and noise."""
    return [(x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(x), chunk)]
