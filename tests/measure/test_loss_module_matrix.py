"""Every measurement on a matrix of losses x modules, against references computed without the package.

References (float64, eval mode, over the flat *trainable* parameters in ``model.parameters()`` order):
the dense Hessian of the batch-size-weighted mean loss by ``torch.autograd.functional.hessian`` (itself
checked against central differences of gradients below); per-example gradients by one
``torch.autograd.grad`` call per example on the module itself; the loss surface by writing each grid point
into a copy of the model with ``vector_to_parameters`` and running the batches.

Why not ``torch.func.hessian`` as the dense reference: in torch 2.13 it is wrong for ``nn.LayerNorm`` (the
rows of the LayerNorm weight are off by ~0.1 and the matrix is not symmetric; ``jacrev(jacrev(f))`` is
wrong too), while ``torch.autograd.functional.hessian`` and central differences agree to 1e-8 —
:func:`test_dense_reference_matches_central_differences` keeps that reference honest.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sgd_dynamics.measure import (
    HessianOperator,
    gradient_noise,
    hessian_eigenpairs,
    hessian_trace,
    loss_surface,
)

pytestmark = pytest.mark.usefixtures("single_thread")

N_IN, N_HIDDEN, N_OUT = 3, 3, 3      # 20-40 parameters: a Lanczos run needs about m products


# --- losses: (loss_fn, kind of targets) ------------------------------------------------------------------

def _user_loss(out, y):
    return ((out - y) ** 2).sum(-1).mean() + 0.1 * torch.cosh(out).mean()


LOSSES = {
    "mse": (nn.MSELoss(), "real"),
    "mse_sum": (nn.MSELoss(reduction="sum"), "real"),
    "cross_entropy": (nn.CrossEntropyLoss(), "class"),
    "cross_entropy_sum": (nn.CrossEntropyLoss(reduction="sum"), "class"),
    "nll_log_softmax": (lambda out, y: F.nll_loss(F.log_softmax(out, -1), y), "class"),
    "bce_with_logits": (nn.BCEWithLogitsLoss(), "binary"),
    "huber": (nn.HuberLoss(delta=0.5), "real"),
    "smooth_l1": (nn.SmoothL1Loss(beta=0.5), "real"),
    "user_callable": (_user_loss, "real"),
}


def make_targets(kind: str, n: int, g: torch.Generator) -> torch.Tensor:
    if kind == "class":
        return torch.randint(0, N_OUT, (n,), generator=g)
    if kind == "binary":
        return torch.randint(0, 2, (n, N_OUT), generator=g).double()
    return torch.randn(n, N_OUT, generator=g, dtype=torch.float64)


# --- modules: (model, inputs of n examples) ---------------------------------------------------------------

class TokenBag(nn.Module):
    """Embedding of 3 integer tokens, averaged, then a linear read-out."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Embedding(5, N_HIDDEN), nn.Linear(N_HIDDEN, N_OUT)

    def forward(self, tokens):
        return self.head(torch.tanh(self.embed(tokens).mean(1)))


class Tied(nn.Module):
    """Two layers sharing one weight matrix (``dec.weight is enc.weight``)."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(N_IN, N_IN), nn.Linear(N_IN, N_IN)
        self.head = nn.Linear(N_IN, N_OUT)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.head(torch.tanh(self.dec(torch.tanh(self.enc(x)))))


class WithBuffers(nn.Module):
    """A fixed affine map kept in buffers between two layers."""

    def __init__(self):
        super().__init__()
        self.inner, self.outer = nn.Linear(N_IN, N_HIDDEN), nn.Linear(N_HIDDEN, N_OUT)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, N_HIDDEN))
        self.register_buffer("shift", torch.linspace(-0.2, 0.2, N_HIDDEN))

    def forward(self, x):
        return self.outer(torch.tanh(self.inner(x) * self.scale + self.shift))


def _mlp(*middle):
    return nn.Sequential(nn.Linear(N_IN, N_HIDDEN), *middle, nn.Linear(N_HIDDEN, N_OUT))


def _features(n, g):
    return torch.randn(n, N_IN, generator=g, dtype=torch.float64)


def make_module(name: str, n: int, seed: int = 0):
    """The model (float64) and the inputs of ``n`` examples."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    if name == "linear":
        return nn.Linear(N_IN, N_OUT).double(), _features(n, g)
    if name == "mlp":
        return _mlp(nn.Tanh()).double(), _features(n, g)
    if name == "conv1d":
        model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(6, N_OUT)).double()
        return model, torch.randn(n, 1, 5, generator=g, dtype=torch.float64)
    if name == "conv2d":
        model = nn.Sequential(nn.Conv2d(1, 1, 2), nn.Tanh(), nn.Flatten(), nn.Linear(4, N_OUT)).double()
        return model, torch.randn(n, 1, 3, 3, generator=g, dtype=torch.float64)
    if name == "batchnorm_eval":
        model = _mlp(nn.BatchNorm1d(N_HIDDEN), nn.Tanh()).double()
        with torch.no_grad():                       # non-trivial running statistics
            for _ in range(3):
                model(2.0 * torch.randn(32, N_IN, generator=g, dtype=torch.float64) + 0.5)
        return model.train(), _features(n, g)
    if name == "layernorm":
        return _mlp(nn.LayerNorm(N_HIDDEN), nn.Tanh()).double(), _features(n, g)
    if name == "dropout_eval":
        return _mlp(nn.Tanh(), nn.Dropout(0.5)).double().train(), _features(n, g)
    if name == "embedding":
        return TokenBag().double(), torch.randint(0, 5, (n, 3), generator=g)
    if name == "frozen":
        model = _mlp(nn.Tanh()).double()
        model[0].bias.requires_grad_(False)
        model[2].weight.requires_grad_(False)
        return model, _features(n, g)
    if name == "tied":
        return Tied().double(), _features(n, g)
    if name == "buffers":
        return WithBuffers().double(), _features(n, g)
    raise KeyError(name)


