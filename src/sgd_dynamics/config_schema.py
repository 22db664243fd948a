"""Typed study configurations: one validator driven by the dataclass field types and per-field metadata.

A configuration is a frozen dataclass whose fields are declared with :func:`setting`; its
``__post_init__`` calls :func:`validate`, which checks every field once against its type (``int``,
``float``, ``str``, ``bool``, ``X | None``, ``tuple[T, ...]``, ``dict``, ``Literal[...]``, a nested
configuration) and its metadata (``minimum``/``maximum``, ``choices``), coerces lists to tuples and integers
to floats, and raises one ``ValueError`` in the :mod:`sgd_dynamics._validation` format naming the key.
:func:`from_mapping` builds a configuration from TOML or stored JSON (an unknown key is an error naming it
and its close matches), :func:`to_mapping` is its inverse, and :func:`schema_markdown` writes the table of
every key, type, default, valid range and meaning that ``docs/config.md`` holds.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from sgd_dynamics._validation import require

__all__ = ["is_entry_point", "from_mapping", "schema_markdown", "setting", "to_mapping", "validate"]


_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_entry_point(spec: object) -> bool:
    """Whether ``spec`` has the form ``package.module:function``.

    >>> is_entry_point("mypkg.models:small_cnn"), is_entry_point("mlp")
    (True, False)
    """
    return isinstance(spec, str) and bool(_ENTRY_POINT.match(spec))


def setting(default: Any = dataclasses.MISSING, help: str = "", *, minimum: float | None = None,
            maximum: float | None = None, exclusive_minimum: bool = False, exclusive_maximum: bool = False,
            choices: tuple[str, ...] | None = None, entry_point: bool = False,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its documentation and valid range (checked by :func:`validate`).

    ``minimum``/``maximum`` bound a number or every item of a tuple; ``choices`` lists the valid strings
    (of a string or of every item); ``entry_point`` also accepts ``"package.module:function"``.
    """
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum,
            "exclusive_maximum": exclusive_maximum, "choices": choices, "entry_point": entry_point}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------- types

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, tp


def _type_name(tp: Any) -> str:
    optional, inner = _is_optional(tp)
    if optional:
        return f"{_type_name(inner)} or none"
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "table"
    if origin is Literal:
        return "string"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__",
                                                                                            str(tp)))


def _range_text(meta: Mapping[str, Any], tp: Any) -> str:
    """The valid values in words, e.g. ``a number > 0`` or ``0 <= x < 1``."""
    _, inner = _is_optional(tp)
    if typing.get_origin(inner) is tuple:
        inner = typing.get_args(inner)[0]
    if typing.get_origin(inner) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(inner))
    if meta.get("choices"):
        text = "one of " + ", ".join(repr(c) for c in meta["choices"])
        return text + " or 'package.module:function'" if meta.get("entry_point") else text
    if meta.get("entry_point"):
        return "a built-in name or 'package.module:function'"
    lo, hi = meta.get("minimum"), meta.get("maximum")
    kind = {int: "an integer", float: "a finite number"}.get(inner, "")
    if lo is not None and hi is not None:
        return (f"{lo:g} {'<' if meta['exclusive_minimum'] else '<='} x "
                f"{'<' if meta['exclusive_maximum'] else '<='} {hi:g}")
    if lo is not None:
        return f"{kind} {'>' if meta['exclusive_minimum'] else '>='} {lo:g}".strip()
    if hi is not None:
        return f"{kind} {'<' if meta['exclusive_maximum'] else '<='} {hi:g}".strip()
    return kind or "any"


# ----------------------------------------------------------------------------------------------- checks

