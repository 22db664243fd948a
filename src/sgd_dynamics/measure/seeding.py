"""Torch's global generators seeded for one block of code, and restored after it.

Dropout masks, a user's model initialisation and ``torch.randint`` draws come from the global generators.
Seeding them inside :func:`seeded_torch_rng` makes such a block a function of its seed alone (not of what
the process drew before), and restoring them afterwards leaves the caller's stream untouched
(``torch.random.fork_rng``). The generator of a CUDA device in use is forked too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["seeded_torch_rng"]


@contextmanager
def seeded_torch_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Inside the block the global generators start from ``seed``; after it they are as before.

    ``device``: where the block's random draws happen (a CUDA device's generator is forked as well).

    >>> with seeded_torch_rng(3):
    ...     a = torch.rand(2)
    >>> with seeded_torch_rng(3):
    ...     b = torch.rand(2)
    >>> bool(torch.equal(a, b))
    True
    """
    device = torch.device("cpu" if device is None else device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
