"""Benchmark of sgd_dynamics.measure.replicas: R = 4 batched replicas against 4 sequential torch.optim.SGD
runs and against 1 run.

The demo's network and data: MLP 40-256-256-10 (``experiments.models.mlp``) on MNIST-1D
(``experiments.datasets``, generated offline), batch 128, float32, SGD lr 0.05, momentum 0.9, weight decay
5e-4, minibatches drawn with replacement. Every variant steps on the same precomputed index streams; rounds
of ``steps`` steps are interleaved between variants and the median time per step is reported, with ratios
against the single run measured in the same process. Variants:

- ``1 run``: one torch.optim.SGD run (``model(x[idx])``, ``backward``, ``step``);
- ``4 sequential``: four such runs, one after another;
- ``4 batched``: ``ReplicaSGD.step`` on the stacked (4, m) parameters (one vmapped forward/backward);
- ``4 batched, log records``: ``run_replicas`` with its default schedule (every step up to ~20, then 20
  per decade: 40 of the 320 steps here, 26 of them in the untimed warm-up round) recording the Gram
  matrix, speeds, losses and 20 projections;
- ``4 batched, every-step records``: the same records at every step (the worst case).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_replicas.py`` (about a minute on one CPU thread;
``BENCH_THREADS=n`` for more, ``BENCH_DEVICE=cuda`` on a GPU).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from sgd_dynamics.experiments.datasets import load_dataset
from sgd_dynamics.experiments.models import build_model
from sgd_dynamics.experiments.training import cross_entropy
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure.replicas import RECORD_SCHEDULE, ReplicaSGD, init_replicas, run_replicas

R, BATCH, ROUNDS, STEPS = 4, 128, 7, 40


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
    data = load_dataset("mnist1d")
    x = torch.as_tensor(data.x_train, device=device)
    y = torch.as_tensor(data.y_train, device=device)
    hyper = Hyperparams(lr=0.05, momentum=0.9, batch_size=BATCH, weight_decay=5e-4, dataset_size=len(x))
    gen = torch.Generator().manual_seed(0)
    total = (ROUNDS + 1) * STEPS
    idx = torch.randint(0, len(x), (total, R, BATCH), generator=gen).to(device)   # (step, replica, S)

    def model():
        return build_model("mlp", data.input_shape, data.num_classes, seed=0).to(device)

    singles = [model() for _ in range(R)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=hyper.lr, momentum=hyper.momentum,
                                  weight_decay=hyper.weight_decay) for m in singles]
    m = sum(p.numel() for p in singles[0].parameters())
    batched_model = model()
    sgd, state = ReplicaSGD(batched_model, cross_entropy, hyper), init_replicas(batched_model, R)
    directions = torch.linalg.qr(torch.randn(m, 20, generator=gen))[0].T.contiguous().to(device)
    recorded_state, logged_state = init_replicas(batched_model, R), init_replicas(batched_model, R)

    def plain_steps(replicas: int, block: slice) -> None:
        for k in range(block.start, block.stop):
            for r in range(replicas):
                opt, net = optimizers[r], singles[r]
                opt.zero_grad(set_to_none=True)
                cross_entropy(net(x[idx[k, r]]), y[idx[k, r]]).backward()
                opt.step()

    def batched_steps(block: slice) -> None:
        batched_model.train()
        for k in range(block.start, block.stop):
            sgd.step(state, x[idx[k]], y[idx[k]])

    def recorded_steps(block: slice, schedule, state) -> None:
        streams = [iter(idx[block, r]) for r in range(R)]
        run_replicas(batched_model, cross_entropy, x, y, hyper, block.stop - block.start, streams,
                     directions=directions, schedule=schedule, state=state)

    variants = {"1 run": lambda b: plain_steps(1, b), f"{R} sequential": lambda b: plain_steps(R, b),
                f"{R} batched": batched_steps,
                f"{R} batched, log records": lambda b: recorded_steps(b, RECORD_SCHEDULE, logged_state),
                f"{R} batched, every-step records": lambda b: recorded_steps(b, None, recorded_state)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(ROUNDS + 1):
        block = slice(r * STEPS, (r + 1) * STEPS)
        for name, run in variants.items():
            sync(device)
            t0 = time.perf_counter()
            run(block)
            sync(device)
            if r > 0:                       # round 0 warms up (vmap tracing, allocator)
                times[name].append((time.perf_counter() - t0) / STEPS)
    median = {name: float(np.median(t)) for name, t in times.items()}
    one, sequential = median["1 run"], median[f"{R} sequential"]
    print(f"replicas (MLP 40-256-256-10, m={m}, MNIST-1D, batch {BATCH}, float32, momentum 0.9, "
          f"device {device}, torch threads={torch.get_num_threads()}, {ROUNDS} interleaved rounds x {STEPS} "
          "steps, median per step)")
    for name, t in median.items():
        print(f"  {name:<30s}: {t * 1e3:7.3f} ms/step   vs 1 run {t / one:5.2f}   "
              f"vs {R} sequential {t / sequential:5.2f}")


if __name__ == "__main__":
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        main()
