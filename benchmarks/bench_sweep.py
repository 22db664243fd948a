"""Benchmark of the demo's sweep stage (issue 15 goal 7): before and after, at equal output, in the same run.

The demo configuration (``StudyConfig.demo()``: digits, MLP 2x128, cross-entropy, 2000 steps and 2 noise
snapshots per point) on its sweep points, from an untrained ``theta*`` with random orthonormal directions
(a point's cost depends on neither):

- before: the code of commit ``BEFORE_COMMIT``, the last before issue 15's work on the sweep (the demo
  already had today's configuration): its source tree is extracted from git into a temporary directory
  and ``sweep_at_commit.py`` runs its sweep in a child process, the points one after another on
  ``config.threads`` = 2 torch threads, as the demo did then (per-example gradient blocks for the noise,
  torch's per-parameter SGD loop, the tracker of wave 1). Without git history this line is skipped;
- the same code as after, run as before (in this process, 2 torch threads): how much of the gain is the
  execution alone (the rest is the cheaper steps, tracker and noise that both runs share);
- after: the demo now, ``sweep_workers = 2`` spawned one-thread processes. The demo starts them (and
  warms them up: imports, ``sweep.warm_up``) when the study starts, so they are ready by the sweep; the
  clock here starts when they are ready, as the demo's sweep stage does, and their start-up time is
  printed on its own (the demo overlaps it with pretraining, on the same cores).

The small network's steps are dispatch-bound, so two threads inside one step are slower than one: the
points are spread over the cores instead. Equal output: a point's arrays depend on the thread count and
on the code (fused vs per-parameter SGD update, summation orders) by rounding only; printed is the largest
relative difference, over the points, of a point's mean displacement speed and mean loss between runs
(float32 arithmetic over 2000 steps). Where the time goes inside a
point: ``benchmarks/profile_sweep.py``.

Run: ``python benchmarks/bench_sweep.py`` (all 22 points, ~3 minutes), ``--quick`` (6 points).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from goals import goal_line, note_line

from sgd_dynamics.experiments.setup import prepare
from sgd_dynamics.experiments.study import run_sweep, sweep_executor, sweep_points
from sgd_dynamics.experiments.study_config import StudyConfig
from sgd_dynamics.store import read_arrays

# the last commit before issue 15 changed the sweep's code (gradient noise, SGD step, tracker, workers)
BEFORE_COMMIT = "28cd134"
REPOSITORY = Path(__file__).resolve().parent.parent


def ready(pool, workers: int) -> None:
    """Wait until ``workers`` distinct worker processes have answered (each after its initialiser)."""
    seen = set()
    while pool is not None and len(seen) < workers:
        seen |= {f.result() for f in [pool.submit(os.getpid) for _ in range(4 * workers)]}


def sweep(config: StudyConfig, setup, theta_star, directions, points) -> tuple[float, float, list[dict]]:
    """Start-up time of the sweep's workers, wall time of the sweep as ``config`` runs it, the arrays."""
    torch.set_num_threads(config.threads)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with sweep_executor(config, None) as pool:
            ready(pool, config.sweep_workers or 0)
            started = time.perf_counter()
            dirs = run_sweep(config, setup, theta_star, directions, Path(tmp), pool, progress=False,
                             points=points)
            wall = time.perf_counter() - started
        return started - start, wall, [read_arrays(d / "result.h5") for d in dirs]


def sweep_at_commit(commit: str, theta_star: dict, directions: np.ndarray, points: list
                    ) -> tuple[float, list[dict]] | str:
    """Wall time and arrays of the sweep of ``commit``'s code (``sweep_at_commit.py``), or why not.

    The child makes the points with that commit's ``sweep_points``: they must be ``points``, field by field.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", commit, "src"],
                                 capture_output=True)
        if archive.returncode != 0:
            return f"commit {commit} is not in this checkout's git history"
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        torch.save(theta_star, tree / "theta.pt")
        np.save(tree / "directions.npy", directions)
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        child = subprocess.run([sys.executable, str(Path(__file__).with_name("sweep_at_commit.py")),
                                str(tree / "theta.pt"), str(tree / "directions.npy"), str(tree / "run"),
                                str(len(points))], env=env, capture_output=True, text=True, cwd=tmp)
        if child.returncode != 0:
            return f"the sweep of commit {commit} failed: {child.stderr.strip().splitlines()[-1:]}"
        record = json.loads(child.stdout.strip().splitlines()[-1])
        if not record["module"].startswith(str(tree)):
            return f"the child imported {record['module']}, not commit {commit}'s tree"
        for then, now in zip(record["fields"], map(dataclasses.asdict, points), strict=True):
            differ = {key: (then[key], now[key]) for key in then.keys() & now.keys() if then[key] != now[key]}
            if differ:   # fields added since (the noise estimator's) are not compared
                return f"commit {commit}'s sweep has other points: (then, now) {differ}"
        return record["seconds"], [read_arrays(Path(d) / "result.h5") for d in record["points"]]


def largest_difference(before: list[dict], after: list[dict], key: str) -> float:
    a = np.array([np.mean(p[key]) for p in before])
    b = np.array([np.mean(p[key]) for p in after])
    return float(np.max(np.abs(a - b) / np.abs(a)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 of the 22 points")
    args = parser.parse_args()
    after_config = StudyConfig.demo()
    before_config = dataclasses.replace(after_config, sweep_workers=None)
    setup = prepare(after_config)
    model = setup.build_model()
    m = sum(p.numel() for p in model.parameters())
    directions = np.linalg.qr(np.random.default_rng(0).standard_normal((m, after_config.num_eigenpairs)))[0]
    points = sweep_points(after_config)[: 6 if args.quick else None]
    old = sweep_at_commit(BEFORE_COMMIT, model.state_dict(), directions, points)
    # one-off imports (torch._dynamo by the first optimizer, numba's first compile by the first tracker)
    # that the demo pays in its earlier stages, before the sweep
    sweep(before_config, setup, model.state_dict(), directions, points[:1])
    _, t_same, same = sweep(before_config, setup, model.state_dict(), directions, points)
    startup, t_after, after = sweep(after_config, setup, model.state_dict(), directions, points)
    print(f"Demo sweep, {len(points)} points x {after_config.steps} steps, after "
          f"({after_config.sweep_workers} one-thread worker processes, started ahead) {t_after:.1f} s; "
          f"the workers' start-up and warm-up {startup:.1f} s (the demo's pretraining runs meanwhile)")
    print(f"  today's code run as before (in process, {before_config.threads} torch threads) {t_same:.1f} s: "
          f"the execution alone {t_same / t_after:.2f}x")
    print(f"  equal output, largest relative difference per point: today's code in process vs after, mean "
          f"local displacement {largest_difference(same, after, 'local_sq_displacement'):.1e}, mean loss "
          f"{largest_difference(same, after, 'loss'):.1e} (thread-count rounding, float32)")
    if isinstance(old, str):
        print(note_line(7, f"before (commit {BEFORE_COMMIT}) not measured: {old}"))
        return
    t_before, before = old
    print(f"  before (commit {BEFORE_COMMIT}, in process, {before_config.threads} torch threads) "
          f"{t_before:.1f} s; equal output vs after: mean local displacement "
          f"{largest_difference(before, after, 'local_sq_displacement'):.1e}, mean loss "
          f"{largest_difference(before, after, 'loss'):.1e} (fused vs per-parameter SGD rounding, float32)")
    print(goal_line(7, f"demo sweep ({len(points)} points), commit {BEFORE_COMMIT} / now", 2.0,
                    t_before / t_after))


if __name__ == "__main__":
    main()
