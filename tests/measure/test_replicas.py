"""Batched replicas against separate torch.optim.SGD runs on the same minibatch streams (float64).

Independent references: ``R`` separate runs of ``experiments.training.train`` with ``torch.optim.SGD``,
their parameter vectors after every step (speeds, displacements and projections computed from them in
NumPy), and NumPy sample statistics of the final parameter vectors for the drift/diffusion split.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.estimation.replica_decomposition import replica_decomposition
from sgd_dynamics.experiments.training import (
    cross_entropy,
    make_optimizer,
    minibatch_indices,
    mse_onehot,
    train,
)
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure import LogSchedule
from sgd_dynamics.measure.replicas import _gram, init_replicas, replica_seeds, run_replicas

pytestmark = pytest.mark.usefixtures("single_thread")
N, S, STEPS, R = 96, 16, 30, 3


def make_mlp() -> nn.Module:
    """8 -> 32 -> 32 -> 3 tanh MLP in float64 (1443 parameters)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).double()


def make_bn_model() -> nn.Module:
    """8 -> 32 -> BatchNorm -> tanh -> 3 in float64."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 3)).double()


def make_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def hyper(momentum: float, sampler: str = "with_replacement", lr: float = 0.1) -> Hyperparams:
    return Hyperparams(lr=lr, momentum=momentum, batch_size=S, weight_decay=1e-3, dataset_size=N,
                       sampler=sampler)


def streams(seeds, sampler):
    return [minibatch_indices(N, S, sampler, s) for s in seeds]


def flat(model: nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach()


def directions(m: int, k: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))[0].T.contiguous()


def separate_runs(build, loss, hp, seeds, x, y, steps=STEPS):
    """Each replica as its own torch.optim.SGD run; its parameters and losses after every step."""
    runs = []
    for s in seeds:
        model = build()
        thetas, losses = [flat(model).clone()], []

        def on_step(k, value, model=model, thetas=thetas, losses=losses):
            thetas.append(flat(model).clone())
            losses.append(value)

        train(model, make_optimizer(model, hp), x, y, loss, steps, minibatch_indices(N, S, hp.sampler, s),
              on_step=on_step)
        runs.append((model, torch.stack(thetas).numpy(), np.array(losses)))
    return runs


@pytest.mark.parametrize("sampler", ["with_replacement", "without_replacement"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("loss", [cross_entropy, mse_onehot], ids=["cross_entropy", "mse"])
def test_batched_replicas_equal_separate_sgd_runs(loss, momentum, sampler):
    x, y = make_data(N)
    hp, seeds = hyper(momentum, sampler), replica_seeds(7, R)
    model = make_mlp()
    theta_star = flat(model).clone()
    q = directions(theta_star.numel())
    traj = run_replicas(model, loss, x, y, hp, STEPS, streams(seeds, sampler), directions=q, schedule=None)
    assert torch.equal(flat(model), theta_star)                      # the model itself is untouched
    np.testing.assert_array_equal(traj.steps, np.arange(1, STEPS + 1))
    qn = q.numpy()
    for r, (single, thetas, losses) in enumerate(separate_runs(make_mlp, loss, hp, seeds, x, y)):
        torch.testing.assert_close(traj.state.params[r], flat(single), rtol=0, atol=1e-12)
        delta, displacement = np.diff(thetas, axis=0), thetas[1:] - thetas[0]
        np.testing.assert_allclose(traj.loss_per_step[:, r], losses, rtol=1e-12)
        np.testing.assert_allclose(traj.loss[:, r], losses, rtol=1e-12)
        np.testing.assert_allclose(traj.local_sq_displacement[:, r], np.sum(delta**2, 1), rtol=1e-9)
        np.testing.assert_allclose(traj.global_sq_displacement[:, r], np.sum(displacement**2, 1), rtol=1e-10)
        np.testing.assert_allclose(traj.position_projection[:, r], displacement @ qn.T, rtol=0, atol=1e-12)
        # v_k = (theta_k - theta_{k-1}) / eta: the displacement's rounding, ~1e-16 / eta, limits the match.
        np.testing.assert_allclose(traj.velocity_projection[:, r], delta @ qn.T / hp.lr, rtol=0, atol=1e-11)


def test_batchnorm_buffers_are_per_replica_and_match_separate_runs():
    x, y = make_data(N)
    hp, seeds = hyper(0.9), replica_seeds(3, R)
    model = make_bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    traj = run_replicas(model, cross_entropy, x, y, hp, 20, streams(seeds, hp.sampler), schedule=None)
    for k, v in model.state_dict().items():                          # parameters and running stats
        assert torch.equal(v, before[k]), k
    assert model.training and model[1].training
    for r, (single, _, _) in enumerate(separate_runs(make_bn_model, cross_entropy, hp, seeds, x, y, 20)):
        loaded = traj.state.load_into(make_bn_model(), r).state_dict()
        for k, v in single.state_dict().items():
            torch.testing.assert_close(loaded[k], v, rtol=0, atol=1e-12, msg=k)
    running = traj.state.buffers["1.running_mean"]
    assert not torch.allclose(running[0], running[1])                # each replica saw its own batches


def test_drift_diffusion_from_the_gram_matrix_match_the_final_parameter_vectors():
    x, y = make_data(N)
    hp, seeds = hyper(0.9, lr=0.05), replica_seeds(11, 5)
    model = make_mlp()
    theta_star = flat(model).numpy().copy()
    traj = run_replicas(model, cross_entropy, x, y, hp, 25, streams(seeds, hp.sampler),
                        schedule=LogSchedule(5))
    np.testing.assert_array_equal(traj.steps, [1, 2, 3, 4, 6, 10, 16, 25])
    d = traj.state.params.numpy() - theta_star                     # (R, m) after step 25, direct NumPy
    diffusion = np.var(d, axis=0, ddof=1).sum()
    mean = d.mean(0)
    parts = traj.decomposition()
    np.testing.assert_allclose(parts.diffusion[-1], diffusion, rtol=1e-9)
    np.testing.assert_allclose(parts.drift[-1], mean @ mean - diffusion / 5, rtol=1e-9)
    np.testing.assert_allclose(parts.total[-1], np.mean(np.sum(d**2, 1)), rtol=1e-12)
    np.testing.assert_allclose(parts.total, parts.drift + parts.diffusion, rtol=1e-12)
    assert np.all(parts.diffusion > 0) and np.all(np.isfinite(parts.drift_se))


def test_float32_gram_keeps_the_diffusion_precise_under_a_dominant_drift():
    # Drift 2500x the diffusion, float32 parameters: the pivoted Gram matrix gives the diffusion to the
    # float32 rounding of the replicas' differences; a plain float32 D D^T loses ~2.5e-4 to cancellation.
    g = torch.Generator().manual_seed(0)
    m = 78858
    theta_star = torch.randn(m, generator=g)
    params = (theta_star + 0.05 * torch.randn(m, generator=g) + 1e-3 * torch.randn(R, m, generator=g)).float()
    d64 = params.double().numpy() - theta_star.double().numpy()
    diffusion = np.var(d64, axis=0, ddof=1).sum()               # float64 reference
    gram = _gram(params - theta_star).numpy()
    assert replica_decomposition(gram).diffusion == pytest.approx(diffusion, rel=1e-6)
    mean = d64.mean(0)
    assert replica_decomposition(gram).drift == pytest.approx(mean @ mean - diffusion / R, rel=1e-6)


def test_mode_decomposition_is_the_split_of_the_projections():
    x, y = make_data(N)
    hp = hyper(0.9)
    model = make_mlp()
    q = directions(flat(model).numel(), k=3)
    traj = run_replicas(model, cross_entropy, x, y, hp, 12, streams(replica_seeds(2, 4), hp.sampler),
                        directions=q, schedule=4)
    np.testing.assert_array_equal(traj.steps, [1, 5, 9])
    modes = traj.mode_decomposition()
    p = traj.position_projection                                   # (T, R, k)
    np.testing.assert_allclose(modes.diffusion, np.var(p, axis=1, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(modes.total, np.mean(p**2, axis=1), rtol=1e-10)
    assert modes.diffusion.shape == (3, 3) and traj.loss_per_step.shape == (12, 4)


def test_continuing_from_a_state_equals_one_long_run():
    x, y = make_data(N)
    hp, seeds = hyper(0.9), replica_seeds(4, R)
    model = make_mlp()
    whole = run_replicas(model, cross_entropy, x, y, hp, 20, streams(seeds, hp.sampler), schedule=None)
    s = streams(seeds, hp.sampler)
    first = run_replicas(model, cross_entropy, x, y, hp, 12, s, schedule=None)
    second = run_replicas(model, cross_entropy, x, y, hp, 8, s, schedule=None, state=first.state)
    assert torch.equal(second.state.params, whole.state.params)
    np.testing.assert_array_equal(second.steps, np.arange(13, 21))
    np.testing.assert_array_equal(second.gram, whole.gram[12:])


def test_dropout_masks_are_independent_per_replica_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(0.3), nn.Linear(32, 3)).double()
    x, y = make_data(N)
    hp = hyper(0.9)
    rng = torch.get_rng_state()

    def run(seed):
        same = [minibatch_indices(N, S, hp.sampler, 9) for _ in range(2)]     # identical minibatches
        return run_replicas(model, cross_entropy, x, y, hp, 10, same, schedule=None, seed=seed)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a.state.params, b.state.params)             # reproducible from the seed
    assert not torch.equal(a.state.params, c.state.params)
    assert not torch.allclose(a.state.params[0], a.state.params[1])  # same batches, own masks


def test_divergence_raises():
    x, y = make_data(N)
    with pytest.raises(FloatingPointError, match="diverged"):
        run_replicas(make_mlp(), mse_onehot, x, y, hyper(0.9, lr=1e3), 300,
                     streams(replica_seeds(0, 2), "with_replacement"), schedule=None)


def test_bad_input_names_the_parameter():
    x, y = make_data(N)
    hp, model = hyper(0.9), make_mlp()
    one = minibatch_indices(N, S, hp.sampler, 0)
    with pytest.raises(ValueError, match=r"index_streams=.*a stream repeated.*distinct stream per replica"):
        run_replicas(model, cross_entropy, x, y, hp, 5, [one, one])
    with pytest.raises(ValueError, match=r"len\(index_streams\)=1 is invalid: expected >= 2"):
        run_replicas(model, cross_entropy, x, y, hp, 5, [one])
    two = streams([0, 1], hp.sampler)
    with pytest.raises(ValueError, match=r"state\.replicas=3 is invalid: expected len\(index_streams\) = 2"):
        run_replicas(model, cross_entropy, x, y, hp, 5, two, state=init_replicas(model, 3))
    with pytest.raises(ValueError, match=r"shapes=\[\(8,\)\] is invalid: expected one shape, \(16,\)"):
        small = [minibatch_indices(N, 8, hp.sampler, s) for s in (0, 1)]
        run_replicas(model, cross_entropy, x, y, hp, 5, small)
    with pytest.raises(ValueError, match=r"directions has shape \(1443, 2\): expected \(k, 1443\).*transp"):
        run_replicas(model, cross_entropy, x, y, hp, 5, streams([0, 1], hp.sampler),
                     directions=torch.zeros(1443, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"steps=0 is invalid"):
        run_replicas(model, cross_entropy, x, y, hp, 0, streams([0, 1], hp.sampler))
    with pytest.raises(ValueError, match=r"replicas=1 is invalid: expected an integer >= 2"):
        init_replicas(model, 1)
    bn = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4, momentum=None), nn.Linear(4, 3)).double()
    with pytest.raises(ValueError, match=r"model\.1 is BatchNorm with momentum=None"):
        run_replicas(bn, cross_entropy, x, y, hp, 5, streams([0, 1], hp.sampler))
