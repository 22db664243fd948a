"""Settling ``theta*`` at the resume hyperparameters until it is certified stationary (issue 11 section 1).

After the anneal the study trains at the default point in windows of ``settle_steps`` steps, each cut into
``settle_observations`` sub-windows; at the end of every sub-window it records one value of each monitored
series (:data:`SERIES`):

- ``loss``: the mean training loss on a fixed seeded subset of ``monitor_examples`` examples (eval mode);
- ``theta_sq_norm``: ``||theta||^2``;
- ``trace_sigma``: ``tr(Sigma)`` of the per-example gradients on the same subset (002 eq. 3);
- ``top_eigenvalue``: ``rho_1`` of the Hessian of the subset's mean loss (``k = 1``, relative tolerance
  ``1e-2``: a trend test needs far less than the study's eigenpairs).

One value per sub-window gives each window ``settle_observations`` observations, so the batch-means test of
:mod:`sgd_dynamics.estimation.stationarity` takes them as independent (one per batch; at least 3 needed,
10 by default). :func:`sgd_dynamics.estimation.stationarity.settle_until_stationary` stops after the first
window whose certificate (last two windows) holds, or after ``settle_windows_max`` windows; a run that
never certifies still goes on, and its rows are marked ``not_stationary``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sgd_dynamics.estimation.stationarity import settle_until_stationary
from sgd_dynamics.store import read_arrays, write_arrays, write_atomic

__all__ = ["SERIES", "SettleRecord", "load_settle", "monitor_subset", "monitored_values", "save_settle",
           "settle_until_certified"]

SERIES = ("loss", "theta_sq_norm", "trace_sigma", "top_eigenvalue")
_EIGEN_TOL = 1e-2


@dataclass(frozen=True)
class SettleRecord:
    """What the settle loop recorded: every observation, the window it belongs to, and the certificate."""

    series: dict[str, np.ndarray]     # name -> (windows * observations,)
    window: np.ndarray                # window index of each observation
    step: np.ndarray                  # settle step at which each observation was taken
    certificate: dict                 # StationarityCertificate.to_json() of the last two windows

    @property
    def stationary(self) -> bool:
        """Whether the last two windows were certified stationary."""
        return bool(self.certificate["stationary"])


def monitor_subset(x: torch.Tensor, y: torch.Tensor, size: int, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed seeded subset of ``min(size, N)`` training examples (the same at every observation)."""
    n = len(x)
    if size >= n:
        return x, y
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:size]
    return x[idx], y[idx]


def monitored_values(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, seed: int
                     ) -> dict[str, float]:
    """One observation of every monitored series at the model's current parameters."""
    from sgd_dynamics.measure import gradient_noise, hessian_eigenpairs

    batches = [(x, y)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = float(loss_fn(model(x), y))
        sq_norm = float(sum(p.detach().double().square().sum() for p in model.parameters()))
    noise = gradient_noise(model, loss_fn, batches, chunk_size=250)
    eig = hessian_eigenpairs(model, loss_fn, batches, k=1, tol=_EIGEN_TOL, seed=seed)
    model.train(was_training)
    return {"loss": loss, "theta_sq_norm": sq_norm, "trace_sigma": float(noise.trace),
            "top_eigenvalue": float(eig.eigenvalues[0])}


def settle_until_certified(train_steps: Callable[[int], None], observe: Callable[[], dict[str, float]], *,
                           window_steps: int, observations: int, max_windows: int) -> SettleRecord:
    """Settle in windows of ``window_steps`` steps until certified or ``max_windows`` (module docstring).

    ``train_steps(n)`` runs ``n`` more steps (the optimizer keeps its state between calls); ``observe()``
    returns one value per series of :data:`SERIES`. Sub-window ``j`` of a window ends at step
    ``round((j + 1) window_steps / observations)`` of it.
    """
    values: dict[str, list[float]] = {name: [] for name in SERIES}
    windows: list[int] = []
    steps: list[int] = []
    bounds = [round((j + 1) * window_steps / observations) for j in range(observations)]

    def run_window(i: int) -> dict[str, np.ndarray]:
        done = 0
        for end in bounds:
            train_steps(end - done)
            done = end
            for name, v in observe().items():
                values[name].append(v)
            windows.append(i)
            steps.append(i * window_steps + end)
        return {name: np.asarray(v[-observations:]) for name, v in values.items()}

    result = settle_until_stationary(run_window, max_windows=max_windows)
    certificate = result.certificate.to_json() if result.certificate is not None else \
        {"stationary": False, "criteria": []}
    return SettleRecord({k: np.asarray(v, np.float64) for k, v in values.items()},
                        np.asarray(windows, np.int64), np.asarray(steps, np.int64), certificate)


def _settle_path(run_dir: Path | str, key: str) -> Path:
    return Path(run_dir) / "pretrain" / f"settle_{key}.h5"


def save_settle(run_dir: Path | str, key: str, record: SettleRecord) -> None:
    """Store the series (``pretrain/settle_<key>.h5``) and the certificate (``.json`` beside it)."""
    path = _settle_path(run_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_arrays(path, {**record.series, "window": record.window, "step": record.step})
    write_atomic(path.with_suffix(".json"), json.dumps(record.certificate, indent=1).encode())


def load_settle(run_dir: Path | str, key: str) -> dict[str, Any] | None:
    """``{"series": {name: values}, "window", "step", "certificate"}`` (:func:`save_settle`), or None."""
    path = _settle_path(run_dir, key)
    if not path.exists():
        return None
    arrays = read_arrays(path)
    return {"series": {name: arrays[name] for name in SERIES}, "window": arrays["window"],
            "step": arrays["step"], "certificate": json.loads(path.with_suffix(".json").read_text())}
