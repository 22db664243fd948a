"""Benchmark of the sweep executors (issue 14): 2 local worker processes against 1, in the same run.

The tiny study's setup (teacher data, MLP 16) with a sweep of 8 points (2 lrs x 2 momenta x 2 samplers) of
``--steps`` steps each, resumed from the initialisation with random orthonormal directions, on
``--executor local:1`` and ``local:2`` (spawned processes, one torch thread each). Each pool is started and
warmed (torch imported, one point run) outside the clock, so the ratio is the sweep's own speed-up; on
2 free cores it approaches 2. Both runs must give the same arrays bit for bit, which is checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sgd_dynamics.experiments.executors import open_executor
from sgd_dynamics.experiments.study import StudyConfig, prepare, run_sweep, sweep_points
from sgd_dynamics.store import read_arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps per sweep point")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = dataclasses.replace(StudyConfig.quick(), lrs=(0.005, 0.01), momenta=(0.0, 0.9),
                                 samplers=("with_replacement", "without_replacement"), steps=args.steps)
    setup = prepare(config)
    theta_star = {k: v.detach().clone() for k, v in setup.build_model().state_dict().items()}
    m = sum(v.numel() for v in theta_star.values())
    directions = np.linalg.qr(np.random.default_rng(0).standard_normal((m, 3)))[0].astype(np.float32)
    points = sweep_points(config)
    warm = [dataclasses.replace(points[0], seed=points[0].seed + 1000 + i) for i in range(2)]
    seconds, arrays = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            with open_executor(f"local:{workers}") as pool:
                # submitted together, so that every worker is spawned, imports torch and runs once
                run_sweep(config, setup, theta_star, directions, Path(tmp) / f"warm{workers}", pool,
                          progress=False, points=warm[:workers])
                start = time.perf_counter()
                dirs = run_sweep(config, setup, theta_star, directions, Path(tmp) / f"run{workers}", pool,
                                 progress=False, points=points)
                seconds[workers] = time.perf_counter() - start
            arrays[workers] = [read_arrays(d / "result.h5") for d in dirs]
    same = all(np.array_equal(a[k], b[k]) for a, b in zip(arrays[1], arrays[2], strict=True) for k in a)
    print(f"sweep of {len(points)} points x {args.steps} steps: local:1 {seconds[1]:.1f} s, "
          f"local:2 {seconds[2]:.1f} s")
    print(f"speed-up of 2 workers over 1: {seconds[1] / seconds[2]:.2f}x (same arrays bit for bit: {same})")


if __name__ == "__main__":
    main()
