"""Experiments: profiles, ``run`` / ``sweep`` / ``verify`` / ``figure``, JSON results with provenance.

This is the layer the command line (``python -m fairprune_lite``) and the book's notebooks share,
so what the book shows is what the command line produces.

Profiles
--------
One switch picks the size of everything: the ``--profile`` flag or ``FAIRPRUNE_PROFILE``
(default ``"cpu"``). A :class:`Profile` holds every size knob (subsample caps, batch size,
pretraining epochs and learning rate, fine-tuning steps, BiFP steps / gamma / beta, the model
of each dataset, the device):

* ``smoke``: a few hundred examples, seconds per run, for the tests;
* ``cpu``: the default the book is built with (Adult with an MLP, the Fashion benchmark with the
  small CNN), sized for runs of seconds on 2 cores;
* ``gpu``: the paper's data and models (CelebA / LFW with ResNet-10 or MobileNetV2, full splits,
  real epochs), ``cuda`` when available.

Every result records its profile (name and every knob).

Protocol of one run (:func:`run`)
---------------------------------
1. Load the dataset (:func:`fairprune_lite.data.load_dataset`, split seed ``profile.data_seed``)
   and take a seeded subsample stratified by ``(s, y)`` cell when the profile caps a split.
2. Pretrain the dense model on ``train`` (seeded init, SGD with momentum, cosine learning rate
   over epochs; one fresh optimizer and one fresh loader seed per epoch, so that an epoch can be
   resumed from its checkpoint and give the same bits as an uninterrupted run). The dense model
   is cached per (dataset, target, sensitive, model, width, seed, profile, pretraining knobs) in
   ``<cache>/dense/<key>.pt``; the checkpoint is written atomically after every epoch and holds
   tensors and plain values only (it loads with ``torch.load(..., weights_only=True)``).
3. Prune and fine-tune on ``val`` with :func:`fairprune_lite.pruners.prune`.
4. Evaluate the pruned and the dense model on ``val`` and ``test``
   (:func:`fairprune_lite.train.evaluate`, with the dense model for Def. 2/3).

Result file (one JSON per run, written atomically: temporary file then ``os.replace``)
--------------------------------------------------------------------------------------
Top-level keys (snake_case): ``schema``, ``run_id``, ``spec`` (everything needed to recompute
it), ``label``, ``method``, ``dataset``, ``target``, ``sensitive``, ``model``,
``sparsity_target`` (requested), ``sparsity`` (measured over the prunable weights),
``structured``, ``seed``, ``profile``, ``profile_settings``, ``constraint``, ``tau``,
``surrogate``, ``val`` / ``test`` (metrics of the pruned model: ``accuracy``,
``accuracy_gap``, per-group rates, ``demographic_parity_difference``,
``equalized_odds_difference``, ``majority_baseline``, ``loss``, ``degradation``,
``degradation_gap``), ``dense`` (``{"val": ..., "test": ...}``, the dense model), ``cost``
(pruning stage: ``iterations``, ``forward_passes``, ``backward_passes``, ``examples``,
``wall_time_s``), ``pretrain_cost`` (same keys, plus ``cached``), ``wall_time_s`` (the whole
run), ``layers`` (pruned / total per layer), ``method_config``, ``history`` (at most
:data:`HISTORY_MAX` entries, evenly thinned), ``weights`` (file name of the saved final
state_dict, or ``None``), ``provenance`` (package version, git commit and whether the tree was
dirty, torch / numpy / Python versions, device name, a hostname-free machine description, torch
threads, UTC date). :func:`load_result` validates a file and raises :class:`ResultError` when it
does not parse or validate; sweeps report such files and recompute them.

Sweep configuration (YAML ``.yaml``/``.yml`` or TOML ``.toml``)
---------------------------------------------------------------
Every key is checked before any computation; an unknown key (a typo) is an error.

==================  ========================================================================
key                 meaning
==================  ========================================================================
``name``            the sweep's name (results go to ``<out>/<name>/``); default: file stem
``figure``          figure kind: ``sparsity`` (Figs. 1, 3, 4), ``tradeoff`` (Fig. 5),
                    ``cost`` (Fig. 6), ``ablation`` (Fig. 7), ``interpolation`` (Fig. 8)
``profile``         profile name (the ``--profile`` flag / ``FAIRPRUNE_PROFILE`` override it)
``out``             results folder (default ``runs``; ``--out`` overrides it)
``datasets``        list; each a name / ``.npz`` path, or a mapping with ``dataset`` and optional
                    ``target``, ``sensitive``, ``model``, ``label``. Default: the profile's
``models``          list of model names applied to every dataset entry without its own
                    ``model`` (default: the profile's model for the dataset)
``methods``         list; each a registry name, or a mapping with ``method`` and optional
                    ``label``, ``structured``, ``taus`` (this method's own tau list, e.g.
                    ``[0.02]`` for a fairness-blind baseline in a tau sweep) and method keyword
                    arguments (e.g. the ablation switches ``fair_mask`` / ``fair_weights`` of
                    BiFP, ``ig``)
``sparsities``      list of floats in [0, 1), or ``"lottery:K"`` (the first K levels of the
                    Lottery Ticket schedule, 20% of what remains per round)
``seeds``           list of ints, or an int ``n`` meaning ``[0, ..., n-1]``
``constraint``      ``accuracy_gap`` (default), ``demographic_parity``, ``equalized_odds``
``taus``            list of tolerances (default ``[0.02]``); swept for Fig. 5
``surrogate``       the smooth bound of the constraint (default: the constraint's own)
``structured``      ``true`` / ``false`` / absent (each method's default)
``budgets``         list of factors on the pruning-stage length (fine-tuning and BiFP steps),
                    default ``[1]``; Fig. 6 sweeps it to find the iterations needed to be fair
``settings``        mapping of :class:`Profile` fields overriding the profile (e.g.
                    ``{pretrain_epochs: 3}``)
``save_weights``    store each run's final weights (needed by the ``interpolation`` figure)
``pairs``           ``interpolation`` figure: list of ``[label_a, label_b]`` pairs
``points``          ``interpolation`` figure: points along the line (default 21)
==================  ========================================================================

The grid is datasets x models x methods x sparsities x taus x budgets x seeds; a run whose result
file exists and validates is skipped, so an interrupted sweep (even killed in the middle of a run)
restarts where it stopped: finished runs are kept, the interrupted run restarts from its last
pretraining checkpoint.

Figures (:func:`figure`) are drawn from stored results with the mean over seeds and the spread
(``std`` or ``minmax``), saved as PNG and SVG, with a caption line naming the profile and the
provenance (commit, date, device). Fig. 8 (``interpolation``) reads the saved final weights of
two solutions of the same seed and sparsity (``pairs``) and evaluates the loss (and accuracy gap)
of ``(1 - t) * theta_a + t * theta_b`` for ``t`` in [0, 1] (BatchNorm running statistics are
interpolated the same way); the curve is cached next to the results.

:func:`verify` recomputes a random sample of stored results (from scratch, with a fresh cache
unless told otherwise) and compares every metric and count (exactly, or within ``atol``);
wall times, dates and provenance are not compared.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import __version__

__all__ = [
    "Profile",
    "PROFILES",
    "get_profile",
    "RunSpec",
    "ResultError",
    "ConfigError",
    "run",
    "run_to_file",
    "load_result",
    "load_results",
    "validate_result",
    "load_config",
    "expand_config",
    "sweep",
    "verify",
    "figure",
    "FIGURE_KINDS",
    "lottery_levels",
    "provenance",
    "quiet_default",
]

SCHEMA = "fairprune-lite/result/1"
HISTORY_MAX = 200
SPLITS = ("val", "test")
FIGURE_KINDS = ("sparsity", "tradeoff", "cost", "ablation", "interpolation")
CONSTRAINT_KINDS = ("accuracy_gap", "demographic_parity", "equalized_odds")


class ResultError(ValueError):
    """A result file that does not parse or does not validate."""


class ConfigError(ValueError):
    """A sweep configuration with an unknown key or a bad value."""


def quiet_default() -> bool:
    """Quiet mode from ``FAIRPRUNE_QUIET`` (``1``/``true``/``yes``)."""
    return os.environ.get("FAIRPRUNE_QUIET", "").strip().lower() in ("1", "true", "yes", "on")


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# profiles
# ---------------------------------------------------------------------------------------------
@dataclass
class Profile:
    """Every size knob of an experiment. Results record all of them (``profile_settings``).

    ``limits`` caps each split (``None``: the whole split) by a seeded subsample stratified by
    ``(s, y)``; ``models`` / ``widths`` give the model of each dataset (``"npz"`` is the key for
    bring-your-own data: an MLP for vectors, a CNN for images); ``device`` is ``"cpu"``,
    ``"cuda"`` or ``"auto"`` (cuda when available). ``threads`` fixes torch's CPU threads during
    a run (1 for the CPU profiles: small models run fastest on one thread, do not suffer when the
    machine is shared, and give the same bits on any core count); ``None`` leaves torch's choice.
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

    def replace(self, **overrides: Any) -> "Profile":
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
        key = "npz" if str(dataset).endswith(".npz") else str(dataset)
        if key in self.models and key != "npz":
            return self.models[key]
        return "mlp" if len(tuple(input_shape)) == 1 else "cnn"

    def resolve_device(self, device: str | None = None) -> str:
        d = device or self.device
        if d == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if d not in ("cpu", "cuda") and not d.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {d!r}")
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {d!r} requested but CUDA is not available")
        return d


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        limits={"train": 1000, "val": 300, "test": 300},
        models={"adult": "mlp", "fashion": "cnn", "celeba": "cnn", "lfw": "cnn"},
        widths={"mlp": 16, "cnn": 4},
        dataset_options={"celeba": {"image_size": 32}, "lfw": {"image_size": 32}},
        batch_size=64,
        pretrain_epochs=5,
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
    """The first ``k`` sparsities of the Lottery Ticket schedule (each round prunes 20% of
    what remains), rounded to 4 decimals: 0.2, 0.36, 0.488, 0.5904, ..."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"lottery:K needs a positive integer K, got {k!r}")
    return [round(1 - 0.8 ** (i + 1), 4) for i in range(k)]


# ---------------------------------------------------------------------------------------------
# run specification
# ---------------------------------------------------------------------------------------------
@dataclass
class RunSpec:
    """Everything that determines one run; :func:`run` of the same spec gives the same numbers
    on CPU. ``label`` names the method variant in figures (default: the method name);
    ``method_kwargs`` go to the method (e.g. ``fair_mask=False``); ``budget`` scales the
    pruning-stage length; ``settings`` override profile knobs."""

    method: str
    dataset: str
    sparsity: float
    seed: int = 0
    target: str | None = None
    sensitive: str | None = None
    model: str | None = None
    profile: str | None = None
    constraint: str = "accuracy_gap"
    tau: float = 0.02
    surrogate: str | None = None
    structured: bool | None = None
    label: str | None = None
    method_kwargs: dict = field(default_factory=dict)
    budget: float = 1.0
    settings: dict = field(default_factory=dict)
    save_weights: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method_kwargs"] = dict(sorted(d["method_kwargs"].items()))
        d["settings"] = dict(sorted(d["settings"].items()))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"run spec: unknown keys {bad}; known: {sorted(names)}")
        return cls(**dict(d))

    @property
    def run_label(self) -> str:
        return self.label or self.method

    def run_id(self) -> str:
        """A readable, filesystem-safe id: label, dataset, sparsity, seed and a spec hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        h = hashlib.sha256(blob.encode()).hexdigest()[:10]
        ds = Path(str(self.dataset)).stem if str(self.dataset).endswith(".npz") else str(self.dataset)
        return f"{_slug(self.run_label)}_{_slug(ds)}_s{self.sparsity:.4f}_seed{self.seed}_{h}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-")[:40] or "x"


