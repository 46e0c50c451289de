"""The one training / evaluation loop of the library, pass counting, NaN guard, ``PruneResult``.

Every method (baselines and BiFP) trains through :func:`fit` or the same building blocks
(:func:`make_loader`, :func:`make_optimizer`, :func:`check_finite`, :class:`PassCounter`), and is
evaluated by :func:`evaluate`, so cost and metrics are counted the same way everywhere.

Conventions (see ``CONTRIBUTING.md``): a batch is ``(x, y, s)``; a model outputs one logit per
example, shape ``[B]``; the task loss is ``binary_cross_entropy_with_logits(logit, y.float())``.

BatchNorm: its affine parameters (``weight``/``bias``) are ordinary weights, trained by
:func:`fit` and, in BiFP, by the lower (weight) level; they are never pruned. Running statistics
are updated whenever the model runs in ``train()`` mode (every training forward pass, including
BiFP's upper-level pass), and :func:`evaluate` / :func:`predict` switch to ``eval()`` so reported
metrics use the running statistics. Both restore the mode the model had.

Counting: one *forward pass* is one batch through the model; one *backward pass* is one call of
``backward`` on a loss; *examples* counts examples through forward passes (for the cost of
Fig. 6: "training iterations needed"); *iterations* counts optimizer steps of the weights (BiFP
counts one iteration per upper step, see :mod:`fairprune_lite.bilevel`).

Optimizers: :func:`make_optimizer`'s SGD runs the foreach kernels and, in the plain case, a lean
step without the generic step's per-call Python (:class:`_LeanSGD`); its arithmetic is SGD's own,
bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

if TYPE_CHECKING:  # imported lazily at run time (constraints imports fairness)
    from .constraints import FairnessConstraint

__all__ = [
    "set_seed",
    "PassCounter",
    "BatchLoader",
    "make_loader",
    "subset",
    "make_optimizer",
    "task_loss",
    "check_finite",
    "model_device",
    "fit",
    "predict",
    "evaluate",
    "progress_enabled",
    "PruneResult",
    "to_jsonable",
]

_OPTIMIZERS = ("sgd", "adam")


# ---------------------------------------------------------------------------------------------
# seeds and counting
# ---------------------------------------------------------------------------------------------
def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so CPU runs are bit-for-bit repeatable."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


@dataclass
class PassCounter:
    """Counts the work a method does: forward/backward passes, examples seen, iterations.

    ``wall_time_s`` is measured from construction (or the last :meth:`reset`) to
    :meth:`as_dict`, unless :meth:`stop` froze it.
    """

    forward_passes: int = 0
    backward_passes: int = 0
    examples: int = 0
    iterations: int = 0
    _t0: float = field(default_factory=time.perf_counter, repr=False)
    _t1: float | None = field(default=None, repr=False)

    def forward(self, n_examples: int) -> None:
        """Record one forward pass over a batch of ``n_examples``."""
        self.forward_passes += 1
        self.examples += int(n_examples)

    def backward(self, n: int = 1) -> None:
        """Record ``n`` backward passes."""
        self.backward_passes += int(n)

    def step(self, n: int = 1) -> None:
        """Record ``n`` iterations (optimizer steps)."""
        self.iterations += int(n)

    def reset(self) -> None:
        self.forward_passes = self.backward_passes = self.examples = self.iterations = 0
        self._t0, self._t1 = time.perf_counter(), None

    def stop(self) -> None:
        """Freeze the wall time (later work is still counted, but not timed)."""
        self._t1 = time.perf_counter()

    @property
    def wall_time_s(self) -> float:
        return (self._t1 if self._t1 is not None else time.perf_counter()) - self._t0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "iterations": self.iterations,
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "examples": self.examples,
            "wall_time_s": self.wall_time_s,
        }


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
class BatchLoader:
    """Deterministic batches of ``(x, y, s)`` from a dataset, no worker processes.

    In-memory datasets (``dataset.x`` a tensor, as :class:`~fairprune_lite.data.FairDataset`
    holds tabular and cached image data) are sliced directly, which is far faster than
    collating single items; any other map-style dataset is indexed item by item and stacked.
    With ``shuffle=True`` the order comes from a private generator seeded with ``seed``: the
    k-th pass over a loader is the same for every loader built with the same arguments, and the
    global RNG is neither used nor advanced.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ValueError(f"dataset must be a map-style dataset of (x, y, s), got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("dataset is empty")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self._gen = torch.Generator().manual_seed(self.seed)
        if self.drop_last and len(dataset) < self.batch_size:
            raise ValueError(f"drop_last=True with batch_size={batch_size} > dataset size {len(dataset)} gives no batch")

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self._gen) if self.shuffle else torch.arange(n)
        ds: Any = self.dataset  # a FairDataset, an image cache or any map-style dataset
        fast = isinstance(getattr(ds, "x", None), Tensor) and isinstance(getattr(ds, "y", None), Tensor) \
            and isinstance(getattr(ds, "s", None), Tensor)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if fast:
                yield ds.x[idx], ds.y[idx], ds.s[idx]
            elif callable(getattr(ds, "batch", None)):  # image caches read a batch in one gather
                yield ds.batch(idx)
            else:
                items = [ds[int(i)] for i in idx]
                yield tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(3))  # type: ignore[misc]


