"""The linear-layer identity of gradient_noise against an explicit per-example torch.autograd.grad loop."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.measure import ParameterLayout, gradient_noise, linear_layers

pytestmark = pytest.mark.usefixtures("single_thread")
NOISE = sys.modules["sgd_dynamics.measure.gradient_noise"]
LOSSES = {"ce": nn.functional.cross_entropy, "mse": nn.MSELoss()}


def _mlp(bias: bool, activation: type[nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=bias), activation(), nn.Dropout(0.5),
                         nn.Linear(5, 4, bias=bias), activation(), nn.Linear(4, 3, bias=bias)).double()


def _data(n: int, loss: str, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g) if loss == "ce" else torch.randn(n, 3, generator=g,
                                                                                  dtype=torch.float64)
    return x, y


def _reference(model: nn.Module, loss_fn, x, y, params: list[torch.Tensor]) -> np.ndarray:
    """(N, m) per-example gradients over ``params``, one autograd.grad call per example, eval mode."""
    model.eval()
    grads = (torch.autograd.grad(loss_fn(model(xi[None]), yi[None]), params)
             for xi, yi in zip(x, y, strict=True))
    rows = [torch.cat([g.reshape(-1) for g in row]) for row in grads]
    model.train()
    return torch.stack(rows).detach().numpy()


def _no_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if gradient_noise materialises a block of per-example gradients (the identity must serve)."""
    def refuse(*args, **kwargs):
        raise AssertionError("per-example gradient block computed")

    monkeypatch.setattr(NOISE, "_vmapped_gradients", refuse)
    monkeypatch.setattr(NOISE, "_looped_gradients", refuse)


def _check(noise, g: np.ndarray, q: np.ndarray) -> None:
    centred = g - g.mean(0)
    # the identity's centred moment is sum ||g_n||^2 - N ||mean||^2: rounding eps * sum ||g_n||^2 where
    # the spread vanishes (N = 1, where Sigma = 0 exactly)
    floor = 1e-15 * np.sum(g**2) / len(g)
    np.testing.assert_allclose(noise.trace, np.sum(centred**2) / len(g), rtol=1e-12, atol=floor)
    np.testing.assert_allclose(noise.mode_noise, np.mean((centred @ q) ** 2, axis=0), rtol=1e-12,
                               atol=floor * np.max(np.sum(q**2, axis=0), initial=0.0))
    np.testing.assert_allclose(noise.mean_gradient, g.mean(0), rtol=1e-12, atol=1e-16 * np.abs(g).max())


@pytest.fixture(scope="module")
def references():
    cache = {}

    def get(bias, activation, loss, n):
        key = (bias, activation, loss, n)
        if key not in cache:
            model, (x, y) = _mlp(bias, activation), _data(n, loss)
            cache[key] = model, x, y, _reference(model, LOSSES[loss], x, y, list(model.parameters()))
        return cache[key]
    return get


@pytest.mark.parametrize("k", [0, 1, 10])
@pytest.mark.parametrize("n", [1, 7, 300])
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("bias", [True, False])
def test_identity_matches_per_example_loop(references, monkeypatch, bias, activation, loss, n, k):
    model, x, y, g = references(bias, activation, loss, n)
    q = np.random.default_rng(k).standard_normal((g.shape[1], k))
    _no_blocks(monkeypatch)
    # several batches and several chunks per batch, so the merges of chunk moments are exercised
    noise = gradient_noise(model, LOSSES[loss], [(x[:4], y[:4]), (x[4:], y[4:])] if n > 4 else (x, y), q,
                           chunk_size=3 if n < 10 else 64)
    assert noise.num_examples == n and model.training
    _check(noise, g, q)


@pytest.mark.parametrize("group", ["last_weight", "biases"])
def test_identity_over_a_parameter_group(monkeypatch, group):
    model, (x, y) = _mlp(True, nn.Tanh), _data(50, "ce")
    pick = {"last_weight": lambda name: name == "6.weight",
            "biases": lambda name: name.endswith("bias")}[group]
    params = [p for name, p in model.named_parameters() if pick(name)]
    g = _reference(model, LOSSES["ce"], x, y, params)
    q = np.random.default_rng(0).standard_normal((g.shape[1], 3))
    _no_blocks(monkeypatch)
    _check(gradient_noise(model, LOSSES["ce"], (x, y), q, parameters=pick), g, q)


def _layer_norm_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).double()


def _conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 2, 2), nn.Flatten(), nn.Linear(4, 3)).double()


class _Mixing(nn.Module):
    """A custom forward that mixes examples: the identity must not be used."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out - out.mean(0)


@pytest.mark.parametrize("make", [_layer_norm_model, _conv_model, _Mixing])
def test_other_layers_fall_back_to_vmap(make):
    model, (x, y) = make(), _data(20, "ce")
    assert linear_layers(model, LOSSES["ce"], ParameterLayout.from_group(model)) is None
    if make is _Mixing:
        return                              # per-example gradients of a mixing model are not defined
    g = _reference(model, LOSSES["ce"], x, y, list(model.parameters()))
    q = np.random.default_rng(0).standard_normal((g.shape[1], 2))
    _check(gradient_noise(model, LOSSES["ce"], (x, y), q, chunk_size=6), g, q)


def test_tied_weights_and_sequence_inputs_fall_back():
    torch.manual_seed(0)
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.Tanh(), shared).double()
    assert linear_layers(tied, LOSSES["mse"], ParameterLayout.from_group(tied)) is None
    # a Linear on (batch, seq, in) inputs: each example's gradient is a sum over seq of outer products
    seq = nn.Sequential(nn.Linear(3, 2), nn.Flatten(), nn.Linear(8, 3)).double()
    assert linear_layers(seq, LOSSES["ce"], ParameterLayout.from_group(seq)) is not None
    x = torch.randn(15, 4, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (15,))
    g = _reference(seq, LOSSES["ce"], x, y, list(seq.parameters()))
    q = np.random.default_rng(0).standard_normal((g.shape[1], 2))
    _check(gradient_noise(seq, LOSSES["ce"], (x, y), q, chunk_size=4), g, q)


def test_float32_model_close_to_float64_loop():
    model, (x, y) = _mlp(True, nn.ReLU), _data(200, "ce")
    g = _reference(model, LOSSES["ce"], x, y, list(model.parameters()))
    q = np.random.default_rng(0).standard_normal((g.shape[1], 4))
    noise = gradient_noise(model.float(), LOSSES["ce"], (x.float(), y), q)
    centred = g - g.mean(0)
    # float32 activations and products: relative error ~ 1e-7 per gradient entry, 1e-5 leaves a margin
    np.testing.assert_allclose(noise.trace, np.sum(centred**2) / len(g), rtol=1e-5)
    np.testing.assert_allclose(noise.mode_noise, np.mean((centred @ q) ** 2, axis=0), rtol=1e-5)


class _MixingReLU(nn.ReLU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x - x.mean(0))


def test_a_subclass_overriding_forward_is_not_trusted():
    model = nn.Sequential(nn.Linear(3, 4), _MixingReLU(), nn.Linear(4, 2))
    assert linear_layers(model, LOSSES["ce"], ParameterLayout.from_group(model)) is None
    plain = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert linear_layers(plain, LOSSES["ce"], ParameterLayout.from_group(plain)) is not None
