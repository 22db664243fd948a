"""Simulator gradients and Hessian traces vs torch autograd; eq. 6 -> eq. 7 under label noise (003 Cor.
3.5)."""

import math

import numpy as np
import pytest
import torch

from sgd_dynamics.measure import limiting_drift as mld
from sgd_dynamics.simulate.label_noise import MatrixSensing, TwoLayerUV, project_to_uv_valley
from sgd_dynamics.theory.limiting_drift import valley_frame
from sgd_dynamics.theory.momentum_scaling import uv_drift_time

ACT = {"linear": lambda z: z, "tanh": torch.tanh, "relu": torch.relu}


def _uv_loss(model: TwoLayerUV, shift=None):
    x = torch.as_tensor(model.inputs)
    y = torch.as_tensor(model.targets) + (0 if shift is None else torch.as_tensor(shift))
    m, n, d = model.targets.shape[1], model.width, model.inputs.shape[1]

    def loss(w):
        u, v = w[: m * n].reshape(m, n), w[m * n :].reshape(n, d)
        f = (ACT[model.activation](x @ v.T) @ u.T) / math.sqrt(n)
        return 0.5 * torch.mean(torch.sum((f - y) ** 2, dim=1))

    return loss


def _ms_loss(model: MatrixSensing, shift=None):
    a = torch.as_tensor(model.sensing)
    y = torch.as_tensor(model.measurements) + (0 if shift is None else torch.as_tensor(shift))
    d = model.dimension

    def loss(w):
        u, v = w[: d * d].reshape(d, d), w[d * d :].reshape(d, d)
        pred = torch.einsum("pij,ji->p", a, u @ v)
        return torch.mean((pred - y) ** 2) / d

    return loss


@pytest.mark.parametrize("activation", ["linear", "tanh", "relu"])
def test_matrix_uv_gradient_and_trace_hessian_match_autograd(activation):
    rng = np.random.default_rng(0)
    model = TwoLayerUV(
        rng.standard_normal((6, 3)), rng.standard_normal((6, 2)), width=4, activation=activation
    )
    u, v = rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 4, 3))
    shift = rng.standard_normal((6, 2))
    w = torch.as_tensor(np.concatenate([u.ravel(), v.ravel()]))
    gu, gv = model.gradient((u, v), shift.T[None])
    g = torch.func.grad(_uv_loss(model, shift))(w).numpy()
    np.testing.assert_allclose(np.concatenate([gu.ravel(), gv.ravel()]), g, rtol=1e-10, atol=1e-12)
    h = torch.autograd.functional.hessian(_uv_loss(model), w).numpy()
    assert model.trace_hessian((u, v))[0] == pytest.approx(np.trace(h), rel=1e-10)
    assert model.loss((u, v))[0] == pytest.approx(float(_uv_loss(model)(w)), rel=1e-12)


def test_vector_uv_trace_hessian_is_mu2_norm_over_n_and_matches_autograd():
    rng = np.random.default_rng(1)
    model = TwoLayerUV.vector(rng.standard_normal(5), width=7)
    u, v = project_to_uv_valley(rng.standard_normal((3, 1, 7)), rng.standard_normal((3, 7, 1)))
    assert np.allclose(np.einsum("rn,rn->r", u[:, 0], v[:, :, 0]), 0)
    for r in range(3):
        w = torch.as_tensor(np.concatenate([u[r].ravel(), v[r].ravel()]))
        h = torch.autograd.functional.hessian(_uv_loss(model), w).numpy()
        assert model.trace_hessian((u, v))[r] == pytest.approx(np.trace(h), rel=1e-10)
    expected = model.input_variance * (np.sum(u**2, axis=(1, 2)) + np.sum(v**2, axis=(1, 2))) / 7
    np.testing.assert_allclose(model.trace_hessian((u, v)), expected, rtol=1e-12)


def test_matrix_sensing_gradient_and_trace_hessian_match_autograd():
    model = MatrixSensing.random(dimension=3, rank=1, dataset_size=7, seed=4)
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal((1, 3, 3)), rng.standard_normal((1, 3, 3))
    shift = rng.standard_normal(7)
    w = torch.as_tensor(np.concatenate([u.ravel(), v.ravel()]))
    gu, gv = model.gradient((u, v), shift[None])
    g = torch.func.grad(_ms_loss(model, shift))(w).numpy()
    np.testing.assert_allclose(np.concatenate([gu.ravel(), gv.ravel()]), g, rtol=1e-10, atol=1e-12)
    h = torch.autograd.functional.hessian(_ms_loss(model), w).numpy()
    assert model.trace_hessian((u, v))[0] == pytest.approx(np.trace(h), rel=1e-10)
    assert model.test_error((u, v))[0] == pytest.approx(np.sum((u[0] @ v[0] - model.target) ** 2) / 3)


