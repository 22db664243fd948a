"""Replica drift/diffusion against sequential torch.optim.SGD runs; both predictions against other paths."""

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.estimation.lanczos_quadrature import full_spectrum_displacement, lanczos_quadrature
from sgd_dynamics.experiments.displacement_study import bulk_parts, full_spectrum_parts, measure_replicas
from sgd_dynamics.experiments.training import minibatch_indices
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure.replicas import replica_seeds
from sgd_dynamics.theory.study_prediction import displacement_curve

HYPER = Hyperparams(lr=0.05, momentum=0.9, batch_size=8, weight_decay=0.01)


class _Setup:
    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 3, generator=gen)
        self.y = torch.randint(2, (64,), generator=gen)
        self.loss_fn = nn.functional.cross_entropy

    def build_model(self):
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))


def test_replica_parts_match_sequential_sgd_runs():
    setup = _Setup()
    theta_star = setup.build_model().state_dict()
    got = measure_replicas(setup, theta_star, HYPER, steps=40, replicas=3, seed=7)
    start = torch.cat([p.reshape(-1) for p in theta_star.values()]).double()
    finals = {}
    for r, s in enumerate(replica_seeds(7, 3)):
        model = setup.build_model()
        opt = torch.optim.SGD(model.parameters(), lr=HYPER.lr, momentum=HYPER.momentum,
                              weight_decay=HYPER.weight_decay)
        stream = minibatch_indices(64, HYPER.batch_size, "with_replacement", s)
        for k in range(1, 41):
            idx = next(stream)
            opt.zero_grad()
            setup.loss_fn(model(setup.x[idx]), setup.y[idx]).backward()
            opt.step()
            if k in (10, 40):
                flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
                finals[(r, k)] = flat - start
    for k in (10, 40):
        d = torch.stack([finals[(r, k)] for r in range(3)]).numpy()
        mean = d.mean(0)
        diffusion = ((d - mean) ** 2).sum() / 2                # tr of the unbiased sample covariance
        total = (d ** 2).sum(1).mean()
        i = int(np.flatnonzero(got["step"] == k)[0])
        assert got["total"][i] == pytest.approx(total, rel=1e-4)
        assert got["diffusion"][i] == pytest.approx(diffusion, rel=1e-4)
        assert got["drift"][i] == pytest.approx(mean @ mean - diffusion / 3, rel=1e-3, abs=1e-9)


def test_bulk_parts_sum_to_the_sweeps_top_k_plus_bulk_curve():
    theta = {"eigenvalues": np.array([3.0, 1.0, -0.02]), "mode_noise": np.array([0.5, 0.2, 0.01]),
             "hessian_trace": 6.0, "trace_sigma": 2.0, "num_parameters": 50}
    steps = np.array([1, 10, 100, 1000])
    got = bulk_parts(theta, HYPER, steps)
    rho = np.append(theta["eigenvalues"], (6.0 - 3.98) / 47)
    s = np.append(theta["mode_noise"], (2.0 - 0.71) / 47)
    reference, _ = displacement_curve(rho, s, 47, HYPER, steps, settle=HYPER, s_settle=s)
    # the reference clips negative curvature to 0.999 of -weight_decay, this module to exactly -weight_decay
    np.testing.assert_allclose(got["drift"] + got["diffusion"], reference, rtol=2e-3)
    assert np.all(got["drift"] >= 0) and np.all(np.diff(got["diffusion"]) > 0)


def test_full_spectrum_parts_of_an_exact_rule_match_the_eigendecomposition():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    rho = np.concatenate([np.linspace(0.05, 4.0, 11), [-0.03]])
    h = q @ np.diag(rho) @ q.T
    probes = rng.standard_normal((12, 6)) * 0.3
    measure = lanczos_quadrature(lambda v: h @ v, probes, steps=12)   # steps = dim: every rule is exact
    steps = np.array([1, 30, 300, 3000])
    got = full_spectrum_parts(measure, HYPER, steps)
    # tr(Sigma_probe f(H)) with Sigma_probe = mean_p u_p u_p^T, by dense diagonalisation, on each mode
    s = ((q.T @ probes) ** 2).mean(axis=1)
    reference = full_spectrum_displacement(lanczos_quadrature(lambda v: h @ v, probes, steps=12), HYPER,
                                           steps, settle=HYPER).value
    np.testing.assert_allclose(got["drift"] + got["diffusion"], reference, rtol=1e-8)
    from sgd_dynamics.theory import global_displacement_from_start, stationary_moments

    flat = np.maximum(rho, -HYPER.weight_decay)
    x0 = stationary_moments(flat, s, HYPER).position_variance
    dense = global_displacement_from_start(flat, s, HYPER, steps, np.where(np.isfinite(x0), x0, 0.0))
    np.testing.assert_allclose(got["drift"] + got["diffusion"], dense, rtol=1e-6)
    assert np.all(got["diffusion_err"] >= 0)
