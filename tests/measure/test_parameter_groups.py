"""Operators restricted to a parameter group: the diagonal block of the dense Hessian, in the group's order.

References: the dense ``torch.func.hessian`` of the session MLP (``mlp_problem``, tanh layers), sliced to
the group's rows and columns; per-example gradients by one ``torch.autograd.grad`` per example; a tied-weight
network written out by hand.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.measure import (
    HessianOperator,
    ParameterLayout,
    gradient_noise,
    hessian_eigenpairs,
    hessian_trace,
    loss_surface,
    network_noise_geometry,
    selected_parameters,
)

LOSS = nn.functional.cross_entropy
pytestmark = pytest.mark.usefixtures("single_thread")


def _indices(model: nn.Module, tensors: list[torch.Tensor]) -> np.ndarray:
    """Positions of ``tensors`` in ``parameters_to_vector(model.parameters())``, in the order given."""
    offsets, start = {}, 0
    for p in model.parameters():
        offsets[id(p)] = np.arange(start, start + p.numel())
        start += p.numel()
    return np.concatenate([offsets[id(t)] for t in tensors])


def _block_eigh(h: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, u = np.linalg.eigh(h[np.ix_(idx, idx)])
    return w[::-1], u[:, ::-1]


@pytest.mark.parametrize("selection", ["name_filter", "reversed_list"])
def test_per_layer_eigenpairs_are_those_of_the_diagonal_block(mlp_problem, selection):
    model = mlp_problem.model
    last = model[4]
    if selection == "name_filter":
        parameters, order = (lambda name: name.startswith("4.")), [last.weight, last.bias]
    else:
        parameters = order = [last.bias, last.weight]
    w, u = _block_eigh(mlp_problem.hessian, _indices(model, order))
    res = hessian_eigenpairs(model, LOSS, mlp_problem.batches, k=4, tol=1e-10, parameters=parameters)
    assert res.eigenvectors.shape == (99, 4)
    np.testing.assert_allclose(res.eigenvalues, w[:4], rtol=1e-8)
    for i in range(4):          # the top of this block is well separated (relative gaps > 1%)
        assert abs(res.eigenvectors[:, i] @ u[:, i]) == pytest.approx(1.0, abs=1e-7)


def test_per_layer_trace_and_operator(mlp_problem):
    model, h = mlp_problem.model, mlp_problem.hessian
    first = [model[0].weight, model[0].bias]
    idx = _indices(model, first)
    trace = hessian_trace(model, LOSS, mlp_problem.batches, method="exact", parameters=first)
    assert trace.hvp_count == idx.size
    assert trace.estimate == pytest.approx(np.trace(h[np.ix_(idx, idx)]), rel=1e-10)
    op = HessianOperator(model, LOSS, mlp_problem.batches, parameters=lambda n: n.startswith("0."))
    v = np.random.default_rng(0).standard_normal((idx.size, 3))
    np.testing.assert_allclose(op.matmat(torch.from_numpy(v)).numpy(), h[np.ix_(idx, idx)] @ v, rtol=1e-10,
                               atol=1e-12)


def test_group_gradient_noise_and_surface(mlp_problem):
    model, x, y = mlp_problem.model, mlp_problem.x, mlp_problem.y
    group = [model[2].bias, model[4].weight]          # not contiguous in the full flat vector
    probe = copy.deepcopy(model).eval()
    probe_group = [probe[2].bias, probe[4].weight]
    g = np.array([torch.cat([t.reshape(-1) for t in torch.autograd.grad(LOSS(probe(xi[None]), yi[None]),
                                                                        probe_group)]).numpy()
                  for xi, yi in zip(x, y, strict=True)])
    sigma = np.cov(g.T, bias=True)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((g.shape[1], 2)))
    noise = gradient_noise(model, LOSS, mlp_problem.batches, q, parameters=group)
    np.testing.assert_allclose(noise.trace, np.trace(sigma), rtol=1e-10)
    np.testing.assert_allclose(noise.mode_noise, np.einsum("mi,mn,ni->i", q, sigma, q), rtol=1e-10)

    d1, d2 = (torch.as_tensor(v) for v in np.random.default_rng(2).standard_normal((2, g.shape[1])))
    alphas, betas = np.array([-0.5, 0.5]), np.array([0.0, 0.3])
    surface = loss_surface(model, LOSS, mlp_problem.batches, d1, d2, alphas, betas, parameters=group)
    centre = torch.nn.utils.parameters_to_vector(probe_group).detach().clone()
    expected = np.empty((2, 2))
    with torch.no_grad():
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                torch.nn.utils.vector_to_parameters(centre + a * d1 + b * d2, probe_group)
                expected[i, j] = float(LOSS(probe(x), y))
    np.testing.assert_allclose(surface.train_loss, expected, rtol=1e-12)


def test_group_noise_geometry_dense_path(mlp_problem):
    model = mlp_problem.model
    idx = _indices(model, [model[4].weight, model[4].bias])
    w, _ = _block_eigh(mlp_problem.hessian, idx)
    geo = network_noise_geometry(model, LOSS, mlp_problem.batches, k=idx.size,
                                 parameters=lambda n: n.startswith("4."))
    assert geo.num_parameters == idx.size
    np.testing.assert_allclose(geo.hessian_eigenvalues, w, rtol=1e-9, atol=1e-12 * w[0])


def test_embed_and_default_group_of_a_frozen_model():
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))
    model[0].bias.requires_grad_(False)
    default = ParameterLayout.from_group(model)
    assert default.names == ("0.weight", "2.weight", "2.bias") and default.dim == 6 + 4 + 2
    everything = ParameterLayout.from_module(model)
    v = np.arange(1.0, 13.0).reshape(12, 1) * np.array([[1.0, -1.0]])
    full = default.embed(v, everything)
    expected = np.zeros((14, 2))
    expected[np.r_[0:6, 8:14]] = v                  # 0.bias (positions 6, 7) is frozen: zero there
    np.testing.assert_array_equal(full, expected)
    np.testing.assert_array_equal(default.embed(v[:, 0], everything), expected[:, 0])


class _TiedByHand(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.dec, self.head = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.head(torch.tanh(self.dec(torch.tanh(self.enc(x)))))


def test_tied_weights_against_a_hand_written_network():
    torch.manual_seed(0)
    model = _TiedByHand().double()
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1])
    assert [n for n, _ in selected_parameters(model)] == ["enc.weight", "enc.bias", "dec.bias", "head.weight",
                                                          "head.bias"]

    def by_hand(theta):           # W appears twice; the flat order is that of model.parameters()
        w, b1, b2, v, c = torch.split(theta, [9, 3, 3, 6, 2])
        w = w.reshape(3, 3)
        hidden = torch.tanh(torch.tanh(x @ w.T + b1) @ w.T + b2)
        return LOSS(hidden @ v.reshape(2, 3).T + c, y)

    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    h = torch.autograd.functional.hessian(by_hand, theta).numpy()
    op = HessianOperator(model, LOSS, [(x, y)])
    np.testing.assert_allclose(op.matmat(torch.eye(23, dtype=torch.float64)).numpy(), h, rtol=0, atol=1e-12)
    shared = HessianOperator(model, LOSS, [(x, y)], parameters=[model.dec.weight])   # the same tensor
    np.testing.assert_allclose(shared.matmat(torch.eye(9, dtype=torch.float64)).numpy(), h[:9, :9], rtol=0,
                               atol=1e-12)


def test_group_validation_messages(mlp_problem):
    model, batches = mlp_problem.model, mlp_problem.batches
    with pytest.raises(ValueError, match=r"parameters=.* is invalid: expected a name filter accepting at "
                                         r"least one trainable parameter of \['0.weight'"):
        hessian_trace(model, LOSS, batches, parameters=lambda n: n.startswith("9."))
    with pytest.raises(ValueError, match=r"parameters=.*Tensor of shape \(3,\).* is invalid: expected "
                                         r"parameters of the model"):
        hessian_trace(model, LOSS, batches, parameters=[torch.zeros(3)])
    with pytest.raises(ValueError, match=r"parameters=.*4.bias twice.* is invalid: expected each parameter "
                                         r"at most once"):
        hessian_trace(model, LOSS, batches, parameters=[model[4].bias, model[4].bias])
    with pytest.raises(ValueError, match=r"parameters='str' is invalid: expected None, a callable"):
        hessian_trace(model, LOSS, batches, parameters="4.weight")
    with pytest.raises(ValueError, match=r"parameters=\[\] is invalid: expected a non-empty list"):
        hessian_trace(model, LOSS, batches, parameters=[])
    frozen = nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError, match=r"parameters=None is invalid: expected a group of parameters: the "
                                         r"model has no trainable parameters"):
        hessian_trace(frozen, nn.MSELoss(), [(torch.zeros(2, 2), torch.zeros(2, 1))])
    with pytest.raises(ValueError, match=r"direction_1.shape=\(1443,\) is invalid: expected \(99,\), the "
                                         r"number of parameters in the group"):
        loss_surface(model, LOSS, batches, torch.zeros(1443), torch.zeros(99), [0.0], [0.0],
                     parameters=lambda n: n.startswith("4."))
    layout = ParameterLayout.from_group(model, lambda n: n.startswith("4."))
    with pytest.raises(ValueError, match=r"vectors.shape=\(98,\) is invalid: expected \(99,\) or \(99, k\)"):
        layout.embed(np.zeros(98), ParameterLayout.from_module(model))
