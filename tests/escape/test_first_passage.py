"""The compiled first-passage simulator against quadrature, the NumPy simulator and its own bias model."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from sgd_dynamics.simulate.first_passage import (
    brownian_bridge_hitting_time,
    choose_time_step,
    escape_time_step,
    first_passage_times_1d,
    modelled_bias,
)
from sgd_dynamics.simulate.langevin import first_passage_times
from sgd_dynamics.theory.escape import mean_first_passage_time
from sgd_dynamics.theory.potential import parse_potential

DOUBLE_WELL = parse_potential("(x**2-1)**2")


@pytest.mark.parametrize("expression", ["(x**2-1)**2", "x**2/2 + 0.3*sin(3*x)", "log(cosh(x)) + exp(-x**2)",
                                        "abs(x)**3 + tanh(x)/(1 + x**2)", "sqrt(1 + x**2) - 2**x"])
def test_scalar_source_matches_the_tree(expression):
    U = parse_potential(expression)
    x = np.linspace(-2.3, 2.1, 37)
    for order, reference in ((0, U.energy), (1, U.gradient), (2, U.hessian)):
        code = compile(U.scalar_source(order), "<potential>", "eval")
        env = {"math": math, "_sign": lambda v: (v > 0) - (v < 0)}
        values = np.array([eval(code, env, {"x": float(v)}) for v in x])  # noqa: S307 - our own rendering
        np.testing.assert_allclose(values, reference(x), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("temperature", "start"), [(0.5, -0.9), (0.3, -1.2)])
def test_mean_exit_time_matches_quadrature(temperature, start):
    replicas = 20_000
    dt = escape_time_step(8.0, -4.0, replicas)
    fp = first_passage_times_1d(DOUBLE_WELL, start, 0.0, temperature, dt, replicas, seed=3, max_steps=10**9)
    mean, stderr = fp.mean_and_stderr()
    exact = mean_first_passage_time(DOUBLE_WELL, temperature, start, 0.0)
    assert abs(mean - exact) < 3 * stderr, (mean, stderr, exact)


@pytest.mark.parametrize(("expression", "temperature", "start", "target"), [
    ("x**2", 1.0, 0.0, 2.0),  # on a slope, U'(b) = 4: the former step gave -3.1 s.e. at 2000 replicas
    ("x**2", 0.6, 0.0, 1.6),  # steeper in units of T: U'(b)^2 / (4T) = 4.3
    ("(x**2-1)**2", 0.5, -0.9, 0.0),  # at a barrier top
    ("x**4/4 - x**2/2 + 0.15*x", 0.15, -1.068, 1.5),  # beyond a barrier, up the far well's slope
])
def test_automatic_step_is_within_three_standard_errors_of_quadrature(expression, temperature, start, target):
    U = parse_potential(expression)
    replicas = 2000
    step = choose_time_step(U, temperature, start, target, replicas)
    fp = first_passage_times_1d(U, start, target, temperature, step.dt, replicas, seed=12, max_steps=10**9)
    mean, stderr = fp.mean_and_stderr()
    exact = mean_first_passage_time(U, temperature, start, target)
    assert abs(mean - exact) <= 3 * stderr, (mean, stderr, exact, step)


@pytest.mark.parametrize(("d_start", "d_end", "variance", "dt"), [
    (0.1, 0.05, 2.0, 0.01), (0.05, 0.0, 1.0, 0.01), (0.02, 0.3, 0.6, 0.02), (0.3, 0.01, 2.0, 0.01)])
def test_bridge_hitting_time_has_the_first_passage_law(d_start, d_end, variance, dt):
    # Reference density from first principles: first passage to the level at s (Lévy density), then the free
    # Gaussian path from the level to the end point, normalised by quadrature; compared by a KS test.
    rng = np.random.default_rng(4)
    samples = np.array([brownian_bridge_hitting_time(d_start, d_end, variance, dt, rng.standard_normal(),
                                                     rng.random()) for _ in range(4000)])
    assert np.all((samples > 0) & (samples <= dt))

    def density(s):
        return (s**-1.5 * math.exp(-d_start**2 / (2 * variance * s)) * (dt - s) ** -0.5
                * math.exp(-d_end**2 / (2 * variance * (dt - s))))

    norm = integrate.quad(density, 0, dt, limit=200, points=[dt / 2])[0]
    grid = np.linspace(0, dt, 401)
    cdf = np.concatenate([[0.0], np.cumsum([integrate.quad(density, a, b, limit=100)[0]
                                            for a, b in zip(grid[:-1], grid[1:], strict=True)])]) / norm
    assert stats.kstest(samples, lambda s: np.interp(s, grid, cdf)).pvalue > 1e-3


def test_other_functions_and_a_target_on_the_left():
    U = parse_potential("x**2/2 + 0.3*sin(3*x)")
    replicas = 8000
    fp = first_passage_times_1d(U, 1.0, -1.5, 0.6, 2e-3, replicas, seed=5, max_steps=10**9)
    mean, stderr = fp.mean_and_stderr()
    exact = mean_first_passage_time(U, 0.6, 1.0, -1.5)
    assert abs(mean - exact) < 3 * stderr + modelled_bias(3.7, 0.0, 2e-3) * exact, (mean, stderr, exact)


def test_same_law_as_the_numpy_simulator():
    # Two implementations of one scheme: the exit-time distributions agree (two-sample KS).
    dt, n = 4e-3, 3000
    compiled = first_passage_times_1d(DOUBLE_WELL, -0.9, 0.0, 0.5, dt, n, seed=1, max_steps=10**8)
    vectorised = first_passage_times(DOUBLE_WELL.gradient, np.full(n, -0.9), 0.5, dt, 10**6, seed=2,
                                     target=0.0)
    assert compiled.all_exited and vectorised.all_exited
    assert stats.ks_2samp(compiled.times, vectorised.times).pvalue > 1e-3


def test_bias_model_bounds_the_measured_bias():
    # A coarse step, many replicas: Euler-Maruyama escapes measurably early, by less than the model says.
    dt, n = 0.015, 64_000
    fp = first_passage_times_1d(DOUBLE_WELL, -0.9, 0.0, 0.2, dt, n, seed=11, max_steps=10**9)
    mean, stderr = fp.mean_and_stderr()
    exact = mean_first_passage_time(DOUBLE_WELL, 0.2, -0.9, 0.0)
    assert exact - mean > 3 * stderr
    assert (exact - mean) / exact < modelled_bias(8.0, -4.0, dt)


def test_seed_alone_decides_the_result():
    kwargs = dict(x0=-0.9, target=0.0, temperature=0.5, dt=5e-3, replicas=300, max_steps=10**7)
    one = first_passage_times_1d(DOUBLE_WELL, seed=7, workers=1, **kwargs)
    two = first_passage_times_1d(DOUBLE_WELL, seed=7, workers=2, **kwargs)
    other = first_passage_times_1d(DOUBLE_WELL, seed=8, workers=2, **kwargs)
    np.testing.assert_array_equal(one.times, two.times)
    assert not np.array_equal(one.times, other.times)


def test_replicas_past_the_step_cap_are_not_exited():
    fp = first_passage_times_1d(DOUBLE_WELL, -0.9, 0.0, 0.1, 1e-3, 20, seed=0, max_steps=100)
    assert not fp.all_exited
    with pytest.raises(ValueError, match="did not reach the target"):
        fp.mean_and_stderr()


def test_step_rule():
    dt = escape_time_step(8.0, -4.0, 2000)
    assert modelled_bias(8.0, -4.0, dt) == pytest.approx(1 / math.sqrt(2000))
    assert escape_time_step(8.0, -4.0, 2) <= 0.05 / 8.0  # capped well inside Euler's stability range
    # The bias-bounded rule: bound * dt is a third of the standard error, and the given step is kept.
    step = choose_time_step(DOUBLE_WELL, 0.5, -0.9, 0.0, 2000)
    assert step.bias_bound == pytest.approx(step.relative_stderr / 3, rel=1e-12)
    assert abs(step.modelled_bias) <= step.bias_bound
    assert choose_time_step(DOUBLE_WELL, 0.5, -0.9, 0.0, 2000, dt=1e-3).dt == 1e-3
    # Few replicas: the curvature cap dt U'' <= 0.1 where the process lives (U'' ~ 27 at U = 5 T) binds.
    few = choose_time_step(DOUBLE_WELL, 0.5, -0.9, 0.0, 2)
    assert few.dt == pytest.approx(0.1 * few.max_dt) and few.bias_bound < few.relative_stderr / 3
    with pytest.raises(ValueError, match=r"dt=0\.5 is invalid: expected a step in \(0, "):
        choose_time_step(DOUBLE_WELL, 0.5, -0.9, 0.0, 2000, dt=0.5)
    with pytest.raises(ValueError, match="replicas=1 is invalid"):
        choose_time_step(DOUBLE_WELL, 0.5, -0.9, 0.0, 1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"temperature": 0.0}, "temperature=0.0 is invalid"),
    ({"dt": -1.0}, "dt=-1.0 is invalid"),
    ({"x0": 0.0}, "x0=0.0, target=0.0 are invalid"),
    ({"replicas": 0}, "replicas=0 is invalid"),
    ({"max_steps": 0}, "max_steps=0 is invalid"),
])
def test_invalid_input_names_the_parameter(kwargs, message):
    args = dict(x0=-0.9, target=0.0, temperature=0.5, dt=1e-3, replicas=10, seed=0, max_steps=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        first_passage_times_1d(DOUBLE_WELL, **args)
    with pytest.raises(ValueError, match="replicas=1 is invalid"):
        escape_time_step(8.0, -4.0, 1)
