"""Array files of a run directory: named NumPy arrays in one HDF5 file, written atomically.

:func:`write_arrays` / :func:`read_arrays` store results computed once (not appended); the layout is
described in :func:`write_arrays`. :func:`save_results` / :func:`load_results` store a nested result
(scalars and lists to ``name.json``, arrays to ``name.h5``), the form the studies' analyses take.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.store.files import replaced_atomically, write_atomic

__all__ = ["load_results", "read_arrays", "save_results", "write_arrays"]


_ARRAY_KINDS = "biufcSU"   # what HDF5 stores natively (unicode as UTF-8 strings); no pickled objects
_UNICODE_ATTR = "numpy_dtype"


def _array_items(path: Path, arrays: Mapping[str, ArrayLike]) -> dict[str, NDArray]:
    out: dict[str, NDArray] = {}
    for name, value in arrays.items():
        parts = name.split("/") if isinstance(name, str) else [""]
        if any(part in ("", ".") for part in parts):
            raise ValueError(f"array name {name!r} for {path} is invalid: expected a non-empty string of "
                             "'/'-separated parts, none empty or '.'")
        array = np.asarray(value)
        if array.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"array {name!r} for {path} has dtype {array.dtype}: expected booleans, "
                             "integers, floats, complex numbers, bytes or str")
        if array.dtype.kind == "U" and any("\x00" in text for text in array.ravel().tolist()):
            raise ValueError(f"array {name!r} for {path} holds a string with a NUL character: expected "
                             "strings without NUL (HDF5 variable-length strings end at the first NUL)")
        out[name] = array
    names = set(out)
    for name in out:   # "a" and "a/b" cannot both exist: "a" would be a dataset and a group
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise ValueError(f"array names {'/'.join(parts[:i])!r} and {name!r} for {path} clash: "
                                 "a name cannot be both an array and a group of arrays")
    return out


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, ArrayLike],
                 attrs: Mapping[str, Any] | None = None) -> Path:
    """Write named arrays to the HDF5 file ``path`` atomically; returns ``path``.

    Layout, readable with plain ``h5py`` (or any HDF5 tool): one dataset per name, holding the array with
    its shape (0-d arrays as scalar datasets, empty arrays with their zero-length shape) and dtype. A name
    with ``/`` is a path: ``"fft/q1/freq"`` is the dataset ``freq`` in the group ``fft/q1``. Unicode strings
    are stored as variable-length UTF-8 strings with the attribute ``numpy_dtype`` (e.g. ``"<U5"``); booleans
    as HDF5's boolean enum. ``attrs`` become attributes of the root group (values that ``h5py`` accepts:
    numbers, strings, arrays). No compression, so every HDF5 reader opens it::

        import h5py
        with h5py.File("points/lr=0.01,.../result.h5", "r") as f:
            loss = f["loss"][()]
            freq = f["fft/q1/freq"][()]
            names = []; f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)

    The file is first written as ``<stem>.tmp<suffix>`` next to ``path`` (a leftover from an interrupted
    write is overwritten), fsynced, then moved over ``path`` with ``os.replace``: ``path`` is either absent,
    the previous complete file, or the new complete file, never a partial one. On an error the temporary
    file is removed and ``path`` is left as it was.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_arrays(f"{tmp}/a.h5", {"x": np.arange(3), "fit/c": 1.5})
    ...     print({k: v.tolist() for k, v in read_arrays(f"{tmp}/a.h5").items()})
    {'x': [0, 1, 2], 'fit/c': 1.5}

    Raises:
        ValueError: a name is empty or has an empty part, names clash (``"a"`` and ``"a/b"``), an array
            has a dtype HDF5 cannot store without pickling (object, datetime, ...), or a str holds a NUL.
    """
    path = Path(path)
    items = _array_items(path, arrays)
    with replaced_atomically(path, path.with_name(f"{path.stem}.tmp{path.suffix}")) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            for name, array in items.items():
                parent = f
                *groups, leaf = name.split("/")
                for group in groups:   # explicit groups, so the names come back in the order given
                    if group not in parent:
                        parent.create_group(group, track_order=True)
                    parent = parent[group]
                if array.dtype.kind == "U":
                    ds = parent.create_dataset(leaf, data=array.astype(object), dtype=h5py.string_dtype())
                    ds.attrs[_UNICODE_ATTR] = array.dtype.str
                else:
                    parent.create_dataset(leaf, data=array)
    return path


def read_arrays(path: str | os.PathLike) -> dict[str, NDArray]:
    """The arrays of a file written by :func:`write_arrays`, as ``{name: ndarray}``.

    Names of arrays in groups are their paths (``"fft/q1/freq"``); 0-d datasets come back as 0-d arrays,
    values and dtypes as written, in native byte order. Names come back in the order written, except that
    the arrays of a group come back together, where its first array was written.
    Root attributes are not returned (read them with ``h5py.File(path).attrs``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"array file {path} does not exist")
    out: dict[str, NDArray] = {}

    def visit(group: h5py.Group, prefix: str) -> None:
        for key, obj in group.items():   # creation order where tracked (``visititems`` sorts by name)
            if isinstance(obj, h5py.Group):
                visit(obj, f"{prefix}{key}/")
            elif _UNICODE_ATTR in obj.attrs:
                dtype = np.dtype(str(obj.attrs[_UNICODE_ATTR]))
                out[prefix + key] = np.asarray(obj.asstr()[()], dtype=object).astype(dtype)
            else:   # h5py keeps a stored byte order only for empty datasets; make it native for all
                array = np.asarray(obj[()])
                out[prefix + key] = array.astype(array.dtype.newbyteorder("="), copy=False)

    with h5py.File(path, "r") as f:
        visit(f, "")
    return out


def save_results(directory: Path | str, name: str, result: Mapping[str, Any]) -> None:
    """Scalars and lists to ``name.json``; arrays to ``name.h5`` (HDF5); each atomic, the JSON last.

    An array ``result[key]`` is the dataset ``key``; a nested array ``result[key][sub][name]`` is the dataset
    ``name`` in the group ``key/sub`` (:func:`write_arrays`). The JSON file marks the result complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scalars: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in result.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for sub, d in value.items():
                for k2, arr in d.items():
                    arrays[f"{key}/{sub}/{k2}"] = np.asarray(arr)
        else:
            scalars[key] = value
    write_arrays(directory / f"{name}.h5", arrays)
    write_atomic(directory / f"{name}.json", json.dumps(scalars, indent=1, default=_jsonable).encode())


def load_results(directory: Path | str, name: str) -> dict[str, Any]:
    """Inverse of :func:`save_results` (nested arrays come back as ``{key: {sub: {name: array}}}``)."""
    directory = Path(directory)
    out: dict[str, Any] = json.loads((directory / f"{name}.json").read_text())
    for key, array in read_arrays(directory / f"{name}.h5").items():
        parts = key.split("/")
        if len(parts) == 3:
            out.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = array
        else:
            out[key] = array
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
