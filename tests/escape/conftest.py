"""Shared, expensive fixtures of the escape tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def theorem_checks_quick():
    """The quick theorem checks of the basins page (seconds), computed once per session."""
    from sgd_dynamics.experiments.theorem_checks import run_theorem_checks

    return run_theorem_checks(True, 0)
