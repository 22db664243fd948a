import numpy as np
import pytest

from sgd_dynamics.theory.potential import parse_potential


@pytest.mark.parametrize(("expr", "reference"), [
    ("(x**2 - 1)**2", lambda x: (x**2 - 1) ** 2),
    ("exp(-x**2) * sin(3*x) + x**4/4", lambda x: np.exp(-x**2) * np.sin(3 * x) + x**4 / 4),
    ("sqrt(1 + x**2) - log(2 + cos(x)) / tanh(1 + x**2)",
     lambda x: np.sqrt(1 + x**2) - np.log(2 + np.cos(x)) / np.tanh(1 + x**2)),
    ("(1 + x**2)**(0.5*x + 2) - pi*e", lambda x: (1 + x**2) ** (0.5 * x + 2) - np.pi * np.e),
])
def test_energy_and_exact_derivatives_against_numpy_and_finite_differences(expr, reference):
    U = parse_potential(expr)
    x = np.linspace(-1.7, 1.9, 37)
    np.testing.assert_allclose(U.energy(x), reference(x), rtol=1e-13, atol=1e-13)
    h = 1e-5  # central differences of the reference, O(h^2) ~ 1e-10 plus rounding ~ 1e-11 / h
    fd1 = (reference(x + h) - reference(x - h)) / (2 * h)
    fd2 = (reference(x + h) - 2 * reference(x) + reference(x - h)) / h**2
    np.testing.assert_allclose(U.gradient(x), fd1, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(U.hessian(x), fd2, rtol=1e-4, atol=1e-4)


def test_two_dimensional_gradient_and_hessian():
    U = parse_potential("(x**2 - 1)**2 + 2*(y - 0.3*x)**2 + x*y**3")
    assert U.variables == ("x", "y") and U.dimension == 2
    q = np.array([[0.3, -0.7], [1.1, 0.4]])
    x, y = q[:, 0], q[:, 1]
    grad = np.stack([4 * x * (x**2 - 1) - 1.2 * (y - 0.3 * x) + y**3, 4 * (y - 0.3 * x) + 3 * x * y**2], -1)
    hxx = 12 * x**2 - 4 + 0.36
    hxy = -1.2 + 3 * y**2
    hyy = 4 + 6 * x * y
    hess = np.stack([np.stack([hxx, hxy], -1), np.stack([hxy, hyy], -1)], -2)
    np.testing.assert_allclose(U.gradient(q), grad, rtol=1e-13)
    np.testing.assert_allclose(U.hessian(q), hess, rtol=1e-13)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        U.energy(np.zeros(3))


def test_constant_derivatives_broadcast_to_the_input_shape():
    U = parse_potential("3*x + 2")
    assert U.gradient(np.zeros((4, 5))).shape == (4, 5)
    assert float(U.hessian(1.0)) == 0.0


@pytest.mark.parametrize(("expr", "message"), [
    ("__import__('os')", "function '__import__' is not allowed"),
    ("x.real", "attribute access is not allowed"),
    ("().__class__", "attribute access is not allowed"),
    ("os.system('ls')", "attribute access is not allowed|only plain function calls"),
    ("open('f')", "function 'open' is not allowed"),
    ("x[0]", "Subscript is not allowed"),
    ("lambda: 1", "Lambda is not allowed"),
    ("z + 1", "unknown name 'z'"),
    ("'abc'", "not a real number"),
    ("x +", "not a valid expression"),
    ("exp(x, 2)", "exactly one positional argument"),
    ("x // 2", "FloorDiv is not allowed"),
    ("", "non-empty"),
])
def test_unsafe_or_invalid_expressions_are_rejected(expr, message):
    with pytest.raises(ValueError, match=message):
        parse_potential(expr)
