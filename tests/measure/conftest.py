"""Small float64 networks and data, with dense references computed independently of the package."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

LOSS = nn.functional.cross_entropy


def make_mlp(seed: int = 0) -> nn.Module:
    """MLP 8 -> 32 -> 32 -> 3 with tanh, float64 (1443 parameters)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).double()


def make_bn_model(seed: int = 1) -> nn.Module:
    """8 -> 32 -> BatchNorm -> tanh -> 3, float64, with non-trivial running statistics, left in train mode."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 3)).double()
    with torch.no_grad():
        for _ in range(5):
            model(2.0 * torch.randn(64, 8, dtype=torch.float64) + 0.5)
    return model.train()


def make_data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def uneven_batches(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of unequal size, so a batch-size-unweighted mean would be visibly wrong."""
    cuts = [0, 17, 60, len(x)]
    return [(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def flat(model: nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Full Hessian of the mean loss over all of (x, y) by torch.func.hessian, in eval mode."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    was_training = model.training
    model.eval()

    def loss_of(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, sizes)
        params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return LOSS(torch.func.functional_call(model, params, (x,)), y)

    h = torch.func.hessian(loss_of)(flat(model)).numpy()
    model.train(was_training)
    return h


@dataclass
class Problem:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    batches: list
    hessian: np.ndarray
    eigenvalues: np.ndarray    # descending
    eigenvectors: np.ndarray   # columns, same order


def _problem(model: nn.Module) -> Problem:
    x, y = make_data()
    with _one_thread():
        h = dense_hessian(model, x, y)
        w, u = np.linalg.eigh(h)
    return Problem(model, x, y, uneven_batches(x, y), h, w[::-1].copy(), u[:, ::-1].copy())


@pytest.fixture(scope="session")
def mlp_problem() -> Problem:
    return _problem(make_mlp())


@pytest.fixture(scope="session")
def bn_problem() -> Problem:
    return _problem(make_bn_model())


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def single_thread():
    """These models are tiny: intra-op threads only add contention on a shared machine. Restored after."""
    with _one_thread():
        yield


def autograd_hessian(model: nn.Module, mean_loss, parameters=None) -> np.ndarray:
    """Dense ``torch.autograd.functional.hessian`` (reverse-over-reverse) of ``mean_loss(params_dict)``.

    ``params_dict`` maps the names of ``model.named_parameters()`` to tensors; the Hessian is over the flat
    vector of ``parameters`` (default: the trainable ones), in that order. Eval mode, restored after.
    ``torch.func.hessian`` is not used as a reference: it is wrong for ``nn.LayerNorm`` in torch 2.13.
    """
    named = dict(model.named_parameters())
    if parameters is None:
        parameters = [p for p in named.values() if p.requires_grad]
    by_id = {id(p): n for n, p in named.items()}
    names = [by_id[id(p)] for p in parameters]
    shapes, sizes = [p.shape for p in parameters], [p.numel() for p in parameters]
    modes = [m.training for m in model.modules()]
    model.eval()

    def of_theta(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, sizes)
        return mean_loss({n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)})

    theta = torch.cat([p.detach().reshape(-1) for p in parameters])
    try:
        return torch.autograd.functional.hessian(of_theta, theta).numpy()
    finally:
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode


@pytest.fixture(scope="session")
def reference_hessian():
    """:func:`autograd_hessian`, for test modules (which cannot import this conftest)."""
    return autograd_hessian