def _scalar(name: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    """``value`` checked against a scalar type and the metadata; returns it coerced (int -> float)."""
    if typing.get_origin(tp) is Literal:
        require(value in typing.get_args(tp), name, value, _range_text(meta, tp))
        return value
    if tp is bool:
        require(isinstance(value, bool), name, value, "true or false")
        return value
    if tp is str:
        named = meta.get("choices") or meta.get("entry_point")
        require(isinstance(value, str) and value != "", name, value,
                _range_text(meta, tp) if named else "a non-empty string")
        choices, ep = meta.get("choices"), meta.get("entry_point")
        if choices:
            require(value in choices or (ep and is_entry_point(value)), name, value, _range_text(meta, tp))
        return value
    if tp in (int, float):
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if tp is int:
            require(number and float(value).is_integer(), name, value, _range_text(meta, tp))
            value = int(value)
        else:
            require(number and math.isfinite(value), name, value, _range_text(meta, tp))
            value = float(value)
        lo, hi = meta.get("minimum"), meta.get("maximum")
        ok = (lo is None or (value > lo if meta.get("exclusive_minimum") else value >= lo)) and (
            hi is None or (value < hi if meta.get("exclusive_maximum") else value <= hi))
        require(ok, name, value, _range_text(meta, tp))
        return value
    return value


def _check(name: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    optional, inner = _is_optional(tp)
    if value is None:
        require(optional, name, value, _range_text(meta, inner) if inner is not str else "a non-empty string")
        return None
    origin = typing.get_origin(inner)
    if origin is tuple:
        item = typing.get_args(inner)[0]
        require(isinstance(value, (list, tuple)), name, value,
                f"a list of {_type_name(item)}s ({_range_text(meta, inner)})")
        return tuple(_scalar(f"{name}[{i}]", v, item, meta) for i, v in enumerate(value))
    if origin is dict or inner is dict:
        require(isinstance(value, Mapping), name, value, "a table of options, e.g. {hidden = [256, 256]}")
        return dict(value)
    if dataclasses.is_dataclass(inner):
        if isinstance(value, inner):
            return value
        require(isinstance(value, Mapping), name, value, f"a table of {inner.__name__} keys")
        return from_mapping(inner, value, prefix=f"{name}.")
    return _scalar(name, value, inner, meta)


def validate(config: Any, prefix: str = "") -> None:
    """Check every field of the dataclass ``config``; coerce lists to tuples and ints to floats in place."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = _check(prefix + f.name, getattr(config, f.name), hints[f.name], f.metadata)
        object.__setattr__(config, f.name, value)


def from_mapping(cls: type, raw: Mapping[str, Any], prefix: str = "") -> Any:
    """``cls(**raw)`` after refusing unknown keys (the message names the key and its close matches)."""
    require(isinstance(raw, Mapping), prefix.rstrip(".") or "config", raw, "a table of keys")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=3)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise ValueError(f"config key {prefix}{key!r} is unknown: {hint}expected keys among "
                             f"{', '.join(known)} (see docs/config.md)")
    hints = _hints(cls)
    kwargs = {}
    for key, value in raw.items():  # TOML and JSON have lists where the configuration has tuples
        _, inner = _is_optional(hints[key])
        if typing.get_origin(inner) is tuple and isinstance(value, list):
            value = tuple(value)
        elif dataclasses.is_dataclass(inner) and isinstance(value, Mapping):
            value = from_mapping(inner, value, prefix=f"{prefix}{key}.")
        kwargs[key] = value
    return cls(**kwargs)


def to_mapping(config: Any) -> dict[str, Any]:
    """The JSON-ready fields of ``config`` (tuples as lists, nested configurations as tables)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# ----------------------------------------------------------------------------------------------- docs

def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(table below)"
    return json.dumps(json.loads(json.dumps(value, default=list)))


def schema_markdown(cls: type, title: str, intro: str, prefix: str = "") -> str:
    """A Markdown section: one row per key of ``cls`` (type, default, valid values, meaning)."""
    hints = _hints(cls)
    lines = [f"## {title}", "", intro, "", "| key | type | default | valid | meaning |",
             "|---|---|---|---|---|"]
    nested = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        valid = "" if dataclasses.is_dataclass(tp) else _range_text(f.metadata, tp)
        if typing.get_origin(_is_optional(tp)[1]) is tuple:
            valid = f"each: {valid}"
        lines.append(f"| `{prefix}{f.name}` | {_type_name(tp)} | `{_default_text(f)}` | {valid} | "
                     f"{f.metadata.get('help', '')} |")
        if dataclasses.is_dataclass(tp):
            nested.append((f.name, tp))
    out = "\n".join(lines) + "\n"
    for name, tp in nested:
        out += "\n" + schema_markdown(tp, f"{title}: `[{prefix}{name}]`", (tp.__doc__ or "").split("\n")[0],
                                      prefix=f"{prefix}{name}.")
    return out
