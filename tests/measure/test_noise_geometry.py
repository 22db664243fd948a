"""Network noise geometry against dense H (torch.func.hessian) and dense Sigma (explicit per-example loop).

The stationary variances are checked against scipy's Lyapunov solvers and a Monte Carlo of SGD on the
quadratic model (H, Sigma of the network at theta) restricted to the top Hessian directions, with the full
correlated noise ``Q^T Sigma Q / S`` there: the drift is diagonal in the Hessian eigenbasis, so those
coordinates evolve exactly as in the full model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure import network_noise_geometry, truncated_alignment
from sgd_dynamics.theory import noise_geometry as dense

LOSS = nn.functional.cross_entropy
pytestmark = pytest.mark.usefixtures("single_thread")


@dataclass
class Network:
    model: nn.Module
    batches: list
    hessian: np.ndarray
    sigma: np.ndarray


def _flat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def loss_of(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, sizes)
        params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return LOSS(torch.func.functional_call(model, params, (x,)), y)

    return loss_of


@pytest.fixture(scope="module")
def network() -> Network:
    """Tanh MLP 8 -> 20 -> 3 (243 parameters, float64), trained 200 full-batch steps on a noisy teacher."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 20), nn.Tanh(), nn.Linear(20, 3)).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g, dtype=torch.float64)
    teacher = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = (x @ teacher + 0.5 * torch.randn(400, 3, generator=g, dtype=torch.float64)).argmax(1)
    with torch.enable_grad():
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(200):
            opt.zero_grad()
            LOSS(model(x), y).backward()
            opt.step()
    model.eval()
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    hessian = torch.func.hessian(_flat_loss(model, x, y))(theta).numpy()
    rows = []
    for xi, yi in zip(x, y, strict=True):
        grads = torch.autograd.grad(LOSS(model(xi[None]), yi[None]), list(model.parameters()))
        rows.append(torch.cat([gr.reshape(-1) for gr in grads]).numpy())
    grads = np.array(rows)
    centred = grads - grads.mean(0)
    sigma = centred.T @ centred / len(grads)
    batches = [(x[:130], y[:130]), (x[130:], y[130:])]   # uneven, so an unweighted mean would show
    return Network(model, batches, (hessian + hessian.T) / 2, sigma)


