r"""BiFP and BiP: bi-level pruning with an implicit-gradient mask update.

The problem (Dai et al., arXiv:2312.10181, on BiP, Zhang et al., NeurIPS 2022; derived in the
book's chapter 7, "Bi-level pruning and the implicit gradient")::

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

What the solver adds to the formulas above (stated here because they change the numbers):

* **Score momentum.** The scores move through the same optimizer kind as the weights, with
  ``momentum`` (0.9 by default): the step is ``beta`` times a momentum average of the
  hypergradient, not the hypergradient itself.
* **The BN gate** (structured masks with ``gate_norm``): the channel mask also multiplies the
  BatchNorm's affine parameters after the masked layer, and the straight-through score gradient
  is taken there. The implicit-gradient correction uses the masked layer's weights only; the
  gated BN parameters' own ``m * g`` terms are left out (an approximation, not derived).
* **gamma is a scale, not the ridge actually solved.** The weights are decayed by
  ``weight_decay`` (5e-4), so the lower problem actually solved has curvature ``5e-4``, not
  ``gamma = 1``; against the exact hypergradient of that problem the correction's direction is
  right (cosine 0.9998 measured on the logistic test problem) but its size is ``gamma / 5e-4``
  times too small. ``gamma`` is kept as the knob BiP exposes for the correction's weight.

The mask level and the protocols
--------------------------------
With ``score_update="clamped"`` (the paper's, ``protocol="paper"``) the scores start at the
weights' relative magnitudes, move by ``beta`` times the hypergradient and are clipped to
``[0, 1]``. Measured on the cpu profile (Adult MLP, 90%), one step moves a typical score by about
``1e-4`` while kept and pruned scores are ``0.05-0.15`` apart, and the correction
``-(1/gamma) g_theta^2`` is ``<= 0`` on every kept unit and 0 on pruned ones (it pushes kept
scores up, to the clip at 1, where a pruned unit can at best tie): the mask stays near its
initialisation. ``score_update="normalized"`` starts the scores at
their rank in the top-k's scope scaled into ``(0, 1]`` (:func:`rank_scores_`, the first mask is
unchanged), divides each step's hypergradient by its root mean square over the scope
(:func:`normalize_hypergradient`) and drops the clip, so ``beta`` is the fraction of the ranking a
typical unit moves per step. Every result records ``mask_churn`` (the share of kept units the
initial mask did not keep, overall and per layer) and each history entry ``swaps`` (units that
entered the mask at that step). Measured (``benchmarks/results/solver_v3.md``): a mask that
moves much more than the paper's does not make the pruned model fairer on our benchmarks, so the
``certified`` protocol keeps the clamped scores.

The default protocol, ``"certified"`` (``protocol="paper"`` is the paper's, which the book's
reproduction chapters name), prunes on the training split (four times val's rows: estimates of the
constraint with half the standard error), takes the multipliers' step from full passes every
``dual_every`` steps at the per-step rate (``dual_rule="per_step"``), holds out a selection split
(``holdout``) on which the best iterate is chosen with an accuracy floor over the majority class
(``accuracy_floor``; an iterate that is fair because it is nearly constant is never preferred
to one that is not) and a bound on the loss of accuracy against the dense model
(``max_accuracy_drop``), and a safety split (``safety``; all of val when pruning on train) on
which the returned model gets a ``(1 - delta)`` upper confidence
bound on the constrained metric (:mod:`fairprune_lite.certify`): ``config["certificate"]``
says ``certified: true|false``, the bound, ``delta`` and the split's size. A safety split too
small to certify even a perfectly fair model at ``tau`` is refused before training, with the
number of rows it would need, when ``safety`` (or ``delta``) was asked for by name; when it comes
from the protocol, the run goes on and its certificate says ``certified: false`` with that reason
and the rows needed (and a ``UserWarning`` says so), since at a tight ``tau`` a split of a few
thousand rows can bound nothing (Adult's equalized odds at 0.05 needs about 35,000). The multipliers ascend every ``dual_every`` steps on full passes
over the fit part (never the selection or safety split; ``dual_split="train"`` for the training
split). ``benchmarks/solver_v3.py`` measures the two protocols against OMP, FPGM and OMP +
post-processing.

Solver (:func:`bifp`)
---------------------
Every default lives once in :class:`BiFPConfig` (:data:`DEFAULTS`); one upper step is a few
named functions over a small state: :func:`lower_step` (weights), :func:`mask_gradient` (the
upper pass and the implicit gradient), :func:`score_step` (scores, clamped), in joint mode
:func:`joint_weight_step` (from the *lower* loss's gradients), :func:`dual_step` (multipliers),
optionally :func:`select_step` (the held-out safety test) and :func:`log_step`; :func:`upper_step` runs
one step's sequence. With ``accel=`` (:mod:`fairprune_lite.accel`) the training passes take the GPU fast
path (bf16 autocast, channels_last, cudnn.benchmark, TF32, torch.compile); without it, the plain path.

``gamma`` is not a weight decay: the weights are decayed by ``weight_decay`` (decoupled, as in
BiP's code); ``gamma`` is the curvature the implicit gradient assumes for the lower problem and
only scales its correction by ``1/gamma``.

Structured masks on conv-BN blocks gate the BatchNorm too (``gate_norm``, see
:mod:`fairprune_lite.masks`): without it BN cancels the rescaling of a kept channel, whose score
gradient is then ~0, while a pruned channel's (BN variance 0) is huge, and the scores of kept
channels drift to the clamp where the top-k used to break ties by position (the first layer
emptied). Scores start from each filter's norm relative to its own layer.

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
import dataclasses
import difflib
import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .accel import Accel, settings
from .certify import certify, check_delta, rows_needed
from .constraints import FairnessConstraint
from .masks import MaskScores, apply_masks, remove_masks, sparsity_report, weight_parameters
from .train import (
    EVAL_BATCH_SIZE,
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
    subset,
    task_loss,
)

__all__ = ["BiFPConfig", "DEFAULTS", "implicit_gradient", "implicit_gradient_z", "sparsity_schedule", "bifp", "bip",
           "lower_step", "mask_gradient", "score_step", "joint_weight_step", "dual_step", "log_step",
           "select_step", "upper_step", "recalibrate_bn",
           "IG_VARIANTS"]

IG_VARIANTS = ("paper", "repo", "first_order")
SCORE_UPDATES = ("clamped", "normalized")
DUAL_RULES = ("per_update", "per_step")
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
        gamma: ``gamma > 0``, the curvature of the lower problem's ridge term as the IG sees it
            (the IG's correction scales as ``1/gamma``); the solver's weight decay is a separate,
            decoupled setting (:class:`BiFPConfig`).
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
            out[name] = sg - (prod if gamma == 1.0 else prod / gamma)  # x / 1.0 is x exactly
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
    return {n: (g if g is not None else torch.zeros_like(p)) for n, g, p in zip(names, grads, like, strict=True)}


@dataclass(frozen=True)
class BiFPConfig:
    """Every default of BiFP / BiP, held once (:func:`bifp`, the ``bifp``/``bip`` methods of
    :mod:`fairprune_lite.pruners` and the run profiles take theirs from here; profiles pass
    overrides as a dict of these field names, :meth:`replace`).

    Fields (the keyword arguments of :func:`bifp` of the same name):
        steps / epochs: upper steps, or passes over the loader (give one; ``epochs`` wins when
            set, ``steps`` is then ignored).
        alpha, beta: learning rates of the weights (lower level) and the scores (upper level).
        gamma: the curvature ``gamma`` of the lower problem's ridge ``(gamma/2)||theta||^2``
            *as the implicit gradient sees it*: it only scales the IG by ``1/gamma``. The
            weights are not shrunk by it (``weight_decay`` does that, decoupled, as in BiP's
            code); ``weight_decay=None`` uses ``gamma`` as the decay, the lower problem as
            written.
        weight_decay, optimizer, momentum: of the lower optimizer (momentum also for the scores).
        ig: implicit-gradient variant, ``"paper"``, ``"repo"`` or ``"first_order"``.
        update: ``"alternating"`` or ``"joint"`` (module docstring).
        lower_steps: weight steps per upper step (alternating).
        schedule: sparsity schedule (:func:`sparsity_schedule`; ``"cubic"`` ramps over the first half).
        mask_init: ``"magnitude"`` / ``"uniform"`` or a dict of binary masks.
        fair_mask / fair_weights: the constraint term in the upper / lower level (ablations).
        dual_every: the multipliers ascend every ``k`` steps on a full pass over ``dual_data``
            (None: after every step on the constraint's moving window).
        prune_split: the split :func:`fairprune_lite.pruners.prune` prunes on (both levels):
            ``"val"`` (the book's protocol: the dense model never saw it) or ``"train"`` (BiP's
            own protocol; on a small val split its group statistics can be far from the
            population's, e.g. Adult's val EO 0.18 against 0.07 on train and test).
        dual_split: the split ``prune`` passes as ``dual_data`` (None: the pruning data):
            ``"train"`` is a larger sample, so the constraint's estimate has a smaller standard
            error; needs ``dual_every``. :func:`bifp` itself reads only its arguments.
        holdout, select_every: with ``holdout = f > 0`` a fraction ``f`` of the pruning data
            (drawn with the seed) is kept out of training; every ``select_every`` steps at the
            target sparsity (and at the end) the masked model is evaluated there, and the result
            is the most accurate iterate whose constraint value plus ``margin`` standard errors
            (the constraint's ``margin``) is ``<= tau`` on it, else the one with the smallest
            value (a safety test in the sense of Seldonian algorithms). The evaluations are
            counted in the cost.
        gate_norm: structured only: masks also gate the BatchNorm after a masked layer and the
            score gradient is taken there (:mod:`fairprune_lite.masks`).
        recalibrate_bn: re-estimate BatchNorm running statistics with the final masks (one
            pass over the pruning data in training mode, no gradient, counted in the cost)
            before the result is returned; ``None``: only for structured masks, where a channel
            that re-enters the mask late brings running statistics measured while it was 0
            (variance ~0) and the eval-mode network explodes.
        log_every: one history entry every this many upper steps (and the last).
        batch_size: batch size when a dataset (not a loader) is given.
        score_update: ``"clamped"`` (``s <- clip(s - beta * IG, 0, 1)``) or ``"normalized"``
            (rank-initialised scores, ``s <- s - beta * IG / rms(IG)``, no clip); see "The mask
            level and the protocols" above.
        accuracy_floor: with ``holdout``: an iterate passes selection only if its held-out
            accuracy is at least the held-out majority class's plus this; the dense model must
            reach it (else a ``ValueError`` before training). None: no floor.
        max_accuracy_drop: with ``holdout``: nor if it is more than this below the dense
            model's held-out accuracy (the floor is the higher of the two). None: no such bound.
        safety, delta: a fraction ``safety`` of the pruning data (drawn with the seed, before the
            holdout) is never trained or selected on; the returned model's ``(1 - delta)`` upper
            confidence bound on the constrained metric there is ``config["certificate"]``.
        dual_rule: with ``dual_every=k``: ``"per_update"`` (each update steps by the constraint's
            ``dual_lr``) or ``"per_step"`` (by ``k * dual_lr``: the multipliers grow at the same
            rate per upper step whatever ``k``, so ``dual_lr`` keeps one meaning).
        protocol: ``"paper"`` or ``"certified"`` (:data:`PROTOCOLS`): a named set of the fields
            above; options given with it apply on top.
    """

    steps: int | None = 100
    epochs: float | None = None
    alpha: float = 0.01
    beta: float = 0.1
    gamma: float = 1.0
    weight_decay: float | None = 5e-4
    optimizer: str = "sgd"
    momentum: float = 0.9
    ig: str = "paper"
    update: str = "alternating"
    lower_steps: int = 1
    schedule: str = "instant"
    mask_init: Any = "magnitude"
    fair_mask: bool = True
    fair_weights: bool = True
    dual_every: int | None = 5
    prune_split: str = "train"
    dual_split: str | None = None
    holdout: float = 0.25
    select_every: int = 5
    gate_norm: bool = True
    recalibrate_bn: bool | None = None
    log_every: int = 1
    batch_size: int = 128
    score_update: str = "clamped"
    dual_rule: str = "per_step"
    accuracy_floor: float | None = 0.02
    max_accuracy_drop: float | None = 0.05
    safety: float = 0.25
    delta: float = 0.05
    protocol: str = "certified"

    def replace(self, **overrides: Any) -> BiFPConfig:
        """A copy with ``overrides`` (field names; an unknown name is a ``ValueError``).

        ``protocol=NAME`` first switches to that protocol's settings (:data:`PROTOCOLS`), then
        the other overrides apply on top of them."""
        names = {f.name for f in fields(self)}
        bad = sorted(k for k in overrides if k not in names)
        if bad:
            raise ValueError(f"BiFPConfig has no field(s) {bad}; fields: {sorted(names)}")
        if overrides.get("epochs") is not None and "steps" not in overrides:
            overrides["steps"] = None
        base = self
        if "protocol" in overrides and overrides["protocol"] != self.protocol:
            name = overrides.pop("protocol")
            if name not in PROTOCOLS:
                close = difflib.get_close_matches(str(name), sorted(PROTOCOLS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}{hint}")
            base = PROTOCOLS[name]
        return dataclasses.replace(base, **overrides)

    def check(self) -> BiFPConfig:
        """Validate every field; raises ``ValueError`` naming the bad one. Returns ``self``."""
        _check_gamma(self.gamma)
        self._check_choices()
        self._check_solver()
        self._check_protocol()
        self._check_length()
        return self

    def _check_choices(self) -> None:
        """The fields that name one of a few options."""
        for name, allowed in (("ig", IG_VARIANTS), ("schedule", SCHEDULES), ("update", UPDATES),
                              ("dual_rule", DUAL_RULES), ("score_update", SCORE_UPDATES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.prune_split not in ("val", "train"):
            raise ValueError(f"prune_split must be 'val' or 'train', got {self.prune_split!r}")
        if self.dual_split not in (None, "val", "train"):
            raise ValueError(f"dual_split must be None, 'val' or 'train', got {self.dual_split!r}")
        if not (isinstance(self.mask_init, Mapping) or self.mask_init in ("magnitude", "uniform")):
            raise ValueError(f"mask_init must be 'magnitude', 'uniform' or a dict of masks, got {self.mask_init!r}")

    def _check_solver(self) -> None:
        """Step sizes, counts and the optimiser's decay."""
        for name in ("lower_steps", "log_every", "batch_size", "select_every"):
            if not _pos_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.update == "joint" and self.lower_steps != 1:
            raise ValueError("update='joint' shares one batch between the levels and needs lower_steps=1")
        if self.dual_every is not None and not _pos_int(self.dual_every):
            raise ValueError(f"dual_every must be a positive integer or None, got {self.dual_every!r}")
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not _real(v) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        wd = self.gamma if self.weight_decay is None else self.weight_decay
        if not _real(wd) or wd < 0:
            raise ValueError(f"weight_decay must be >= 0 or None, got {self.weight_decay!r}")

    def _check_protocol(self) -> None:
        """The protocol's splits, the selection's bounds and the safety test."""
        if self.dual_split is not None and self.dual_every is None:
            raise ValueError(f"dual_split={self.dual_split!r} needs dual_every=k (the multipliers then ascend "
                             f"on full passes over that split every k steps)")
        for name in ("holdout", "safety"):
            v = getattr(self, name)
            if not _real(v) or not 0 <= v < 1:
                raise ValueError(f"{name} must be a fraction in [0, 1), got {v!r}")
        if self.holdout + self.safety >= 1:
            raise ValueError(f"holdout + safety must leave data to train on, got {self.holdout} + {self.safety}")
        check_delta(self.delta)
        for name in ("accuracy_floor", "max_accuracy_drop"):
            v = getattr(self, name)
            if v is None:
                continue
            if not _real(v) or not math.isfinite(v) or not 0 <= v < 1:
                raise ValueError(f"{name} must be a number in [0, 1) or None, got {v!r}")
            if self.holdout <= 0:
                raise ValueError(f"{name} is applied when selecting an iterate on held-out data: it needs holdout > 0")

    def _check_length(self) -> None:
        """Exactly one of ``steps`` and ``epochs``, each positive."""
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps or epochs")
        if self.steps is not None and not _pos_int(self.steps):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.epochs is not None and (not _real(self.epochs) or self.epochs <= 0):
            raise ValueError(f"epochs must be a positive number, got {self.epochs!r}")


#: the library defaults, the single place they are written: the ``certified`` protocol (chosen
#: over Adult, Fashion unstructured and structured, a synthetic table with a computable fair
#: optimum and the CelebA-shaped fixtures: ``benchmarks/results/solver_v3.md``, "Default")
DEFAULTS = BiFPConfig()

#: named protocols: ``"certified"`` (the default, :data:`DEFAULTS`) and ``"paper"``, the paper's
#: (and BiP's) solver as the book's reproduction chapters run it: prune on val, multipliers after
#: every step on the moving window, the last iterate, no safety test. ``BiFPConfig.replace(
#: protocol=...)`` / the method option ``protocol=`` select one; other options apply on top. The
#: certified protocol keeps the paper's clamped scores: rank-normalized steps of 0.1 (54-62% of
#: kept units replaced) gave larger test gaps than clamped scores (2-10%) on Adult and Fashion;
#: at 5e-4 they move 2-4% and measure on par with them; score_update="normalized" stays an option.
PROTOCOLS: dict[str, BiFPConfig] = {
    "certified": DEFAULTS,
    "paper": dataclasses.replace(
        DEFAULTS, protocol="paper", prune_split="val", dual_every=None, dual_rule="per_update", holdout=0.0,
        select_every=10, accuracy_floor=None, max_accuracy_drop=None, safety=0.0),
}


def _pos_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and v >= 1


def _real(v: Any) -> bool:
    """An int or float that is not a bool."""
    return not isinstance(v, bool) and isinstance(v, (int, float))


@dataclass
class _State:
    """What the solver's steps share: the masked model, its scores and optimizers, the data."""

    cfg: BiFPConfig
    model: nn.Module
    ms: MaskScores
    names: list[str]
    scores: list[Tensor]
    thetas: list[Tensor]
    params: list[Tensor]
    w_opt: torch.optim.Optimizer
    s_opt: torch.optim.Optimizer
    counter: PassCounter
    batches: Any
    dev: torch.device
    constraint: FairnessConstraint | None
    fair_up: bool
    fair_low: bool
    recal: bool = False
    init_units: dict[str, Tensor] | None = None
    prev_units: Tensor | None = None
    prev_sparsity: float | None = None
    floor_majority: float | None = None
    accel: Accel | None = None  # the fast path's options (None: the plain path)
    fwd: Any = None  # the forward function under accel (the model, or its compiled forward)

    def forward(self, x: Tensor) -> Tensor:
        """The model's forward pass on a batch, through the fast path when ``accel`` is set."""
        if self.accel is None:
            return self.model(x)
        return self.accel.forward(self.fwd, x, self.dev)

    def losses(self, logits: Tensor, y: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(task, upper, lower) losses of one forward pass; the fairness term is computed once
        and the same tensor object is returned for both levels when they agree (one backward
        then serves both)."""
        task = task_loss(logits, y)
        if self.fair_up or self.fair_low:
            both = task + self.constraint.term(logits, y, s)  # type: ignore[union-attr]
            return task, (both if self.fair_up else task), (both if self.fair_low else task)
        return task, task, task

    def scores_grad(self, flag: bool) -> None:
        for p in self.scores:
            p.requires_grad_(flag)


def lower_step(st: _State, step: int) -> float:
    """``lower_steps`` weight steps of the lower level, each on a fresh batch (scores constant)."""
    st.scores_grad(False)  # no STE work: the scores are constants here
    try:
        for _ in range(st.cfg.lower_steps):
            x, y, s = _to(next(st.batches), st.dev)
            logits = st.forward(x)
            st.counter.forward(len(y))
            _, _, low = st.losses(logits, y, s)
            check_finite(low, step, "lower-level loss")
            st.w_opt.zero_grad(set_to_none=True)
            low.backward()
            st.counter.backward()
            st.w_opt.step()
    finally:
        st.scores_grad(True)
    return float(low.detach())


def mask_gradient(st: _State, step: int) -> dict[str, Any]:
    """One upper forward pass on a fresh batch and the mask-score hypergradient
    (:func:`implicit_gradient`); in joint mode also the lower loss's gradient of every weight.

    Returns ``{"hyper", "weight_grads" (joint) , "logits", "y", "s", "task", "up", "low"}``.
    """
    cfg, names, scores, thetas, params = st.cfg, st.names, st.scores, st.thetas, st.params
    x, y, s = _to(next(st.batches), st.dev)
    logits = st.forward(x)
    st.counter.forward(len(y))
    task, up, low = st.losses(logits, y, s)
    same = up is low
    check_finite(up, step, "upper-level loss")
    if not same:
        check_finite(low, step, "lower-level loss")
    out: dict[str, Any] = {"logits": logits, "y": y, "s": s, "task": task, "up": up, "low": low}
    if cfg.update == "joint":
        wrt = scores + params
        g_up = torch.autograd.grad(up, wrt, retain_graph=not same, allow_unused=True)
        st.counter.backward()
        sg_up = _grad_dict(names, g_up[:len(scores)], scores)
        gp_up = list(g_up[len(scores):])
        sg_low = None
        if same:
            gp_low = gp_up
        else:
            g_low = torch.autograd.grad(low, wrt, allow_unused=True)
            st.counter.backward()
            sg_low = _grad_dict(names, g_low[:len(scores)], scores)
            gp_low = list(g_low[len(scores):])
        idx = {id(p): i for i, p in enumerate(params)}
        wg_up: dict[str, Tensor] | None = _grad_dict(names, [gp_up[idx[id(t)]] for t in thetas], thetas)
        wg_low = _grad_dict(names, [gp_low[idx[id(t)]] for t in thetas], thetas)
        out["weight_grads"] = gp_low
    else:
        need_theta = cfg.ig == "paper"
        wrt = scores + (thetas if need_theta else [])
        second = not same and cfg.ig != "first_order"
        g_up = torch.autograd.grad(up, wrt, retain_graph=second, allow_unused=True)
        st.counter.backward()
        sg_up = _grad_dict(names, g_up[:len(scores)], scores)
        wg_up = _grad_dict(names, g_up[len(scores):], thetas) if need_theta else None
        sg_low, wg_low = None, None
        if second:
            g_low = torch.autograd.grad(low, scores if cfg.ig == "repo" else thetas, allow_unused=True)
            st.counter.backward()
            if cfg.ig == "repo":
                sg_low = _grad_dict(names, g_low, scores)
            else:
                wg_low = _grad_dict(names, g_low, thetas)
    out["hyper"] = implicit_gradient(sg_up, wg_up, gamma=cfg.gamma, ig=cfg.ig,
                                     score_grad_low=sg_low, weight_grad_low=wg_low)
    return out


def score_step(st: _State, hyper: Mapping[str, Tensor]) -> None:
    """``s <- clip(s - beta * hyper, 0, 1)`` (through the score optimizer), or with
    ``score_update="normalized"`` ``s <- s - beta * hyper / rms(hyper)`` with the root mean square
    taken over the top-k's scope (all scores for ``scope="global"``, each layer's for
    ``"layer"``) and no clip (module docstring, "The mask level")."""
    st.s_opt.zero_grad(set_to_none=True)
    if st.cfg.score_update == "normalized":
        hyper = normalize_hypergradient(hyper, st.ms.scope)
    for n, p in zip(st.names, st.scores, strict=True):
        p.grad = hyper[n]
    st.s_opt.step()
    if st.cfg.score_update == "clamped":
        st.ms.clamp_()


def normalize_hypergradient(hyper: Mapping[str, Tensor], scope: str) -> dict[str, Tensor]:
    """``hyper / rms(hyper)`` over the top-k's scope: one step then moves a typical score by the
    step size, whatever the scale of the gradients (a zero gradient stays zero)."""
    if scope == "global":
        sq = sum(float((g.double() ** 2).sum()) for g in hyper.values())
        cnt = sum(g.numel() for g in hyper.values())
        rms = math.sqrt(sq / max(cnt, 1))
        return {n: (g / rms if rms > 0 else g) for n, g in hyper.items()}
    out = {}
    for n, g in hyper.items():
        rms = float(g.double().pow(2).mean().sqrt()) if g.numel() else 0.0
        out[n] = g / rms if rms > 0 else g
    return out


def rank_scores_(ms: MaskScores) -> None:
    """Replace the scores by their rank in the top-k's scope, scaled into ``(0, 1]`` (ties broken
    as the top-k breaks them: by the magnitude tie key, then position), so the first mask is
    unchanged and neighbouring units are ``1/n`` apart: a normalized step of size ``beta`` then
    moves a unit by about ``beta * n`` places."""
    groups = [ms.names] if ms.scope == "global" else [[n] for n in ms.names]
    with torch.no_grad():
        for group in groups:
            flat = torch.cat([ms.score(n).detach().reshape(-1) for n in group])
            tie = torch.cat([ms._tie[n].reshape(-1).to(flat) for n in group])
            order = torch.sort(tie, stable=True).indices
            order = order[torch.sort(flat[order], stable=True).indices]
            ranks = torch.empty_like(flat)
            ranks[order] = torch.arange(1, flat.numel() + 1, dtype=flat.dtype, device=flat.device) / flat.numel()
            for n, part in zip(group, ranks.split([ms.score(n).numel() for n in group]), strict=True):
                ms.score(n).copy_(part.view_as(ms.score(n)))


def _units(ms: MaskScores) -> dict[str, Tensor]:
    """Boolean unit masks (weight-shaped, or ``[out]`` when structured) at the current sparsity:
    the top-k's own cached result, not a copy (this runs every step)."""
    return ms.unit_masks()


def mask_change(st: _State) -> int | None:
    """Units that entered the mask since the previous step (None when the sparsity changed in
    between, e.g. during a schedule's ramp, where a count would mix two targets); counted on the
    top-k's flat keep vector (:meth:`~fairprune_lite.masks.MaskScores.kept_units`), one
    comparison for all layers."""
    units = st.ms.kept_units()
    swaps = None
    if st.prev_units is not None and st.prev_sparsity == st.ms.sparsity:
        # the same tensor: the top-k kept its result (masks.MaskScores keeps it while the split holds)
        swaps = 0 if units is st.prev_units else int((units & ~st.prev_units).sum())
    st.prev_units, st.prev_sparsity = units, st.ms.sparsity
    return swaps


def mask_churn(initial: Mapping[str, Tensor], final: Mapping[str, Tensor]) -> dict[str, Any]:
    """Fraction of the final mask's kept units that the initial mask did not keep, overall and
    per layer (0: the mask level changed nothing; the masks must be at the same sparsity)."""
    layers, new, kept = {}, 0, 0
    for n, f in final.items():
        f = f.bool()
        k = int(f.sum())
        d = int((f & ~initial[n].bool()).sum())
        layers[n] = d / k if k else 0.0
        new, kept = new + d, kept + k
    return {"overall": new / kept if kept else 0.0, "layers": layers, "changed_units": new}


def joint_weight_step(st: _State, weight_grads: list[Tensor | None]) -> None:
    """The joint update's weight step, from the *lower* loss's gradients."""
    st.w_opt.zero_grad(set_to_none=True)
    for p, g in zip(st.params, weight_grads, strict=True):
        p.grad = g
    st.w_opt.step()


def dual_step(st: _State, step: int, logits: Tensor, y: Tensor, s: Tensor, dual_data: Any) -> None:
    """Multipliers: after every step on the constraint's moving window of upper batches, or
    (``dual_every=k``) every ``k`` steps on a full evaluation pass over ``dual_data``."""
    if not (st.fair_up or st.fair_low):
        return
    c = st.constraint
    if st.cfg.dual_every is None:
        c.update(logits.detach(), y, s)  # type: ignore[union-attr]
    elif (step + 1) % st.cfg.dual_every == 0:
        st.scores_grad(False)
        d_logits, d_y, d_s = predict(st.model, dual_data, counter=st.counter, batch_size=EVAL_BATCH_SIZE)
        st.scores_grad(True)
        scale = float(st.cfg.dual_every) if st.cfg.dual_rule == "per_step" else 1.0
        c.update(d_logits, d_y, d_s, pooled=False, step_scale=scale)  # type: ignore[union-attr]


def log_step(st: _State, rec: dict[str, Any], out: Mapping[str, Any]) -> dict[str, Any]:
    """The history entry of one upper step: losses, the constraint's pooled estimate (the
    values the multipliers ascended on), its max violation, the multipliers, the upper batch's
    own ``gap`` (None when it lacks a compared cell) and the cumulative passes."""
    rec["upper_loss"] = float(out["up"].detach())
    rec["task_loss"] = float(out["task"].detach())
    c = st.constraint
    if c is not None:
        state = c.last_state()
        rec["multipliers"] = state["multipliers"]
        # the dual step already counted this batch (window mode): reuse its cell statistics
        reuse = st.cfg.dual_every is None and (st.fair_up or st.fair_low)
        exact = c.batch_values(out["logits"], out["y"], out["s"],
                               stats=c.last_batch_stats() if reuse else None)
        if exact is not None:
            rec["exact"] = exact.tolist()
            rec["gap"] = max(rec["exact"])
        else:
            rec["gap"] = rec["exact"] = None
        if st.fair_up or st.fair_low:
            if "surrogate" in state:
                rec["surrogate"] = state["surrogate"]
            rec["estimate"] = state.get("exact")
            rec["max_violation"] = state.get("max_violation")
    rec["forward_passes"] = st.counter.forward_passes
    rec["backward_passes"] = st.counter.backward_passes
    return rec


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Iterable, counter: PassCounter | None = None) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) by
    one pass over ``data`` in training mode without gradients; returns the BN layers updated."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    saved = [m.momentum for m in bns]
    was = model.training
    dev = model_device(model)
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the pass
        model.train()
        for batch in data:
            x, y, _ = _to(batch, dev)
            model(x)
            if counter is not None:
                counter.forward(len(y))
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        model.train(was)
    return len(bns)