def _check_number(value: Any, name: str, low: float, high: float, *, high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or value > high or (high_open and value == high):
        raise ValueError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {value!r}")
    return float(value)


def _methods() -> dict[str, Any]:
    from . import pruners

    return dict(pruners.METHODS)


def check_spec(spec: RunSpec) -> Profile:
    """Validate everything about ``spec`` that can be checked without data; return its profile."""
    methods = _methods()
    if spec.method not in methods:
        raise ValueError(f"unknown method {spec.method!r}; choose one of {', '.join(methods)}")
    _check_number(spec.sparsity, "sparsity", 0.0, 1.0)
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {spec.seed!r}")
    if spec.constraint not in CONSTRAINT_KINDS:
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINT_KINDS)}, got {spec.constraint!r}")
    _check_number(spec.tau, "tau", 0.0, 1.0, high_open=False)
    _check_number(spec.budget, "budget", 0.0, 1e6)
    if spec.budget <= 0:
        raise ValueError(f"budget must be positive, got {spec.budget!r}")
    from . import models as _models

    if spec.model is not None and spec.model not in _models.MODELS:
        raise ValueError(f"unknown model {spec.model!r}; choose one of {', '.join(_models.MODELS)}")
    if spec.structured not in (None, True, False):
        raise ValueError(f"structured must be true, false or unset, got {spec.structured!r}")
    if not isinstance(spec.method_kwargs, Mapping):
        raise ValueError("method_kwargs must be a mapping")
    profile = get_profile(spec.profile)
    if spec.settings:
        profile = profile.replace(**spec.settings)
    ds = str(spec.dataset)
    if ds.endswith(".npz"):
        if not Path(ds).is_file():
            raise FileNotFoundError(f"dataset file {ds} not found")
    else:
        from . import data as _data

        if ds not in _data.DATASETS:
            raise ValueError(f"unknown dataset {ds!r}; choose one of {sorted(_data.DATASETS)} or a path ending in .npz")
    return profile


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _stratified_subsample(ds: Any, limit: int | None, seed: int, split: str) -> Any:
    """At most ``limit`` examples, the same share of every ``(s, y)`` cell (at least one of each
    non-empty cell), chosen by a seeded generator; the order of the kept examples is preserved."""
    n = len(ds)
    if limit is None or n <= limit:
        return ds
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split), 11])
    y = ds.y.cpu().numpy()
    s = ds.s.cpu().numpy()
    keep = []
    for sv in (0, 1):
        for yv in (0, 1):
            idx = np.flatnonzero((s == sv) & (y == yv))
            if len(idx) == 0:
                continue
            k = max(1, int(round(limit * len(idx) / n)))
            keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    index = np.sort(np.concatenate(keep))
    return ds.subset(index)


_SPLITS_CACHE: dict[str, Any] = {}
_SPLITS_CACHE_MAX = 4


def load_splits(spec: RunSpec, profile: Profile, *, root: str | os.PathLike | None = None) -> Any:
    """The run's data: :func:`fairprune_lite.data.load_dataset` plus the profile's caps.

    Kept in a small in-process cache (the data of a sweep is loaded once per process; the
    datasets are never modified by a run). ``root`` defaults to ``$FAIRPRUNE_DATA_ROOT``
    (CelebA / LFW)."""
    ds = str(spec.dataset)
    if root is None:
        root = os.environ.get("FAIRPRUNE_DATA_ROOT") or None
    stamp = os.stat(ds).st_mtime_ns if ds.endswith(".npz") else None
    key = json.dumps([ds, stamp, spec.target, spec.sensitive, str(root), profile.data_seed, profile.limits,
                      profile.dataset_options.get(ds, {})], sort_keys=True, default=str)
    if key not in _SPLITS_CACHE:
        if len(_SPLITS_CACHE) >= _SPLITS_CACHE_MAX:
            _SPLITS_CACHE.pop(next(iter(_SPLITS_CACHE)))
        _SPLITS_CACHE[key] = _load_splits(spec, profile, root)
    return _SPLITS_CACHE[key]


def _load_splits(spec: RunSpec, profile: Profile, root: Any) -> Any:
    from . import data as _data

    ds = str(spec.dataset)
    if ds.endswith(".npz"):
        splits = _data.load_dataset(ds, seed=profile.data_seed)
    else:
        opts = dict(profile.dataset_options.get(ds, {}))
        splits = _data.load_dataset(ds, root=root if ds in ("celeba", "lfw") else None, target=spec.target,
                                    sensitive=spec.sensitive, seed=profile.data_seed, **opts)
    parts = [_stratified_subsample(d, profile.limits.get(k), profile.data_seed, k) for k, d in splits.items()]
    return _data.Splits(*parts, meta=dict(splits.meta))


