"""What to run: :class:`RunSpec` (one run) and :class:`SweepConfig` (a grid of runs, read from a
YAML ``.yaml``/``.yml`` or TOML ``.toml`` file; schema in ``configs/README.md``).

Every key of a configuration is checked before any computation: an unknown key, method, method
option, constraint option, profile knob or value is a :class:`ConfigError` naming it and the
nearest known name; so is a constraint a method cannot honour (``postproc`` has no accuracy gap).
The grid is datasets x models x methods x sparsities x taus x budgets x seeds.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import data as _data
from .. import models as _models
from .. import pruners
from ..constraints import FairnessConstraint
from ..fairness import CONSTRAINT_KINDS
from .profiles import PROFILES, Profile, get_profile, lottery_levels

__all__ = ["RunSpec", "SweepConfig", "ConfigError", "check_spec", "load_config", "check_config",
           "expand_config", "sweep_dir", "make_constraint", "run_constraint", "check_constraint_options", "CONFIG_KEYS",
           "CONSTRAINT_KINDS", "CONSTRAINT_OPTIONS", "FIGURE_KINDS", "SPREADS", "DEFAULT_TAU", "check_method_options"]

FIGURE_KINDS = ("sparsity", "tradeoff", "cost", "ablation", "interpolation", "frontier")
#: the tolerance of a run or sweep that names none: the constraint's own default
DEFAULT_TAU: float = inspect.signature(FairnessConstraint).parameters["tau"].default
SPREADS = ("ci", "std", "minmax")

#: arguments of :class:`~fairprune_lite.constraints.FairnessConstraint` set elsewhere in a run,
#: and where (they are refused as constraint options, so that each has one place)
_CONSTRAINT_SET_ELSEWHERE = {
    "kind": "the run's 'constraint' (--constraint)",
    "tau": "the run's 'tau' / a sweep's 'taus' (--tau)",
    "surrogate": "the run's 'surrogate' (--surrogate)",
    "dual_lr": "the profile knob dual_lr (settings: {dual_lr: ...}, --set dual_lr=...)",
}
#: the keyword arguments of :class:`~fairprune_lite.constraints.FairnessConstraint` a run's
#: ``constraint_options`` may set (read from its signature, so a new option is settable at once)
CONSTRAINT_OPTIONS = tuple(
    name for name, p in inspect.signature(FairnessConstraint).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _CONSTRAINT_SET_ELSEWHERE)


class ConfigError(ValueError):
    """A sweep configuration with an unknown key or a bad value."""


def slug(text: str) -> str:
    """A filesystem-safe short form of ``text``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-")[:40] or "x"


