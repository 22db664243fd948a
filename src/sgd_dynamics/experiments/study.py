"""The limiting-dynamics study of one network (issue 5; 002 sections 2, 7, 8, Figs. 1-8).

Pipeline, each stage a plain function of :class:`StudyConfig` writing into the run directory:

1. :func:`pretrain` - train to a stationary state, cached by the hash of the fields that define it. The run
   first anneals from ``pretrain_lr`` down to the resume lr, then settles for ``settle_steps`` at the
   resume hyperparameters, so ``theta*`` is a sample of the stationary state the study resumes from.
2. :func:`measure_theta_star` - at ``theta*``: top-k Hessian eigenpairs (negative ones kept), the Hessian
   trace (Hutchinson, with its standard error), ``tr(Sigma)`` and ``s_i = q_i^T Sigma q_i``.
3. :func:`sweep_points` / :func:`run_sweep` - resumed training around the default: every ``lr x momentum``
   pair (the lr and momentum sweeps one at a time are its row and column through the default) and the
   batch sizes at the default lr and momentum, each with both samplers. Every point writes its own
   sub-directory (:mod:`sgd_dynamics.experiments.sweep`) and is handed to an executor.
4. :mod:`sgd_dynamics.experiments.analysis` and :mod:`sgd_dynamics.experiments.companions` turn the stored
   data into predictions vs measurements; :mod:`sgd_dynamics.report.study` draws the report.

A configuration is loaded from TOML (:func:`load_config`); every field has a documented default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sgd_dynamics.experiments.datasets import Dataset, as_dataset, load_dataset
from sgd_dynamics.experiments.entry_points import is_entry_point, resolve_entry_point
from sgd_dynamics.experiments.models import MODELS, build_model
from sgd_dynamics.experiments.sweep import StudyContext, SweepPoint, run_point
from sgd_dynamics.experiments.training import (
    full_batches,
    make_optimizer,
    minibatch_indices,
    resolve_loss,
    train,
)
from sgd_dynamics.hyper import SAMPLERS, Hyperparams
from sgd_dynamics.store import read_arrays, write_arrays

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, shipped as the tomli package
    import tomli as tomllib

__all__ = [
    "Setup",
    "StudyConfig",
    "landscape_slices",
    "load_config",
    "measure_theta_star",
    "prepare",
    "pretrain",
    "run_study",
    "run_sweep",
    "sweep_points",
]


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study. Defaults: the built-in study (MNIST-1D, MLP 2x256, cross-entropy).

    Data, model, loss
        ``dataset`` ("mnist1d", "digits", "teacher" or an entry point ``pkg.mod:fn`` returning a
        :class:`~sgd_dynamics.experiments.datasets.Dataset`, a mapping or a 4-tuple), ``train_size`` (a
        seeded subset of the training set; ``None`` = all), ``model`` ("mlp", "cnn", "resnet", "linear" or an
        entry point ``fn(input_shape, num_classes) -> nn.Module``), ``model_options`` (keyword arguments of
        a built-in model, e.g. ``{hidden = [256, 256]}``), ``loss`` ("cross_entropy", "mse_onehot" or an
        entry point), ``checkpoint`` (a ``state_dict`` file to start from instead of pretraining).
    Pretraining
        ``pretrain_epochs`` annealed from ``pretrain_lr`` (cosine) to ``lr``, then ``settle_steps`` at the
        resume hyperparameters.
    Resumed training (the default point) and sweeps
        ``lr``, ``momentum``, ``batch_size``, ``weight_decay``; ``lrs``, ``momenta``, ``batch_sizes`` (swept
        one at a time around the default; the lr x momentum grid is run in full); ``samplers``; ``steps``
        per point, ``burn_in`` steps excluded from the speed average, ``noise_snapshots`` measurements of
        ``Sigma`` per point.
    Measurements
        ``num_eigenpairs`` (k, top Hessian eigenpairs), ``eigen_tol``, ``trace_matvecs`` (Hutchinson),
        ``slice_points`` (grid of the 2-D loss slices), ``speed_tolerance`` (the pass mark of the speed
        prediction, relative).
    Companions
        ``companions``: any of "linear_regression", "ou", "architectures"; ``architectures`` compared in
        the Fig. 1-style experiment and ``architecture_steps``.
    """

    dataset: str = "mnist1d"
    train_size: int | None = None
    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=lambda: {"hidden": [256, 256]})
    loss: str = "cross_entropy"
    checkpoint: str | None = None
    seed: int = 0
    pretrain_epochs: int = 40
    pretrain_lr: float = 0.05
    settle_steps: int = 2000
    lr: float = 0.005
    momentum: float = 0.9
    batch_size: int = 128
    weight_decay: float = 5e-3
    lrs: tuple[float, ...] = (0.00125, 0.0025, 0.005, 0.01, 0.02)
    momenta: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.95)
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    samplers: tuple[str, ...] = SAMPLERS
    steps: int = 3000
    burn_in: int = 500
    noise_snapshots: int = 3
    num_eigenpairs: int = 30
    eigen_tol: float = 1e-4
    trace_matvecs: int = 30
    slice_points: int = 21
    speed_tolerance: float = 0.05
    companions: tuple[str, ...] = ("linear_regression", "ou", "architectures")
    architectures: tuple[str, ...] = ("mlp", "cnn", "resnet")
    architecture_steps: int = 1500
    threads: int | None = None

    def __post_init__(self) -> None:
        def positive(name: str, integer: bool = False) -> None:
            v = getattr(self, name)
            ok = (isinstance(v, int) and not isinstance(v, bool)) if integer else isinstance(v, (int, float))
            if not ok or not v > 0 or (not integer and not math.isfinite(v)):
                raise ValueError(
                    f"{name}={v!r} is invalid: expected a {'positive integer' if integer else 'number > 0'}"
                )

        for name in ("pretrain_lr", "lr", "eigen_tol", "speed_tolerance"):
            positive(name)
        for name in (
            "batch_size",
            "steps",
            "noise_snapshots",
            "num_eigenpairs",
            "trace_matvecs",
            "slice_points",
            "architecture_steps",
        ):
            positive(name, integer=True)
        if not (isinstance(self.pretrain_epochs, int) and self.pretrain_epochs >= 0):
            raise ValueError(f"pretrain_epochs={self.pretrain_epochs!r} is invalid: expected an integer >= 0")
        if not (isinstance(self.settle_steps, int) and self.settle_steps >= 0):
            raise ValueError(f"settle_steps={self.settle_steps!r} is invalid: expected an integer >= 0")
        if not (isinstance(self.burn_in, int) and 0 <= self.burn_in < self.steps - 1):
            raise ValueError(f"burn_in={self.burn_in!r} is invalid: expected an integer in [0, steps - 1)")
        Hyperparams(
            lr=self.lr, momentum=self.momentum, batch_size=self.batch_size, weight_decay=self.weight_decay
        )
        for lr in self.lrs:
            Hyperparams(lr=lr)
        for m in self.momenta:
            if not (isinstance(m, (int, float)) and 0 <= m < 1):
                raise ValueError(f"momenta contains {m!r}: expected values with 0 <= momentum < 1")
        for s in self.batch_sizes:
            if not (isinstance(s, int) and s >= 1):
                raise ValueError(f"batch_sizes contains {s!r}: expected integers >= 1")
        for s in self.samplers:
            if s not in SAMPLERS:
                raise ValueError(f"samplers contains {s!r}: expected values among {', '.join(SAMPLERS)}")
        for c in self.companions:
            if c not in ("linear_regression", "ou", "architectures"):
                raise ValueError(
                    f"companions contains {c!r}: expected values among linear_regression, ou, architectures"
                )
        for a in self.architectures:
            if a not in MODELS:
                raise ValueError(
                    f"architectures contains {a!r}: expected built-in models among {', '.join(MODELS)}"
                )
        for name in ("dataset", "model", "loss"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(
                    f"{name}={v!r} is invalid: expected a built-in name or 'package.module:function'"
                )

    @classmethod
    def demo(cls, full: bool = False) -> StudyConfig:
        """The built-in study: reduced grids that finish in <= 5 minutes on 2 cores, or ``full`` sweeps."""
        if full:
            return cls()
        return cls(
            pretrain_epochs=25,
            settle_steps=1000,
            lrs=(0.0025, 0.005, 0.01),
            momenta=(0.0, 0.5, 0.9),
            batch_sizes=(64, 128, 256),
            steps=1500,
            burn_in=400,
            noise_snapshots=2,
            num_eigenpairs=10,
            trace_matvecs=10,
            slice_points=13,
            architecture_steps=800,
            threads=2,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return json.loads(json.dumps(asdict(self)))

    def pretrain_key(self) -> str:
        """Hash of the fields that define ``theta*``."""
        fields = (
            "dataset",
            "train_size",
            "model",
            "model_options",
            "loss",
            "checkpoint",
            "seed",
            "pretrain_epochs",
            "pretrain_lr",
            "settle_steps",
            "lr",
            "momentum",
            "batch_size",
            "weight_decay",
        )
        blob = json.dumps({f: getattr(self, f) for f in fields}, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_config(path: Path | str) -> StudyConfig:
    """A :class:`StudyConfig` from a TOML file (top-level keys = field names; unknown keys are an error)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CONFIG={str(path)!r} is not a file: expected a TOML study configuration")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"CONFIG={str(path)!r} is not valid TOML: {exc}") from None
    raw = raw.get("study", raw)
    known = {f.name: f for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"config key {unknown[0]!r} is unknown: expected keys among {', '.join(known)}")
    for name, value in list(raw.items()):
        if isinstance(value, list) and name not in ("model_options",):
            raw[name] = tuple(value)
    return StudyConfig(**raw)


# --- setup ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The resolved data (as tensors), model factory and loss of a configuration."""

    dataset: Dataset
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    build_model: Callable[[], nn.Module]
    loss_fn: Callable

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters ``m``."""
        return sum(p.numel() for p in self.build_model().parameters())


class _ModelFactory:
    """Picklable ``() -> nn.Module`` for a built-in or entry-point model, seeded."""

    def __init__(
        self, name: str, options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, seed: int
    ) -> None:
        self.name, self.options, self.input_shape, self.num_classes, self.seed = (
            name,
            dict(options),
            input_shape,
            num_classes,
            seed,
        )

    def __call__(self) -> nn.Module:
        if self.name in MODELS:
            opts = {k: tuple(v) if isinstance(v, list) else v for k, v in self.options.items()}
            return build_model(self.name, self.input_shape, self.num_classes, self.seed, **opts)
        fn = resolve_entry_point(self.name, "model")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = fn(self.input_shape, self.num_classes, **self.options)
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model={self.name!r} returned {type(model).__name__}: expected a torch.nn.Module"
            )
        return model.float()


def prepare(config: StudyConfig) -> Setup:
    """Resolve the dataset, model and loss of ``config`` (built-in names or entry points)."""
    if is_entry_point(config.dataset):
        fn = resolve_entry_point(config.dataset, "dataset")
        try:
            raw = fn(seed=config.seed)
        except TypeError:
            raw = fn()
        dataset = as_dataset(raw, config.dataset)
    else:
        dataset = load_dataset(config.dataset, seed=config.seed)
    dataset = dataset.subset(config.train_size, seed=config.seed)
    if not (is_entry_point(config.model) or config.model in MODELS):
        raise ValueError(
            f"model={config.model!r} is not built in: expected one of {', '.join(MODELS)} or an "
            "entry point 'package.module:function'"
        )
    options = (
        config.model_options
        if config.model in MODELS or config.model_options != StudyConfig().model_options
        else {}
    )
    if config.model in MODELS and config.model != "mlp" and options == StudyConfig().model_options:
        options = {}
    factory = _ModelFactory(config.model, options, dataset.input_shape, dataset.num_classes, config.seed)
    loss_fn = resolve_loss(config.loss)
    return Setup(
        dataset,
        torch.as_tensor(dataset.x_train),
        torch.as_tensor(dataset.y_train),
        torch.as_tensor(dataset.x_test),
        torch.as_tensor(dataset.y_test),
        factory,
        loss_fn,
    )


# --- stage 1: pretraining -------------------------------------------------------------------------------


def pretrain(
    config: StudyConfig, setup: Setup, run_dir: Path, progress: bool = True
) -> dict[str, torch.Tensor]:
    """``theta*`` (a state_dict).

    Loaded from ``run_dir/pretrain`` when this configuration was trained before.
    """
    cache = Path(run_dir) / "pretrain" / f"theta_star_{config.pretrain_key()}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    model = setup.build_model()
    if config.checkpoint is not None:
        if not Path(config.checkpoint).is_file():
            raise ValueError(f"checkpoint={config.checkpoint!r} is not a file: expected a saved state_dict")
        model.load_state_dict(torch.load(config.checkpoint, weights_only=True))
    n = len(setup.x)
    if config.batch_size > n:
        raise ValueError(f"batch_size={config.batch_size} is invalid: expected <= the {n} training examples")
    anneal = config.pretrain_epochs * (n // config.batch_size)
    total = anneal + config.settle_steps
    hyper = Hyperparams(
        lr=config.lr, momentum=config.momentum, batch_size=config.batch_size, weight_decay=config.weight_decay
    )
    optimizer = make_optimizer(model, hyper)

    def lr_at(k: int) -> float:
        if k > anneal:
            return config.lr
        return config.lr + 0.5 * (config.pretrain_lr - config.lr) * (1 + math.cos(math.pi * (k - 1) / anneal))

    bar = _progress(total, "pretraining", progress)

    def on_step(k: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise FloatingPointError(f"pretraining diverged at step {k}: loss={loss:.3g}; lower pretrain_lr")
        bar.update(1)

    batches = minibatch_indices(n, config.batch_size, "without_replacement", config.seed)
    train(model, optimizer, setup.x, setup.y, setup.loss_fn, total, batches, on_step=on_step, lr_at=lr_at)
    bar.close()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, cache)
    return state


# --- stage 2: measurements at theta* --------------------------------------------------------------------


def measure_theta_star(
    config: StudyConfig, setup: Setup, theta_star: dict[str, torch.Tensor], run_dir: Path
) -> dict[str, np.ndarray]:
    """Hessian eigenpairs and trace, ``tr(Sigma)``, ``s_i``, losses and accuracies at ``theta*`` (cached)."""
    from sgd_dynamics.measure import gradient_noise, hessian_eigenpairs, hessian_trace

    path = Path(run_dir) / "theta_star.h5"
    if path.exists():
        return read_arrays(path)
    model = setup.build_model()
    model.load_state_dict(theta_star)
    data = full_batches(setup.x, setup.y)
    m = sum(p.numel() for p in model.parameters())
    k = min(config.num_eigenpairs, m - 1)
    t0 = time.perf_counter()
    eig = hessian_eigenpairs(model, setup.loss_fn, data, k=k, tol=config.eigen_tol, seed=config.seed)
    t_eig = time.perf_counter() - t0
    trace = hessian_trace(model, setup.loss_fn, data, num_matvecs=config.trace_matvecs, seed=config.seed)
    noise = gradient_noise(model, setup.loss_fn, data, directions=eig.eigenvectors, chunk_size=250)
    model.eval()
    with torch.no_grad():
        out, out_test = model(setup.x), model(setup.x_test)
        losses = [float(setup.loss_fn(out, setup.y)), float(setup.loss_fn(out_test, setup.y_test))]
        acc = [_accuracy(out, setup.y), _accuracy(out_test, setup.y_test)]
    arrays = {
        "eigenvalues": np.asarray(eig.eigenvalues, np.float64),
        "eigenvectors": np.asarray(eig.eigenvectors, np.float32),
        "residuals": np.asarray(eig.residuals, np.float64),
        "hvp_count": np.asarray(eig.hvp_count),
        "eigen_seconds": np.asarray(t_eig),
        "hessian_trace": np.asarray(_field(trace, ("estimate", "trace", "value"))),
        "hessian_trace_se": np.asarray(_field(trace, ("standard_error", "stderr", "se"))),
        "trace_sigma": np.asarray(noise.trace),
        "mode_noise": np.asarray(noise.mode_noise, np.float64),
        "gradient_sq_norm": np.asarray(noise.mean_gradient_sq_norm),
        "num_parameters": np.asarray(m),
        "num_examples": np.asarray(len(setup.x)),
        "loss": np.asarray(losses),
        "accuracy": np.asarray(acc),
    }
    write_arrays(path, arrays)
    return arrays


def _field(obj: Any, names: Sequence[str]) -> float:
    for name in names:
        if hasattr(obj, name):
            return float(getattr(obj, name))
    raise AttributeError(f"{type(obj).__name__} has none of the fields {names}")


def _accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    if targets.dtype != torch.int64 or outputs.ndim != 2:
        return float("nan")
    return float((outputs.argmax(1) == targets).float().mean())


# --- stage 3: the sweep ---------------------------------------------------------------------------------


def sweep_points(config: StudyConfig) -> list[SweepPoint]:
    """The sweep around the default: the full lr x momentum grid, then the batch sizes; each sampler."""
    combos: list[tuple[float, float, int]] = []
    lrs = sorted(set(config.lrs) | {config.lr})
    momenta = sorted(set(config.momenta) | {config.momentum})
    for lr in lrs:
        for m in momenta:
            combos.append((lr, m, config.batch_size))
    for s in sorted(set(config.batch_sizes) - {config.batch_size}):
        combos.append((config.lr, config.momentum, s))
    points = []
    for lr, m, s in combos:
        for sampler in config.samplers:
            points.append(
                SweepPoint(
                    lr=float(lr),
                    momentum=float(m),
                    batch_size=int(s),
                    weight_decay=float(config.weight_decay),
                    sampler=sampler,
                    steps=config.steps,
                    burn_in=config.burn_in,
                    noise_snapshots=config.noise_snapshots,
                    seed=config.seed + 1,
                )
            )
    return points


def run_sweep(
    config: StudyConfig,
    setup: Setup,
    theta_star: dict[str, torch.Tensor],
    directions: np.ndarray,
    run_dir: Path,
    executor: Executor | None = None,
    progress: bool = True,
) -> list[Path]:
    """Run every unfinished point (sequentially, or on ``executor``); returns their directories in order."""
    ctx = StudyContext(
        setup.x,
        setup.y,
        setup.build_model,
        setup.loss_fn,
        theta_star,
        torch.as_tensor(np.ascontiguousarray(directions.T), dtype=torch.float32),
    )
    points = sweep_points(config)
    dirs = [Path(run_dir) / "points" / p.name for p in points]
    todo = [(p, d) for p, d in zip(points, dirs, strict=True) if not (d / "result.h5").exists()]
    bar = _progress(len(points), "sweep points", progress, initial=len(points) - len(todo))
    if executor is None:
        for p, d in todo:
            run_point(p, ctx, d)
            bar.update(1)
    else:
        futures = [executor.submit(run_point, p, ctx, d) for p, d in todo]
        for f in futures:
            f.result()
            bar.update(1)
    bar.close()
    return dirs


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, initial=initial, leave=False, mininterval=1.0)


# --- stage 4: landscape slices, analysis, companions; the whole study ------------------------------------


def landscape_slices(
    config: StudyConfig,
    setup: Setup,
    theta_star: dict[str, torch.Tensor],
    theta: dict[str, np.ndarray],
    default_position: np.ndarray,
) -> dict[str, np.ndarray]:
    """Train/test loss on the ``(q_1, q_k)`` plane around ``theta*`` and the modified loss.

    002 Figs. 4, 5.
    """
    from sgd_dynamics.measure.landscape import loss_surface

    model = setup.build_model()
    model.load_state_dict(theta_star)
    q = theta["eigenvectors"]
    k = q.shape[1]
    spread = np.abs(default_position[:, [0, k - 1]]).max(axis=0) * 1.3 + 1e-8
    extent = float(max(spread))  # a square window: anisotropy shows in the contours, not the axes
    grid = np.linspace(-extent, extent, config.slice_points)
    surf = loss_surface(
        model,
        setup.loss_fn,
        full_batches(setup.x, setup.y),
        torch.as_tensor(q[:, 0]),
        torch.as_tensor(q[:, k - 1]),
        grid,
        grid,
        test_batches=full_batches(setup.x_test, setup.y_test),
    )
    return {"grid": grid, "train_loss": surf.train_loss, "test_loss": surf.test_loss}


def run_study(
    config: StudyConfig,
    run_dir: Path | str,
    executor: Executor | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Run (or continue) the whole study in ``run_dir``; returns ``run_dir``.

    Finished stages are not redone.
    """
    from sgd_dynamics.experiments import analysis, companions

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        stored = json.loads(cfg_path.read_text())
        if stored != config.to_dict():
            changed = sorted(
                k for k in stored.keys() | config.to_dict().keys() if stored.get(k) != config.to_dict().get(k)
            )
            raise ValueError(
                f"--out={str(run_dir)!r} holds a study with a different configuration (field "
                f"{changed[0]!r} differs): choose another directory"
            )
    else:
        cfg_path.write_text(json.dumps(config.to_dict(), indent=1))
    if config.threads:
        torch.set_num_threads(config.threads)
    timings_path = run_dir / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        log(f"[{name}]")
        t0 = time.perf_counter()
        result = fn()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        timings_path.write_text(json.dumps(timings, indent=1))
        return result

    setup = prepare(config)
    theta_star = stage("pretrain", lambda: pretrain(config, setup, run_dir, progress))
    theta = stage("theta_star", lambda: measure_theta_star(config, setup, theta_star, run_dir))
    dirs = stage(
        "sweep",
        lambda: run_sweep(config, setup, theta_star, theta["eigenvectors"], run_dir, executor, progress),
    )
    adir = run_dir / "analysis"
    default = {"lr": config.lr, "momentum": config.momentum, "batch_size": config.batch_size,
               "weight_decay": config.weight_decay}
    from sgd_dynamics.experiments.sweep import load_point

    default_dir = next(
        d
        for d in dirs
        if load_point(d)[0].sampler == "with_replacement"
        and (load_point(d)[0].lr, load_point(d)[0].momentum, load_point(d)[0].batch_size)
        == (config.lr, config.momentum, config.batch_size)
    )

    def do_analysis() -> None:
        n = len(setup.x)
        analysis.save_analysis(adir, "sweep", analysis.analyse_sweep(theta, dirs, default, n))
        point, data = load_point(default_dir)
        result = analysis.analyse_default(theta, point, data, n)
        result.update(landscape_slices(config, setup, theta_star, theta, data["position_projection"]))
        analysis.save_analysis(adir, "default", result)

    if not (adir / "default.json").exists():
        stage("analysis", do_analysis)
    cdir = run_dir / "companions"
    hyper = Hyperparams(
        lr=config.lr, momentum=config.momentum, batch_size=config.batch_size, weight_decay=config.weight_decay
    )
    jobs = {
        "linear_regression": lambda: companions.linear_regression_experiment(setup.dataset, seed=config.seed),
        "ou": lambda: companions.ou_experiment(seed=config.seed),
        "architectures": lambda: companions.architecture_experiment(
            setup.dataset,
            config.architectures,
            setup.loss_fn,
            hyper,
            max(1, config.pretrain_epochs // 2),
            config.pretrain_lr,
            config.architecture_steps,
            seed=config.seed,
        ),
    }
    for name in config.companions:
        if not (cdir / f"{name}.json").exists():
            stage(name, lambda name=name: analysis.save_analysis(cdir, name, jobs[name]()))
    meta = {
        "num_parameters": int(theta["num_parameters"]),
        "num_examples": int(theta["num_examples"]),
        "versions": _versions(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (run_dir / "environment.json").write_text(json.dumps(meta, indent=1))
    return run_dir


def _versions() -> dict[str, str]:
    import platform

    import scipy

    import sgd_dynamics

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "sgd_dynamics": getattr(sgd_dynamics, "__version__", "0.1.0"),
        "torch_threads": str(torch.get_num_threads()),
    }
    try:
        import mnist1d

        out["mnist1d"] = getattr(mnist1d, "__version__", "installed")
    except ImportError:
        pass
    return out
