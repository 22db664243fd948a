"""Shared pieces of the benchmarks against the peer libraries (issue 15): the problem, the peers, timing.

The problem: MNIST-1D (generated offline by the ``mnist1d`` package, as ``experiments.datasets`` does), an MLP
40-256-256-10, cross-entropy. The peers are the real packages of the ``bench`` extra (``make bench`` installs
them), imported here so that a missing one names the extra. Timings are medians of interleaved repeats
(every contender once per round), and every comparison prints ``ratio = peer time / project time``: above 1
the project is faster.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator

import torch
from goals import goal_line, note_line  # noqa: F401 - the peer benchmarks' goal lines
from mnist1d.data import get_dataset_args, make_dataset
from torch import nn

LOSS = nn.functional.cross_entropy


def mnist1d() -> tuple[torch.Tensor, torch.Tensor]:
    args = get_dataset_args()
    args.seed = 0
    data = make_dataset(args)
    return torch.as_tensor(data["x"], dtype=torch.float32), torch.as_tensor(data["y"], dtype=torch.long)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def trained_float64_mlp(x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> nn.Module:
    """The MLP in float64 after ``steps`` SGD steps: away from initialisation the spectrum has outliers."""
    model = mlp().double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    xd = x.double()
    for _ in range(steps):
        i = torch.randint(0, len(x), (128,), generator=g)
        opt.zero_grad()
        LOSS(model(xd[i]), y[i]).backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model


def peer(module: str) -> types.ModuleType:
    """Import a peer package of the ``bench`` extra, or exit saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        sys.exit(f"{module} is missing ({error}): install the peers with `make bench` "
                 "(pip install -c constraints.txt -e '.[bench]')")


def cockpit() -> types.ModuleType:
    """``cockpit`` (cockpit-for-pytorch 1.0.2) imports ``pkg_resources`` only for its version string.

    setuptools >= 81, which the lock pins, no longer ships ``pkg_resources``; a two-name stand-in backed by
    ``importlib.metadata`` lets the real Cockpit import without changing a pin.
    """
    if "pkg_resources" not in sys.modules:
        with contextlib.suppress(ImportError):
            import pkg_resources  # noqa: F401
    if "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")
        shim.DistributionNotFound = importlib.metadata.PackageNotFoundError
        shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim
    return peer("cockpit")


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """PyHessian draws its vectors with ``torch.randn(shape)``: in the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int
                ) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time of each contender over ``rounds`` rounds (each runs once per round, in turn).

    Returns the medians and each contender's last result.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    results: dict[str, object] = {}
    for r in range(rounds):
        names = list(contenders) if r % 2 == 0 else list(contenders)[::-1]   # no fixed position in a round
        for name in names:
            t0 = time.perf_counter()
            results[name] = contenders[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, results
