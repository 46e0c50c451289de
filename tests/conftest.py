"""Test-wide settings and helpers.

* One torch thread: tiny models run fastest on one, and CI shares 2 cores (pytest-xdist runs one
  worker per core).
* ``toy_npz``: the one writer of the small synthetic bring-your-own ``.npz`` datasets the runner,
  CLI, sweep and verify tests use (each module asks for its own seed and shape).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

torch.set_num_threads(1)


def _default_logit(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    return x[:, 0] - 0.5 * x[:, 1] + 0.4 * s


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``toy_npz(name, *, seed, n, features, s_rate=0.4, x0_shift=0.0, logit=None) -> Path``.

    Writes ``x`` (``n x features`` float32 normals, column 0 shifted by ``x0_shift * s``), ``s``
    (1 with probability ``s_rate``) and ``y = [logit(x, s) + 0.3 * noise > 0]`` (default logit
    ``x0 - 0.5 x1 + 0.4 s``) into a fresh temporary folder, never into the repository.
    """

    def make(name: str, *, seed: int, n: int, features: int, s_rate: float = 0.4, x0_shift: float = 0.0,
             logit: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Path:
        rng = np.random.default_rng(seed)
        s = (rng.random(n) < s_rate).astype(np.int64)
        x = rng.normal(size=(n, features)).astype(np.float32)
        if x0_shift:
            x[:, 0] += x0_shift * s
        y = ((logit or _default_logit)(x, s) + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
        path = tmp_path_factory.mktemp("data") / f"{name}.npz"
        np.savez(path, x=x, y=y, s=s)
        return path

    return make


def _small_cnn(seed: int = 0, bn: bool = False) -> nn.Module:
    """Two 3x3 convolutions (BatchNorm after each with ``bn``), pooling and a 5-unit MLP head, one
    logit: small enough for exact mask checks, with the channel couplings structured masks need."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, 6, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 1)]
    return nn.Sequential(*layers)


@pytest.fixture
def cnn() -> Callable[..., nn.Module]:
    """The small CNN builder of the mask and export tests: ``cnn(seed=0, bn=False)``."""
    return _small_cnn

