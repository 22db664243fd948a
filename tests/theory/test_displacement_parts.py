"""Drift and diffusion parts of the resumed displacement (issue 11 §2).

Against long-double recursions of the 2x2 covariance, a replica Monte Carlo of the PyTorch recursion, and the
displacement functions they add up to.
"""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics import Hyperparams, UnstableModeError
from sgd_dynamics.theory import (
    DisplacementParts,
    discrete,
    displacement_decomposition,
    global_displacement,
    global_displacement_from_start,
    stationary_moments,
)

EPS = np.finfo(float).eps
LD = np.longdouble


def _maps(lr: float, momentum: float, h: float, s: float, batch: int):
    """``(M - I, W)`` in long double for ``(x, b)``: ``b' = beta b + h x + xi``, ``x' = x - eta b'``."""
    eta, beta, hh = LD(lr), LD(momentum), LD(h)
    m_minus_i = np.array([[-eta * hh, -eta * beta], [hh, beta - 1]], dtype=LD)
    kick = np.array([-eta, LD(1)], dtype=LD)  # the response of (x, b) to xi
    return m_minus_i, np.outer(kick, kick) * (LD(s) / batch)


def recursion_reference(lr, momentum, h, s, batch, x0_var, steps) -> np.ndarray:
    """``(drift, diffusion)`` at each step by iterating ``P <- M P M^T + W`` and ``D <- M D + (M - I)``
    (``D = M^k - I``, kept small where ``M^k`` is near ``I``) step by step, in long double."""
    d1, w = _maps(lr, momentum, h, s, batch)
    m = d1 + np.eye(2, dtype=LD)
    p, d = np.zeros((2, 2), dtype=LD), np.zeros((2, 2), dtype=LD)
    out, wanted = {}, set(int(k) for k in steps)
    for k in range(max(wanted) + 1):
        if k in wanted:
            out[k] = (float(d[0, 0] ** 2 * LD(x0_var)) if d[0, 0] != 0 else 0.0, float(p[0, 0]))
        p = m @ p @ m.T + w
        d = m @ d + d1
    return np.array([out[int(k)] for k in steps])


def doubling_reference(lr, momentum, h, s, batch, x0_var, steps) -> np.ndarray:
    """The same by binary powering, ``P_{2n} = P_n + M^n P_n M^nT`` and ``M^{2n} - I = D_n^2 + 2 D_n``, for
    steps far beyond what iterating can reach (long double)."""
    d1, w = _maps(lr, momentum, h, s, batch)
    m, eye = d1 + np.eye(2, dtype=LD), np.eye(2, dtype=LD)
    out = []
    for k in steps:
        d, p = np.zeros((2, 2), dtype=LD), np.zeros((2, 2), dtype=LD)
        for bit in bin(int(k))[2:] if k > 0 else "":
            p = p + (d + eye) @ p @ (d + eye).T
            d = d @ d + 2 * d
            if bit == "1":
                p = m @ p @ m.T + w
                d = d + d1 @ d + d1
        out.append((float(d[0, 0] ** 2 * LD(x0_var)) if d[0, 0] != 0 else 0.0, float(p[0, 0])))
    return np.array(out)


def _curvature(regime: str, hp: Hyperparams) -> float:
    sb, eta, limit = np.sqrt(hp.momentum), hp.lr, hp.stability_limit
    return {"zero": 0.0, "tiny": 1e-10 * limit, "over": 0.01 * (1 - sb) ** 2 / eta,
            "critical": (1 - sb) ** 2 / eta, "under": ((1 - sb) ** 2 + (1 + sb) ** 2) / (2 * eta),
            "random": 0.3 * limit, "edge": (1 - 1e-6) * limit}[regime]


CASES = [(lr, beta) for lr in (0.01, 1.0) for beta in (0.0, 0.5, 0.9, 0.999)]
REGIMES = ["zero", "tiny", "over", "critical", "under", "random", "edge"]


def _tolerance(hp: Hyperparams, h: float) -> float:
    # the input's distance to the stability edge: one rounding of eta * h moves the exact value by about
    # eps * edge there (checked: 1.2e-8 for edge = 1e6); 1e-11 covers the O(k eps) phase of u_k at k ~ 4096
    edge = 2 * (1 + hp.momentum) / (2 * (1 + hp.momentum) - hp.lr * h)
    return 1e-11 + 200 * EPS * edge


