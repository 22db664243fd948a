"""Noise-weighted Lanczos quadrature, the Hessian ESD and the full-spectrum displacement, against dense ones.

References, computed here independently of the package: the Hessian by ``torch.func.hessian`` of the mean
loss, per-example gradients by one ``torch.autograd.grad`` call per example (so ``Sigma`` with ``1/N``), and
``tr(Sigma g_t(H)) = sum_l s_l g_t(rho_l)`` from a dense ``eigh`` with ``s_l = q_l^T Sigma q_l``.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.estimation.lanczos_quadrature import (
    full_spectrum_displacement,
    lanczos_quadrature,
    spectral_density,
)
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure import gradient_noise, hessian_eigenpairs
from sgd_dynamics.measure.spectral_measure import (
    hessian_spectral_density,
    noise_probes,
    noise_spectral_measure,
)
from sgd_dynamics.theory import global_displacement, global_displacement_from_start, stationary_moments

pytestmark = pytest.mark.usefixtures("single_thread")
STEPS = np.array([1, 10, 100, 1000, 10000])
# Largest stated relative s.e. accepted at STEPS (16 probes, 60 steps, top 20 deflated): a check that the
# error bar says something, not a tolerance. Large at t = 1e4, where the truncation estimate is conservative.
INFORMATIVE = np.array([0.1, 0.1, 0.05, 0.1, 0.2])


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # written out: nn.functional.mse_loss has no forward-over-reverse derivative in torch 2.13
    # ("ZeroTensors are immutable"), which the Hessian-vector products need
    return ((outputs - targets) ** 2).mean()


@dataclass
class Network:
    model: nn.Module
    loss: object
    x: torch.Tensor
    y: torch.Tensor
    hessian: np.ndarray
    gradients: np.ndarray        # (N, m), explicit per-example gradients
    eigenvalues: np.ndarray      # ascending
    eigenvectors: np.ndarray
    mode_noise: np.ndarray       # s_l = q_l^T Sigma q_l

    @property
    def batches(self) -> list:
        cuts = [0, 37, 150, len(self.x)]   # uneven, so an unweighted mean over batches would be wrong
        return [(self.x[a:b], self.y[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    @property
    def centred(self) -> np.ndarray:
        return self.gradients - self.gradients.mean(0)

    def hyper(self, momentum: float) -> Hyperparams:
        return Hyperparams(lr=0.5 / self.eigenvalues[-1], momentum=momentum, batch_size=8)

    def exact_displacement(self, hyper: Hyperparams, steps=STEPS) -> np.ndarray:
        return global_displacement(np.maximum(self.eigenvalues, 0.0), self.mode_noise, hyper, steps)


def _network(kind: str) -> Network:
    """The issue's 361-parameter tanh MLP (MSE) or a 364-parameter one (cross-entropy), part-trained."""
    g = torch.Generator().manual_seed(0)
    d, hidden, c = (18, 18, 1) if kind == "mse" else (10, 24, 4)
    x = torch.randn(256, d, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, c)).double()
    with torch.no_grad():
        out = teacher(x)
    if kind == "mse":
        loss, y = mse, out + 0.3 * torch.randn(out.shape, generator=g, dtype=torch.float64)
    else:
        loss = nn.functional.cross_entropy
        y = (3 * out + 0.5 * torch.randn(out.shape, generator=g, dtype=torch.float64)).argmax(1)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, c)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss(model(x), y).backward()
        opt.step()
    params = list(model.parameters())
    theta = torch.nn.utils.parameters_to_vector(params).detach().clone()
    names = [n for n, _ in model.named_parameters()]

    def mean_loss(t: torch.Tensor) -> torch.Tensor:
        parts = torch.split(t, [p.numel() for p in params])
        named = {n: a.reshape(p.shape) for n, a, p in zip(names, parts, params, strict=True)}
        return loss(torch.func.functional_call(model, named, (x,)), y)

    hessian = torch.func.hessian(mean_loss)(theta).numpy()
    rows = [torch.cat([gi.reshape(-1) for gi in torch.autograd.grad(loss(model(xi[None]), yi[None]), params)])
            for xi, yi in zip(x, y, strict=True)]
    gradients = torch.stack(rows).numpy()
    sigma = np.cov(gradients.T, bias=True)
    w, q = np.linalg.eigh(hessian)
    s = np.maximum(np.einsum("li,lk,ki->i", q, sigma, q), 0.0)   # clip rounding below 0
    return Network(model, loss, x, y, hessian, gradients, w, q, s)


