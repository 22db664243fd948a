"""Input checks and resampling shared by the estimators: paired 1-D data, bootstrap settings and intervals.

The moving-block bootstrap (Kuensch 1989) resamples blocks of consecutive residuals, so autocorrelated
trajectory residuals keep their short-range correlation inside a block.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require as _require


class Summary(str):
    """A description standing in for a value too large to print, shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def paired_1d(x: ArrayLike, y: ArrayLike, x_name: str, y_name: str) -> tuple[NDArray, NDArray]:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    _require(xa.ndim == 1, f"{x_name}.shape", xa.shape, "a 1-D array")
    _require(ya.shape == xa.shape, f"{y_name}.shape", ya.shape, f"the shape of {x_name}, {xa.shape}")
    _require(bool(np.all(np.isfinite(xa))), x_name, "(non-finite entries)", "finite values")
    _require(bool(np.all(np.isfinite(ya))), y_name, "(non-finite entries)", "finite values")
    return xa, ya


def check_bootstrap(n_bootstrap: int, confidence: float) -> None:
    _require(isinstance(n_bootstrap, (int, np.integer)) and n_bootstrap >= 10, "n_bootstrap", n_bootstrap,
             "an integer >= 10")
    _require(0 < confidence < 1, "confidence", confidence, "0 < confidence < 1")


def percentile_interval(samples: NDArray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def block_resample(residuals: NDArray, n_bootstrap: int, block_length: int,
                    rng: np.random.Generator) -> NDArray:
    """``(n_bootstrap, n)`` resamples of ``residuals`` by the moving-block bootstrap (Kuensch 1989)."""
    n = residuals.size
    n_blocks = -(-n // block_length)
    starts = rng.integers(0, n - block_length + 1, size=(n_bootstrap, n_blocks))
    index = (starts[:, :, None] + np.arange(block_length)).reshape(n_bootstrap, -1)[:, :n]
    return residuals[index]


