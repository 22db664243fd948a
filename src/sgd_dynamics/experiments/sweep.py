"""One sweep point of the study: resume training from ``theta*`` with given hyperparameters and track it.

A point is a pure function of its :class:`SweepPoint` (and the study's shared :class:`StudyContext`:
data, model builder, ``theta*`` and the Hessian directions). It writes ``result.h5`` (HDF5, layout in
:func:`sgd_dynamics.store.write_arrays`) and ``point.json`` into its own directory, ``result.h5`` last and
atomically; a directory with ``result.h5`` is finished and is never recomputed. A point whose loss becomes
non-finite is recorded as diverged (``diverged.json``: the step and the loss) and is not recomputed either;
the study goes on without it. Interrupting a point loses only that point.

Recorded per step: ``||delta_k||^2``, ``||Delta_k||^2 = ||theta_k - theta*||^2``, the projections of
``theta_k - theta*`` and ``v_k`` on the top Hessian eigenvectors, the loss. At ``noise_snapshots`` steps
evenly spread over the measurement window ``(burn_in, steps]``, ``tr(Sigma)`` and ``s_i`` are measured at
the current parameters: the speed prediction of ERRATA 002.3 needs ``Sigma`` where the speed is measured.
They are the noise of the point's own training step (:func:`sgd_dynamics.measure.step_noise`): the
eval-mode per-example ``Sigma``, or, for a model with Dropout or BatchNorm (``noise_estimator="auto"``), the
train-mode ``S Cov(g_B)`` of ``noise_minibatches`` minibatches of the point's batch size drawn with
replacement (``noise_trace_se``: its jackknife standard error); ``noise_estimator`` records which.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sgd_dynamics._validation import require
from sgd_dynamics.experiments.training import cross_entropy, make_optimizer, minibatch_indices, train
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure import (
    NOISE_ESTIMATORS,
    TrajectoryTracker,
    resolve_noise_estimator,
    seeded_torch_rng,
    step_noise,
)
from sgd_dynamics.store import read_arrays, write_arrays, write_json

__all__ = ["Divergence", "StudyContext", "SweepPoint", "load_divergence", "load_point", "point_status",
           "run_point", "warm_up"]


@dataclass(frozen=True)
class SweepPoint:
    """Hyperparameters and measurement lengths of one resumed run."""

    lr: float
    momentum: float
    batch_size: int
    weight_decay: float
    sampler: str
    steps: int
    burn_in: int
    noise_snapshots: int
    seed: int
    noise_estimator: str = "auto"
    noise_minibatches: int = 256

    def __post_init__(self) -> None:
        require(isinstance(self.steps, int) and self.steps >= 10, "steps", self.steps, "an integer >= 10")
        require(isinstance(self.burn_in, int) and 0 <= self.burn_in < self.steps - 1,
                'burn_in', self.burn_in, "an integer in [0, steps - 1)")
        require(isinstance(self.noise_snapshots, int) and self.noise_snapshots >= 1,
                'noise_snapshots', self.noise_snapshots, "an integer >= 1")
        require(self.noise_estimator in NOISE_ESTIMATORS, "noise_estimator", self.noise_estimator,
                f"one of {', '.join(NOISE_ESTIMATORS)}")
        require(isinstance(self.noise_minibatches, int) and self.noise_minibatches >= 4,
                "noise_minibatches", self.noise_minibatches, "an integer >= 4")

    def hyper(self, dataset_size: int) -> Hyperparams:
        """The validated :class:`Hyperparams` of this point."""
        return Hyperparams(
            lr=self.lr,
            momentum=self.momentum,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            dataset_size=dataset_size,
            sampler=self.sampler,
        )

    @property
    def key(self) -> str:
        """A stable short hash of every field."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    @property
    def name(self) -> str:
        """Readable, unique directory name."""
        short = "wr" if self.sampler == "with_replacement" else "wor"
        return f"lr{self.lr:g}_m{self.momentum:g}_S{self.batch_size}_{short}_{self.key}"

    def noise_steps(self) -> np.ndarray:
        """Steps (1-based, after the step) at which ``Sigma`` is measured: evenly spread over the window."""
        j = np.arange(1, self.noise_snapshots + 1)
        return (self.burn_in + np.round(j * (self.steps - self.burn_in) / self.noise_snapshots)).astype(
            np.int64
        )


@dataclass(frozen=True)
class StudyContext:
    """What every point shares.

    Data, model factory, loss, ``theta*`` and the Hessian directions ``(k, m)``.
    """

    x: Tensor
    y: Tensor
    build_model: Any  # () -> nn.Module with the architecture of theta*
    loss_fn: Any
    theta_star: dict[str, Tensor]  # state_dict (parameters and buffers)
    directions: Tensor  # (k, m), rows q_i, in the dtype and on the device of the model


@dataclass(frozen=True)
class Divergence:
    """Where a sweep point diverged: the first step with a non-finite loss, and that loss."""

    step: int
    loss: float


class _Diverged(Exception):
    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"diverged at step {step}: loss={loss:.3g}")
        self.divergence = Divergence(int(step), float(loss))


def point_status(directory: Path | str) -> str | None:
    """``"finished"``, ``"diverged"`` or ``None`` (not run, or interrupted)."""
    directory = Path(directory)
    if (directory / "result.h5").exists():
        return "finished"
    return "diverged" if (directory / "diverged.json").exists() else None


