"""Checks of user input at the package's boundaries, with one error format for all of them.

Every message names the parameter, the value given and what is valid:
``ValueError: lr=-1.0 is invalid: expected a finite number > 0``.
"""

from __future__ import annotations

import math

import numpy as np


def require(condition: bool, name: str, value: object, valid: str) -> None:
    """Raise ``ValueError`` naming ``name``, ``value`` and ``valid`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(f"{name}={value!r} is invalid: expected {valid}")


def positive(value: float, name: str) -> float:
    """``value`` as a float if it is a finite real number > 0; ``ValueError`` naming ``name`` otherwise."""
    require(isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0,
            name, value, "a finite number > 0")
    return float(value)
