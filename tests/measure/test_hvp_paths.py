"""The two exact HVP formulations: MSE regression works forward-over-reverse; the reverse fallback is exact.

Reference: dense ``torch.autograd.functional.hessian`` of the mean loss (``reference_hessian`` fixture).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from torch import nn
from torch.func import functional_call

from sgd_dynamics.measure import HessianOperator, hessian_eigenpairs, hessian_trace, top_eigenpairs

pytestmark = pytest.mark.usefixtures("single_thread")


def _regression(activation: type[nn.Module], dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), activation(), nn.Linear(6, 2)).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(20, 4, generator=g).to(dtype)
    y = torch.randn(20, 2, generator=g).to(dtype)
    return model, [(x[:7], y[:7]), (x[7:], y[7:])]


def _mean_loss(model, loss_fn, batches):
    n = sum(len(y) for _, y in batches)
    return lambda p: sum(len(y) * loss_fn(functional_call(model, p, (x,)), y) for x, y in batches) / n


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU, nn.GELU, nn.Sigmoid])
def test_mse_eigenpairs_forward_over_reverse_without_fallback(activation, dtype, reference_hessian):
    # Defect 2: every one of these raised "RuntimeError: ZeroTensors are immutable".
    model, batches = _regression(activation, dtype)
    model64 = _regression(activation, torch.float64)[0]
    model64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    batches64 = [(x.double(), y.double()) for x, y in batches]
    h = reference_hessian(model64, _mean_loss(model64, nn.MSELoss(), batches64))
    w = np.linalg.eigvalsh(h)[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)     # no fallback warning: the forward path itself works
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        res = hessian_eigenpairs(model, nn.MSELoss(), batches, k=3, tol=tol)
    assert res.hvp == "forward-over-reverse"
    rtol = 1e-9 if dtype == torch.float64 else 1e-4     # float32 HVPs: ~1e-6 relative rounding per product
    np.testing.assert_allclose(res.eigenvalues, w[:3], rtol=rtol, atol=rtol * abs(w[0]))


def test_mse_autoencoder_targets_are_the_inputs(reference_hessian):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 3)).double()
    x = torch.randn(15, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    batches = [(x, x)]
    h = reference_hessian(model, _mean_loss(model, nn.MSELoss(reduction="sum"), batches))
    op = HessianOperator(model, nn.MSELoss(reduction="sum"), batches, hvp="forward-over-reverse")
    np.testing.assert_allclose(op.matmat(torch.eye(op.dim, dtype=torch.float64)).numpy(), h, rtol=0,
                               atol=1e-12 * np.abs(h).max())


class _NoForwardAD(torch.autograd.Function):
    """softplus as a custom Function without ``setup_context``/``jvp``: torch.func cannot transform it.

    Its backward is written in differentiable torch operations, so double backward works.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return nn.functional.softplus(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


class _CustomActivation(nn.Module):
    def forward(self, x):
        return _NoForwardAD.apply(x)


def _custom_problem():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), _CustomActivation(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(18, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (18,), generator=g)
    return model, nn.CrossEntropyLoss(), [(x[:5], y[:5]), (x[5:], y[5:])]


def _softplus_model_reference(model, loss_fn, batches, reference_hessian):
    """The same network with the built-in softplus, which every AD mode supports."""
    twin = nn.Sequential(nn.Linear(4, 5), nn.Softplus(), nn.Linear(5, 3)).double()
    twin.load_state_dict(model.state_dict())
    return reference_hessian(twin, _mean_loss(twin, loss_fn, batches))


def test_auto_falls_back_to_exact_double_backward_with_a_warning(reference_hessian):
    model, loss_fn, batches = _custom_problem()
    h = _softplus_model_reference(model, loss_fn, batches, reference_hessian)
    op = HessianOperator(model, loss_fn, batches)
    assert op.hvp_method is None                           # decided by the first product
    v = np.random.default_rng(0).standard_normal((op.dim, 5))
    with pytest.warns(UserWarning, match=r"forward-over-reverse .* failed on Sequential .*reverse-over-rev"):
        hv = op.matmat(torch.from_numpy(v)).numpy()
    assert op.hvp_method == "reverse-over-reverse"
    assert op.hvp_count == 5                                # the failed forward attempt is not counted
    np.testing.assert_allclose(hv, h @ v, rtol=0, atol=1e-12 * np.abs(h).max() * np.abs(v).max())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)                      # decided once: no second warning
        op.matmat(torch.from_numpy(v[:, 0]))
    assert op.hvp_count == 6


