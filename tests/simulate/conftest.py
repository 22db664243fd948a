"""Shared Monte Carlo assertion for the simulator tests (tolerances from the standard error)."""

import numpy as np
import pytest


def _assert_mean(samples, expected, z=5.0, what=""):
    """Assert the replica mean of ``samples`` (axis 0) is within ``z`` standard errors of ``expected``."""
    samples = np.asarray(samples, dtype=np.float64)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    dev = np.abs(mean - expected) / np.where(se > 0, se, np.inf)
    assert np.all(np.abs(mean - expected) <= z * se + 1e-12 * np.abs(expected)), (
        f"{what}: mean {mean} vs expected {expected}, deviation {dev} standard errors")
    return mean, se


@pytest.fixture
def assert_mc_mean():
    return _assert_mean
