"""GPU check (issue 14 section 4): what a machine with CUDA runs in under 5 minutes, as ratios to the CPU.

1. The quick study (``StudyConfig.quick()``, reduced) with ``device="cuda"``: it must finish, and its
   certificate, speed and displacement rows are printed beside the same study on the CPU (the verdicts
   should agree; numbers differ in their last bits, since CUDA kernels sum in another order).
2. Tracker overhead: an SGD step with ``TrajectoryTracker.record`` (k = 30 directions) against the plain
   step, on each device (``torch.cuda.synchronize`` inside the clock).
3. Hessian-vector product throughput: a block of 16 products of an MLP 40-256-256-10 on each device.

``python benchmarks/device_check.py`` on a machine without CUDA runs the CPU half and says what it skipped,
so the script itself is exercised by CI-less machines too; the CUDA half has not run in this project's CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from sgd_dynamics.experiments.study import StudyConfig, run_study
from sgd_dynamics.measure import HessianOperator, TrajectoryTracker


def _timed(fn, device: str, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _mlp(device: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    x = torch.randn(512, 40, generator=g)
    y = torch.randint(0, 10, (512,), generator=g)
    return model.to(device), x.to(device), y.to(device)


def tracker_overhead(device: str, k: int = 30, repeats: int = 50) -> float:
    """Step time with the tracker recording every step over the plain step's."""
    model, x, y = _mlp(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    m = sum(p.numel() for p in model.parameters())
    tracker = TrajectoryTracker(model, opt, directions=torch.linalg.qr(torch.randn(m, k))[0].T.to(device))
    batch = (x[:128], y[:128])

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(batch[0]), batch[1]).backward()
        opt.step()

    def tracked() -> None:
        step()
        tracker.record()

    return _timed(tracked, device, repeats) / _timed(step, device, repeats)


def hvp_seconds(device: str, block: int = 16, repeats: int = 10) -> float:
    """Seconds per Hessian-vector product in blocks of ``block`` vectors."""
    model, x, y = _mlp(device)
    op = HessianOperator(model, nn.functional.cross_entropy, (x, y), block_size=block)
    vectors = torch.randn(op.dim, block, device=device)
    return _timed(lambda: op.matmat(vectors), device, repeats) / block


def quick_study(device: str, out: Path) -> dict:
    config = dataclasses.replace(StudyConfig.quick(), device=device)
    run_study(config, out, progress=False, log=lambda s: None)
    summary = json.loads((out / "summary.json").read_text())
    return {"stationary": summary["stationarity"]["stationary"], "counts": summary["counts"],
            "rows": {r["quantity"]: (r["verdict"], r["relative_error"]) for r in summary["rows"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-study", action="store_true", help="only the tracker and HVP ratios")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        print("no CUDA device: the CPU half only (the GPU ratios need a machine with CUDA)")
    for device in devices:
        ratio = tracker_overhead(device)
        print(f"{device}: tracker overhead at k = 30, every step: {ratio:.2f}x the plain step")
    hvp = {d: hvp_seconds(d) for d in devices}
    for d, s in hvp.items():
        print(f"{d}: {1e3 * s:.2f} ms per Hessian-vector product (blocks of 16, MLP 40-256-256-10, "
              "512 examples)")
    if "cuda" in hvp:
        print(f"HVP throughput GPU / CPU: {hvp['cpu'] / hvp['cuda']:.1f}x")
    if args.skip_study:
        return
    with tempfile.TemporaryDirectory() as tmp:
        studies = {d: quick_study(d, Path(tmp) / d) for d in devices}
    for d, s in studies.items():
        print(f"{d}: quick study stationary={s['stationary']} counts={s['counts']}")
    if "cuda" in studies:
        cpu, gpu = studies["cpu"]["rows"], studies["cuda"]["rows"]
        differ = [q for q in cpu if q in gpu and cpu[q][0] != gpu[q][0]]
        print(f"verdicts that differ between CPU and GPU: {len(differ)} of {len(cpu)} {differ[:5]}")


if __name__ == "__main__":
    main()