MODULES = ["linear", "mlp", "conv1d", "conv2d", "batchnorm_eval", "layernorm", "dropout_eval", "embedding",
           "frozen", "tied", "buffers"]


def make_case(module: str, loss: str, n: int = 12, cuts=(0, 12)):
    model, x = make_module(module, n)
    loss_fn, kind = LOSSES[loss]
    y = make_targets(kind, n, torch.Generator().manual_seed(7))
    batches = [(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return model, loss_fn, batches


# --- references -------------------------------------------------------------------------------------------

def trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _mean_loss_of_theta(model, loss_fn, batches):
    """``theta -> sum_b n_b L_b / N`` over the flat trainable parameters, and ``theta`` now."""
    named = trainable(model)
    names, shapes = [n for n, _ in named], [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    total = sum(len(y) for _, y in batches)

    def mean_loss(theta):
        params = {n: t.reshape(s) for n, t, s in zip(names, torch.split(theta, sizes), shapes, strict=True)}
        return sum(len(y) * loss_fn(torch.func.functional_call(model, params, (x,)), y)
                   for x, y in batches) / total

    return mean_loss, torch.cat([p.detach().reshape(-1) for _, p in named])


def dense_hessian(model, loss_fn, batches) -> np.ndarray:
    """``torch.autograd.functional.hessian`` of the mean loss over the trainable parameters (eval mode)."""
    modes = [m.training for m in model.modules()]
    model.eval()
    mean_loss, theta = _mean_loss_of_theta(model, loss_fn, batches)
    h = torch.autograd.functional.hessian(mean_loss, theta).numpy()
    for m, mode in zip(model.modules(), modes, strict=True):
        m.training = mode
    return h


def central_difference_hessian(model, loss_fn, batches, step: float = 1e-6) -> np.ndarray:
    """``(grad L(theta + h e_j) - grad L(theta - h e_j)) / 2h``; error O(h^2) + O(eps / h)."""
    probe = copy.deepcopy(model).eval()
    mean_loss, theta = _mean_loss_of_theta(probe, loss_fn, batches)

    def grad(t):
        t = t.clone().requires_grad_(True)
        return torch.autograd.grad(mean_loss(t), t)[0]

    eye = torch.eye(theta.numel(), dtype=theta.dtype)
    return torch.stack([(grad(theta + step * e) - grad(theta - step * e)) / (2 * step) for e in eye]).numpy()


def explicit_gradients(model, loss_fn, batches) -> np.ndarray:
    """``(N, m)`` per-example gradients over the trainable parameters: one autograd.grad per example."""
    probe = copy.deepcopy(model).eval()
    params = [p for _, p in trainable(probe)]
    rows = []
    for x, y in batches:
        for i in range(len(y)):
            grads = torch.autograd.grad(loss_fn(probe(x[i:i + 1]), y[i:i + 1]), params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]).numpy())
    return np.array(rows)


def direct_surface(model, loss_fn, batches, d1, d2, alphas, betas) -> np.ndarray:
    probe = copy.deepcopy(model).eval()
    params = [p for _, p in trainable(probe)]
    centre = parameters_to_vector(params).detach().clone()
    out = np.empty((len(alphas), len(betas)))
    with torch.no_grad():
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                vector_to_parameters(centre + a * d1 + b * d2, params)
                out[i, j] = sum(float(loss_fn(probe(x), y)) * len(y) for x, y in batches) / sum(
                    len(y) for _, y in batches)
    return out


# --- checks -----------------------------------------------------------------------------------------------

def check_eigenpairs(res, h: np.ndarray, k: int) -> None:
    w, u = np.linalg.eigh(h)
    w, u = w[::-1], u[:, ::-1]
    scale = np.abs(w).max()
    np.testing.assert_allclose(res.eigenvalues, w[:k], rtol=0, atol=1e-8 * scale)
    vecs = res.eigenvectors
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(k), atol=1e-10)
    assert np.all(np.linalg.norm(h @ vecs - vecs * res.eigenvalues, axis=0) <= 1e-7 * scale)
    for i in range(k):       # well-separated eigenvalues: eigenvectors match up to sign
        if min(abs(w[i] - w[j]) for j in (i - 1, i + 1) if j >= 0) > 1e-3 * scale:
            assert abs(vecs[:, i] @ u[:, i]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("module", MODULES)
def test_measurements_match_references(module, loss):
    model, loss_fn, batches = make_case(module, loss)
    modes = [m.training for m in model.modules()]
    h = dense_hessian(model, loss_fn, batches)
    m = h.shape[0]
    assert m == sum(p.numel() for p in model.parameters() if p.requires_grad)
    scale = max(np.abs(h).max(), 1e-300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the fallback's warning is tested on its own below
        # Every column of H through one operator, both exact HVP formulations.
        for hvp in ("auto", "reverse-over-reverse"):
            op = HessianOperator(model, loss_fn, batches, block_size=16, hvp=hvp)
            dense = op.matmat(torch.eye(m, dtype=torch.float64)).numpy()
            np.testing.assert_allclose(dense, h, rtol=0, atol=1e-11 * scale)
            assert op.hvp_count == m
        res = hessian_eigenpairs(model, loss_fn, batches, k=3, tol=1e-10)
        check_eigenpairs(res, h, 3)
        exact = hessian_trace(model, loss_fn, batches, method="exact")
        hutch = hessian_trace(model, loss_fn, batches, 30, method="hutch++", seed=1)
    assert exact.estimate == pytest.approx(np.trace(h), rel=1e-10, abs=1e-12 * scale)
    assert exact.hvp_count == m and exact.stderr == 0.0
    # 4 standard errors (a fixed seed, ~6e-5 two-sided under normality); plus rounding for exact sketches.
    assert abs(hutch.estimate - np.trace(h)) <= 4 * hutch.stderr + 1e-9 * scale * m

    g = explicit_gradients(model, loss_fn, batches)
    sigma = np.cov(g.T, bias=True)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((m, 2)))
    noise = gradient_noise(model, loss_fn, batches, q, chunk_size=4)
    g_scale = max(np.abs(g).max() ** 2, 1e-300)
    np.testing.assert_allclose(noise.trace, np.trace(sigma), rtol=1e-10, atol=1e-13 * g_scale)
    np.testing.assert_allclose(noise.mode_noise, np.einsum("mi,mn,ni->i", q, sigma, q), rtol=1e-9,
                               atol=1e-13 * g_scale)
    np.testing.assert_allclose(noise.mean_gradient, g.mean(0), rtol=0, atol=1e-12 * np.abs(g).max())

    alphas, betas = np.array([-0.5, 0.0, 0.7]), np.array([-0.3, 0.4])
    d1, d2 = (torch.as_tensor(c) for c in np.random.default_rng(1).standard_normal((2, m)))
    surface = loss_surface(model, loss_fn, batches, d1, d2, alphas, betas)
    ref = direct_surface(model, loss_fn, batches, d1, d2, alphas, betas)
    np.testing.assert_allclose(surface.train_loss, ref, rtol=1e-12, atol=1e-12)
    assert [mod.training for mod in model.modules()] == modes       # every mode restored


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("module", MODULES)
def test_dense_reference_matches_central_differences(module, loss):
    model, loss_fn, batches = make_case(module, loss)
    h = dense_hessian(model, loss_fn, batches)
    # Truncation h^2 |d^4 L| / 6 and rounding eps |grad| / h, both ~1e-9 at h = 1e-6 (the 3-unit LayerNorm
    # is strongly curved: its error is 1e-3 at h = 1e-4 and falls as h^2, truncation, not the reference).
    np.testing.assert_allclose(central_difference_hessian(model, loss_fn, batches), h, rtol=0,
                               atol=1e-6 * max(np.abs(h).max(), 1.0))
