"""Profiles: one switch (``--profile`` / ``$FAIRPRUNE_PROFILE``, default ``"cpu"``) sets the size
of everything in an experiment; every result records its profile's knobs.

* ``smoke``: a few hundred examples, seconds per run, for the tests;
* ``cpu``: the default the book is built with (Adult with an MLP, the Fashion benchmark with the
  small CNN), sized for runs of seconds on 2 cores;
* ``gpu``: the paper's data and models (CelebA / LFW with ResNet-10 or MobileNetV2, full splits,
  real epochs), ``cuda`` when available.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import models as _models
from .. import pruners

__all__ = ["Profile", "PROFILES", "get_profile", "lottery_levels", "quiet_default", "progress_default"]


def quiet_default() -> bool:
    """Quiet mode from ``FAIRPRUNE_QUIET`` (``1``/``true``/``yes``)."""
    return os.environ.get("FAIRPRUNE_QUIET", "").strip().lower() in ("1", "true", "yes", "on")


def progress_default(quiet: bool) -> bool:
    """Progress bars only on a terminal: piped or logged output gets none."""
    return not quiet and sys.stderr.isatty()


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


@dataclass
class Profile:
    """Every size knob of an experiment. Results record all of them (``profile_settings``).

    ``limits`` caps each split (``None``: the whole split) by a seeded subsample stratified by
    ``(s, y)``; ``models`` / ``widths`` give the model of each dataset (bring-your-own ``.npz``
    data gets :func:`fairprune_lite.models.default_model_name`); ``device`` is ``"cpu"``,
    ``"cuda"`` or ``"auto"`` (cuda when available). ``threads`` fixes torch's CPU threads during
    a run (1 for the CPU profiles: small models run fastest on one thread, do not suffer when the
    machine is shared, and give the same bits on any core count); ``None`` leaves torch's choice.

    Dense pretraining runs ``pretrain_epochs`` epochs, or more when that gives fewer than
    ``pretrain_min_steps`` SGD steps (a small dataset would otherwise get almost no training):
    see :meth:`pretrain_epochs_for`.
    """

    name: str
    default_dataset: str = "adult"
    device: str = "cpu"
    data_seed: int = 0
    limits: dict = field(default_factory=lambda: {"train": None, "val": None, "test": None})
    dataset_options: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    widths: dict = field(default_factory=dict)
    batch_size: int = 128
    eval_batch_size: int = 1024
    pretrain_epochs: int = 5
    pretrain_min_steps: int = 0
    pretrain_lr: float = 0.05
    pretrain_weight_decay: float = 5e-4
    finetune_steps: int = 100
    finetune_lr: float = 0.01
    bifp_steps: int = 100
    bifp_alpha: float = 0.01
    bifp_beta: float = 0.1
    bifp_gamma: float = 1.0
    dual_lr: float = 0.05
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> Profile:
        """A copy with some knobs changed; unknown knob names raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        for k in overrides:
            if k not in names or k == "name":
                raise ValueError(f"unknown profile setting {k!r}; known: {', '.join(sorted(names - {'name'}))}")
        base = self.to_dict()
        for k, v in overrides.items():
            if isinstance(base.get(k), dict) and isinstance(v, Mapping):
                base[k] = {**base[k], **dict(v)}
            else:
                base[k] = v
        return Profile(**base)

    def model_for(self, dataset: str, input_shape: Sequence[int]) -> str:
        """The profile's model for a named dataset, else the library's rule for the data's shape."""
        key = str(dataset)
        if not key.endswith(".npz") and key in self.models:
            return self.models[key]
        return _models.default_model_name(input_shape)

    def pretrain_epochs_for(self, n_train: int) -> int:
        """Epochs of dense pretraining on ``n_train`` examples: ``pretrain_epochs``, raised until
        the run makes at least ``pretrain_min_steps`` SGD steps."""
        steps_per_epoch = max(1, math.ceil(int(n_train) / int(self.batch_size)))
        need = math.ceil(int(self.pretrain_min_steps) / steps_per_epoch) if self.pretrain_min_steps else 0
        return max(int(self.pretrain_epochs), need)

    def resolve_device(self, device: str | None = None) -> str:
        d = device or self.device
        if d == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if d not in ("cpu", "cuda") and not d.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {d!r}")
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {d!r} requested but CUDA is not available")
        return d


# pretrain_min_steps: the cpu profile gives Adult and the Fashion benchmark (8000 training
# examples, 63 steps per epoch, 4 epochs = 252 steps) exactly the pretraining they always had;
# a 1,000-row table (about 600 training rows, 5 steps per epoch) gets 40 epochs instead of 4.
# smoke: 1000 training examples, 16 steps per epoch x 5 = 80 steps, also unchanged.
PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        limits={"train": 1000, "val": 300, "test": 300},
        models={"adult": "mlp", "fashion": "cnn", "celeba": "cnn", "lfw": "cnn"},
        widths={"mlp": 16, "cnn": 4},
        dataset_options={"celeba": {"image_size": 32}, "lfw": {"image_size": 32}},
        batch_size=64,
        pretrain_epochs=5,
        pretrain_min_steps=80,
        pretrain_lr=0.1,
        finetune_steps=8,
        bifp_steps=8,
        threads=1,
    ),
    "cpu": Profile(
        name="cpu",
        limits={"train": 8000, "val": 2000, "test": 4000},
        models={"adult": "mlp", "fashion": "cnn", "celeba": "cnn", "lfw": "cnn"},
        widths={"mlp": 64, "cnn": 16},
        dataset_options={"celeba": {"image_size": 32}, "lfw": {"image_size": 32}},
        batch_size=128,
        pretrain_epochs=4,
        pretrain_min_steps=200,
        pretrain_lr=0.05,
        finetune_steps=100,
        bifp_steps=100,
        dual_lr=0.5,  # 100 steps: the multipliers must be able to move within them (book ch. 8)
        threads=1,
    ),
    "gpu": Profile(
        name="gpu",
        default_dataset="celeba",
        device="auto",
        limits={"train": None, "val": None, "test": None},
        models={"adult": "mlp", "fashion": "cnn", "celeba": "resnet10", "lfw": "resnet10"},
        widths={"mlp": 128, "cnn": 32},
        dataset_options={"celeba": {"image_size": 64, "cache": True}, "lfw": {"image_size": 64, "cache": True}},
        batch_size=128,
        eval_batch_size=512,
        pretrain_epochs=10,
        pretrain_min_steps=500,
        pretrain_lr=0.05,
        finetune_steps=2000,
        bifp_steps=2000,
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else ``$FAIRPRUNE_PROFILE``, else ``"cpu"``."""
    key = name or os.environ.get("FAIRPRUNE_PROFILE") or "cpu"
    if key not in PROFILES:
        raise ValueError(f"unknown profile {key!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[key]


def lottery_levels(k: int) -> list[float]:
    """The first ``k`` sparsities of the Lottery Ticket schedule
    (:func:`fairprune_lite.pruners.lottery_sparsities`: each round prunes 20% of what remains),
    rounded to 4 decimals: 0.2, 0.36, 0.488, 0.5904, ..."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"lottery:K needs a positive integer K, got {k!r}")
    return [round(v, 4) for v in pruners.lottery_sparsities(k)]