class _Part(Dataset):
    """Examples ``idx`` of an in-memory dataset, as tensors ``x, y, s`` (the loader's fast path)."""

    def __init__(self, base: Any, idx: Tensor) -> None:
        self.x, self.y, self.s = base.x[idx], base.y[idx], base.s[idx]
        self.name = f"{getattr(base, 'name', 'data')}[{len(idx)}]"

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.x[i], self.y[i], self.s[i]


def subset(dataset: Any, idx: Tensor) -> Dataset:
    """The examples ``idx`` of ``dataset``: tensors when it holds ``x``, ``y``, ``s`` tensors
    (fast batching), else a ``torch.utils.data.Subset``."""
    if all(isinstance(getattr(dataset, k, None), Tensor) for k in ("x", "y", "s")):
        return _Part(dataset, idx)
    return torch.utils.data.Subset(dataset, [int(i) for i in idx])


def make_loader(dataset: Dataset, batch_size: int = 128, *, shuffle: bool, seed: int = 0,
                drop_last: bool = False) -> BatchLoader:
    """A deterministic :class:`BatchLoader` over ``dataset`` (see there)."""
    return BatchLoader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


def _batches(data: Any, batch_size: int) -> Iterable:
    """Batches from a dataset (sequential, unshuffled) or from a loader / iterable of batches."""
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                     and hasattr(data, "y") and hasattr(data, "s")):
        return BatchLoader(data, batch_size, shuffle=False)
    if isinstance(data, (tuple, list)) and len(data) == 3 and all(isinstance(t, Tensor) for t in data):
        return [tuple(data)]
    if hasattr(data, "__iter__"):
        return data
    raise ValueError(f"data must be a dataset of (x, y, s), a loader, or an (x, y, s) tuple; got {type(data).__name__}")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without either)."""
    for t in model.parameters():
        return t.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _to(batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        raise ValueError(f"a batch must be (x, y, s), got {type(batch).__name__} of length "
                         f"{len(batch) if hasattr(batch, '__len__') else '?'}")
    x, y, s = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True), s.to(device, non_blocking=True)


# ---------------------------------------------------------------------------------------------
# losses, guards, optimizers
# ---------------------------------------------------------------------------------------------
def task_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean binary cross-entropy of one logit per example against ``y`` in {0, 1}."""
    if logits.dim() != 1:
        raise ValueError(f"model must output one logit per example (shape [B]), got shape {tuple(logits.shape)}")
    return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))


def check_finite(loss: Tensor | float, step: int, what: str = "loss") -> None:
    """Raise ``FloatingPointError`` naming ``step`` if ``loss`` is NaN or infinite."""
    v = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
    if not math.isfinite(v):
        raise FloatingPointError(
            f"{what} is {v} at step {step}; lower the learning rate or check the data for extreme values"
        )


