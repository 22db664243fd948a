"""Train-mode minibatch-gradient noise against direct loops and the eval-mode per-example Sigma.

Independent references: an explicit loop over the minibatches with ``loss.backward()`` on a copy of the
model in train mode (NumPy ``np.cov`` of its gradients, and the influence-function standard error of a
sample variance, ``sd(||g_j - gbar||^2) / sqrt(M)``); ``gradient_noise`` (per-example ``Sigma``, eval
mode); Monte Carlo over independent sets of minibatches for the jackknife standard error.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.experiments.training import minibatch_indices
from sgd_dynamics.measure import gradient_noise
from sgd_dynamics.measure.minibatch_noise import minibatch_noise

LOSS = nn.functional.cross_entropy
N, S, M = 96, 8, 400
pytestmark = pytest.mark.usefixtures("single_thread")


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (N,), generator=g)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).double()


def dropout_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(0.5), nn.Linear(32, 3)).double()


def bn_model() -> nn.Module:
    """BatchNorm with running statistics from shifted data, so eval mode differs from train mode."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 3)).double()
    with torch.no_grad():
        for _ in range(5):
            model(2.0 * torch.randn(64, 8, dtype=torch.float64) + 0.5)
    return model


def indices(count: int, seed: int, sampler: str = "with_replacement") -> torch.Tensor:
    stream = minibatch_indices(N, S, sampler, seed)
    return torch.stack([next(stream) for _ in range(count)])


def loop_gradients(model: nn.Module, x, y, idx) -> np.ndarray:
    """(M, m) minibatch gradients, one backward per minibatch, on a train-mode copy of the model."""
    model = copy.deepcopy(model).train()
    rows = []
    for i in idx:
        model.zero_grad()
        LOSS(model(x[i]), y[i]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy())
    return np.array(rows)


