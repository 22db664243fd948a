"""An xarray index over the sweep points' coordinates: lr, momentum, batch_size, sampler and name.

Imported only by :func:`sgd_dynamics.store.run_dataset.open_run`, after xarray (an optional extra).

Why not a pandas ``MultiIndex``: it makes ``point`` an object-valued coordinate, so a 2-D variable of
the selection (``ds.sel(lr=0.01).global_sq_displacement``) cannot be plotted. This index selects on any
subset of the hyperparameter coordinates at once (``ds.sel(lr=0.01, momentum=0.9)``) and leaves ``point``
without a coordinate, so plots use the point's position. A selection by scalars that leaves exactly one
point drops the ``point`` dimension, as a unique pandas label does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from xarray.core.indexing import IndexSelResult


class PointIndex(xr.Index):
    """Label selection of sweep points by any of their hyperparameter coordinates (one dimension)."""

    def __init__(self, columns: Mapping[str, np.ndarray], dim: str) -> None:
        self.columns = {name: np.asarray(values) for name, values in columns.items()}
        self.dim = dim

    @classmethod
    def from_variables(cls, variables: Mapping[str, Any], *, options: Mapping[str, Any]) -> PointIndex:
        """The index of 1-D coordinates that share one dimension."""
        dims = {var.dims for var in variables.values()}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise ValueError(f"PointIndex needs 1-D coordinates along one dimension, got dims {dims}")
        return cls({name: var.values for name, var in variables.items()}, next(iter(dims))[0])

    def create_variables(self, variables: Mapping[Any, Any] | None = None) -> dict[Any, Any]:
        """The coordinates this index holds (xarray rebuilds them from the index after a selection)."""
        given = variables or {}
        return {name: xr.Variable(self.dim, values, attrs=getattr(given.get(name), "attrs", None))
                for name, values in self.columns.items()}

    def sel(self, labels: Mapping[Any, Any], method: Any = None, tolerance: Any = None) -> IndexSelResult:
        """Positions of the points whose coordinates equal every label (a list label: any of its values)."""
        if method is not None or tolerance is not None:
            raise ValueError("the sweep point coordinates select exact values only (no method/tolerance)")
        mask = np.ones(len(next(iter(self.columns.values()))), bool)
        for name, value in labels.items():
            mask &= np.isin(self.columns[name], np.atleast_1d(np.asarray(value)))
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            raise KeyError(f"no sweep point has {dict(labels)}")
        scalar = all(np.ndim(value) == 0 for value in labels.values())
        return IndexSelResult({self.dim: int(positions[0]) if scalar and positions.size == 1 else positions})

    def isel(self, indexers: Mapping[Any, Any]) -> PointIndex | None:
        """The index of the selected points; none when one point is taken by an integer."""
        indexer = indexers[self.dim]
        if isinstance(indexer, (int, np.integer)):
            return None
        if isinstance(indexer, xr.Variable):
            indexer = indexer.values
        return PointIndex({name: values[indexer] for name, values in self.columns.items()}, self.dim)

    def equals(self, other: Any, **kwargs: Any) -> bool:
        """Same coordinates, same values."""
        return (isinstance(other, PointIndex) and other.columns.keys() == self.columns.keys()
                and all(np.array_equal(v, other.columns[k]) for k, v in self.columns.items()))
