"""The diffusion part's exponent over replicas against direct computations and a process of known exponent."""

import numpy as np
import pytest

from sgd_dynamics.estimation import log_log_slope, replica_decomposition, replica_exponent, replica_gram

STEPS = np.unique(np.round(np.logspace(0, 3, 61)).astype(int))
WINDOW = (333.0, 1000.0)


def _time_changed_walks(rng, replicas, dim, c):
    """``W(k^c)`` in ``dim`` dimensions per replica (``tr Cov(theta_k) = dim k^c`` exactly): (R, T, m)."""
    t = STEPS.astype(float) ** c
    dt = np.diff(np.concatenate([[0.0], t]))
    return np.cumsum(rng.standard_normal((replicas, STEPS.size, dim)) * np.sqrt(dt)[None, :, None], axis=1)


def test_exponent_equals_polyfit_of_the_sample_variance_of_the_raw_displacements():
    d = _time_changed_walks(np.random.default_rng(0), 5, 3, 0.7)
    fit = replica_exponent(STEPS, replica_gram(np.swapaxes(d, 0, 1)), WINDOW, n_bootstrap=50)
    inside = (STEPS >= WINDOW[0]) & (STEPS <= WINDOW[1])
    diffusion = d.var(axis=0, ddof=1).sum(axis=-1)          # tr of the sample covariance over replicas
    slope = np.polyfit(np.log(STEPS[inside]), np.log(diffusion[inside]), 1)[0]
    assert fit.exponent == pytest.approx(slope, rel=1e-10)
    assert fit.n_points == inside.sum() and fit.replicas == 5 and fit.resamples >= 10
    assert fit.interval[0] < fit.exponent < fit.interval[1] and fit.stderr > 0


def test_bootstrap_resample_is_the_fit_to_the_resampled_replicas():
    """One resample by hand: the same replica indices applied to the raw vectors, then polyfit."""
    d = _time_changed_walks(np.random.default_rng(3), 4, 2, 1.0)
    idx = np.array([0, 0, 2, 3])
    gram = replica_gram(np.swapaxes(d[idx], 0, 1))
    inside = (STEPS >= WINDOW[0]) & (STEPS <= WINDOW[1])
    diffusion = d[idx].var(axis=0, ddof=1).sum(axis=-1)
    slope = np.polyfit(np.log(STEPS[inside]), np.log(diffusion[inside]), 1)[0]
    assert float(log_log_slope(STEPS, replica_decomposition(gram).diffusion, WINDOW)) == pytest.approx(slope)


def test_unbiased_and_covering_on_a_process_of_known_exponent():
    """Monte Carlo over 200 seeds of 4 replicas (the study's default) of ``W(k^0.6)``: mean within 3 s.e. of
    0.6; ``exponent +- 1.96 stderr`` covers 0.6 within 3 binomial s.e. of 95% (measured 0.945; the bootstrap
    interval alone covers 0.87, which the module docstring states)."""
    rng, c, trials = np.random.default_rng(1), 0.6, 200
    fits = [replica_exponent(STEPS, replica_gram(np.swapaxes(_time_changed_walks(rng, 4, 5, c), 0, 1)),
                             WINDOW, n_bootstrap=300, seed=e) for e in range(trials)]
    est = np.array([f.exponent for f in fits])
    assert abs(est.mean() - c) < 3 * est.std(ddof=1) / np.sqrt(trials), est.mean()
    cover = np.mean([abs(f.exponent - c) <= 1.96 * f.stderr for f in fits])
    assert abs(cover - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / trials), cover


def test_jackknife_is_the_leave_one_out_spread_of_direct_fits():
    d = _time_changed_walks(np.random.default_rng(4), 5, 3, 0.8)
    fit = replica_exponent(STEPS, replica_gram(np.swapaxes(d, 0, 1)), WINDOW, n_bootstrap=50)
    inside = (STEPS >= WINDOW[0]) & (STEPS <= WINDOW[1])
    loo = np.array([np.polyfit(np.log(STEPS[inside]),
                               np.log(np.delete(d, i, 0).var(axis=0, ddof=1).sum(-1)[inside]), 1)[0]
                    for i in range(5)])
    assert fit.jackknife_stderr == pytest.approx(np.sqrt(4 / 5 * np.sum((loo - loo.mean()) ** 2)))
    assert fit.stderr >= fit.jackknife_stderr


def test_validation():
    gram = np.ones((STEPS.size, 3, 3))
    with pytest.raises(ValueError, match=r"window=\(1, 1\) is invalid"):
        replica_exponent(STEPS, gram, (1, 1))
    with pytest.raises(ValueError, match=r"gram.shape=\(3, 3\) is invalid"):
        replica_exponent(STEPS, gram[0], WINDOW)
