"""The Euler–Maruyama bias model of the mean exit time against the exact MFPT of the discrete chain.

Independent reference: the mean reported exit time of the simulated chain (Euler step, Brownian-bridge
crossing, crossing time inside the step) solves a linear integral equation, its backward equation
``tau(x) = E[1{no crossing} (dt + tau(Y)) + 1{crossing} s]``; :func:`euler_chain_mfpt` solves it by a dense
Nyström method (Gauss–Legendre nodes, a linear solve), with the mean crossing time ``E[s]`` of a Brownian
bridge from the Laplace transform of its inverse Gaussian law. No code is shared with the simulator or the
model; the linear response is also checked against scipy's nested QUADPACK quadrature.
"""

import math

import numpy as np
import pytest
from scipy import integrate

from sgd_dynamics.simulate.first_passage import choose_time_step, euler_bias, first_passage_times_1d
from sgd_dynamics.theory.escape import mean_first_passage_time, mfpt_linear_response
from sgd_dynamics.theory.potential import parse_potential

_GL, _GW = np.polynomial.legendre.leggauss(8)
_Q, _QW = np.polynomial.legendre.leggauss(60)
_Q, _QW = 3.5 * (_Q + 1.0), 3.5 * _QW  # q on [0, 7]: the integrand below carries e^{-q^2}

SLOPE = ("x**2", 1.0, 0.0, 2.0)  # target on a slope, U'(b) = 4
BARRIER_TOP = ("(x**2-1)**2", 0.5, -0.9, 0.0)
BEYOND_BARRIER = ("x**4/4 - x**2/2 + 0.15*x", 0.15, -1.068, 1.5)  # up the far well's slope
CASES = [SLOPE, BARRIER_TOP, BEYOND_BARRIER]


def _nodes(a, b, width):
    n = max(1, math.ceil((b - a) / width))
    edges = np.linspace(a, b, n + 1)
    half = 0.5 * np.diff(edges)[:, None]
    return (edges[:-1, None] + half * (_GL + 1.0)).ravel(), (half * _GW).ravel()


def mean_bridge_fraction(d0, d1, variance_dt):
    """``E[s] / dt`` of the crossing time of a bridge from distance d0 to d1: ``1 - E[1/(1+u)]``.

    ``u = s / (dt - s)`` is inverse Gaussian (mean d0/d1, shape lam = d0^2/(v dt)); with its Laplace transform
    ``E[e^{-pu}] = exp(lam r - sqrt(lam^2 r^2 + 2 lam p))`` (r = d1/d0),
    ``E[1/(1+u)] = int e^{-p} E[e^{-pu}] dp``, here with ``p = q^2``.
    """
    lam = d0 * d0 / variance_dt
    lr = lam * (d1 / d0)
    transform = np.exp(lr[:, None] - np.sqrt(lr[:, None] ** 2 + 2.0 * lam[:, None] * _Q**2))
    return 1.0 - transform @ (_QW * 2.0 * _Q * np.exp(-_Q**2))


def euler_chain_mfpt(U, T, x0, b, dt, bridge_time=True):
    """Exact mean exit time reported by the simulated chain (x0 < b); ``bridge_time=False``: step ends."""
    s = math.sqrt(2.0 * T * dt)
    grid = np.linspace(x0 - 20.0, b, 200_001)
    u = U.energy(grid)
    left = grid[np.nonzero((u - u.min() >= 25 * T) & (grid < x0))[0][-1]]  # e^{-25}: no mass beyond
    y, w = _nodes(left, b, s)
    beyond, wb = _nodes(b, b + 12.0 * s, s)

    def density(m, z):
        return np.exp(-((z[None, :] - m[:, None]) ** 2) / (2 * s * s)) / (s * math.sqrt(2 * math.pi))

    def step(x):
        m, d0 = x - dt * U.gradient(x), b - x
        cross = np.exp(-d0[:, None] * (b - y)[None, :] / (T * dt))
        py = density(m, y) * w
        stay, crossed_in, crossed_out = py * (1.0 - cross), py * cross, density(m, beyond) * wb
        if not bridge_time:
            return stay, dt * (py.sum(axis=1) + crossed_out.sum(axis=1))
        reward = dt * stay.sum(axis=1)
        for weights, distance in ((crossed_in, b - y), (crossed_out, beyond - b)):
            i, j = np.nonzero(weights > 1e-20)
            frac = mean_bridge_fraction(d0[i], distance[j], 2 * T * dt)
            reward += dt * np.bincount(i, weights[i, j] * frac, minlength=x.size)
        return stay, reward

    K, r = step(y)
    tau = np.linalg.solve(np.eye(y.size) - K, r)
    k0, r0 = step(np.array([float(x0)]))
    return float(r0[0] + k0[0] @ tau)


def test_reference_reproduces_the_simulator_at_a_coarse_step():
    # Where the bias is large (-7 %), the simulator's mean agrees with the chain's exact mean, not with tau.
    U = parse_potential("x**2")
    dt, n = 0.02, 40_000
    fp = first_passage_times_1d(U, 0.0, 2.0, 1.0, dt, n, seed=1, max_steps=10**8)
    mean, stderr = fp.mean_and_stderr()
    chain = euler_chain_mfpt(U, 1.0, 0.0, 2.0, dt)
    assert abs(mean - chain) < 3 * stderr, (mean, stderr, chain)
    assert mean_first_passage_time(U, 1.0, 0.0, 2.0) - mean > 8 * stderr


