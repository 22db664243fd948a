"""Loss-surface grid against a direct loop that loads each grid point into a copy of the model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sgd_dynamics.measure.landscape import loss_surface


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The models are tiny: intra-op threads only add contention on a shared machine. Restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ALPHAS = np.linspace(-1.0, 1.0, 7)
BETAS = np.linspace(-0.5, 0.5, 5)


def _data(seed: int, sizes=(20, 25, 5)):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))
            for n in sizes]


def _directions(model: nn.Module, seed: int):
    g = torch.Generator().manual_seed(seed)
    m = sum(p.numel() for p in model.parameters())
    return torch.randn(m, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)


def _direct(model, loss_fn, batches, d1, d2, centre):
    """Reference: for every grid point, write the parameters into a copy and run the batches."""
    probe = copy.deepcopy(model).eval()
    out = np.empty((ALPHAS.size, BETAS.size))
    with torch.no_grad():
        for i, a in enumerate(ALPHAS):
            for j, b in enumerate(BETAS):
                vector_to_parameters(centre + a * d1 + b * d2, probe.parameters())
                total = sum(float(loss_fn(probe(x), y)) * len(y) for x, y in batches)
                out[i, j] = total / sum(len(y) for _, y in batches)
    return out


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_grid_matches_direct_loop(method):
    model = _mlp()
    train, test = _data(1), _data(2, sizes=(7, 9))
    d1, d2 = _directions(model, 3)
    centre = parameters_to_vector(model.parameters()).detach().clone()
    surface = loss_surface(model, nn.functional.cross_entropy, train, d1, d2, ALPHAS, BETAS,
                           test_batches=test, points_per_pass=8, method=method)   # 35 points: 8+8+8+8+3
    assert surface.method == method
    assert surface.train_loss.shape == (7, 5) and surface.test_loss.shape == (7, 5)
    np.testing.assert_allclose(surface.train_loss, _direct(model, nn.functional.cross_entropy, train, d1, d2,
                                                           centre), rtol=0, atol=1e-10)
    np.testing.assert_allclose(surface.test_loss, _direct(model, nn.functional.cross_entropy, test, d1, d2,
                                                          centre), rtol=0, atol=1e-10)
    assert torch.equal(parameters_to_vector(model.parameters()), centre)   # the model is untouched
    a, b = surface.grid()
    assert a[3, 0] == ALPHAS[3] and b[0, 4] == BETAS[4]


def test_theta_ref_and_generator_batches():
    model = _mlp()
    d1, d2 = _directions(model, 4)
    centre = parameters_to_vector(model.parameters()).detach() + 0.3 * d1
    batches = _data(5)
    surface = loss_surface(model, nn.functional.cross_entropy, (b for b in batches), d1, d2, ALPHAS, BETAS,
                           theta_ref=centre.numpy())
    np.testing.assert_allclose(surface.train_loss,
                               _direct(model, nn.functional.cross_entropy, batches, d1, d2, centre),
                               rtol=0, atol=1e-10)
    assert surface.test_loss is None


def test_batchnorm_model_is_evaluated_in_eval_mode_and_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).double()
    batches = _data(6)
    with torch.no_grad():
        model(batches[0][0])   # non-trivial running statistics
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    d1, d2 = _directions(model, 7)
    centre = parameters_to_vector(model.parameters()).detach().clone()
    surface = loss_surface(model, nn.functional.cross_entropy, batches, d1, d2, ALPHAS, BETAS)
    assert surface.method == "vmap"
    np.testing.assert_allclose(surface.train_loss,
                               _direct(model, nn.functional.cross_entropy, batches, d1, d2, centre),
                               rtol=0, atol=1e-10)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())


class _DataDependent(nn.Module):
    """A model vmap cannot batch: Python control flow on a tensor value."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3).double()

    def forward(self, x):
        if self.linear.weight.abs().sum().item() > 1e9:
            return torch.zeros(x.shape[0], 3, dtype=x.dtype)
        return torch.tanh(self.linear(x))


def test_auto_falls_back_to_loop_with_a_warning():
    torch.manual_seed(0)
    model = _DataDependent()
    batches = _data(8)
    d1, d2 = _directions(model, 9)
    centre = parameters_to_vector(model.parameters()).detach().clone()
    with pytest.warns(UserWarning, match="vmap failed on _DataDependent.*one grid point at a time"):
        surface = loss_surface(model, nn.functional.cross_entropy, iter(batches), d1, d2, ALPHAS, BETAS)
    assert surface.method == "loop"
    np.testing.assert_allclose(surface.train_loss,
                               _direct(model, nn.functional.cross_entropy, batches, d1, d2, centre),
                               rtol=0, atol=1e-10)
    with pytest.raises(RuntimeError, match="method='vmap' failed on _DataDependent.*use method='loop'"):
        loss_surface(model, nn.functional.cross_entropy, batches, d1, d2, ALPHAS, BETAS, method="vmap")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"direction_1": torch.zeros(4)}, r"direction_1.shape=\(4,\) is invalid: expected \(147,\)"),
    ({"alphas": []}, r"alphas.shape=\(0,\) is invalid"),
    ({"betas": [0.0, np.nan]}, "betas=.* is invalid: expected finite values"),
    ({"method": "fast"}, "method='fast' is invalid"),
    ({"points_per_pass": 0}, "points_per_pass=0 is invalid"),
    ({"batches": []}, "batches=.* is invalid: expected at least one non-empty batch"),
])
def test_rejects_bad_input(kwargs, match):
    model = _mlp()
    d1, d2 = _directions(model, 0)
    args = {"batches": _data(0), "direction_1": d1, "direction_2": d2, "alphas": ALPHAS, "betas": BETAS,
            **kwargs}
    with pytest.raises(ValueError, match=match):
        loss_surface(model, nn.functional.cross_entropy, args.pop("batches"), args.pop("direction_1"),
                     args.pop("direction_2"), args.pop("alphas"), args.pop("betas"), **args)
