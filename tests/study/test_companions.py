"""Companion experiments: replica measurements with honest standard errors, and the rows they give."""

import numpy as np
import pytest
import scipy.linalg as sl

from sgd_dynamics.estimation import oscillation_spectrum
from sgd_dynamics.experiments.companions import linear_regression_experiment, ou_experiment, sample_covariance
from sgd_dynamics.experiments.datasets import teacher
from sgd_dynamics.experiments.study_summary import _linear_regression_rows, _ou_rows


def test_sample_covariance_standard_errors_cover_the_truth():
    """Coverage over 400 independent small samples: the error bar is neither too small nor too large."""
    rng = np.random.default_rng(3)
    truth = np.array([[1.0, 0.6], [0.6, 0.5]])
    root = np.linalg.cholesky(truth)
    z = []
    for _ in range(400):
        cov, se = sample_covariance(rng.standard_normal((300, 2)) @ root.T)
        z.append(((cov - truth) / se)[np.triu_indices(2)])
    z = np.array(z)
    inside = np.mean(np.abs(z) < 2, axis=0)
    assert np.all((inside > 0.91) & (inside < 0.98)), inside  # 95.4% for a normal z
    assert np.all(np.abs(z.std(axis=0) - 1) < 0.12), z.std(axis=0)
    with pytest.raises(ValueError, match="samples.shape"):
        sample_covariance(np.zeros((2, 2)))


def test_ou_covariance_rows_hold_against_scipy_lyapunov():
    ou = ou_experiment(seed=4, grid_points=5)
    # A S + S A^T = 2 D / kappa with the drift v diag(4, 1) v^T written out, kappa = 1
    a = ou["theory_covariance"]
    b = sl.solve_continuous_lyapunov(np.array([[2.5, -1.5], [-1.5, 2.5]]), 2 * np.diag([1.0, 0.05]))
    np.testing.assert_allclose(a, b, rtol=1e-12)
    rows = _ou_rows(ou)
    assert [r.verdict for r in rows] == ["holds"] * 3, [(r.quantity, r.relative_error, r.tolerance)
                                                       for r in rows]
    assert all(r.tolerance < 0.06 for r in rows)  # 20000 paths: ~1% standard error per entry
    # the Euler-Maruyama chain at dt = 2e-3 would be biased by ~ dt * trace(A) / 2 relative
    bias = np.diag(ou["euler_maruyama_covariance"]) / np.diag(a) - 1
    assert np.all((bias > 0) & (bias < 0.005)), bias


def test_linear_regression_stationary_rows_hold_with_replica_errors():
    ds = teacher(seed=1, num_train=600, num_test=10, dim=8, num_classes=3)
    lin = linear_regression_experiment(ds, momenta=(0.9,), steps=50, stationary_steps=800, replicas=16)
    st = lin["stationary"]
    rows = _linear_regression_rows(lin)[1:]
    assert [r.verdict for r in rows] == ["holds"] * 2, [(r.quantity, r.relative_error, r.tolerance)
                                                       for r in rows]
    se = np.asarray(st["measured_displacement_stderr"]) / np.asarray(st["measured_displacement"])
    assert np.all((se > 0) & (se < 0.05)), se
    # the multiplicative part of the noise only adds: never below the noise at the minimiser
    assert st["predicted_speed"] > st["predicted_speed_minimiser_noise"]


def test_fft_rows_judge_one_simulated_mode_within_three_spreads():
    """One path of the mode's own AR(2) holds; the issue's +16% off the exact spectrum (demo q_1) fails."""
    from sgd_dynamics.experiments.analysis import _fft_spread
    from sgd_dynamics.experiments.study_summary import _fft_row
    from sgd_dynamics.hyper import Hyperparams
    from sgd_dynamics.simulate import ar2_paths
    from sgd_dynamics.theory import ar2_mean_frequency

    hp, n, rho = Hyperparams(lr=0.0025, momentum=0.9, batch_size=32, weight_decay=0.01), 1600, 28.0
    measured = oscillation_spectrum(ar2_paths(rho, hp, n, 2, seed=9)[:, 0]).mean_frequency[0]
    default = {"fft_theory": [ar2_mean_frequency(rho, hp, np.fft.rfftfreq(n)), 0.05],
               "fft_measured": [measured, 0.05], **_fft_spread(np.array([rho, -1.0]), hp, n)}
    assert _fft_row(default, 0, "q_1").verdict == "holds"
    assert np.isnan(default["fft_spread"][1]) and _fft_row(default, 1, "q_k").verdict == "reported"
    default["fft_measured"][0] = 1.16 * default["fft_theory"][0]
    row = _fft_row(default, 0, "q_1")
    assert row.verdict == "fails" and 0.05 < row.tolerance < 0.12, row
