"""Closure losses ``fn(model, batch)``: a physics-informed residual of ``u'' + u = 0`` on a small MLP.

The closures differentiate ``u`` inside, with ``torch.autograd.grad`` (forward-over-reverse cannot
transform that, so the operator takes the exact double backward) or with ``torch.func`` (forward-over-reverse
works through it). Reference: the residual written in closed form for a one-hidden-layer tanh network,
``u = W2 tanh(W1 x + b1) + b2``, ``u'' = sum_j W2_j W1_j^2 tanh''(a_j)`` with ``tanh'' = -2 t (1 - t^2)``,
differentiated by ``torch.autograd.functional.hessian`` / ``torch.autograd.grad`` with no inner autograd.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.measure import (
    HessianOperator,
    closure_loss,
    gradient_noise,
    hessian_eigenpairs,
    hessian_trace,
    loss_surface,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _pinn_autograd(model, x):
    x = x.clone().requires_grad_(True)
    u = model(x)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x, create_graph=True)
    return ((d2u + u) ** 2).mean()


def _pinn_func(model, x):
    def u(point):
        return model(point.reshape(1, 1)).reshape(())

    d2u = torch.func.vmap(torch.func.hessian(u))(x.reshape(-1))
    return ((d2u + model(x).reshape(-1)) ** 2).mean()


def _u_and_d2u(params: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``u`` and ``u''`` in closed form at the points ``x`` (N, 1), each of shape (N,)."""
    w1, b1, w2, b2 = params["0.weight"], params["0.bias"], params["2.weight"], params["2.bias"]
    t = torch.tanh(x @ w1.T + b1)                       # (N, hidden)
    d2u = (-2 * t * (1 - t**2)) @ (w2 * w1.T**2).T     # sum_j W2_j W1_j^2 tanh''(a_j)
    return (t @ w2.T + b2).reshape(-1), d2u.reshape(-1)