def check_number(value: Any, name: str, low: float, high: float, *, high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or value > high or (high_open and value == high):
        raise ValueError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {value!r}")
    return float(value)


def suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
@dataclass
class RunSpec:
    """Everything that determines one run; :func:`run` of the same spec gives the same numbers
    on CPU. ``label`` names the method variant in figures (default: the method name);
    ``method_kwargs`` go to the method (e.g. ``fair_mask=False``); ``budget`` scales the
    pruning-stage length; ``settings`` override profile knobs; ``constraint_options`` are keyword
    arguments of the :class:`~fairprune_lite.constraints.FairnessConstraint` (names in
    :data:`CONSTRAINT_OPTIONS`, e.g. ``{"margin": 1.645, "dual": "nupi"}``). An empty
    ``constraint_options`` is left out of :meth:`to_dict`, so the run ids of specs without
    options are those they had before the field existed."""

    method: str
    dataset: str
    sparsity: float
    seed: int = 0
    target: str | None = None
    sensitive: str | None = None
    model: str | None = None
    profile: str | None = None
    constraint: str = "accuracy_gap"
    tau: float = DEFAULT_TAU
    surrogate: str | None = None
    structured: bool | None = None
    label: str | None = None
    method_kwargs: dict = field(default_factory=dict)
    budget: float = 1.0
    settings: dict = field(default_factory=dict)
    save_weights: bool = False
    constraint_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method_kwargs"] = dict(sorted(d["method_kwargs"].items()))
        d["settings"] = dict(sorted(d["settings"].items()))
        if d["constraint_options"]:
            d["constraint_options"] = dict(sorted(d["constraint_options"].items()))
        else:
            del d["constraint_options"]  # the hash (run id) of a spec without options is unchanged
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
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
        return f"{slug(self.run_label)}_{slug(ds)}_s{self.sparsity:.4f}_seed{self.seed}_{h}"


def check_constraint_options(options: Any) -> dict[str, Any]:
    """``options`` as a dict if every name is a :data:`CONSTRAINT_OPTIONS` entry; a
    ``ValueError`` naming the first unknown one (and the nearest known name, or where an
    argument set elsewhere is set) otherwise. Values are checked by :func:`make_constraint`."""
    if not isinstance(options, Mapping):
        raise ValueError(f"constraint_options must be a mapping of option names to values, got {options!r}")
    for k in options:
        if k in _CONSTRAINT_SET_ELSEWHERE:
            raise ValueError(f"constraint option {k!r} is not set here: use {_CONSTRAINT_SET_ELSEWHERE[k]}")
        if k not in CONSTRAINT_OPTIONS:
            raise ValueError(f"unknown constraint option {k!r}{suggest(k, CONSTRAINT_OPTIONS)}; known options: "
                             f"{', '.join(CONSTRAINT_OPTIONS)}")
    return dict(options)


def make_constraint(kind: str, tau: float, *, surrogate: str | None = None, dual_lr: float | None = None,
                    options: Mapping[str, Any] | None = None) -> FairnessConstraint:
    """The run's :class:`~fairprune_lite.constraints.FairnessConstraint` (``surrogate`` and
    ``dual_lr`` only when given, so the class's defaults apply otherwise). Its own checks judge
    the values; a ``ValueError`` names the run's setting that is wrong."""
    opts = check_constraint_options(options or {})
    kw: dict[str, Any] = dict(opts)
    if surrogate is not None:
        kw["surrogate"] = surrogate
    if dual_lr is not None:
        kw["dual_lr"] = dual_lr
    try:
        return FairnessConstraint(kind, tau, **kw)
    except (TypeError, ValueError) as e:  # a value of the wrong type may fail in a comparison
        where = f"constraint options {dict(sorted(opts.items()))}" if opts else f"constraint {kind!r}"
        raise ValueError(f"{where}: {e}") from None


def check_method_options(method: str, kwargs: Any) -> dict[str, Any]:
    """``kwargs`` as a dict when every entry is an option of ``method`` or an argument of
    :func:`~fairprune_lite.pruners.prune` a run leaves to its spec (``scope``,
    ``finetune_steps``, ...; :func:`~fairprune_lite.pruners.prune_arguments`); a ``ValueError``
    naming the first that is neither (bi-level options are checked by value too)."""
    if not isinstance(kwargs, Mapping):
        raise ValueError("method_kwargs must be a mapping")
    pruners.check_method_kwargs(method, kwargs, also=pruners.prune_arguments())
    return dict(kwargs)


def run_constraint(spec: RunSpec, profile: Profile) -> FairnessConstraint:
    """The constraint of ``spec``: its kind, ``tau``, ``surrogate`` and ``constraint_options``,
    multipliers stepped at the profile's ``dual_lr``. :func:`check_spec` builds it once to
    validate the spec and :func:`~fairprune_lite.experiments.run.run` builds it to run, so what
    was checked is what runs."""
    return make_constraint(spec.constraint, spec.tau, surrogate=spec.surrogate, dual_lr=profile.dual_lr,
                           options=spec.constraint_options)


def check_spec(spec: RunSpec) -> Profile:
    """Validate everything about ``spec`` that can be checked without data (the constraint is
    built once, with the profile's ``dual_lr``, so its own checks judge the options); return
    its profile."""
    methods = pruners.METHODS
    if spec.method not in methods:
        raise ValueError(f"unknown method {spec.method!r}{suggest(spec.method, methods)}; "
                         f"choose one of {', '.join(methods)}")
    check_number(spec.sparsity, "sparsity", 0.0, 1.0)
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {spec.seed!r}")
    if spec.constraint not in CONSTRAINT_KINDS:
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINT_KINDS)}, got {spec.constraint!r}")
    check_number(spec.tau, "tau", 0.0, 1.0, high_open=False)
    check_number(spec.budget, "budget", 0.0, 1e6)
    if spec.budget <= 0:
        raise ValueError(f"budget must be positive, got {spec.budget!r}")
    if spec.model is not None and spec.model not in _models.MODELS:
        raise ValueError(f"unknown model {spec.model!r}{suggest(spec.model, _models.MODELS)}; "
                         f"choose one of {', '.join(_models.MODELS)}")
    if spec.structured not in (None, True, False):
        raise ValueError(f"structured must be true, false or unset, got {spec.structured!r}")
    check_method_options(spec.method, spec.method_kwargs)
    pruners.check_constraint_kind(spec.method, spec.constraint)
    profile = get_profile(spec.profile)
    if spec.settings:
        profile = profile.replace(**spec.settings)
    run_constraint(spec, profile)  # built once: its own checks judge surrogate and options
    ds = str(spec.dataset)
    if ds.endswith(".npz"):
        if not Path(ds).is_file():
            raise FileNotFoundError(f"dataset file {ds} not found")
    elif ds not in _data.DATASETS:
        raise ValueError(f"unknown dataset {ds!r}{suggest(ds, _data.DATASETS)}; choose one of "
                         f"{sorted(_data.DATASETS)} or a path ending in .npz")
    return profile


