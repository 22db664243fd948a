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
