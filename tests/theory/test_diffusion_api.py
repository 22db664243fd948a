"""Public prediction API: validation at the boundary and the local diffusion exponent."""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics import Hyperparams, UnstableModeError
from sgd_dynamics.theory import (
    global_displacement,
    local_exponent,
    mean_trajectory,
    per_mode_noise,
    stationary_speed,
    stationary_speed_from_trace,
)

HP = Hyperparams(lr=0.01, momentum=0.9, batch_size=32)


def test_speed_from_trace_is_eq18():
    # ERRATA 002.3: eta^2 tr(Sigma) / (S (1 - beta^2)), no fitted constant
    assert stationary_speed_from_trace(3.5, HP) == pytest.approx(0.01**2 * 3.5 / (32 * 0.19), rel=1e-14)
    rho = np.array([0.5, 1.0, 2.0])
    assert stationary_speed(rho, rho, HP, model="continuous") == pytest.approx(
        stationary_speed_from_trace(3.5, HP))


def test_displacement_at_one_step_is_the_speed():
    # eq. 19's sampled sum at t = 1 is eq. 18 (eta^2 Var v); the SDE's own one-step displacement is the
    # position's increment over continuous time eta instead (test_sde_displacement)
    rho, s = np.array([0.2, 3.0, 40.0]), np.array([1.0, 0.5, 2.0])
    for model, speed_model in (("discrete", "discrete"), ("eq19_sampled_sum", "sde")):
        assert global_displacement(rho, s, HP, [1], model=model)[0] == pytest.approx(
            stationary_speed(rho, s, HP, model=speed_model), rel=1e-13)
    assert stationary_speed(rho, s, HP, model="continuous") == stationary_speed(rho, s, HP, model="sde")


def _free_mode_displacement(t, b):
    # independent closed form for h = 0: v is AR(1) with coefficient b
    return t * (1 + b) / (1 - b) - 2 * b * (1 - b**t) / (1 - b) ** 2


def test_local_exponent_of_a_free_mode():
    hp = Hyperparams(lr=0.1, momentum=0.99, batch_size=1)
    steps = np.array([1, 2, 5, 20, 100, 1000, 10**5])
    got = local_exponent([0.0], [1.0], hp, steps)
    width = 2 ** 0.125
    lo = np.maximum(np.floor(steps / width), 1)
    hi = np.maximum(np.ceil(steps * width), lo + 1)
    ref = np.log(_free_mode_displacement(hi, 0.99) / _free_mode_displacement(lo, 0.99)) / np.log(hi / lo)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    assert got[0] > 1.9 and abs(got[-1] - 1) < 1e-2  # ballistic then diffusive


def test_local_exponent_of_a_confined_mode_falls_to_zero():
    got = local_exponent([5.0], [1.0], HP, [10**6])
    assert abs(got[0]) < 1e-6


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"eigenvalues": [1.0, -2.0], "noise_variances": [1.0, 1.0]}, r"eigenvalues\[1\]=-2.0.*< 0"),
    ({"eigenvalues": [1.0, 500.0], "noise_variances": [1.0, 1.0]},
     r"eigenvalues\[1\]=500.0 is unstable.*= 3.8, i.e. rho < 380"),
    ({"eigenvalues": [1.0], "noise_variances": [1.0, 1.0]}, "one entry per eigenvalue"),
    ({"eigenvalues": [1.0], "noise_variances": [-1.0]}, r"noise_variances\[0\]=-1.0"),
    ({"eigenvalues": [np.nan], "noise_variances": [1.0]}, "finite"),
])
def test_invalid_spectra(kwargs, match):
    with pytest.raises(ValueError, match=match):
        global_displacement(**kwargs, hyper=HP, steps=[1, 2])


def test_unstable_mode_is_its_own_error_type():
    with pytest.raises(UnstableModeError, match="lr \\* \\(rho \\+ weight_decay\\)"):
        stationary_speed([1e4], [1.0], HP)


@pytest.mark.parametrize("steps", [[0, 1], [1.5], [], [[1, 2]]])
def test_invalid_steps(steps):
    with pytest.raises(ValueError, match="steps must be"):
        global_displacement([1.0], [1.0], HP, steps)


def test_invalid_model_names_the_choices():
    choices = "discrete, sde, continuous"
    with pytest.raises(ValueError, match=f"model='sgd' is invalid: expected one of {choices}$"):
        stationary_speed([1.0], [1.0], HP, model="sgd")
    with pytest.raises(ValueError, match="model='sgd' is invalid: expected one of discrete, sde, continuous, "
                                         "eq19_sampled_sum"):
        global_displacement([1.0], [1.0], HP, [1], model="sgd")
    # eq. 19's sampled sum is a displacement only: it grows linearly for every mode, so it has no exponent
    with pytest.raises(ValueError, match="model='eq19_sampled_sum' is invalid"):
        local_exponent([1.0], [1.0], HP, [10], model="eq19_sampled_sum")


def test_mean_trajectory_validates_steps():
    with pytest.raises(ValueError, match="integers for model='discrete'"):
        mean_trajectory([1.0], HP, [0.5], 1.0, 0.0, model="discrete")


def test_per_mode_noise_from_a_full_covariance():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    g = rng.standard_normal((4, 4))
    sigma = g @ g.T
    s = per_mode_noise(np.arange(4.0), covariance=sigma, eigenvectors=q)
    np.testing.assert_allclose(s, [q[:, i] @ sigma @ q[:, i] for i in range(4)], rtol=1e-13)
    with pytest.raises(ValueError, match="exactly one of"):
        per_mode_noise([1.0], sigma2=1.0, noise_variances=[1.0])
    with pytest.raises(ValueError, match="needs the Hessian eigenvectors"):
        per_mode_noise(np.arange(4.0), covariance=sigma)