@pytest.mark.parametrize(("expression", "T", "x0", "b"), CASES)
def test_bias_rate_is_the_first_order_coefficient_of_the_exact_chain(expression, T, x0, b):
    U = parse_potential(expression)
    exact = mean_first_passage_time(U, T, x0, b)
    rate = euler_bias(U, T, x0, b).rate
    measured = [(euler_chain_mfpt(U, T, x0, b, dt) / exact - 1) / dt for dt in (0.004, 0.001)]
    # The chain's error expansion is rate + C dt^{1/2} + O(dt): the dt^{1/2} part halves from one step to the
    # next, and removing it (Richardson) leaves the O(dt) term, 0.02 |rate| at most in these cases.
    assert (measured[1] - rate) / (measured[0] - rate) == pytest.approx(0.5, abs=0.1)
    assert 2 * measured[1] - measured[0] == pytest.approx(rate, rel=0.03)


def test_reporting_the_end_of_the_step_adds_half_a_step():
    # The former kernel reported k dt: on a short escape (tau = 2.02) that shifts the rate by 1/(2 tau).
    U = parse_potential("x**2")
    exact = mean_first_passage_time(U, 1.0, 0.0, 1.0)
    rate = euler_bias(U, 1.0, 0.0, 1.0).rate
    step_end = [(euler_chain_mfpt(U, 1.0, 0.0, 1.0, dt, bridge_time=False) / exact - 1) / dt
                for dt in (0.008, 0.002)]
    assert 2 * step_end[1] - step_end[0] == pytest.approx(rate + 0.5 / exact, rel=0.01)


@pytest.mark.parametrize(("expression", "T", "x0", "b"), CASES)
def test_the_automatic_step_bounds_the_exact_bias(expression, T, x0, b):
    U = parse_potential(expression)
    step = choose_time_step(U, T, x0, b, replicas=2000)
    bias = euler_chain_mfpt(U, T, x0, b, step.dt) / mean_first_passage_time(U, T, x0, b) - 1
    assert abs(bias) <= step.bias_bound <= step.relative_stderr / 3 * (1 + 1e-12)


def nested_quad_mfpt(U, T, x0, b, eps, phi, psi, left):
    """MFPT of dx = F dt + sqrt(2D) dW, scale potential U + eps phi, D = T(1 + eps psi), by QUADPACK."""
    def Phi(x):
        return float(U.energy(x)) + eps * phi(x)

    def inner(y):
        return integrate.quad(lambda z: math.exp(-Phi(z) / T) / (T * (1 + eps * psi(z))), left, y,
                              epsabs=0, epsrel=1e-12, limit=200)[0]

    return integrate.quad(lambda y: math.exp(Phi(y) / T) * inner(y), x0, b, epsabs=0, epsrel=1e-12,
                          limit=200)[0]


@pytest.mark.parametrize(("expression", "T", "x0", "b", "left"),
                         [("x**2", 1.0, 0.0, 1.5, -7.0),  # U(left) ~ 50 T
                          ("(x**2-1)**2", 0.5, 0.9, 0.0, 2.6)])
def test_linear_response_against_finite_differences_of_quadpack(expression, T, x0, b, left):
    U = parse_potential(expression)

    def phi(x):
        return np.sin(2 * x) + 0.3 * x

    def psi(x):
        return x**2 / (1 + x**2)

    response = mfpt_linear_response(U, T, x0, b, potential_shift=phi, diffusion_shift=psi)
    sign = 1.0 if b > x0 else -1.0  # nested_quad_mfpt exits to the right: mirror the problem if needed
    V = parse_potential(expression.replace("x", "(-x)")) if sign < 0 else U
    h = 1e-4  # central difference: O(h^2) ~ 1e-8 against QUADPACK's 1e-12 relative
    plus, minus = (nested_quad_mfpt(V, T, sign * x0, sign * b, e, lambda v: float(phi(sign * v)),
                                    lambda v: float(psi(sign * v)), sign * left) for e in (h, -h))
    assert response.rate == pytest.approx((math.log(plus) - math.log(minus)) / (2 * h), rel=1e-6)
    assert response.bound >= abs(response.rate)


def test_linear_response_closed_forms():
    U = parse_potential("(x**2-1)**2")
    # D = T (1 + eps): time runs 1 + eps faster, tau ~ 1/(1 + eps), so the rate is exactly -1.
    faster = mfpt_linear_response(U, 0.3, -0.9, 0.0, potential_shift=lambda x: 0 * x,
                                  diffusion_shift=lambda x: 1 + 0 * x)
    assert faster.rate == pytest.approx(-1.0, abs=1e-9) and faster.bound == pytest.approx(1.0, abs=1e-9)
    # A constant shift of the potential changes no drift: rate 0, though each part is 2/T in size.
    constant = mfpt_linear_response(U, 0.5, -0.9, 0.0, potential_shift=lambda x: 1 + 0 * x,
                                    diffusion_shift=lambda x: 0 * x)
    assert abs(constant.rate) < 1e-9 and constant.bound == pytest.approx(2 / 0.5, rel=1e-9)