@pytest.fixture(scope="module", params=["mse", "cross_entropy"])
def network(request) -> Network:
    return _network(request.param)


@pytest.fixture(scope="module")
def mse_network() -> Network:
    return _network("mse")


def _dense_rademacher_measure(net: Network, seed: int, probes: int, steps: int, deflation=None):
    z = np.random.default_rng(seed).choice([-1.0, 1.0], size=(len(net.x), probes))
    u = net.centred.T @ z / np.sqrt(len(net.x))
    return u, lanczos_quadrature(lambda v: net.hessian @ v, u, steps, deflation=deflation)


# --- probes ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_weighted_backward_probe_is_the_per_example_combination(network, distribution):
    net = network
    probes = noise_probes(net.model, net.loss, net.batches, 5, seed=3, distribution=distribution,
                          chunk_size=40)
    z = probes.coefficients
    assert z.shape == (256, 5) and probes.num_examples == 256 and probes.backward_count == 6
    if distribution == "rademacher":
        assert set(np.unique(z)) == {-1.0, 1.0}
    explicit = net.centred.T @ z / np.sqrt(256)
    np.testing.assert_allclose(probes.vectors, explicit, rtol=0, atol=1e-12 * np.abs(explicit).max())


def test_probe_second_moment_is_sigma_with_the_gradient_noise_normalisation(mse_network):
    net = mse_network
    probes = noise_probes(net.model, net.loss, net.batches, 400, seed=0).vectors
    noise = gradient_noise(net.model, net.loss, net.batches)
    sigma = np.cov(net.gradients.T, bias=True)
    np.testing.assert_allclose(noise.trace, np.trace(sigma), rtol=1e-10)    # the same 1/N
    # E||u||^2 = tr Sigma and E (q^T u)^2 = q^T Sigma q along the top Hessian directions, within 4 s.e.
    q = net.eigenvectors[:, -3:]
    samples = np.vstack([np.sum(probes**2, axis=0), (q.T @ probes) ** 2])
    expected = np.concatenate([[np.trace(sigma)], np.einsum("li,lk,ki->i", q, sigma, q)])
    se = samples.std(axis=1, ddof=1) / np.sqrt(samples.shape[1])
    assert np.all(np.abs(samples.mean(axis=1) - expected) <= 4 * se), (samples.mean(axis=1), expected, se)


# --- Gauss quadrature --------------------------------------------------------------------------------------

@pytest.mark.parametrize("deflate", [0, 6])
def test_gauss_rule_is_exact_to_degree_2m_minus_1(mse_network, deflate):
    net = mse_network
    steps, k = 5, deflate
    top = (net.eigenvalues[::-1][:k], net.eigenvectors[:, ::-1][:, :k])
    u, measure = _dense_rademacher_measure(net, 0, 3, steps, top if k else None)
    nodes, weights = measure.rule()
    scale = net.eigenvalues[-1]
    rest = u - top[1] @ (top[1].T @ u)          # the part the Lanczos rule integrates
    for degree in range(2 * steps + 1):
        power = np.linalg.matrix_power(net.hessian / scale, degree)
        quadrature = np.sum(weights * (nodes / scale) ** degree, axis=1)
        dense = np.einsum("ip,ip->p", u, power @ u)
        if degree <= 2 * steps - 1:
            np.testing.assert_allclose(quadrature, dense, rtol=1e-10, err_msg=f"degree {degree}")
        else:   # one degree higher the Lanczos part is not exact: the check above can fail
            lanczos_part = np.sum(weights[:, k:] * (nodes[:, k:] / scale) ** degree, axis=1)
            assert np.all(np.abs(lanczos_part / np.einsum("ip,ip->p", rest, power @ rest) - 1) > 1e-6)


def test_hvp_measure_equals_dense_lanczos_on_the_same_probes(mse_network):
    net = mse_network
    measure = noise_spectral_measure(net.model, net.loss, net.batches, num_probes=3, lanczos_steps=12, seed=4)
    probes = noise_probes(net.model, net.loss, net.batches, 3, seed=4).vectors
    dense = lanczos_quadrature(lambda v: net.hessian @ v, probes, 12)
    assert measure.hvp_count == 36 and measure.backward_count == 4
    for mine, ref in zip(measure.rule(), dense.rule(), strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-8, atol=1e-12 * np.abs(ref).max())
    nodes, weights = measure.nodes, measure.weights
    assert nodes.shape == weights.shape == (36,)
    np.testing.assert_allclose(weights.sum(), np.mean(np.sum(probes**2, axis=0)), rtol=1e-12)