@pytest.mark.parametrize("regime", REGIMES)
def test_each_part_matches_the_long_double_recursion(regime):
    steps = [0, 1, 2, 5, 63, 64, 65, 300, 2000, 4096, 4097, 6000]
    for lr, beta in CASES:
        hp = Hyperparams(lr=lr, momentum=beta, batch_size=2)
        h = _curvature(regime, hp)
        x0_var = 0.7 if h > 0 else np.inf
        drift, diffusion = discrete.displacement_parts_from_start_per_mode(
            np.array([h]), np.array([1.3]), hp, np.array(steps), x0_var)
        ref = recursion_reference(lr, beta, h, 1.3, 2, x0_var if h > 0 else 0.0, steps)
        assert drift[0, 0] == 0.0 and diffusion[0, 0] == 0.0
        np.testing.assert_allclose(drift[1:, 0], ref[1:, 0], rtol=_tolerance(hp, h), atol=0,
                                   err_msg=f"drift lr={lr} beta={beta} h={h}")
        np.testing.assert_allclose(diffusion[1:, 0], ref[1:, 1], rtol=_tolerance(hp, h),
                                   err_msg=f"diffusion lr={lr} beta={beta} h={h}")


@pytest.mark.parametrize("regime", REGIMES)
def test_each_part_matches_long_double_doubling_to_ten_million_steps(regime):
    steps = [10**4, 10**5, 10**6, 10**7]
    for lr, beta in CASES:
        hp = Hyperparams(lr=lr, momentum=beta, batch_size=2)
        h = _curvature(regime, hp)
        x0_var = 0.7 if h > 0 else np.inf
        parts = discrete.displacement_parts_from_start_per_mode(np.array([h]), np.array([1.3]), hp,
                                                                np.array(steps), x0_var)
        ref = doubling_reference(lr, beta, h, 1.3, 2, x0_var if h > 0 else 0.0, steps)
        for got, want, name in zip(parts, ref.T, ("drift", "diffusion"), strict=True):
            assert np.all(np.isfinite(got))
            np.testing.assert_allclose(got[:, 0], want, rtol=_tolerance(hp, h),
                                       err_msg=f"{name} lr={lr} beta={beta} h={h}")


def test_parts_add_up_to_the_displacement_from_a_settled_start_with_a_fresh_optimizer():
    settle = Hyperparams(lr=0.1, momentum=0.9, batch_size=8, weight_decay=1e-3)
    hp = Hyperparams(lr=0.05, momentum=0.5, batch_size=4, weight_decay=1e-3)
    rho = np.concatenate([[0.0], np.geomspace(1e-9, 37.0, 400)])
    s = np.linspace(0.1, 3.0, rho.size)
    steps = np.unique(np.geomspace(1, 1e7, 60).astype(np.int64))
    parts = displacement_decomposition(rho, s, hp, steps, start_hyper=settle)
    assert isinstance(parts, DisplacementParts)
    x0_var = stationary_moments(rho, s, settle).position_variance
    np.testing.assert_allclose(parts.total, global_displacement_from_start(rho, s, hp, steps, x0_var),
                               rtol=1e-12)
    np.testing.assert_allclose(parts.drift + parts.diffusion, parts.total, rtol=1e-15)
    np.testing.assert_array_equal(parts.step, steps)
    # the diffusion does not depend on the start: the same from a settled start with its buffer
    kept = displacement_decomposition(rho, s, hp, steps, start_hyper=settle, fresh_buffer=False)
    np.testing.assert_array_equal(kept.diffusion, parts.diffusion)


def test_stationary_start_with_stationary_velocity_gives_the_stationary_displacement():
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=2)
    rho = np.array([1e-6, 0.02, 0.5, 5.0, 30.0])
    s = np.array([1.0, 0.4, 2.0, 0.7, 1.1])
    # steps where the two share no formula (see test_displacement_from_start)
    steps = np.array([1, 2, 5, 17, 40, 64])
    parts = displacement_decomposition(rho, s, hp, steps, fresh_buffer=False)
    edge = 2 * 1.9 / (2 * 1.9 - hp.lr * rho.max())
    np.testing.assert_allclose(parts.total, global_displacement(rho, s, hp, steps),
                               rtol=1e-11 + 200 * EPS * edge / (1 - hp.momentum) ** 2)


