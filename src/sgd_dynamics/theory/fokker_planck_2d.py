"""Stationary law of a 2-D diffusion with position-dependent diagonal noise, by finite volumes.

For ``dq = -grad U(q) dt + B(q) dW`` with ``B B^T / 2 = diag(D_x(q), D_y(q))`` the stationary density solves
``0 = div(grad U p + div(D p))`` (chapter 004; with ``D = T I`` its solution is the Gibbs law
``exp(-U/T)``, otherwise — e.g. SGD-shaped noise that differs between basins — there is no closed form and
the law carries a probability current). On a rectangle of ``nx x ny`` equal cells with reflecting walls, the
flux between two neighbouring cells is the Scharfetter–Gummel flux

    J = (D / h) (B(-Pe) p_a - B(Pe) p_b),   Pe = b h / D,   B(z) = z / (exp(z) - 1),

with ``b`` the drift component and ``D`` the diffusion across the shared face (evaluated at its midpoint).
It is exact for a constant drift across a face and stays positive for any Péclet number; the stationary
vector is the null vector of the resulting master-equation generator (one sparse LU solve). It is the
independent check of the adiabatic-elimination prediction in
:func:`sgd_dynamics.experiments.basin_selection.sgd_noise_occupation`.

>>> import numpy as np
>>> law = stationary_law_2d(lambda q: q, lambda q: np.full(q.shape, 0.5), (-5, 5), (-5, 5), 60, 60)
>>> round(float(law.probability[law.x < 0].sum()), 6)   # Gibbs law of U = |q|^2/2 at T = 0.5: symmetric
0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

Array = NDArray[np.float64]

__all__ = ["StationaryLaw2D", "stationary_law_2d"]


@dataclass(frozen=True)
class StationaryLaw2D:
    """Stationary cell probabilities ``probability[i, j]`` (summing to 1) on cell centres ``x[i], y[j]``."""

    x: Array
    y: Array
    probability: Array


def _bernoulli(z: Array) -> Array:
    out = np.ones_like(z)
    big = np.abs(z) > 1e-10
    out[big] = z[big] / np.expm1(z[big])
    return out


def stationary_law_2d(gradient: Callable[[Array], Array], diffusion: Callable[[Array], Array],
                      x_range: tuple[float, float], y_range: tuple[float, float], nx: int,
                      ny: int) -> StationaryLaw2D:
    """Stationary law of ``dq = -grad U dt + B dW``, ``B B^T / 2 = diag(diffusion(q))``, on a rectangle.

    ``gradient`` and ``diffusion`` map points of shape ``(..., 2)`` to ``(..., 2)``; the diffusion entries
    must be positive. Raises ``ValueError`` naming the argument for invalid input.
    """
    for name, n in (("nx", nx), ("ny", ny)):
        if not (isinstance(n, int) and n >= 4):
            raise ValueError(f"{name}={n!r} is invalid: expected an integer >= 4")
    for name, (lo, hi) in (("x_range", x_range), ("y_range", y_range)):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"{name}={(lo, hi)!r} is invalid: expected finite (low, high) with low < high")
    x_edges, y_edges = np.linspace(*x_range, nx + 1), np.linspace(*y_range, ny + 1)
    x, y = (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
    index = np.arange(nx * ny).reshape(nx, ny)
    rows, cols, rates = [], [], []

    def connect(a: NDArray, b: NDArray, faces: Array, axis: int, h: float) -> None:
        drift = -gradient(faces)[..., axis].ravel()
        d = diffusion(faces)[..., axis].ravel()
        if not np.all(d > 0):
            raise ValueError("diffusion must be > 0 at every cell face of the grid")
        peclet = drift * h / d
        for source, target, rate in ((a, b, d / h**2 * _bernoulli(-peclet)),
                                     (b, a, d / h**2 * _bernoulli(peclet))):
            rows.extend((target, source))
            cols.extend((source, source))
            rates.extend((rate, -rate))

    fx, fy = np.meshgrid(x_edges[1:-1], y, indexing="ij")
    connect(index[:-1, :].ravel(), index[1:, :].ravel(), np.stack([fx, fy], -1), 0, x_edges[1] - x_edges[0])
    fx, fy = np.meshgrid(x, y_edges[1:-1], indexing="ij")
    connect(index[:, :-1].ravel(), index[:, 1:].ravel(), np.stack([fx, fy], -1), 1, y_edges[1] - y_edges[0])
    generator = sparse.csr_matrix((np.concatenate(rates), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(nx * ny, nx * ny)).tolil()
    # The generator is singular (probability is conserved): one balance equation becomes the normalisation.
    generator[0, :] = 1.0
    rhs = np.zeros(nx * ny)
    rhs[0] = 1.0
    p = sparse_linalg.spsolve(generator.tocsc(), rhs).reshape(nx, ny)
    return StationaryLaw2D(x, y, p / p.sum())