def _attribute_names(splits: Any, spec: RunSpec) -> tuple[str | None, str | None]:
    """The target / sensitive attribute names actually used (the loader's defaults filled in)."""
    meta = getattr(splits, "meta", {}) or {}
    tgt = spec.target if spec.target is not None else meta.get("target")
    sen = spec.sensitive if spec.sensitive is not None else meta.get("sensitive")
    return (None if tgt is None else str(tgt)), (None if sen is None else str(sen))


# ---------------------------------------------------------------------------------------------
# atomic files
# ---------------------------------------------------------------------------------------------
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (temporary file in the same folder, then ``os.replace``)."""
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode())


def _atomic_torch_save(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove it is writable; ``ValueError`` naming it otherwise."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"output folder {str(path)!r} is not writable ({e.strerror or e})") from None
    return path


# ---------------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------------
def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: str) -> str:
    """A human-readable name of the device (GPU model or CPU model)."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return _cpu_name()


def provenance(device: str = "cpu") -> dict[str, Any]:
    """Where a result comes from: versions, git commit (and whether the tracked tree was dirty),
    device, a machine description without the hostname, and the UTC date."""
    repo = Path(__file__).resolve().parents[1]
    commit = dirty = None
    if (repo / ".git").exists():
        commit = _git(["rev-parse", "HEAD"], repo)
        status = _git(["status", "--porcelain", "--untracked-files=no"], repo)
        dirty = None if status is None else bool(status)
    return {
        "package": "fairprune-lite",
        "version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs",
        "torch_threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


# ---------------------------------------------------------------------------------------------
# dense pretraining (cached, resumable per epoch)
# ---------------------------------------------------------------------------------------------
def default_cache_dir(out: str | os.PathLike | None = None) -> Path:
    """``$FAIRPRUNE_CACHE`` if set, else ``<out>/cache`` (``runs/cache`` without ``out``)."""
    env = os.environ.get("FAIRPRUNE_CACHE")
    if env:
        return Path(env)
    return Path(out if out is not None else "runs") / "cache"


def _build_model(spec: RunSpec, profile: Profile, splits: Any) -> tuple[nn.Module, str, Any]:
    from . import models as _models

    name = spec.model or profile.model_for(spec.dataset, splits.input_shape)
    width = profile.widths.get(name)
    model = _models.make_model(name, in_shape=splits.input_shape, width=width, seed=spec.seed)
    return model, name, width


def _dense_key(spec: RunSpec, profile: Profile, model_name: str, width: Any, splits: Any) -> str:
    ds = str(spec.dataset)
    data_id: Any = ds
    if ds.endswith(".npz"):
        h = hashlib.sha256()
        with open(ds, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        data_id = h.hexdigest()
    knobs = {
        "data": data_id, "target": spec.target, "sensitive": spec.sensitive, "model": model_name,
        "width": width, "seed": spec.seed, "profile": profile.name, "data_seed": profile.data_seed,
        "limits": profile.limits, "dataset_options": profile.dataset_options.get(ds, {}),
        "batch_size": profile.batch_size, "epochs": profile.pretrain_epochs, "lr": profile.pretrain_lr,
        "wd": profile.pretrain_weight_decay, "n": [len(d) for d in splits],
    }
    blob = json.dumps(knobs, sort_keys=True, default=str)
    return f"{_slug(Path(ds).stem if ds.endswith('.npz') else ds)}_{model_name}_seed{spec.seed}_" \
           f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def pretrain(spec: RunSpec, profile: Profile, splits: Any, *, cache_dir: str | os.PathLike | None,
             device: str = "cpu", progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The dense model of ``spec`` trained on ``splits.train``, from the cache when present.

    Checkpoints are written atomically after every epoch (``{"state_dict", "epoch", "cost"}``,
    tensors and plain values only) and loaded with ``weights_only=True``; a checkpoint that fails
    to load is reported and training restarts from scratch. Returns the model (in ``eval`` mode,
    on ``device``) and the pretraining cost (``cached`` tells whether any epoch was reused).
    """
    from . import train as _train

    model, name, width = _build_model(spec, profile, splits)
    model.to(device)
    path = None
    start, cost_acc = 0, {"iterations": 0, "forward_passes": 0, "backward_passes": 0, "examples": 0,
                          "wall_time_s": 0.0}
    cached = False
    if cache_dir is not None:
        path = Path(cache_dir) / "dense" / (_dense_key(spec, profile, name, width, splits) + ".pt")
        if path.is_file():
            try:
                ck = torch.load(path, map_location=device, weights_only=True)
                model.load_state_dict(ck["state_dict"])
                start = int(ck["epoch"])
                cost_acc = {k: ck["cost"][k] for k in cost_acc}
                cached = True
            except Exception as e:  # a corrupt checkpoint is reported, never trusted
                print(f"warning: dense checkpoint {path} is unreadable ({type(e).__name__}: {e}); retraining",
                      file=sys.stderr)
                model, name, width = _build_model(spec, profile, splits)
                model.to(device)
                start, cached = 0, False
    epochs = int(profile.pretrain_epochs)
    for epoch in range(start, epochs):
        lr = profile.pretrain_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))
        loader = _train.make_loader(splits.train, profile.batch_size, shuffle=True,
                                    seed=spec.seed * 100_003 + epoch)
        counter = _train.PassCounter()
        _train.set_seed(spec.seed * 100_003 + epoch)
        _train.fit(model, loader, epochs=1, lr=lr, weight_decay=profile.pretrain_weight_decay,
                   counter=counter, progress=progress)
        c = counter.as_dict()
        for k in cost_acc:
            cost_acc[k] += c[k]
        if path is not None:
            _atomic_torch_save(path, {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                      "epoch": epoch + 1, "cost": dict(cost_acc),
                                      "meta": {"model": name, "width": width, "seed": spec.seed,
                                               "profile": profile.name}})
    model.eval()
    return model, dict(cost_acc) | {"cached": cached, "epochs": epochs, "model": name, "width": width}


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
def _make_constraint(spec: RunSpec, profile: Profile) -> Any:
    from .constraints import FairnessConstraint

    kw = {"surrogate": spec.surrogate} if spec.surrogate is not None else {}
    return FairnessConstraint(spec.constraint, spec.tau, dual_lr=profile.dual_lr, **kw)


def _scaled(n: int, budget: float) -> int:
    return max(1, int(round(n * budget)))


def _method_arguments(spec: RunSpec, profile: Profile) -> dict[str, Any]:
    """The pruning-stage arguments the profile sets for ``spec.method`` (keyword arguments of
    :func:`fairprune_lite.pruners.prune`), before the spec's own ``method_kwargs``."""
    args: dict[str, Any] = {
        "finetune_steps": _scaled(profile.finetune_steps, spec.budget),
        "batch_size": profile.batch_size,
        "lr": profile.finetune_lr,
    }
    if spec.method in ("bifp", "bip"):
        args.update(steps=_scaled(profile.bifp_steps, spec.budget), alpha=profile.bifp_alpha,
                    beta=profile.bifp_beta, gamma=profile.bifp_gamma)
    return args


def _thin(history: Sequence[Any], n_max: int = HISTORY_MAX) -> list[Any]:
    if len(history) <= n_max:
        return list(history)
    idx = np.unique(np.linspace(0, len(history) - 1, n_max).round().astype(int))
    return [history[i] for i in idx]


def run(spec: RunSpec | Mapping[str, Any], *, out: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None, device: str | None = None,
        progress: bool = False, quiet: bool = True, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run one pruning experiment and return its result dict (see the module docstring).

    ``out``: when given, the result is written there (atomically) as ``<run_id>.json`` and the
    final weights, if ``spec.save_weights``, as ``<run_id>.weights.pt``. ``cache_dir``: where
    dense checkpoints live (default :func:`default_cache_dir`; ``False``-y string ``""`` is not
    accepted, pass a folder). ``device`` overrides the profile's.
    """
    from . import pruners
    from . import train as _train

    if not isinstance(spec, RunSpec):
        spec = RunSpec.from_dict(spec)
    profile = check_spec(spec)
    dev = profile.resolve_device(device)
    if out is not None:
        check_writable(out)
    if cache_dir is None:
        cache_dir = default_cache_dir(out)
    threads_before = torch.get_num_threads()
    if profile.threads:
        torch.set_num_threads(int(profile.threads))
    try:
        return _run(spec, profile, dev, out=out, cache_dir=cache_dir, progress=progress, quiet=quiet, root=root)
    finally:
        torch.set_num_threads(threads_before)


def _run(spec: RunSpec, profile: Profile, dev: str, *, out: Any, cache_dir: Any, progress: bool, quiet: bool,
         root: Any) -> dict[str, Any]:
    from . import pruners
    from . import train as _train

    t0 = time.perf_counter()
    splits = load_splits(spec, profile, root=root)
    _log(f"[{spec.run_id()}] data: " + ", ".join(f"{k} {len(d)}" for k, d in splits.items()), quiet)
    dense, pre_cost = pretrain(spec, profile, splits, cache_dir=cache_dir, device=dev, progress=progress)
    dense_metrics = {k: _train.evaluate(dense, getattr(splits, k), batch_size=profile.eval_batch_size)
                     for k in SPLITS}

    constraint = _make_constraint(spec, profile)
    kwargs = _method_arguments(spec, profile) | dict(spec.method_kwargs)
    if spec.structured is not None:
        kwargs["structured"] = spec.structured
    counter = _train.PassCounter()
    _train.set_seed(spec.seed)
    import copy

    result = pruners.prune(spec.method, copy.deepcopy(dense), splits, sparsity=spec.sparsity, seed=spec.seed,
                           constraint=constraint, device=dev, counter=counter, progress=progress, **kwargs)
    pruned = result.model
    if pruned is None:
        raise RuntimeError(f"method {spec.method!r} returned no model")
    from . import masks as _masks

    if any(_masks.is_masked(m) for m in pruned.modules()):
        pruned = copy.deepcopy(pruned)
        _masks.remove_masks(pruned, bake=True)
    metrics = {k: _train.evaluate(pruned, getattr(splits, k), dense_model=dense, batch_size=profile.eval_batch_size)
               for k in SPLITS}
    d = result.to_dict()
    target, sensitive = _attribute_names(splits, spec)
    cost = {k: d["cost"].get(k) for k in ("iterations", "forward_passes", "backward_passes", "examples",
                                         "wall_time_s") if k in d["cost"]}
    for k in ("iterations", "forward_passes", "backward_passes", "examples"):
        cost.setdefault(k, getattr(counter, k))
    cost.setdefault("wall_time_s", counter.wall_time_s)
    run_id = spec.run_id()
    res: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_id,
        "spec": spec.to_dict(),
        "label": spec.run_label,
        "method": spec.method,
        "dataset": str(spec.dataset),
        "target": target,
        "sensitive": sensitive,
        "model": pre_cost["model"],
        "width": pre_cost["width"],
        "sparsity_target": float(spec.sparsity),
        "sparsity": float(d["sparsity"]),
        "structured": d.get("config", {}).get("structured", spec.structured),
        "seed": spec.seed,
        "profile": profile.name,
        "profile_settings": profile.to_dict(),
        "constraint": spec.constraint,
        "tau": float(spec.tau),
        "surrogate": constraint.state_dict().get("surrogate", spec.surrogate),
        "constraint_config": constraint.state_dict(),
        "budget": float(spec.budget),
        "n": {k: len(v) for k, v in splits.items()},
        "val": metrics["val"],
        "test": metrics["test"],
        "dense": dense_metrics,
        "cost": cost,
        "pretrain_cost": {k: v for k, v in pre_cost.items() if k not in ("model", "width")},
        "wall_time_s": time.perf_counter() - t0,
        "layers": d.get("masks", {}),
        "method_config": d.get("config", {}),
        "history": _thin(d.get("history", [])),
        "weights": None,
        "provenance": provenance(dev),
    }
    res = _train.to_jsonable(res)
    res = _finite(res)
    if out is not None:
        out = Path(out)
        if spec.save_weights:
            wname = f"{run_id}.weights.pt"
            sd = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
            _atomic_torch_save(out / wname, {"state_dict": sd, "model": res["model"], "width": res["width"],
                                             "masks": {k: v.detach().cpu() for k, v in result.masks.items()}})
            res["weights"] = wname
        validate_result(res)
        write_json(out / f"{run_id}.json", res)
    else:
        validate_result(res)
    return res


def _train_jsonable(obj: Any) -> Any:
    from .train import to_jsonable

    return _finite(to_jsonable(obj))


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` (JSON has no NaN) so files stay strictly valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def run_to_file(spec: RunSpec, out: str | os.PathLike, **kw: Any) -> Path:
    """:func:`run` and return the path of the written result file."""
    res = run(spec, out=out, **kw)
    return Path(out) / f"{res['run_id']}.json"


# ---------------------------------------------------------------------------------------------
# reading and validating results
# ---------------------------------------------------------------------------------------------
_REQUIRED = {
    "schema": str, "run_id": str, "spec": dict, "label": str, "method": str, "dataset": str,
    "model": str, "sparsity_target": float, "sparsity": float, "seed": int, "profile": str,
    "constraint": str, "tau": float, "val": dict, "test": dict, "dense": dict, "cost": dict,
    "provenance": dict,
}
_METRIC_KEYS = ("accuracy", "accuracy_gap", "demographic_parity_difference", "equalized_odds_difference",
                "majority_baseline", "degradation", "degradation_gap")
_COST_KEYS = ("iterations", "forward_passes", "backward_passes", "wall_time_s")


def validate_result(res: Any, *, where: str = "result") -> dict[str, Any]:
    """Check the schema of a result dict; raise :class:`ResultError` naming what is wrong."""
    if not isinstance(res, dict):
        raise ResultError(f"{where}: not a JSON object")
    for key, typ in _REQUIRED.items():
        if key not in res:
            raise ResultError(f"{where}: missing key {key!r}")
        v = res[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) if typ is float else isinstance(v, typ)
        if typ is int and isinstance(v, bool):
            ok = False
        if not ok:
            raise ResultError(f"{where}: {key!r} must be {typ.__name__}, got {type(v).__name__}")
    if res["schema"] != SCHEMA:
        raise ResultError(f"{where}: unknown schema {res['schema']!r} (expected {SCHEMA!r})")
    for split in SPLITS:
        m = res[split]
        for k in _METRIC_KEYS:
            v = m.get(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ResultError(f"{where}: {split}.{k} missing or not a number")
        for k in ("accuracy", "accuracy_gap"):
            if not 0.0 <= m[k] <= 1.0:
                raise ResultError(f"{where}: {split}.{k} = {m[k]} outside [0, 1]")
        if split not in res["dense"] or "accuracy" not in res["dense"][split]:
            raise ResultError(f"{where}: dense.{split}.accuracy missing")
    for k in _COST_KEYS:
        v = res["cost"].get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ResultError(f"{where}: cost.{k} missing or not a non-negative number")
    if not 0.0 <= res["sparsity"] <= 1.0:
        raise ResultError(f"{where}: sparsity {res['sparsity']} outside [0, 1]")
    try:
        spec = RunSpec.from_dict(res["spec"])
    except (TypeError, ValueError) as e:
        raise ResultError(f"{where}: bad spec ({e})") from None
    if spec.run_id() != res["run_id"]:
        raise ResultError(f"{where}: run_id does not match its spec")
    return res


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one result file; :class:`ResultError` if it does not parse or validate."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ResultError(f"{p}: unreadable ({e.strerror or e})") from None
    try:
        res = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    res = validate_result(res, where=str(p))
    if p.name != f"{res['run_id']}.json":
        raise ResultError(f"{p}: file name does not match run_id {res['run_id']!r}")
    return res


def load_results(folder: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """All valid results in ``folder`` (recursively) and the ``(path, reason)`` of bad files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} not found")
    good, bad = [], []
    for p in sorted(folder.rglob("*.json")):
        rel = p.relative_to(folder).parts
        if p.name.startswith(".") or p.name == "sweep.json" or "interp" in rel[:-1] or "cache" in rel[:-1]:
            continue
        try:
            good.append(load_result(p) | {"_path": str(p)})
        except ResultError as e:
            bad.append((str(p), str(e)))
    return good, bad


# ---------------------------------------------------------------------------------------------
# sweep configuration
# ---------------------------------------------------------------------------------------------
CONFIG_KEYS = {
    "name", "figure", "profile", "out", "datasets", "models", "methods", "sparsities", "seeds",
    "constraint", "taus", "surrogate", "structured", "budgets", "settings", "save_weights", "pairs",
    "points", "spread", "description",
}
_DATASET_KEYS = {"dataset", "target", "sensitive", "model", "label"}
_METHOD_KEYS = {"method", "label", "structured", "taus"}


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sweep configuration (YAML or TOML) and check its keys; :class:`ConfigError` on a
    typo, a bad value or an unknown file type, :class:`FileNotFoundError` if missing."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} not found")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            cfg = yaml.safe_load(text)
        elif p.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            cfg = tomllib.loads(text)
        else:
            raise ConfigError(f"{p}: config must end in .yaml, .yml or .toml")
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{p}: cannot parse ({type(e).__name__}: {e})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    cfg = dict(cfg)
    cfg.setdefault("name", p.stem)
    check_config(cfg, where=str(p))
    return cfg


def _suggest(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_config(cfg: Mapping[str, Any], *, where: str = "config") -> None:
    """Check keys and value types of a sweep configuration (no data is loaded)."""
    for k in cfg:
        if k not in CONFIG_KEYS:
            raise ConfigError(f"{where}: unknown key {k!r}{_suggest(k, CONFIG_KEYS)}; known keys: "
                              f"{', '.join(sorted(CONFIG_KEYS))}")
    fig = cfg.get("figure", "sparsity")
    if fig not in FIGURE_KINDS:
        raise ConfigError(f"{where}: figure must be one of {', '.join(FIGURE_KINDS)}, got {fig!r}")
    for k in ("methods", "sparsities"):
        if k not in cfg:
            raise ConfigError(f"{where}: key {k!r} is required")
    for k in ("datasets", "models", "methods", "taus", "budgets", "pairs"):
        if k in cfg and not isinstance(cfg[k], list):
            raise ConfigError(f"{where}: {k!r} must be a list")
    for i, entry in enumerate(cfg.get("datasets", []) or []):
        if isinstance(entry, Mapping):
            for k in entry:
                if k not in _DATASET_KEYS:
                    raise ConfigError(f"{where}: datasets[{i}]: unknown key {k!r}{_suggest(k, _DATASET_KEYS)}")
            if "dataset" not in entry:
                raise ConfigError(f"{where}: datasets[{i}] needs a 'dataset' key")
        elif not isinstance(entry, str):
            raise ConfigError(f"{where}: datasets[{i}] must be a name or a mapping")
    methods = _methods()
    for i, entry in enumerate(cfg["methods"]):
        name = entry.get("method") if isinstance(entry, Mapping) else entry
        if not isinstance(name, str):
            raise ConfigError(f"{where}: methods[{i}] must be a method name or a mapping with 'method'")
        if name not in methods:
            raise ConfigError(f"{where}: methods[{i}]: unknown method {name!r}{_suggest(name, methods)}; "
                              f"choose one of {', '.join(methods)}")
        if isinstance(entry, Mapping):
            _check_method_kwargs(name, {k: v for k, v in entry.items() if k not in _METHOD_KEYS},
                                 where=f"{where}: methods[{i}]")
    if cfg.get("constraint", "accuracy_gap") not in CONSTRAINT_KINDS:
        raise ConfigError(f"{where}: constraint must be one of {', '.join(CONSTRAINT_KINDS)}, got {cfg['constraint']!r}")
    if "settings" in cfg:
        if not isinstance(cfg["settings"], Mapping):
            raise ConfigError(f"{where}: settings must be a mapping of profile knobs")
        try:
            PROFILES["cpu"].replace(**cfg["settings"])
        except ValueError as e:
            raise ConfigError(f"{where}: settings: {e}") from None
    if cfg.get("spread", "std") not in ("std", "minmax"):
        raise ConfigError(f"{where}: spread must be 'std' or 'minmax'")
    if "profile" in cfg and cfg["profile"] not in PROFILES:
        raise ConfigError(f"{where}: unknown profile {cfg['profile']!r}; choose one of {', '.join(PROFILES)}")
    if fig == "interpolation":
        if not cfg.get("pairs"):
            raise ConfigError(f"{where}: the interpolation figure needs 'pairs' of method labels")
        if not cfg.get("save_weights"):
            raise ConfigError(f"{where}: the interpolation figure needs save_weights: true")
    try:
        _sparsities(cfg["sparsities"])
        _seeds(cfg.get("seeds", [0]))
        taus = list(cfg.get("taus", [0.02]))
        for m in cfg["methods"]:
            if isinstance(m, Mapping) and "taus" in m:
                if not isinstance(m["taus"], list) or not m["taus"]:
                    raise ValueError(f"methods entry {m.get('method')!r}: taus must be a non-empty list")
                taus += list(m["taus"])
        for t in taus:
            _check_number(t, "taus entry", 0.0, 1.0, high_open=False)
        for b in cfg.get("budgets", [1]):
            _check_number(b, "budgets entry", 0.0, 1e6)
            if b <= 0:
                raise ValueError(f"budgets entries must be positive, got {b!r}")
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    labels = [_method_label(e) for e in cfg["methods"]]
    dup = sorted({l for l in labels if labels.count(l) > 1})
    if dup:
        raise ConfigError(f"{where}: method labels must be unique, repeated: {dup} (give each a 'label')")
    for pair in cfg.get("pairs", []) or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in labels for p in pair)):
            raise ConfigError(f"{where}: each pair must be [label_a, label_b] of method labels {labels}, got {pair!r}")


def _check_method_kwargs(method: str, kwargs: Mapping[str, Any], *, where: str) -> None:
    """Reject keyword arguments the method does not accept (when the registry can tell)."""
    checker = getattr(__import__(f"{__package__}.pruners", fromlist=["check_method_kwargs"]),
                      "check_method_kwargs", None)
    if checker is not None:
        try:
            checker(method, dict(kwargs))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
        return
    import inspect

    fn = _methods()[method]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for k in kwargs:
        if k not in params:
            raise ConfigError(f"{where}: method {method!r} has no option {k!r}{_suggest(k, params)}")


def _method_label(entry: Any) -> str:
    if isinstance(entry, Mapping):
        return str(entry.get("label") or entry["method"])
    return str(entry)


def _sparsities(value: Any) -> list[float]:
    if isinstance(value, str):
        m = re.fullmatch(r"lottery:(\d+)", value.strip())
        if not m:
            raise ValueError(f"sparsities must be a list of numbers or 'lottery:K', got {value!r}")
        return lottery_levels(int(m.group(1)))
    if not isinstance(value, list) or not value:
        raise ValueError("sparsities must be a non-empty list")
    return [_check_number(v, "sparsities entry", 0.0, 1.0) for v in value]


def _seeds(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"seeds as a count must be positive, got {value}")
        return list(range(value))
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"seeds must be a positive count or a list of non-negative integers, got {value!r}")
    return list(value)


