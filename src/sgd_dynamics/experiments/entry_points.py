"""Resolve a user's model, data or loss given as a Python entry point ``"package.module:function"``.

The study's configuration names either a built-in (``"mlp"``, ``"mnist1d"``, ``"cross_entropy"``) or an
entry point. The module is imported from the current directory first (``mymod.py`` next to where the
command runs), then from ``sys.path`` (installed packages, ``PYTHONPATH``). ``function`` may be a dotted
attribute path (``"pkg.mod:Factory.build"``). :func:`check_signature` checks that the callable accepts the
arguments the study will pass, so a mismatch is a clean error naming the option, not a ``TypeError``:

- model: ``build(input_shape, num_classes, **options) -> torch.nn.Module``;
- dataset: ``load()`` or ``load(seed)`` returning a Dataset, a mapping or a 4-tuple;
- loss: ``loss(outputs, targets)`` or a factory ``make_loss() -> loss``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from sgd_dynamics.config_schema import is_entry_point

__all__ = ["check_signature", "is_entry_point", "resolve_entry_point"]


def _import_from_cwd(module_name: str) -> Any:
    """Import ``module_name`` with the current directory first on the search path (as ``python -m`` does)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


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
        obj: Any = _import_from_cwd(module_name)
    except ImportError as exc:
        raise ValueError(
            f"{option}={spec!r}: cannot import module {module_name!r} ({exc}); it is searched in the "
            f"current directory ({os.getcwd()}), then on PYTHONPATH and among installed packages") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{option}={spec!r}: module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{option}={spec!r}: {attr_path!r} is not callable")
    return obj


def _accepts(fn: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any]) -> str | None:
    """``None`` if ``fn(*args, **kwargs)`` binds, else the reason."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    except ValueError:  # builtins without a signature: trust them
        return None
    return None


def check_signature(fn: Callable[..., Any], option: str, spec: str, options: Mapping[str, Any] = {},
                    valid: str = "") -> None:
    """Raise ``ValueError`` unless ``fn`` accepts what the study passes for ``option`` (model/dataset)."""
    if option == "model":
        why = _accepts(fn, ((1,), 2), options)
        if why is not None:
            raise ValueError(
                f"model={spec!r} does not accept the call build(input_shape, num_classes"
                f"{''.join(f', {k}=...' for k in options)}) ({why}): expected the signature "
                f"build(input_shape, num_classes, **options){valid}")
    elif option == "dataset":
        if _accepts(fn, (), {}) is not None and _accepts(fn, (), {"seed": 0}) is not None:
            raise ValueError(f"dataset={spec!r} cannot be called as load() or load(seed=...): expected the "
                             "signature load() or load(seed) returning a Dataset, a mapping or a 4-tuple")