def loop_noise(g: np.ndarray, q: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``S tr Cov``, its influence-function s.e., and ``S diag(q^T Cov q)`` from loop gradients."""
    centred = g - g.mean(0)
    sq = np.sum(centred**2, 1)
    return (S * np.trace(np.cov(g.T)), S * sq.std(ddof=1) / np.sqrt(len(g)),
            S * np.einsum("mi,mn,ni->i", q, np.cov(g.T), q))


def random_directions(m: int, k: int = 3) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(2).standard_normal((m, k)))[0]


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("build", [mlp, bn_model, dropout_mlp])
def test_leaves_parameters_buffers_rng_and_modes_unchanged(build):
    x, y = make_data()
    model = build().eval()
    before, rng = state_of(model), torch.get_rng_state()
    minibatch_noise(model, LOSS, x, y, indices(40, 0), chunk_size=16)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert not any(m.training for m in model.modules())


def test_plain_mlp_with_replacement_agrees_with_per_example_sigma():
    x, y = make_data()
    model = mlp()
    q = random_directions(sum(p.numel() for p in model.parameters()))
    idx = indices(M, 1)
    noise = minibatch_noise(model, LOSS, x, y, idx, q, chunk_size=64)
    sigma = gradient_noise(model, LOSS, (x, y), q)
    # E[S tr Cov(g_B)] = tr Sigma exactly for minibatches drawn with replacement; 4 s.e. (a false failure
    # at ~6e-5 if the jackknife s.e. is right, which the Monte Carlo test checks).
    assert abs(noise.trace - sigma.trace) < 4 * noise.trace_se
    assert np.all(np.abs(noise.mode_noise - sigma.mode_noise) < 4 * noise.mode_noise_se)
    # The same minibatches through an explicit loop: identical numbers (float64).
    trace, se, modes = loop_noise(loop_gradients(model, x, y, idx), q)
    np.testing.assert_allclose(noise.trace, trace, rtol=1e-10)
    np.testing.assert_allclose(noise.mode_noise, modes, rtol=1e-9)
    # Jackknife over 16 groups (15 dof, ~18% relative noise) against the influence-function s.e.
    assert noise.trace_se == pytest.approx(se, rel=0.5)
    assert (noise.num_minibatches, noise.batch_size, noise.groups) == (M, S, 16)


def test_jackknife_standard_error_matches_the_monte_carlo_spread():
    # K independent sets of M = 64 minibatches: the spread of the estimates against the RMS reported s.e.
    # Relative MC error of the spread ~ 1/sqrt(2 (K - 1)) = 9% for K = 60, of the RMS s.e. ~ 3%; a
    # tolerance of 30% is > 3 combined standard deviations.
    x, y = make_data()
    model = mlp()
    runs = [minibatch_noise(model, LOSS, x, y, indices(64, 100 + k), chunk_size=64) for k in range(60)]
    traces = np.array([r.trace for r in runs])
    rms_se = np.sqrt(np.mean([r.trace_se**2 for r in runs]))
    assert rms_se == pytest.approx(traces.std(ddof=1), rel=0.3)


def test_dropout_noise_is_larger_and_matches_a_direct_monte_carlo_loop():
    x, y = make_data()
    model = dropout_mlp()
    q = random_directions(sum(p.numel() for p in model.parameters()))
    idx = indices(M, 3)
    noise = minibatch_noise(model, LOSS, x, y, idx, q, seed=4)
    eval_sigma = gradient_noise(model, LOSS, (x, y)).trace
    assert noise.trace > eval_sigma + 4 * noise.trace_se            # dropout adds its own noise
    torch.manual_seed(5)                                            # other masks, same minibatches
    trace, se, _ = loop_noise(loop_gradients(model, x, y, idx), q)
    assert abs(noise.trace - trace) < 4 * np.hypot(noise.trace_se, se)


def test_batchnorm_noise_differs_from_eval_mode_and_matches_a_direct_loop():
    x, y = make_data()
    model = bn_model()
    q = random_directions(sum(p.numel() for p in model.parameters()))
    idx = indices(M, 6)
    noise = minibatch_noise(model, LOSS, x, y, idx, q, chunk_size=50)
    eval_sigma = gradient_noise(model, LOSS, (x, y)).trace
    assert abs(noise.trace - eval_sigma) > 4 * noise.trace_se      # batch statistics couple the examples
    trace, _, modes = loop_noise(loop_gradients(model, x, y, idx), q)
    np.testing.assert_allclose(noise.trace, trace, rtol=1e-10)     # deterministic in train mode
    np.testing.assert_allclose(noise.mode_noise, modes, rtol=1e-9)


def test_mean_gradient_is_the_mean_of_the_minibatch_gradients():
    x, y = make_data()
    model = bn_model()
    idx = indices(20, 7)
    noise = minibatch_noise(model, LOSS, x, y, list(idx), chunk_size=6, groups=4)
    np.testing.assert_allclose(noise.mean_gradient, loop_gradients(model, x, y, idx).mean(0), rtol=1e-10,
                               atol=1e-14)
    assert noise.groups == 4 and noise.mode_noise.shape == (0,)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(minibatches=torch.zeros(3, S, dtype=torch.long)), r"minibatches=.*shape \(3, 8\).*M >= 4"),
    (dict(minibatches=torch.zeros(5, S)), r"minibatches=.*dtype torch\.float32.*integer indices"),
    (dict(minibatches=torch.full((5, S), N)), r"minibatches='\(indices out of range\)'.*\[0, 96\)"),
    (dict(directions=np.zeros((3, 1443))), r"directions has shape \(3, 1443\): expected \(1443, k\).*transp"),
    (dict(chunk_size=0), r"chunk_size=0 is invalid"),
    (dict(groups=1), r"groups=1 is invalid: expected an integer >= 2"),
])
def test_bad_input_names_the_parameter(kwargs, match):
    x, y = make_data()
    args = dict(minibatches=indices(8, 0)) | kwargs
    with pytest.raises(ValueError, match=match):
        minibatch_noise(mlp(), LOSS, x, y, **args)
