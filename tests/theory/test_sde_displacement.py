"""The SDE's own displacement (ERRATA 002.6, defect 5 of issue 12).

Against mpmath, scipy's Lyapunov solver with ``expm``, a Monte Carlo of the SDE with exact OU transitions, and
eq. 19's sampled sum that it replaces.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from sgd_dynamics import Hyperparams
from sgd_dynamics.simulate.phase_space_sde import simulate_phase_space_sde
from sgd_dynamics.theory import (
    global_displacement,
    local_exponent,
    phase_space,
    sde_transient,
    stationary_moments,
)

EPS = np.finfo(float).eps
STEPS = np.array([1, 2, 3, 10, 64, 65, 1000, 10**4, 10**5, 10**6])


def _critical(hp: Hyperparams) -> float:
    """Curvature ``h`` at critical damping, ``(1 - beta)^2 = 2 eta (1 + beta) h``."""
    return (1 - hp.momentum) ** 2 / (2 * hp.lr * (1 + hp.momentum))


CURVATURES = {  # as functions of the hyperparameters
    "zero": lambda hp: 0.0,
    "tiny": lambda hp: 1e-10 * _critical(hp),
    "over": lambda hp: 1e-2 * _critical(hp),
    "near-critical over": lambda hp: (1 - 1e-7) * _critical(hp),
    "critical": _critical,
    "near-critical under": lambda hp: (1 + 1e-7) * _critical(hp),
    "under": lambda hp: min(10 * _critical(hp), 0.5 * hp.stability_limit),
    "edge": lambda hp: 0.999 * hp.stability_limit,
}


@pytest.mark.parametrize("regime", list(CURVATURES))
def test_matches_mpmath_in_every_regime_up_to_a_million_steps(regime, sde_mpmath):
    for lr, beta in [(0.01, 0.0), (0.1, 0.5), (1.0, 0.9), (0.1, 0.999)]:
        hp = Hyperparams(lr=lr, momentum=beta, batch_size=3)
        h = CURVATURES[regime](hp)
        got = global_displacement([h], [0.8], hp, STEPS, model="sde")
        ref = np.array([sde_mpmath.displacement(lr, beta, 3, h, 0.8, k) for k in STEPS])
        # measured worst case 1.4e-13: the phase theta k of a slowly decaying oscillation at k = 1e3
        np.testing.assert_allclose(got, ref, rtol=1e-12, err_msg=f"lr={lr} beta={beta} h={h}")


def test_matches_lyapunov_and_expm_in_float64():
    """``2 (P_xx - [expm(-A eta k) P]_xx)`` with P from scipy's continuous Lyapunov solver, several modes."""
    hp = Hyperparams(lr=0.05, momentum=0.8, batch_size=4, weight_decay=1e-3)
    rho = np.array([0.01, 0.5, _critical(hp) - 1e-3, 3.0, 40.0, 70.0])
    s = np.array([1.0, 0.3, 2.0, 0.7, 1.5, 0.2])
    steps = np.array([1, 7, 30, 200, 5000])
    drifts = phase_space.drift_matrix(rho, hp)
    rates = 2 * phase_space.diffusion_matrix(s, hp) / hp.inverse_temperature
    ref, cond = np.zeros((steps.size, rho.size)), np.zeros((steps.size, rho.size))
    for i, (a, q) in enumerate(zip(drifts, rates, strict=True)):
        p = scipy.linalg.solve_continuous_lyapunov(a, q)
        for j, k in enumerate(steps):
            relaxed = (scipy.linalg.expm(-a * hp.lr * k) @ p)[0, 0]
            ref[j, i] = 2 * (p[0, 0] - relaxed)
            cond[j, i] = 2 * (p[0, 0] + abs(relaxed)) / ref[j, i]  # the reference's own cancellation
    got = sde_transient.sde_displacement_per_mode(rho, s, hp, steps)
    assert np.all(np.abs(got - ref) <= 100 * EPS * cond * ref), np.max(np.abs(got / ref - 1) / cond)
    np.testing.assert_allclose(global_displacement(rho, s, hp, steps, model="sde"), ref.sum(axis=1),
                               rtol=100 * EPS * cond.max())