def expand_config(cfg: Mapping[str, Any], *, profile: str | None = None) -> list[RunSpec]:
    """The runs of a sweep: datasets x models x methods x sparsities x taus x budgets x seeds.

    ``profile`` (the command line's choice) overrides the config's ``profile`` key, which
    overrides ``$FAIRPRUNE_PROFILE``.
    """
    check_config(cfg)
    prof_name = profile or cfg.get("profile") or get_profile().name
    prof = get_profile(prof_name)
    datasets = cfg.get("datasets") or [prof.default_dataset]
    models = cfg.get("models") or [None]
    specs = []
    for d in datasets:
        d = {"dataset": d} if isinstance(d, str) else dict(d)
        d_models = [d.get("model")] if d.get("model") else models
        for model in d_models:
            for m in cfg["methods"]:
                entry = {"method": m} if isinstance(m, str) else dict(m)
                kwargs = {k: v for k, v in entry.items() if k not in _METHOD_KEYS}
                structured = entry.get("structured", cfg.get("structured"))
                for sp in _sparsities(cfg["sparsities"]):
                    for tau in entry.get("taus", cfg.get("taus", [0.02])):
                        for budget in cfg.get("budgets", [1]):
                            for seed in _seeds(cfg.get("seeds", [0])):
                                specs.append(RunSpec(
                                    method=entry["method"], dataset=str(d["dataset"]), sparsity=float(sp),
                                    seed=seed, target=d.get("target"), sensitive=d.get("sensitive"),
                                    model=model, profile=prof_name,
                                    constraint=cfg.get("constraint", "accuracy_gap"), tau=float(tau),
                                    surrogate=cfg.get("surrogate"), structured=structured,
                                    label=entry.get("label"), method_kwargs=kwargs, budget=float(budget),
                                    settings=dict(cfg.get("settings", {}) or {}),
                                    save_weights=bool(cfg.get("save_weights", False)),
                                ))
    return specs


