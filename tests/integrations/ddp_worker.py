"""One rank of the DistributedDataParallel test (run by ``torch.multiprocessing.spawn``; gloo, CPU).

Every rank trains the same float64 network wrapped in DDP on its half of each global batch, records with
two trackers (``record_on="all"`` and the default rank-0 one), then measures ``gradient_noise`` and the
Hessian over its own, deliberately uneven, shard of the data, and saves everything to ``rank<r>.npz``.
"""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from training_setup import make_batches, make_directions, make_net

from sgd_dynamics.measure import HessianOperator, TrajectoryTracker, gradient_noise, hessian_eigenpairs

LOSS = nn.functional.cross_entropy
SHARD_CUT = 37          # rank 0 holds examples [0, 37), rank 1 the other 51: unequal example counts
STEPS_EPOCHS = 2


def probe_block(m: int) -> torch.Tensor:
    return torch.randn(m, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def shard_batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's shard of the data, cut into batches of unequal size."""
    x = torch.cat([b[0] for b in make_batches()])
    y = torch.cat([b[1] for b in make_batches()])
    lo, hi = (0, SHARD_CUT) if rank == 0 else (SHARD_CUT, len(y))
    cuts = [lo, (lo + hi) // 2 - 3, hi]
    return [(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def run(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        net = make_net()
        model = nn.parallel.DistributedDataParallel(net)
        m = sum(p.numel() for p in net.parameters())
        directions = make_directions(m)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        everywhere = TrajectoryTracker(model, opt, directions, record_on="all", block_size=5)
        rank0 = TrajectoryTracker(net, opt, directions)
        for _ in range(STEPS_EPOCHS):
            for x, y in make_batches():          # global batches of 16 (the last of 8): halves per rank
                half = len(y) // world_size
                xs, ys = x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half]
                opt.zero_grad()
                loss = LOSS(model(xs), ys)
                loss.backward()                  # DDP averages the gradients over the ranks
                opt.step()
                mean_loss = loss.detach().clone()
                dist.all_reduce(mean_loss)       # the global batch's loss (equal halves)
                everywhere.record(mean_loss / world_size)
                rank0.record(mean_loss / world_size)
        batches = shard_batches(rank)
        world = dist.group.WORLD
        noise = gradient_noise(net, LOSS, batches, directions=directions.T, chunk_size=16,
                               process_group=world)
        eig = hessian_eigenpairs(net, LOSS, batches, k=3, tol=1e-12, process_group=world)
        hv = HessianOperator(net, LOSS, batches, process_group=world).matmat(probe_block(m))
        history, rank0_history = everywhere.history, rank0.history
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"),
                 **{f"history_{k}": v for k, v in history.items()},
                 rank0_rows=len(rank0_history["step"]), rank0_steps=rank0.step,
                 trace=noise.trace, mode_noise=noise.mode_noise, mean_gradient=noise.mean_gradient,
                 num_examples=noise.num_examples, eigenvalues=eig.eigenvalues, hv=hv.numpy(),
                 theta=torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy())
    finally:
        dist.destroy_process_group()