# ---------------------------------------------------------------------------------------------
# sweep configuration
# ---------------------------------------------------------------------------------------------
DATASET_KEYS = {"dataset", "target", "sensitive", "model", "label"}
METHOD_KEYS = {"method", "label", "structured", "taus", "constraint_options"}


@dataclass(frozen=True)
class DatasetEntry:
    dataset: str
    target: str | None = None
    sensitive: str | None = None
    model: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class MethodEntry:
    """One method of a sweep: registry name, label, own taus / structured, method options and
    constraint options (over the sweep's own, name by name)."""

    method: str
    label: str | None = None
    structured: bool | None = None
    taus: tuple | None = None
    options: dict = field(default_factory=dict)
    constraint_options: dict = field(default_factory=dict)

    @property
    def run_label(self) -> str:
        return str(self.label or self.method)


# ---- one parser per key: each returns the checked value or raises ValueError naming the key ----
def _choice(key: str, choices: Iterable[Any]) -> Any:
    known = list(choices)

    def parse(v: Any) -> Any:
        if v not in known:
            raise ValueError(f"{key} must be one of {', '.join(map(str, known))}, got {v!r}")
        return v
    return parse


def _list_of(key: str, item: Any) -> Any:
    def parse(v: Any) -> tuple:
        if not isinstance(v, list):
            raise ValueError(f"{key!r} must be a list")
        return tuple(item(x, i) for i, x in enumerate(v))
    return parse


def _tau(v: Any, i: int = 0) -> float:
    return check_number(v, "taus entry", 0.0, 1.0, high_open=False)


def _budget(v: Any, i: int = 0) -> float:
    check_number(v, "budgets entry", 0.0, 1e6)
    if v <= 0:
        raise ValueError(f"budgets entries must be positive, got {v!r}")
    return float(v)


def _dataset_entry(entry: Any, i: int) -> DatasetEntry:
    if isinstance(entry, str):
        return DatasetEntry(entry)
    if not isinstance(entry, Mapping):
        raise ValueError(f"datasets[{i}] must be a name or a mapping")
    for k in entry:
        if k not in DATASET_KEYS:
            raise ValueError(f"datasets[{i}]: unknown key {k!r}{suggest(k, DATASET_KEYS)}")
    if "dataset" not in entry:
        raise ValueError(f"datasets[{i}] needs a 'dataset' key")
    return DatasetEntry(**{**dict(entry), "dataset": str(entry["dataset"])})