def sweep_dir(cfg: Mapping[str, Any], out: str | os.PathLike | None = None) -> Path:
    """Where a sweep's results live: ``<out>/<name>`` (``out`` from the argument, the config, or
    ``runs``)."""
    return Path(out or cfg.get("out") or "runs") / _slug(cfg["name"])


def _preflight_data(specs: Sequence[RunSpec], root: Any = None) -> None:
    """Load every distinct dataset of a sweep once (catches unknown attributes / missing files
    before any training)."""
    seen = set()
    for spec in specs:
        key = (spec.dataset, spec.target, spec.sensitive, spec.profile, json.dumps(spec.settings, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        profile = check_spec(spec)
        load_splits(spec, profile, root=root)


def sweep(config: str | os.PathLike | Mapping[str, Any], *, out: str | os.PathLike | None = None,
          profile: str | None = None, device: str | None = None, quiet: bool | None = None,
          progress: bool | None = None, dry_run: bool = False, root: Any = None) -> dict[str, Any]:
    """Run every missing run of a sweep configuration; return a summary.

    Finished runs (a result file that loads and validates, made with the same profile knobs) are
    skipped; a corrupt result file is reported, renamed to ``<name>.corrupt`` and recomputed; a
    result made with other profile knobs (the profile's definition changed) is renamed to
    ``<name>.stale`` and recomputed. Before any training the whole
    configuration is checked, the output folder proven writable and every dataset loaded once.
    Summary keys: ``folder``, ``total``, ``done_before``, ``ran``, ``corrupt`` (list of
    ``(path, reason)``), ``stale``, ``failed`` (``(run_id, error)``), ``wall_time_s``.
    """
    quiet = quiet_default() if quiet is None else quiet
    progress = (not quiet) if progress is None else progress
    cfg = load_config(config) if not isinstance(config, Mapping) else dict(config)
    if isinstance(config, Mapping):
        cfg.setdefault("name", "sweep")
        check_config(cfg)
    specs = expand_config(cfg, profile=profile)
    folder = check_writable(sweep_dir(cfg, out))
    for spec in specs:
        check_spec(spec)
    _preflight_data(specs, root)
    write_json(folder / "sweep.json", {"config": cfg, "profile": specs[0].profile if specs else profile,
                                       "runs": [s.run_id() for s in specs]})
    todo, corrupt, stale, done_before = [], [], [], 0
    for spec in specs:
        p = folder / f"{spec.run_id()}.json"
        if p.exists():
            try:
                old = load_result(p)
            except ResultError as e:
                corrupt.append((str(p), str(e)))
                _log(f"corrupt result, recomputing: {e}", False)
                os.replace(p, p.with_name(p.name + ".corrupt"))
            else:
                current = _train_jsonable(check_spec(spec).to_dict())
                if old.get("profile_settings") == current:
                    done_before += 1
                    continue
                stale.append(str(p))
                _log(f"stale result (profile {spec.profile!r} has changed since), recomputing: {p}", False)
                os.replace(p, p.with_name(p.name + ".stale"))
        todo.append(spec)
    _log(f"sweep {cfg['name']}: {len(specs)} runs, {done_before} done, {len(todo)} to run -> {folder}", quiet)
    summary: dict[str, Any] = {"folder": str(folder), "total": len(specs), "done_before": done_before,
                               "ran": [], "corrupt": corrupt, "stale": stale, "failed": []}
    if dry_run:
        summary["todo"] = [s.run_id() for s in todo]
        return summary
    t0 = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"sweep {cfg['name']}")
    cache = default_cache_dir(Path(out or cfg.get("out") or "runs"))
    try:
        for spec in todo:
            res = run(spec, out=folder, cache_dir=cache, device=device, progress=False, quiet=True, root=root)
            summary["ran"].append(res["run_id"])
            _log(f"  {res['run_id']}: test acc {res['test']['accuracy']:.4f} gap {res['test']['accuracy_gap']:.4f} "
                 f"sparsity {res['sparsity']:.3f} ({res['wall_time_s']:.1f} s)", quiet or bar is not None)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    summary["wall_time_s"] = time.perf_counter() - t0
    return summary


def sweep_results(cfg: Mapping[str, Any], *, out: Any = None, profile: str | None = None) -> tuple[list[dict], list[str]]:
    """The stored results of a sweep's grid, and the run ids still missing."""
    specs = expand_config(cfg, profile=profile)
    folder = sweep_dir(cfg, out)
    got, missing = [], []
    for spec in specs:
        p = folder / f"{spec.run_id()}.json"
        try:
            got.append(load_result(p) | {"_path": str(p)})
        except ResultError:
            missing.append(spec.run_id())
    return got, missing


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------
_IGNORED = {"wall_time_s", "provenance", "_path", "cached", "date", "weights"}


def _compare(a: Any, b: Any, path: str, atol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in _IGNORED:
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: present in only one of the two")
                continue
            _compare(a[k], b[k], f"{path}.{k}", atol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _compare(x, y, f"{path}[{i}]", atol, out)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        if not abs(float(a) - float(b)) <= atol:
            out.append(f"{path}: stored {a!r} != recomputed {b!r}")
    elif a != b:
        out.append(f"{path}: stored {a!r} != recomputed {b!r}")


_VERIFIED = ("sparsity", "val", "test", "dense", "cost", "layers", "n", "target", "sensitive", "model")


def verify(results_dir: str | os.PathLike, n: int = 3, seed: int = 0, *, atol: float = 1e-9,
           fresh_cache: bool = True, device: str | None = None, quiet: bool | None = None,
           root: Any = None) -> dict[str, Any]:
    """Recompute ``n`` randomly chosen stored results (chosen with ``seed``) and compare.

    Compared: measured sparsity, every metric of ``val`` / ``test`` / ``dense``, the counts of
    ``cost`` and per-layer masks, within ``atol`` (CPU runs are bit-for-bit repeatable; wall
    times, dates and provenance are not compared). ``fresh_cache`` recomputes the dense
    pretraining too (in a temporary cache). Results produced on another kind of device (e.g. a
    GPU) are skipped, not compared. Returns ``{"ok", "checked", "mismatches", "bad_files",
    "skipped"}``; ``ok`` is False on any mismatch or unreadable file.
    """
    quiet = quiet_default() if quiet is None else quiet
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    results, bad = load_results(results_dir)
    if not results and not bad:
        raise ValueError(f"no result files in {results_dir}")
    here = "cuda" if (device or "").startswith("cuda") else "cpu"
    eligible, skipped = [], []
    for r in results:
        kind = "cuda" if str(r["provenance"].get("device", "cpu")).startswith("cuda") else "cpu"
        (eligible if kind == here else skipped).append(r)
    rng = random.Random(seed)
    sample = rng.sample(eligible, min(n, len(eligible)))
    report: dict[str, Any] = {"checked": [], "mismatches": {}, "bad_files": bad,
                              "skipped": [r["run_id"] for r in skipped]}
    with tempfile.TemporaryDirectory(prefix="fairprune-verify-") as tmp:
        for r in sample:
            spec = RunSpec.from_dict(r["spec"])
            cache = Path(tmp) / "cache" if fresh_cache else default_cache_dir(Path(r["_path"]).parent.parent)
            _log(f"verify {r['run_id']} ...", quiet)
            new = run(spec, out=None, cache_dir=cache, device=device, quiet=True, root=root)
            diffs: list[str] = []
            for k in _VERIFIED:
                _compare(r.get(k), new.get(k), k, atol, diffs)
            report["checked"].append(r["run_id"])
            if diffs:
                report["mismatches"][r["run_id"]] = diffs
                _log(f"  MISMATCH ({len(diffs)}): " + "; ".join(diffs[:5]), quiet)
            else:
                _log("  ok", quiet)
    report["ok"] = not report["mismatches"] and not bad
    return report


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _mean_spread(values: Sequence[float], spread: str) -> tuple[float, float, float]:
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(a.mean())
    if spread == "minmax":
        return m, float(a.min()), float(a.max())
    sd = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return m, m - sd, m + sd


def caption(results: Sequence[Mapping[str, Any]]) -> str:
    """One line naming the profile(s) and the provenance (commit, dates, devices) of ``results``."""
    if not results:
        return "no results"
    profiles = sorted({r["profile"] for r in results})
    commits = sorted({(r["provenance"].get("git_commit") or "no-git")[:10]
                      + ("+dirty" if r["provenance"].get("git_dirty") else "") for r in results})
    dates = sorted(r["provenance"].get("date", "")[:10] for r in results)
    devices = sorted({r["provenance"].get("device_name", "?") for r in results})
    seeds = sorted({r["seed"] for r in results})
    commit = commits[0] if len(commits) == 1 else f"{len(commits)} commits ({', '.join(commits[:3])}...)"
    date = dates[0] if dates[0] == dates[-1] else f"{dates[0]}..{dates[-1]}"
    return (f"profile {', '.join(profiles)} | fairprune-lite {results[0]['provenance'].get('version')} "
            f"commit {commit} | {date} | {'; '.join(devices)} | {len(results)} runs, seeds {seeds}")


def _group(results: Iterable[Mapping[str, Any]], keys: Callable[[Mapping[str, Any]], Any]) -> dict[Any, list]:
    out: dict[Any, list] = {}
    for r in results:
        out.setdefault(keys(r), []).append(r)
    return out


def _panel_key(r: Mapping[str, Any]) -> tuple:
    return (r["dataset"] if not r["dataset"].endswith(".npz") else Path(r["dataset"]).stem, r.get("target"), r["model"])


def _labels_in_order(results: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r["label"] not in seen:
            seen.append(r["label"])
    return seen


def _panel_title(key: tuple) -> str:
    ds, tgt, model = key
    tgt_s = "" if tgt is None else f" / {str(tgt).split(' (')[0]}"
    return f"{ds}{tgt_s} / {model}"


def _fig_sparsity(results: list, spread: str, plt: Any) -> Any:
    panels = _group(results, _panel_key)
    labels = _labels_in_order(results)
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.2), squeeze=False, sharex="col")
    colors = {l: f"C{i % 10}" for i, l in enumerate(labels)}
    for j, (key, rs) in enumerate(panels.items()):
        for row, metric, name in ((0, "accuracy", "test accuracy"), (1, "accuracy_gap", "bias (test accuracy gap)")):
            ax = axes[row][j]
            for label in labels:
                pts = _group([r for r in rs if r["label"] == label], lambda r: r["sparsity_target"])
                if not pts:
                    continue
                xs = sorted(pts)
                stats = [_mean_spread([r["test"][metric] for r in pts[x]], spread) for x in xs]
                ax.plot(xs, [s[0] for s in stats], "o-", color=colors[label], label=label, ms=3.5)
                ax.fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], color=colors[label], alpha=0.18)
            dense = _mean_spread([r["dense"]["test"][metric] for r in rs], spread)[0]
            ax.axhline(dense, color="k", ls="--", lw=0.9, label="dense")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(_panel_title(key), fontsize=10)
            else:
                ax.set_xlabel("sparsity")
    axes[0][0].legend(fontsize=8)
    return fig


