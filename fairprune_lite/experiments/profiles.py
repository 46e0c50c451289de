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
import difflib
import inspect
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import bilevel, pruners
from .. import models as _models
from .. import train as _train
from ..accel import FAST, Accel
from ..constraints import FairnessConstraint
from ..progress import quiet_from_env, stderr_is_terminal

__all__ = ["Profile", "PROFILES", "get_profile", "lottery_levels", "quiet_default", "progress_default",
           "check_bifp_overrides", "BIFP_SET_ELSEWHERE"]


def _signature_default(fn: Any, name: str) -> Any:
    """The default of keyword ``name`` of ``fn``: a profile's knob that mirrors a library argument
    takes its default from there (one home per default)."""
    return inspect.signature(fn).parameters[name].default


#: fields of :class:`~fairprune_lite.bilevel.BiFPConfig` a profile's ``bifp_paper`` may not set,
#: and where they are set instead
BIFP_SET_ELSEWHERE = {
    "protocol": "the method option protocol (a spec's method_kwargs)",
    "steps": "the profile knob bifp_steps (scaled by the run's budget)",
    "epochs": "the profile knob bifp_steps (scaled by the run's budget)",
    "batch_size": "the profile knob batch_size",
}


def check_bifp_overrides(overrides: Any, *, where: str = "bifp_paper") -> dict[str, Any]:
    """``overrides`` as a dict when it is a mapping of :class:`~fairprune_lite.bilevel.BiFPConfig`
    fields whose values the paper protocol accepts (:meth:`BiFPConfig.check`); a ``ValueError``
    naming ``where`` and the bad entry (with the nearest field name) otherwise."""
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{where} must be a mapping of BiFPConfig fields to values, got {overrides!r}")
    names = [f.name for f in dataclasses.fields(bilevel.BiFPConfig)]
    for k in overrides:
        if k in BIFP_SET_ELSEWHERE:
            raise ValueError(f"{where}: {k!r} is not set here: use {BIFP_SET_ELSEWHERE[k]}")
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: BiFPConfig has no field {k!r}{hint}")
    try:
        bilevel.PROTOCOLS["paper"].replace(**dict(overrides)).check()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
    return dict(overrides)


def quiet_default() -> bool:
    """Quiet mode from ``FAIRPRUNE_QUIET`` (``1``/``true``/``yes``/``on``)."""
    return quiet_from_env()


