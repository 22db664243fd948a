"""Built-in models of the study: tiny networks for 1-D inputs (MNIST-1D sequences of length 40).

- ``"mlp"``: fully connected, two hidden layers of 256 ReLU units by default (the study's default model).
- ``"cnn"``: two 1-D convolutions with BatchNorm and a linear head (002 Fig. 1 compares BN networks).
- ``"resnet"``: a small 1-D residual network (a stem, two BN residual blocks, global average pooling).
- ``"linear"``: a linear map (the companion linear-regression experiment, where the theory is exact).

Every builder has the signature ``build(input_shape, num_classes, **options) -> nn.Module``, the same
contract as a user's model entry point. Inputs of shape ``(L,)`` are treated as one-channel sequences by
the convolutional models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from sgd_dynamics.measure.seeding import seeded_torch_rng

__all__ = ["MODELS", "build_model", "cnn", "linear", "mlp", "resnet"]


def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 256)) -> nn.Module:
    """Multilayer perceptron with ReLU hidden layers of the given widths."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def linear(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """A linear map with bias (linear regression when trained with MSE)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


class _AsSequence(nn.Module):
    """Reshape ``(N, L)`` inputs to ``(N, 1, L)``; leave ``(N, C, L)`` inputs alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.unsqueeze(1) if x.dim() == 2 else x


def cnn(input_shape: Sequence[int], num_classes: int, channels: int = 16) -> nn.Module:
    """Two Conv1d-BatchNorm-ReLU blocks (stride 2) and a linear head."""
    length = input_shape[-1]
    in_ch = 1 if len(input_shape) == 1 else input_shape[0]
    out_len = (((length + 1) // 2) + 1) // 2
    return nn.Sequential(
        _AsSequence(),
        nn.Conv1d(in_ch, channels, 5, stride=2, padding=2),
        nn.BatchNorm1d(channels),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.BatchNorm1d(channels),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * out_len, num_classes),
    )


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm1d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def resnet(input_shape: Sequence[int], num_classes: int, channels: int = 16, blocks: int = 2) -> nn.Module:
    """A small 1-D ResNet.

    Stem convolution, ``blocks`` residual blocks with BatchNorm, average pooling, head.
    """
    in_ch = 1 if len(input_shape) == 1 else input_shape[0]
    return nn.Sequential(
        _AsSequence(),
        nn.Conv1d(in_ch, channels, 5, padding=2, bias=False),
        nn.BatchNorm1d(channels),
        nn.ReLU(),
        *[_ResidualBlock(channels) for _ in range(blocks)],
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    )


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "linear": linear}


def build_model(
    name: str, input_shape: Sequence[int], num_classes: int, seed: int, **options: object
) -> nn.Module:
    """A built-in model by name, initialised from ``seed`` (float32, CPU)."""
    if name not in MODELS:
        raise ValueError(
            f"model={name!r} is not built in: expected one of {', '.join(MODELS)} or an entry point "
            "'package.module:function'"
        )
    with seeded_torch_rng(seed):
        return MODELS[name](tuple(input_shape), num_classes, **options)
