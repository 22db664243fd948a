"""Figures of the limiting-dynamics study, from plain NumPy data (002 Figs. 1-8).

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``: no global backend is
selected and no figure registry is touched, so these are safe in threads, tests and headless machines
(``Figure.savefig`` renders through Agg). Pass the result to :class:`sgd_dynamics.report.ReportSection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "architecture_comparison",
    "displacement_curves",
    "exponent_sweep",
    "frequency_spectrum",
    "hessian_spectrum",
    "linear_regression_mean",
    "ou_modified_loss",
    "phase_space",
    "speed_over_time",
    "speed_sweep",
    "trajectory_on_slices",
    "velocity_on_psi",
    "window_dependence",
]


def _figure(
    ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4
) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


def speed_sweep(sweeps: Mapping[str, Mapping[str, ArrayLike]]) -> Figure:
    """Measured speed ``mean ||delta||^2`` per swept hyperparameter, with the predictions (002 Fig. 7 top).

    ``sweeps[name]`` holds ``values`` (the swept hyperparameter), ``with_replacement``,
    ``without_replacement`` (measured speeds, NaN where absent), ``predicted`` (no fitted constant) and
    optionally ``calibrated`` (the paper's one-run calibration).
    """
    fig, axes = _figure(len(sweeps))
    for ax, (name, d) in zip(axes, sweeps.items(), strict=True):
        x = np.asarray(d["values"], dtype=float)
        order = np.argsort(x)
        x = x[order]
        for key, style, label in (
            ("with_replacement", "o", "measured, with replacement"),
            ("without_replacement", "s", "measured, without replacement"),
        ):
            if key in d:
                ax.plot(x, np.asarray(d[key], float)[order], style, mfc="none", label=label)
        ax.plot(x, np.asarray(d["predicted"], float)[order], "k-", label=r"$\eta^2 tr\Sigma/(S(1-\beta^2))$")
        if "calibrated" in d:
            ax.plot(x, np.asarray(d["calibrated"], float)[order], "r--", lw=1, label="one-run calibration")
        ax.set_xscale("log" if name in ("lr", "batch_size") else "linear")
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(r"mean $\|\delta_k\|^2$")
    axes[0].legend(fontsize=7)
    return fig


def speed_over_time(
    steps: ArrayLike, local_sq: Mapping[str, ArrayLike], predicted: Mapping[str, float], window: int = 50
) -> Figure:
    """``||delta_k||^2`` per step with a moving average and the predicted constant (002 Fig. 1, left)."""
    fig, axes = _figure(1, width=6)
    ax = axes[0]
    t = np.asarray(steps)
    for label, y in local_sq.items():
        y = np.asarray(y, float)
        (line,) = ax.plot(t, y, lw=0.4, alpha=0.35)
        w = max(1, min(window, len(y) // 5))
        avg = np.convolve(y, np.ones(w) / w, mode="valid")
        ax.plot(t[w - 1 :], avg, color=line.get_color(), lw=1.5, label=f"{label} ({w}-step mean)")
        if label in predicted:
            ax.axhline(predicted[label], color=line.get_color(), ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step k of resumed training")
    ax.set_ylabel(r"$\|\delta_k\|^2$ (dashed: prediction)")
    ax.legend(fontsize=7)
    return fig


def displacement_curves(curves: Mapping[str, Mapping[str, ArrayLike]]) -> Figure:
    """``||Delta_k||^2`` on log-log axes with the theory and the power-law fit, and the local exponent.

    ``curves[label]`` holds ``steps``, ``measured``; optionally ``theory`` (dashed, in the curve's colour:
    the prediction for the measured quantity, e.g. from the resumed start), ``theory_stationary`` (dotted
    grey: the stationary ``E||Delta_t||^2``), ``fit`` (dash-dot: the fitted power law on ``steps``),
    ``local_slope`` with ``local_steps``, ``theory_exponent`` and ``theory_stationary_exponent``.
    """
    fig, axes = _figure(2, width=4.6)
    for label, d in curves.items():
        t = np.asarray(d["steps"], float)
        (line,) = axes[0].loglog(t, np.asarray(d["measured"], float), lw=1.2, label=label)
        c = line.get_color()
        if "theory" in d:
            axes[0].loglog(t, np.asarray(d["theory"], float), ls="--", color=c, lw=1)
        if "theory_stationary" in d:
            axes[0].loglog(t, np.asarray(d["theory_stationary"], float), ls=":", color="0.5", lw=1)
        if "fit" in d:
            axes[0].loglog(t, np.asarray(d["fit"], float), ls="-.", color="k", lw=0.6)
        if "local_slope" in d:
            axes[1].semilogx(
                np.asarray(d["local_steps"], float),
                np.asarray(d["local_slope"], float),
                color=c,
                lw=1.2,
                label=label,
            )
        if "theory_exponent" in d:
            axes[1].semilogx(t, np.asarray(d["theory_exponent"], float), ls="--", color=c, lw=1)
        if "theory_stationary_exponent" in d:
            axes[1].semilogx(t, np.asarray(d["theory_stationary_exponent"], float), ls=":", color="0.5", lw=1)
    axes[0].set_xlabel("step k")
    axes[0].set_ylabel(r"$\|\Delta_k\|^2$ (dashed: theory, dotted grey: stationary, dash-dot: fit)",
                       fontsize=8)
    axes[1].set_xlabel("step k")
    axes[1].set_ylabel(r"local exponent $d\log\|\Delta\|^2/d\log k$")
    axes[1].axhline(1.0, color="0.6", lw=0.6)
    axes[0].legend(fontsize=7)
    return fig


def exponent_sweep(sweeps: Mapping[str, Mapping[str, ArrayLike]]) -> Figure:
    """Fitted exponent ``c`` (with its interval) against each swept hyperparameter (002 Fig. 7 bottom).

    ``sweeps[name]`` holds ``values``, ``c``, ``low``, ``high`` and optionally ``theory`` (the exponent of
    the theory curve fitted on the same window).
    """
    fig, axes = _figure(len(sweeps))
    for ax, (name, d) in zip(axes, sweeps.items(), strict=True):
        x = np.asarray(d["values"], float)
        c = np.asarray(d["c"], float)
        err = np.vstack([c - np.asarray(d["low"], float), np.asarray(d["high"], float) - c])
        ax.errorbar(x, c, yerr=np.clip(err, 0, None), fmt="o", capsize=3, label="measured fit")
        if "theory" in d:
            ax.plot(x, np.asarray(d["theory"], float), "kx--", lw=0.8, label="theory, same window")
        ax.set_xscale("log" if name in ("lr", "batch_size") else "linear")
        ax.set_xlabel(name)
        ax.set_ylabel(r"exponent $c$ of $\|\Delta_k\|^2\propto k^c$")
    axes[0].legend(fontsize=7)
    return fig


def window_dependence(lengths: ArrayLike, c: ArrayLike, low: ArrayLike, high: ArrayLike) -> Figure:
    """Fitted exponent ``c`` against the length of the fitted trajectory (002 appendix I.7, Fig. 9)."""
    fig, axes = _figure(1)
    x = np.asarray(lengths, float)
    c = np.asarray(c, float)
    err = np.vstack([c - np.asarray(low, float), np.asarray(high, float) - c])
    axes[0].errorbar(x, c, yerr=np.clip(err, 0, None), fmt="o-", capsize=3)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("length of the fitted trajectory (steps)")
    axes[0].set_ylabel("fitted exponent c")
    return fig


def hessian_spectrum(eigenvalues: ArrayLike, noise_variances: ArrayLike | None = None) -> Figure:
    """Top Hessian eigenvalues ``rho_i`` (negative ones in red).

    And the per-mode noise ``s_i`` against ``rho_i``.
    """
    rho = np.asarray(eigenvalues, float)
    fig, axes = _figure(2 if noise_variances is not None else 1)
    idx = np.arange(1, len(rho) + 1)
    axes[0].bar(idx, np.abs(rho), color=np.where(rho < 0, "tab:red", "tab:blue"))
    axes[0].set_yscale("log")
    axes[0].set_xlabel("index i")
    axes[0].set_ylabel(r"$|\rho_i|$ (red: negative)")
    if noise_variances is not None:
        s = np.asarray(noise_variances, float)
        ok = rho > 0
        axes[1].loglog(rho[ok], s[ok], "o", mfc="none")
        if ok.sum() >= 2:
            coef = np.sum(s[ok] * rho[ok]) / np.sum(rho[ok] ** 2)
            xs = np.geomspace(rho[ok].min(), rho[ok].max(), 20)
            axes[1].loglog(xs, coef * xs, "k--", lw=0.8, label=rf"$\sigma^2\rho$, $\sigma^2$={coef:.3g}")
            axes[1].legend(fontsize=7)
        axes[1].set_xlabel(r"$\rho_i$")
        axes[1].set_ylabel(r"$s_i = q_i^T\Sigma q_i$")
    return fig


def phase_space(position: ArrayLike, velocity: ArrayLike, labels: Sequence[str]) -> Figure:
    """Phase-space trajectories ``(x_i, v_i)`` projected on chosen eigenvectors (002 Figs. 6, 8).

    ``position`` and ``velocity`` have shape ``(steps, modes)``; one panel per mode.
    """
    x = np.asarray(position, float)
    v = np.asarray(velocity, float)
    fig, axes = _figure(x.shape[1])
    for i, ax in enumerate(axes):
        ax.plot(x[:, i], v[:, i], lw=0.4, color="k")
        ax.plot(x[0, i], v[0, i], "o", color="w", mec="k")
        ax.set_xlabel(f"position on {labels[i]}")
        ax.set_ylabel(f"velocity on {labels[i]}")
    return fig


def frequency_spectrum(
    freqs: ArrayLike, power: ArrayLike, predicted: ArrayLike, measured: ArrayLike, labels: Sequence[str]
) -> Figure:
    """Power spectrum of each projected trajectory.

    With the theoretical (dashed) and measured (dotted) frequency.

    ``power`` has shape ``(modes, len(freqs))``; frequencies in cycles per step (002 appendix H).
    """
    f = np.asarray(freqs, float)
    p = np.asarray(power, float)
    fig, axes = _figure(len(labels))
    for i, ax in enumerate(axes):
        ax.semilogy(f[1:], p[i, 1:], lw=0.8)
        ax.axvline(float(np.asarray(predicted)[i]), color="r", ls="--", lw=1, label="theory")
        ax.axvline(float(np.asarray(measured)[i]), color="k", ls=":", lw=1, label="amplitude-weighted FFT")
        ax.set_xscale("log")
        ax.set_xlabel("frequency (cycles / step)")
        ax.set_ylabel(f"power on {labels[i]}")
    axes[0].legend(fontsize=7)
    return fig


def _contour_panel(ax, grid_x, grid_y, values, title, trajectory=None) -> None:
    cs = ax.contourf(grid_x, grid_y, values, levels=20, cmap="viridis")
    ax.contour(grid_x, grid_y, values, levels=10, colors="w", linewidths=0.4)
    if trajectory is not None:
        tr = np.asarray(trajectory, float)
        ax.plot(tr[:, 0], tr[:, 1], color="k", lw=0.5)
    ax.plot(0, 0, "o", color="w", mec="k")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(cs, ax=ax, shrink=0.8)


def trajectory_on_slices(
    grid_x: ArrayLike,
    grid_y: ArrayLike,
    slices: Mapping[str, ArrayLike],
    trajectory: ArrayLike,
    labels: Sequence[str],
) -> Figure:
    """The projected trajectory over 2-D slices (train loss, test loss, modified loss) (002 Fig. 4)."""
    fig, axes = _figure(len(slices), width=4.0)
    for ax, (title, values) in zip(axes, slices.items(), strict=True):
        _contour_panel(ax, grid_x, grid_y, np.asarray(values, float), title, trajectory)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    return fig


def velocity_on_psi(
    grid_x: ArrayLike, grid_y: ArrayLike, psi_v: ArrayLike, velocity: ArrayLike, labels: Sequence[str]
) -> Figure:
    """The projected velocity trajectory over the velocity part ``Psi_v`` of the modified loss.

    002 Fig. 5.
    """
    fig, axes = _figure(1, width=4.6)
    _contour_panel(axes[0], grid_x, grid_y, np.asarray(psi_v, float), r"$\Psi_v$", velocity)
    axes[0].set_xlabel(f"velocity on {labels[0]}")
    axes[0].set_ylabel(f"velocity on {labels[1]}")
    return fig


def linear_regression_mean(runs: Mapping[str, Mapping[str, ArrayLike]]) -> Figure:
    """Position and velocity on the top Hessian eigenvector (002 Fig. 2).

    Measured (black) vs eq. 9's mean (red).

    ``runs[label]`` holds ``steps``, ``position``, ``velocity``, ``position_theory``, ``velocity_theory``.
    """
    fig, axes = _figure(2, nrows=len(runs), width=4.4, height=2.8)
    axes = axes.reshape(len(runs), 2)
    for row, (label, d) in zip(axes, runs.items(), strict=True):
        t = np.asarray(d["steps"], float)
        for ax, key in zip(row, ("position", "velocity"), strict=True):
            ax.plot(t, np.asarray(d[key], float), color="k", lw=0.8, label="measured")
            ax.plot(t, np.asarray(d[f"{key}_theory"], float), color="r", lw=1, ls="--", label="eq. 9")
            ax.set_xlabel("step")
            ax.set_ylabel(f"{key} on $q_1$")
            ax.set_title(label, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    return fig


def ou_modified_loss(
    grid_x: ArrayLike,
    grid_y: ArrayLike,
    original: ArrayLike,
    modified: ArrayLike,
    trajectory: ArrayLike,
    current: tuple[ArrayLike, ArrayLike] | None = None,
) -> Figure:
    """A 2-D anisotropic OU trajectory on its original and its modified loss, with the current.

    002 Fig. 3.
    """
    fig, axes = _figure(2, width=4.3)
    tr = np.asarray(trajectory, float)
    for ax, values, title in ((axes[0], original, "original loss Φ"), (axes[1], modified, "modified loss Ψ")):
        cs = ax.contourf(grid_x, grid_y, np.asarray(values, float), levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, shrink=0.8)
        if current is not None:
            ax.streamplot(
                np.asarray(grid_x)[0],
                np.asarray(grid_y)[:, 0],
                np.asarray(current[0], float),
                np.asarray(current[1], float),
                color="0.75",
                density=0.7,
                linewidth=0.6,
            )
        ax.plot(tr[:, 0], tr[:, 1], color="k", lw=0.4)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    return fig


def architecture_comparison(curves: Mapping[str, Mapping[str, ArrayLike]]) -> Figure:
    """Local and global displacement for several architectures (002 Fig. 1).

    ``curves[name]`` holds ``steps``, ``local`` (``||delta_k||^2``), ``global`` (``||Delta_k||^2``), ``fit``
    and ``c`` (the fitted exponent).
    """
    fig, axes = _figure(2, width=4.6)
    for name, d in curves.items():
        t = np.asarray(d["steps"], float)
        loc = np.asarray(d["local"], float)
        w = max(1, min(15, len(loc) // 5))
        avg = np.convolve(loc, np.ones(w) / w, mode="valid")
        (line,) = axes[0].plot(t[w - 1 :], avg, lw=1.2, label=name)
        axes[1].loglog(
            t,
            np.asarray(d["global"], float),
            color=line.get_color(),
            lw=1.2,
            label=f"{name}: c={float(d['c']):.2f}",
        )
        if "fit" in d:
            axes[1].loglog(t, np.asarray(d["fit"], float), color="k", ls=":", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step k")
    axes[0].set_ylabel(r"$\|\delta_k\|^2$ (moving mean)")
    axes[1].set_xlabel("step k")
    axes[1].set_ylabel(r"$\|\Delta_k\|^2$")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return fig
