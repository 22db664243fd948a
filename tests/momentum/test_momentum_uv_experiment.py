"""The vector-UV study reproduces alpha(gamma) = 2 (1 - gamma) below 2/3 and C ~ 0.2 (003 Sec. 4.1)."""

import math

import numpy as np
import pytest

from sgd_dynamics.experiments.momentum_uv import UVStudyConfig, run_uv_study, uv_dataset
from sgd_dynamics.simulate.label_noise import LabelNoiseState, TwoLayerUV, simulate_label_noise
from sgd_dynamics.theory.limiting_drift import valley_ou_moments


@pytest.fixture(scope="module")
def quick_result():
    return run_uv_study(UVStudyConfig.quick())


def test_quick_study_recovers_drift_exponent_and_constant(quick_result):
    # The quick grid (eta in [10^-2.5, 10^-1], 16 replicas) keeps the full run's 5 % tolerance: with
    # fixed seeds it
    # measured alpha within 2 % of 2 (1 - gamma) (the full 2-decade grid within 2 % as well); the decay is
    # deterministic to leading order (no longitudinal diffusion in this model), so replica noise is small.
    for gamma in (0.3, 0.4, 0.5):
        alpha = quick_result.alpha[f"{gamma:g}"]
        assert alpha == pytest.approx(2 * (1 - gamma), rel=0.05), gamma
    # Paper: fitted 0.2 against the theoretical 0.17 (eq. 10); accept within 0.05 of 0.2.
    assert abs(quick_result.constant - 0.2) < 0.05
    assert quick_result.theoretical_constant == pytest.approx(0.171, abs=1e-3)


def test_above_two_thirds_is_reported_as_measured(quick_result):
    # ERRATA 003.8: no claim alpha = gamma; only that a measurement exists for every gamma of the grid.
    assert set(quick_result.alpha) == {"0.3", "0.4", "0.5", "0.8"}
    assert math.isfinite(quick_result.alpha_first_passage["0.8"])


def test_transverse_fluctuation_matches_valley_ou_variance():
    # On the vector-UV valley the one transverse direction is n_hat = (v, u) / |Y|, with curvature
    # lambda = mu2 |Y|^2 / n and label-noise variance s^2 = eps^2 mu2 |Y|^2 / (n P) on pi. To first order the
    # normal displacement is X = n_hat . dw = d(u . v) / |Y|. A wide model keeps |Y| nearly frozen over
    # the run
    # (the drift changes |Y|^2 by about 1 % in 200 steps), and 200 steps are 10 relaxation times 2 / (1 -
    # beta).
    n, p, eps, lr, beta, reps = 200, 5, 0.5, 0.05, 0.9, 2000
    model = TwoLayerUV.vector(uv_dataset(p, seed=3), n)
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((1, 1, n)), rng.standard_normal((1, n, 1))
    v = v - (u[0, 0] @ v[0, :, 0]) / (u[0, 0] @ u[0, 0]) * u[0, 0][None, :, None]
    y2 = float(np.sum(u**2) + np.sum(v**2))
    state = LabelNoiseState.at_rest((np.repeat(u, reps, 0), np.repeat(v, reps, 0)))
    tr = simulate_label_noise(model, state, lr, beta, eps, steps=200, record_every=200, seed=1)
    uu, vv = tr.final.params
    normal = np.einsum("rn,rn->r", uu[:, 0], vv[:, :, 0]) / math.sqrt(y2)
    lam = model.input_variance * y2 / n
    s2 = eps**2 * model.input_variance * y2 / (n * p)
    expected = valley_ou_moments(lr, beta, lam, s2).position_variance
    measured = np.mean(normal**2)  # the mean of X is zero on the valley
    se = expected * math.sqrt(2 / reps)  # standard error of a Gaussian second moment
    assert abs(measured - expected) < 4 * se
