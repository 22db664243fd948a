"""A small float64 classifier, fixed batches and directions shared by the integration tests.

A plain module (not a conftest) so that the processes of the DDP test can import it too.
"""

from __future__ import annotations

import torch
from torch import nn


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def make_batches(n: int = 88, batch_size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` examples in batches of ``batch_size`` (the last one shorter), in a fixed order."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


def make_directions(m: int, k: int = 3, seed: int = 1) -> torch.Tensor:
    """``k`` orthonormal rows in R^m."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    return q.T.contiguous()


