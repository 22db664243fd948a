"""The compiled, transient-dropping evaluation of the lag sum (issue 15) against independent references.

``global_displacement`` evaluates the lag sum as its exact large-``t`` line plus a decaying transient in
real arithmetic per damping regime, and returns the line itself once the transient is below float64
resolution. References, none from the new code:

* up to ``t = 1e7``: ``2 (P_xx - [M^t P]_xx)`` in mpmath at 60 digits, with ``P`` from a 60-digit solve of
  ``P = M P M^T + W`` (Kronecker form) and ``M^t`` by mpmath's repeated squaring; the free mode (``h = 0``)
  by its AR(1) closed form in mpmath;
* up to ``t = 1500``, many modes at once: the long-double direct summation of ``conftest.py``.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from sgd_dynamics import Hyperparams
from sgd_dynamics.theory import global_displacement

EPS = np.finfo(float).eps
STEPS = [1, 2, 70, 300, 1000, 10**4, 10**5, 10**6, 10**7]


def stationary_displacement_mp(lr, momentum, curvature, noise, batch_size, steps, dps=60):
    """E(x_{k+t} - x_k)^2 of the exact recursion at stationarity, in mpmath."""
    with mpmath.workdps(dps):
        eta, beta, h = mpmath.mpf(lr), mpmath.mpf(momentum), mpmath.mpf(curvature)
        s = mpmath.mpf(noise) / batch_size
        if curvature == 0:
            b = beta
            scale = eta**2 * s / (1 - b**2)
            return [float(scale * (t * (1 + b) / (1 - b) - 2 * b * (1 - b**t) / (1 - b) ** 2)) for t in steps]
        m = mpmath.matrix([[1 - eta * h, eta * beta], [-h, beta]])
        w = s * mpmath.matrix([[eta**2, eta], [eta, 1]])
        kron = mpmath.eye(4) - mpmath.matrix(
            [[m[i // 2, k // 2] * m[i % 2, k % 2] for k in range(4)] for i in range(4)])
        vec = mpmath.lu_solve(kron, mpmath.matrix([w[0, 0], w[0, 1], w[1, 0], w[1, 1]]))
        p = mpmath.matrix([[vec[0], vec[1]], [vec[2], vec[3]]])
        return [float(2 * (p[0, 0] - (m ** int(t) * p)[0, 0])) for t in steps]


def _curvatures(hp: Hyperparams) -> dict[str, float]:
    sb, limit = np.sqrt(hp.momentum), hp.stability_limit
    crit = (1 - sb) ** 2 / hp.lr
    return {"free": 0.0, "slow": limit * 1e-5, "over": 0.3 * crit, "critical": crit,
            "near_critical": crit * (1 + 1e-6), "under": 0.4 * limit, "fast": 0.9 * limit,
            "edge": limit * (1 - 1e-5)}


CASES = [(lr, beta, wd) for lr in (0.01, 0.3) for beta in (0.0, 0.5, 0.9, 0.999) for wd in (0.0, 1e-3)]


@pytest.mark.parametrize(("lr", "momentum", "weight_decay"), CASES)
def test_matches_60_digit_matrix_powers_up_to_ten_million_steps(lr, momentum, weight_decay):
    hp = Hyperparams(lr=lr, momentum=momentum, batch_size=4, weight_decay=weight_decay)
    for regime, h in _curvatures(hp).items():
        if regime == "free" and weight_decay > 0:
            continue
        h = max(h, weight_decay) if regime != "free" else 0.0
        rho = h - weight_decay
        got = global_displacement([rho], [0.7], hp, STEPS)
        ref = np.array(stationary_displacement_mp(lr, momentum, rho + weight_decay, 0.7, 4, STEPS))
        # input conditioning near the stability edge (as in test_discrete), else 1e-12
        edge = 2 * (1 + momentum) / (2 * (1 + momentum) - lr * h)
        rtol = 1e-12 + 200 * EPS * edge
        rel = np.abs(got - ref) / ref
        assert np.all(rel <= rtol), (regime, rel, rtol)


def test_many_modes_at_once_match_long_double_summation(discrete_reference):
    # mixed regimes in one call: the regime split, the direct-sum blocks and the mode chunks must not mix
    hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=2, weight_decay=1e-4)
    limit = hp.stability_limit
    h = np.concatenate([[1e-4], limit * np.geomspace(1e-6, 0.98, 23)])
    rho, s = h - 1e-4, np.linspace(0.2, 2.0, h.size)
    steps = [1, 3, 64, 65, 200, 333, 1500]
    ref = sum(discrete_reference(0.05, 0.9, hi, si, 2, steps)[0] for hi, si in zip(h, s, strict=True))
    got = global_displacement(rho, s, hp, steps)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_spectrum_summed_over_modes_matches_60_digit_references():
    # one call over every regime at once, so modes decay at different times: the summed kernel's running
    # sums of lines, its partial sums and the compiled direct sums must add up to the per-mode references
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=4)
    h = np.array(list(_curvatures(hp).values()) + list(np.random.default_rng(3).uniform(0, 300, 6)))
    s = np.linspace(0.3, 1.7, h.size)
    got = global_displacement(h, s, hp, STEPS)
    ref = sum(np.array(stationary_displacement_mp(0.01, 0.9, hi, si, 4, STEPS)) for hi, si in zip(h, s,
                                                                                                    strict=True))
    # the stability edge's input conditioning (see above) on the mode nearest it
    np.testing.assert_allclose(got, ref, rtol=1e-12 + 200 * EPS * 2 * 1.9 / (2 * 1.9 - 0.01 * h.max()))


def test_unsorted_and_repeated_steps_match_long_double_summation(discrete_reference):
    # the compiled loops walk the times in ascending order; any order given must give the same values
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=2)
    h, s = np.array([1.0, 50.0, 250.0]), np.array([1.0, 0.5, 2.0])
    steps = [300, 1500, 300, 70, 1, 64, 65]
    ref = sum(discrete_reference(0.01, 0.9, hi, si, 2, steps)[0] for hi, si in zip(h, s, strict=True))
    np.testing.assert_allclose(global_displacement(h, s, hp, steps), ref, rtol=1e-12)


@pytest.mark.parametrize("model", ["discrete", "eq19_sampled_sum"])
def test_large_spectrum_summed_matches_the_per_mode_closed_form(model):
    # 1200 modes (several partial-sum blocks) at 200 log-spaced times to 1e7: the summed, compiled path
    # against the per-mode (steps x modes) evaluation of the same closed form summed by numpy
    from sgd_dynamics.theory import discrete, phase_space

    rng = np.random.default_rng(0)
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=32)
    rho = np.concatenate([[0.0], rng.uniform(0, 1, 100), rng.uniform(0, 300, 1099)])
    s = rng.uniform(0.1, 2.0, rho.size)
    steps = np.unique(np.logspace(0, 7, 200).astype(np.int64))
    per_mode = {"discrete": discrete.discrete_displacement_per_mode,
                "eq19_sampled_sum": phase_space.eq19_sampled_sum_per_mode}[model]
    dense = per_mode(rho, s, hp, steps).sum(axis=1)
    np.testing.assert_allclose(global_displacement(rho, s, hp, steps, model=model), dense, rtol=1e-12)