def load_divergence(directory: Path | str) -> tuple[SweepPoint, Divergence]:
    """The configuration of a diverged point and where it diverged."""
    directory = Path(directory)
    point = SweepPoint(**json.loads((directory / "point.json").read_text()))
    record = json.loads((directory / "diverged.json").read_text())
    return point, Divergence(int(record["step"]), float(record["loss"]))


def _model_at_theta_star(ctx: StudyContext) -> nn.Module:
    model = ctx.build_model()
    model.load_state_dict(ctx.theta_star)
    return model


def run_point(point: SweepPoint, ctx: StudyContext, directory: Path | str) -> Path:
    """Run (or skip, when finished or diverged) one sweep point; returns the path of its record.

    That is ``result.h5``, or ``diverged.json`` when the loss became non-finite.
    """
    directory = Path(directory)
    status = point_status(directory)
    if status is not None:
        return directory / ("result.h5" if status == "finished" else "diverged.json")
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "point.json", asdict(point))
    try:
        arrays = _train_and_track(point, ctx)
    except _Diverged as exc:
        d = exc.divergence  # a non-finite loss as its name ("nan", "inf"): JSON has no such numbers
        write_json(directory / "diverged.json", {"step": d.step, "loss": d.loss if np.isfinite(d.loss)
                                                 else str(d.loss)})
        return directory / "diverged.json"
    return write_arrays(directory / "result.h5", arrays)  # atomic: result.h5 exists only when complete


def _train_and_track(point: SweepPoint, ctx: StudyContext) -> dict[str, np.ndarray]:
    """Resumed training from ``theta*`` with the point's hyperparameters; the tracked arrays."""
    hyper = point.hyper(len(ctx.x))
    model = _model_at_theta_star(ctx)
    optimizer = make_optimizer(model, hyper)
    tracker = TrajectoryTracker(model, optimizer, directions=ctx.directions)
    batches = minibatch_indices(len(ctx.x), point.batch_size, point.sampler, point.seed)
    noise_at = {int(s): i for i, s in enumerate(point.noise_steps())}
    k = ctx.directions.shape[0]
    noise_trace, noise_trace_se = np.full(len(noise_at), np.nan), np.full(len(noise_at), np.nan)
    noise_modes = np.full((len(noise_at), k), np.nan)
    q = ctx.directions.T.double()
    estimator = resolve_noise_estimator(model, point.noise_estimator)   # the module types, detected once

    def on_step(step: int, loss: float) -> None:
        if not np.isfinite(loss):
            raise _Diverged(step, loss)
        tracker.record(loss=loss)
        if step in noise_at:
            noise = step_noise(model, ctx.loss_fn, ctx.x, ctx.y, point.batch_size, q, estimator=estimator,
                               num_minibatches=point.noise_minibatches, seed=point.seed + step)
            noise_trace[noise_at[step]], noise_trace_se[noise_at[step]] = noise.trace, noise.trace_se
            noise_modes[noise_at[step]] = noise.mode_noise
            model.train()

    with seeded_torch_rng(point.seed, ctx.x.device):   # Dropout masks from the point's seed, not the past
        train(model, optimizer, ctx.x, ctx.y, ctx.loss_fn, point.steps, batches, on_step=on_step)
    h = tracker.history
    return {
        "steps": np.asarray(h["step"], np.int64) if "step" in h else np.arange(1, point.steps + 1),
        "local_sq_displacement": np.asarray(h["local_sq_displacement"], np.float64),
        "global_sq_displacement": np.asarray(h["global_sq_displacement"], np.float64),
        "position_projection": np.asarray(h["position_projection"], np.float32),
        "velocity_projection": np.asarray(h["velocity_projection"], np.float32),
        "loss": np.asarray(h["loss"], np.float64) if "loss" in h else np.full(point.steps, np.nan),
        "noise_steps": point.noise_steps(),
        "noise_trace": noise_trace,
        "noise_modes": noise_modes,
        "noise_trace_se": noise_trace_se,
        "noise_estimator": np.asarray(estimator),
    }


def _tiny_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def warm_up() -> None:
    """Run a tiny point in memory, so that this process's next point runs at full speed.

    A process's first point pays one-off costs, about 3 s on one core: importing ``torch._dynamo`` (the
    first optimizer step), ``torch.func`` (the first gradient-noise snapshot) and loading the tracker's
    compiled kernel. A worker started ahead of the sweep pays them while the study's earlier stages run.
    """
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, generator=gen), torch.randint(0, 2, (16,), generator=gen)
    with seeded_torch_rng(0, x.device):   # the process's own generators stay as they were
        model = _tiny_model()
        m = sum(p.numel() for p in model.parameters())
        ctx = StudyContext(x, y, _tiny_model, cross_entropy, model.state_dict(), torch.ones(1, m) / m ** 0.5)
        point = SweepPoint(lr=0.01, momentum=0.9, batch_size=4, weight_decay=0.0, sampler="with_replacement",
                           steps=10, burn_in=1, noise_snapshots=1, seed=0, noise_minibatches=4)
        _train_and_track(point, ctx)


def load_point(directory: Path | str) -> tuple[SweepPoint, dict[str, np.ndarray]]:
    """The configuration and arrays of a finished point."""
    directory = Path(directory)
    point = SweepPoint(**json.loads((directory / "point.json").read_text()))
    return point, read_arrays(directory / "result.h5")
