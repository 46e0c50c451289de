"""Models with one output logit per example (shape ``[B]``): MLP, small CNN, ResNet-10, MobileNetV2.

The prediction is ``logit > 0``. Every model is device-agnostic (move it with ``.to(device)``).
``width`` scales each model: hidden units (MLP), channels of the first block (CNN, ResNet-10),
the width multiplier (MobileNetV2).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v2
from torchvision.models.resnet import BasicBlock, ResNet

__all__ = ["make_model", "default_model_for", "default_model_name", "MODELS", "MLP", "SmallCNN", "OneLogit"]

SMALL_INPUT = 64  # images up to this side get the small-input stems (3x3, stride 1, no max-pool)


class OneLogit(nn.Module):
    """Wraps a network whose output is ``[B, 1]`` and returns ``[B]``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(-1)


class MLP(nn.Module):
    """Fully connected ReLU network for feature vectors (inputs are flattened)."""

    def __init__(self, in_features: int, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(-1)


class SmallCNN(nn.Module):
    """Three conv blocks (width, 2 width, 4 width channels; conv 3x3, BatchNorm, ReLU, max-pool 2)
    and a linear head on globally averaged features."""

    def __init__(self, in_channels: int, width: int = 16, batchnorm: bool = True) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c = in_channels
        for k in range(3):
            out = width * 2**k
            blocks += [nn.Conv2d(c, out, 3, padding=1, bias=not batchnorm)]
            if batchnorm:
                blocks.append(nn.BatchNorm2d(out))
            blocks += [nn.ReLU(), nn.MaxPool2d(2)]
            c = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1)).reshape(-1)


def _resnet10(in_channels: int, side: int, width: int) -> nn.Module:
    """torchvision's ResNet with BasicBlock and one block per stage ([1, 1, 1, 1]), channels
    ``width * (1, 2, 4, 8)``, ``in_channels`` inputs and one logit. Inputs up to 64 pixels get a
    3x3 stride-1 stem without max-pool (the CIFAR-style variant); larger ones the ImageNet stem."""
    net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=1)
    if side <= SMALL_INPUT:
        net.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    net.inplanes = width
    net.layer1 = net._make_layer(BasicBlock, width, 1)
    net.layer2 = net._make_layer(BasicBlock, 2 * width, 1, stride=2)
    net.layer3 = net._make_layer(BasicBlock, 4 * width, 1, stride=2)
    net.layer4 = net._make_layer(BasicBlock, 8 * width, 1, stride=2)
    net.fc = nn.Linear(8 * width, 1)
    for m in net.modules():  # the same initialisation as torchvision's ResNet
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return OneLogit(net)


def _mobilenetv2(in_channels: int, side: int, width_mult: float) -> nn.Module:
    """torchvision's MobileNetV2 with one logit; the stem takes ``in_channels`` and, for inputs up
    to 64 pixels, has stride 1 (so 28-64 pixel images are not reduced to 1x1 too early)."""
    net = mobilenet_v2(num_classes=1, width_mult=width_mult)
    stem = net.features[0][0]
    new = nn.Conv2d(in_channels, stem.out_channels, 3, stride=1 if side <= SMALL_INPUT else 2,
                    padding=1, bias=False)
    nn.init.kaiming_normal_(new.weight, mode="fan_out")
    net.features[0][0] = new
    return OneLogit(net)


MODELS = ("mlp", "cnn", "resnet10", "mobilenetv2")


def make_model(
    name: str,
    *,
    in_shape: Sequence[int],
    width: int | float | None = None,
    seed: int | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a model with one output logit per example (output shape ``[B]``).

    ``in_shape`` is one example's shape: ``(d,)`` for feature vectors, ``(C, H, W)`` for images.
    ``width`` defaults: MLP 64 hidden units, CNN 16 channels, ResNet-10 64, MobileNetV2 1.0.
    ``seed`` (optional) makes the initialisation reproducible without touching the global RNG.
    Extra options: ``depth`` (MLP hidden layers, default 2), ``batchnorm`` (CNN, default True).
    """
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    shape = tuple(int(v) for v in in_shape)
    if not shape or any(v < 1 for v in shape):
        raise ValueError(f"in_shape must be a non-empty tuple of positive sizes, got {tuple(in_shape)}")
    allowed = {"mlp": {"depth"}, "cnn": {"batchnorm"}}.get(key, set())
    for k in kw:
        if k not in allowed:
            raise ValueError(f"make_model({key!r}): unknown option {k!r}" + (f"; accepted: {sorted(allowed)}" if allowed else ""))
    if width is not None and not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    if key != "mlp" and len(shape) != 3:
        raise ValueError(f"{key} needs images: in_shape must be (C, H, W), got {shape}")
    if key in ("resnet10", "mobilenetv2", "cnn") and min(shape[1:]) < 8:
        raise ValueError(f"{key}: images must be at least 8x8, got in_shape {shape}")

    def build() -> nn.Module:
        if key == "mlp":
            depth = int(kw.get("depth", 2))
            if depth < 1:
                raise ValueError(f"depth must be at least 1, got {depth}")
            n = 1
            for v in shape:
                n *= v
            return MLP(n, int(width or 64), depth)
        c, side = shape[0], max(shape[1:])
        if key == "cnn":
            return SmallCNN(c, int(width or 16), bool(kw.get("batchnorm", True)))
        if key == "resnet10":
            return _resnet10(c, side, int(width or 64))
        return _mobilenetv2(c, side, float(width or 1.0))

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def default_model_name(dataset: Any) -> str:
    """The one model-for-dataset rule: ``"mlp"`` for feature vectors, ``"cnn"`` (the small CNN)
    for images. ``dataset`` is anything with ``.input_shape``, or one example's shape."""
    shape = tuple(getattr(dataset, "input_shape", dataset))
    if not shape:
        raise ValueError("input shape must be non-empty, got ()")
    return "mlp" if len(shape) == 1 else "cnn"


def default_model_for(dataset: Any, *, width: int | float | None = None, seed: int | None = None) -> nn.Module:
    """The default model for a dataset (anything with ``.input_shape``, or a shape tuple):
    :func:`default_model_name` built with :func:`make_model`."""
    shape = tuple(getattr(dataset, "input_shape", dataset))
    return make_model(default_model_name(shape), in_shape=shape, width=width, seed=seed)