def test_third_derivative_contraction_matches_finite_differences():
    rng = np.random.default_rng(6)
    model = TwoLayerUV(rng.standard_normal((4, 2)), rng.standard_normal((4, 1)), width=3, activation="tanh")
    loss = _uv_loss(model)
    w = rng.standard_normal(9)
    a = rng.standard_normal((9, 9))
    s = a + a.T
    got = mld.third_derivative_contraction(loss, w, s)
    step = 1e-4
    fd = np.empty(9)
    for k in range(9):
        e = np.zeros(9)
        e[k] = step
        hp, hm = mld.hessian(loss, w + e), mld.hessian(loss, w - e)
        fd[k] = np.sum((hp - hm) * s) / (2 * step)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-7)


def test_eq6_reduces_to_eq7_and_to_eq9_for_the_vector_uv_model():
    rng = np.random.default_rng(8)
    n, p, eps, lr, beta = 4, 5, 0.5, 0.01, 0.95
    model = TwoLayerUV.vector(rng.standard_normal(p), width=n)
    u, v = project_to_uv_valley(rng.standard_normal((1, 1, n)), rng.standard_normal((1, n, 1)))
    w = np.concatenate([u.ravel(), v.ravel()])
    loss = _uv_loss(model)
    h = mld.hessian(loss, w)
    # Label noise: per-example gradients give Sigma = (1/P) sum_a grad f_a grad f_a^T / P = H / P (003
    # Sec. 3.4).
    x = torch.as_tensor(model.inputs)
    jac = torch.func.jacrev(lambda q: (q[:n] @ q[n:]) * x[:, 0] / math.sqrt(n))(torch.as_tensor(w)).numpy()
    sigma = jac.T @ jac / p**2
    np.testing.assert_allclose(sigma, h / p, atol=1e-12)
    drift6 = mld.limiting_drift_autodiff(loss, w, sigma, lr, beta, eps)
    drift7 = mld.label_noise_drift_autodiff(loss, w, 1 / p, lr, beta, eps)
    np.testing.assert_allclose(drift6, drift7, rtol=1e-9, atol=1e-14)
    # Eq. 9: dY = -Y / tau_2 per step.
    tau2 = uv_drift_time(lr, beta, n, p, eps, model.input_variance)
    np.testing.assert_allclose(drift6, -w / tau2, rtol=1e-9)


def test_eq6_reduces_to_eq7_for_matrix_sensing_with_the_errata_factor():
    # ERRATA 003.6: Sigma = (2 / (d P)) H and drift = -(eps^2 eta^2 / (4 (1-beta)^2)) (8 / (d^2 P)) P_L S Y.
    d, p, eps, lr, beta = 2, 3, 0.3, 0.05, 0.9
    rng = np.random.default_rng(9)
    u0, v0 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    base = MatrixSensing.random(dimension=d, rank=d, dataset_size=p, seed=1)
    model = MatrixSensing(base.sensing, u0 @ v0)  # (u0, v0) is a zero-loss point
    w = np.concatenate([u0.ravel(), v0.ravel()])
    loss = _ms_loss(model)
    h = mld.hessian(loss, w)
    a = torch.as_tensor(model.sensing)

    def predictions(q):
        return torch.einsum("pij,ji->p", a, q[: d * d].reshape(d, d) @ q[d * d :].reshape(d, d))

    jac = torch.func.jacrev(predictions)(torch.as_tensor(w)).numpy()
    sigma = (2 / (d * p)) ** 2 * jac.T @ jac  # covariance of the label-noise part of the gradient / eps^2
    np.testing.assert_allclose(sigma, 2 / (d * p) * h, atol=1e-12)
    drift6 = mld.limiting_drift_autodiff(loss, w, sigma, lr, beta, eps)
    p_l = valley_frame(h).tangent_projector
    sy = np.concatenate([(model.right_covariance @ u0).ravel(), (v0 @ model.left_covariance).ravel()])
    expected = -(eps**2) * lr**2 / (4 * (1 - beta) ** 2) * 8 / (d**2 * p) * (p_l @ sy)
    np.testing.assert_allclose(drift6, expected, rtol=1e-8, atol=1e-13)
