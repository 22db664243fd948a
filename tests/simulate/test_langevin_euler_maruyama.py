"""Euler-Maruyama of :mod:`sgd_dynamics.simulate.langevin` against the one-draw-per-step loop it replaced.

The reference is the previous implementation written out plainly (one ``standard_normal`` call per step,
``x - dt grad U(x) + sqrt(2 T_k dt) xi``): the block-drawn noise and in-place updates must give the same
bits for the same seed, with a constant temperature, a schedule, position-dependent noise and thinning.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sgd_dynamics.simulate.langevin import annealing_schedule, euler_maruyama


def reference_loop(gradient, x0, temperature, dt, n_steps, seed, noise_factor=None, record_every=1):
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64)
    out = [x.copy()]
    for k in range(n_steps):
        xi = rng.standard_normal(x.shape)
        if noise_factor is not None:
            kick = math.sqrt(dt) * np.einsum("nij,nj->ni", noise_factor(x), xi)
        else:
            tk = float(temperature(np.asarray(k))) if callable(temperature) else temperature
            kick = math.sqrt(2.0 * tk * dt) * xi
        x = x - dt * gradient(x) + kick
        if (k + 1) % record_every == 0:
            out.append(x.copy())
    return np.stack(out)


def double_well(x):
    return 4 * x * (x * x - 1)


@pytest.mark.parametrize("record_every", [1, 3, 7])
def test_constant_temperature_is_bit_identical(record_every):
    x0 = np.linspace(-1.5, 1.5, 33)
    got = euler_maruyama(double_well, x0, 0.4, 1e-3, 200, seed=5, record_every=record_every)
    ref = reference_loop(double_well, x0, 0.4, 1e-3, 200, 5, record_every=record_every)
    assert got.shape == ref.shape
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("kind", ["step", "cosine", "log"])
def test_schedule_is_bit_identical(kind):
    schedule = annealing_schedule(kind, 0.8, 150)
    x0 = np.zeros((6, 2))
    got = euler_maruyama(lambda x: x * (x * x).sum(axis=1, keepdims=True), x0, schedule, 2e-3, 150, seed=1)
    ref = reference_loop(lambda x: x * (x * x).sum(axis=1, keepdims=True), x0, schedule, 2e-3, 150, 1)
    assert np.array_equal(got, ref)


def test_position_dependent_noise_is_bit_identical():
    def noise_factor(x):
        b = np.zeros((x.shape[0], 2, 2))
        b[:, 0, 0] = 1 + x[:, 0] ** 2
        b[:, 1, 1] = 0.5
        b[:, 1, 0] = 0.1 * x[:, 1]
        return b

    x0 = np.ones((4, 2))
    got = euler_maruyama(lambda x: x, x0, 1.0, 1e-2, 60, seed=9, noise_factor=noise_factor, record_every=2)
    ref = reference_loop(lambda x: x, x0, 1.0, 1e-2, 60, 9, noise_factor=noise_factor, record_every=2)
    assert np.array_equal(got, ref)


def test_noise_blocks_do_not_change_the_stream(monkeypatch):
    # more steps than one block of pre-drawn noise: the block boundary must not show in the path
    import sgd_dynamics.simulate.langevin as langevin

    monkeypatch.setattr(langevin, "_NOISE_BLOCK_ELEMENTS", 50)
    x0 = np.linspace(-1, 1, 8)
    got = langevin.euler_maruyama(double_well, x0, 0.3, 1e-3, 101, seed=3, record_every=4)
    assert np.array_equal(got, reference_loop(double_well, x0, 0.3, 1e-3, 101, 3, record_every=4))


def test_ou_stationary_variance_matches_euler_recursion():
    # Independent check of the scheme itself: for U = k x^2 / 2 the Euler map x <- (1 - k dt) x + c xi has
    # stationary variance c^2 / (1 - (1 - k dt)^2); compare the replica variance within its standard error.
    k, temp, dt, n = 2.0, 0.5, 0.05, 400
    x = euler_maruyama(lambda x: k * x, np.zeros(4000), temp, dt, n, seed=11, record_every=n)[-1]
    exact = 2 * temp * dt / (1 - (1 - k * dt) ** 2)
    se = exact * math.sqrt(2 / x.size)  # s.e. of a Gaussian sample variance
    assert abs(x.var() - exact) < 4 * se


def test_validation_names_the_parameter():
    with pytest.raises(ValueError, match="dt"):
        euler_maruyama(double_well, np.zeros(3), 1.0, -1.0, 10, seed=0)
    with pytest.raises(ValueError, match="n_steps"):
        euler_maruyama(double_well, np.zeros(3), 1.0, 0.1, 0, seed=0)


def test_long_runs_draw_compiled_noise_with_the_same_bits():
    # 2^20 draws and more take the compiled normal draws (normal_draws.COMPILED_MIN_DRAWS): the path must
    # still be the one-draw-per-step loop's, bit for bit, across several noise blocks
    from sgd_dynamics.simulate.normal_draws import COMPILED_MIN_DRAWS

    x0 = np.linspace(-1.2, 1.2, 1000)
    n_steps = COMPILED_MIN_DRAWS // x0.size + 3
    got = euler_maruyama(double_well, x0, 0.3, 1e-3, n_steps, seed=8, record_every=50)
    assert np.array_equal(got, reference_loop(double_well, x0, 0.3, 1e-3, n_steps, 8, record_every=50))
