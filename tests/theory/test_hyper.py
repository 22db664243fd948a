"""Hyperparameters: validation messages and derived quantities against their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics import Hyperparams


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lr": 0.0}, r"lr=0.0 is invalid: expected a finite learning rate > 0"),
    ({"lr": float("inf")}, r"lr=inf is invalid"),
    ({"lr": 0.1, "momentum": -0.1}, r"momentum=-0.1 is invalid: expected 0 <= momentum < 1"),
    ({"lr": 0.1, "batch_size": 0}, r"batch_size=0 is invalid: expected an integer >= 1"),
    ({"lr": 0.1, "batch_size": 2.5}, r"batch_size=2.5 is invalid"),
    ({"lr": 0.1, "weight_decay": -1.0}, r"weight_decay=-1.0 is invalid"),
    ({"lr": 0.1, "batch_size": 10, "dataset_size": 5},
     r"dataset_size=5 is invalid: expected an integer >= batch_size=10"),
    ({"lr": 0.1, "sampler": "random"},
     r"sampler='random' is invalid: expected one of with_replacement, without_replacement"),
    ({"lr": 0.1, "sampler": "without_replacement"}, r"dataset_size=None is invalid"),
])
def test_invalid_values_name_the_parameter_and_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Hyperparams(**kwargs)


def test_derived_quantities():
    hp = Hyperparams(lr=0.02, momentum=0.8, batch_size=16, weight_decay=0.01)
    assert hp.mass == pytest.approx(0.02 * 1.8 / 2)
    assert hp.damping_rate == pytest.approx(0.2 / (0.02 * 1.8))
    assert hp.inverse_temperature == pytest.approx(16 * (1 - 0.64))
    rho = np.array([0.0, 0.5, 50.0])
    h = rho + 0.01
    np.testing.assert_allclose(hp.natural_frequency(rho), np.sqrt(2 * h / (0.02 * 1.8)))
    # zeta = gamma / omega, the paper's (1 - beta) / sqrt(2 eta (1 + beta) (rho + lambda))
    np.testing.assert_allclose(hp.damping_ratio(rho), hp.damping_rate / hp.natural_frequency(rho))
    np.testing.assert_allclose(hp.damping_ratio(rho), 0.2 / np.sqrt(2 * 0.02 * 1.8 * h))
    assert hp.stability_limit == pytest.approx(2 * 1.8 / 0.02)


def test_stability_boundary_matches_the_transition_matrix_spectral_radius():
    hp = Hyperparams(lr=0.1, momentum=0.6)
    for h in (hp.stability_limit * (1 - 1e-6), hp.stability_limit * (1 + 1e-6)):
        m = np.array([[1 - hp.lr * h, hp.lr * hp.momentum], [-h, hp.momentum]])
        stable = np.max(np.abs(np.linalg.eigvals(m))) < 1
        assert stable == (h < hp.stability_limit)
