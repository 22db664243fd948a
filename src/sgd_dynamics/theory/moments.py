"""Per-mode stationary second moments of the phase-space state ``(x, v)``, shared by both models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class StationaryMoments:
    """Stationary ``Var x``, ``Cov(x, v)`` and ``Var v`` per Hessian mode (``x = theta - mu``, ``v = -b``).

    ``position_variance`` is ``inf`` for a mode with zero curvature (it diffuses without bound).
    """

    position_variance: NDArray[np.float64]
    cross_covariance: NDArray[np.float64]
    velocity_variance: NDArray[np.float64]

    def as_matrices(self) -> NDArray[np.float64]:
        """The per-mode 2x2 covariance matrices, shape ``(modes, 2, 2)``."""
        out = np.empty(self.velocity_variance.shape + (2, 2))
        out[..., 0, 0] = self.position_variance
        out[..., 0, 1] = out[..., 1, 0] = self.cross_covariance
        out[..., 1, 1] = self.velocity_variance
        return out
