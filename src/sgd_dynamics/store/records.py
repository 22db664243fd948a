"""Typed results in a run directory: a (nested) dataclass stored as ``name.json`` plus ``name.h5``.

:func:`save_record` writes every array of the result to one HDF5 file (:func:`~sgd_dynamics.store.arrays.
write_arrays`, a dataset per array, named by its path in the result, e.g. ``sweeps/0/momenta``) and the rest
(numbers, strings, lists, tables) to JSON, where an array appears as ``{"__array__": "<its path>"}``. JSON
last: its presence marks the record complete. :func:`load_record` rebuilds the dataclass from its type hints,
so a study's report reads back the same objects the study computed. A potential
(:class:`sgd_dynamics.theory.potential.Potential`) is stored as its expression and parsed again.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np

from sgd_dynamics.store.arrays import read_arrays, write_arrays
from sgd_dynamics.store.files import write_atomic
from sgd_dynamics.theory.potential import Potential, parse_potential

__all__ = ["load_record", "record_exists", "save_record"]

_ARRAY, _POTENTIAL = "__array__", "__potential__"


def _encode(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, Potential):
        return {_POTENTIAL: obj.expression, "variables": list(obj.variables)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _encode(getattr(obj, f.name), f"{path}{f.name}/", arrays)
                for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, np.ndarray):
        name = path.rstrip("/") or "value"
        arrays[name] = obj
        return {_ARRAY: name}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{path}{i}/", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {str(k): _encode(v, f"{path}{k}/", arrays) for k, v in obj.items()}
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


def _decode(value: Any, tp: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict) and _ARRAY in value:
        return arrays[value[_ARRAY]]
    if isinstance(value, dict) and _POTENTIAL in value:
        return parse_potential(value[_POTENTIAL], tuple(value["variables"]))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _decode(value[f.name], hints[f.name], arrays)
                     for f in dataclasses.fields(tp) if f.init and f.name in value})
    if origin is tuple and isinstance(value, list):
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        return tuple(_decode(v, t, arrays) for v, t in zip(value, items, strict=True))
    if origin is list and isinstance(value, list):
        return [_decode(v, args[0] if args else Any, arrays) for v in value]
    if origin is dict and isinstance(value, dict):
        return {k: _decode(v, args[1] if args else Any, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, Any, arrays) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v, Any, arrays) for k, v in value.items()}
    return value


def save_record(directory: Path | str, name: str, obj: Any) -> None:
    """Store the dataclass ``obj`` as ``directory/name.h5`` (arrays) and ``directory/name.json`` (rest)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, "", arrays)
    write_arrays(directory / f"{name}.h5", arrays)
    write_atomic(directory / f"{name}.json", json.dumps(tree, indent=1).encode())


def load_record(directory: Path | str, name: str, cls: type) -> Any:
    """The ``cls`` instance stored by :func:`save_record`."""
    directory = Path(directory)
    arrays = read_arrays(directory / f"{name}.h5")
    return _decode(json.loads((directory / f"{name}.json").read_text()), cls, arrays)


def record_exists(directory: Path | str, name: str) -> bool:
    """Whether :func:`save_record` finished writing ``name`` in ``directory``."""
    return (Path(directory) / f"{name}.json").is_file()
