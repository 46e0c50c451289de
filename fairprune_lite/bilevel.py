r"""BiFP and BiP: bi-level pruning with an implicit-gradient mask update.

The problem (``METHOD.md``)::

    upper:  min_m  L_up(m ⊙ theta*(m))                 m: scores in [0, 1], top-k binary in forward
    lower:  theta*(m) = argmin_theta  L_low(m ⊙ theta) + (gamma / 2) ||theta||^2

``L_low`` is the task loss, plus the fairness term when ``fair_weights``; ``L_up`` the task loss,
plus the fairness term when ``fair_mask``. With both off this is BiP (Zhang et al., 2022).

Implicit gradient (derivation, checked numerically in ``tests/test_bilevel.py``)
--------------------------------------------------------------------------------
Write ``z = m ⊙ theta`` and ``g_low = grad_z L_low(z)``, ``g_up = grad_z L_up(z)``.

1. The lower solution satisfies ``G(theta, m) = m ⊙ g_low(m ⊙ theta) + gamma * theta = 0``
   (chain rule: ``d z / d theta = diag(m)``).
2. Implicit function theorem: ``d theta*/d m = -(dG/dtheta)^{-1} dG/dm`` with
   ``dG/dtheta = diag(m) H diag(m) + gamma I`` and ``dG/dm = diag(g_low) + diag(m) H diag(theta)``,
   ``H = grad_z^2 L_low``.
3. Drop ``H`` (BiP's assumption): ``d theta*/d m ≈ -(1/gamma) diag(g_low)``.
4. Total derivative of ``L_up(m ⊙ theta*(m))``: the direct part is ``(d z/d m)^T g_up =
   theta ⊙ g_up``; through ``theta*`` it is ``(d theta*/d m)^T (d z/d theta)^T g_up =
   -(1/gamma) g_low ⊙ m ⊙ g_up``. Together::

       grad_m L_up ≈ g_up ⊙ (theta - (1/gamma) m ⊙ g_low)                       ("paper")

   which is the formula of ``METHOD.md``. Without step 3 the second term has the extra factors
   ``(diag(m) H diag(m) + gamma I)^{-1}`` and ``diag(m) H diag(theta)``; the tests measure what
   dropping them costs: the error is first order in ``||H|| / gamma`` for large ``gamma``, and
   the approximation breaks down for ``gamma`` small against ``||H||``.

One backward pass. The masked layers compute ``z = theta * (m_bin + s - s.detach())`` (straight-
through estimator, :mod:`fairprune_lite.masks`), so one backward of a loss gives both
``grad_s = g ⊙ theta`` (the direct part) and ``grad_theta = m ⊙ g``. Because the forward mask is
binary, ``m ⊙ g_up ⊙ g_low = (m ⊙ g_up) ⊙ (m ⊙ g_low) = grad_theta L_up ⊙ grad_theta L_low``, hence::

    grad_m L_up ≈ grad_s L_up - (1/gamma) grad_theta L_up ⊙ grad_theta L_low

When ``L_up`` and ``L_low`` are the same loss on the same batch (BiP, or BiFP with both
fairness switches on) that is one backward pass: ``grad_s - grad_theta**2 / gamma``. When they
differ (the ablations "w/o m" and "w/o w") it costs a second backward pass through the same
forward graph (``retain_graph``), no second forward. Structured masks (one score per output
channel) sum the product over the filter, exactly as the STE already sums ``grad_s``.

Variants (``ig=``):

* ``"paper"``: the formula above.
* ``"repo"``: what BiP's public implementation computes (OPTML-Group/BiP, ``trainer/bilevel.py``;
  discussed in that repository's issue "Question about calculating implicit gradients?"): it
  multiplies the *score* gradient of the upper loss by the *score* gradient of the lower loss,
  ``grad_s L_up - c * grad_s L_up ⊙ grad_s L_low = g_up ⊙ (theta - c * theta^2 ⊙ g_low)``, i.e.
  ``theta^2`` where the derivation has ``m``, with a free step ``c`` (their ``lr2``); here
  ``c = 1/gamma``. The correction no longer vanishes on pruned weights and scales with
  ``theta^2`` on kept ones.
* ``"first_order"``: ``grad_s L_up = g_up ⊙ theta`` only (``gamma -> infinity``).

Solver (:func:`bifp`)
---------------------
Per upper step (``update="alternating"``, the default): ``lower_steps`` weight steps, each on a
fresh batch, ``theta <- theta - alpha * grad_theta [L_low + (weight decay) ||theta||^2 / 2]``,
then one mask step on a fresh batch, ``s <- clip(s - beta * IG, 0, 1)``. The weight optimizer
holds ``model.parameters()`` (dense weights theta, biases, BatchNorm affine parameters; BN
running statistics update in every training-mode forward pass); the score optimizer holds only
the scores; both ``zero_grad(set_to_none=True)`` before each use. ``update="joint"`` shares one
forward pass between the two levels (same batch, same point, ``lower_steps`` must be 1): the
cheapest step, one forward and one backward when the losses coincide. Multipliers of the
constraint ascend once per upper step on the violation measured exactly (0/1 predictions, not
the surrogate) on the constraint's moving window of the last ``window`` upper batches (a small
group has a handful of examples per batch; a gap measured on one batch is mostly noise), or,
with ``dual_every=k``, every ``k`` steps on a full evaluation pass over ``dual_data`` (counted in
the cost). The weights and scores see ``lambda * surrogate`` (proxy-Lagrangian).

Passes per upper step (counted by :class:`~fairprune_lite.train.PassCounter`; ``benchmarks/
bifp_gap_study.py --cost`` measures them and the wall time against a masked SGD step):

* BiP, or BiFP with both switches on: alternating 2 forward + 2 backward, joint 1 + 1.
* w/o m or w/o w with ``ig="paper"`` / ``"repo"``: alternating 2 + 3, joint 1 + 2 (the upper and
  lower losses differ, so a second backward through the same graph).
* ``ig="first_order"``: alternating 2 + 2; joint 1 + 1, or 1 + 2 when the levels differ.

(``first_order`` in joint mode still needs the lower loss's weight gradient when the levels
differ.) ``dual_every=k`` adds one evaluation pass over ``dual_data`` every ``k`` steps.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .constraints import FairnessConstraint
from .masks import MaskScores, apply_masks, remove_masks, sparsity_report
from .train import (
    BatchLoader,
    PassCounter,
    PruneResult,
    _progress,
    _to,
    check_finite,
    cycle,
    make_loader,
    make_optimizer,
    model_device,
    predict,
    set_seed,
    task_loss,
)

__all__ = ["implicit_gradient", "implicit_gradient_z", "sparsity_schedule", "bifp", "bip", "IG_VARIANTS"]

IG_VARIANTS = ("paper", "repo", "first_order")
SCHEDULES = ("instant", "cubic")
UPDATES = ("alternating", "joint")


def _check_gamma(gamma: Any) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be a positive number, got {gamma!r}")
    return float(gamma)


def implicit_gradient_z(g_up: Tensor, theta: Tensor, m: Tensor, *, gamma: float, g_low: Tensor | None = None,
                        ig: str = "paper") -> Tensor:
    """The approximate hypergradient in terms of ``g = grad_z L`` at ``z = m ⊙ theta``.

    ``paper``: ``g_up ⊙ (theta - m ⊙ g_low / gamma)``; ``repo``: ``g_up ⊙ (theta - theta^2 ⊙
    g_low / gamma)``; ``first_order``: ``g_up ⊙ theta``. ``g_low`` defaults to ``g_up``. Works for
    any real ``m`` (used by the tests against the exact hypergradient); the solver uses
    :func:`implicit_gradient`, which needs only the autograd outputs of the masked model.
    """
    gamma = _check_gamma(gamma)
    if ig not in IG_VARIANTS:
        raise ValueError(f"ig must be one of {IG_VARIANTS}, got {ig!r}")
    g_low = g_up if g_low is None else g_low
    if ig == "paper":
        return g_up * (theta - m * g_low / gamma)
    if ig == "repo":
        return g_up * (theta - theta * theta * g_low / gamma)
    return g_up * theta


def implicit_gradient(
    score_grad_up: Mapping[str, Tensor],
    weight_grad_up: Mapping[str, Tensor] | None = None,
    *,
    gamma: float,
    ig: str = "paper",
    score_grad_low: Mapping[str, Tensor] | None = None,
    weight_grad_low: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Mask-score hypergradient from the gradients one backward pass of the masked model gives.

    Args:
        score_grad_up: ``{layer: grad_s L_up}`` (weight-shaped, or ``[out]`` when structured).
        weight_grad_up: ``{layer: grad_theta L_up}`` (weight-shaped) for ``ig="paper"``.
        gamma: the lower level's ridge weight ``gamma > 0`` (the IG scales as ``1/gamma``).
        ig: ``"paper"``, ``"repo"`` or ``"first_order"`` (module docstring).
        score_grad_low / weight_grad_low: the same for ``L_low``; default: the upper ones (the
            losses coincide, e.g. BiP), then nothing beyond one backward pass is needed.

    Returns ``{layer: hypergradient}`` shaped like the scores. ``paper`` is
    ``grad_s L_up - (1/gamma) sum_filter(grad_theta L_up ⊙ grad_theta L_low)``, exact in terms of
    the derivation because the forward mask is binary (``m^2 = m``).
    """
    gamma = _check_gamma(gamma)
    if ig not in IG_VARIANTS:
        raise ValueError(f"ig must be one of {IG_VARIANTS}, got {ig!r}")
    out: dict[str, Tensor] = {}
    for name, sg in score_grad_up.items():
        if ig == "first_order":
            out[name] = sg.clone()
        elif ig == "repo":
            sl = sg if score_grad_low is None else score_grad_low[name]
            out[name] = sg - sg * sl / gamma
        else:
            if weight_grad_up is None or name not in weight_grad_up:
                raise ValueError(f"ig='paper' needs weight_grad_up for layer {name!r}")
            wu = weight_grad_up[name]
            wl = wu if weight_grad_low is None else weight_grad_low[name]
            prod = wu * wl
            if sg.shape != prod.shape:  # structured: one score per output channel
                prod = prod.reshape(prod.shape[0], -1).sum(1).reshape(sg.shape)
            out[name] = sg - prod / gamma
    return out