def _size(loader: Any) -> int | None:
    """Examples behind a loader (or a dataset), None when it has no length."""
    data = getattr(loader, "dataset", loader)
    return len(data) if hasattr(data, "__len__") else None


#: offset of the seed that draws the safety split (so it differs from the selection holdout's draw)
_SAFETY_SEED = 7919


def _labels(data: Any) -> tuple[Tensor, Tensor]:
    """``(y, s)`` of a dataset, without a model."""
    ys, ss = [], []
    for batch in make_loader(data, 4096, shuffle=False):
        ys.append(batch[1].flatten().long().cpu())
        ss.append(batch[2].flatten().long().cpu())
    return torch.cat(ys), torch.cat(ss)


def _check_safety_size(constraint: FairnessConstraint, safe: Any, cfg: BiFPConfig, *,
                       asked: bool = True) -> dict[str, Any] | None:
    """A safety split on which even a perfectly fair model could not be certified at ``tau``
    (:func:`fairprune_lite.certify.rows_needed`): a ``ValueError`` before any training when the
    safety test was ``asked`` for by name; otherwise (it comes from the protocol) a
    ``UserWarning`` and the failed certificate to report, with the reason. None when the split
    can certify."""
    y, s = _labels(safe)
    need = rows_needed(constraint.kind, constraint.tau, y, s, delta=cfg.delta)
    if need <= len(y):
        return None
    why = (f"the safety split has {len(y)} rows, but certifying {constraint.kind} <= {constraint.tau} at "
           f"delta={cfg.delta} needs about {need} rows with its group and label shares (for a model with no gap "
           f"and rates at the binomial worst case, 0.5)")
    todo = "give more data, a looser tau, a larger delta, or safety=0 to skip the certificate"
    if asked:
        raise ValueError(f"safety={cfg.safety}: {why}; {todo}")
    warnings.warn(f"not certified: {why}; the model is returned uncertified ({todo})", UserWarning, stacklevel=3)
    return {"certified": False, "bound": None, "value": None, "tau": float(constraint.tau), "delta": cfg.delta,
            "n": len(y), "cells": None, "rows_needed": need, "reason": f"{why}; {todo}"}