# --- full-spectrum displacement ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def network_measure(network):
    top = hessian_eigenpairs(network.model, network.loss, network.batches, k=20, tol=1e-8)
    measure = noise_spectral_measure(network.model, network.loss, network.batches, num_probes=16,
                                     lanczos_steps=60, deflation=top, seed=0)
    return network, measure


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_full_spectrum_displacement_matches_dense_trace(network_measure, momentum):
    net, measure = network_measure
    hyper = net.hyper(momentum)
    exact = net.exact_displacement(hyper)
    est = full_spectrum_displacement(measure, hyper, STEPS)
    assert np.all(np.abs(est.value - exact) <= 3 * est.stderr), ((est.value - exact) / est.stderr)
    assert np.all(est.stderr <= INFORMATIVE * exact), est.stderr / exact


def test_displacement_from_a_settled_start_matches_dense(network_measure):
    net, measure = network_measure
    hyper, settle = net.hyper(0.9), Hyperparams(lr=0.25 / net.eigenvalues[-1], momentum=0.9, batch_size=32)
    rho = np.maximum(net.eigenvalues, 0.0)
    x0 = np.where(net.mode_noise > 0, stationary_moments(rho, net.mode_noise, settle).position_variance, 0.0)
    exact = global_displacement_from_start(rho, net.mode_noise, hyper, STEPS, x0)
    est = full_spectrum_displacement(measure, hyper, STEPS, settle=settle)
    assert np.all(np.abs(est.value - exact) <= 3 * est.stderr), ((est.value - exact) / est.stderr)
    assert np.all(est.stderr <= INFORMATIVE * exact), est.stderr / exact


def test_error_bars_cover_the_exact_value_over_seeds(mse_network):
    # 24 seeds, 12 probes, 40 steps, momentum 0.9: at t = 1e4 the quadrature bias (~ -18%) dwarfs the probe
    # spread, so the probe spread alone never covers there; the stated s.e. must still cover.
    net = mse_network
    hyper, steps = net.hyper(0.9), np.array([10, 100, 1000, 10000])
    exact = net.exact_displacement(hyper, steps)
    covered, probe_only = [], []
    for seed in range(24):
        est = full_spectrum_displacement(_dense_rademacher_measure(net, seed, 12, 40)[1], hyper, steps)
        covered.append(np.abs(est.value - exact) <= 2 * est.stderr)
        probe_only.append(np.abs(est.value - exact) <= 2 * est.probe_stderr)
    assert np.all(np.mean(covered, axis=0) >= 0.8), np.mean(covered, axis=0)
    assert np.mean(probe_only, axis=0)[-1] < 0.5


def _bias_and_estimate(net: Network, steps_lanczos: int, hyper: Hyperparams, steps: np.ndarray):
    """Quadrature bias of the probe mean (against u^T g_t(H) u per probe, dense) and its stated estimate."""
    u, measure = _dense_rademacher_measure(net, 1, 10, steps_lanczos)
    est = full_spectrum_displacement(measure, hyper, steps)
    rho = np.maximum(net.eigenvalues, 0.0)
    per_probe = [global_displacement(rho, (net.eigenvectors.T @ u[:, p]) ** 2, hyper, steps)
                 for p in range(10)]
    return np.abs(est.value - np.mean(per_probe, axis=0)), est.truncation_error


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("lanczos_steps", [40, 80])
def test_truncation_estimate_bounds_the_quadrature_bias(mse_network, momentum, lanczos_steps):
    hyper, steps = mse_network.hyper(momentum), np.array([100, 1000, 10000])
    bias, estimate = _bias_and_estimate(mse_network, lanczos_steps, hyper, steps)
    assert np.all(estimate >= bias), (bias, estimate)