def _residual(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``u'' + u`` at the points ``x``."""
    u, d2u = _u_and_d2u(params, x)
    return d2u + u


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 5), nn.Tanh(), nn.Linear(5, 1)).double()


POINTS = torch.linspace(0.0, 3.0, 13, dtype=torch.float64)[:, None]
BATCHES = [POINTS[:5], POINTS[5:]]                      # uneven: the mean is weighted by points per batch


def _analytic_mean_loss(params):
    return _residual(params, POINTS).square().mean()


CLOSURES = {"autograd_inside": _pinn_autograd, "torch_func_inside": _pinn_func}


@pytest.fixture(scope="module")
def pinn_hessian(reference_hessian):
    return reference_hessian(_model(), _analytic_mean_loss)


@pytest.mark.parametrize("inner", list(CLOSURES))
def test_closure_hessian_eigenpairs_and_trace(inner, pinn_hessian):
    model, loss = _model(), closure_loss(CLOSURES[inner])
    h = pinn_hessian
    w = np.linalg.eigvalsh(h)[::-1]
    expected_path = "reverse-over-reverse" if inner == "autograd_inside" else "forward-over-reverse"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        op = HessianOperator(model, loss, BATCHES)
        dense = op.matmat(torch.eye(op.dim, dtype=torch.float64)).numpy()
        res = hessian_eigenpairs(model, loss, BATCHES, k=3, tol=1e-10)
        trace = hessian_trace(model, loss, BATCHES, method="exact")
    fallbacks = [w for w in caught if "reverse-over-reverse" in str(w.message)]
    assert len(fallbacks) == (3 if expected_path == "reverse-over-reverse" else 0)
    assert op.hvp_method == res.hvp == trace.hvp == expected_path
    np.testing.assert_allclose(dense, h, rtol=0, atol=1e-10 * np.abs(h).max())
    np.testing.assert_allclose(res.eigenvalues, w[:3], rtol=1e-8)
    assert trace.estimate == pytest.approx(np.trace(h), rel=1e-10)


def _explicit_residual_gradients(model) -> np.ndarray:
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    rows = []
    for x in POINTS:
        grads = torch.autograd.grad(_residual(params, x[None]).square().sum(), list(params.values()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]).numpy())
    return np.array(rows)


@pytest.mark.parametrize("inner", list(CLOSURES))
def test_closure_gradient_noise_per_collocation_point(inner):
    model, loss = _model(), closure_loss(CLOSURES[inner])
    g = _explicit_residual_gradients(model)
    sigma = np.cov(g.T, bias=True)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((g.shape[1], 3)))
    if inner == "autograd_inside":     # vmap cannot batch torch.autograd.grad: one example at a time
        with pytest.warns(UserWarning, match="vmap\\(grad\\) failed .* one example at a time"):
            noise = gradient_noise(model, loss, BATCHES, q, chunk_size=4)
    else:
        noise = gradient_noise(model, loss, BATCHES, q, chunk_size=4)
    assert noise.num_examples == len(POINTS)
    np.testing.assert_allclose(noise.trace, np.trace(sigma), rtol=1e-10)
    np.testing.assert_allclose(noise.mode_noise, np.einsum("mi,mn,ni->i", q, sigma, q), rtol=1e-9)
    np.testing.assert_allclose(noise.mean_gradient, g.mean(0), rtol=0, atol=1e-12 * np.abs(g).max())


@pytest.mark.parametrize("inner", list(CLOSURES))
def test_closure_loss_surface_matches_direct_evaluation(inner):
    model, loss = _model(), closure_loss(CLOSURES[inner])
    named = dict(model.named_parameters())
    centre = torch.cat([p.detach().reshape(-1) for p in named.values()])
    d1, d2 = (torch.as_tensor(v) for v in np.random.default_rng(2).standard_normal((2, centre.numel())))
    alphas, betas = np.array([-0.4, 0.0, 0.3]), np.array([-0.2, 0.5])
    if inner == "autograd_inside":
        with pytest.warns(UserWarning, match="one grid point at a time"):
            surface = loss_surface(model, loss, BATCHES, d1, d2, alphas, betas)
        assert surface.method == "loop"
    else:
        surface = loss_surface(model, loss, BATCHES, d1, d2, alphas, betas)
        assert surface.method == "vmap"
    sizes = [p.numel() for p in named.values()]
    expected = np.empty((3, 2))
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            parts = torch.split(centre + a * d1 + b * d2, sizes)
            params = {n: t.reshape(p.shape) for (n, p), t in zip(named.items(), parts, strict=True)}
            expected[i, j] = float(_analytic_mean_loss(params))
    np.testing.assert_allclose(surface.train_loss, expected, rtol=1e-12)


def _with_boundary(model, batch):
    interior, boundary = batch["interior"], batch["boundary"]
    return _pinn_func(model, interior) + model(boundary).square().mean()


def test_closure_over_batches_without_a_per_example_decomposition(reference_hessian):
    model = _model()
    boundary = torch.zeros(2, 1, dtype=torch.float64)
    batches = [{"interior": x, "boundary": boundary} for x in BATCHES]
    loss = closure_loss(_with_boundary, batch_size=lambda b: len(b["interior"]))

    def mean_loss(params):      # each batch weighted by its interior points
        u_b = _u_and_d2u(params, boundary)[0].square().mean()
        return sum(len(x) * (_residual(params, x).square().mean() + u_b) for x in BATCHES) / len(POINTS)

    h = reference_hessian(model, mean_loss)
    trace = hessian_trace(model, loss, batches, method="exact")
    assert trace.estimate == pytest.approx(np.trace(h), rel=1e-10)
    with pytest.raises(ValueError, match=r"leading dimensions \[2, 5\] and 5 examples' is invalid: expected "
                                         r"the examples along the leading dimension of every tensor"):
        gradient_noise(model, loss, batches)
    with pytest.raises(ValueError, match=r"batches=.*leading dimensions \[2, 5\]' is invalid: expected "
                                         r"tensors sharing one leading \(example\) dimension, or pass "
                                         r"closure_loss"):
        hessian_trace(model, closure_loss(_with_boundary), batches, method="exact")


def test_closure_validation_messages():
    model = _model()
    with pytest.raises(ValueError, match=r"fn=3 is invalid: expected a callable fn\(model, batch\)"):
        closure_loss(3)
    with pytest.raises(ValueError, match=r"batch_size=4 is invalid: expected None or a callable"):
        closure_loss(_pinn_func, batch_size=4)
    with pytest.raises(ValueError, match=r"batches=.*Tensor of shape \(13, 1\).* is invalid: expected a "
                                         r"collection of batches: wrap a single batch in a list"):
        hessian_eigenpairs(model, closure_loss(_pinn_func), POINTS, k=2)
    with pytest.raises(ValueError, match=r"loss_fn='mse' is invalid: expected a callable loss_fn"):
        hessian_trace(model, "mse", [POINTS], method="exact")
    with pytest.raises(ValueError, match=r"batch_size\(batch\)=0 is invalid: expected an integer >= 1"):
        hessian_trace(model, closure_loss(_pinn_func, batch_size=lambda b: 0), [POINTS], method="exact")
    with pytest.raises(ValueError, match=r"loss_fn\(\.\.\.\)=.* of shape \(13,\)' is invalid: expected a "
                                         r"scalar"):
        hessian_trace(model, closure_loss(lambda m, x: m(x).reshape(-1)), [POINTS], method="exact")