def _method_entry(entry: Any, i: int) -> MethodEntry:
    name = entry.get("method") if isinstance(entry, Mapping) else entry
    if not isinstance(name, str):
        raise ValueError(f"methods[{i}] must be a method name or a mapping with 'method'")
    if name not in pruners.METHODS:
        raise ValueError(f"methods[{i}]: unknown method {name!r}{suggest(name, pruners.METHODS)}; "
                         f"choose one of {', '.join(pruners.METHODS)}")
    entry = dict(entry) if isinstance(entry, Mapping) else {"method": name}
    try:
        options = check_method_options(name, {k: v for k, v in entry.items() if k not in METHOD_KEYS})
        copts = check_constraint_options(entry.get("constraint_options") or {})
        taus = None
        if "taus" in entry:
            if not isinstance(entry["taus"], list) or not entry["taus"]:
                raise ValueError(f"methods entry {name!r}: taus must be a non-empty list")
            taus = tuple(_tau(t) for t in entry["taus"])
        structured = _structured(entry.get("structured"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"methods[{i}]: {e}") from None
    return MethodEntry(name, entry.get("label"), structured, taus, options, copts)


def _structured(v: Any) -> bool | None:
    if v not in (None, True, False):
        raise ValueError(f"structured must be true, false or unset, got {v!r}")
    return v


def _settings(v: Any) -> dict:
    if not isinstance(v, Mapping):
        raise ValueError("settings must be a mapping of profile knobs")
    try:
        PROFILES["cpu"].replace(**v)
    except ValueError as e:
        knobs = PROFILES["cpu"].to_dict()
        bad = next((k for k in v if k not in knobs), "")
        raise ValueError(f"settings: {e}{suggest(bad, knobs)}") from None
    return dict(v)


def _profile(v: Any) -> str:
    if v not in PROFILES:
        raise ValueError(f"unknown profile {v!r}{suggest(v, PROFILES)}; choose one of {', '.join(PROFILES)}")
    return str(v)


def _positive_int(key: str) -> Any:
    def parse(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key} must be a positive integer, got {v!r}")
        return v
    return parse


def _tau_star(v: Any) -> float:
    return check_number(v, "tau_star", 0.0, 1.0, high_open=False)


def _pair(v: Any, i: int) -> tuple:
    if not (isinstance(v, list) and len(v) == 2):
        raise ValueError(f"each pair must be [label_a, label_b] of method labels, got {v!r}")
    return tuple(v)


def _any(v: Any) -> Any:
    return v


#: every key of a sweep configuration: ``(default, parser)``; ``REQUIRED`` marks the required
#: keys. The parsers run once, here, at the edge; :class:`SweepConfig` holds what they return.
REQUIRED = object()
SWEEP_SCHEMA: dict[str, tuple[Any, Any]] = {
    "name": ("sweep", str),
    "description": (None, _any),
    "figure": ("sparsity", _choice("figure", FIGURE_KINDS)),
    "profile": (None, _profile),
    "out": (None, _any),
    "datasets": ((), _list_of("datasets", _dataset_entry)),
    "models": ((None,), lambda v: _list_of("models", lambda x, i: x)(v) or (None,)),
    "methods": (REQUIRED, _list_of("methods", _method_entry)),
    "sparsities": (REQUIRED, lambda v: tuple(parse_sparsities(v))),
    "seeds": ((0,), lambda v: tuple(parse_seeds(v))),
    "constraint": ("accuracy_gap", _choice("constraint", CONSTRAINT_KINDS)),
    "taus": ((DEFAULT_TAU,), _list_of("taus", _tau)),
    "surrogate": (None, _any),
    "structured": (None, _structured),
    "budgets": ((1.0,), _list_of("budgets", _budget)),
    "settings": ({}, _settings),
    "save_weights": (False, bool),
    "constraint_options": ({}, check_constraint_options),
    "pairs": ((), _list_of("pairs", _pair)),
    "points": (21, _positive_int("points")),
    "spread": ("ci", _choice("spread", SPREADS)),
    "tau_star": (None, _tau_star),
}
CONFIG_KEYS = set(SWEEP_SCHEMA)


@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep configuration (built by :meth:`from_mapping`; ``raw`` keeps the mapping)."""

    name: str
    methods: tuple[MethodEntry, ...]
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    figure: str = "sparsity"
    profile: str | None = None
    out: str | None = None
    datasets: tuple[DatasetEntry, ...] = ()
    models: tuple[str | None, ...] = (None,)
    constraint: str = "accuracy_gap"
    taus: tuple[float, ...] = (DEFAULT_TAU,)
    surrogate: str | None = None
    structured: bool | None = None
    budgets: tuple[float, ...] = (1.0,)
    settings: dict = field(default_factory=dict)
    save_weights: bool = False
    constraint_options: dict = field(default_factory=dict)
    pairs: tuple = ()
    points: int = 21
    spread: str = "ci"
    description: str | None = None
    tau_star: float | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], *, where: str = "config") -> SweepConfig:
        """Check every key and value of ``cfg`` (no data is loaded) against :data:`SWEEP_SCHEMA`, then
        what involves several keys; :class:`ConfigError` naming the first problem."""
        cfg = dict(cfg)
        for k in cfg:
            if k not in SWEEP_SCHEMA:
                raise ConfigError(f"{where}: unknown key {k!r}{suggest(k, SWEEP_SCHEMA)}; known keys: "
                                  f"{', '.join(sorted(SWEEP_SCHEMA))}")
        values: dict[str, Any] = {}
        for k, (default, parse) in SWEEP_SCHEMA.items():
            if k not in cfg and default is REQUIRED:
                raise ConfigError(f"{where}: key {k!r} is required")
            try:
                values[k] = parse(cfg[k]) if k in cfg else default
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: {e}") from None
        try:
            _check_together(values)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        if values["figure"] == "frontier":  # a method that tau does not move runs once per seed
            values["methods"] = tuple(
                m if m.taus is not None or pruners.METHODS[m.method].uses_tau else
                dataclasses.replace(m, taus=values["taus"][:1]) for m in values["methods"])
        return cls(**values, raw=cfg)

    def specs(self, *, profile: str | None = None) -> list[RunSpec]:
        """The runs of the grid; ``profile`` (the command line's choice) overrides the config's
        ``profile``, which overrides ``$FAIRPRUNE_PROFILE``."""
        prof_name = profile or self.profile or get_profile().name
        prof = get_profile(prof_name)
        datasets = self.datasets or (DatasetEntry(prof.default_dataset),)
        out = []
        for d in datasets:
            for model in ([d.model] if d.model else list(self.models)):
                for m in self.methods:
                    structured = m.structured if m.structured is not None else self.structured
                    for sp in self.sparsities:
                        for tau in (m.taus if m.taus is not None else self.taus):
                            for budget in self.budgets:
                                for seed in self.seeds:
                                    out.append(RunSpec(
                                        method=m.method, dataset=d.dataset, sparsity=float(sp), seed=seed,
                                        target=d.target, sensitive=d.sensitive, model=model, profile=prof_name,
                                        constraint=self.constraint, tau=float(tau), surrogate=self.surrogate,
                                        structured=structured, label=m.label, method_kwargs=dict(m.options),
                                        budget=float(budget), settings=dict(self.settings),
                                        save_weights=self.save_weights,
                                        constraint_options=self.constraint_options | m.constraint_options))
        return out


def _check_together(v: Mapping[str, Any]) -> None:
    """What a sweep's keys must satisfy together (each key's own value is checked already)."""
    methods: tuple[MethodEntry, ...] = v["methods"]
    for i, m in enumerate(methods):
        try:
            pruners.check_constraint_kind(m.method, v["constraint"])
            # the constraint is built once per method so that its own checks judge the values
            make_constraint(v["constraint"], DEFAULT_TAU, surrogate=v["surrogate"],
                            options=v["constraint_options"] | m.constraint_options)
        except ValueError as e:
            raise ValueError(f"methods[{i}] ({m.run_label}): {e}") from None
    labels = [m.run_label for m in methods]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ValueError(f"method labels must be unique, repeated: {dup} (give each a 'label')")
    if v["figure"] == "interpolation":
        if not v["pairs"]:
            raise ValueError("the interpolation figure needs 'pairs' of method labels")
        if not v["save_weights"]:
            raise ValueError("the interpolation figure needs save_weights: true")
    for pair in v["pairs"]:
        if not all(p in labels for p in pair):
            raise ValueError(f"each pair must be [label_a, label_b] of method labels {labels}, got {list(pair)!r}")


def parse_sparsities(value: Any) -> list[float]:
    if isinstance(value, str):
        m = re.fullmatch(r"lottery:(\d+)", value.strip())
        if not m:
            raise ValueError(f"sparsities must be a list of numbers or 'lottery:K', got {value!r}")
        return lottery_levels(int(m.group(1)))
    if not isinstance(value, list) or not value:
        raise ValueError("sparsities must be a non-empty list")
    return [check_number(v, "sparsities entry", 0.0, 1.0) for v in value]


def parse_seeds(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"seeds as a count must be positive, got {value}")
        return list(range(value))
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"seeds must be a positive count or a list of non-negative integers, got {value!r}")
    return list(value)


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a sweep configuration (YAML or TOML) and check its keys; returns the checked mapping
    (``name`` defaults to the file stem). :class:`ConfigError` on a typo, a bad value or an
    unknown file type, :class:`FileNotFoundError` if missing."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} not found")
    if p.suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"{p}: config must end in .yaml, .yml or .toml")
    text = p.read_text()
    try:
        cfg = yaml.safe_load(text) if p.suffix in (".yaml", ".yml") else tomllib.loads(text)
    except Exception as e:
        raise ConfigError(f"{p}: cannot parse ({type(e).__name__}: {e})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    cfg = dict(cfg)
    cfg.setdefault("name", p.stem)
    check_config(cfg, where=str(p))
    return cfg


def check_config(cfg: Mapping[str, Any] | SweepConfig, *, where: str = "config") -> SweepConfig:
    """Check keys and value types of a sweep configuration (no data is loaded)."""
    if isinstance(cfg, SweepConfig):
        return cfg
    return SweepConfig.from_mapping(cfg, where=where)


def expand_config(cfg: Mapping[str, Any] | SweepConfig, *, profile: str | None = None) -> list[RunSpec]:
    """The runs of a sweep: datasets x models x methods x sparsities x taus x budgets x seeds."""
    return check_config(cfg).specs(profile=profile)


def sweep_dir(cfg: Mapping[str, Any] | SweepConfig, out: Any = None) -> Path:
    """Where a sweep's results live: ``<out>/<name>`` (``out`` from the argument, the config, or
    ``runs``)."""
    c = check_config(cfg) if not isinstance(cfg, SweepConfig) else cfg
    return Path(out or c.out or "runs") / slug(c.name)