def sparsity_schedule(step: int, total: int, target: float, schedule: str = "instant",
                      fraction: float = 0.5) -> float:
    """Target sparsity at ``step`` of ``total``: ``instant`` is ``target`` throughout; ``cubic``
    (Zhu & Gupta, 2017) rises as ``target * (1 - (1 - t/T)^3)`` over the first ``T = fraction *
    total`` steps and equals ``target`` from then on (so it is reached exactly before the end)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "instant" or total <= 1:
        return target
    ramp = max(1, int(round(fraction * total)))
    if step >= ramp:
        return target
    return target * (1.0 - (1.0 - step / ramp) ** 3)


def _grad_dict(names: list[str], grads: Iterable[Tensor | None], like: list[Tensor]) -> dict[str, Tensor]:
    return {n: (g if g is not None else torch.zeros_like(p)) for n, g, p in zip(names, grads, like)}


def bifp(
    model: nn.Module,
    train_loader: Iterable | Any,
    *,
    sparsity: float,
    structured: bool = False,
    scope: str = "global",
    layers: Any = None,
    schedule: str = "instant",
    schedule_fraction: float = 0.5,
    mask_init: str | Mapping[str, Tensor] = "magnitude",
    steps: int | None = None,
    epochs: int | None = None,
    alpha: float = 0.01,
    beta: float = 0.1,
    gamma: float = 1.0,
    weight_decay: float | None = 5e-4,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    ig: str = "paper",
    constraint: FairnessConstraint | None = None,
    fair_mask: bool = True,
    fair_weights: bool = True,
    lower_steps: int = 1,
    update: str = "alternating",
    batch_size: int = 128,
    seed: int = 0,
    device: torch.device | str | None = None,
    counter: PassCounter | None = None,
    progress: bool = False,
    log_every: int = 1,
    method: str | None = None,
    data_split: str = "val",
    dual_every: int | None = None,
    dual_data: Any = None,
) -> PruneResult:
    """Prune ``model`` by BiFP (BiP when ``constraint`` is None or both fairness switches are off).

    The model is deep-copied (the caller's dense model is untouched); the result's ``model`` is
    the copy with the final masks baked in (pruned weights exactly zero, a plain module).

    Args:
        train_loader: the pruning / fine-tuning data (the paper's validation split): a loader of
            ``(x, y, s)`` batches or a dataset (then batched with ``batch_size``, shuffled with
            ``seed``).
        sparsity: final fraction pruned in ``[0, 1)``, reached exactly (``round(sparsity * n)``).
        structured, scope, layers: passed to :class:`~fairprune_lite.masks.MaskScores`.
        schedule: ``"instant"`` (the target from step 0) or ``"cubic"`` (rises over the first
            ``schedule_fraction`` of the steps; see :func:`sparsity_schedule`).
        mask_init: ``"magnitude"`` / ``"uniform"`` score initialisation or a given binary mask.
        steps / epochs: number of upper steps, or passes over the loader (each upper step uses
            ``lower_steps + 1`` batches when alternating, 1 when joint).
        alpha, beta: learning rates of the weights (lower) and the scores (upper).
        gamma: ridge weight of the lower level; the implicit gradient is scaled by ``1/gamma``.
        weight_decay: weight decay of the lower optimizer. Default ``5e-4``, decoupled from
            ``gamma`` as in BiP's code: ``gamma`` only scales the implicit gradient. ``None``
            uses ``gamma`` itself, the lower problem as written, which with the default
            ``gamma = 1`` shrinks every weight by ``alpha`` per step and destroys a pretrained
            network within a few hundred steps.
        optimizer, momentum: of both levels (``"sgd"`` or ``"adam"``).
        ig: implicit-gradient variant, ``"paper"``, ``"repo"`` or ``"first_order"``.
        constraint: a :class:`~fairprune_lite.constraints.FairnessConstraint` or None.
        fair_mask / fair_weights: put the constraint term in the upper / lower level; the paper's
            ablations are ``fair_mask=False`` (w/o m), ``fair_weights=False`` (w/o w), both
            False (w/o w&m, which is BiP).
        lower_steps: weight steps per upper step (alternating).
        update: ``"alternating"`` or ``"joint"`` (module docstring).
        counter: a :class:`~fairprune_lite.train.PassCounter` to add to (a new one otherwise).
        log_every: keep one history entry every this many upper steps (and the last).
        dual_every / dual_data: with ``dual_every=k`` the multipliers ascend every ``k`` upper
            steps on the exact constraint values measured by a full evaluation pass
            (``eval()`` mode) over ``dual_data`` (default: the pruning data itself); those
            forward passes are counted in the cost. Without it (default) they ascend after every
            upper step on the constraint's moving window of recent upper batches
            (``FairnessConstraint(window=...)``), which costs nothing extra.

    Returns a :class:`~fairprune_lite.train.PruneResult` whose history holds, per logged step:
    ``step``, ``sparsity``, ``lower_loss``, ``upper_loss``, ``task_loss`` (upper batch), the
    constraint's ``surrogate`` / ``exact`` values and ``multipliers``, ``gap`` (the exact
    ``max_i c_i`` on the upper batch, the accuracy gap for ``kind="accuracy_gap"``) and the
    cumulative ``forward_passes`` / ``backward_passes``.

    Raises ``ValueError`` on bad arguments, ``FloatingPointError`` naming the step on a NaN/inf
    loss.
    """
    # ---- arguments -------------------------------------------------------------------------
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    gamma = _check_gamma(gamma)
    if ig not in IG_VARIANTS:
        raise ValueError(f"ig must be one of {IG_VARIANTS}, got {ig!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0 < schedule_fraction <= 1:
        raise ValueError(f"schedule_fraction must be in (0, 1], got {schedule_fraction!r}")
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    if isinstance(lower_steps, bool) or not isinstance(lower_steps, int) or lower_steps < 1:
        raise ValueError(f"lower_steps must be a positive integer, got {lower_steps!r}")
    if update == "joint" and lower_steps != 1:
        raise ValueError("update='joint' shares one batch between the levels and needs lower_steps=1")
    if constraint is not None and not isinstance(constraint, FairnessConstraint):
        raise ValueError(f"constraint must be a FairnessConstraint or None, got {type(constraint).__name__}")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    for nm, v in (("alpha", alpha), ("beta", beta)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{nm} must be a positive number, got {v!r}")
    if dual_every is not None and (isinstance(dual_every, bool) or not isinstance(dual_every, int) or dual_every < 1):
        raise ValueError(f"dual_every must be a positive integer or None, got {dual_every!r}")
    wd = gamma if weight_decay is None else weight_decay
    if isinstance(wd, bool) or not isinstance(wd, (int, float)) or wd < 0:
        raise ValueError(f"weight_decay must be >= 0 or None, got {weight_decay!r}")
    fair_up = constraint is not None and bool(fair_mask)
    fair_low = constraint is not None and bool(fair_weights)
    name = method or ("bip" if not (fair_up or fair_low) else "bifp")

    set_seed(seed)
    if not hasattr(train_loader, "__iter__") and hasattr(train_loader, "__getitem__"):
        train_loader = make_loader(train_loader, batch_size, shuffle=True, seed=seed)
    elif hasattr(train_loader, "y") and hasattr(train_loader, "s") and hasattr(train_loader, "__getitem__"):
        train_loader = make_loader(train_loader, batch_size, shuffle=True, seed=seed)
    if dual_data is None:
        dual_data = getattr(train_loader, "dataset", train_loader)
    per_step = 1 if update == "joint" else lower_steps + 1
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps or epochs")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        total = steps
    else:
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs <= 0:
            raise ValueError(f"epochs must be a positive number, got {epochs!r}")
        try:
            n_batches = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("epochs needs a loader with a length; give steps instead") from None
        total = max(1, int(epochs * n_batches) // per_step)

    # ---- model, scores, optimizers ---------------------------------------------------------
    model = copy.deepcopy(model)
    if device is not None:
        model.to(device)
    dev = model_device(model)
    s0 = sparsity_schedule(0, total, float(sparsity), schedule, schedule_fraction)
    if isinstance(mask_init, Mapping):
        ms = MaskScores(model, float(sparsity), structured=structured, scope=scope, layers=layers, mask=mask_init)
        ms.sparsity = s0
    elif mask_init in ("magnitude", "uniform"):
        ms = MaskScores(model, s0, structured=structured, scope=scope, layers=layers, init=mask_init, seed=seed)
    else:
        raise ValueError(f"mask_init must be 'magnitude', 'uniform' or a dict of masks, got {mask_init!r}")
    ms.to(dev)
    apply_masks(model, ms)
    names = ms.names
    scores = [ms.score(n) for n in names]
    from .masks import weight_parameters

    wdict = weight_parameters(model)
    thetas = [wdict[n] for n in names]
    params = [p for p in model.parameters() if p.requires_grad]
    score_ids = {id(p) for p in scores}
    if any(id(p) in score_ids for p in params):  # guaranteed by masks; checked because it matters
        raise RuntimeError("mask scores appear among the model parameters")
    w_opt = make_optimizer(params, optimizer, lr=alpha, weight_decay=wd, momentum=momentum)
    s_opt = make_optimizer(scores, optimizer, lr=beta, weight_decay=0.0, momentum=momentum)
    counter = counter if counter is not None else PassCounter()
    t_start = time.perf_counter()
    batches = cycle(train_loader)
    history: list[dict[str, Any]] = []
    model.train()
    bar = _progress(total, progress, name)

    def losses(logits: Tensor, y: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(task, upper, lower) losses of one forward pass; the fairness term is computed once."""
        task = task_loss(logits, y)
        if fair_up or fair_low:
            term = constraint.term(logits, y, s)  # type: ignore[union-attr]
            both = task + term
            # the same tensor object when the levels agree: one backward serves both
            return task, (both if fair_up else task), (both if fair_low else task)
        return task, task, task

    def set_scores_grad(flag: bool) -> None:
        for p in scores:
            p.requires_grad_(flag)

    try:
        for step in range(total):
            ms.sparsity = sparsity_schedule(step, total, float(sparsity), schedule, schedule_fraction)
            rec: dict[str, Any] = {"step": step, "sparsity": ms.sparsity}
            if update == "alternating":
                # ---- lower level: weights ----------------------------------------------
                set_scores_grad(False)  # no STE work: the scores are constants here
                for _ in range(lower_steps):
                    x, y, s = _to(next(batches), dev)
                    logits = model(x)
                    counter.forward(len(y))
                    _, _, low = losses(logits, y, s)
                    check_finite(low, step, "lower-level loss")
                    w_opt.zero_grad(set_to_none=True)
                    low.backward()
                    counter.backward()
                    w_opt.step()
                rec["lower_loss"] = float(low.detach())
                set_scores_grad(True)
            # ---- upper level: scores (joint: also the weight step) ---------------------
            x, y, s = _to(next(batches), dev)
            logits = model(x)
            counter.forward(len(y))
            task, up, low = losses(logits, y, s)
            check_finite(up, step, "upper-level loss")
            check_finite(low, step, "lower-level loss")
            same = up is low
            need_theta = ig == "paper"
            if update == "joint":
                wrt = scores + params
                g_up = torch.autograd.grad(up, wrt, retain_graph=not same, allow_unused=True)
                counter.backward()
                sg_up = _grad_dict(names, g_up[:len(scores)], scores)
                gp_up = list(g_up[len(scores):])
                sg_low = None
                if same:
                    gp_low = gp_up
                else:
                    g_low = torch.autograd.grad(low, wrt, allow_unused=True)
                    counter.backward()
                    sg_low = _grad_dict(names, g_low[:len(scores)], scores)
                    gp_low = list(g_low[len(scores):])
                idx = {id(p): i for i, p in enumerate(params)}
                wg_up = _grad_dict(names, [gp_up[idx[id(t)]] for t in thetas], thetas)
                wg_low = _grad_dict(names, [gp_low[idx[id(t)]] for t in thetas], thetas)
            else:
                wrt = scores + (thetas if need_theta else [])
                retain = not same and ig != "first_order"
                g_up = torch.autograd.grad(up, wrt, retain_graph=retain, allow_unused=True)
                counter.backward()
                sg_up = _grad_dict(names, g_up[:len(scores)], scores)
                wg_up = _grad_dict(names, g_up[len(scores):], thetas) if need_theta else None
                sg_low, wg_low = None, None
                if not same and ig != "first_order":
                    g_low = torch.autograd.grad(low, scores if ig == "repo" else thetas, allow_unused=True)
                    counter.backward()
                    if ig == "repo":
                        sg_low = _grad_dict(names, g_low, scores)
                    else:
                        wg_low = _grad_dict(names, g_low, thetas)
            hyper = implicit_gradient(sg_up, wg_up, gamma=gamma, ig=ig,
                                      score_grad_low=sg_low, weight_grad_low=wg_low)
            s_opt.zero_grad(set_to_none=True)
            for n, p in zip(names, scores):
                p.grad = hyper[n]
            s_opt.step()
            ms.clamp_()
            if update == "joint":
                w_opt.zero_grad(set_to_none=True)
                for p, g in zip(params, gp_low):
                    p.grad = g
                w_opt.step()
                rec["lower_loss"] = float(low.detach())
            counter.step()
            # ---- multipliers ------------------------------------------------------------
            if fair_up or fair_low:
                if dual_every is None:
                    constraint.update(logits.detach(), y, s)  # type: ignore[union-attr]
                elif (step + 1) % dual_every == 0:
                    set_scores_grad(False)
                    d_logits, d_y, d_s = predict(model, dual_data, counter=counter, batch_size=1024)
                    set_scores_grad(True)
                    constraint.update(measured=constraint.exact_values(d_logits, d_y, d_s))  # type: ignore[union-attr]
            if step % log_every == 0 or step == total - 1:
                rec["upper_loss"] = float(up.detach())
                rec["task_loss"] = float(task.detach())
                if constraint is not None:
                    st = constraint.last_state()
                    rec["multipliers"] = st["multipliers"]
                    if constraint.defined(y, s):  # a batch may lack a compared cell: logged as None
                        exact = constraint.exact_values(logits, y, s)
                        rec["gap"] = float(exact.max())
                        rec["exact"] = [float(v) for v in exact]
                    else:
                        rec["gap"] = rec["exact"] = None
                    if "surrogate" in st and (fair_up or fair_low):
                        rec["surrogate"] = st["surrogate"]
                rec["forward_passes"] = counter.forward_passes
                rec["backward_passes"] = counter.backward_passes
                history.append(rec)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    # ---- final exact masks -----------------------------------------------------------------
    ms.sparsity = float(sparsity)
    masks = ms.binary_masks()
    final_scores = {n: ms.score(n).detach().clone() for n in names}
    remove_masks(model, bake=True)
    model.eval()
    wall = time.perf_counter() - t_start
    rep = sparsity_report(masks)
    config = {
        "sparsity": float(sparsity), "structured": structured, "scope": scope, "schedule": schedule,
        "schedule_fraction": schedule_fraction,
        "mask_init": mask_init if isinstance(mask_init, str) else "given", "steps": total,
        "alpha": alpha, "beta": beta, "gamma": gamma, "weight_decay": wd, "optimizer": optimizer,
        "momentum": momentum, "ig": ig, "fair_mask": bool(fair_mask), "fair_weights": bool(fair_weights),
        "lower_steps": lower_steps, "update": update, "seed": seed, "device": str(dev),
        "dual_every": dual_every,
        "constraint": constraint.state_dict() if constraint is not None else None,
        "achieved_sparsity": rep["overall"],
    }
    cost = counter.as_dict() | {"wall_time_s": wall, "data": data_split}
    return PruneResult(method=name, sparsity_target=float(sparsity), masks=masks, model=model,
                       metrics={}, cost=cost, history=history, config=config, scores=final_scores)


def bip(model: nn.Module, train_loader: Iterable | Any, **kwargs: Any) -> PruneResult:
    """BiP (Zhang et al., 2022): :func:`bifp` without any fairness term (``constraint`` ignored)."""
    kwargs.pop("constraint", None)
    kwargs.setdefault("method", "bip")
    return bifp(model, train_loader, constraint=None, fair_mask=False, fair_weights=False, **kwargs)
