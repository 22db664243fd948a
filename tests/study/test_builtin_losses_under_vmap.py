"""The built-in losses work through every per-example measurement (vmap), not only in training."""

import pytest
import torch

from sgd_dynamics.experiments.training import LOSSES
from sgd_dynamics.measure import gradient_noise


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_noise_of_builtin_loss_equals_a_per_example_loop(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    x = torch.randn(24, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (24,))
    loss_fn = LOSSES[name]
    noise = gradient_noise(model, loss_fn, [(x, y)])
    grads = []
    for n in range(len(x)):
        g = torch.autograd.grad(loss_fn(model(x[n:n + 1]), y[n:n + 1]), list(model.parameters()))
        grads.append(torch.cat([t.reshape(-1) for t in g]))
    grads = torch.stack(grads)
    centred = grads - grads.mean(0)
    expected = float(centred.square().sum(1).mean())  # tr Sigma with the 1/N normalisation
    assert noise.trace == pytest.approx(expected, rel=1e-10)


def test_mse_onehot_equals_the_one_hot_formula():
    outputs = torch.randn(6, 4, dtype=torch.float64)
    targets = torch.tensor([0, 3, 1, 2, 2, 0])
    onehot = torch.nn.functional.one_hot(targets, 4).double()
    assert LOSSES["mse_onehot"](outputs, targets) == pytest.approx(
        float(0.5 * (outputs - onehot).square().sum(-1).mean()), rel=1e-14)
