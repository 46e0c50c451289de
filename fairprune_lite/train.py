"""The one training / evaluation loop of the library: seeding, pass counting, the optimiser
factory, the NaN guard, :func:`fit`, :func:`predict` and :func:`evaluate`.

Every method (baselines and BiFP) trains through :func:`fit` or the same building blocks
(:func:`~fairprune_lite.loading.make_loader`, :func:`make_optimizer`, :func:`check_finite`,
:class:`PassCounter`), and is evaluated by :func:`evaluate`, so cost and metrics are counted the
same way everywhere. Batches come from :mod:`fairprune_lite.loading`, progress bars from
:mod:`fairprune_lite.progress`, and what a method returns (:class:`PruneResult`) from
:mod:`fairprune_lite.result`; those names stay importable from here.

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

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import fairness
from .accel import Accel, settings
from .loading import BatchLoader, _batches, _to, cycle, make_loader, model_device, subset
from .progress import progress_bar, progress_enabled
from .result import PruneResult, to_jsonable

__all__ = [
    "set_seed",
    "PassCounter",
    "make_optimizer",
    "task_loss",
    "check_finite",
    "fit",
    "predict",
    "evaluate",
    "pretrain",
    "PRETRAIN_SCHEDULES",
    "EVAL_BATCH_SIZE",
    "ConstraintLike",
    # re-exported from their homes (loading, progress, result), for code written against train
    "BatchLoader",
    "make_loader",
    "subset",
    "cycle",
    "model_device",
    "progress_enabled",
    "PruneResult",
    "to_jsonable",
]

#: the batch size of evaluation passes (no gradients: memory allows larger batches than training)
EVAL_BATCH_SIZE = 1024

#: the former private name of :func:`fairprune_lite.progress.progress_bar` (bilevel imports it)
_progress = progress_bar


@runtime_checkable
class ConstraintLike(Protocol):
    """What :func:`fit` and :func:`evaluate` need of a constraint
    (:class:`fairprune_lite.constraints.FairnessConstraint` is one): its loss term, its
    multiplier update after a step, its state for the history, a device move, and its
    feasibility on held-out logits."""

    def term(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor: ...

    def update(self, logits: Tensor, y: Tensor, s: Tensor) -> Any: ...

    def last_state(self) -> dict[str, Any]: ...

    def to(self, device: torch.device | str) -> Any: ...

    def feasibility(self, logits: Tensor, y: Tensor, s: Tensor) -> dict[str, Any]: ...


def _check_constraint(constraint: Any) -> ConstraintLike | None:
    if constraint is not None and not isinstance(constraint, ConstraintLike):
        raise ValueError(f"constraint must be a FairnessConstraint (or have its term, update, last_state, to and "
                         f"feasibility) or None, got {type(constraint).__name__}")
    return constraint


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
                for p, gr in zip(params, grads, strict=True):
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
    constraint: ConstraintLike | None = None,
    params: Iterable[Tensor] | None = None,
    counter: PassCounter | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
    log_every: int = 1,
    accel: Accel | None = None,
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
    loss. ``accel``: the GPU fast path's options (:class:`fairprune_lite.accel.Accel`) for the
    forward passes; None (the default) is the plain path, bit for bit.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if device is not None:
        model.to(device)
    dev = model_device(model)
    constraint = _check_constraint(constraint)
    if constraint is not None:
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
    bar = progress_bar(total, progress, "fit")
    batches = cycle(loader)
    fwd = model if accel is None else accel.forward_fn(accel.prepare(model))
    try:
        for step in range(total):
            x, y, s = _to(next(batches), dev)
            if accel is None:
                logits = model(x)
            else:
                with settings(accel):
                    logits = accel.forward(fwd, x, dev)
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


#: learning-rate schedules of :func:`pretrain`
PRETRAIN_SCHEDULES = ("constant", "cosine")


def pretrain(
    model: nn.Module,
    data: Any,
    *,
    epochs: int,
    lr: float,
    optimizer: str = "sgd",
    weight_decay: float = 0.0,
    batch_size: int = 128,
    seed: int = 0,
    schedule: str = "constant",
    reseed: bool = False,
    start_epoch: int = 0,
    on_epoch: Callable[[int, dict[str, float | int]], None] | None = None,
    progress: bool = False,
    accel: Accel | None = None,
) -> dict[str, float | int]:
    """Dense pretraining of ``model`` on the dataset ``data``: the one recipe, two schedules.

    ``schedule="constant"``: one :func:`fit` of ``epochs`` epochs at ``lr`` over one shuffled
    loader seeded ``seed`` (one optimizer throughout). ``schedule="cosine"``: epoch ``e`` (from
    ``start_epoch``, to resume from a checkpoint) is one :func:`fit` of one epoch at
    ``lr * 0.5 * (1 + cos(pi * e / epochs))`` (one value per epoch) over a loader seeded
    ``seed + e``, with a fresh optimizer. ``reseed=True`` calls :func:`set_seed` with the loader's
    seed before each fit. ``on_epoch(e, cost)`` is called after each fit (once, with
    ``e = epochs - 1``, for the constant schedule) with that fit's cost
    (:meth:`PassCounter.as_dict`), e.g. to write a checkpoint. ``accel``: :func:`fit`'s fast
    path options (None: the plain path). Returns the summed cost.
    """
    if schedule not in PRETRAIN_SCHEDULES:
        raise ValueError(f"schedule must be one of {PRETRAIN_SCHEDULES}, got {schedule!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not 0 <= start_epoch <= epochs or (schedule == "constant" and start_epoch):
        raise ValueError(f"start_epoch must be in [0, epochs] (0 for the constant schedule), got {start_epoch!r}")
    if schedule == "constant":
        rounds = [(epochs - 1, epochs, lr, seed)] if epochs else []
    else:
        rounds = [(e, 1, lr * 0.5 * (1.0 + math.cos(math.pi * e / max(1, epochs))), seed + e)
                  for e in range(start_epoch, epochs)]
    total: dict[str, float | int] = {}
    for e, n_epochs, lr_e, loader_seed in rounds:
        loader = make_loader(data, batch_size, shuffle=True, seed=loader_seed)
        counter = PassCounter()
        if reseed:
            set_seed(loader_seed)
        fit(model, loader, epochs=n_epochs, lr=lr_e, optimizer=optimizer, weight_decay=weight_decay,
            counter=counter, progress=progress, accel=accel)
        cost = counter.as_dict()
        total = {k: total.get(k, 0) + v for k, v in cost.items()}
        if on_epoch is not None:
            on_epoch(e, cost)
    return total


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: nn.Module, data: Any, *, device: torch.device | str | None = None, batch_size: int = EVAL_BATCH_SIZE,
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
    batch_size: int = EVAL_BATCH_SIZE,
    constraint: ConstraintLike | None = None,
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
    constraint = _check_constraint(constraint)
    if constraint is not None:
        report["feasibility"] = constraint.feasibility(logits if postprocess is None else pred.float() * 2 - 1, y, s)
    return report