def test_fallback_eigenpairs_trace_and_honest_hvp_count(reference_hessian):
    model, loss_fn, batches = _custom_problem()
    h = _softplus_model_reference(model, loss_fn, batches, reference_hessian)
    w = np.linalg.eigvalsh(h)[::-1]
    with pytest.warns(UserWarning, match="reverse-over-reverse"):
        res = hessian_eigenpairs(model, loss_fn, batches, k=3, tol=1e-10)
    assert res.hvp == "reverse-over-reverse"
    np.testing.assert_allclose(res.eigenvalues, w[:3], rtol=1e-9)
    with pytest.warns(UserWarning, match="reverse-over-reverse"):
        trace = hessian_trace(model, loss_fn, batches, method="exact")
    assert trace.hvp == "reverse-over-reverse" and trace.hvp_count == h.shape[0]
    assert trace.estimate == pytest.approx(np.trace(h), rel=1e-11)
    # hvp_count equals the number of vectors the eigensolver actually applied, counted outside.
    op = HessianOperator(model, loss_fn, batches, hvp="reverse-over-reverse")
    inner, applied = op.to_scipy(), [0]

    def counted(x):
        applied[0] += 1 if x.ndim == 1 else x.shape[1]
        return inner.matmat(x.reshape(x.shape[0], -1)).reshape(x.shape)

    lin = spla.LinearOperator(inner.shape, matvec=counted, matmat=counted, dtype=np.float64)
    top_eigenpairs(lin, 3, tol=1e-10)
    assert op.hvp_count == applied[0]


def test_forced_paths(reference_hessian):
    model, loss_fn, batches = _custom_problem()
    with pytest.raises(RuntimeError):                       # no fallback when a path is chosen
        HessianOperator(model, loss_fn, batches, hvp="forward-over-reverse").matmat(torch.zeros(43).double())
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    h = reference_hessian(plain, _mean_loss(plain, loss_fn, batches))
    v = torch.from_numpy(np.random.default_rng(5).standard_normal((h.shape[0], 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for hvp, vectorize in (("reverse-over-reverse", True), ("forward-over-reverse", False)):
            op = HessianOperator(plain, loss_fn, batches, hvp=hvp, vectorize=vectorize, block_size=3)
            np.testing.assert_allclose(op.matmat(v).numpy(), h @ v.numpy(), rtol=0,
                                       atol=1e-12 * np.abs(h).max() * 4)
            assert op.hvp_method == hvp and op.hvp_count == 4
    with pytest.raises(ValueError, match=r"hvp='double' is invalid: expected 'auto', 'forward-over-reverse' "
                                         r"or 'reverse-over-reverse'"):
        HessianOperator(plain, loss_fn, batches, hvp="double")
    with pytest.raises(ValueError, match=r"loss_fn\(\.\.\.\)=.*shape \(13,\)' is invalid: expected a scalar"):
        HessianOperator(plain, nn.CrossEntropyLoss(reduction="none"), batches[1:]).matmat(v[:, 0])


def test_one_batch_keeps_its_gradient_graph(reference_hessian):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    loss_fn, (x, y) = nn.CrossEntropyLoss(), _custom_problem()[2][1]
    h = reference_hessian(model, _mean_loss(model, loss_fn, [(x, y)]))
    v = torch.from_numpy(np.random.default_rng(6).standard_normal((h.shape[0], 3)))
    for batches in ([(x, y)], (x, y)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            op = HessianOperator(model, loss_fn, batches)
            first = op.matmat(v).numpy()
        assert op.hvp_method == "reverse-over-reverse" and op._graph is not None
        np.testing.assert_allclose(first, h @ v.numpy(), rtol=0, atol=1e-12 * np.abs(h).max() * 3)
        # The kept graph serves later products (the same numbers) and is never stale: parameters are copied.
        with torch.no_grad():
            model[0].weight.add_(1.0)
        np.testing.assert_array_equal(op.matmat(v).numpy(), first)
        with torch.no_grad():
            model[0].weight.sub_(1.0)

