"""Jacobian spectrum, regimes, decay rates and constants of 003 Sec. 3.3-3.4 against direct linear algebra."""

import numpy as np
import pytest

from sgd_dynamics.theory import momentum_scaling as ms


def _random_valley_hessian(rng, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * eigenvalues) @ q.T, q


@pytest.mark.parametrize("lr, momentum", [(0.1, 0.9), (0.05, 0.3), (0.5, 0.5)])
def test_kappa_and_eigenvectors_match_numpy_eig_of_the_jacobian(lr, momentum):
    rng = np.random.default_rng(3)
    # Two zero modes, one real-regime mode, complex-regime modes (depending on lr, beta).
    lam = np.array([0.0, 0.0, 1e-3, 0.7, 2.0, 5.0])
    h, q = _random_valley_hessian(rng, lam)
    j = ms.momentum_jacobian(h, lr, momentum)
    numeric = np.sort_complex(np.linalg.eigvals(j))
    modes = ms.jacobian_modes(lam, lr, momentum)
    predicted = np.sort_complex(np.concatenate([modes.kappa_plus, modes.kappa_minus]))
    np.testing.assert_allclose(numeric, predicted, atol=1e-10)
    # Eigenvectors (mu q, q) (ERRATA 003.2): J k = kappa k exactly, zero modes included.
    for i in range(len(lam)):
        for kappa, mu in ((modes.kappa_plus[i], modes.mu_plus[i]), (modes.kappa_minus[i], modes.mu_minus[i])):
            k = np.concatenate([mu * q[:, i], q[:, i]])
            np.testing.assert_allclose(j @ k, kappa * k, atol=1e-10)


def test_zero_mode_partner_has_no_factor_two():
    lr, beta = 0.1, 0.8
    j = ms.momentum_jacobian(np.zeros((1, 1)), lr, beta)
    k = np.array([-(1 - beta) / (beta * lr), 1.0])
    np.testing.assert_allclose(j @ k, beta * k, atol=1e-14)
    wrong = np.array([-(1 - beta) / (2 * beta * lr), 1.0])  # as printed at L136
    assert np.linalg.norm(j @ wrong - beta * wrong) > 0.05


def test_regime_and_stability_match_the_moduli_of_numpy_eigenvalues():
    lr, beta = 0.1, 0.64
    lam = np.linspace(0.01, 45.0, 400)  # covers real, complex, real and unstable (eta lambda > 3.28)
    regime = ms.spectral_regime(lam, lr, beta)
    stable = ms.is_stable(lam, lr, beta)
    for x, r, s in zip(lam, regime, stable, strict=True):
        ev = np.linalg.eigvals(ms.momentum_jacobian([[x]], lr, beta))
        assert (r == "complex") == bool(np.abs(ev.imag).max() > 1e-12)
        assert s == bool(np.abs(ev).max() < 1)
    assert {"real", "complex"} <= set(regime.tolist())
    assert not stable.all() and stable.any()


def test_relaxation_time_matches_norm_decay_of_jacobian_powers():
    # Real regime (no oscillation of the norm): the slowest mode is kappa_+ of lambda = 0.5.
    lr, beta = 0.001, 0.5
    lam = np.array([0.0, 0.0, 0.5, 3.0])
    h, _ = _random_valley_hessian(np.random.default_rng(0), lam)
    j = ms.momentum_jacobian(h, lr, beta)
    # Remove the exact zero modes kappa_+ = 1 by projecting them out of J (they never decay).
    tau = ms.relaxation_time(lam, lr, beta)
    k1, k2 = 1000, 5000  # the faster modes are gone by k1; the slow one only decays by e^-4 more
    rng = np.random.default_rng(1)
    x = rng.standard_normal(2 * len(lam))
    ev, vec = np.linalg.eig(j)
    coeff = np.linalg.solve(vec, x)
    coeff[np.isclose(ev, 1.0)] = 0.0
    x = (vec @ coeff).real
    n1 = np.linalg.norm(np.linalg.matrix_power(j, k1) @ x)
    n2 = np.linalg.norm(np.linalg.matrix_power(j, k2) @ x)
    measured = (k2 - k1) / np.log(n1 / n2)
    assert measured == pytest.approx(tau, rel=1e-2)


def test_scaling_table_exponents_follow_from_exact_kappa():
    # log|1 - |kappa|| against log eta for beta = 1 - C eta^gamma recovers the table after 003 eq. 8.
    c, c1 = 0.5, 1.0
    for gamma in (0.3, 0.8):
        etas = np.array([1e-6, 1e-7])
        rates = []
        for eta in etas:
            plus, minus = ms.decay_rates([c1], eta, 1 - c * eta**gamma)
            rates.append(sorted([plus[0], minus[0]]))
        rates = np.array(rates)
        measured = np.log(rates[0] / rates[1]) / np.log(etas[0] / etas[1])
        expected = sorted(ms.relaxation_rate_exponents(gamma)["transverse"], reverse=True)
        np.testing.assert_allclose(measured, expected, atol=0.02)
    assert ms.timescale_exponent(0.5) == pytest.approx(1.0)
    assert ms.drift_rate_exponent(2 / 3) == pytest.approx(ms.OPTIMAL_EXPONENT)


def test_uv_constant_is_where_tau1_equals_tau2():
    n, p, eps, mu2 = 10, 5, 0.5, 1.3
    c = ms.uv_optimal_constant(n, p, eps, mu2)
    for lr in (1e-4, 1e-2):
        beta = ms.momentum_from_constant(lr, c)
        assert ms.uv_drift_time(lr, beta, n, p, eps, mu2) == pytest.approx(
            ms.envelope_relaxation_time(lr, beta)
        )
    # Paper's setting (eps = 1/2, P = 5, n = 10, mu2 = 1) gives its "theoretical 0.17".
    assert ms.uv_optimal_constant(10, 5, 0.5, 1.0) == pytest.approx(0.171, abs=5e-4)
    # ERRATA 003.6: matrix sensing C = 0.159 P^(-1/3) for eps^2 = 0.1, d = 100.
    assert ms.matrix_sensing_optimal_constant(0.1**0.5, 100, 2500) * 2500 ** (1 / 3) == pytest.approx(
        0.159, abs=1e-3
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ms.jacobian_modes([1.0], 0.1, 1.0), "momentum=1.0 is invalid"),
        (lambda: ms.jacobian_modes([1.0], -0.1, 0.5), "lr=-0.1 is invalid"),
        (lambda: ms.jacobian_modes([1.0], 0.1, 0.0), "momentum=0.0 is invalid: expected 0 < momentum"),
        (lambda: ms.momentum_from_constant(0.01, 50.0), "constant=50.0 is invalid with lr=0.01"),
        (lambda: ms.relaxation_rate_exponents(1.5), "gamma=1.5 is invalid"),
        (lambda: ms.uv_optimal_constant(0, 5, 0.5, 1.0), "width=0 is invalid"),
        (lambda: ms.relaxation_time([100.0], 0.1, 0.5), "unstable mode"),
        (lambda: ms.momentum_jacobian(np.ones((2, 3)), 0.1, 0.5), "square matrix"),
    ],
)
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