def test_truncation_estimate_is_too_small_before_the_rules_converge(mse_network):
    # Documented limit: with 8 steps at t = 1e4 no rule from 4 to 8 steps resolves the low end of the
    # spectrum (g_t's feature at rho ~ (1 - beta) / (eta t)), so they agree with each other and not with the
    # truth. The displacement needs about sqrt(eta rho_max t / (1 - beta)) steps.
    hyper = mse_network.hyper(0.9)
    bias, estimate = _bias_and_estimate(mse_network, 8, hyper, np.array([10000]))
    assert estimate[0] < 0.5 * bias[0]


# --- Hessian spectral density ------------------------------------------------------------------------------

def test_spectral_density_moments_match_dense_traces(mse_network):
    net = mse_network
    # 6 steps: exact per probe up to degree 11; the moments' error is the probes' (Hutchinson's) spread
    esd = hessian_spectral_density(net.model, net.loss, net.batches, num_probes=30, lanczos_steps=6, seed=0)
    np.testing.assert_allclose(esd.weights.sum(axis=1), 1.0, rtol=1e-12)
    assert abs(np.trapezoid(esd.density, esd.grid) - 1) < 1e-6
    m = net.hessian.shape[0]
    for p in range(1, 5):
        per_probe = np.sum(esd.weights * esd.nodes**p, axis=1)
        se = per_probe.std(ddof=1) / np.sqrt(per_probe.size)
        exact = np.trace(np.linalg.matrix_power(net.hessian, p)) / m
        assert abs(per_probe.mean() - exact) <= 3 * se, (p, per_probe.mean(), exact, se)


def test_spectral_density_is_the_broadened_dense_spectrum_for_full_krylov_spaces():
    # With as many steps as dimensions every probe's rule is the exact spectral measure seen from that
    # probe, so the density is sum_l (mean_p (q_l^T v_p)^2) N(x; rho_l, width^2), computed here densely.
    rng = np.random.default_rng(0)
    h = rng.standard_normal((12, 12))
    h = h + h.T
    w, q = np.linalg.eigh(h)
    v = rng.choice([-1.0, 1.0], size=(12, 4)) / np.sqrt(12)
    esd = spectral_density(lanczos_quadrature(lambda x: h @ x, v, 12), width=0.3, num_points=200)
    mass = np.mean((q.T @ v) ** 2, axis=1)
    dense = np.exp(-0.5 * ((esd.grid[:, None] - w) / 0.3) ** 2) @ mass / (0.3 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(esd.density, dense, rtol=1e-8, atol=1e-10)


# --- input checks and layering -----------------------------------------------------------------------------

def test_bad_input_names_the_parameter(mse_network):
    net = mse_network
    dense = np.eye(6)
    with pytest.raises(ValueError, match=r"steps=7 is invalid: expected an integer with 2 <= steps <= 6"):
        lanczos_quadrature(lambda v: dense @ v, np.ones((6, 2)), 7)
    with pytest.raises(ValueError, match=r"probes=.* is invalid: expected a finite \(m, P\) array"):
        lanczos_quadrature(lambda v: dense @ v, np.ones((6, 1)), 3)
    with pytest.raises(ValueError, match=r"deflation=.* is invalid: expected \(eigenvalues \(k,\)"):
        lanczos_quadrature(lambda v: dense @ v, np.ones((6, 2)), 3, deflation=(np.ones(2), np.eye(6)[:, :3]))
    with pytest.raises(ValueError, match=r"num_probes=1 is invalid: expected an integer >= 2"):
        noise_spectral_measure(net.model, net.loss, net.batches, num_probes=1)
    with pytest.raises(ValueError, match=r"distribution='normal' is invalid: expected 'rademacher' or"):
        noise_probes(net.model, net.loss, net.batches, 2, distribution="normal")


def test_breakdown_gives_the_exact_rule():
    # A probe inside a 2-dimensional invariant subspace stops after 2 steps; its rule is then exact.
    h = np.diag([1.0, 2.0, 3.0, 4.0, 5.0])
    probes = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    measure = lanczos_quadrature(lambda v: h @ v, probes, 4)
    assert measure.lengths.tolist() == [2, 4]
    est = measure.estimate(lambda r, w: w @ np.exp(r))
    exact = np.mean([probes[:, p] ** 2 @ np.exp(np.diag(h)) for p in range(2)])
    np.testing.assert_allclose(est.value, exact, rtol=1e-12)
    assert est.truncation_error < 1e-10 * exact


def test_estimation_layer_does_not_import_torch():
    code = ("import sys, sgd_dynamics.estimation.lanczos_quadrature; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