class _LeanSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose ``step`` and ``zero_grad`` run just the arithmetic in the plain
    case (one parameter group, dense gradients, float ``lr`` and ``weight_decay``, no nesterov,
    maximize or dampening, no closure, no step hooks): the foreach operations of SGD's own
    multi-tensor path, in the same order (bit for bit, ``tests/test_bilevel.py``), without the
    generic step's profiler range, hook loops and per-step grouping of tensors by device and
    dtype (about 25 us a step on the CPU, twice per BiFP step). Any other case takes SGD's step.
    """

    def _plain(self) -> bool:
        if len(self.param_groups) != 1 or self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks:
            return False
        from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
        if _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
            return False
        g = self.param_groups[0]
        return not (g["nesterov"] or g["maximize"] or g["dampening"] or g["differentiable"] or g["fused"]
                    or isinstance(g["lr"], Tensor) or isinstance(g["weight_decay"], Tensor))

    def step(self, closure: Any = None) -> Any:
        if closure is not None or not self._plain():
            return torch.optim.SGD.step(self, closure)
        g = self.param_groups[0]
        params = [p for p in g["params"] if p.grad is not None]
        if not params:
            return None
        grads = [cast(Tensor, p.grad) for p in params]
        if any(gr.is_sparse for gr in grads):
            return torch.optim.SGD.step(self, closure)
        wd, mom, lr = g["weight_decay"], g["momentum"], g["lr"]
        with torch.no_grad():
            if wd != 0:
                grads = list(torch._foreach_add(grads, params, alpha=wd))
            if mom != 0:
                bufs, old, old_grads = [], [], []
                for p, gr in zip(params, grads):
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:  # the first step: the buffer is the gradient
                        buf = state["momentum_buffer"] = gr.detach().clone()
                    else:
                        old.append(buf)
                        old_grads.append(gr)
                    bufs.append(buf)
                if old:
                    torch._foreach_mul_(old, mom)
                    torch._foreach_add_(old, old_grads, alpha=1.0)
                grads = bufs
            torch._foreach_add_(params, grads, alpha=-lr)
        return None

    step.hooked = True  # type: ignore[attr-defined]  # (Optimizer would wrap it in its profiling hook)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None


def make_optimizer(params: Iterable[Tensor], name: str = "sgd", *, lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """``"sgd"`` (with ``momentum``) or ``"adam"`` over ``params``; validates the arguments."""
    if name not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {name!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters given to the optimizer")
    if name == "sgd":
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        # foreach (the default on CUDA): the same per-tensor arithmetic as the default loop on the
        # CPU, bit for bit (tests/test_bilevel.py), with fewer kernel launches; _LeanSGD skips the
        # generic step's Python around it
        return _LeanSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _steps_from(epochs: int | None, steps: int | None, n_batches: int) -> int:
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps")
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        return int(epochs) * n_batches
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    return int(steps)


def cycle(loader: Iterable) -> Iterator:
    """Endless batches: the loader's passes one after the other (each pass re-shuffled)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("loader yields no batches")


