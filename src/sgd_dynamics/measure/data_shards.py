"""Sums over data shards held by the ranks of a ``torch.distributed`` process group.

Under data parallelism every rank holds the same parameters and its own shard of the examples. A
measurement over the union of the shards (the full-batch loss of 002 sec. 2 and its Hessian, the
per-example gradient covariance of 002 eq. 3) is then a sum over shards of per-shard sums weighted by
example counts, so each rank all-reduces its sums and every rank obtains the value over the union.
``process_group=None`` means a single process: no communication at all. To reduce over every rank pass
``torch.distributed.group.WORLD``.

All ranks must make the same sequence of calls (the collectives are matched by order): every measurement
that takes ``process_group`` does, because its sweeps and iterations do not depend on the shard.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sgd_dynamics._validation import require


def check_process_group(process_group: Any) -> None:
    """``ValueError`` unless ``process_group`` is ``None`` or a group of an initialised process group."""
    if process_group is None:
        return
    available = torch.distributed.is_available() and torch.distributed.is_initialized()
    require(available, "process_group", process_group,
            "None (one process) or a group of an initialised torch.distributed "
            "(call torch.distributed.init_process_group first)")


def all_reduce_sum(tensor: Tensor, process_group: Any) -> Tensor:
    """``tensor`` summed over the ranks of ``process_group`` (in place; unchanged for ``None``)."""
    if process_group is not None:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM, group=process_group)
    return tensor
