"""Drift/diffusion estimators over replicas against direct computation and a Gaussian toy with known truth.

Independent references: sample means/variances of the displacement vectors themselves (``np.var``),
an explicit leave-one-out loop for the jackknife, and the exact Gaussian moments
``Var ||d||^2 = 2 tr C^2 + 4 mu^T C mu``, ``Var tr C_hat = 2 tr C^2 / (R - 1)`` (Wishart),
``Var A = 2 tr C^2 / (R (R - 1)) + 4 mu^T C mu / R``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sgd_dynamics.estimation.replica_decomposition import replica_decomposition, replica_gram


def direct(d: np.ndarray) -> tuple[float, float, float]:
    """(total, drift, diffusion) from the displacement vectors ``(R, m)`` themselves."""
    r = d.shape[0]
    diffusion = np.var(d, axis=0, ddof=1).sum()
    mean = d.mean(axis=0)
    return float(np.mean(np.sum(d**2, axis=1))), float(mean @ mean - diffusion / r), float(diffusion)


@pytest.mark.parametrize("r", [2, 3, 5])
def test_estimates_match_direct_computation_and_split_exactly(r):
    d = np.random.default_rng(r).standard_normal((r, 40)) + 0.3
    parts = replica_decomposition(replica_gram(d))
    np.testing.assert_allclose([parts.total, parts.drift, parts.diffusion], direct(d), rtol=1e-12)
    np.testing.assert_allclose(parts.total, parts.drift + parts.diffusion, rtol=1e-13)
    # The biased ||dbar||^2 plus (R-1)/R of the diffusion is the total too (the algebra of the docstring).
    mean = d.mean(0)
    np.testing.assert_allclose(parts.total, mean @ mean + (r - 1) / r * parts.diffusion, rtol=1e-12)
    assert np.isnan(parts.drift_se) == (r == 2)


def test_jackknife_matches_an_explicit_leave_one_out_loop():
    d = np.random.default_rng(0).standard_normal((6, 25, 4)).transpose(1, 0, 2) + 0.5  # 25 steps, R = 6
    parts = replica_decomposition(replica_gram(d))
    for step in (0, 24):
        loo = np.array([direct(np.delete(d[step], r, axis=0)) for r in range(6)])     # (R, 3)
        se = np.sqrt(5 / 6 * np.sum((loo - loo.mean(0)) ** 2, axis=0))
        np.testing.assert_allclose([parts.total_se[step], parts.drift_se[step], parts.diffusion_se[step]], se,
                                   rtol=1e-10)


@pytest.mark.parametrize("drift_scale", [0.0, 0.5, 2.0])
def test_gaussian_toy_unbiased_exact_variance_and_coverage(drift_scale):
    # theta_k^r - theta* = mu + L z_r with known mu and C = L L^T, K independent sets of R = 4 replicas.
    k, r, m = 4000, 4, 30
    rng = np.random.default_rng(int(10 * drift_scale))
    lower = rng.standard_normal((m, m)) / np.sqrt(m)
    c = lower @ lower.T
    mu = drift_scale * np.sqrt(np.trace(c) / m) * rng.standard_normal(m)
    parts = replica_decomposition(replica_gram(mu + rng.standard_normal((k, r, m)) @ lower.T))
    tr_c2, mu_c_mu = np.trace(c @ c), mu @ c @ mu
    truth = {"total": mu @ mu + np.trace(c), "drift": mu @ mu, "diffusion": np.trace(c)}
    variance = {"total": (2 * tr_c2 + 4 * mu_c_mu) / r, "drift": 2 * tr_c2 / (r * (r - 1)) + 4 * mu_c_mu / r,
                "diffusion": 2 * tr_c2 / (r - 1)}
    q = stats.t.ppf(0.975, r - 1)
    for name, value in truth.items():
        est, se = getattr(parts, name), getattr(parts, f"{name}_se")
        # Unbiased: the mean over K sets is within 4 MC standard errors of the truth.
        assert abs(est.mean() - value) < 4 * np.sqrt(variance[name] / k), name
        # Spread of the estimate: the exact Gaussian variance (relative MC error ~ sqrt(2/K) ~ 2.2%, with
        # the excess kurtosis of a quadratic form up to ~4%; 15% bounds it at > 3.5 sigma).
        assert est.var() == pytest.approx(variance[name], rel=0.15), name
        # Jackknife: conservative in expectation (Efron-Stein), by up to a factor 3 in variance for the
        # drift at zero drift (the U-statistic's second-order term), never small.
        assert 0.85 * variance[name] < np.mean(se**2) < 3.5 * variance[name], name
        # Coverage of est +- t_{R-1, 0.975} se: at least nominal up to the skewness of a sum of squares
        # at R = 4 (measured 0.935 for the total over 20000 sets) and the MC error sqrt(.05 .95 / K) = 0.34%.
        assert 0.92 < np.mean(np.abs(est - value) <= q * se) < 0.995, name


def test_drift_fraction_of_a_pure_drift_is_one():
    # Identical replicas: no diffusion, the displacement is all drift.
    d = np.tile(np.arange(5.0), (4, 1))
    parts = replica_decomposition(replica_gram(d))
    assert parts.diffusion == 0 and parts.drift_fraction == pytest.approx(1.0)


@pytest.mark.parametrize(("gram", "match"), [
    (np.ones((1, 1)), r"gram\.shape=\(1, 1\) is invalid: expected \(\.\.\., R, R\) with R >= 2"),
    (np.ones((3, 2)), r"gram\.shape=\(3, 2\) is invalid"),
    (np.full((2, 2), np.inf), r"gram='\(non-finite entries\)' is invalid"),
])
def test_bad_gram_names_the_parameter(gram, match):
    with pytest.raises(ValueError, match=match):
        replica_decomposition(gram)
