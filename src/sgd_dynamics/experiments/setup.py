"""The resolved data, model factory and loss of a study configuration (built-in names or entry points).

:func:`prepare` resolves and checks everything a study needs before anything is written: the entry points
import and have the documented signatures (:mod:`sgd_dynamics.experiments.entry_points`), the model options
are keywords its builder accepts, the model builds, and the batch size fits the training set.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sgd_dynamics._validation import require
from sgd_dynamics.experiments.datasets import Dataset, as_dataset, load_dataset
from sgd_dynamics.experiments.entry_points import check_signature, is_entry_point, resolve_entry_point
from sgd_dynamics.experiments.models import MODELS, build_model
from sgd_dynamics.experiments.study_config import StudyConfig
from sgd_dynamics.experiments.training import resolve_loss
from sgd_dynamics.measure.seeding import seeded_torch_rng

__all__ = ["Setup", "check_device", "prepare"]


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

    def __init__(self, name: str, options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
                 seed: int, device: str = "cpu", dtype: str = "float32") -> None:
        self.name, self.options, self.input_shape = name, dict(options), input_shape
        self.num_classes, self.seed, self.device, self.dtype = num_classes, seed, device, dtype

    def __call__(self) -> nn.Module:
        # built on the CPU in float32 (the seeded initialisation is the same everywhere), then moved
        return self._build().to(device=self.device, dtype=getattr(torch, self.dtype))

    def _build(self) -> nn.Module:
        if self.name in MODELS:
            opts = {k: tuple(v) if isinstance(v, list) else v for k, v in self.options.items()}
            return build_model(self.name, self.input_shape, self.num_classes, self.seed, **opts)
        fn = resolve_entry_point(self.name, "model")
        with seeded_torch_rng(self.seed):
            model = fn(self.input_shape, self.num_classes, **self.options)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model={self.name!r} returned {type(model).__name__}: expected a "
                             "torch.nn.Module")
        return model.float()


def _load_data(config: StudyConfig) -> Dataset:
    if not is_entry_point(config.dataset):
        return load_dataset(config.dataset, seed=config.seed)
    fn = resolve_entry_point(config.dataset, "dataset")
    check_signature(fn, "dataset", config.dataset)
    takes_seed = "seed" in inspect.signature(fn).parameters or any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    return as_dataset(fn(seed=config.seed) if takes_seed else fn(), config.dataset)


def model_options(config: StudyConfig) -> dict[str, Any]:
    """The builder's keywords: ``model_options``; its default (the MLP's widths) applies to the MLP only."""
    default = StudyConfig().model_options
    if config.model != "mlp" and config.model_options == default:
        return {}
    return dict(config.model_options)


def _check_options(config: StudyConfig, options: dict[str, Any]) -> None:
    if config.model in MODELS:
        params = list(inspect.signature(MODELS[config.model]).parameters)[2:]
        for key in options:
            require(key in params, f"model_options.{key}", options[key],
                    f"a keyword of model={config.model!r}: one of {', '.join(params) or '(none)'}")
    else:
        check_signature(resolve_entry_point(config.model, "model"), "model", config.model, options)


def check_device(device: str) -> torch.device:
    """``device`` as a ``torch.device``; ``ValueError`` naming ``device`` for a GPU this machine lacks."""
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        require(index < count, "device", device,
                f"'cpu' or a CUDA device this machine has ({count} visible: "
                f"{', '.join(f'cuda:{i}' for i in range(count)) or 'none, CUDA is not available'})")
    return torch.device(device)


def _on(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` on ``device``; floating-point data in ``dtype`` (integer labels stay integers)."""
    return tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)


def prepare(config: StudyConfig) -> Setup:
    """Resolve and check the dataset, model and loss of ``config`` (built-in names or entry points)."""
    device, dtype = check_device(config.device), getattr(torch, config.dtype)
    dataset = _load_data(config).subset(config.train_size, seed=config.seed)
    options = model_options(config)
    _check_options(config, options)
    factory = _ModelFactory(config.model, options, dataset.input_shape, dataset.num_classes, config.seed,
                            config.device, config.dtype)
    try:
        factory()  # builds once, RNG forked: a bad option value fails here, before the run directory exists
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"model={config.model!r} with model_options={config.model_options!r} cannot be "
                         f"built: {exc}") from None
    if config.checkpoint is not None:
        require(Path(config.checkpoint).is_file(), "checkpoint", config.checkpoint, "a saved state_dict file")
    n = len(dataset.x_train)
    require(config.batch_size <= n, "batch_size", config.batch_size, f"<= the {n} training examples")
    loss_fn = resolve_loss(config.loss)
    tensors = [_on(torch.as_tensor(a), device, dtype) for a in (dataset.x_train, dataset.y_train,
                                                                   dataset.x_test, dataset.y_test)]
    return Setup(dataset, *tensors, factory, loss_fn)
