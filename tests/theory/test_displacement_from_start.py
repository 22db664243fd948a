"""E(x_k - x_0)^2 from a random start (resumed training) against long-double matrix powers, Monte Carlo of
the PyTorch recursion, the stationary displacement and the free-mode closed form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgd_dynamics import Hyperparams
from sgd_dynamics.theory import (
    discrete,
    global_displacement,
    global_displacement_from_start,
    stationary_moments,
)

EPS = np.finfo(float).eps
LD = np.longdouble


def from_start_reference(lr: float, momentum: float, h: float, s: float, batch: int, steps: list[int],
                         x0_var: float, b0_var: float, x0_b0_cov: float) -> np.ndarray:
    """``(e^T M^k - e^T) C_0 (.)^T + sum_{j<k} (e^T M^j c)^2 s/S`` by iterating ``e^T M^j`` in long double.

    ``M`` acts on ``(x, b)`` in PyTorch's convention: ``b' = beta b + h x + xi``, ``x' = x - eta b'``.
    """
    eta, beta, hh = LD(lr), LD(momentum), LD(h)
    m00, m01, m10, m11 = 1 - eta * hh, -eta * beta, hh, beta  # x' = m00 x + m01 b, b' = m10 x + m11 b
    c0, c1 = -eta, LD(1)  # response of (x, b) to xi
    var = LD(s) / batch
    vx, vb, cxb = LD(x0_var), LD(b0_var), LD(x0_b0_cov)
    r0, r1 = LD(1), LD(0)  # the row e^T M^j
    noise = LD(0)
    out = {}
    wanted = set(steps)
    for k in range(max(steps) + 1):
        if k in wanted:
            a0, a1 = r0 - 1, r1
            out[k] = a0 * a0 * vx + 2 * a0 * a1 * cxb + a1 * a1 * vb + noise * var
        g = r0 * c0 + r1 * c1
        noise += g * g
        r0, r1 = r0 * m00 + r1 * m10, r0 * m01 + r1 * m11
    return np.array([float(out[k]) for k in steps])


def _curvature(regime: str, hp: Hyperparams, u: float) -> float:
    eta, sb = hp.lr, np.sqrt(hp.momentum)
    limit = hp.stability_limit
    value = {
        "zero": 0.0,
        "tiny": limit * 10 ** (-12 + 10 * u),
        "critical": (1 - sb) ** 2 / eta * (1 + (u - 0.5) * 1e-6),
        "exact_critical": (1 - sb) ** 2 / eta,
        "under": ((1 - sb) ** 2 + u * ((1 + sb) ** 2 - (1 - sb) ** 2)) / eta,
        "over": (1 - sb) ** 2 / eta * u,
        "edge": limit * (1 - 10 ** (-6 - 3 * u)),
        "random": limit * u,
    }[regime]
    return float(min(max(value, 0.0), limit * (1 - 1e-9)))


regimes = st.sampled_from(["zero", "tiny", "critical", "exact_critical", "under", "over", "edge", "random"])
STEPS = [0, 1, 2, 3, 17, 64, 65, 66, 200, 1500, 2500]


@settings(max_examples=50, deadline=None)
@given(regime=regimes, u=st.floats(1e-9, 1), lr=st.floats(1e-3, 1.0),
       momentum=st.sampled_from([0.0, 0.3, 0.9, 0.99, 0.999]),
       x0_var=st.floats(0.0, 10.0), b0_var=st.sampled_from([0.0, 0.3, 4.0]), corr=st.floats(-1.0, 1.0))
def test_matches_long_double_matrix_powers(regime, u, lr, momentum, x0_var, b0_var, corr, discrete_reference):
    hp = Hyperparams(lr=lr, momentum=momentum, batch_size=3)
    h = _curvature(regime, hp, u)
    cov = corr * np.sqrt(x0_var * b0_var)
    ref = from_start_reference(lr, momentum, h, 0.9, 3, STEPS, x0_var, b0_var, cov)
    got = discrete.displacement_from_start_per_mode(np.array([h]), np.array([0.9]), hp, np.array(STEPS),
                                                     x0_var, b0_var, cov)[:, 0]
    assert got[0] == 0.0 and ref[0] == 0.0
    # Past the direct-summation range the value is the stationary displacement plus a_k^T (C_0 - P) a_k:
    # the tolerance carries that subtraction's condition (stationary value times its own summation
    # condition, over the result, from the independent long-double reference of conftest), the input's
    # distance to the stability edge, and a floor for the O(k eps) rounding of k * angle.
    stat, cond = discrete_reference(lr, momentum, h, 0.9, 3, STEPS[1:])
    cancel = stat * cond / ref[1:]
    edge = 2 * (1 + momentum) / (2 * (1 + momentum) - lr * h)
    rtol = 1e-11 + 200 * EPS * (cancel + edge)
    rel = np.abs(got[1:] - ref[1:]) / ref[1:]
    assert np.all(np.isfinite(got))
    assert np.all(rel <= rtol), (rel, rtol)


def test_matrix_powers_in_every_regime_at_fixed_points():
    """Exact critical damping, beta = 0, h = 0, near the edge, a free-ish mode with beta -> 1."""
    sb = np.sqrt(0.9)
    cases = [(0.1, 0.9, (1 - sb) ** 2 / 0.1), (0.1, 0.0, 1e-6), (0.1, 0.0, 5.0), (0.01, 0.9, 0.0),
             (0.1, 0.9, 37.9), (0.1, 0.999, 1e-7), (0.05, 0.99, 0.05), (0.1, 0.5, 29.0)]
    steps = [1, 2, 5, 63, 64, 65, 100, 1000, 5000]
    for lr, beta, h in cases:
        hp = Hyperparams(lr=lr, momentum=beta, batch_size=3)
        vx = 0.7 if h > 0 else 0.0
        got = discrete.displacement_from_start_per_mode(np.array([h]), np.array([1.3]), hp, np.array(steps),
                                                         vx, 0.2, 0.1)[:, 0]
        ref = from_start_reference(lr, beta, h, 1.3, 3, steps, vx, 0.2, 0.1)
        np.testing.assert_allclose(got, ref, rtol=1e-10, err_msg=f"lr={lr} beta={beta} h={h}")


def test_monte_carlo_of_the_pytorch_recursion_resumed_with_a_fresh_optimizer():
    """Start at a draw from the stationary law of other (settle) hyperparameters with b_0 = 0."""
    rng = np.random.default_rng(1)
    settle = Hyperparams(lr=0.02, momentum=0.9, batch_size=4, weight_decay=0.01)
    hp = Hyperparams(lr=0.05, momentum=0.5, batch_size=2, weight_decay=0.01)
    rho = np.array([0.0, 0.3, 5.0, 40.0])  # slow, over-, under-damped, near hp's edge (eta h = 2.0 < 3)
    s = np.array([1.0, 2.0, 0.5, 3.0])
    x0_var = stationary_moments(rho, s, settle).position_variance
    replicas, steps = 40000, (1, 7, 60)
    x = rng.standard_normal((replicas, rho.size)) * np.sqrt(x0_var)
    start = x.copy()
    b = np.zeros_like(x)
    h = rho + hp.weight_decay
    samples = {}
    for k in range(1, max(steps) + 1):
        b = hp.momentum * b + h * x + rng.normal(0.0, np.sqrt(s / hp.batch_size), x.shape)
        x = x - hp.lr * b
        if k in steps:
            samples[k] = np.sum((x - start) ** 2, axis=1)
    predicted = global_displacement_from_start(rho, s, hp, list(steps), x0_var)
    stationary = global_displacement(rho, s, hp, list(steps))
    for k, p, p_stat in zip(steps, predicted, stationary, strict=True):
        stderr = samples[k].std(ddof=1) / np.sqrt(replicas)
        assert abs(samples[k].mean() - p) < 3 * stderr, (k, samples[k].mean(), p, stderr)
        if k < 10:
            # early on the stationary formula is a different quantity: the same data must reject it
            assert abs(samples[k].mean() - p_stat) > 10 * stderr, (k, samples[k].mean(), p_stat, stderr)


@settings(max_examples=40, deadline=None)
@given(regime=regimes, u=st.floats(1e-9, 1), lr=st.floats(1e-3, 1.0),
       momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]), batch=st.integers(1, 16))
def test_stationary_start_gives_the_stationary_displacement(regime, u, lr, momentum, batch):
    # Steps within the direct-summation range (<= 64 for every mode), where the two formulas share nothing:
    # sums of u_j and u_j^2 here, the closed-form lag sums of lag_sums there.
    hp = Hyperparams(lr=lr, momentum=momentum, batch_size=batch)
    h = _curvature(regime, hp, u)
    if h == 0:
        return  # no stationary position law; covered by test_free_mode_closed_form_to_a_billion_steps
    steps = np.array([1, 2, 5, 17, 40, 64])
    mom = stationary_moments([h], [1.1], hp)
    got = global_displacement_from_start([h], [1.1], hp, steps, mom.position_variance,
                                         mom.velocity_variance, -mom.cross_covariance)  # b = -v
    want = global_displacement([h], [1.1], hp, steps)
    edge = 2 * (1 + momentum) / (2 * (1 + momentum) - lr * h)
    np.testing.assert_allclose(got, want, rtol=1e-11 + 200 * EPS * edge / (1 - momentum) ** 2)


def test_free_mode_closed_form_to_a_billion_steps():
    # h = 0: v is AR(1) from v_0, so x_k - x_0 = eta [beta u_k v_0 - sum_m (1 - beta^m)/(1 - beta) xi_m]
    # with u_k = (1 - beta^k)/(1 - beta), whatever x_0 (here of infinite variance).
    for beta in (0.0, 0.9, 0.999):
        hp = Hyperparams(lr=0.1, momentum=beta, batch_size=2)
        k = np.array([1, 10, 1000, 10**6, 10**9], dtype=np.float64)
        got = global_displacement_from_start([0.0], [3.0], hp, k.astype(np.int64), np.inf, 0.5)
        g = 1 / (1 - beta)
        sum_sq = g**2 * (k - 2 * beta * (1 - beta**k) * g + beta**2 * (1 - beta ** (2 * k)) / (1 - beta**2))
        u_k = (1 - beta**k) * g
        want = hp.lr**2 * (3.0 / 2 * sum_sq + beta**2 * u_k**2 * 0.5)
        np.testing.assert_allclose(got, want, rtol=1e-9)


@settings(max_examples=30, deadline=None)
@given(regime=regimes, u=st.floats(1e-9, 1), momentum=st.sampled_from([0.0, 0.9, 0.999]))
def test_large_steps_are_finite_and_decorrelate(regime, u, momentum):
    hp = Hyperparams(lr=0.1, momentum=momentum, batch_size=1)
    h = _curvature(regime, hp, u)
    steps = np.array([10**6, 10**7, 10**9])
    got = global_displacement_from_start([h], [1.0], hp, steps, 0.3, 0.2)
    assert np.all(np.isfinite(got)) and np.all(got > 0)
    slow_rate = hp.lr * h / (1 - momentum)
    if h > 0 and hp.lr * h < 0.9 * 2 * (1 + momentum) and slow_rate * 1e7 > 200:
        # x_k forgets the start: E(x_k - x_0)^2 -> Var_stat x + Var x_0
        var_x = stationary_moments([h], [1.0], hp).position_variance[0]
        assert got[1] == pytest.approx(var_x + 0.3, rel=1e-7)


def test_vanishing_curvature_tends_to_the_free_mode():
    hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=1)
    steps = np.array([1, 50, 3000, 10**5])
    free = global_displacement_from_start([0.0], [1.0], hp, steps, 2.0, 0.1)
    tiny = global_displacement_from_start([1e-14], [1.0], hp, steps, 2.0, 0.1)
    np.testing.assert_allclose(tiny, free, rtol=1e-7)


def test_global_sums_modes_and_chunks_steps():
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=2)
    rho = np.linspace(0.0, 30.0, 700)
    s = np.linspace(0.1, 2.0, 700)
    steps = np.arange(0, 4500, 3)  # (steps x modes) is more than one chunk
    got = global_displacement_from_start(rho, s, hp, steps, 0.5, 0.1, 0.05)
    pick = [0, 1, 333, 1499]
    per_mode = [from_start_reference(0.1, 0.9, r, si, 2, list(steps[pick]), 0.5, 0.1, 0.05)
                for r, si in zip(rho, s, strict=True)]
    np.testing.assert_allclose(got[pick], np.sum(per_mode, axis=0), rtol=1e-10)
    assert got.shape == steps.shape and got[0] == 0.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"x0_variances": -1.0}, r"x0_variances\[0\]=-1.0 is invalid: expected values >= 0"),
    ({"b0_variances": np.inf}, r"b0_variances\[0\]=inf is invalid: expected finite values >= 0"),
    ({"x0_b0_covariances": 2.0}, r"x0_b0_covariances\[0\]=2.0 is invalid: expected \|covariance\| <= "),
    ({"x0_variances": [1.0, 2.0, 3.0]}, r"x0_variances must be a scalar or have one entry per eigenvalue"),
    ({"steps": [-1]}, r"steps must be a non-empty 1-D array of integers >= 0"),
])
def test_bad_input_names_the_parameter(kwargs, match):
    args = {"steps": [1, 2], "x0_variances": 1.0, "b0_variances": 1.0} | kwargs
    hp = Hyperparams(lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=match):
        global_displacement_from_start([1.0, 2.0], [1.0, 1.0], hp, **args)
