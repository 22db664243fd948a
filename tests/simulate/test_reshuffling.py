"""Real epoch reshuffling (a permutation per epoch and replica) against the exact reshuffled theory, with
Monte Carlo tolerances from the standard error over independent replicas."""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics import Hyperparams
from sgd_dynamics.simulate.reshuffling import reshuffled_batches, simulate_reshuffled_quadratic_sgd
from sgd_dynamics.theory import (
    EpochSchedule,
    reshuffled_displacement_from_start,
    reshuffled_speed_per_step,
    reshuffled_stationary_speed,
    stationary_speed,
)

N, LR = 64, 0.1
RHO = np.array([0.5, 3.0])


def rr(batch, momentum, n=N, lr=LR, weight_decay=0.0):
    return Hyperparams(lr=lr, momentum=momentum, batch_size=batch, dataset_size=n, weight_decay=weight_decay,
                       sampler="without_replacement")


def offsets(n=N, modes=2, seed=0):
    u = np.random.default_rng(seed).standard_normal((n, modes)) * [1.0, 1.5][:modes]
    return u - u.mean(axis=0)


def burn_in_epochs(momentum, batches):
    # From zero the covariance relaxes like beta^k (complex roots here) or (1 - eta h)^(2k) (beta = 0): the
    # bias left is below 1e-3 of the value, under a tenth of the Monte Carlo tolerance.
    steps = {0.0: 150, 0.9: 250, 0.99: 700}[momentum]
    return -(-steps // batches)


def replicas(momentum):
    return 600 if momentum == 0.99 else 1500  # beta = 0.99 burns in longest


def test_batches_partition_each_permutation():
    rng = np.random.default_rng(3)
    for n, s, drop_last in ((10, 3, False), (10, 3, True), (8, 4, False)):
        gen = reshuffled_batches(rng, n, s, replicas=5, drop_last=drop_last)
        sch = EpochSchedule(n, s, drop_last)
        for _ in range(2):  # two epochs
            parts = [next(gen) for _ in range(sch.batches)]
            assert [p.shape[1] for p in parts] == sch.batch_sizes.tolist()
            used = np.sort(np.concatenate(parts, axis=1), axis=1)
            assert used.shape[1] == n - sch.unused_examples
            assert np.all(np.diff(used, axis=1) > 0)  # no example twice within an epoch


@pytest.mark.parametrize("n, s, drop_last", [(12, 5, False), (12, 5, True)])
def test_sampled_noise_covariance_monte_carlo(n, s, drop_last, assert_mc_mean):
    u = offsets(n)
    sigma = u.T @ u / n
    sch = EpochSchedule(n, s, drop_last)
    gen = reshuffled_batches(np.random.default_rng(4), n, s, replicas=40000, drop_last=drop_last)
    xi = np.stack([u[next(gen)].mean(axis=1) for _ in range(sch.batches)], axis=1)  # (R, M, 2)
    products = xi[:, :, None, :, None] * xi[:, None, :, None, :]
    want = sch.noise_correlation()[:, :, None, None] * sigma
    assert_mc_mean(products.reshape(products.shape[0], -1), want.reshape(-1), z=4.0, what="xi covariance")


CASES = [  # batch, momentum, drop_last
    (8, 0.0, False), (32, 0.0, False),
    (8, 0.9, False), (16, 0.9, False), (24, 0.9, False), (24, 0.9, True),
    (16, 0.99, False), (32, 0.99, False), (24, 0.99, True),
]


@pytest.mark.parametrize("batch, momentum, drop_last", CASES)
def test_speed_per_step_and_epoch_average(batch, momentum, drop_last, assert_mc_mean):
    hp = rr(batch, momentum)
    u = offsets()
    s = np.mean(u**2, axis=0)
    m = EpochSchedule(N, batch, drop_last).batches
    epochs = 12
    tr = simulate_reshuffled_quadratic_sgd(RHO, u, hyper=hp, steps=epochs * m, replicas=replicas(momentum),
                                           seed=batch,
                                           drop_last=drop_last, burn_in_epochs=burn_in_epochs(momentum, m))
    per_step = tr.local_sq_displacement().reshape(epochs, m, -1).mean(axis=0).T  # (R, M), step j of the epoch
    theory = reshuffled_speed_per_step(RHO, s, hp, drop_last)
    assert_mc_mean(per_step, theory, z=4.0, what="speed per step of the epoch")
    mean, se = assert_mc_mean(per_step.mean(axis=1), reshuffled_stationary_speed(RHO, s, hp, drop_last),
                              z=4.0, what="epoch-averaged speed")
    wr = stationary_speed(RHO, s, Hyperparams(lr=LR, momentum=momentum, batch_size=batch), model="discrete")
    if abs(theory.mean() / wr - 1) > 0.2:
        # the same data must reject sampling with replacement's prediction (002 eq. 18 exact counterpart)
        assert abs(mean - wr) > 10 * se, (mean, wr, se)


@pytest.mark.parametrize("batch, momentum, drop_last", [(16, 0.9, False), (24, 0.99, False), (24, 0.9, True)])
def test_displacement_from_an_epoch_boundary(batch, momentum, drop_last, assert_mc_mean):
    hp = rr(batch, momentum)
    u = offsets()
    s = np.mean(u**2, axis=0)
    m = EpochSchedule(N, batch, drop_last).batches
    ks = np.array([1, 2, m, m + 1, 3 * m + 2, 40])
    kw = dict(hyper=hp, replicas=replicas(momentum), drop_last=drop_last)
    resumed = simulate_reshuffled_quadratic_sgd(RHO, u, steps=int(ks.max()), seed=11,
                                                burn_in_epochs=burn_in_epochs(momentum, m), **kw)
    assert_mc_mean(resumed.global_sq_displacement()[ks].T,
                   reshuffled_displacement_from_start(RHO, s, hp, ks, "cyclostationary", drop_last), z=4.0,
                   what="cyclostationary start")
    # fresh optimizer: the burnt-in position, v = 0, new permutations (another seed)
    x0 = resumed.position[0]
    fresh = simulate_reshuffled_quadratic_sgd(RHO, u, steps=int(ks.max()), seed=12, start=(x0, 0 * x0), **kw)
    assert_mc_mean(fresh.global_sq_displacement()[ks].T,
                   reshuffled_displacement_from_start(RHO, s, hp, ks, "fresh_optimizer", drop_last), z=4.0,
                   what="fresh optimizer")
    zero = simulate_reshuffled_quadratic_sgd(RHO, u, steps=int(ks.max()), seed=13, **kw)
    assert_mc_mean(zero.global_sq_displacement()[ks].T,
                   reshuffled_displacement_from_start(RHO, s, hp, ks, "zero", drop_last), z=4.0,
                   what="zero start")


def test_full_batch_is_deterministic_heavy_ball():
    hp = rr(N, 0.9)
    x0 = np.array([1.0, -0.5])
    tr = simulate_reshuffled_quadratic_sgd(RHO, offsets(), hyper=hp, steps=30, replicas=3, seed=0,
                                           start=(x0, np.zeros(2)))
    x, v = x0.copy(), np.zeros(2)
    for _ in range(30):
        v = 0.9 * v - RHO * x
        x = x + LR * v
    np.testing.assert_allclose(tr.position[-1], np.broadcast_to(x, (3, 2)), rtol=1e-12)


def test_reproducible_and_validated():
    hp = rr(16, 0.9)
    u = offsets()
    a = simulate_reshuffled_quadratic_sgd(RHO, u, hyper=hp, steps=9, replicas=4, seed=5, burn_in_epochs=2)
    b = simulate_reshuffled_quadratic_sgd(RHO, u, hyper=hp, steps=9, replicas=4, seed=5, burn_in_epochs=2)
    np.testing.assert_array_equal(a.position, b.position)
    with pytest.raises(ValueError, match=r"offsets.mean\(axis=0\)=.* is invalid: expected 0"):
        simulate_reshuffled_quadratic_sgd(RHO, u + 1.0, hyper=hp, steps=2, seed=0)
    with pytest.raises(ValueError, match=r"offsets.shape\[0\]=63 is invalid: expected hyper.dataset_size=64"):
        simulate_reshuffled_quadratic_sgd(RHO, u[:-1] - u[:-1].mean(0), hyper=hp, steps=2, seed=0)
    with pytest.raises(ValueError, match=r"sampler='with_replacement' is invalid"):
        simulate_reshuffled_quadratic_sgd(RHO, u, hyper=Hyperparams(lr=0.1, batch_size=4, dataset_size=N),
                                          steps=2, seed=0)
    with pytest.raises(ValueError, match=r"start='stationary' is invalid: expected one of zero"):
        simulate_reshuffled_quadratic_sgd(RHO, u, hyper=hp, steps=2, seed=0, start="stationary")
    with pytest.raises(ValueError, match=r"burn_in_epochs=-1 is invalid"):
        simulate_reshuffled_quadratic_sgd(RHO, u, hyper=hp, steps=2, seed=0, burn_in_epochs=-1)
