"""The continuous-vs-discrete comparison of issue 2 (ERRATA 002.5)."""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics import Hyperparams
from sgd_dynamics.experiments.model_comparison import compare_models


def test_speed_ratio_is_the_closed_form_edge_factor():
    # discrete Var v = 2 q, q = s/((1-b)(2(1+b) - eta h)); continuous s/(1-b^2):
    # ratio - 1 = -eta h / (2 (1 + b))
    hp = Hyperparams(lr=0.01, momentum=0.9)
    c = compare_models(hp, eta_h=np.array([1e-3, 0.1, 1.0, 3.0]))
    np.testing.assert_allclose(c.relative_error()["speed"], -c.eta_h / (2 * 1.9), rtol=1e-10)
    # the deviation grows with eta h: the continuous model is only a small-step approximation
    assert np.all(np.diff(np.abs(c.relative_error()["position variance"])) > 0)
    assert len(c.table()) == 4


def test_rejects_grid_beyond_the_stability_limit():
    with pytest.raises(ValueError, match=r"eta_h must lie in \(0, 2 \(1 \+ momentum\)\) = \(0, 3.8\)"):
        compare_models(Hyperparams(lr=0.01, momentum=0.9), eta_h=np.array([4.0]))


def test_figure_renders():
    from sgd_dynamics.report.theory_figures import model_comparison_figure

    fig = model_comparison_figure(compare_models(Hyperparams(lr=0.1, momentum=0.5),
                                                 eta_h=np.array([0.01, 1.0])))
    assert len(fig.axes[0].lines) == 6  # five quantities and the stability limit
