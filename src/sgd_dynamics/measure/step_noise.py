"""The gradient noise of a training step, by the estimator that fits the model (issue 11 §5).

The speed prediction ``E||delta||^2 = eta^2 tr(C) / (1 - beta^2)`` (002 eq. 18, ERRATA 002.3) needs the
covariance ``C = Cov(g_B)`` of the minibatch gradient *that the training step computes*. Two estimators:

- ``"per_example"``: :func:`~sgd_dynamics.measure.gradient_noise` in eval mode, ``C = Sigma / S`` with the
  per-example ``Sigma`` (002 eq. 3; exact over the data set, no sampling error). Exact for a network whose
  forward pass treats the examples of a batch independently and deterministically.
- ``"minibatch"``: :func:`~sgd_dynamics.measure.minibatch_noise` in train mode, ``S Cov(g_B)`` from
  ``M`` independent minibatches. A Dropout layer draws a fresh mask per step (noise ``Sigma`` does not
  hold) and a BatchNorm layer normalises with the batch's own statistics (the examples of a batch are
  coupled, so ``Cov(g_B)`` is not ``Sigma / S`` and eval mode's running statistics give another
  function altogether); this estimator holds for any module.

``"auto"`` takes ``"minibatch"`` when the model holds a Dropout (any ``torch.nn.modules.dropout._DropoutNd``:
``Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``, ...) or a BatchNorm (any
``torch.nn.modules.batchnorm._BatchNorm``, ``SyncBatchNorm`` included) module, ``"per_example"``
otherwise. The minibatches of the estimate are drawn *with replacement* (``S`` indices uniform on the
``N`` examples, independent across minibatches), so that for a model with neither module
``S Cov(g_B) = Sigma`` exactly and both estimators report the same quantity, whatever sampler the
training uses. Its jackknife standard error is of order ``tr(C) sqrt(2 / (M r))`` for noise of
effective rank ``r = tr(C)^2 / tr(C^2)``; ``M = 256`` minibatches cost ``256 S`` train-mode
example-gradients, a few passes over a data set of a few thousand examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from sgd_dynamics._validation import require
from sgd_dynamics.measure.gradient_noise import gradient_noise
from sgd_dynamics.measure.minibatch_noise import minibatch_noise
from sgd_dynamics.measure.replicas import LossFn

__all__ = ["NOISE_ESTIMATORS", "StepNoise", "resolve_noise_estimator", "step_noise", "stochastic_modules"]

NOISE_ESTIMATORS = ("auto", "per_example", "minibatch")
_STOCHASTIC = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def stochastic_modules(model: nn.Module) -> tuple[str, ...]:
    """The sorted class names of the model's Dropout and BatchNorm modules (empty: it has neither)."""
    return tuple(sorted({type(m).__name__ for m in model.modules() if isinstance(m, _STOCHASTIC)}))


def resolve_noise_estimator(model: nn.Module, estimator: str = "auto") -> str:
    """``"per_example"`` or ``"minibatch"``: ``estimator`` itself, or what ``"auto"`` picks for ``model``."""
    require(estimator in NOISE_ESTIMATORS, "noise_estimator", estimator,
            f"one of {', '.join(NOISE_ESTIMATORS)}")
    if estimator != "auto":
        return estimator
    return "minibatch" if stochastic_modules(model) else "per_example"


@dataclass(frozen=True)
class StepNoise:
    """``S Cov(g_B)`` of the training step in ``Sigma``'s units, and how it was measured."""

    estimator: str                           # "per_example" or "minibatch"
    trace: float                             # tr(Sigma) or S tr Cov(g_B)
    trace_se: float                          # 0 for the per-example Sigma (exact over the data set)
    mode_noise: NDArray[np.float64]          # s_i, or S q_i^T Cov(g_B) q_i
    mode_noise_se: NDArray[np.float64]
    mean_gradient_sq_norm: float             # ||g||^2 (eval mode) or ||E g_B||^2 (train mode, unbiased)
    num_minibatches: int                     # M (0 for the per-example Sigma)


def step_noise(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, batch_size: int,
               directions: ArrayLike | Tensor | None = None, *, estimator: str = "auto",
               num_minibatches: int = 256, seed: int = 0) -> StepNoise:
    """The noise of a step with minibatches of ``batch_size`` at the model's parameters (module docstring).

    ``estimator``: one of :data:`NOISE_ESTIMATORS`, resolved by :func:`resolve_noise_estimator`.
    ``directions``: ``(m, k)`` columns ``q_i``. ``seed``: the minibatches and Dropout masks of the
    ``"minibatch"`` estimate. The model's parameters, buffers and train/eval flags are left as they were.
    """
    chosen = resolve_noise_estimator(model, estimator)
    require(isinstance(batch_size, int) and 1 <= batch_size <= len(x), "batch_size", batch_size,
            f"an integer in [1, {len(x)}]")
    require(isinstance(num_minibatches, int) and num_minibatches >= 4, "num_minibatches", num_minibatches,
            "an integer >= 4")
    if chosen == "per_example":
        noise = gradient_noise(model, loss_fn, (x, y), directions=directions, chunk_size=250)
        modes = np.asarray(noise.mode_noise, np.float64)
        return StepNoise(chosen, float(noise.trace), 0.0, modes, np.zeros_like(modes),
                         noise.mean_gradient_sq_norm, 0)
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(len(x), (num_minibatches, batch_size), generator=gen)
    noise = minibatch_noise(model, loss_fn, x, y, idx, directions, chunk_size=32, seed=seed)
    mean = noise.mean_gradient
    # E||mean of M gradients||^2 = ||E g_B||^2 + tr Cov(g_B) / M: remove the second part
    sq_norm = float(mean @ mean) - noise.trace / (batch_size * num_minibatches)
    return StepNoise(chosen, noise.trace, noise.trace_se, noise.mode_noise, noise.mode_noise_se,
                     sq_norm, num_minibatches)
