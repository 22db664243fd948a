"""Resolve a user's model, data or loss given as a Python entry point ``"package.module:function"``.

The study's configuration names either a built-in (``"mlp"``, ``"mnist1d"``, ``"cross_entropy"``) or an
entry point; the module must be importable (installed, or on ``sys.path``). ``function`` may be a dotted
attribute path (``"pkg.mod:Factory.build"``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

__all__ = ["is_entry_point", "resolve_entry_point"]

_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_entry_point(spec: str) -> bool:
    """Whether ``spec`` has the form ``package.module:function``.

    >>> is_entry_point("mypkg.models:small_cnn"), is_entry_point("mlp")
    (True, False)
    """
    return bool(_PATTERN.match(spec))


def resolve_entry_point(spec: str, option: str = "entry point") -> Callable[..., Any]:
    """Import ``package.module`` and return its callable ``function``.

    ``option`` names the configuration field in error messages. Raises ``ValueError`` when the string is
    malformed, the module cannot be imported, the attribute is missing or it is not callable.

    >>> resolve_entry_point("math:sqrt")(4.0)
    2.0
    """
    if not isinstance(spec, str) or not is_entry_point(spec):
        raise ValueError(f"{option}={spec!r} is invalid: expected 'package.module:function'")
    module_name, attr_path = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{option}={spec!r}: cannot import module {module_name!r} ({exc})") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{option}={spec!r}: module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{option}={spec!r}: {attr_path!r} is not callable")
    return obj