def _safety_asked(config: BiFPConfig | None, overrides: Mapping[str, Any]) -> bool:
    """Whether the caller named the safety test's settings (then a split too small for it is an
    error) rather than taking them from the protocol."""
    if "safety" in overrides or "delta" in overrides:
        return True
    if config is None:
        return False
    base = PROTOCOLS.get(config.protocol)
    return base is None or (config.safety, config.delta) != (base.safety, base.delta)


def _floor(dense: nn.Module, held: Any, floor: float | None, max_drop: float | None,
           counter: PassCounter | None) -> float:
    """The accuracy an iterate must reach on the held-out data: the majority class's accuracy there
    plus ``floor``, and (with ``max_drop``) the dense model's minus ``max_drop``, whichever is
    higher; a ``ValueError`` when the dense (unmasked) model itself does not clear ``floor``."""
    logits, y, _ = predict(dense, held, counter=counter, batch_size=EVAL_BATCH_SIZE)
    majority = max(float(y.float().mean()), 1.0 - float(y.float().mean()))
    dense_acc = float(((logits > 0).long() == y).float().mean())
    need = 0.0
    if floor is not None:
        if dense_acc < majority + floor:
            raise ValueError(f"accuracy_floor={floor} is above what the dense model reaches on the held-out data: "
                             f"its accuracy {dense_acc:.4f} is {dense_acc - majority:+.4f} from the majority "
                             f"class's {majority:.4f}; lower accuracy_floor or set it to None (protocol='paper' selects "
                             f"no iterate and has no floor)")
        need = majority + floor
    if max_drop is not None:
        need = max(need, dense_acc - max_drop)
    return need


