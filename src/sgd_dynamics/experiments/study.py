"""The limiting-dynamics study of one network (issue 5; 002 sections 2, 7, 8, Figs. 1-8).

``run_study(config, run_dir) -> run directory -> write_study_report(run_dir)``. Each stage is a plain
function of :class:`StudyConfig` writing into the run directory (:class:`sgd_dynamics.store.RunDirectory`:
locked while this process writes, resumable, every file atomic):

1. :func:`pretrain` - train to a stationary state, cached by the hash of the fields that define it. The run
   first anneals from ``pretrain_lr`` down to the resume lr, then settles at the resume hyperparameters in
   windows of ``settle_steps`` until a stationarity certificate holds (issue 11 section 1,
   :mod:`sgd_dynamics.experiments.settle`), so ``theta*`` is a sample of the stationary state the study
   resumes from; a run that is never certified goes on with its rows marked ``not_stationary``.
2. :func:`measure_theta_star` - at ``theta*``: top-k Hessian eigenpairs (negative ones kept), the Hessian
   trace (Hutchinson, with its standard error), ``tr(Sigma)`` and ``s_i = q_i^T Sigma q_i``.
   :func:`measure_displacement` - ``R`` replicas from ``theta*`` at the default point split the displacement
   into drift and diffusion (issue 11 section 2), against the full-spectrum (noise-weighted Lanczos) and
   the top-k + bulk theories (section 3).
3. :func:`sweep_points` / :func:`run_sweep` - resumed training around the default: every ``lr x momentum``
   pair (the lr and momentum sweeps one at a time are its row and column through the default) and the
   batch sizes at the default lr and momentum, each with both samplers. Every point is a pure function of
   its own configuration writing its own sub-directory (:mod:`sgd_dynamics.experiments.sweep`), handed to an
   executor; a diverged point is recorded as such and the study goes on.
4. :mod:`sgd_dynamics.experiments.analysis` and :mod:`sgd_dynamics.experiments.companions` turn the stored
   data into predictions vs measurements; :mod:`sgd_dynamics.experiments.study_summary` writes
   ``summary.json``; :mod:`sgd_dynamics.report.study` draws the report.

The configuration (:mod:`sgd_dynamics.experiments.study_config`) and the resolved data, model and loss
(:mod:`sgd_dynamics.experiments.setup`) are checked before the run directory is created or touched.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgd_dynamics._validation import require
from sgd_dynamics.experiments import analysis, companions, displacement_study
from sgd_dynamics.experiments.executors import ExecutorSpec, open_executor
from sgd_dynamics.experiments.settle import (
    monitor_subset,
    monitored_values,
    save_settle,
    settle_until_certified,
)
from sgd_dynamics.experiments.setup import Setup, prepare
from sgd_dynamics.experiments.study_config import StudyConfig, load_config
from sgd_dynamics.experiments.study_summary import displacement_record, stationarity, study_rows
from sgd_dynamics.experiments.sweep import StudyContext, SweepPoint, load_divergence, point_status, run_point
from sgd_dynamics.experiments.training import full_batches, make_optimizer, minibatch_indices, train
from sgd_dynamics.measure.seeding import seeded_torch_rng
from sgd_dynamics.store import RunDirectory, read_arrays, write_arrays, write_atomic

__all__ = [
    "DivergenceError",
    "Setup",
    "StudyConfig",
    "landscape_slices",
    "load_config",
    "measure_displacement",
    "measure_theta_star",
    "prepare",
    "pretrain",
    "run_study",
    "run_sweep",
    "sweep_executor",
    "sweep_points",
]


class DivergenceError(ValueError):
    """Pretraining diverged: the message names the configuration key to lower."""


# --- stage 1: pretraining -------------------------------------------------------------------------------


def _pretrain_schedule(config: StudyConfig, n: int) -> tuple[int, Callable[[int], float]]:
    """``(anneal steps, lr_at)``: cosine from ``pretrain_lr`` to ``lr``, then ``lr`` for the settle steps."""
    anneal = config.pretrain_epochs * (n // config.batch_size)

    def lr_at(k: int) -> float:
        if k > anneal:
            return config.lr
        return config.lr + 0.5 * (config.pretrain_lr - config.lr) * (1 + math.cos(math.pi * (k - 1) / anneal))

    return anneal, lr_at


def _divergence(config: StudyConfig, k: int, anneal: int, lr_at: Callable[[int], float], loss: float
                ) -> DivergenceError:
    """The error naming the key whose learning rate was in use (the larger end of the anneal)."""
    if k > anneal or config.lr >= config.pretrain_lr:
        key, value = "lr", config.lr
    else:
        key, value = "pretrain_lr", config.pretrain_lr
    phase = "settling" if k > anneal else "annealing"
    return DivergenceError(
        f"{key}={value!r} is invalid: pretraining diverged at step {k} ({phase}, learning rate "
        f"{lr_at(k):.3g}, loss={loss:.3g}); expected a smaller {key}")


def pretrain(config: StudyConfig, setup: Setup, run_dir: Path, progress: bool = True
             ) -> dict[str, torch.Tensor]:
    """``theta*`` (a state_dict), loaded from ``run_dir/pretrain`` when this configuration was trained before.

    Anneals, then settles in windows until certified stationary (:mod:`sgd_dynamics.experiments.settle`);
    the monitored series and the certificate are stored beside ``theta*``
    (:func:`sgd_dynamics.experiments.settle.load_settle`).
    Raises :class:`DivergenceError` (a ``ValueError``) naming ``lr`` or ``pretrain_lr`` when it diverges.
    """
    cache = Path(run_dir) / "pretrain" / f"theta_star_{config.pretrain_key()}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True, map_location=setup.x.device)
    model = setup.build_model()
    if config.checkpoint is not None:
        model.load_state_dict(torch.load(config.checkpoint, weights_only=True))
    n = len(setup.x)
    anneal, lr_at = _pretrain_schedule(config, n)
    optimizer = make_optimizer(model, config.hyper())
    bar = _progress(anneal + config.settle_steps * config.settle_windows_max, "pretraining", progress)
    done = [0]

    def on_step(k: int, loss: float) -> None:
        if not math.isfinite(loss):
            k_total = done[0] + k
            raise _divergence(config, k_total, anneal, lr_at, loss)
        bar.update(1)

    def train_steps(steps: int) -> None:
        train(model, optimizer, setup.x, setup.y, setup.loss_fn, steps, batches, on_step=on_step,
              lr_at=lambda k: lr_at(done[0] + k))
        done[0] += steps

    batches = minibatch_indices(n, config.batch_size, "without_replacement", config.seed)
    # Dropout masks from the config's seed, not from what the process drew before: theta* is reproducible
    # (a model without stochastic modules draws nothing from the global generator)
    with seeded_torch_rng(config.seed, setup.x.device):
        try:
            train_steps(anneal)
            if config.settle_steps:
                xm, ym = monitor_subset(setup.x, setup.y, config.monitor_examples, config.seed)
                def observe() -> dict[str, float]:
                    return monitored_values(model, setup.loss_fn, xm, ym, config.seed)

                record = settle_until_certified(train_steps, observe, window_steps=config.settle_steps,
                                                observations=config.settle_observations,
                                                max_windows=config.settle_windows_max)
                save_settle(run_dir, config.pretrain_key(), record)
        finally:
            bar.close()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(cache, buffer.getvalue())
    return state


# --- stage 2: measurements at theta* --------------------------------------------------------------------


def measure_theta_star(
    config: StudyConfig, setup: Setup, theta_star: dict[str, torch.Tensor], run_dir: Path
) -> dict[str, np.ndarray]:
    """Hessian eigenpairs and trace, ``tr(Sigma)``, ``s_i``, losses and accuracies at ``theta*`` (cached).

    ``tr(Sigma)`` and ``s_i`` are the noise of a training step at the default batch size
    (:func:`sgd_dynamics.measure.step_noise` with ``config.noise_estimator``): train-mode ``S Cov(g_B)``
    for a model with Dropout or BatchNorm under ``"auto"``. ``noise_estimator``, ``noise_modules`` (the
    Dropout/BatchNorm class names, comma-separated), ``noise_minibatches`` and ``trace_sigma_se`` record it.
    """
    from sgd_dynamics.measure import hessian_eigenpairs, hessian_trace, step_noise, stochastic_modules

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
    noise = step_noise(model, setup.loss_fn, setup.x, setup.y, config.batch_size, eig.eigenvectors,
                       estimator=config.noise_estimator, num_minibatches=config.noise_minibatches,
                       seed=config.seed)
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
        "trace_sigma_se": np.asarray(noise.trace_se),
        "noise_estimator": np.asarray(noise.estimator),
        "noise_modules": np.asarray(",".join(stochastic_modules(model))),
        "noise_minibatches": np.asarray(noise.num_minibatches),
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


# --- stage 2b: drift and diffusion of the default point -----------------------------------------------


def measure_displacement(config: StudyConfig, setup: Setup, theta_star: dict[str, torch.Tensor],
                         theta: dict[str, np.ndarray], run_dir: Path) -> dict[str, np.ndarray]:
    """Replica drift/diffusion and both predictions at the default point (cached in ``displacement.h5``).

    :mod:`sgd_dynamics.experiments.displacement_study`: ``R = replicas`` from ``theta*`` over ``steps``;
    the full-spectrum prediction from the noise-weighted Lanczos measure at ``theta*`` (top-k deflated),
    the top-k + bulk one from the measured eigenpairs; the measure's rule and the ESD for the report.
    """
    path = Path(run_dir) / "displacement.h5"
    if path.exists():
        return read_arrays(path)
    hyper = config.hyper()
    measured = displacement_study.measure_replicas(setup, theta_star, hyper, config.steps, config.replicas,
                                                   config.seed + 2)
    m, k = int(theta["num_parameters"]), int(np.size(theta["eigenvalues"]))
    spectra = displacement_study.spectral_measures(
        setup, theta_star, theta, probes=config.spectral_probes,
        lanczos_steps=max(2, min(config.lanczos_steps, m - k - 1)), seed=config.seed)
    measure = spectra.pop("measure")
    predicted = displacement_study.predict_parts(measure, theta, hyper, measured["step"])
    nodes, weights = measure.nodes, measure.weights
    arrays = {**measured, **predicted, **spectra, "nodes": nodes, "weights": weights,
              "negative_weight": np.asarray(float(weights[nodes < -hyper.weight_decay].sum()))}
    write_arrays(path, arrays)
    return arrays


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
                    noise_estimator=config.noise_estimator,
                    noise_minibatches=config.noise_minibatches,
                )
            )
    return points


def run_sweep(config: StudyConfig, setup: Setup, theta_star: dict[str, torch.Tensor], directions: np.ndarray,
              run_dir: Path, executor: Executor | None = None, progress: bool = True,
              points: Sequence[SweepPoint] | None = None) -> list[Path]:
    """Run every unfinished point (sequentially, or on ``executor``); returns their directories in order.

    Each point is a pure function of its :class:`SweepPoint` writing into its own directory, so any
    ``concurrent.futures.Executor`` can run them (a diverged point records itself and returns normally;
    :mod:`sgd_dynamics.experiments.executors` makes local processes and Dask clusters). When points fail
    (a worker died), the others still finish, then the first error is raised; a rerun does the rest.
    """
    ctx = StudyContext(setup.x, setup.y, setup.build_model, setup.loss_fn, theta_star,
                       torch.as_tensor(np.ascontiguousarray(directions.T), dtype=setup.x.dtype,
                                       device=setup.x.device))
    points = list(points) if points is not None else sweep_points(config)
    # absolute: a worker elsewhere (a Dask worker's own working directory) writes to the same place
    dirs = [Path(run_dir).absolute() / "points" / p.name for p in points]
    todo = [(p, d) for p, d in zip(points, dirs, strict=True) if point_status(d) is None]
    bar = _progress(len(points), "sweep points", progress, initial=len(points) - len(todo))
    if executor is None:
        for p, d in todo:
            run_point(p, ctx, d)
            bar.update(1)
    else:   # every point finishes (or fails) before an error is raised: a rerun never races a straggler
        futures = [executor.submit(run_point, p, ctx, d) for p, d in todo]
        for _ in as_completed(futures):
            bar.update(1)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            bar.close()
            raise errors[0]
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
        torch.as_tensor(q[:, 0], dtype=setup.x.dtype, device=setup.x.device),
        torch.as_tensor(q[:, k - 1], dtype=setup.x.dtype, device=setup.x.device),
        grid,
        grid,
        test_batches=full_batches(setup.x_test, setup.y_test),
    )
    return {"grid": grid, "train_loss": surf.train_loss, "test_loss": surf.test_loss}


def _analyse(config: StudyConfig, setup: Setup, theta_star: dict[str, torch.Tensor],
             theta: dict[str, np.ndarray], points: Sequence[SweepPoint], dirs: Sequence[Path],
             run: RunDirectory, parts: dict[str, np.ndarray] | None = None
             ) -> tuple[analysis.SweepAnalysis, dict[str, Any] | None]:
    """The sweep and default-point analyses: computed once (``sweep.json`` is written last), then reloaded.

    ``parts`` (``displacement.h5``) gives the noise-weighted measure beyond the top-k modes, with which the
    without-replacement points are predicted (:func:`analysis.reshuffled_speed_prediction`).
    """
    adir = run.path / "analysis"
    if (adir / "sweep.json").exists():
        default = analysis.load_analysis(adir, "default") if (adir / "default.json").exists() else None
        return analysis.SweepAnalysis.from_record(analysis.load_analysis(adir, "sweep")), default
    finished, diverged, default = [], [], None
    for point, directory in zip(points, dirs, strict=True):
        if point_status(directory) == "finished":
            finished.append((point, read_arrays(directory / "result.h5")))
        else:
            diverged.append((point, load_divergence(directory)[1]))
    n = len(setup.x)
    # an undeflated rule also holds the top-k modes, which the prediction adds with their own s_i
    measure = None if parts is None or int(parts["deflated"]) == 0 else analysis.noise_measure_rest(
        parts["nodes"], parts["weights"], config.spectral_probes, int(parts["deflated"]))
    with run.stage("analysis"):
        sweep = analysis.analyse_sweep(theta, finished, diverged, config.hyper(), n, measure)
        found = [(p, d) for p, d in finished if p.sampler == "with_replacement"
                 and (p.lr, p.momentum, p.batch_size) == (config.lr, config.momentum, config.batch_size)]
        if found:
            point, data = found[0]
            slices = landscape_slices(config, setup, theta_star, theta, data["position_projection"])
            default = analysis.analyse_default(theta, point, data, n, grid=slices["grid"])
            default.update(slices)
            analysis.save_analysis(adir, "default", default)
        analysis.save_analysis(adir, "sweep", sweep.to_record())
    return sweep, default


def _companions(config: StudyConfig, setup: Setup, run: RunDirectory, log: Callable[[str], None]
                ) -> dict[str, dict[str, Any]]:
    """The companion experiments of ``config.companions``, each computed once and stored."""
    jobs = {
        "linear_regression": lambda: companions.linear_regression_experiment(setup.dataset, seed=config.seed),
        "ou": lambda: companions.ou_experiment(seed=config.seed),
        "architectures": lambda: companions.architecture_experiment(
            setup.dataset, config.architectures, setup.loss_fn, config.hyper(),
            max(1, config.pretrain_epochs // 2), config.pretrain_lr, config.architecture_steps,
            seed=config.seed),
    }
    cdir, out = run.path / "companions", {}
    for name in config.companions:
        if not (cdir / f"{name}.json").exists():
            log(f"[{name}]")
            with run.stage(name):
                analysis.save_analysis(cdir, name, jobs[name]())
        out[name] = analysis.load_analysis(cdir, name)
    return out


def _stages(config: StudyConfig, setup: Setup, run: RunDirectory, executor: Executor | None, progress: bool,
            log: Callable[[str], None]) -> None:
    """Every stage of the study in ``run``; finished stages are not redone."""
    log("[pretrain]")
    with run.stage("pretrain"):
        theta_star = pretrain(config, setup, run.path, progress)
    log("[theta_star]")
    with run.stage("theta_star"):
        theta = measure_theta_star(config, setup, theta_star, run.path)
    log("[replicas]")
    with run.stage("replicas"):
        parts = measure_displacement(config, setup, theta_star, theta, run.path)
    points = sweep_points(config)
    log("[sweep]")
    with run.stage("sweep"):
        dirs = run_sweep(config, setup, theta_star, theta["eigenvectors"], run.path, executor, progress,
                         points)
    log("[analysis]")
    sweep, default = _analyse(config, setup, theta_star, theta, points, dirs, run, parts)
    done = _companions(config, setup, run, log)
    certificate = stationarity(run.path, config)
    if certificate["stationary"] is False:
        log("theta* was NOT certified stationary: the rows that assume it are marked not_stationary")
    run.write_summary(study_rows(config, sweep, default, done, certificate["stationary"], parts), certificate,
                      displacement=displacement_record(config, parts))


@contextmanager
def sweep_executor(config: StudyConfig, executor: Executor | None) -> Iterator[Executor | None]:
    """Where :func:`run_sweep` runs the points.

    ``executor`` if given, else ``config.sweep_workers`` local one-thread processes (shut down on exit),
    else ``None`` (one after another in this process).
    """
    if executor is not None or not config.sweep_workers:
        yield executor
        return
    with open_executor(ExecutorSpec("local", workers=config.sweep_workers)) as pool:
        # one task per worker starts them all now, so that their start-up and warm-up (torch imports,
        # sweep.warm_up: ~5 s) run alongside the caller's earlier stages
        for _ in range(config.sweep_workers):
            pool.submit(int)
        yield pool


def run_study(config: StudyConfig, run_dir: Path | str, executor: Executor | None = None,
              progress: bool = True, log: Callable[[str], None] = print, force: bool = False) -> Path:
    """Run (or continue) the whole study in ``run_dir``; returns ``run_dir``. Finished stages are not redone.

    Everything is checked before ``run_dir`` is created: a failed start leaves nothing that blocks a rerun.
    A ``run_dir`` holding another configuration is refused unless ``force`` (then it is kept as
    ``run_dir.old-<timestamp>``); a second process on the same ``run_dir`` fails fast
    (:class:`sgd_dynamics.store.RunLockedError`).
    """
    require(isinstance(config, StudyConfig), "config", type(config).__name__, "a StudyConfig")
    setup = prepare(config)
    with RunDirectory.open(run_dir, "study", config, force=force) as run:
        if run.moved_aside is not None:
            log(f"the previous run in {str(run.path)!r} had another configuration; kept it as "
                f"{str(run.moved_aside)!r}")
        if config.threads:
            torch.set_num_threads(config.threads)
        t0 = time.perf_counter()
        with sweep_executor(config, executor) as pool:   # workers start now, ready by the sweep
            _stages(config, setup, run, pool, progress, log)
        log(f"study finished in {time.perf_counter() - t0:.0f} s")
    return Path(run_dir)
