"""The noise of a training step with Dropout / BatchNorm, against a Monte Carlo of real SGD steps.

Independent reference: from the same parameters ``theta``, ``K`` independent train-mode SGD steps
(``torch.optim.SGD``, momentum 0, ``loss.backward()``, each with its own minibatch drawn with replacement
and its own Dropout mask) give ``E||Delta theta||^2 = eta^2 (||E g_B||^2 + tr Cov(g_B))``, estimated by
the sample mean of ``||Delta theta||^2`` with its standard error. :func:`step_noise` predicts it as
``eta^2 (||g||^2 + trace / S)``; the tolerance combines the MC s.e. with the estimator's own (the
jackknife s.e. of the trace, and ``2 sqrt(||g||^2 tr C / M)`` for ``||g||^2``, a Cauchy-Schwarz bound on
the s.e. of a squared mean of ``M`` gradients).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.experiments.study_config import NOISE_ESTIMATORS as CONFIG_ESTIMATORS
from sgd_dynamics.measure import NOISE_ESTIMATORS, resolve_noise_estimator, step_noise, stochastic_modules

LOSS = nn.functional.cross_entropy
N, S, ETA, K, M = 96, 8, 0.1, 1200, 1024
pytestmark = pytest.mark.usefixtures("single_thread")


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (N,), generator=g)


def dropout_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(0.5), nn.Linear(32, 3)).double()


def bn_model() -> nn.Module:
    """BatchNorm whose running statistics come from shifted data: eval mode is another function."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 3)).double()
    with torch.no_grad():
        for _ in range(5):
            model(2.0 * torch.randn(64, 8, dtype=torch.float64) + 0.5)
    return model


def sgd_step_sq_norms(model: nn.Module, x, y, seed: int) -> np.ndarray:
    """``||Delta theta||^2`` of ``K`` independent one-step train-mode SGD runs from the same ``theta``."""
    model = copy.deepcopy(model).train()
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=ETA, momentum=0.0)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)                                     # the Dropout masks
    out = np.empty(K)
    for j in range(K):
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), start, strict=True):
                p.copy_(p0)
        i = torch.randint(N, (S,), generator=gen)
        optimizer.zero_grad()
        LOSS(model(x[i]), y[i]).backward()
        optimizer.step()
        with torch.no_grad():
            out[j] = float(sum((p - p0).square().sum() for p, p0 in zip(model.parameters(), start,
                                                                        strict=True)))
    return out


@pytest.mark.parametrize("build", [dropout_mlp, bn_model], ids=["dropout", "batchnorm"])
def test_train_mode_noise_predicts_the_sgd_step_and_eval_mode_sigma_does_not(build):
    x, y = make_data()
    model = build()
    steps = sgd_step_sq_norms(model, x, y, seed=5)
    measured, measured_se = steps.mean(), steps.std(ddof=1) / np.sqrt(K)

    train = step_noise(model, LOSS, x, y, S, estimator="auto", num_minibatches=M, seed=1)
    assert train.estimator == "minibatch" and train.num_minibatches == M
    predicted = ETA**2 * (train.mean_gradient_sq_norm + train.trace / S)
    g2_se = 2 * np.sqrt(max(train.mean_gradient_sq_norm, 0.0) * train.trace / S / M)
    se = np.sqrt(measured_se**2 + (ETA**2 * train.trace_se / S) ** 2 + (ETA**2 * g2_se) ** 2)
    assert abs(predicted - measured) < 4 * se

    per_example = step_noise(model, LOSS, x, y, S, estimator="per_example")
    assert per_example.estimator == "per_example" and per_example.trace_se == 0.0
    eval_predicted = ETA**2 * (per_example.mean_gradient_sq_norm + per_example.trace / S)
    # eval mode misses the Dropout masks / the batch statistics: measured 24 and 28 s.e. below
    assert eval_predicted < measured - 10 * se


def test_auto_takes_the_minibatch_estimator_only_for_dropout_or_batchnorm():
    plain = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))
    assert stochastic_modules(plain) == () and resolve_noise_estimator(plain) == "per_example"
    both = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.Dropout1d(0.1), nn.Flatten(),
                         nn.AlphaDropout(0.1))
    assert stochastic_modules(both) == ("AlphaDropout", "BatchNorm1d", "Dropout1d")
    assert resolve_noise_estimator(both) == "minibatch"
    assert resolve_noise_estimator(both, "per_example") == "per_example"   # an explicit choice is kept
    assert NOISE_ESTIMATORS == CONFIG_ESTIMATORS                           # the config's copy (no torch)
    with pytest.raises(ValueError, match="noise_estimator"):
        resolve_noise_estimator(plain, "eval")


def test_estimators_agree_without_dropout_or_batchnorm():
    # E[S tr Cov(g_B)] = tr Sigma for minibatches drawn with replacement: 4 jackknife s.e.
    x, y = make_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    sigma = step_noise(model, LOSS, x, y, S)
    train = step_noise(model, LOSS, x, y, S, estimator="minibatch", num_minibatches=512, seed=3)
    assert sigma.estimator == "per_example"
    assert abs(train.trace - sigma.trace) < 4 * train.trace_se