def test_monte_carlo_of_the_sde_with_exact_transitions():
    rng_seed = 7
    hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=2)
    rho = np.array([0.0, 0.02, 2.0, 30.0])  # free, overdamped, underdamped, fast
    s = np.array([1.0, 0.5, 2.0, 1.0])
    lags = (1, 5, 40, 400)
    replicas = 4000
    traj = simulate_phase_space_sde(rho, s, hyper=hp, steps=max(lags), replicas=replicas, seed=rng_seed,
                                    start="stationary")
    x0 = traj.position[0]
    predicted = sde_transient.sde_displacement_per_mode(rho, s, hp, np.array(lags))
    eq19 = phase_space.eq19_sampled_sum_per_mode(rho, s, hp, np.array(lags))
    for j, k in enumerate(lags):
        # the free mode's x starts at 0 (no stationary law), but its increments are stationary all the same
        sq = (traj.position[k] - x0) ** 2
        mean, se = sq.mean(axis=0), sq.std(axis=0, ddof=1) / np.sqrt(replicas)
        assert np.all(np.abs(mean - predicted[j]) <= 4.5 * se), (k, mean, predicted[j], se)
    # the same data reject eq. 19's sampled sum for the confined modes at the longest lag
    assert np.all(np.abs(mean[2:] - eq19[-1, 2:]) > 10 * se[2:]), (mean, eq19[-1], se)


def test_saturates_where_eq19_sampled_sum_grows():
    """ERRATA 002.6: a confined mode's displacement tends to 2 Var x; eq. 19's sampled sum grows linearly."""
    hp = Hyperparams(lr=0.01, momentum=0.0, batch_size=8)
    steps = np.array([10**5, 10**6])
    sde = global_displacement([2.0], [1.0], hp, steps, model="sde")
    eq19 = global_displacement([2.0], [1.0], hp, steps, model="eq19_sampled_sum")
    two_var_x = 2 * stationary_moments([2.0], [1.0], hp, model="sde").position_variance[0]
    np.testing.assert_allclose(sde, two_var_x, rtol=1e-12)
    assert eq19[0] > 100 * sde[0] and eq19[1] / eq19[0] > 9.9  # linear growth
    assert abs(local_exponent([2.0], [1.0], hp, [10**6], model="sde")[0]) < 1e-9


def test_continuous_is_the_sde():
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=2)
    rho, s, steps = np.array([0.0, 0.4, 9.0]), np.array([1.0, 0.2, 3.0]), [1, 50, 10**4]
    np.testing.assert_array_equal(global_displacement(rho, s, hp, steps, model="continuous"),
                                  global_displacement(rho, s, hp, steps, model="sde"))


def test_one_step_is_the_position_increment_not_eq18():
    """At one step the SDE gives ``2 Var v int_0^eta (eta - u) C(u) du``, not eq. 18's ``eta^2 Var v``."""
    hp = Hyperparams(lr=0.1, momentum=0.5, batch_size=1)
    h = 2.0
    a = phase_space.drift_matrix(np.array([h]), hp)[0]
    var_v = 1.0 / hp.inverse_temperature
    nodes, weights = np.polynomial.legendre.leggauss(30)
    u = hp.lr * (nodes + 1) / 2
    corr = np.array([scipy.linalg.expm(-a * ui)[1, 1] for ui in u])  # E[v(u) v(0)] / Var v
    ref = 2 * var_v * np.sum(weights * hp.lr / 2 * (hp.lr - u) * corr)
    got = global_displacement([h], [1.0], hp, [1], model="sde")[0]
    assert got == pytest.approx(ref, rel=1e-13)
    assert got < 0.9 * hp.lr**2 * var_v  # 19 % below eq. 18 here; 2 (1 - beta) / (3 (1 + beta)) to 1st order
