"""Tracker-shaped outputs, bit-reproducibility, memory options and error messages."""

import numpy as np
import pytest

from sgd_dynamics.hyper import Hyperparams, UnstableModeError
from sgd_dynamics.simulate import (
    TRACKER_KEYS,
    simulate_linear_regression_sgd,
    simulate_ou_process,
    simulate_phase_space_sde,
    simulate_quadratic_sgd,
    simulate_quadratic_sgd_summary,
    teacher_regression,
)

HP = Hyperparams(lr=0.1, momentum=0.9, batch_size=4)
RHO, SV = np.array([0.0, 0.5, 3.0]), np.array([1.0, 2.0, 0.5])


def run(**kw):
    args = dict(hyper=HP, steps=30, replicas=5, seed=0)
    return simulate_quadratic_sgd(RHO, SV, **{**args, **kw})


def test_shapes_and_tracker_history():
    tr = run()
    assert tr.position.shape == tr.velocity.shape == (31, 5, 3)
    assert tr.local_sq_displacement().shape == (30, 5) and tr.global_sq_displacement().shape == (31, 5)
    np.testing.assert_array_equal(tr.steps, np.arange(31))
    np.testing.assert_allclose(tr.time, 0.1 * np.arange(31))
    one, mean = tr.history(replica=2), tr.history()
    assert set(TRACKER_KEYS) <= set(one)
    d2 = np.sum((tr.position[:, 2] - tr.position[0, 2]) ** 2, axis=1)
    np.testing.assert_allclose(one["global_sq_displacement"], d2)
    np.testing.assert_allclose(mean["position_projection"], tr.position.mean(axis=1))
    with pytest.raises(ValueError, match=r"replica=7 is invalid"):
        tr.history(replica=7)


def test_bit_reproducible_and_independent_of_chunking_and_stride():
    a, b = run(), run()
    np.testing.assert_array_equal(a.position, b.position)
    np.testing.assert_array_equal(a.velocity, b.velocity)
    assert not np.array_equal(a.position, run(seed=1).position)
    np.testing.assert_array_equal(a.position, run(noise_chunk_steps=1).position)
    strided = run(record_every=7)
    np.testing.assert_array_equal(strided.steps, [0, 7, 14, 21, 28])
    np.testing.assert_array_equal(strided.position, a.position[::7])
    summary = simulate_quadratic_sgd_summary(RHO, SV, hyper=HP, steps=30, replicas=5, seed=0, record_every=7)
    np.testing.assert_allclose(summary.global_sq_displacement, a.global_sq_displacement()[::7], rtol=1e-12)
    np.testing.assert_allclose(summary.local_sq_displacement, a.local_sq_displacement()[6::7], rtol=1e-12)
    mean_local = a.local_sq_displacement().mean(axis=0)
    np.testing.assert_allclose(summary.mean_local_sq_displacement, mean_local, rtol=1e-12)
    np.testing.assert_array_equal(summary.final_position, a.position[-1])
    cov = np.array([[1.0, 0.3, 0], [0.3, 1.0, 0], [0, 0, 0.0]])
    f1 = simulate_quadratic_sgd(RHO, noise_covariance=cov, hyper=HP, steps=9, replicas=3, seed=5)
    f2 = simulate_quadratic_sgd(RHO, noise_covariance=cov, hyper=HP, steps=9, replicas=3, seed=5)
    np.testing.assert_array_equal(f1.velocity, f2.velocity)
    ds = teacher_regression(32, 3, 0.5, seed=0)
    for sampler in ("with_replacement", "without_replacement"):
        hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=4, dataset_size=32, sampler=sampler)
        r1, r2 = (simulate_linear_regression_sgd(ds.X, ds.y, hyper=hp, steps=20, replicas=3, seed=9)
                  for _ in range(2))
        np.testing.assert_array_equal(r1.trajectory.position, r2.trajectory.position)
    for method in ("exact", "euler_maruyama"):
        s1, s2 = (simulate_phase_space_sde(RHO, SV, hyper=HP, steps=10, replicas=3, seed=2, method=method)
                  for _ in range(2))
        np.testing.assert_array_equal(s1.position, s2.position)


