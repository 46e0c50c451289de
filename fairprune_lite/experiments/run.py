"""One run: load the data (seeded, stratified caps), pretrain the dense model (cached, resumable
per epoch), prune and fine-tune with :func:`fairprune_lite.pruners.prune`, and build the
:class:`~fairprune_lite.experiments.results.Result`.

Protocol
--------
1. Load the dataset (:func:`fairprune_lite.data.load_dataset`, split seed ``profile.data_seed``)
   and take a seeded subsample stratified by ``(s, y)`` cell when the profile caps a split.
2. Pretrain the dense model on ``train`` (seeded init, SGD with momentum, cosine learning rate
   over :meth:`Profile.pretrain_epochs_for` epochs; one fresh optimizer and loader seed per
   epoch, so that an epoch can be resumed from its checkpoint with the same bits). Cached per
   (dataset, attributes, model, width, seed, profile, pretraining knobs) in
   ``<cache>/dense/<key>.pt``, written atomically after every epoch, tensors and plain values
   only (loads with ``weights_only=True``). A dense model no better than the majority class on
   ``val`` is reported in the result's ``warnings`` (and loudly by ``fairprune run`` / ``sweep``):
   pruning it prunes a constant predictor.
3. Prune, fine-tune on ``val`` and evaluate on ``val`` and ``test`` in one call of
   :func:`~fairprune_lite.pruners.prune` (its ``metrics`` are the result's ``val`` / ``test``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .. import data as _data
from .. import masks as _masks
from .. import models as _models
from .. import pruners
from .. import train as _train
from ..data import stratified_subsample
from ..result import to_jsonable
from .config import RunSpec, check_spec, run_constraint, slug
from .profiles import Profile, log
from .provenance import provenance
from .results import SPLITS, Result, atomic_torch_save, check_writable, finite, validate_result, write_json

__all__ = ["run", "run_to_file", "pretrain", "load_splits", "stratified_subsample", "default_cache_dir",
           "build_model", "dense_key", "HISTORY_MAX"]

HISTORY_MAX = 200


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
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
    ds = str(spec.dataset)
    if ds.endswith(".npz"):
        splits = _data.load_dataset(ds, seed=profile.data_seed)
    else:
        opts = dict(profile.dataset_options.get(ds, {}))
        splits = _data.load_dataset(ds, root=root if ds in ("celeba", "lfw") else None, target=spec.target,
                                    sensitive=spec.sensitive, seed=profile.data_seed, **opts)
    parts = [stratified_subsample(d, profile.limits.get(k), profile.data_seed, k) for k, d in splits.items()]
    train, val, test = parts
    return _data.Splits(train, val, test, meta=dict(splits.meta))


def _attribute_names(splits: Any, spec: RunSpec) -> tuple[str | None, str | None]:
    """The target / sensitive attribute names actually used (the loader's defaults filled in)."""
    meta = getattr(splits, "meta", {}) or {}
    tgt = spec.target if spec.target is not None else meta.get("target")
    sen = spec.sensitive if spec.sensitive is not None else meta.get("sensitive")
    return (None if tgt is None else str(tgt)), (None if sen is None else str(sen))


# ---------------------------------------------------------------------------------------------
# dense pretraining (cached, resumable per epoch)
# ---------------------------------------------------------------------------------------------
def default_cache_dir(out: str | os.PathLike | None = None) -> Path:
    """``$FAIRPRUNE_CACHE`` if set, else ``<out>/cache`` (``runs/cache`` without ``out``)."""
    env = os.environ.get("FAIRPRUNE_CACHE")
    if env:
        return Path(env)
    return Path(out if out is not None else "runs") / "cache"


def build_model(spec: RunSpec, profile: Profile, splits: Any) -> tuple[nn.Module, str, Any]:
    """The spec's model (seeded initialisation), its name and width."""
    name = spec.model or profile.model_for(spec.dataset, splits.input_shape)
    width = profile.widths.get(name)
    model = _models.make_model(name, in_shape=splits.input_shape, width=width, seed=spec.seed)
    return model, name, width


def dense_key(spec: RunSpec, profile: Profile, model_name: str, width: Any, splits: Any) -> str:
    """The cache key of a dense model: everything its training depends on."""
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
        "batch_size": profile.batch_size, "epochs": profile.pretrain_epochs_for(len(splits.train)),
        "lr": profile.pretrain_lr, "wd": profile.pretrain_weight_decay, "n": [len(d) for d in splits],
    }
    if profile.accel is not None:  # a fast path changes the arithmetic (keys without one are as before)
        knobs["accel"] = profile.accel.as_dict()
    blob = json.dumps(knobs, sort_keys=True, default=str)
    return f"{slug(Path(ds).stem if ds.endswith('.npz') else ds)}_{model_name}_seed{spec.seed}_" \
           f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def pretrain(spec: RunSpec, profile: Profile, splits: Any, *, cache_dir: str | os.PathLike | None,
             device: str = "cpu", progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The dense model of ``spec`` trained on ``splits.train``, from the cache when present.

    Checkpoints are written atomically after every epoch (``{"state_dict", "epoch", "cost"}``,
    tensors and plain values only) and loaded with ``weights_only=True``; a checkpoint that fails
    to load is reported and training restarts from scratch. Returns the model (in ``eval`` mode,
    on ``device``) and the pretraining cost (``cached`` tells whether any epoch was reused).
    """
    model, name, width = build_model(spec, profile, splits)
    model.to(device)
    path = None
    start, cost_acc = 0, {"iterations": 0, "forward_passes": 0, "backward_passes": 0, "examples": 0,
                          "wall_time_s": 0.0}
    cached = False
    if cache_dir is not None:
        path = Path(cache_dir) / "dense" / (dense_key(spec, profile, name, width, splits) + ".pt")
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
                model, name, width = build_model(spec, profile, splits)
                model.to(device)
                start, cached = 0, False
    epochs = profile.pretrain_epochs_for(len(splits.train))

    def checkpoint(epoch: int, c: dict[str, float | int]) -> None:
        for k in cost_acc:
            cost_acc[k] += c[k]
        if path is not None:
            atomic_torch_save(path, {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                     "epoch": epoch + 1, "cost": dict(cost_acc),
                                     "meta": {"model": name, "width": width, "seed": spec.seed,
                                              "profile": profile.name}})

    _train.pretrain(model, splits.train, epochs=epochs, lr=profile.pretrain_lr,
                    weight_decay=profile.pretrain_weight_decay, batch_size=profile.batch_size,
                    seed=spec.seed * 100_003, schedule="cosine", reseed=True, start_epoch=min(start, epochs),
                    on_epoch=checkpoint, progress=progress, accel=profile.accel)
    model.eval()
    return model, dict(cost_acc) | {"cached": cached, "epochs": epochs, "model": name, "width": width}


def dense_warnings(dense_metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A warning when the dense model is no better than predicting the majority class on ``val``."""
    m = dense_metrics["val"]
    if m["accuracy"] <= m["majority_baseline"]:
        return [f"dense model no better than the majority class on val (accuracy {m['accuracy']:.4f} <= "
                f"majority baseline {m['majority_baseline']:.4f}): pruning it prunes a constant predictor; "
                f"pretrain longer (settings: pretrain_epochs / pretrain_min_steps)"]
    return []


def pruned_warnings(metrics: Mapping[str, Mapping[str, Any]], *, fairness_aware: bool = True,
                    method_config: Mapping[str, Any] | None = None) -> list[str]:
    """Warnings about the pruned model, for the result and the command line:

    * on ``val`` and on ``test``: accuracy within :data:`~fairprune_lite.pruners.NEAR_MAJORITY`
      of predicting the majority class (a constant predictor meets every fairness constraint, so
      "feasible" then means nothing; said with the reason for the methods that train with the
      constraint);
    * BiFP's selection: no iterate passed (constraint and accuracy floor on the selection split):
      no solution was found at this tau and sparsity;
    * BiFP's safety test: the certificate failed (the bound exceeds tau).
    """
    out = []
    for split in ("val", "test"):
        m = metrics.get(split)
        if not m or not pruners.near_majority(m):
            continue
        feas = m.get("feasibility") or {}
        why = (f"; it meets the constraint ({feas['metric']} {feas['value']:.4f} <= tau {feas['tau']}) the way a "
               f"constant predictor does: the constraint may not be satisfiable at this sparsity by a useful model "
               f"(loosen tau or prune less)" if fairness_aware and feas.get("met") else "")
        out.append(f"pruned model within {pruners.NEAR_MAJORITY:.2f} of the majority class on {split} (accuracy "
                   f"{m['accuracy']:.4f}, majority baseline {m['majority_baseline']:.4f}){why}")
    cfg = method_config or {}
    sel = cfg.get("selection")
    if sel and not sel.get("passed", True):
        what = "the constraint" if sel.get("floor_ok", True) else "the accuracy floor"
        out.append(f"no solution found at this tau and sparsity: no iterate met {what} on the selection split "
                   f"({sel.get('held_out')} rows; returned: step {sel.get('step')}, accuracy {sel.get('accuracy'):.4f}, "
                   f"constraint value {sel.get('value'):.4f}); try a looser tau, less sparsity or more data")
    cert = cfg.get("certificate")
    if cert and not cert.get("certified") and cert.get("bound") is None:
        out.append(f"not certified: {cert.get('reason', 'no bound was computed')}")
    elif cert and not cert.get("certified"):
        out.append(f"not certified: the {1 - cert['delta']:.0%} upper bound {cert['bound']:.4f} on {cert['n']} "
                   f"held-out rows exceeds tau {cert['tau']}; try a looser tau, less sparsity or more data")
    return out


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
def _scaled(n: int, budget: float) -> int:
    return max(1, int(round(n * budget)))


def _method_arguments(spec: RunSpec, profile: Profile) -> dict[str, Any]:
    """The pruning-stage arguments the profile sets for ``spec.method`` (keyword arguments of
    :func:`fairprune_lite.pruners.prune`), before the spec's own ``method_kwargs``.

    A bi-level method (the ``bilevel`` trait) gets ``steps`` (``bifp_steps`` scaled by the
    budget) under every protocol, and the profile's ``bifp_paper`` overrides only when its
    protocol resolves to ``"paper"`` (named in ``method_kwargs``, or the library default's):
    another named protocol keeps its own settings."""
    info = pruners.METHODS[spec.method]
    args: dict[str, Any] = {
        "finetune_steps": _scaled(profile.finetune_steps, spec.budget),
        "batch_size": profile.batch_size,
        "lr": profile.finetune_lr,
    }
    if info.bilevel:
        args["steps"] = _scaled(profile.bifp_steps, spec.budget)
        own = set(info.options())
        protocol = pruners.bilevel_protocol(spec.method, spec.method_kwargs)
        args.update({k: v for k, v in profile.bifp_overrides(protocol).items() if k in own})
    return args


def _thin(history: Sequence[Any], n_max: int = HISTORY_MAX) -> list[Any]:
    if len(history) <= n_max:
        return list(history)
    idx = np.unique(np.linspace(0, len(history) - 1, n_max).round().astype(int))
    return [history[i] for i in idx]


def run(spec: RunSpec | Mapping[str, Any], *, out: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None, device: str | None = None,
        progress: bool = False, quiet: bool = True, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run one pruning experiment and return its result dict (:class:`Result`).

    ``out``: when given, the result is written there (atomically) as ``<run_id>.json`` and the
    final weights, if ``spec.save_weights``, as ``<run_id>.weights.pt``. ``cache_dir``: where
    dense checkpoints live (default :func:`default_cache_dir`). ``device`` overrides the
    profile's.
    """
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
    t0 = time.perf_counter()
    splits = load_splits(spec, profile, root=root)
    run_id = spec.run_id()
    log(f"[{run_id}] data: " + ", ".join(f"{k} {len(d)}" for k, d in splits.items()), quiet)
    dense, pre_cost = pretrain(spec, profile, splits, cache_dir=cache_dir, device=dev, progress=progress)
    constraint = run_constraint(spec, profile)
    dense_metrics = {k: _train.evaluate(dense, getattr(splits, k), batch_size=profile.eval_batch_size,
                                        constraint=constraint) for k in SPLITS}
    warnings = dense_warnings(dense_metrics)  # in the result; the command line prints them

    kwargs = _method_arguments(spec, profile) | dict(spec.method_kwargs)
    if spec.structured is not None:
        kwargs["structured"] = spec.structured
    counter = _train.PassCounter()
    _train.set_seed(spec.seed)
    pr = pruners.prune(spec.method, copy.deepcopy(dense), splits, sparsity=spec.sparsity, seed=spec.seed,
                       constraint=constraint, device=dev, counter=counter, progress=progress,
                       evaluate_on=SPLITS, eval_batch_size=profile.eval_batch_size, accel=profile.accel, **kwargs)
    if pr.model is None:
        raise RuntimeError(f"method {spec.method!r} returned no model")
    d = pr.to_dict()
    warnings += pruned_warnings(pr.metrics, fairness_aware=pruners.METHODS[spec.method].fairness_aware,
                                method_config=d.get("config", {}))
    target, sensitive = _attribute_names(splits, spec)
    cost = {k: d["cost"].get(k) for k in ("iterations", "forward_passes", "backward_passes", "examples",
                                         "wall_time_s") if k in d["cost"]}
    for k in ("iterations", "forward_passes", "backward_passes", "examples"):
        cost.setdefault(k, getattr(counter, k))
    cost.setdefault("wall_time_s", counter.wall_time_s)
    result = Result(
        run_id=run_id, spec=spec.to_dict(), label=spec.run_label, method=spec.method,
        dataset=str(spec.dataset), target=target, sensitive=sensitive, model=pre_cost["model"],
        width=pre_cost["width"], sparsity_target=float(spec.sparsity), sparsity=float(d["sparsity"]),
        structured=d.get("config", {}).get("structured", spec.structured), seed=spec.seed,
        profile=profile.name, profile_settings=profile.to_dict(), constraint=spec.constraint,
        tau=float(spec.tau), surrogate=constraint.state_dict().get("surrogate", spec.surrogate),
        constraint_config=constraint.state_dict(), budget=float(spec.budget),
        n={k: len(v) for k, v in splits.items()}, val=pr.metrics["val"], test=pr.metrics["test"],
        dense=dense_metrics, cost=cost,
        pretrain_cost={k: v for k, v in pre_cost.items() if k not in ("model", "width")},
        wall_time_s=time.perf_counter() - t0, layers=d.get("masks", {}), method_config=d.get("config", {}),
        history=_thin(d.get("history", [])), weights=None, warnings=warnings, provenance=provenance(dev),
    )
    res = finite(to_jsonable(result.to_dict()))
    if out is not None:
        out = Path(out)
        if spec.save_weights:
            pruned = pr.model
            if any(_masks.is_masked(m) for m in pruned.modules()):
                pruned = copy.deepcopy(pruned)
                _masks.remove_masks(pruned, bake=True)
            wname = f"{run_id}.weights.pt"
            sd = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
            atomic_torch_save(out / wname, {"state_dict": sd, "model": res["model"], "width": res["width"],
                                            "masks": {k: v.detach().cpu() for k, v in pr.masks.items()}})
            res["weights"] = wname
        validate_result(res)
        write_json(out / f"{run_id}.json", res)
    else:
        validate_result(res)
    return res


def run_to_file(spec: RunSpec, out: str | os.PathLike, **kw: Any) -> Path:
    """:func:`run` and return the path of the written result file."""
    res = run(spec, out=out, **kw)
    return Path(out) / f"{res['run_id']}.json"