def _split_holdout(data: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """``(train part, held-out part)`` of a dataset, drawn with ``seed``."""
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise ValueError("holdout needs the pruning data as a dataset (or a BatchLoader over one), not an iterable")
    n = len(data)
    k = int(round(fraction * n))
    if k < 1 or k >= n:
        raise ValueError(f"holdout={fraction} leaves no examples on one side of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return subset(data, perm[k:]), subset(data, perm[:k])


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None and m.running_var is not None and m.num_batches_tracked is not None]


def _bn_buffers(model: nn.Module) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Copies of every BatchNorm's running statistics (restored by :func:`_restore_bn`)."""
    out = []
    for m in _bns(model):
        assert m.running_mean is not None and m.running_var is not None and m.num_batches_tracked is not None
        out.append((m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()))
    return out


def _restore_bn(model: nn.Module, saved: list[tuple[Tensor, Tensor, Tensor]]) -> None:
    with torch.no_grad():
        for m, (mean, var, nbt) in zip(_bns(model), saved, strict=True):
            assert m.running_mean is not None and m.running_var is not None and m.num_batches_tracked is not None
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(nbt)


def select_step(st: _State, step: int, held: Any, best: dict[str, Any], train_data: Any = None) -> None:
    """Evaluate the current masked model on the held-out data and keep it in ``best`` when it
    ranks highest so far: first the iterates that pass the test (constraint value plus ``margin``
    standard errors ``<= tau``, and accuracy at least ``accuracy_floor`` above the held-out
    majority class), most accurate first; then those that pass the floor only, smallest
    constraint value first; then the rest, most accurate first.

    With BatchNorm recalibration on (``recalibrate_bn``), the candidate is recalibrated on
    ``train_data`` before it is evaluated and stored, so the iterate returned is the one that was
    evaluated; the training run's own running statistics are restored afterwards.
    """
    st.scores_grad(False)
    saved = None
    if st.recal and train_data is not None:
        saved = _bn_buffers(st.model)
        recalibrate_bn(st.model, train_data, st.counter)
    logits, y, s = predict(st.model, held, counter=st.counter, batch_size=EVAL_BATCH_SIZE)
    st.scores_grad(True)
    acc = float(((logits > 0).long() == y).float().mean())
    c = st.constraint
    if c is not None:
        f = c.feasibility(logits, y, s)
        value = f["value"] if f["value"] is not None else float("inf")
        feasible = f["value"] is not None and value + c.margin * f["se"] <= c.tau
    else:
        value, feasible = 0.0, True
    floor_ok = st.floor_majority is None or acc >= st.floor_majority
    key = (2, acc) if (feasible and floor_ok) else ((1, -value) if floor_ok else (0, acc))
    if best.get("key") is None or key > best["key"]:
        best.update(key=key, step=step, accuracy=acc, value=value, passed=bool(feasible and floor_ok),
                    feasible=bool(feasible), floor_ok=bool(floor_ok),
                    state=copy.deepcopy(st.model.state_dict()),
                    scores=[p.detach().clone() for p in st.scores])
    if saved is not None:
        _restore_bn(st.model, saved)


def bifp(
    model: nn.Module,
    train_loader: Iterable | Any,
    *,
    sparsity: float,
    config: BiFPConfig | None = None,
    constraint: FairnessConstraint | None = None,
    structured: bool = False,
    scope: str = "global",
    layers: Any = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    counter: PassCounter | None = None,
    progress: bool = False,
    method: str | None = None,
    data_split: str = "val",
    dual_data: Any = None,
    safety_data: Any = None,
    accel: Accel | None = None,
    **overrides: Any,
) -> PruneResult:
    """Prune ``model`` by BiFP (BiP when ``constraint`` is None or both fairness switches are off).

    The model is deep-copied (the caller's dense model is untouched); the result's ``model`` is
    the copy with the final masks baked in (pruned weights exactly zero, a plain module).

    Args:
        train_loader: the pruning / fine-tuning data (the paper's validation split): a loader of
            ``(x, y, s)`` batches or a dataset (then batched with ``batch_size``, shuffled with
            ``seed``).
        sparsity: final fraction pruned in ``[0, 1)``, reached exactly (``round(sparsity * n)``).
        config: a :class:`BiFPConfig` (default :data:`DEFAULTS`); ``**overrides`` replace its
            fields by name (``steps=``, ``gamma=``, ``update=``, ...), see there.
        constraint: a :class:`~fairprune_lite.constraints.FairnessConstraint` or None.
        structured, scope, layers: passed to :class:`~fairprune_lite.masks.MaskScores`.
        counter: a :class:`~fairprune_lite.train.PassCounter` to add to (a new one otherwise).
        dual_data: the data of ``dual_every``'s full passes (default: the pruning data).
        safety_data: the safety split itself (a dataset no optimiser and no pretraining saw), when
            it is not to be carved out of the pruning data: with ``safety > 0`` and
            ``prune_split="train"``, :func:`fairprune_lite.pruners.prune` passes the whole val
            split (the dense model was trained on train, so no part of train can certify it).
        accel: the GPU fast path's options (:class:`~fairprune_lite.accel.Accel`: bf16 autocast,
            channels_last, cudnn.benchmark, TF32, torch.compile of the masked forward) for the
            training passes; None (the default) is the plain path, bit for bit. Recorded in the
            result's config as ``accel`` when given.

    Returns a :class:`~fairprune_lite.train.PruneResult` whose history holds, per logged step:
    ``step``, ``sparsity``, ``lower_loss``, ``upper_loss``, ``task_loss`` (upper batch), the
    constraint's ``multipliers``, ``estimate`` (the pooled exact values the multipliers ascended
    on), ``max_violation`` (``max_i estimate_i - tau``), ``surrogate``, ``gap`` / ``exact`` (the
    upper batch alone) and the cumulative ``forward_passes`` / ``backward_passes``.

    Raises ``ValueError`` on bad arguments, ``FloatingPointError`` naming the step on a NaN/inf
    loss.
    """
    cfg = _resolve_config(config, overrides, model, sparsity, constraint)
    wd = cfg.gamma if cfg.weight_decay is None else cfg.weight_decay
    fair_up = constraint is not None and bool(cfg.fair_mask)
    fair_low = constraint is not None and bool(cfg.fair_weights)
    name = method or ("bip" if not (fair_up or fair_low) else "bifp")

    set_seed(seed)
    train_loader, held, safe = _pruning_splits(train_loader, cfg, seed, safety_data)
    too_small = None
    if safe is not None and constraint is not None:
        too_small = _check_safety_size(constraint, safe, cfg, asked=_safety_asked(config, overrides))
    if dual_data is None:
        dual_data = getattr(train_loader, "dataset", train_loader)
    total = _total_steps(cfg, train_loader)

    # ---- model, scores, optimizers ---------------------------------------------------------
    model = copy.deepcopy(model)
    if device is not None:
        model.to(device)
    if accel is not None:
        accel.prepare(model)
    counter = PassCounter() if counter is None else counter
    floor_majority = None
    if held is not None and (cfg.accuracy_floor is not None or cfg.max_accuracy_drop is not None):
        floor_majority = _floor(model, held, cfg.accuracy_floor, cfg.max_accuracy_drop, counter)  # dense, unmasked
    s0 = sparsity_schedule(0, total, float(sparsity), cfg.schedule)
    gate = bool(cfg.gate_norm and structured)
    ms = _mask_scores(model, cfg, float(sparsity), s0, structured=structured, scope=scope, layers=layers,
                      seed=seed, gate=gate)
    st = _make_state(cfg, model, ms, counter, train_loader, constraint, fair_up, fair_low, wd,
                     recal=structured if cfg.recalibrate_bn is None else bool(cfg.recalibrate_bn))
    st.floor_majority = floor_majority
    if accel is not None:
        st.accel, st.fwd = accel, accel.forward_fn(model)
    ms.sparsity = float(sparsity)
    st.init_units = _units(ms)  # the mask the upper level starts from, at the target sparsity
    ms.sparsity = s0
    t_start = time.perf_counter()
    with settings(accel):
        history, best = _solve(st, total, float(sparsity), held, train_loader, dual_data,
                               _progress(total, progress, name))

    # ---- final exact masks -----------------------------------------------------------------
    ms.sparsity = float(sparsity)
    selection = _restore_best(st, best, held, train_loader)
    churn = mask_churn(st.init_units, _units(ms))
    certificate = too_small
    if safe is not None and constraint is not None and too_small is None:
        certificate = _certificate(st, constraint, safe, cfg, given=safety_data is not None)
    masks = ms.binary_masks()
    final_scores = {n: ms.score(n).detach().clone() for n in st.names}
    remove_masks(model, bake=True)
    model.eval()
    wall = time.perf_counter() - t_start
    rep = sparsity_report(masks)
    record: dict[str, Any] = {f.name: getattr(cfg, f.name) for f in fields(cfg)} | {
        "sparsity": float(sparsity), "structured": structured, "scope": scope,
        "mask_init": cfg.mask_init if isinstance(cfg.mask_init, str) else "given", "steps": total,
        "weight_decay": wd, "seed": seed, "device": str(st.dev), "gate_norm": gate, "recalibrate_bn": st.recal,
        "constraint": constraint.state_dict() if constraint is not None else None,
        "achieved_sparsity": rep["overall"], "selection": selection, "mask_churn": churn,
        "swaps_total": int(sum(r.get("swaps") or 0 for r in history)) if cfg.log_every == 1 else None,
        "certificate": certificate,
        "split_sizes": {"fit": _size(train_loader), "selection": None if held is None else len(held),
                        "safety": None if safe is None else len(safe)},
    }
    if accel is not None:
        record["accel"] = accel.as_dict()
    cost = st.counter.as_dict() | {"wall_time_s": wall, "data": data_split}
    return PruneResult(method=name, sparsity_target=float(sparsity), masks=masks, model=model,
                       metrics={}, cost=cost, history=history, config=record, scores=final_scores)


def _resolve_config(config: BiFPConfig | None, overrides: Mapping[str, Any], model: Any, sparsity: Any,
                    constraint: Any) -> BiFPConfig:
    """The checked configuration of one run (``config`` or :data:`DEFAULTS`, with ``overrides``),
    after checking :func:`bifp`'s other arguments."""
    cfg = (DEFAULTS if config is None else config)
    if not isinstance(cfg, BiFPConfig):
        raise ValueError(f"config must be a BiFPConfig or None, got {type(cfg).__name__}")
    cfg = cfg.replace(**overrides).check()
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if constraint is not None and not isinstance(constraint, FairnessConstraint):
        raise ValueError(f"constraint must be a FairnessConstraint or None, got {type(constraint).__name__}")
    return cfg


def _pruning_splits(train_loader: Any, cfg: BiFPConfig, seed: int, safety_data: Any) -> tuple[Any, Any, Any]:
    """``(fit loader, selection split or None, safety split or None)``: a dataset is batched; the
    safety split (unless given) and then the selection holdout are drawn out of the pruning data."""
    if not hasattr(train_loader, "__iter__") and hasattr(train_loader, "__getitem__"):
        train_loader = make_loader(train_loader, cfg.batch_size, shuffle=True, seed=seed)
    elif hasattr(train_loader, "y") and hasattr(train_loader, "s") and hasattr(train_loader, "__getitem__"):
        train_loader = make_loader(train_loader, cfg.batch_size, shuffle=True, seed=seed)
    held, safe = None, None
    if cfg.holdout > 0 or (cfg.safety > 0 and safety_data is None):
        part = getattr(train_loader, "dataset", train_loader)
        if cfg.safety > 0 and safety_data is None:
            part, safe = _split_holdout(part, cfg.safety, seed + _SAFETY_SEED)
        if cfg.holdout > 0:
            part, held = _split_holdout(part, cfg.holdout / (1.0 - (cfg.safety if safe is not None else 0.0)), seed)
        train_loader = make_loader(part, getattr(train_loader, "batch_size", cfg.batch_size), shuffle=True, seed=seed)
    if safety_data is not None:
        if cfg.safety <= 0:
            raise ValueError("safety_data is given but safety=0: set safety > 0 to run the safety test")
        safe = safety_data
    return train_loader, held, safe


def _total_steps(cfg: BiFPConfig, train_loader: Any) -> int:
    """Upper steps of the run: ``steps``, or ``epochs`` passes over the loader's batches."""
    if cfg.steps is not None:
        return cfg.steps
    per_step = 1 if cfg.update == "joint" else cfg.lower_steps + 1
    try:
        n_batches = len(train_loader)
    except TypeError:
        raise ValueError("epochs needs a loader with a length; give steps instead") from None
    return max(1, int(float(cfg.epochs or 0) * n_batches) // per_step)


def _mask_scores(model: nn.Module, cfg: BiFPConfig, sparsity: float, s0: float, *, structured: bool, scope: str,
                 layers: Any, seed: int, gate: bool) -> MaskScores:
    """The scores at the schedule's first sparsity ``s0`` (from ``mask_init``), on the model's
    device, rank-initialised for ``score_update="normalized"``, applied to ``model``."""
    if isinstance(cfg.mask_init, Mapping):
        ms = MaskScores(model, sparsity, structured=structured, scope=scope, layers=layers,
                        mask=cfg.mask_init, gate_norm=gate)
        ms.sparsity = s0
    else:
        ms = MaskScores(model, s0, structured=structured, scope=scope, layers=layers, init=cfg.mask_init,
                        seed=seed, gate_norm=gate)
    ms.to(model_device(model))
    if cfg.score_update == "normalized" and not isinstance(cfg.mask_init, Mapping):
        rank_scores_(ms)
    apply_masks(model, ms)
    return ms


def _make_state(cfg: BiFPConfig, model: nn.Module, ms: MaskScores, counter: PassCounter, train_loader: Any,
                constraint: FairnessConstraint | None, fair_up: bool, fair_low: bool, wd: float, *,
                recal: bool) -> _State:
    """The solver's state: scores, dense weights, the two optimizers and the batch stream."""
    names = ms.names
    scores: list[Tensor] = [ms.score(n) for n in names]
    wdict = weight_parameters(model)
    params: list[Tensor] = [p for p in model.parameters() if p.requires_grad]
    score_ids = {id(p) for p in scores}
    if any(id(p) in score_ids for p in params):  # guaranteed by masks; checked because it matters
        raise RuntimeError("mask scores appear among the model parameters")
    return _State(cfg=cfg, model=model, ms=ms, names=names, scores=scores, thetas=[wdict[n] for n in names],
                  params=params,
                  w_opt=make_optimizer(params, cfg.optimizer, lr=cfg.alpha, weight_decay=wd, momentum=cfg.momentum),
                  s_opt=make_optimizer(scores, cfg.optimizer, lr=cfg.beta, weight_decay=0.0, momentum=cfg.momentum),
                  counter=counter, batches=cycle(train_loader), dev=model_device(model),
                  constraint=constraint, fair_up=fair_up, fair_low=fair_low, recal=recal)


def upper_step(st: _State, step: int, dual_data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One upper step: the lower weight step(s) (alternating), the mask step, the joint weight
    step (joint), the step count, the mask change and the multipliers. Returns ``(history
    record so far, the mask pass's outputs)``."""
    rec: dict[str, Any] = {"step": step, "sparsity": st.ms.sparsity}
    if st.cfg.update == "alternating":
        rec["lower_loss"] = lower_step(st, step)
    out = mask_gradient(st, step)
    score_step(st, out["hyper"])
    if st.cfg.update == "joint":
        joint_weight_step(st, out["weight_grads"])
        rec["lower_loss"] = float(out["low"].detach())
    st.counter.step()
    rec["swaps"] = mask_change(st)
    dual_step(st, step, out["logits"], out["y"], out["s"], dual_data)
    return rec, out


def _solve(st: _State, total: int, sparsity: float, held: Any, train_loader: Any, dual_data: Any,
           bar: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The upper steps with the schedule, the selection on ``held`` and the log: ``(history,
    best iterate, empty without selection)``."""
    cfg = st.cfg
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    st.model.train()
    try:
        for step in range(total):
            st.ms.sparsity = sparsity_schedule(step, total, sparsity, cfg.schedule)
            rec, out = upper_step(st, step, dual_data)
            last = step == total - 1
            if held is not None and st.ms.sparsity == sparsity and ((step + 1) % cfg.select_every == 0 or last):
                select_step(st, step, held, best, train_loader)
            if step % cfg.log_every == 0 or last:
                history.append(log_step(st, rec, out))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return history, best


def _restore_best(st: _State, best: dict[str, Any], held: Any, train_loader: Any) -> dict[str, Any] | None:
    """Load the selected iterate (weights and scores) into the model and return the selection's
    record; without selection, recalibrate BatchNorm when the run asks for it (a selected
    iterate was recalibrated when it was evaluated). None without selection."""
    if not best:
        if st.recal:
            st.scores_grad(False)
            recalibrate_bn(st.model, train_loader, st.counter)
            st.scores_grad(True)
        return None
    st.model.load_state_dict(best["state"])
    with torch.no_grad():
        for p, v in zip(st.scores, best["scores"], strict=True):
            p.copy_(v)
    return {k: best[k] for k in ("step", "accuracy", "value", "passed", "feasible", "floor_ok")} | {
        "held_out": len(held) if held is not None else 0, "floor": st.floor_majority}


def _certificate(st: _State, constraint: FairnessConstraint, safe: Any, cfg: BiFPConfig, *,
                 given: bool) -> dict[str, Any]:
    """The returned model's certificate on the safety split (evaluation, not training: uncounted)."""
    st.scores_grad(False)
    logits_s, y_s, s_s = predict(st.model, safe, batch_size=EVAL_BATCH_SIZE)
    st.scores_grad(True)
    return certify(constraint.kind, constraint.tau, logits_s, y_s, s_s, delta=cfg.delta) | {
        "split": "safety" if not given else "given (val when pruning on train)",
        "fraction": cfg.safety if not given else None}


def bip(model: nn.Module, train_loader: Iterable | Any, **kwargs: Any) -> PruneResult:
    """BiP (Zhang et al., 2022): :func:`bifp` without any fairness term (``constraint`` ignored).

    BiP runs the paper's protocol (:data:`PROTOCOLS` ``["paper"]``) unless ``config`` or
    ``protocol=`` says otherwise: it has no constraint to certify, and it is the book's reproduced
    baseline."""
    kwargs.pop("constraint", None)
    if kwargs.get("config") is None and "protocol" not in kwargs:
        kwargs["config"] = PROTOCOLS["paper"]
    kwargs.setdefault("method", "bip")
    return bifp(model, train_loader, constraint=None, fair_mask=False, fair_weights=False, **kwargs)