def test_zero_noise_zero_start_stays_at_minimum():
    tr = simulate_quadratic_sgd(RHO, np.zeros(3), hyper=HP, steps=10, replicas=2, seed=0, start="zero")
    assert np.all(tr.position == 0) and np.all(tr.velocity == 0)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(steps=0), r"steps=0 is invalid: expected an integer >= 1"),
    (dict(replicas=0), r"replicas=0 is invalid"),
    (dict(record_every=1.5), r"record_every=1.5 is invalid"),
    (dict(start="warm"), r"start='warm' is invalid: expected one of stationary, zero"),
    (dict(start=(np.zeros(2), np.zeros(3))), r"start position0 must have shape \(3,\) or \(5, 3\)"),
])
def test_quadratic_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(**kwargs)


def test_model_errors():
    with pytest.raises(ValueError, match=r"noise_variances\[1\]=-1.0 is invalid: expected a finite variance"):
        simulate_quadratic_sgd(RHO, [1.0, -1.0, 1.0], hyper=HP, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"noise_variances must be a scalar or have shape \(3,\)"):
        simulate_quadratic_sgd(RHO, [1.0, 1.0], hyper=HP, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"give exactly one of noise_variances"):
        simulate_quadratic_sgd(RHO, SV, noise_covariance=np.eye(3), hyper=HP, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"noise_covariance must be positive semidefinite; .* -1"):
        simulate_quadratic_sgd(RHO, noise_covariance=np.diag([1.0, -1.0, 1.0]), hyper=HP, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"noise_covariance must be symmetric"):
        simulate_quadratic_sgd(RHO, noise_covariance=np.triu(np.ones((3, 3))), hyper=HP, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"noise_covariance must have shape \(3, 3\)"):
        simulate_quadratic_sgd(RHO, noise_covariance=np.eye(2), hyper=HP, steps=3, seed=0)
    with pytest.raises(UnstableModeError, match=r"eigenvalues\[2\]=40.0 is unstable"):
        simulate_quadratic_sgd([0.1, 1.0, 40.0], SV, hyper=HP, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"eigenvalues must be a 1-D array"):
        simulate_quadratic_sgd(np.eye(2), 1.0, hyper=HP, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"hyper=0.1 is invalid"):
        simulate_quadratic_sgd(RHO, SV, hyper=0.1, steps=3, seed=0)


def test_linear_regression_and_sde_errors():
    ds = teacher_regression(16, 2, 0.1, seed=0)
    hp = Hyperparams(lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match=r"y must have shape \(16,\)"):
        simulate_linear_regression_sgd(ds.X, ds.y[:5], hyper=hp, steps=2, seed=0)
    with pytest.raises(ValueError, match=r"batch_size=32 is invalid: expected <= N=16"):
        simulate_linear_regression_sgd(ds.X, ds.y, hyper=Hyperparams(lr=0.1, batch_size=32), steps=2, seed=0)
    bad = Hyperparams(lr=0.1, batch_size=4, dataset_size=20, sampler="without_replacement")
    with pytest.raises(ValueError, match=r"dataset_size=20 is invalid: .* N=16"):
        simulate_linear_regression_sgd(ds.X, ds.y, hyper=bad, steps=2, seed=0)
    with pytest.raises(UnstableModeError, match=r"Hessian eigenvalues of X\^T X / N"):
        simulate_linear_regression_sgd(100 * ds.X, ds.y, hyper=hp, steps=2, seed=0)
    with pytest.raises(ValueError, match=r"spectrum=.* is invalid: expected 2 finite positive values"):
        teacher_regression(16, 2, 0.1, seed=0, spectrum=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"method='rk4' is invalid: expected one of exact, euler_maruyama"):
        simulate_phase_space_sde(RHO, SV, hyper=HP, steps=3, seed=0, method="rk4")
    with pytest.raises(ValueError, match=r"dt=0.3 is invalid: expected a step that divides t_final=1.0"):
        simulate_phase_space_sde(RHO, SV, hyper=HP, t_final=1.0, dt=0.3, seed=0)
    with pytest.raises(ValueError, match=r"give exactly one of t_final"):
        simulate_phase_space_sde(RHO, SV, hyper=HP, t_final=1.0, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"dt=-1.0 is invalid"):
        simulate_phase_space_sde(RHO, SV, hyper=HP, steps=3, dt=-1.0, seed=0)
    with pytest.raises(ValueError, match=r"needs a stable drift"):
        simulate_ou_process(-np.eye(2), np.eye(2), dt=0.1, n_steps=2, seed=0)
    with pytest.raises(ValueError, match=r"diffusion_rate must be positive semidefinite"):
        simulate_ou_process(np.eye(2), -np.eye(2), dt=0.1, n_steps=2, seed=0)