def progress_enabled(requested: bool) -> bool:
    """Whether to draw a progress bar: requested, stderr is a terminal, and ``FAIRPRUNE_QUIET``
    is not set. Piped or logged output gets no bar (a bar redrawn into a file is a flood of
    ``fit: 0%|`` lines)."""
    if not requested:
        return False
    if os.environ.get("FAIRPRUNE_QUIET", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _progress(total: int, enabled: bool, desc: str):
    if not progress_enabled(enabled):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    loader: Iterable,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    lr: float = 0.01,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    constraint: FairnessConstraint | None = None,
    params: Iterable[Tensor] | None = None,
    counter: PassCounter | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
    log_every: int = 1,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``loader`` for ``epochs`` passes or ``steps`` batches; return the history.

    The loss per batch is the task loss plus, when ``constraint`` is given, its term
    ``constraint.term(logits, y, s)`` (Lagrangian or fixed penalty, see
    :mod:`fairprune_lite.constraints`); after each weight step the constraint's multipliers are
    updated by ``constraint.update(logits, y, s)`` on the measured (exact) violation of the
    batch (a no-op in penalty mode). ``params`` defaults to ``model.parameters()``: on a model
    carrying masks (:func:`fairprune_lite.masks.apply_masks`) that is the dense weights theta
    and BatchNorm parameters, never the mask scores, so this is masked fine-tuning.

    History: one dict per ``log_every`` steps (and the last step) with ``step``, ``epoch``,
    ``loss`` (total), ``task_loss`` and, with a constraint, its ``state`` (multipliers,
    surrogate and exact values). Raises ``FloatingPointError`` naming the step on a NaN/inf
    loss.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if device is not None:
        model.to(device)
    dev = model_device(model)
    if constraint is not None:
        from .constraints import FairnessConstraint

        if not isinstance(constraint, FairnessConstraint):
            raise ValueError(f"constraint must be a FairnessConstraint or None, got {type(constraint).__name__}")
        constraint.to(dev)
    try:
        n_batches = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n_batches = None
    if epochs is not None and n_batches is None:
        raise ValueError("epochs needs a loader with a length; give steps instead")
    total = _steps_from(epochs, steps, n_batches or 1)
    opt = make_optimizer(model.parameters() if params is None else params, optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum)
    counter = counter if counter is not None else PassCounter()
    history: list[dict[str, Any]] = []
    was_training = model.training
    model.train()
    bar = _progress(total, progress, "fit")
    batches = cycle(loader)
    try:
        for step in range(total):
            x, y, s = _to(next(batches), dev)
            logits = model(x)
            counter.forward(len(y))
            task = task_loss(logits, y)
            loss = task
            if constraint is not None:
                loss = loss + constraint.term(logits, y, s)
            check_finite(loss, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            counter.backward()
            opt.step()
            counter.step()
            state = None
            if constraint is not None:
                constraint.update(logits.detach(), y, s)
            if step % log_every == 0 or step == total - 1:
                rec: dict[str, Any] = {
                    "step": step,
                    "epoch": step / n_batches if n_batches else None,
                    "loss": float(loss.detach()),
                    "task_loss": float(task.detach()),
                }
                if constraint is not None:
                    state = constraint.last_state()
                    rec["constraint"] = state
                history.append(rec)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return history


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: nn.Module, data: Any, *, device: torch.device | str | None = None, batch_size: int = 1024,
            counter: PassCounter | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(logits, y, s)`` on CPU for a dataset, a loader or one ``(x, y, s)`` tuple, in ``eval()`` mode."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if device is not None:
        model.to(device)
    dev = model_device(model)
    was_training = model.training
    model.eval()
    out_l, out_y, out_s = [], [], []
    try:
        for batch in _batches(data, batch_size):
            x, y, s = _to(batch, dev)
            logits = model(x)
            if logits.dim() != 1:
                raise ValueError(f"model must output one logit per example (shape [B]), got {tuple(logits.shape)}")
            if counter is not None:
                counter.forward(len(y))
            out_l.append(logits.float().cpu())
            out_y.append(y.cpu())
            out_s.append(s.cpu())
    finally:
        model.train(was_training)
    if not out_l:
        raise ValueError("data yields no batches")
    return torch.cat(out_l), torch.cat(out_y).long(), torch.cat(out_s).long()


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    device: torch.device | str | None = None,
    dense_model: nn.Module | Tensor | np.ndarray | None = None,
    batch_size: int = 1024,
    constraint: FairnessConstraint | None = None,
    postprocess: Any = None,
) -> dict[str, Any]:
    """Fairness report on ``data`` plus the mean task ``loss`` and the number of examples ``n``.

    Keys are those of :func:`fairprune_lite.fairness.fairness_report` (``accuracy``,
    ``accuracy_gap``, DP/EO/EOpp differences, per-group rates, ``majority_baseline``) plus
    ``loss`` and ``n``. ``dense_model`` (the unpruned model, or its 0/1 predictions on the
    same examples in the same order) adds ``degradation`` (Def. 2: dense accuracy minus pruned
    accuracy) and ``degradation_gap`` (Def. 3: the gap of that degradation between groups).
    ``constraint`` (a :class:`~fairprune_lite.constraints.FairnessConstraint`) adds
    ``feasibility = {"metric", "value", "tau", "se", "met"}`` (value of the constrained metric on
    this data, its binomial standard error, ``met = value <= tau``). ``postprocess(logits, s)``
    (a post-processing classifier, which reads the sensitive attribute) replaces the 0/1
    predictions ``logits > 0``; ``loss`` stays that of the model's logits.
    """
    from . import fairness

    logits, y, s = predict(model, data, device=device, batch_size=batch_size)
    pred = (logits > 0).long() if postprocess is None else torch.as_tensor(postprocess(logits, s)).long().flatten()
    if pred.shape != y.shape:
        raise ValueError(f"postprocess returned {pred.numel()} predictions for {y.numel()} examples")
    report = dict(fairness.fairness_report(y, pred, sensitive_features=s))
    report["loss"] = float(F.binary_cross_entropy_with_logits(logits, y.float()))
    report["n"] = int(len(y))
    if dense_model is not None:
        if isinstance(dense_model, nn.Module):
            d_logits, d_y, _ = predict(dense_model, data, device=device, batch_size=batch_size)
            if not torch.equal(d_y, y):
                raise ValueError("dense_model saw different examples than model (data is shuffled?)")
            dense_pred = (d_logits > 0).long()
        else:
            dense_pred = torch.as_tensor(np.asarray(dense_model)).long().flatten()
            if dense_pred.shape != pred.shape:
                raise ValueError(f"dense_model predictions have {dense_pred.numel()} entries, data has {pred.numel()}")
            if not bool(((dense_pred == 0) | (dense_pred == 1)).all()):
                raise ValueError("dense_model predictions must be 0/1 labels")
        report["degradation"] = float(fairness.degradation(y, dense_pred, pred))
        report["degradation_gap"] = float(fairness.degradation_gap(y, dense_pred, pred, sensitive_features=s))
    if constraint is not None:
        from .constraints import FairnessConstraint

        if not isinstance(constraint, FairnessConstraint):
            raise ValueError(f"constraint must be a FairnessConstraint or None, got {type(constraint).__name__}")
        report["feasibility"] = constraint.feasibility(logits if postprocess is None else pred.float() * 2 - 1, y, s)
    return report


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Recursively convert tensors / numpy values / dataclasses / tuples to JSON types.

    Scalar tensors and numpy scalars become Python numbers, other tensors and arrays nested
    lists, tuple keys strings; modules are replaced by their class name.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Tensor):
        obj = obj.detach().cpu()
        return obj.item() if obj.numel() == 1 and obj.dim() == 0 else obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, nn.Module):
        return type(obj).__name__
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, str) else str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return to_jsonable(obj.state_dict())
    return repr(obj)