def progress_default(quiet: bool) -> bool:
    """Progress bars only on a terminal: piped or logged output gets none."""
    return not quiet and stderr_is_terminal()


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

    The solver's and the constraint's settings live in their own classes, not here: a profile
    holds only what it sizes. ``bifp_steps`` is the length of the bi-level methods' pruning stage
    under every protocol (scaled by a run's budget, like ``finetune_steps``); ``bifp_paper`` holds
    :class:`~fairprune_lite.bilevel.BiFPConfig` overrides that apply only when a run's protocol
    resolves to ``"paper"`` (another named protocol keeps its own settings); ``dual_lr`` is the
    constraint's dual step. Their defaults are read from :class:`BiFPConfig` /
    :class:`~fairprune_lite.constraints.FairnessConstraint` / :func:`fairprune_lite.train.evaluate`.
    ``bifp_alpha`` / ``bifp_beta`` / ``bifp_gamma`` are read-only: the paper protocol's step
    sizes with the profile's ``bifp_paper`` applied.

    ``accel`` is the GPU fast path (:class:`~fairprune_lite.accel.Accel`) for the training passes
    (pretraining, fine-tuning, the bi-level solvers): the ``gpu`` profile sets
    :data:`~fairprune_lite.accel.FAST` (bf16 autocast, channels_last, cudnn.benchmark, TF32); the
    CPU profiles leave it ``None``, the plain path, bit for bit.
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
    eval_batch_size: int = _train.EVAL_BATCH_SIZE
    pretrain_epochs: int = 5
    pretrain_min_steps: int = 0
    pretrain_lr: float = 0.05
    pretrain_weight_decay: float = 5e-4
    finetune_steps: int = 100
    finetune_lr: float = 0.01
    bifp_steps: int = _signature_default(bilevel.BiFPConfig, "steps")
    dual_lr: float = _signature_default(FairnessConstraint, "dual_lr")
    threads: int | None = None
    bifp_paper: dict = field(default_factory=dict)
    accel: Accel | None = None

    def __post_init__(self) -> None:
        self.bifp_paper = check_bifp_overrides(self.bifp_paper)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def bifp_config(self, protocol: str) -> bilevel.BiFPConfig:
        """The :class:`~fairprune_lite.bilevel.BiFPConfig` this profile runs under ``protocol``
        (before a run's own options): the protocol's settings, ``steps = bifp_steps``, and
        ``bifp_paper`` when ``protocol == "paper"``."""
        return bilevel.DEFAULTS.replace(protocol=protocol, steps=self.bifp_steps,
                                        **self.bifp_overrides(protocol))

    def bifp_overrides(self, protocol: str) -> dict[str, Any]:
        """The BiFPConfig overrides this profile adds under ``protocol`` (besides the steps):
        ``bifp_paper`` for the paper protocol, none for another (it keeps its own settings)."""
        return dict(self.bifp_paper) if protocol == "paper" else {}

    # read-only views of the paper protocol's step sizes (the book prints them)
    @property
    def bifp_alpha(self) -> float:
        return self.bifp_config("paper").alpha

    @property
    def bifp_beta(self) -> float:
        return self.bifp_config("paper").beta

    @property
    def bifp_gamma(self) -> float:
        return self.bifp_config("paper").gamma

    def replace(self, **overrides: Any) -> Profile:
        """A copy with some knobs changed; unknown knob names raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        for k in overrides:
            if k in _RETIRED:
                raise ValueError(f"profile setting {k!r} no longer exists: {_RETIRED[k]}")
            if k not in names or k == "name":
                raise ValueError(f"unknown profile setting {k!r}; known: {', '.join(sorted(names - {'name'}))}")
        base = self.to_dict()
        for k, v in overrides.items():
            if isinstance(base.get(k), dict) and isinstance(v, Mapping):
                base[k] = {**base[k], **dict(v)}
            else:
                base[k] = v
        if isinstance(base.get("accel"), Mapping):  # to_dict() writes the options as a dict
            base["accel"] = Accel(**base["accel"])
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


#: settings profiles had until the solver's defaults moved to one home, and what replaces them
_RETIRED = {f"bifp_{k}": f"the paper protocol's {k} is BiFPConfig's; override it with bifp_paper: {{{k}: ...}} "
            f"(or the method option {k})" for k in ("alpha", "beta", "gamma")}


def _cpu_sized(name: str, **knobs: Any) -> Profile:
    """A profile for CPUs: every dataset gets a small model (the MLP, or the small CNN on 32-pixel
    face images) and torch one thread; ``knobs`` set the rest."""
    return Profile(name=name, models={"adult": "mlp", "fashion": "cnn", "celeba": "cnn", "lfw": "cnn"},
                   dataset_options={"celeba": {"image_size": 32}, "lfw": {"image_size": 32}}, threads=1, **knobs)


# pretrain_min_steps: the cpu profile gives Adult and the Fashion benchmark (8000 training
# examples, 63 steps per epoch, 4 epochs = 252 steps) exactly the pretraining they always had;
# a 1,000-row table (about 600 training rows, 5 steps per epoch) gets 40 epochs instead of 4.
# smoke: 1000 training examples, 16 steps per epoch x 5 = 80 steps, also unchanged.
PROFILES: dict[str, Profile] = {
    "smoke": _cpu_sized("smoke", limits={"train": 1000, "val": 300, "test": 300}, widths={"mlp": 16, "cnn": 4},
                        batch_size=64, pretrain_epochs=5, pretrain_min_steps=80, pretrain_lr=0.1,
                        finetune_steps=8, bifp_steps=8),
    # dual_lr: 100 steps: the multipliers must be able to move within them (book ch. 8)
    "cpu": _cpu_sized("cpu", limits={"train": 8000, "val": 2000, "test": 4000}, widths={"mlp": 64, "cnn": 16},
                      batch_size=128, pretrain_epochs=4, pretrain_min_steps=200, pretrain_lr=0.05,
                      finetune_steps=100, bifp_steps=100, dual_lr=0.5),
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
        accel=FAST,
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