def _fig_tradeoff(results: list, spread: str, plt: Any) -> Any:
    labels = _labels_in_order(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, label in enumerate(labels):
        rs = [r for r in results if r["label"] == label]
        by_tau = _group(rs, lambda r: r["tau"])
        taus = sorted(by_tau)
        xs = [_mean_spread([r["test"]["accuracy_gap"] for r in by_tau[t]], spread) for t in taus]
        ys = [_mean_spread([r["test"]["accuracy"] for r in by_tau[t]], spread) for t in taus]
        ax.errorbar([x[0] for x in xs], [y[0] for y in ys],
                    xerr=[[x[0] - x[1] for x in xs], [x[2] - x[0] for x in xs]],
                    yerr=[[y[0] - y[1] for y in ys], [y[2] - y[0] for y in ys]],
                    fmt="o-", color=f"C{i % 10}", label=label, ms=4, capsize=2, lw=1.2)
        if len(taus) > 1:
            for t, x, y in zip(taus, xs, ys):
                ax.annotate(f"{t:g}", (x[0], y[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    sp = sorted({r["sparsity_target"] for r in results})
    ax.set_xlabel("bias (test accuracy gap)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"accuracy-bias trade-off at sparsity {', '.join(f'{s:g}' for s in sp)} (labels: tau)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def iterations_to_fair(results: Sequence[Mapping[str, Any]], *, split: str = "val") -> dict[str, dict[int, float | None]]:
    """Per label and seed, the fewest pruning-stage iterations among runs (e.g. different
    budgets) whose ``split`` accuracy gap is within the run's ``tau``; ``None`` if none is."""
    out: dict[str, dict[int, float | None]] = {}
    for label, rs in _group(results, lambda r: r["label"]).items():
        out[label] = {}
        for seed, rr in _group(rs, lambda r: r["seed"]).items():
            fair = [r["cost"]["iterations"] for r in rr if r[split]["accuracy_gap"] <= r["tau"]]
            out[label][seed] = float(min(fair)) if fair else None
    return out


def _fig_cost(results: list, spread: str, plt: Any) -> Any:
    labels = _labels_in_order(results)
    itf = iterations_to_fair(results)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    ax = axes[0]
    for i, label in enumerate(labels):
        vals = [v for v in itf[label].values() if v is not None]
        n_all = len(itf[label])
        if vals:
            m, lo, hi = _mean_spread(vals, spread)
            ax.bar(i, m, yerr=[[m - lo], [hi - m]], color=f"C{i % 10}", capsize=3)
            ax.text(i, m, f"{m:.0f}\n({len(vals)}/{n_all} fair)", ha="center", va="bottom", fontsize=7)
        else:
            ax.bar(i, 0, color="none", edgecolor=f"C{i % 10}", hatch="//")
            ax.text(i, 0, f"never fair\n(0/{n_all})", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    top = max([v for d in itf.values() for v in d.values() if v is not None] or [1.0])
    ax.set_ylim(0, top * 1.25)
    ax.set_ylabel("iterations to a fair sparse model")
    taus = sorted({r["tau"] for r in results})
    ax.set_title(f"fewest iterations with val accuracy gap <= tau ({', '.join(f'{t:g}' for t in taus)})", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax = axes[1]
    for i, label in enumerate(labels):
        rs = [r for r in results if r["label"] == label]
        by_b = _group(rs, lambda r: r["budget"])
        bs = sorted(by_b)
        it = [_mean_spread([r["cost"]["iterations"] for r in by_b[b]], spread)[0] for b in bs]
        gap = [_mean_spread([r["val"]["accuracy_gap"] for r in by_b[b]], spread) for b in bs]
        ax.errorbar(it, [g[0] for g in gap], yerr=[[g[0] - g[1] for g in gap], [g[2] - g[0] for g in gap]],
                    fmt="o-", color=f"C{i % 10}", label=label, ms=4, capsize=2)
    for t in taus:
        ax.axhline(t, color="k", ls=":", lw=0.9)
    ax.set_xlabel("pruning-stage iterations")
    ax.set_ylabel("val accuracy gap")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _fig_ablation(results: list, spread: str, plt: Any) -> Any:
    labels = _labels_in_order(results)
    sps = sorted({r["sparsity_target"] for r in results})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    width = 0.8 / max(1, len(labels))
    for ax, metric, name in ((axes[0], "accuracy", "test accuracy"), (axes[1], "accuracy_gap", "bias (test accuracy gap)")):
        for i, label in enumerate(labels):
            ms, los, his = [], [], []
            for sp in sps:
                m, lo, hi = _mean_spread([r["test"][metric] for r in results
                                          if r["label"] == label and r["sparsity_target"] == sp], spread)
                ms.append(m), los.append(m - lo), his.append(hi - m)
            xs = np.arange(len(sps)) + (i - (len(labels) - 1) / 2) * width
            ax.bar(xs, ms, width, yerr=[los, his], label=label, color=f"C{i % 10}", capsize=2)
        ax.set_xticks(range(len(sps)), [f"{s:g}" for s in sps])
        ax.set_xlabel("sparsity")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, axis="y")
        if metric == "accuracy":
            lo = min(r["test"]["accuracy"] for r in results)
            ax.set_ylim(max(0.0, lo - 0.05), None)
    axes[0].legend(fontsize=8)
    return fig


def _load_weights(folder: Path, res: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if not res.get("weights"):
        raise ValueError(f"{res['run_id']}: no saved weights (run the sweep with save_weights: true)")
    ck = torch.load(folder / res["weights"], map_location="cpu", weights_only=True)
    return ck["state_dict"]


def interpolation_curve(res_a: Mapping[str, Any], res_b: Mapping[str, Any], *, points: int = 21,
                        folder: str | os.PathLike | None = None, root: Any = None) -> dict[str, Any]:
    """Loss and accuracy gap of ``(1 - t) * theta_a + t * theta_b`` on ``val`` and ``test``.

    Both results must share dataset, model, seed and profile; their saved final weights (pruned
    weights are exactly zero) are interpolated entry by entry, floating buffers (BatchNorm
    statistics) too; integer buffers are taken from ``a``. Cached as
    ``<folder>/interp/<id_a>__<id_b>_<points>.json``.
    """
    from . import train as _train

    folder = Path(folder or Path(res_a["_path"]).parent)
    cache = folder / "interp" / f"{res_a['run_id']}__{res_b['run_id']}_{points}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except json.JSONDecodeError:
            print(f"warning: {cache} is corrupt; recomputing", file=sys.stderr)
    for k in ("dataset", "model", "seed", "profile", "target", "sensitive"):
        if res_a.get(k) != res_b.get(k):
            raise ValueError(f"interpolation needs two runs with the same {k}: {res_a.get(k)!r} vs {res_b.get(k)!r}")
    spec = RunSpec.from_dict(res_a["spec"])
    profile = check_spec(spec)
    splits = load_splits(spec, profile, root=root)
    model, _, _ = _build_model(spec, profile, splits)
    sa, sb = _load_weights(folder, res_a), _load_weights(folder, res_b)
    ts = np.linspace(0.0, 1.0, int(points))
    curve: dict[str, Any] = {"t": ts.tolist(), "a": res_a["run_id"], "b": res_b["run_id"],
                             "label_a": res_a["label"], "label_b": res_b["label"]}
    for split in SPLITS:
        curve[split] = {"loss": [], "accuracy": [], "accuracy_gap": []}
    for t in ts:
        sd = {k: ((1 - t) * sa[k] + t * sb[k]) if sa[k].is_floating_point() else sa[k] for k in sa}
        model.load_state_dict(sd)
        for split in SPLITS:
            m = _train.evaluate(model, getattr(splits, split), batch_size=profile.eval_batch_size)
            for k in ("loss", "accuracy", "accuracy_gap"):
                curve[split][k].append(float(m[k]))
    write_json(cache, curve)
    return curve


def _fig_interpolation(results: list, spread: str, plt: Any, cfg: Mapping[str, Any]) -> Any:
    pairs = cfg.get("pairs") or []
    if not pairs:
        raise ValueError("the interpolation figure needs 'pairs' of method labels")
    points = int(cfg.get("points", 21))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, (la, lb) in enumerate(pairs):
        curves = []
        a_runs = {(r["seed"], r["sparsity_target"], r["tau"], r["budget"], _panel_key(r)): r
                  for r in results if r["label"] == la}
        for r in results:
            if r["label"] != lb:
                continue
            key = (r["seed"], r["sparsity_target"], r["tau"], r["budget"], _panel_key(r))
            if key in a_runs:
                curves.append(interpolation_curve(a_runs[key], r, points=points))
        if not curves:
            raise ValueError(f"no pair of runs {la!r} / {lb!r} with the same seed and sparsity")
        ts = curves[0]["t"]
        for ax, metric in ((axes[0], "loss"), (axes[1], "accuracy_gap")):
            stats = [_mean_spread([c["test"][metric][j] for c in curves], spread) for j in range(len(ts))]
            ax.plot(ts, [s[0] for s in stats], "-", color=f"C{i % 10}", label=f"{la} (t=0) -> {lb} (t=1)")
            ax.fill_between(ts, [s[1] for s in stats], [s[2] for s in stats], color=f"C{i % 10}", alpha=0.18)
    axes[0].set_ylabel("test loss")
    axes[1].set_ylabel("test accuracy gap")
    for ax in axes:
        ax.set_xlabel("t along (1 - t) theta_a + t theta_b")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def figure(kind: str, results: Sequence[Mapping[str, Any]] | str | os.PathLike, *,
           out: str | os.PathLike | None = None, name: str | None = None, spread: str = "std",
           config: Mapping[str, Any] | None = None, title: str | None = None) -> Any:
    """Draw a figure of ``kind`` (:data:`FIGURE_KINDS`) from results (dicts or a results folder).

    Mean over seeds with the spread (``"std"``: one standard deviation, ``"minmax"``) as a band
    or error bars; a caption line names profile and provenance. With ``out`` the figure is
    saved as ``<out>/<name>.png`` and ``.svg`` (``name`` defaults to ``kind``). Returns the
    matplotlib figure.
    """
    if kind not in FIGURE_KINDS:
        raise ValueError(f"figure kind must be one of {', '.join(FIGURE_KINDS)}, got {kind!r}")
    if spread not in ("std", "minmax"):
        raise ValueError(f"spread must be 'std' or 'minmax', got {spread!r}")
    if isinstance(results, (str, os.PathLike)):
        results, bad = load_results(results)
        for p, why in bad:
            print(f"warning: skipping {p}: {why}", file=sys.stderr)
    results = [dict(r) for r in results]
    if not results:
        raise ValueError("no results to draw")
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind == "sparsity":
        fig = _fig_sparsity(results, spread, plt)
    elif kind == "tradeoff":
        fig = _fig_tradeoff(results, spread, plt)
    elif kind == "cost":
        fig = _fig_cost(results, spread, plt)
    elif kind == "ablation":
        fig = _fig_ablation(results, spread, plt)
    else:
        fig = _fig_interpolation(results, spread, plt, config or {})
    if title:
        fig.suptitle(title, fontsize=11)
    spread_txt = "band/bars: 1 std over seeds" if spread == "std" else "band/bars: min-max over seeds"
    import textwrap

    width_chars = max(40, int(fig.get_figwidth() * 17))
    lines = textwrap.wrap(caption(results) + " | " + spread_txt, width_chars)
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=6.5, color="0.35", ha="left", va="bottom")
    bottom = (0.012 + 0.11 * len(lines) / fig.get_figheight()) if lines else 0.0
    fig.tight_layout(rect=(0, bottom, 1, 0.97 if title else 1))
    if out is not None:
        folder = check_writable(out)
        stem = name or kind
        for ext in ("png", "svg"):
            path = folder / f"{stem}.{ext}"
            tmp = folder / f".{stem}.tmp.{ext}"
            fig.savefig(tmp, dpi=150, format=ext, metadata={"Date": None} if ext == "svg" else None)
            os.replace(tmp, path)
    return fig


def figure_from_config(config: str | os.PathLike | Mapping[str, Any], *, out: Any = None, results_out: Any = None,
                       profile: str | None = None, kind: str | None = None) -> tuple[Any, list[str]]:
    """Draw the figure of a sweep configuration from its stored results; return the figure and
    the run ids still missing (drawn from what exists)."""
    cfg = load_config(config) if not isinstance(config, Mapping) else dict(config)
    results, missing = sweep_results(cfg, out=results_out, profile=profile)
    if not results:
        raise ValueError(f"no stored results for sweep {cfg['name']!r} in {sweep_dir(cfg, results_out)}; run the sweep first")
    title = cfg.get("description")
    fig = figure(kind or cfg.get("figure", "sparsity"), results, out=out or sweep_dir(cfg, results_out),
                 name=_slug(cfg["name"]), spread=cfg.get("spread", "std"), config=cfg, title=title)
    return fig, missing