@dataclass
class PruneResult:
    """What every pruning method returns.

    Attributes:
        method: registry name (``"bifp"``, ``"snip"``, ...).
        sparsity_target: requested sparsity in ``[0, 1)``.
        masks: ``{layer name: weight-shaped {0, 1} float tensor}``, the final masks.
        model: the pruned (and fine-tuned) model; not serialised by :meth:`to_dict`.
        metrics: ``{split: evaluate(...) dict}``, e.g. ``{"val": ..., "test": ...}``.
        cost: ``{"iterations", "forward_passes", "backward_passes", "examples",
            "wall_time_s", "data": "train" | "val"}`` (which split the pruning used).
        history: per-step dicts (losses, surrogate values, multipliers, sparsity, ...).
        config: the arguments the method ran with (JSON types).
        scores: the final continuous mask scores ``{layer: tensor}`` of score-based methods
            (BiFP / BiP), else None; not serialised by :meth:`to_dict`.
    """

    method: str
    sparsity_target: float
    masks: dict[str, Tensor]
    model: nn.Module | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Tensor] | None = None

    def sparsity(self) -> float:
        """Achieved overall sparsity of :attr:`masks` (fraction of zeros)."""
        total = sum(m.numel() for m in self.masks.values())
        zeros = sum(int((m == 0).sum()) for m in self.masks.values())
        return zeros / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: no tensors, no model; masks as per-layer sparsity counts."""
        layers = {n: {"pruned": int((m == 0).sum()), "total": int(m.numel())} for n, m in self.masks.items()}
        return to_jsonable({
            "method": self.method,
            "sparsity_target": float(self.sparsity_target),
            "sparsity": self.sparsity(),
            "masks": layers,
            "metrics": self.metrics,
            "cost": self.cost,
            "history": self.history,
            "config": self.config,
        })

    def copy_model(self) -> nn.Module | None:
        """A deep copy of :attr:`model` (handy before further fine-tuning)."""
        return None if self.model is None else copy.deepcopy(self.model)
