"""The configuration of the limiting-dynamics study (issue 5): every key, its type, default and valid range.

:class:`StudyConfig` is validated once, when it is built, by :func:`sgd_dynamics.config_schema.validate`
from the field metadata below (the same metadata writes ``docs/config.md``); :func:`load_config` reads it
from TOML. Defaults: the full study (MNIST-1D, MLP 2x256, cross-entropy); :meth:`StudyConfig.demo` is the
built-in demo (scikit-learn digits, MLP 2x128, issue 11's scouted configuration).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgd_dynamics._validation import require
from sgd_dynamics.config_schema import from_mapping, setting, to_mapping, validate
from sgd_dynamics.hyper import SAMPLERS, Hyperparams

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, shipped as the tomli package
    import tomli as tomllib

__all__ = ["COMPANIONS", "StudyConfig", "load_config", "read_toml"]

# Built-in names (kept here, without importing torch, so that a configuration validates in milliseconds).
DATASET_NAMES = ("mnist1d", "digits", "teacher")
MODEL_NAMES = ("mlp", "cnn", "resnet", "linear")
LOSS_NAMES = ("cross_entropy", "mse_onehot")
COMPANIONS = ("linear_regression", "ou", "architectures")
NOISE_ESTIMATORS = ("auto", "per_example", "minibatch")   # sgd_dynamics.measure.NOISE_ESTIMATORS
_POSITIVE = {"minimum": 0, "exclusive_minimum": True}
DTYPES = ("float32", "float64")
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a limiting-dynamics study (a table of keys; docs/config.md lists them)."""

    dataset: str = setting("mnist1d", "training data: a built-in name or an entry point `load(seed=...)` "
                           "returning a Dataset, a mapping or a 4-tuple", choices=DATASET_NAMES,
                           entry_point=True)
    train_size: int | None = setting(None, "a seeded subset of the training set (none: all)", minimum=1)
    model: str = setting("mlp", "network: a built-in name or an entry point "
                         "`build(input_shape, num_classes, **options) -> torch.nn.Module`",
                         choices=MODEL_NAMES, entry_point=True)
    model_options: dict[str, Any] = setting(help="keyword arguments of the model builder, e.g. "
                                            "{hidden = [256, 256]} for the MLP",
                                            default_factory=lambda: {"hidden": [256, 256]})
    loss: str = setting("cross_entropy", "loss: a built-in name or an entry point `loss(outputs, targets)`",
                        choices=LOSS_NAMES, entry_point=True)
    checkpoint: str | None = setting(None, "a state_dict file to start pretraining from")
    seed: int = setting(0, "seed of initialisation, minibatches and estimators", minimum=0)
    pretrain_epochs: int = setting(40, "epochs annealed (cosine) from pretrain_lr to lr", minimum=0)
    pretrain_lr: float = setting(0.05, "initial learning rate of pretraining", **_POSITIVE)
    settle_steps: int = setting(2000, "steps of one settle window at the default hyperparameters after the "
                                "anneal (0: no settling, nothing certified)", minimum=0)
    settle_windows_max: int = setting(6, "at most this many settle windows: settling stops after the first "
                                      "window whose stationarity certificate (last two windows) holds",
                                      minimum=2)
    settle_observations: int = setting(10, "observations of each monitored series per settle window (one "
                                       "per sub-window; the batch-means test needs >= 3)", minimum=3)
    monitor_examples: int = setting(1024, "fixed training subset on which the settle loop monitors the "
                                    "loss, tr(Sigma) and the top Hessian eigenvalue", minimum=1)
    lr: float = setting(0.005, "learning rate of the default point", **_POSITIVE)
    momentum: float = setting(0.9, "momentum of the default point", minimum=0, maximum=1,
                              exclusive_maximum=True)
    batch_size: int = setting(128, "batch size of the default point", minimum=1)
    weight_decay: float = setting(5e-3, "weight decay (L2) of every run", minimum=0)
    lrs: tuple[float, ...] = setting((0.00125, 0.0025, 0.005, 0.01, 0.02),
                                     "learning rates swept (with every momentum)", **_POSITIVE)
    momenta: tuple[float, ...] = setting((0.0, 0.5, 0.8, 0.9, 0.95), "momenta swept (with every lr)",
                                         minimum=0, maximum=1, exclusive_maximum=True)
    batch_sizes: tuple[int, ...] = setting((32, 64, 128, 256, 512), "batch sizes swept at the default lr "
                                           "and momentum", minimum=1)
    samplers: tuple[str, ...] = setting(SAMPLERS, "minibatch samplers, each run at every sweep point",
                                        choices=SAMPLERS)
    steps: int = setting(3000, "steps of resumed training per sweep point", minimum=10)
    burn_in: int = setting(500, "steps excluded from the speed average (< steps - 1)", minimum=0)
    noise_snapshots: int = setting(3, "measurements of Sigma per sweep point", minimum=1)
    noise_estimator: str = setting("auto", "how the gradient noise of a step is measured: per_example "
                                   "(eval-mode Sigma), minibatch (train-mode S Cov(g_B) of minibatches drawn "
                                   "with replacement) or auto (minibatch when the model has a Dropout or "
                                   "BatchNorm module)", choices=NOISE_ESTIMATORS)
    noise_minibatches: int = setting(256, "minibatches M of one minibatch noise estimate (its cost: M x "
                                     "batch_size train-mode example gradients)", minimum=4)
    replicas: int = setting(4, "replicas R resumed from theta* at the default point (independent minibatch "
                            "streams) for the drift/diffusion split", minimum=2)
    spectral_probes: int = setting(10, "probes of the noise-weighted Lanczos measure (full-spectrum theory)",
                                   minimum=2)
    lanczos_steps: int = setting(80, "Lanczos steps per probe of the spectral measures", minimum=2)
    num_eigenpairs: int = setting(30, "k: top Hessian eigenpairs at theta*", minimum=1)
    eigen_tol: float = setting(1e-4, "relative tolerance of the eigensolver", **_POSITIVE)
    trace_matvecs: int = setting(30, "Hutchinson probes of the Hessian trace", minimum=1)
    slice_points: int = setting(21, "grid points per axis of the 2-D loss slices", minimum=2)
    speed_tolerance: float = setting(0.05, "relative tolerance of the speed prediction", **_POSITIVE)
    companions: tuple[str, ...] = setting(COMPANIONS, "companion experiments", choices=COMPANIONS)
    architectures: tuple[str, ...] = setting(("mlp", "cnn", "resnet"), "built-in models compared in the "
                                             "Fig. 1-style experiment", choices=MODEL_NAMES)
    architecture_steps: int = setting(1500, "steps of each architecture run", minimum=1)
    threads: int | None = setting(None, "torch threads (none: torch's default)", minimum=1)
    sweep_workers: int | None = setting(None, "local worker processes that run the sweep points, one torch "
                                        "thread each (none: one after another in this process); an "
                                        "--executor given on the command line replaces them", minimum=1)
    # --- where and in which precision the torch path runs (issue 14 section 4) ---
    device: str = setting("cpu", "torch device of training, tracking, Hessian-vector products, gradient "
                          "noise and landscape slices: cpu, cuda or cuda:N (an error where CUDA is not "
                          "available)")
    dtype: str = setting("float32", "floating-point dtype of the model, the data and every torch measurement",
                         choices=DTYPES)

    def __post_init__(self) -> None:
        validate(self)
        require(self.burn_in < self.steps - 1, "burn_in", self.burn_in,
                f"an integer in [0, steps - 1) = [0, {self.steps - 1})")
        require(self.settle_steps == 0 or self.settle_steps >= self.settle_observations, "settle_steps",
                self.settle_steps, f"0 or an integer >= settle_observations = {self.settle_observations}")
        require(isinstance(self.device, str) and _DEVICE.fullmatch(self.device) is not None, "device",
                self.device, "'cpu', 'cuda' or 'cuda:N' (N the index of a GPU)")
        self.hyper()

    @classmethod
    def demo(cls, full: bool = False) -> StudyConfig:
        """The built-in study, or ``full`` sweeps (the field defaults).

        The demo follows issue 11's scouting run: scikit-learn digits, MLP 2x128, cross-entropy, annealed
        for 400 epochs from lr 0.05 to lr 0.0025 (momentum 0.9, S = 32, weight decay 0.01) and settled for
        16000 steps (two windows of 8000), which certified stationarity with a drift share of ~10% at
        k = 2000. Sweeps around lr 0.0025 on two one-thread worker processes (the points of this small
        network are dispatch-bound: two threads inside one step are slower than one, issue 15 goal 7); the
        architecture companion (three more pretrainings) only runs with ``full``. Finishes in about 3
        minutes on 2 cores.
        """
        if full:
            return cls()
        return cls(dataset="digits", model_options={"hidden": [128, 128]}, loss="cross_entropy",
                   pretrain_epochs=400, pretrain_lr=0.05, lr=0.0025, momentum=0.9, batch_size=32,
                   weight_decay=0.01, settle_steps=8000, settle_windows_max=3,
                   lrs=(0.00125, 0.0025, 0.005), momenta=(0.0, 0.5, 0.9), batch_sizes=(16, 32, 64),
                   steps=2000, burn_in=400, noise_snapshots=2, replicas=4, num_eigenpairs=10,
                   trace_matvecs=10, slice_points=13, companions=("linear_regression", "ou"), threads=2,
                   sweep_workers=2)

    @classmethod
    def quick(cls) -> StudyConfig:
        """A tiny study for tests and smoke runs (seconds): a small MLP, one lr, no companions."""
        return cls(dataset="teacher", model_options={"hidden": [16]}, pretrain_epochs=2, settle_steps=50,
                   settle_windows_max=2, settle_observations=4, monitor_examples=256,
                   lrs=(0.005,), momenta=(0.9,), batch_sizes=(128,), samplers=("with_replacement",),
                   steps=60, burn_in=10, noise_snapshots=1, num_eigenpairs=3, trace_matvecs=3,
                   replicas=3, spectral_probes=4, lanczos_steps=20,
                   slice_points=5, companions=(), threads=1)

    def hyper(self) -> Hyperparams:
        """The default point's hyperparameters (the state ``theta*`` settles in)."""
        return Hyperparams(lr=self.lr, momentum=self.momentum, batch_size=self.batch_size,
                           weight_decay=self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return to_mapping(self)

    def pretrain_key(self) -> str:
        """Hash of the fields that define ``theta*``."""
        fields = ("dataset", "train_size", "model", "model_options", "loss", "checkpoint", "seed",
                  "pretrain_epochs", "pretrain_lr", "settle_steps", "settle_windows_max",
                  "settle_observations", "monitor_examples", "lr", "momentum", "batch_size",
                  "weight_decay")
        values = {f: getattr(self, f) for f in fields}
        # theta* depends on the precision and, in its last bits, the device; the defaults keep older keys
        values.update({f: getattr(self, f) for f, default in (("dtype", "float32"), ("device", "cpu"))
                       if getattr(self, f) != default})
        blob = json.dumps(values, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def read_toml(path: Path | str, table: str | None = None) -> dict[str, Any]:
    """The keys of a TOML file (of its ``[table]`` when the file has one)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CONFIG={str(path)!r} is not a file: expected a TOML study configuration")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"CONFIG={str(path)!r} is not valid TOML: {exc}") from None
    return raw.get(table, raw) if table else raw


def load_config(path: Path | str) -> StudyConfig:
    """A :class:`StudyConfig` from a TOML file (top-level keys = field names; unknown keys are an error)."""
    return from_mapping(StudyConfig, read_toml(path, "study"))
