"""Figures of issue 11 in the study report (monitored series, drift/diffusion, spectral measures).

The settle loop's monitored series, the replicas' drift and diffusion against the full-spectrum and
top-k + bulk theories, and the noise-weighted spectral measure beside the Hessian's eigenvalue density.
Plain NumPy data in, a ``matplotlib`` Figure out (no ``pyplot``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from sgd_dynamics.report.figures import _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["displacement_parts", "monitored_series", "spectral_measures"]

_LABELS = {"loss": "training loss (monitor subset)", "theta_sq_norm": r"$\|\theta\|^2$",
           "trace_sigma": r"tr$(\Sigma)$", "top_eigenvalue": r"top Hessian eigenvalue $\rho_1$"}


def monitored_series(series: Mapping[str, ArrayLike], step: ArrayLike, window: ArrayLike) -> Figure:
    """Each monitored series against the settle step, one panel each.

    The last two windows (the ones the certificate compares) are coloured, with their means.
    """
    fig, axes = _figure(len(series), width=3.4, height=2.8)
    step, window = np.asarray(step, float), np.asarray(window, int)
    last = window.max(initial=0)
    for ax, (name, values) in zip(axes, series.items(), strict=False):
        v = np.asarray(values, float)
        ax.plot(step, v, ".-", lw=0.8, ms=3, color="0.5")
        for w, colour in ((last - 1, "C0"), (last, "C1")):
            sel = window == w
            if sel.any():
                ax.plot(step[sel], v[sel], ".", ms=4, color=colour)
                ax.hlines(v[sel].mean(), step[sel].min(), step[sel].max(), color=colour, lw=1.2)
        ax.set_xlabel("settle step")
        ax.set_title(_LABELS.get(name, name), fontsize=9)
    return fig


def displacement_parts(d: Mapping[str, ArrayLike]) -> Figure:
    """Measured drift and diffusion (diffusion with a 1 s.e. band) against the theories, and the drift share.

    Dashed: the full-spectrum theory; dotted: the top-k + bulk theory; log-log in the step.
    """
    fig, axes = _figure(2, width=4.6)
    k = np.asarray(d["step"], float)
    diff, se = np.asarray(d["diffusion"], float), np.asarray(d["diffusion_se"], float)
    drift = np.asarray(d["drift"], float)
    ax = axes[0]
    ax.loglog(k, diff, color="C0", lw=1.2, label="diffusion (replicas)")
    ax.fill_between(k, np.maximum(diff - se, diff * 1e-3), diff + se, color="C0", alpha=0.25, lw=0)
    ax.loglog(k, drift, color="C1", lw=1.2, label="drift (replicas)")
    for key, colour in (("predicted_diffusion", "C0"), ("predicted_drift", "C1")):
        ax.loglog(k, np.asarray(d[key], float), ls="--", color=colour, lw=1)
    for key, colour in (("bulk_diffusion", "C0"), ("bulk_drift", "C1")):
        if key in d:
            ax.loglog(k, np.asarray(d[key], float), ls=":", color=colour, lw=1)
    ax.set_xlabel("step k")
    ax.set_ylabel("dashed: full spectrum, dotted: top-k + bulk", fontsize=8)
    ax.legend(fontsize=7)
    total = np.asarray(d["total"], float)
    axes[1].semilogx(k, drift / total, color="C1", lw=1.2, label="measured")
    axes[1].semilogx(k, np.asarray(d["predicted_drift"], float) / np.asarray(d["predicted_total"], float),
                     ls="--", color="C1", lw=1, label="full spectrum")
    axes[1].set_xlabel("step k")
    axes[1].set_ylabel("drift share drift / total")
    axes[1].legend(fontsize=7)
    return fig


def spectral_measures(nodes: ArrayLike, weights: ArrayLike, grid: ArrayLike, density: ArrayLike) -> Figure:
    """Left: the noise-weighted measure; right: the Hessian's eigenvalue density (ESD).

    The measure is drawn as the probe-mean quadrature weights ``w_j`` at nodes ``rho_j``
    (``sum_j w_j f(rho_j) ~ tr(Sigma f(H))``).
    """
    fig, axes = _figure(2, width=4.2)
    rho, w = np.ravel(np.asarray(nodes, float)), np.ravel(np.asarray(weights, float))
    keep = w > 0
    axes[0].vlines(rho[keep], 0, w[keep], color="C2", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xscale("symlog", linthresh=max(1e-3 * np.abs(rho).max(initial=1.0), 1e-12))
    axes[0].set_xlabel(r"Hessian eigenvalue $\rho$")
    axes[0].set_ylabel(r"noise weight $w_j$ (sums to tr $\Sigma$)")
    axes[1].semilogy(np.asarray(grid, float), np.maximum(np.asarray(density, float), 1e-12), color="C0")
    axes[1].set_xlabel(r"Hessian eigenvalue $\rho$")
    axes[1].set_ylabel("eigenvalue density (ESD)")
    return fig
