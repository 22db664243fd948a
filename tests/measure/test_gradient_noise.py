"""Gradient-noise statistics against an explicit per-example torch.autograd.grad loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score
from torch import nn

from sgd_dynamics.measure import (
    fit_noise_to_curvature,
    gradient_noise,
    hessian_eigenpairs,
    noise_eigenpairs,
)

LOSS = nn.functional.cross_entropy
pytestmark = pytest.mark.usefixtures("single_thread")


def _explicit_gradients(model, x, y) -> np.ndarray:
    """(N, m) per-example gradients, one autograd.grad call per example, in eval mode."""
    was_training = model.training
    model.eval()
    rows = []
    for xi, yi in zip(x, y, strict=True):
        grads = torch.autograd.grad(LOSS(model(xi[None]), yi[None]), list(model.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]).numpy())
    model.train(was_training)
    return np.array(rows)


@pytest.fixture(scope="module")
def mlp_sigma(mlp_problem):
    g = _explicit_gradients(mlp_problem.model, mlp_problem.x, mlp_problem.y)
    return g, np.cov(g.T, bias=True)        # population covariance, 1/N


@pytest.mark.parametrize("chunk_size", [7, 64])
def test_trace_and_mode_noise_match_explicit_loop(mlp_problem, mlp_sigma, chunk_size):
    g, sigma = mlp_sigma
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((g.shape[1], 6)))
    noise = gradient_noise(mlp_problem.model, LOSS, mlp_problem.batches, q, chunk_size=chunk_size)
    assert noise.num_examples == 96
    np.testing.assert_allclose(noise.trace, np.trace(sigma), rtol=1e-10)
    np.testing.assert_allclose(noise.mode_noise, np.einsum("mi,mn,ni->i", q, sigma, q), rtol=1e-10)
    np.testing.assert_allclose(noise.mean_gradient, g.mean(0), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(noise.mean_gradient_sq_norm, g.mean(0) @ g.mean(0), rtol=1e-10)


def test_population_covariance_is_minibatch_covariance_times_batch_size(mlp_sigma):
    # Minibatches of S examples drawn with replacement: Cov(mean gradient) = Sigma / S with Sigma in the
    # 1/N convention. Exact enumeration for S = 2 over all N^2 ordered pairs.
    g, sigma = mlp_sigma
    g = g[:20]
    sigma = np.cov(g.T, bias=True)
    pair_means = (g[:, None, :] + g[None, :, :]).reshape(-1, g.shape[1]) / 2
    np.testing.assert_allclose(np.trace(np.cov(pair_means.T, bias=True)), np.trace(sigma) / 2, rtol=1e-10)


def test_batchnorm_model_uses_eval_mode(bn_problem):
    model = bn_problem.model
    g = _explicit_gradients(model, bn_problem.x, bn_problem.y)
    assert model.training
    noise = gradient_noise(model, LOSS, bn_problem.batches, chunk_size=32)
    assert model.training and model[1].training
    np.testing.assert_allclose(noise.trace, np.trace(np.cov(g.T, bias=True)), rtol=1e-10)


def test_noise_eigenpairs_gram_and_randomized(mlp_problem, mlp_sigma):
    _, sigma = mlp_sigma
    w, u = np.linalg.eigh(sigma)
    w, u = w[::-1], u[:, ::-1]
    gram = noise_eigenpairs(mlp_problem.model, LOSS, mlp_problem.batches, k=8, method="gram")
    np.testing.assert_allclose(gram.eigenvalues, w[:8], rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(gram.eigenvectors * u[:, :8], axis=0)), 1.0, atol=1e-8)
    rand = noise_eigenpairs(mlp_problem.model, LOSS, mlp_problem.batches, k=3, method="randomized",
                            oversampling=20, power_iterations=4, seed=1)
    # Randomized subspace iteration: error ~ (w[k+p] / w[i])^(2 q + 1), tiny for the top 3 here.
    np.testing.assert_allclose(rand.eigenvalues, w[:3], rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(rand.eigenvectors * u[:, :3], axis=0)), 1.0, atol=1e-4)
    auto = noise_eigenpairs(mlp_problem.model, LOSS, mlp_problem.batches, k=2)
    assert auto.method == "gram"
    with pytest.raises(ValueError, match=r"k=96 is invalid: Sigma from N=96 examples has rank <= N - 1 = 95"):
        noise_eigenpairs(mlp_problem.model, LOSS, mlp_problem.batches, k=96, method="gram")


def test_mode_noise_along_hessian_eigenvectors_and_sigma2_fit(mlp_problem, mlp_sigma):
    _, sigma = mlp_sigma
    res = hessian_eigenpairs(mlp_problem.model, LOSS, mlp_problem.batches, k=8, tol=1e-8)
    noise = gradient_noise(mlp_problem.model, LOSS, mlp_problem.batches, res.eigenvectors)
    s_ref = np.einsum("mi,mn,ni->i", res.eigenvectors, sigma, res.eigenvectors)
    np.testing.assert_allclose(noise.mode_noise, s_ref, rtol=1e-10)
    fit = fit_noise_to_curvature(res.eigenvalues, noise.mode_noise)
    coef, *_ = np.linalg.lstsq(res.eigenvalues[:, None], s_ref, rcond=None)
    np.testing.assert_allclose(fit.sigma2, coef[0], rtol=1e-12)
    np.testing.assert_allclose(fit.r_squared, r2_score(s_ref, coef[0] * res.eigenvalues), rtol=1e-12)
    np.testing.assert_allclose(fit.predicted(), coef[0] * res.eigenvalues, rtol=1e-12)


def test_sigma2_fit_recovers_exact_proportional_noise():
    rho = np.array([5.0, 3.0, 1.0, 0.2])
    fit = fit_noise_to_curvature(rho, 0.37 * rho)
    assert fit.sigma2 == pytest.approx(0.37, rel=1e-14)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-14)
    noisy = 0.37 * rho + np.array([0.1, -0.2, 0.05, 0.0])
    worse = fit_noise_to_curvature(rho, noisy)
    assert worse.r_squared == pytest.approx(r2_score(noisy, worse.sigma2 * rho), rel=1e-12)
    assert worse.r_squared < 1.0


def test_bad_input_messages(mlp_problem):
    model, batches = mlp_problem.model, mlp_problem.batches
    m = sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match=rf"directions has shape \(2, {m}\): expected \({m}, k\).*transpose"):
        gradient_noise(model, LOSS, batches, np.zeros((2, m)))
    with pytest.raises(ValueError, match=r"chunk_size=0 is invalid: expected an integer >= 1"):
        gradient_noise(model, LOSS, batches, chunk_size=0)
    with pytest.raises(ValueError, match=r"batches yielded no examples"):
        gradient_noise(model, LOSS, [])
    with pytest.raises(ValueError, match=r"method='svd' is invalid: expected 'auto', 'gram' or 'randomized'"):
        noise_eigenpairs(model, LOSS, batches, method="svd")
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(2,\): expected two 1-D arrays"):
        fit_noise_to_curvature([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"eigenvalues are all zero"):
        fit_noise_to_curvature([0.0, 0.0], [1.0, 2.0])
