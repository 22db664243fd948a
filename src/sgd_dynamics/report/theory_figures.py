"""Figures of the theory: continuous vs exact discrete predictions (ERRATA 002.5)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from sgd_dynamics.experiments.model_comparison import ModelComparison


def model_comparison_figure(comparison: ModelComparison) -> Figure:
    """Relative deviation of the continuous model from the exact recursion against ``eta * h``."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for label, err in comparison.relative_error().items():
        ax.loglog(comparison.eta_h, np.abs(err) + 1e-17, label=label)
    ax.axvline(2 * (1 + comparison.hyper.momentum), color="k", lw=0.8, ls="--")
    ax.set_xlabel(r"$\eta\,(\rho+\lambda)$  (dashed: stability limit $2(1+\beta)$)")
    ax.set_ylabel("|continuous / exact discrete - 1|")
    ax.set_title(f"SDE vs exact recursion, beta={comparison.hyper.momentum:g}")
    ax.legend(fontsize=8)
    return fig
