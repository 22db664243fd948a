"""Where the continuous model departs from the exact discrete recursion as ``eta * rho`` grows (ERRATA 002.5).

For one Hessian mode, compares the continuous (002 eqs. 11, 18, 19 as corrected) and exact discrete
predictions of the stationary velocity variance (so the instantaneous speed), the position variance and
the global displacement at a few lags, over a grid of ``eta * (rho + lambda)`` up to the stability limit
``2 (1 + beta)``. Pure function of its arguments; the figure lives in
:mod:`sgd_dynamics.report.theory_figures`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import global_displacement, stationary_moments


@dataclass(frozen=True)
class ModelComparison:
    """Continuous vs exact discrete predictions per value of ``eta * h`` (rows)."""

    hyper: Hyperparams
    eta_h: NDArray[np.float64]
    lags: NDArray[np.int64]
    speed_continuous: NDArray[np.float64]
    speed_discrete: NDArray[np.float64]
    position_variance_continuous: NDArray[np.float64]
    position_variance_discrete: NDArray[np.float64]
    displacement_continuous: NDArray[np.float64]  # (len(eta_h), len(lags))
    displacement_discrete: NDArray[np.float64]

    def relative_error(self) -> dict[str, NDArray[np.float64]]:
        """``continuous / discrete - 1`` for each quantity."""
        return {
            "speed": self.speed_continuous / self.speed_discrete - 1,
            "position variance": self.position_variance_continuous / self.position_variance_discrete - 1,
            **{f"displacement t={t}":
               self.displacement_continuous[:, j] / self.displacement_discrete[:, j] - 1
               for j, t in enumerate(self.lags)},
        }

    def table(self) -> list[dict[str, float]]:
        """Rows for a report table."""
        errors = self.relative_error()
        return [{"eta*h": float(x), **{k: float(v[i]) for k, v in errors.items()}}
                for i, x in enumerate(self.eta_h)]


def compare_models(hyper: Hyperparams, eta_h: NDArray[np.float64] | None = None, noise_variance: float = 1.0,
                   lags: tuple[int, ...] = (10, 100, 1000)) -> ModelComparison:
    """Evaluate both models for one mode over a grid of ``eta * h`` (default: 40 log-spaced values)."""
    limit = 2 * (1 + hyper.momentum)
    grid = np.geomspace(1e-4, 0.98 * limit, 40) if eta_h is None else np.asarray(eta_h, dtype=np.float64)
    if np.any(grid <= 0) or np.any(grid >= limit):
        raise ValueError(f"eta_h must lie in (0, 2 (1 + momentum)) = (0, {limit:g}); "
                         f"got [{grid.min()}, {grid.max()}]")
    rho = grid / hyper.lr - hyper.weight_decay
    if np.any(rho < 0):
        raise ValueError("eta_h below lr * weight_decay gives a negative Hessian eigenvalue")
    s = np.full_like(rho, noise_variance)
    out: dict[str, list] = {k: [] for k in ("sc", "sd", "pc", "pd", "dc", "dd")}
    for r, si in zip(rho, s, strict=True):
        for model, key in (("continuous", "c"), ("discrete", "d")):
            mom = stationary_moments([r], [si], hyper, model=model)
            out["s" + key].append(hyper.lr**2 * mom.velocity_variance[0])
            out["p" + key].append(mom.position_variance[0])
            out["d" + key].append(global_displacement([r], [si], hyper, list(lags), model=model))
    return ModelComparison(hyper=hyper, eta_h=grid, lags=np.array(lags),
                           speed_continuous=np.array(out["sc"]), speed_discrete=np.array(out["sd"]),
                           position_variance_continuous=np.array(out["pc"]),
                           position_variance_discrete=np.array(out["pd"]),
                           displacement_continuous=np.array(out["dc"]),
                           displacement_discrete=np.array(out["dd"]))
