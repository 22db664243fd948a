"""Where the demo's sweep stage spends its time: cProfile of ``run_sweep`` on a few demo points.

The demo configuration (digits, MLP 2x128, cross-entropy) with its own steps and noise snapshots, from an
untrained ``theta*`` and random orthonormal directions (the cost of a point does not depend on either), on
``--points`` of its sweep points. Prints the wall time per point and the functions that take the most
cumulative time, among them the SGD steps (``train``), the tracker and ``gradient_noise``.

    PYTHONPATH=src python benchmarks/profile_sweep.py --points 3
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sgd_dynamics.experiments.setup import prepare
from sgd_dynamics.experiments.study import run_sweep, sweep_points
from sgd_dynamics.experiments.study_config import StudyConfig
from sgd_dynamics.experiments.training import full_batches
from sgd_dynamics.measure import gradient_noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=3, help="sweep points profiled (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = StudyConfig.demo()
    setup = prepare(config)
    model = setup.build_model()
    m = sum(p.numel() for p in model.parameters())
    directions = np.linalg.qr(np.random.default_rng(0).standard_normal((m, config.num_eigenpairs)))[0]
    points = sweep_points(config)[: args.points]
    # one-off imports (torch._dynamo by the first optimizer, torch.func by the first gradient_noise) are
    # paid by the pretraining stage of the demo, before its sweep: paid here before the profile too
    torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gradient_noise(model, setup.loss_fn, full_batches(setup.x[:64], setup.y[:64]), directions[:, :2])
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        profile.runcall(run_sweep, config, setup, model.state_dict(), directions, Path(tmp), progress=False,
                        points=points)
        wall = time.perf_counter() - start
    print(f"{len(points)} of {len(sweep_points(config))} demo sweep points, {config.steps} steps and "
          f"{config.noise_snapshots} noise snapshots each: {wall:.2f} s, "
          f"{wall / len(points):.2f} s per point")
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
    stats.print_stats(r"sgd_dynamics|torch/optim|autograd/__init__", 25)
    print(out.getvalue())


if __name__ == "__main__":
    main()