def test_replica_monte_carlo_of_the_pytorch_recursion():
    """Many theta* from the settle law, R replicas each with independent minibatches and a fresh buffer."""
    rng = np.random.default_rng(11)
    settle = Hyperparams(lr=0.04, momentum=0.9, batch_size=2, weight_decay=0.01)
    hp = Hyperparams(lr=0.1, momentum=0.5, batch_size=2, weight_decay=0.01)
    rho = np.array([0.0, 0.3, 5.0, 25.0])  # slow, overdamped, underdamped, near hp's edge (eta h = 2.5 < 3)
    s = np.array([1.0, 2.0, 0.5, 3.0])
    starts, replicas, steps = 3000, 8, (1, 6, 50)
    x_star = rng.standard_normal((starts, 1, rho.size)) * np.sqrt(
        stationary_moments(rho, s, settle).position_variance)
    x = np.broadcast_to(x_star, (starts, replicas, rho.size)).copy()
    b = np.zeros_like(x)
    h = hp.curvature(rho)
    predicted = displacement_decomposition(rho, s, hp, list(steps), start_hyper=settle)
    for k in range(1, max(steps) + 1):
        b = hp.momentum * b + h * x + rng.normal(0.0, np.sqrt(s / hp.batch_size), x.shape)
        x = x - hp.lr * b
        if k in steps:
            j = steps.index(k)
            spread = x.var(axis=1, ddof=1).sum(axis=1)  # unbiased tr Cov(theta_k | theta*), per start
            centre = ((x.mean(axis=1) - x_star[:, 0]) ** 2).sum(axis=1) - spread / replicas  # unbiased drift
            for sample, want, name in ((centre, predicted.drift[j], "drift"),
                                       (spread, predicted.diffusion[j], "diffusion")):
                se = sample.std(ddof=1) / np.sqrt(starts)
                assert abs(sample.mean() - want) < 4 * se, (name, k, sample.mean(), want, se)


def test_tens_of_thousands_of_weighted_modes_in_bounded_blocks():
    """A quadrature's weights folded into the noise: 20000 copies of four modes, weights summing to one."""
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=2)
    base = np.array([0.0, 1e-4, 2.0, 30.0])
    rho = np.tile(base, 5000)
    weights = np.full(rho.size, 1 / 5000)
    steps = [0, 3, 100, 10**5]
    parts = displacement_decomposition(rho, weights * 1.3, hp, steps, fresh_buffer=True)
    settled = stationary_moments(base, np.full(4, 1.3), hp).position_variance
    ref = sum(doubling_reference(0.1, 0.9, r, 1.3, 2, v if r > 0 else 0.0, steps)
              for r, v in zip(base, settled, strict=True))
    np.testing.assert_allclose(parts.drift, ref[:, 0], rtol=1e-10)
    np.testing.assert_allclose(parts.diffusion, ref[:, 1], rtol=1e-10)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"start_hyper": {"lr": 0.1}}, ValueError,
     r"start_hyper=\{'lr': 0.1\} is invalid: expected a sgd_dynamics"),
    ({"fresh_buffer": 1}, ValueError, r"fresh_buffer=1 is invalid: expected True or False"),
    ({"start_hyper": Hyperparams(lr=1.0, momentum=0.5)}, UnstableModeError,
     r"under start_hyper: eigenvalues\[1\]=5.0 is unstable"),
    ({"start_hyper": Hyperparams(lr=0.1, momentum=0.9)}, ValueError,
     r"eigenvalues\[0\]=0.0 is invalid with start_hyper.weight_decay=0.0: .* expected rho \+ "
     r"start_hyper.weight_decay > 0"),
    ({"steps": [-1]}, ValueError, r"steps must be a non-empty 1-D array of integers >= 0"),
])
def test_bad_input_names_the_parameter(kwargs, error, match):
    hp = Hyperparams(lr=0.1, momentum=0.9, weight_decay=0.01)
    args = {"steps": [1, 2]} | kwargs
    with pytest.raises(error, match=match):
        displacement_decomposition([0.0, 5.0], [1.0, 1.0], hp, **args)
