"""The demo's sweep run by whichever ``sgd_dynamics`` is first on ``PYTHONPATH``: ``bench_sweep.py``'s before.

``bench_sweep.py`` extracts the source tree of an earlier commit and runs this file on it in a child
process, so the sweep that is timed is that commit's code, on today's configuration, data, ``theta*`` and
directions (passed as files). It uses only names that existed then (``StudyConfig.demo``, ``prepare``,
``sweep_points``, ``run_sweep``), runs the points in this process on ``config.threads`` torch threads, as
the demo did then, after one untimed warm-up point (imports, numba's first compile), and prints one JSON
line: the sweep's wall time, the directory of each point's ``result.h5`` and each point's fields.

    PYTHONPATH=<old tree>/src python benchmarks/sweep_at_commit.py THETA.pt DIRECTIONS.npy OUT POINTS
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sgd_dynamics.experiments.setup import prepare
from sgd_dynamics.experiments.study import run_sweep, sweep_points
from sgd_dynamics.experiments.study_config import StudyConfig


def main() -> None:
    theta_path, directions_path, out, count = sys.argv[1:5]
    config = StudyConfig.demo()
    torch.set_num_threads(config.threads)
    setup = prepare(config)
    theta_star = torch.load(theta_path)
    directions = np.load(directions_path)
    points = sweep_points(config)[: int(count)]
    run_sweep(config, setup, theta_star, directions, Path(out) / "warm-up", progress=False, points=points[:1])
    start = time.perf_counter()
    dirs = run_sweep(config, setup, theta_star, directions, Path(out) / "timed", progress=False,
                     points=points)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "points": [str(d) for d in dirs],
                      "fields": [dataclasses.asdict(p) for p in points],
                      "module": str(Path(sys.modules["sgd_dynamics"].__file__).parent)}))


if __name__ == "__main__":
    main()