def _top(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = np.linalg.eigh(matrix)
    return vals[::-1][:k], vecs[:, ::-1][:, :k]


def test_full_rank_equals_dense_theory(network: Network) -> None:
    m = network.hessian.shape[0]
    res = network_noise_geometry(network.model, LOSS, network.batches, k=m)
    ref = dense.noise_geometry(network.sigma, network.hessian, k=m)
    assert res.alignment == pytest.approx(ref.alignment, abs=1e-8)
    assert res.top_overlap == pytest.approx(ref.top_overlap, abs=1e-8)
    assert res.anisotropy == pytest.approx(ref.anisotropy, rel=1e-8)
    assert res.noise_trace == pytest.approx(np.trace(network.sigma), rel=1e-10)
    assert res.noise_captured == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(res.hessian_eigenvalues, _top(network.hessian, m)[0], atol=1e-10)


@pytest.mark.parametrize("k", [3, 8])
def test_truncated_geometry_equals_dense_eigendecompositions(network: Network, k: int) -> None:
    res = network_noise_geometry(network.model, LOSS, network.batches, k=k, tol=1e-12)
    lam, u = _top(network.sigma, k)
    mu, w = _top(network.hessian, k)
    np.testing.assert_allclose(res.hessian_eigenvalues, mu, rtol=1e-10)
    np.testing.assert_allclose(res.noise_eigenvalues, lam, rtol=1e-10)
    # The dense formula evaluated on the dense rank-k truncations Sigma_k, H_k.
    truncated = dense.alignment(u * lam @ u.T, w * mu @ w.T)
    assert res.alignment == pytest.approx(truncated, abs=1e-8)
    assert res.top_overlap == pytest.approx(dense.top_eigenspace_overlap(network.sigma, network.hessian, k),
                                            abs=1e-8)
    m = network.hessian.shape[0]
    assert res.anisotropy == pytest.approx(lam[0] / (np.trace(network.sigma) / m), rel=1e-8)
    assert res.noise_captured == pytest.approx(lam.sum() / np.trace(network.sigma), rel=1e-8)
    # s_i along the dense eigenvectors (sign-free) and along the returned ones.
    np.testing.assert_allclose(res.mode_noise, np.einsum("ij,ik,kj->j", w, network.sigma, w), rtol=1e-8)
    q = res.hessian_eigenvectors
    np.testing.assert_allclose(res.mode_noise, np.einsum("ij,ik,kj->j", q, network.sigma, q), rtol=1e-10)


def test_truncation_error_within_the_documented_bound(network: Network) -> None:
    """|tr(Sigma H) - tr(Sigma_k H_k)| <= ||Sigma - Sigma_k|| ||H|| + ||Sigma_k|| ||H - H_k||, tails -> 0."""
    S, H = network.sigma, network.hessian
    m = H.shape[0]
    full = dense.alignment(S, H)
    errors = []
    for k in (1, 4, 16, 64, m):
        lam, u = _top(S, k)
        mu, w = _top(H, k)
        Sk, Hk = u * lam @ u.T, w * mu @ w.T
        gap = abs(np.sum(S * H) - np.sum(Sk * Hk))
        bound = np.linalg.norm(S - Sk) * np.linalg.norm(H) + np.linalg.norm(Sk) * np.linalg.norm(H - Hk)
        assert gap <= bound + 1e-12
        assert np.linalg.norm(S - Sk) <= np.trace(S) - lam.sum() + 1e-12
        errors.append(abs(truncated_alignment(lam, u, mu, w) - full))
    assert errors[-1] < 1e-12 < errors[0]
    assert errors[3] < errors[0]


def _top_quadratic(network: Network, k: int) -> tuple[np.ndarray, np.ndarray]:
    mu, w = _top(network.hessian, k)
    return mu, w.T @ network.sigma @ w


@pytest.mark.parametrize("hyper", [Hyperparams(lr=1.5, batch_size=4),
                                   Hyperparams(lr=0.8, momentum=0.6, batch_size=2, weight_decay=0.01)],
                         ids=["sgd", "momentum+wd"])
def test_stationary_variances_solve_the_lyapunov_equations(network: Network, hyper: Hyperparams) -> None:
    k = 5
    res = network_noise_geometry(network.model, LOSS, network.batches, k=k, hyper=hyper, tol=1e-12)
    mu, sk = _top_quadratic(network, k)
    h = mu + hyper.weight_decay
    eta, beta, B = hyper.lr, hyper.momentum, hyper.batch_size
    # Discrete: z = (x, v) of all k modes, M and W as in the PyTorch recursion, the full correlated noise.
    eye = np.eye(k)
    M = np.block([[eye - eta * np.diag(h), eta * beta * eye], [-np.diag(h), beta * eye]])
    W = np.kron(np.array([[eta**2, eta], [eta, 1.0]]), sk / B)
    P = scipy.linalg.solve_discrete_lyapunov(M, W)
    np.testing.assert_allclose(res.variance_discrete, np.diag(P)[:k], rtol=1e-8)
    # Continuous, overdamped: d x = -(H / (1 - beta)) x dt + sqrt(eta / B) Sigma^(1/2) / (1 - beta) dW.
    A = -np.diag(h) / (1 - beta)
    C = scipy.linalg.solve_continuous_lyapunov(A, -eta * sk / (B * (1 - beta) ** 2))
    np.testing.assert_allclose(res.variance_continuous, np.diag(C), rtol=1e-8)
    if beta == 0:
        reference = _dense_variance_in_hessian_basis(network, hyper, k)
        np.testing.assert_allclose(res.variance_discrete, np.diag(reference), rtol=1e-8)


def _dense_variance_in_hessian_basis(network: Network, hyper: Hyperparams, k: int) -> np.ndarray:
    """theory.noise_geometry's dense discrete covariance (full, non-commuting Sigma) in the top Hessian basis.

    The network's H has small and negative modes; they are set to 0.5 so that the dense Lyapunov solution
    exists. The top-k diagonal does not depend on the other modes' curvatures.
    """
    w = _top(network.hessian, k)[1]
    vals, vecs = np.linalg.eigh(network.hessian)
    stable = vecs * np.where(vals >= np.sort(vals)[-k], vals, 0.5) @ vecs.T
    C = dense.stationary_covariance_discrete(stable, network.sigma, hyper.lr, hyper.batch_size)
    return w.T @ C @ w


def _monte_carlo(h: np.ndarray, sk: np.ndarray, hyper: Hyperparams, replicas: int, steps: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch heavy-ball SGD on sum h_i x_i^2 / 2 with noise N(0, sk / B); E x_i^2 at the last step."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(sk / hyper.batch_size)
    x = np.zeros((replicas, len(h)))
    b = np.zeros_like(x)
    for _ in range(steps):
        grad = (h + hyper.weight_decay) * x + rng.standard_normal(x.shape) @ chol.T
        b = hyper.momentum * b + grad
        x = x - hyper.lr * b
    sq = x**2
    return sq.mean(0), sq.std(0, ddof=1) / np.sqrt(replicas)


@pytest.mark.parametrize("hyper", [Hyperparams(lr=1.5, batch_size=4), Hyperparams(lr=3.5, momentum=0.6,
                                                                                 batch_size=2)],
                         ids=["sgd", "momentum"])
def test_stationary_variances_against_monte_carlo(network: Network, hyper: Hyperparams) -> None:
    k = 4
    res = network_noise_geometry(network.model, LOSS, network.batches, k=k, hyper=hyper, tol=1e-10)
    mu, sk = _top_quadratic(network, k)
    assert hyper.lr * mu[0] > 1.0   # far from the continuous limit, so the two predictions differ
    mean, se = _monte_carlo(mu, sk, hyper, replicas=20_000, steps=150, seed=7)
    assert np.all(np.abs(mean - res.variance_discrete) < 3 * se), (mean, res.variance_discrete, se)
    # The continuous prediction misses the top direction by many standard errors.
    assert abs(mean[0] - res.variance_continuous[0]) > 10 * se[0]


def test_modes_without_a_stationary_law_are_inf(network: Network) -> None:
    mu = _top(network.hessian, 2)[0]
    hyper = Hyperparams(lr=2.2 / mu[0], batch_size=1)   # eta h_1 = 2.2 > 2: unstable in discrete time
    res = network_noise_geometry(network.model, LOSS, network.batches, k=2, hyper=hyper, tol=1e-10)
    assert np.isinf(res.variance_discrete[0]) and np.isfinite(res.variance_discrete[1])
    assert np.all(np.isfinite(res.variance_continuous))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"k": 0}, r"k=0 is invalid: expected an integer in \[1, 243\]"),
    ({"k": 244}, r"k=244 is invalid"),
    ({"k": 2.0}, r"k=2.0 is invalid"),
    ({"k": 2, "hyper": 0.1}, r"hyper=0.1 is invalid: expected a Hyperparams"),
    ({"k": 2, "tol": 2.0}, r"tol=2.0 is invalid"),
    # cross-entropy: shifting the 3 logits together is a null direction of every per-example gradient,
    # one per hidden unit and the bias, so rank(Sigma) <= 243 - 21 = 222.
    ({"k": 230}, r"k=230 is invalid: Sigma has numerical rank 222 < k"),
])
def test_bad_input_names_the_parameter(network: Network, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        network_noise_geometry(network.model, LOSS, network.batches, **kwargs)
