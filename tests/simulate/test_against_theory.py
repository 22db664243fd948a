"""Each simulator against the theory layer's closed forms (the converse of the theory's own Monte Carlo)."""

from __future__ import annotations

import numpy as np

from sgd_dynamics import Hyperparams
from sgd_dynamics.simulate import simulate_phase_space_sde, simulate_quadratic_sgd
from sgd_dynamics.theory import global_displacement, mean_trajectory, stationary_moments, stationary_speed


def _within(sample: np.ndarray, predicted: float, sigmas: float = 4.0) -> None:
    stderr = sample.std(ddof=1) / np.sqrt(sample.size)
    assert abs(sample.mean() - predicted) < sigmas * stderr, (sample.mean(), predicted, stderr)


def test_quadratic_sgd_speed_and_displacement_match_exact_discrete_theory():
    hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=8, weight_decay=1e-3)
    sb = np.sqrt(0.9)
    rho = np.array([0.0, 0.05, (1 - sb) ** 2 / 0.05, 3.0, 70.0])  # free, over, critical, under, near the edge
    s = np.array([1.0, 0.5, 2.0, 1.0, 0.3])
    lags = [1, 7, 40]
    traj = simulate_quadratic_sgd(eigenvalues=rho, noise_variances=s, hyper=hp, steps=max(lags),
                                  replicas=6000, seed=11, start="stationary")
    disp = traj.global_sq_displacement()
    _within(traj.local_sq_displacement()[0], stationary_speed(rho, s, hp, model="discrete"))
    predicted = global_displacement(rho, s, hp, lags, model="discrete")
    for lag, pred in zip(lags, predicted, strict=True):
        _within(disp[lag], pred)


def test_exact_phase_space_sampler_matches_continuous_theory_at_any_step():
    hp = Hyperparams(lr=0.1, momentum=0.8, batch_size=2)
    rho, s = np.array([0.2, 5.0]), np.array([1.0, 1.0])
    mom = stationary_moments(rho, s, hp, model="continuous")
    # a coarse step (dt = 5 eta) must still give the stationary law exactly
    traj = simulate_phase_space_sde(rho, s, hyper=hp, steps=20, dt=5 * hp.lr, replicas=20000, seed=3,
                                    start="stationary", method="exact")
    _within(traj.velocity[-1][:, 1] ** 2, mom.velocity_variance[1])
    _within(traj.position[-1][:, 0] ** 2, mom.position_variance[0])


def test_quadratic_sgd_mean_from_a_fixed_start_matches_exact_mean():
    hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=4)
    rho, s = np.array([0.5, 8.0]), np.array([0.2, 0.2])
    x0, v0 = np.array([1.0, -0.5]), np.array([0.0, 0.3])
    traj = simulate_quadratic_sgd(eigenvalues=rho, noise_variances=s, hyper=hp, steps=60, replicas=4000,
                                  seed=5, start=(x0, v0))
    mx, _ = mean_trajectory(rho, hp, [10, 60], x0, v0, model="discrete")
    for j, k in enumerate([10, 60]):
        for mode in range(2):
            _within(traj.position[k][:, mode], mx[j, mode])
