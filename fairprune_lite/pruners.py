"""Pruning baselines, two-stage pipelines and BiFP/BiP behind one registry.

Every method turns a dense model (pretrained on the train split by the caller) into a sparse
one through the same mask parameterization (:class:`fairprune_lite.masks.MaskScores`), follows
the paper's protocol (prune and fine-tune on the **validation** split; report on **test**) and
returns a :class:`fairprune_lite.train.PruneResult` with per-split metrics and its cost.

============= ========================================================== ===========
name          what                                                       data seen
============= ========================================================== ===========
random        uniformly random mask (sanity floor)                       val
omp           one-shot magnitude pruning, global or per layer            val
imp           iterative magnitude pruning / Lottery Ticket: rounds of    val
              20% of the remaining weights, fine-tuning (or rewinding)
snip          connection sensitivity ``|w * dL/dw|`` on a few batches     val
fpgm          filters nearest the geometric median of their layer       val
              (structured)
fairgrape     per-group importance ``(|w| |dL_g/dw|)^2``, kept greedily   val
              per layer so each group keeps its share of importance;
              one shot, or the paper's rounds with ``rate=0.1``
fp            F&P: fair training (constraint) then OMP and fine-tuning   train + val
              (``fair_split="val"``: val only)
pf            P&F: OMP, then fine-tuning with the fairness constraint     val
bip           bi-level pruning (Zhang et al., 2022), no fairness          val
bifp          fairness-constrained bi-level pruning (Dai et al., 2023)    val
              (its classifier does not need ``s`` at prediction time)
postproc      OMP, then fairlearn's ThresholdOptimizer fitted on val      val
              (group thresholds: needs ``s`` at prediction time)
bifp_postproc BiFP, then the same ThresholdOptimizer on val, for users    val
              who have ``s`` at prediction time (needs it, as postproc)
============= ========================================================== ===========

Adding a method is one small step: write a function ``fn(ctx: Context, **options) ->
MethodOutput`` and decorate it with :func:`register`, declaring its traits (:class:`MethodInfo`:
whether it uses the constraint and its tau, needs the sensitive attribute at prediction time, is
structured, bi-level, iterative, its figure family, ...). Callers (the runner, sweeps, figures,
the command line) ask these traits and never a method's name::

    @register("my_method", data="val", description="keeps the largest |w|, scaled by my_option")
    def _my_method(ctx, *, my_option=1.0):
        importance = {n: my_option * w.detach().abs() for n, w in ctx.weights().items()}
        model = ctx.apply(importance)          # exact top-k at ctx.sparsity, masks applied
        hist = ctx.finetune(model)             # fine-tune on val, passes counted
        return MethodOutput(model, hist)

Every result's ``cost`` holds the training ``iterations``, ``forward_passes``,
``backward_passes`` and ``examples`` of the pruning stage (mask scoring included: SNIP's batches,
FairGRAPE's per-group gradients, BiFP's upper steps; evaluation excluded), ``wall_time_s`` and
``data``, the splits the method read. ``fp``/``pf`` take ``base="omp" | "imp" | "snip"``.

Sparsity is exact in the method's scope: ``round(sparsity * n)`` units pruned over all prunable
weights (``scope="global"``) or within each layer (``scope="layer"``; FPGM and FairGRAPE prune
per layer by definition); structured methods count output channels.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils import parametrize

from . import bilevel, masks
from ._optional import require
from .accel import Accel
from .constraints import FairnessConstraint
from .loading import make_loader, model_device
from .result import PruneResult
from .train import EVAL_BATCH_SIZE, PassCounter, evaluate, fit, predict, set_seed, task_loss

__all__ = ["METHODS", "MethodInfo", "MethodOutput", "Context", "register", "prune", "lottery_sparsities",
           "check_method_kwargs", "check_constraint_kind", "near_majority", "NEAR_MAJORITY", "snip_importance",
           "fpgm_importance", "fairgrape_importance", "fairgrape_select", "TRAITS", "FAMILIES", "bilevel_base",
           "bilevel_config",
           "bilevel_protocol", "prune_arguments", "RUN_ARGUMENTS"]


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its function and its traits. Callers ask the traits (never the name):

    * ``structured``: prunes whole output channels by default (and only so);
    * ``unstructured_only``: cannot prune channels;
    * ``fairness_aware``: uses the fairness constraint (its kind, and its ``tau`` when ``uses_tau``);
    * ``needs_constraint``: refuses to run without one;
    * ``uses_tau``: its result depends on the constraint's tolerance (a tau sweep moves it);
    * ``constraint_kinds``: the constraint kinds it can honour (``None``: every kind);
    * ``needs_sensitive_at_prediction``: the returned classifier must be given each example's
      sensitive attribute when it predicts (post-processing);
    * ``bilevel``: configured by :class:`~fairprune_lite.bilevel.BiFPConfig` (its options are
      that config's fields, checked by value; the runner sizes its ``steps``);
    * ``iterative``: fine-tunes inside its own rounds (a pipeline using it as a first stage does
      not fine-tune again);
    * ``family``: the row it is drawn in by the ``sparsity`` figure;
    * ``reference``: the fairness-blind baseline figures draw in every row and the frontier
      reports (OMP);
    * ``without_constraint``: the method to use instead when there is no constraint;
    * ``pipeline_base``: a fairness-blind one-shot or iterative pruner the pipelines (``fp``,
      ``pf``, ``postproc``) accept as their ``base``;
    * ``protocol``: bi-level only: the named protocol (:data:`~fairprune_lite.bilevel.PROTOCOLS`)
      its options start from; ``None``: the library default (:data:`~fairprune_lite.bilevel.DEFAULTS`).
    """

    name: str
    fn: Callable[..., MethodOutput]
    structured: bool = False
    fairness_aware: bool = False
    data: str = "val"
    description: str = ""
    unstructured_only: bool = False
    needs_constraint: bool = False
    uses_tau: bool = False
    constraint_kinds: tuple[str, ...] | None = None
    needs_sensitive_at_prediction: bool = False
    bilevel: bool = False
    iterative: bool = False
    family: str = "other"
    reference: bool = False
    without_constraint: str | None = None
    pipeline_base: bool = False
    protocol: str | None = None

    def options(self) -> list[str]:
        """The method's own keyword options (beyond the common arguments of :func:`prune`)."""
        return [p.name for p in inspect.signature(self.fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def check_options(self, kwargs: Mapping[str, Any], *, also: Iterable[str] = ()) -> None:
        """``ValueError`` naming the first keyword the method does not accept (with the nearest
        accepted name); ``also``: further names the caller accepts (arguments of :func:`prune`).
        A bi-level method's options are checked by value too (:meth:`BiFPConfig.check`)."""
        known = set(self.options())
        accepted = known | set(also)
        for k in kwargs:
            if k not in accepted:
                close = difflib.get_close_matches(str(k), sorted(accepted), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"method {self.name!r} has no option {k!r}{hint}; its options are "
                                 f"{sorted(known) or 'none'}")
        if self.bilevel:
            try:
                bilevel_config(self.name, {k: v for k, v in kwargs.items() if k in known}).check()
            except (TypeError, ValueError) as e:
                raise ValueError(f"method {self.name!r}: {e}") from None

    def check_constraint(self, constraint: FairnessConstraint | None) -> None:
        """``ValueError`` if the method cannot run with ``constraint`` (missing where it needs one,
        or of a kind it cannot honour), saying what it needs."""
        if constraint is None and self.needs_constraint:
            needs = []
            if self.constraint_kinds is not None:
                needs.append(f"its kind, {' or '.join(sorted(self.constraint_kinds))}, is what it enforces")
            if self.needs_sensitive_at_prediction:
                needs.append("it also needs the sensitive attribute at prediction time")
            instead = f"; use {self.without_constraint!r} without one" if self.without_constraint else ""
            raise ValueError(f"method {self.name!r} needs a fairness constraint (constraint=FairnessConstraint(...))"
                             + (f" ({'; '.join(needs)})" if needs else "") + instead)
        check_constraint_kind(self.name, None if constraint is None else constraint.kind)


METHODS: dict[str, MethodInfo] = {}

#: the families of the built-in methods (rows of the ``sparsity`` figure, in this order)
BLIND, AWARE, BILEVEL = "fairness-blind pruning", "fairness-aware baselines", "bi-level"
FAMILIES = (BLIND, AWARE, BILEVEL)

#: the traits :func:`register` accepts (the fields of :class:`MethodInfo` after ``fn``)
TRAITS = tuple(f.name for f in dataclasses.fields(MethodInfo) if f.name not in ("name", "fn"))


def register(name: str, **traits: Any) -> Callable:
    """Decorator adding ``fn(ctx, **options) -> MethodOutput`` to :data:`METHODS` under ``name``
    with its ``traits`` (:class:`MethodInfo`'s fields: ``structured``, ``fairness_aware``,
    ``data``, ``description``, ...); an unknown trait is a ``ValueError``."""
    bad = sorted(set(traits) - set(TRAITS))
    if bad:
        raise ValueError(f"register({name!r}): unknown trait(s) {bad}; traits: {', '.join(TRAITS)}")
    if traits.get("constraint_kinds") is not None:
        traits["constraint_kinds"] = tuple(traits["constraint_kinds"])

    def deco(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered")
        METHODS[name] = MethodInfo(name, fn, **traits)
        return fn
    return deco


#: the fields of :class:`~fairprune_lite.bilevel.BiFPConfig` (a bi-level method's options among its own)
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(bilevel.BiFPConfig))


def bilevel_base(method: str) -> bilevel.BiFPConfig:
    """The :class:`~fairprune_lite.bilevel.BiFPConfig` the bi-level ``method`` starts from before
    its options: its ``protocol`` trait's, else the library default (read when called)."""
    info = _info(method)
    if not info.bilevel:
        raise ValueError(f"method {method!r} is not bi-level (no BiFPConfig)")
    return bilevel.DEFAULTS if info.protocol is None else bilevel.PROTOCOLS[info.protocol]


def bilevel_config(method: str, options: Mapping[str, Any]) -> bilevel.BiFPConfig:
    """The :class:`~fairprune_lite.bilevel.BiFPConfig` the bi-level ``method`` runs with
    ``options`` (its fields among them): :func:`bilevel_base`, or the protocol they name, with
    the options on top."""
    return bilevel_base(method).replace(**{k: v for k, v in options.items() if k in _CONFIG_FIELDS})


def bilevel_protocol(method: str, options: Mapping[str, Any]) -> str:
    """The protocol the bi-level ``method`` runs under with ``options``: the one they name (if
    the method takes the option), else its base's."""
    if "protocol" in options and "protocol" in _info(method).options():
        return str(options["protocol"])
    return bilevel_base(method).protocol


def check_method_kwargs(method: str, kwargs: Mapping[str, Any], *, also: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the first keyword ``method`` does not accept (typos in configs),
    with the nearest accepted name; ``also``: further names the caller accepts (e.g. arguments of
    :func:`prune`). Bi-level options are checked by value too (:meth:`MethodInfo.check_options`)."""
    _info(method).check_options(kwargs, also=also)


#: arguments of :func:`prune` a caller that builds runs sets itself, never from a method's options
RUN_ARGUMENTS = frozenset({"model", "splits", "sparsity", "seed", "constraint", "device", "counter", "progress",
                           "evaluate_on", "eval_batch_size", "structured"})


def prune_arguments() -> frozenset[str]:
    """Keyword arguments of :func:`prune` that a run's method options may set besides the
    method's own (``scope``, ``finetune_steps``, ``lr``, ...)."""
    return frozenset(name for name, p in inspect.signature(prune).parameters.items()
                     if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in RUN_ARGUMENTS)


#: a pruned model within this many accuracy points of the majority class is flagged
NEAR_MAJORITY = 0.02


def near_majority(report: Mapping[str, Any], margin: float = NEAR_MAJORITY) -> bool:
    """Whether an evaluation report's accuracy is within ``margin`` of predicting the majority
    class (a nearly constant predictor is fair by every metric: a failure, not a success)."""
    return bool(report["accuracy"] < report["majority_baseline"] + margin)


def check_constraint_kind(method: str, kind: str | None) -> None:
    """Raise ``ValueError`` if ``method`` cannot honour a constraint of ``kind`` (its
    ``constraint_kinds`` trait: ``postproc``'s ThresholdOptimizer has no accuracy parity)."""
    kinds = _info(method).constraint_kinds
    if kinds is not None and kind not in kinds:
        raise ValueError(f"method {method!r} cannot honour constraint {kind!r} (it enforces "
                         f"{' and '.join(sorted(kinds))} only; fairlearn's ThresholdOptimizer has no accuracy "
                         f"parity); use constraint {' or '.join(sorted(kinds))}")


def _info(method: str) -> MethodInfo:
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), list(METHODS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown method {method!r}{hint}; choose one of {', '.join(METHODS)}")
    return METHODS[method]


def lottery_sparsities(rounds: int | None = None, rate: float = 0.2, *, until: float | None = None) -> list[float]:
    """Sparsities of the Lottery Ticket schedule: each round removes ``rate`` of what remains.

    ``lottery_sparsities(10)`` is ``[0.2, 0.36, 0.488, 0.5904, ..., 0.8926]``; with ``until`` the
    levels below ``until`` followed by ``until`` itself (the schedule IMP follows to a target).
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    if until is not None:
        if not 0 <= until < 1:
            raise ValueError(f"until must be in [0, 1), got {until!r}")
        levels, k = [], 1
        while 1 - (1 - rate) ** k < until - 1e-12:
            levels.append(1 - (1 - rate) ** k)
            k += 1
        return levels + ([float(until)] if until > 0 else [])
    if rounds is None or rounds < 0:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
    return [1 - (1 - rate) ** k for k in range(1, rounds + 1)]


# ---------------------------------------------------------------------------------------------
# the context every method works in
# ---------------------------------------------------------------------------------------------
@dataclass
class MethodOutput:
    """What a method function returns: the pruned model (masks applied), its history, extras."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    result: PruneResult | None = None  # methods that build their own (bifp / bip)


@dataclass
class Context:
    """Arguments shared by every method, and the small steps methods are built from."""

    model: nn.Module
    splits: Any
    sparsity: float
    seed: int
    structured: bool
    scope: str
    prune_last: bool
    constraint: FairnessConstraint | None
    finetune_steps: int
    batch_size: int
    lr: float
    optimizer: str
    device: Any
    counter: PassCounter
    progress: bool
    accel: Accel | None = None

    def layers(self) -> dict[str, nn.Module]:
        """The prunable layers (the output layer is kept for structured masks)."""
        return masks.prunable_layers(self.model, prune_last=self.prune_last and not self.structured)

    def weights(self, model: nn.Module | None = None) -> dict[str, Tensor]:
        """The current effective weights ``m * theta`` (``theta`` when unmasked) per layer."""
        model = self.model if model is None else model
        mods = dict(model.named_modules())
        return {n: mods[n].weight.detach() for n in self.layers()}

    def loader(self, split: str = "val", *, shuffle: bool = True):
        return make_loader(getattr(self.splits, split), self.batch_size, shuffle=shuffle, seed=self.seed)

    def masks_from(self, importance: Mapping[str, Tensor], *, scope: str | None = None,
                   sparsity: float | None = None) -> dict[str, Tensor]:
        """Exact top-k binary masks keeping the largest ``importance`` (weight-shaped, or one
        value per output channel when structured)."""
        scope = scope or self.scope
        sparsity = self.sparsity if sparsity is None else sparsity
        names = list(self.layers())
        missing = [n for n in names if n not in importance]
        if missing:
            raise ValueError(f"importance lacks layers {missing}")
        ms = masks.MaskScores(self.model, sparsity, structured=self.structured, scope=scope, init="constant",
                              layers=names)
        with torch.no_grad():
            groups = [names] if scope == "global" else [[n] for n in names]
            for group in groups:
                top = max(float(importance[n].abs().max()) for n in group)
                for n in group:
                    imp = importance[n].detach().to(ms.score(n).device, ms.score(n).dtype)
                    if imp.shape != ms.score(n).shape:
                        raise ValueError(f"importance of layer {n!r} has shape {tuple(imp.shape)}, "
                                         f"expected {tuple(ms.score(n).shape)}")
                    ms.score(n).copy_(imp / top if top > 0 else torch.zeros_like(imp))
        return ms.binary_masks()

    def apply(self, importance_or_masks: Mapping[str, Tensor], *, is_mask: bool = False,
              model: nn.Module | None = None) -> nn.Module:
        """Fix the masks (top-k of an importance, or given binary masks) on ``model``."""
        model = self.model if model is None else model
        bm = dict(importance_or_masks) if is_mask else self.masks_from(importance_or_masks)
        if any(masks.is_masked(m) for m in model.modules()):
            masks.remove_masks(model, bake=False)
        masks.apply_masks(model, masks.MaskScores.from_masks(model, bm))
        return model

    def finetune(self, model: nn.Module, *, split: str = "val", steps: int | None = None,
                 constraint: FairnessConstraint | None = None) -> list[dict[str, Any]]:
        """Masked fine-tuning on ``split`` (the scores are not parameters, so masks stay fixed)."""
        steps = self.finetune_steps if steps is None else steps
        if steps <= 0:
            return []
        return fit(model, self.loader(split), steps=steps, lr=self.lr, optimizer=self.optimizer,
                   constraint=constraint, counter=self.counter, progress=self.progress, accel=self.accel)


# ---------------------------------------------------------------------------------------------
# the one entry point
# ---------------------------------------------------------------------------------------------
#: integer arguments of :func:`prune` and their smallest allowed value
_COUNTS = {"finetune_steps": 0, "batch_size": 1, "eval_batch_size": 1, "finetune_epochs": 0}
_SCOPES = ("global", "layer")
_SPLITS = ("train", "val", "test")


def _check_arguments(info: MethodInfo, splits: Any, options: Mapping[str, Any], *, sparsity: Any, scope: Any,
                     constraint: Any, evaluate_on: Iterable[str], structured: bool | None,
                     **counts: Any) -> bool:
    """Every check of :func:`prune`'s arguments, before any training (a ``ValueError`` naming the
    argument); returns the run's ``structured``."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if scope not in _SCOPES:
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if constraint is not None and not isinstance(constraint, FairnessConstraint):
        raise ValueError(f"constraint must be a FairnessConstraint or None, got {type(constraint).__name__}")
    bad_splits = [k for k in evaluate_on if k not in _SPLITS]
    if bad_splits:
        raise ValueError(f"evaluate_on: unknown split(s) {bad_splits}; choose from 'train', 'val', 'test'")
    info.check_constraint(constraint)
    info.check_options(options)  # bad options fail before any training
    if info.structured and structured is False:
        raise ValueError(f"method {info.name!r} is structured only")
    if info.unstructured_only and structured:
        raise ValueError(f"{info.name} is unstructured only")
    missing = [k for k in _SPLITS if not hasattr(splits, k)]
    if missing:
        raise ValueError(f"splits has no {missing[0]!r} split")
    for name, v in counts.items():
        low = _COUNTS[name]
        if (v is not None or name != "finetune_epochs") and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ValueError(f"{name} must be a {'non-negative' if low == 0 else 'positive'} integer, got {v!r}")
    return info.structured if structured is None else bool(structured)


def prune(method: str, model: nn.Module, splits: Any, *, sparsity: float, seed: int = 0,
          structured: bool | None = None, scope: str = "global", prune_last: bool = True,
          constraint: FairnessConstraint | None = None, finetune_steps: int = 100,
          finetune_epochs: int | None = None, batch_size: int = 128, lr: float = 0.01, optimizer: str = "sgd",
          device: Any = None, counter: PassCounter | None = None, progress: bool = False,
          evaluate_on: Iterable[str] = ("val", "test"), eval_batch_size: int = EVAL_BATCH_SIZE,
          accel: Accel | None = None, **options: Any) -> PruneResult:
    """Run ``method`` on a copy of the dense ``model`` and evaluate it.

    Args:
        method: a name of :data:`METHODS`.
        model: the dense model, pretrained on ``splits.train``; it is not modified.
        splits: a :class:`fairprune_lite.data.Splits` (``train``, ``val``, ``test``).
        sparsity: fraction of prunable weights (channels, when structured) to prune, in [0, 1).
        structured: per output channel instead of per weight; ``None`` takes the method's own
            kind (only ``fpgm`` is structured by default; ``bifp``/``bip`` accept both).
        scope: ``"global"`` or ``"layer"`` top-k (FPGM and FairGRAPE are per layer always).
        prune_last: whether the output layer is prunable (unstructured only).
        constraint: the fairness constraint for the fairness-aware methods (``fp``, ``pf``,
            ``bifp``); ignored by fairness-blind ones. Copied, so the caller's is not changed.
        finetune_steps, batch_size, lr, optimizer: the masked fine-tuning on val after pruning.
            ``bifp``/``bip`` train the weights inside their own ``steps`` instead.
        finetune_epochs: when given, replaces ``finetune_steps`` by this many passes over val
            (``finetune_epochs * ceil(len(val) / batch_size)`` steps).
        counter: a :class:`PassCounter` to add to; evaluation passes are not counted.
        evaluate_on: splits on which the result's ``metrics`` are computed (with the dense
            model's predictions, so the degradation entries of Defs. 2-3 are filled in, and,
            with a constraint, its ``feasibility`` block); ``eval_batch_size`` batches them.
        accel: the GPU fast path's options (:class:`~fairprune_lite.accel.Accel`) for the
            training passes of the masked fine-tuning and of the bi-level solvers; None (the
            default) is the plain path, bit for bit. The ``gpu`` profile sets it.
        **options: the method's own options (:func:`check_method_kwargs`).
    """
    info = _info(method)
    structured = _check_arguments(info, splits, options, sparsity=sparsity, scope=scope, constraint=constraint,
                                  evaluate_on=evaluate_on, structured=structured, finetune_steps=finetune_steps,
                                  batch_size=batch_size, eval_batch_size=eval_batch_size,
                                  finetune_epochs=finetune_epochs)
    evaluate_on = list(evaluate_on)
    if finetune_epochs is not None:
        finetune_steps = finetune_epochs * -(-len(splits.val) // batch_size)
    dense = model
    work = copy.deepcopy(model)
    if device is not None:
        work.to(device)
    counter = counter if counter is not None else PassCounter()
    ctx = Context(model=work, splits=splits, sparsity=float(sparsity), seed=int(seed), structured=bool(structured),
                  scope=scope, prune_last=prune_last,
                  constraint=None if constraint is None else copy.deepcopy(constraint),
                  finetune_steps=int(finetune_steps), batch_size=int(batch_size), lr=float(lr), optimizer=optimizer,
                  device=device, counter=counter, progress=progress, accel=accel)
    set_seed(seed)
    start = time.perf_counter()
    out = info.fn(ctx, **options)
    wall = time.perf_counter() - start
    pruned = out.model
    bm = masks.model_masks(pruned).binary_masks() if any(masks.is_masked(m) for m in pruned.modules()) else \
        (out.result.masks if out.result is not None else {})
    post = out.info.pop("postprocess", None)
    metrics = {}
    for split in evaluate_on:
        metrics[split] = evaluate(pruned, getattr(splits, split), dense_model=dense, constraint=constraint,
                                  postprocess=post, batch_size=eval_batch_size)
        metrics[split]["near_majority"] = near_majority(metrics[split])
    cost = counter.as_dict()
    cost["wall_time_s"] = wall
    cost["data"] = out.info.pop("data", info.data)
    config = {"method": method, "sparsity": float(sparsity), "seed": int(seed), "structured": bool(structured),
              "scope": scope, "prune_last": prune_last, "finetune_steps": int(finetune_steps),
              "finetune_epochs": finetune_epochs,
              "batch_size": int(batch_size), "lr": float(lr), "optimizer": optimizer,
              "constraint": None if constraint is None else constraint.state_dict(), **options, **out.info}
    if out.result is not None:
        # the solver's own record wins for what it changed (its constraint holds the multipliers
        # it ended with; the caller's copy above was never stepped)
        config = {**out.result.config, **config}
        if out.result.config.get("constraint") is not None:
            config["constraint"] = out.result.config["constraint"]
    return PruneResult(method=method, sparsity_target=float(sparsity), masks=bm, model=pruned, metrics=metrics,
                       cost=cost, history=out.history, config=config,
                       scores=None if out.result is None else out.result.scores)


# ---------------------------------------------------------------------------------------------
# importance scores (public: the book and the tests compute them directly)
# ---------------------------------------------------------------------------------------------
def _grad_variable(module: nn.Module) -> Tensor:
    """The leaf tensor whose gradient a layer's importance uses: the weight of a plain layer, the
    dense ``theta`` of a masked one (its gradient is ``m * dL/dz``, the masked gradient)."""
    if parametrize.is_parametrized(module, "weight"):
        orig = module.parametrizations.weight.original  # type: ignore[union-attr]
        assert isinstance(orig, Tensor)
        return orig
    return _weight(module)


def _weight(module: nn.Module) -> Tensor:
    """A layer's ``weight`` tensor (a checked attribute access, for the type checker)."""
    w = module.weight
    if not isinstance(w, Tensor):
        raise ValueError(f"layer {type(module).__name__} has no weight tensor")
    return w


def _grads(model: nn.Module, layers: Mapping[str, nn.Module], batches: Iterable, counter: PassCounter | None,
           select: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
    """Sum over ``batches`` of d(task loss)/d(weight) per layer (loss on ``select``-ed examples).

    On a masked model the gradient is taken with respect to ``theta`` (so it is ``m * dL/dz``,
    zero on pruned weights)."""
    dev = model_device(model)
    weights = {n: _grad_variable(m) for n, m in layers.items()}
    total = {n: torch.zeros_like(w) for n, w in weights.items()}
    for x, y, s in batches:
        x, y, s = x.to(dev), y.to(dev), s.to(dev)
        logits = model(x)
        if counter is not None:
            counter.forward(len(y))
        keep = torch.ones_like(y, dtype=torch.bool) if select is None else select(s)
        if not bool(keep.any()):
            continue
        loss = task_loss(logits[keep], y[keep])
        g = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
        if counter is not None:
            counter.backward()
        for n, gi in zip(weights, g, strict=True):
            if gi is not None:
                total[n] += gi.detach()
    return total


def snip_importance(model: nn.Module, layers: Mapping[str, nn.Module], batches: Iterable,
                    counter: PassCounter | None = None) -> dict[str, Tensor]:
    """SNIP connection sensitivity ``|w * dL/dw|`` (Lee et al., 2019), gradients summed over
    ``batches``. The model should be unmasked (dense)."""
    model.eval()
    grads = _grads(model, layers, batches, counter)
    return {n: (_weight(m).detach() * grads[n]).abs() for n, m in layers.items()}


def fpgm_importance(layers: Mapping[str, nn.Module]) -> dict[str, Tensor]:
    """FPGM (He et al., 2019): per filter, the sum of Euclidean distances to the other filters
    of its layer. The filters with the smallest sums lie nearest the geometric median and are
    the most replaceable: they are pruned first."""
    out = {}
    for n, m in layers.items():
        w = _weight(m).detach().flatten(1)
        out[n] = torch.cdist(w.unsqueeze(0), w.unsqueeze(0)).squeeze(0).sum(1)
    return out


def fairgrape_importance(model: nn.Module, layers: Mapping[str, nn.Module], batches: list,
                         counter: PassCounter | None = None) -> dict[int, dict[str, Tensor]]:
    """FairGRAPE's per-group importance ``(|w| * |dL_g/dw|)^2`` (Lin, Kim & Joo, 2022), with
    ``L_g`` the task loss on the examples of group ``g`` (gradients summed over ``batches``, then
    squared; with one batch this is the paper's per-minibatch estimate exactly). On a masked
    model ``w`` is the effective weight and the gradient the masked one (pruned weights: 0)."""
    model.eval()
    out = {}
    for g in (0, 1):
        grads = _grads(model, layers, batches, counter, select=_group(g))
        out[g] = {n: (_weight(m).detach().abs() * grads[n].abs()) ** 2 for n, m in layers.items()}
    return out


def _group(g: int) -> Callable[[Tensor], Tensor]:
    """The selector of group ``g``'s examples from ``s``."""
    def select(s: Tensor) -> Tensor:
        return s == g
    return select


def fairgrape_select(imp: Mapping[int, Tensor], keep: int, *, chunks: int | None = 64,
                     allowed: Tensor | None = None) -> Tensor:
    """Which of a layer's weights FairGRAPE keeps: a boolean mask with exactly ``keep`` True.

    Greedy (Lin, Kim & Joo, 2022): turn by turn, the group whose kept importance is furthest
    below its share takes its most important weight not yet kept. The paper measures the shares
    *between* groups: the kept importance of group ``g`` over that of all groups, against the
    same ratio over all candidate weights (the layer's "relative between-group total
    importance"). Here the group whose kept fraction of its *own* total ``S_g / T_g`` is smallest
    takes the turn; for two groups the two rules choose the same group at every turn
    (``S_0/(S_0+S_1) < T_0/(T_0+T_1)`` iff ``S_0/T_0 < S_1/T_1``), except the very first turn,
    which goes to group 0 here and to the group with the larger total in the paper. At the end
    every group keeps the same fraction of its own total importance, up to about one turn's
    weights.

    ``chunks``: a turn takes ``ceil(keep / chunks)`` weights (at most ``chunks`` turns per layer);
    ``None`` (or ``chunks >= keep``) is the paper's one-weight-per-turn rule exactly.
    ``allowed``: candidate weights (boolean, the layer's shape); others are never kept (the
    weights an earlier round pruned). Weights are compared by importance, ties by position.
    """
    if not imp:
        raise ValueError("imp must hold one importance tensor per group")
    first = next(iter(imp.values()))
    flat = {g: t.detach().flatten() for g, t in imp.items()}
    n = first.numel()
    if any(t.numel() != n for t in flat.values()):
        raise ValueError("imp: every group's importance must have the layer's shape")
    if allowed is None:
        ok = bytearray(b"\x01") * n
    else:
        ok = bytearray(allowed.detach().flatten().to(torch.bool).cpu().numpy().tobytes())
    if len(ok) != n:
        raise ValueError(f"allowed has {len(ok)} entries, the layer {n}")
    n_ok = sum(ok)
    if not 0 <= keep <= n_ok:
        raise ValueError(f"keep must be in [0, {n_ok}] (the candidate weights), got {keep}")
    if chunks is not None and chunks < 1:
        raise ValueError(f"chunks must be a positive integer or None, got {chunks!r}")
    kept = bytearray(n)
    vals = {g: t.cpu().tolist() for g, t in flat.items()}
    cand = None if allowed is None else allowed.flatten().to(device=first.device, dtype=torch.bool)
    totals = {g: float(t.sum() if cand is None else t[cand].sum()) for g, t in flat.items()}
    shares = {g: 0.0 for g in flat}
    order = {g: torch.argsort(t, descending=True, stable=True).tolist() for g, t in flat.items()}
    pos = {g: 0 for g in flat}
    step = 1 if chunks is None else max(1, -(-keep // chunks))
    left = keep
    while left > 0:
        g = min(flat, key=lambda k: (shares[k] / totals[k] if totals[k] > 0 else 1.0, k))
        want = min(step, left)
        take: list[int] = []
        og, p = order[g], pos[g]
        while len(take) < want and p < n:
            i = og[p]
            p += 1
            if ok[i] and not kept[i]:
                take.append(i)
                kept[i] = 1
        pos[g] = p
        if not take:  # cannot happen while keep <= candidates; kept for safety
            raise RuntimeError("fairgrape_select: a group ran out of candidates")
        if len(take) == 1:
            for k in flat:
                shares[k] += vals[k][take[0]]
        else:
            idx = torch.tensor(take)
            for k in flat:
                shares[k] += float(flat[k][idx].sum())
        left -= len(take)
    out = torch.frombuffer(kept, dtype=torch.uint8).to(torch.bool) if n else torch.zeros(0, dtype=torch.bool)
    return out.to(first.device).view_as(first)


def _batches(ctx: Context, n: int, split: str = "val") -> list:
    it = iter(ctx.loader(split))
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


# ---------------------------------------------------------------------------------------------
# the methods
# ---------------------------------------------------------------------------------------------
@register("random", family=BLIND, description="uniformly random mask, then fine-tuning (sanity floor)")
def _random(ctx: Context) -> MethodOutput:
    gen = masks.score_generator(ctx.seed)  # not the initialisation's stream (scores = initial weights)
    imp = {n: torch.rand(masks.MaskScores(ctx.model, 0.0, structured=ctx.structured, layers=[n]).score(n).shape,
                         generator=gen) for n in ctx.layers()}
    model = ctx.apply(imp)
    return MethodOutput(model, ctx.finetune(model))


def _magnitude(ctx: Context, model: nn.Module | None = None) -> dict[str, Tensor]:
    w = ctx.weights(model)
    if ctx.structured:
        return {n: t.flatten(1).norm(dim=1) for n, t in w.items()}
    return {n: t.abs() for n, t in w.items()}


@register("omp", family=BLIND, reference=True, pipeline_base=True, description="one-shot magnitude pruning (global or per layer), then fine-tuning")
def _omp(ctx: Context) -> MethodOutput:
    model = ctx.apply(_magnitude(ctx))
    return MethodOutput(model, ctx.finetune(model))


@register("imp", family=BLIND, iterative=True, pipeline_base=True, description="iterative magnitude pruning (Lottery Ticket): 20% of what remains per round")
def _imp(ctx: Context, *, rate: float = 0.2, rewind: str = "none", rewind_step: int = 0,
         round_steps: int | None = None) -> MethodOutput:
    """Rounds at :func:`lottery_sparsities` ``(until=sparsity)``; after each round the weights are
    fine-tuned for ``round_steps`` (default: the fine-tuning budget) on val. ``rewind``:
    ``"none"`` keeps training from where the round ended; ``"init"`` resets the surviving
    weights to the dense model's (Frankle & Carbin, 2019); ``"early"`` to their values after
    ``rewind_step`` steps of the first round (rewinding to an early iterate)."""
    if rewind not in ("none", "init", "early"):
        raise ValueError(f"rewind must be 'none', 'init' or 'early', got {rewind!r}")
    schedule = lottery_sparsities(rate=rate, until=ctx.sparsity)
    steps = ctx.finetune_steps if round_steps is None else int(round_steps)
    model = ctx.model
    start_state = copy.deepcopy(model.state_dict())
    early_state = None
    history: list[dict[str, Any]] = []
    for r, level in enumerate(schedule):
        # pruned weights stay pruned: their effective weight is zero, below every survivor
        bm = ctx.masks_from(_magnitude(ctx, model), sparsity=level)
        if rewind != "none" and r > 0:
            target = start_state if rewind == "init" else early_state
            assert target is not None  # the early state is stored at round 0
            if masks.is_masked(dict(model.named_modules())[next(iter(ctx.layers()))]):
                masks.remove_masks(model, bake=False)
            model.load_state_dict(target)
        model = ctx.apply(bm, is_mask=True, model=model)
        if r == 0 and rewind == "early":
            ctx.finetune(model, steps=rewind_step)
            plain = copy.deepcopy(model)
            masks.remove_masks(plain, bake=False)
            early_state = copy.deepcopy(plain.state_dict())
            hist = ctx.finetune(model, steps=max(0, steps - rewind_step))
        else:
            hist = ctx.finetune(model, steps=steps)
        rep = masks.sparsity_report(model)
        history.append({"round": r, "target": level, "sparsity": rep["overall"],
                        "final_loss": hist[-1]["task_loss"] if hist else None})
    if not schedule:  # sparsity 0
        model = ctx.apply(_magnitude(ctx))
        ctx.finetune(model, steps=steps)
    return MethodOutput(model, history, {"schedule": schedule, "rewind": rewind})


@register("snip", family=BLIND, pipeline_base=True, description="SNIP connection sensitivity |w dL/dw| on a few val batches, global top-k")
def _snip(ctx: Context, *, batches: int = 1) -> MethodOutput:
    layers = ctx.layers()
    imp = snip_importance(ctx.model, layers, _batches(ctx, batches), ctx.counter)
    if ctx.structured:
        imp = {n: t.flatten(1).sum(1) for n, t in imp.items()}
    model = ctx.apply(imp)
    return MethodOutput(model, ctx.finetune(model))


@register("fpgm", structured=True, family=BLIND, description="FPGM: filters nearest their layer's geometric median (per layer)")
def _fpgm(ctx: Context) -> MethodOutput:
    layers = ctx.layers()
    imp = fpgm_importance(layers)
    bm = ctx.masks_from(imp, scope="layer")
    model = ctx.apply(bm, is_mask=True)
    return MethodOutput(model, ctx.finetune(model), {"scope": "layer"})


@register("fairgrape", unstructured_only=True, family=AWARE, description="FairGRAPE: per-group importance kept in proportion, per layer")
def _fairgrape(ctx: Context, *, batches: int = 4, chunks: int | None = 64, rate: float | None = None,
               round_steps: int = 0) -> MethodOutput:
    """Per layer, keep ``n - round(sparsity * n)`` weights chosen by :func:`fairgrape_select`
    from the per-group importances of :func:`fairgrape_importance` on ``batches`` val batches.

    ``rate=None`` (default): one shot at the target sparsity. ``rate=r``: the paper's iterative
    procedure, rounds at :func:`lottery_sparsities` ``(rate=r, until=sparsity)`` (the authors'
    code removes 10% of what remains per round: ``rate=0.1``); each round recomputes the
    importances on the current pruned model, selects among the surviving weights only and
    retrains ``round_steps`` on val (0: no retraining between rounds). Then the usual
    fine-tuning. ``chunks``: see :func:`fairgrape_select` (``None``: one weight per turn)."""
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive integer, got {batches!r}")
    if round_steps < 0:
        raise ValueError(f"round_steps must be >= 0, got {round_steps!r}")
    layers = ctx.layers()
    data = _batches(ctx, batches)
    if rate is None:
        imp = fairgrape_importance(ctx.model, layers, data, ctx.counter)
        bm = {}
        for n in layers:
            numel = imp[0][n].numel()
            keep = numel - int(round(ctx.sparsity * numel))
            bm[n] = fairgrape_select({g: imp[g][n] for g in imp}, keep, chunks=chunks).float()
        model = ctx.apply(bm, is_mask=True)
        return MethodOutput(model, ctx.finetune(model), {"scope": "layer"})
    schedule = lottery_sparsities(rate=rate, until=ctx.sparsity) or [ctx.sparsity]
    model, rounds = ctx.model, []
    for r, level in enumerate(schedule):
        layers = ctx.layers()
        current = masks.model_masks(model).binary_masks() if r > 0 else {}
        imp = fairgrape_importance(model, layers, data, ctx.counter)
        bm, kept_share = {}, {0: [0.0, 0.0], 1: [0.0, 0.0]}
        for n in layers:
            numel = imp[0][n].numel()
            keep = numel - int(round(level * numel))
            allowed = current[n].bool() if current else None
            sel = fairgrape_select({g: imp[g][n] for g in imp}, keep, chunks=chunks, allowed=allowed)
            bm[n] = sel.float()
            for g in imp:
                kept_share[g][0] += float(imp[g][n][sel].sum())
                kept_share[g][1] += float(imp[g][n].sum())
        model = ctx.apply(bm, is_mask=True, model=model)
        hist = ctx.finetune(model, steps=round_steps) if r < len(schedule) - 1 else []
        rounds.append({"stage": "round", "round": r, "target": level,
                       "sparsity": masks.sparsity_report(model)["overall"],
                       "kept_importance": {g: (k / t if t > 0 else None) for g, (k, t) in kept_share.items()},
                       "final_loss": hist[-1]["task_loss"] if hist else None})
    hist = ctx.finetune(model)
    return MethodOutput(model, rounds + [{"stage": "finetune", **h} for h in hist],
                        {"scope": "layer", "schedule": schedule, "rate": rate})


def _base_prune(ctx: Context, base: str) -> tuple[nn.Module, list]:
    """The first stage of a pipeline: ``base`` (a ``pipeline_base`` method) without its
    fine-tuning, unless it is ``iterative`` (its rounds fine-tune)."""
    bases = tuple(n for n, m in METHODS.items() if m.pipeline_base)
    if base not in bases:
        raise ValueError(f"base must be one of {bases}, got {base!r}")
    info = METHODS[base]
    out = info.fn(dataclasses.replace(ctx, finetune_steps=ctx.finetune_steps if info.iterative else 0))
    return out.model, out.history


@register("fp", fairness_aware=True, needs_constraint=True, uses_tau=True, family=AWARE, data="train+val",
          description="F&P: train with the fairness constraint, then prune and fine-tune")
def _fp(ctx: Context, *, base: str = "omp", fair_steps: int | None = None, fair_split: str = "train") -> MethodOutput:
    """Stage 1 fine-tunes the dense model with the constraint for ``fair_steps`` (default: the
    fine-tuning budget) on ``fair_split`` (``"train"``, the paper's F&P trains fairly before
    pruning; ``"val"`` keeps the method on the pruning data); stage 2 prunes it with ``base``
    and fine-tunes on val."""
    if fair_split not in ("train", "val"):
        raise ValueError(f"fair_split must be 'train' or 'val', got {fair_split!r}")
    fair_hist = ctx.finetune(ctx.model, split=fair_split,
                             steps=ctx.finetune_steps if fair_steps is None else fair_steps,
                             constraint=ctx.constraint)
    model, _ = _base_prune(ctx, base)
    hist = ctx.finetune(model)
    return MethodOutput(model, [{"stage": "fair", **h} for h in fair_hist] + [{"stage": "finetune", **h} for h in hist],
                        {"base": base, "data": "train+val" if fair_split == "train" else "val"})


@register("pf", fairness_aware=True, needs_constraint=True, uses_tau=True, family=AWARE,
          description="P&F: prune, then fine-tune with the fairness constraint")
def _pf(ctx: Context, *, base: str = "omp") -> MethodOutput:
    model, _ = _base_prune(ctx, base)
    hist = ctx.finetune(model, constraint=ctx.constraint)
    return MethodOutput(model, hist, {"base": base})


def _bilevel(ctx: Context, fn: Callable, method: str, options: dict[str, Any]) -> MethodOutput:
    cfg = bilevel_config(method, options)
    extra: dict[str, Any] = {}
    if fn is bilevel.bifp:
        extra["constraint"] = ctx.constraint
        if cfg.dual_split is not None and cfg.dual_split != cfg.prune_split:
            extra["dual_data"] = getattr(ctx.splits, cfg.dual_split)  # else bifp's: the pruning data less any holdout
        if cfg.safety > 0 and cfg.prune_split == "train":
            # the dense model was trained on train: the safety split must be data it never saw
            extra["safety_data"] = ctx.splits.val
    used = {cfg.prune_split} | ({cfg.dual_split} if fn is bilevel.bifp and cfg.dual_split else set())
    if "safety_data" in extra:
        used.add("val")
    data = "+".join(split for split in ("train", "val") if split in used)
    res = fn(ctx.model, getattr(ctx.splits, cfg.prune_split), sparsity=ctx.sparsity,
             config=cfg.replace(batch_size=ctx.batch_size), structured=ctx.structured, scope=ctx.scope,
             layers=list(ctx.layers()), seed=ctx.seed, device=ctx.device, counter=ctx.counter, progress=ctx.progress,
             accel=ctx.accel, data_split=data, **extra, **{k: options[k] for k in ("safety", "delta") if k in options})
    # (the safety test's settings are passed again by name: a safety split too small for them is
    # then an error, not a warning as when they come from the protocol)
    return MethodOutput(res.model, res.history, {"data": data}, result=res)


_BILEVEL_DOC = ("BiFP/BiP train the weights inside their own ``steps`` (the fine-tuning budget of "
                "the other methods does not apply). Options and defaults: the fields of "
                ":class:`fairprune_lite.bilevel.BiFPConfig` (``batch_size`` comes from :func:`prune`).")
_BIP_FIELDS = [f.name for f in dataclasses.fields(bilevel.BiFPConfig)
               if f.name not in ("fair_mask", "fair_weights", "dual_every", "dual_split", "batch_size", "log_every",
                                 "holdout", "select_every", "dual_rule", "accuracy_floor", "max_accuracy_drop",
                                 "safety", "delta", "protocol")]
_BIFP_FIELDS = [f.name for f in dataclasses.fields(bilevel.BiFPConfig) if f.name not in ("batch_size", "log_every")]


def _config_signature(names: list[str], base: bilevel.BiFPConfig,
                      extra: Mapping[str, Any] | None = None) -> inspect.Signature:
    """``(ctx, *, <field>=<default>, ..., <extra>)``: the method's options, defaults read from
    ``base`` (``extra``: further options and their defaults)."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=getattr(base, n)) for n in names]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=v) for n, v in (extra or {}).items()]
    return inspect.Signature(params)


# BiP starts from the paper's protocol (no constraint to certify; the book's reproduced baseline),
# BiFP from the library default (the certified protocol)
@register("bip", bilevel=True, protocol="paper", family=BILEVEL,
          description="BiP: bi-level pruning with the implicit gradient, no fairness term")
def _bip(ctx: Context, **options: Any) -> MethodOutput:
    return _bilevel(ctx, bilevel.bip, "bip", options)


@register("bifp", fairness_aware=True, needs_constraint=True, uses_tau=True, bilevel=True, family=BILEVEL,
          without_constraint="bip", description="BiFP: bi-level pruning with the fairness constraint")
def _bifp(ctx: Context, **options: Any) -> MethodOutput:
    if ctx.constraint is None:
        raise ValueError("bifp needs a fairness constraint (constraint=FairnessConstraint(...)); "
                         "use 'bip' for bi-level pruning without one")
    return _bilevel(ctx, bilevel.bifp, "bifp", options)


_bip.__doc__ = _BILEVEL_DOC
_bifp.__doc__ = _BILEVEL_DOC
_bip.__signature__ = _config_signature(_BIP_FIELDS, bilevel_base("bip"))
_bifp.__signature__ = _config_signature(_BIFP_FIELDS, bilevel_base("bifp"))


# ---------------------------------------------------------------------------------------------
# post-processing baseline
# ---------------------------------------------------------------------------------------------
#: our constraint kinds -> fairlearn ThresholdOptimizer constraints (it has no accuracy parity)
POSTPROC_CONSTRAINTS = {"equalized_odds": "equalized_odds", "demographic_parity": "demographic_parity"}
#: fairlearn options of the post-processing methods and their defaults
_OBJECTIVE, _GRID_SIZE = "accuracy_score", 1000


def _logit_estimator() -> Any:
    """A fitted scikit-learn "estimator" whose score is the logit in column 0 of ``X``."""
    import numpy as np
    BaseEstimator = require("sklearn.base", "postproc", "the postproc method").BaseEstimator

    class LogitColumn(BaseEstimator):  # type: ignore[misc,valid-type]
        def fit(self, X: Any, y: Any) -> LogitColumn:
            self.fitted_ = True
            return self

        def predict(self, X: Any) -> Any:
            return np.asarray(X)[:, 0]

    return LogitColumn().fit(None, None)


def _threshold_optimizer(ctx: Context, out: MethodOutput, *, objective: str, grid_size: int,
                         **info: Any) -> MethodOutput:
    """``out`` with group-specific thresholds fitted on its model's val logits by fairlearn's
    ``ThresholdOptimizer`` (``prefit``; randomised thresholds drawn with the run's seed) for the
    constraint's kind; its prediction then needs the sensitive attribute."""
    ThresholdOptimizer = require("fairlearn.postprocessing", "postproc",
                                 "the postproc method").ThresholdOptimizer
    assert ctx.constraint is not None  # prune refuses a post-processing method without one
    kind = POSTPROC_CONSTRAINTS[ctx.constraint.kind]
    logits, y, s = predict(out.model, ctx.splits.val)
    opt = ThresholdOptimizer(estimator=_logit_estimator(), constraints=kind, objective=objective,
                             grid_size=grid_size, prefit=True, predict_method="predict")
    opt.fit(logits.double().numpy()[:, None], y.numpy(), sensitive_features=s.numpy())
    seed = ctx.seed

    def post(lg: Tensor, sens: Tensor) -> Tensor:
        pred = opt.predict(lg.detach().double().cpu().numpy()[:, None], sensitive_features=sens.cpu().numpy(),
                           random_state=seed)
        return torch.as_tensor(pred).long()

    out.info.update(info, postprocess=post, needs_sensitive_at_prediction=True, postprocess_constraint=kind)
    return out


@register("postproc", fairness_aware=True, needs_constraint=True, constraint_kinds=tuple(POSTPROC_CONSTRAINTS),
          needs_sensitive_at_prediction=True, family=AWARE,
          description="OMP then fairlearn ThresholdOptimizer fitted on val (needs s at prediction time)")
def _postproc(ctx: Context, *, base: str = "omp", objective: str = _OBJECTIVE,
              grid_size: int = _GRID_SIZE) -> MethodOutput:
    """Prune with ``base`` and fine-tune (as that method does), then fit group-specific
    thresholds on the pruned model's val logits with fairlearn's ``ThresholdOptimizer``
    (Hardt et al., 2016; ``prefit``, randomised thresholds drawn with the run's seed) for the
    constraint's kind: equalized odds or demographic parity (fairlearn offers no accuracy
    parity, so an accuracy-gap constraint is refused). fairlearn enforces equality on val (no
    ``tau``); the result records ``needs_sensitive_at_prediction = True``: unlike BiFP this
    classifier must be given each example's sensitive attribute when it predicts."""
    model, hist = _base_prune(ctx, base)
    if not METHODS[base].iterative:
        hist = ctx.finetune(model)
    return _threshold_optimizer(ctx, MethodOutput(model, hist), objective=objective, grid_size=grid_size, base=base)


@register("bifp_postproc", fairness_aware=True, needs_constraint=True, uses_tau=True,
          constraint_kinds=tuple(POSTPROC_CONSTRAINTS), needs_sensitive_at_prediction=True, bilevel=True,
          family=BILEVEL, description="BiFP, then fairlearn ThresholdOptimizer fitted on val "
                                      "(needs s at prediction time)")
def _bifp_postproc(ctx: Context, *, objective: str = _OBJECTIVE, grid_size: int = _GRID_SIZE,
                   **options: Any) -> MethodOutput:
    """BiFP's model (its options: :class:`fairprune_lite.bilevel.BiFPConfig`'s fields, the
    constraint's ``tau`` included), then group-specific thresholds fitted on its val logits as
    ``postproc`` fits them (``objective``, ``grid_size``: fairlearn's). For users who do have
    each example's sensitive attribute at prediction time: the result records
    ``needs_sensitive_at_prediction = True`` (``bifp`` alone does not need it)."""
    return _threshold_optimizer(ctx, _bilevel(ctx, bilevel.bifp, "bifp_postproc", options), objective=objective,
                                grid_size=grid_size)


_bifp_postproc.__signature__ = _config_signature(
    _BIFP_FIELDS, bilevel_base("bifp_postproc"), extra={"objective": _OBJECTIVE, "grid_size": _GRID_SIZE})
