"""Group fairness metrics (Defs. 1-3, DP, EO, EOpp) and smooth surrogates of the constraints.

Two halves:

* **Metrics** on 0/1 predictions, in fairlearn's style ``metric(y_true, y_pred, *,
  sensitive_features=...)``: numpy arrays, lists or torch tensors (any device) in, a Python
  ``float`` out; ``*_by_group`` functions return ``{group value: float}``. A difference over
  more than two groups is ``max - min`` (fairlearn's ``between_groups``). They agree with
  fairlearn to rounding, except that an undefined rate (TPR of a group without positives, FPR of
  a group without negatives) raises ``ValueError`` where fairlearn silently returns 0.
* **Constraints** for training, :func:`constraint_values`: the one-sided constraints
  ``c_i <= tau`` of a fairness notion on a batch of logits, either exactly (indicators) or with
  each indicator replaced by a differentiable surrogate ``u`` (:func:`surrogate`), which for
  ``hinge``, ``logistic`` and ``ramp`` gives upper bounds ``c~_i >= c_i``. The exact values have
  one definition, :func:`values_from_stats` on the per-cell counts of :func:`cell_stats`
  (examples and hits per (group, label) cell); :func:`constraint_values`, the solver's moving
  window (:mod:`fairprune_lite.constraints`) and the safety test (:mod:`fairprune_lite.certify`)
  all go through it, and :func:`se_from_stats` gives their binomial standard errors.

Inputs are checked: empty input, mismatched lengths, a single group, non-binary labels or NaN
raise ``ValueError`` naming the argument. No function returns a silent NaN.

This module imports nothing else from the package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CONSTRAINT_KINDS",
    "SURROGATES",
    "accuracy",
    "accuracy_by_group",
    "selection_rate_by_group",
    "true_positive_rate_by_group",
    "false_positive_rate_by_group",
    "group_counts",
    "accuracy_gap",
    "degradation",
    "degradation_by_group",
    "degradation_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "METRIC_OF_KIND",
    "equal_opportunity_difference",
    "majority_baseline",
    "fairness_report",
    "surrogate",
    "constraint_values",
    "N_CONSTRAINTS",
    "cell_index",
    "cell_stats",
    "cell_counts",
    "rate_pairs",
    "rates_defined",
    "values_from_stats",
    "se_from_stats",
]

#: the fairness notions :func:`constraint_values` knows (the one definition of this tuple)
CONSTRAINT_KINDS = ("accuracy_gap", "demographic_parity", "equalized_odds")
#: how many one-sided entries :func:`constraint_values` gives for each kind
N_CONSTRAINTS = {"accuracy_gap": 2, "demographic_parity": 2, "equalized_odds": 4}
#: the fairness_report key that measures each constraint kind (the one definition of this map)
METRIC_OF_KIND = {"accuracy_gap": "accuracy_gap", "demographic_parity": "demographic_parity_difference",
                  "equalized_odds": "equalized_odds_difference"}
#: the surrogate names :func:`surrogate` knows
SURROGATES = ("hinge", "logistic", "sigmoid", "ramp")

ArrayLike = np.ndarray | Tensor | list | tuple
Group = Any  # a group value: int, bool, str, ... (a Python scalar, never a numpy scalar)


# ---------------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------------
def _as_numpy(x: Any, name: str) -> np.ndarray:
    """1-D numpy view of an array-like (tensors are detached and moved to the CPU)."""
    if x is None:
        raise ValueError(f"{name} is None")
    if isinstance(x, Tensor):
        t = x.detach().cpu()
        if t.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        if t.is_floating_point():
            t = t.double()  # also makes float16/bfloat16 convertible
        arr = t.numpy()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name} could not be read as an array: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per example), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _has_nan(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "fc":
        return bool(np.isnan(arr).any())
    if arr.dtype.kind == "O":
        return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in arr)
    return False


def _binary(x: Any, name: str) -> np.ndarray:
    """``x`` as an int64 array of 0/1; bools and 0.0/1.0 floats are accepted, nothing else."""
    arr = _as_numpy(x, name)
    if _has_nan(arr):
        raise ValueError(f"{name} contains NaN")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be binary (0/1 or bool), got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        found = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{name} must be binary (values in {{0, 1}} or bool), found {found}")
    return arr.astype(np.int64)


def _groups(sensitive_features: Any, n: int, ref: str = "y_true") -> tuple[list[Group], np.ndarray]:
    """Sorted distinct group values (as Python scalars) and each example's group index."""
    name = "sensitive_features"
    arr = _as_numpy(sensitive_features, name)
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries but {ref} has {n}")
    if _has_nan(arr):
        raise ValueError(f"{name} contains NaN/None")
    try:
        values, index = np.unique(arr, return_inverse=True)
    except TypeError as exc:  # mixed, unorderable types
        raise ValueError(f"{name} values must be mutually comparable: {exc}") from exc
    if len(values) < 2:
        raise ValueError(
            f"{name} has a single group ({values[0].item()!r}); fairness needs at least two groups"
        )
    return [v.item() for v in values], index.reshape(-1)


def _pair(y_true: Any, y_pred: Any, pred_name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    yt = _binary(y_true, "y_true")
    yp = _binary(y_pred, pred_name)
    if len(yt) != len(yp):
        raise ValueError(f"{pred_name} has {len(yp)} entries but y_true has {len(yt)}")
    return yt, yp


def _rate_by_group(
    values: np.ndarray, keep: np.ndarray, groups: list[Group], index: np.ndarray, what: str, cond: str
) -> dict[Group, float]:
    """Mean of ``values`` over the examples of each group where ``keep`` holds."""
    out: dict[Group, float] = {}
    for g_i, g in enumerate(groups):
        sel = (index == g_i) & keep
        count = int(sel.sum())
        if count == 0:
            raise ValueError(
                f"{what} is undefined for sensitive_features group {g!r}: it has no examples with {cond}"
            )
        out[g] = float(values[sel].sum() / count)
    return out


def _spread(rates: dict[Group, float]) -> float:
    vals = list(rates.values())
    return float(max(vals) - min(vals))


# ---------------------------------------------------------------------------------------------
# per-group rates
# ---------------------------------------------------------------------------------------------
def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of examples with ``y_pred == y_true`` (both binary)."""
    yt, yp = _pair(y_true, y_pred)
    return float((yt == yp).mean())


def group_counts(sensitive_features: ArrayLike) -> dict[Group, int]:
    """Number of examples in each group (at least two groups are required)."""
    arr = _as_numpy(sensitive_features, "sensitive_features")
    groups, index = _groups(arr, len(arr))
    return {g: int((index == i).sum()) for i, g in enumerate(groups)}


def accuracy_by_group(y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike) -> dict[Group, float]:
    """Accuracy within each group, ``{group: acc}``. Every group has examples, so never undefined."""
    yt, yp = _pair(y_true, y_pred)
    groups, index = _groups(sensitive_features, len(yt))
    return _rate_by_group((yt == yp).astype(np.float64), np.ones(len(yt), bool), groups, index, "accuracy", "")


def selection_rate_by_group(
    y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike
) -> dict[Group, float]:
    """Fraction predicted positive (``y_pred == 1``) in each group. ``y_true`` is only validated."""
    yt, yp = _pair(y_true, y_pred)
    groups, index = _groups(sensitive_features, len(yt))
    return _rate_by_group(yp.astype(np.float64), np.ones(len(yt), bool), groups, index, "selection rate", "")


def true_positive_rate_by_group(
    y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike
) -> dict[Group, float]:
    """``P(y_pred = 1 | y_true = 1, group)`` for each group.

    A group without positive examples has no TPR: this raises ``ValueError`` naming the group.
    (fairlearn's ``true_positive_rate`` returns 0.0 there, indistinguishable from a classifier
    that misses every positive, and it would inflate the equalized-odds difference.)
    """
    yt, yp = _pair(y_true, y_pred)
    groups, index = _groups(sensitive_features, len(yt))
    return _rate_by_group(yp.astype(np.float64), yt == 1, groups, index, "true positive rate", "y_true == 1")


def false_positive_rate_by_group(
    y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike
) -> dict[Group, float]:
    """``P(y_pred = 1 | y_true = 0, group)`` for each group.

    A group without negative examples has no FPR: this raises ``ValueError`` naming the group
    (fairlearn returns 0.0 silently).
    """
    yt, yp = _pair(y_true, y_pred)
    groups, index = _groups(sensitive_features, len(yt))
    return _rate_by_group(yp.astype(np.float64), yt == 0, groups, index, "false positive rate", "y_true == 0")


# ---------------------------------------------------------------------------------------------
# differences (Defs. 1-3, DP, EO, EOpp)
# ---------------------------------------------------------------------------------------------
def accuracy_gap(y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike) -> float:
    """Def. 1, performance fairness: ``|acc(s+) - acc(s-)|``; ``max - min`` over >2 groups."""
    return _spread(accuracy_by_group(y_true, y_pred, sensitive_features=sensitive_features))


def degradation(y_true: ArrayLike, y_pred_dense: ArrayLike, y_pred_pruned: ArrayLike) -> float:
    """Def. 2, compressed-model degradation ``R = acc(dense) - acc(pruned)``.

    Signed: positive when pruning lost accuracy, negative when it gained some.
    """
    yt, yd = _pair(y_true, y_pred_dense, "y_pred_dense")
    _, yq = _pair(yt, y_pred_pruned, "y_pred_pruned")
    return float((yt == yd).mean() - (yt == yq).mean())


def degradation_by_group(
    y_true: ArrayLike, y_pred_dense: ArrayLike, y_pred_pruned: ArrayLike, *, sensitive_features: ArrayLike
) -> dict[Group, float]:
    """Def. 2 within each group: ``{group: acc_g(dense) - acc_g(pruned)}`` (signed)."""
    yt, yd = _pair(y_true, y_pred_dense, "y_pred_dense")
    _, yq = _pair(yt, y_pred_pruned, "y_pred_pruned")
    dense = accuracy_by_group(yt, yd, sensitive_features=sensitive_features)
    pruned = accuracy_by_group(yt, yq, sensitive_features=sensitive_features)
    return {g: dense[g] - pruned[g] for g in dense}


def degradation_gap(
    y_true: ArrayLike, y_pred_dense: ArrayLike, y_pred_pruned: ArrayLike, *, sensitive_features: ArrayLike
) -> float:
    """Def. 3, degradation fairness: ``|R(s+) - R(s-)|``; ``max - min`` over >2 groups."""
    return _spread(degradation_by_group(y_true, y_pred_dense, y_pred_pruned, sensitive_features=sensitive_features))


def demographic_parity_difference(y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike) -> float:
    """``max - min`` over groups of the selection rate ``P(y_pred = 1 | group)`` (as fairlearn)."""
    return _spread(selection_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features))


def equal_opportunity_difference(y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike) -> float:
    """``max - min`` over groups of the TPR. Raises if a group has no positives."""
    return _spread(true_positive_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features))


def equalized_odds_difference(y_true: ArrayLike, y_pred: ArrayLike, *, sensitive_features: ArrayLike) -> float:
    """``max(TPR difference, FPR difference)``, each ``max - min`` over groups.

    This is fairlearn's default (``agg="worst_case"``, ``method="between_groups"``). Raises if a
    group has no positives or no negatives (its TPR or FPR is undefined).
    """
    tpr = true_positive_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features)
    fpr = false_positive_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features)
    return max(_spread(tpr), _spread(fpr))


def majority_baseline(y_true: ArrayLike) -> float:
    """Accuracy of always predicting the most frequent label of ``y_true``: ``max(p, 1 - p)``.

    A constant predictor has zero DP and EO differences, so "fair" numbers mean little unless
    the accuracy is clearly above this baseline.
    """
    yt = _binary(y_true, "y_true")
    p = float(yt.mean())
    return max(p, 1.0 - p)


def fairness_report(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    sensitive_features: ArrayLike,
    y_pred_dense: ArrayLike | None = None,
) -> dict[str, Any]:
    """Every metric of this module on one set of predictions.

    Keys (floats unless said otherwise): ``accuracy``, ``accuracy_gap`` (Def. 1),
    ``demographic_parity_difference``, ``equalized_odds_difference``,
    ``equal_opportunity_difference``, ``accuracy_by_group``, ``selection_rate_by_group``,
    ``true_positive_rate_by_group``, ``false_positive_rate_by_group`` (dicts group -> float),
    ``group_counts`` (dict group -> int), ``majority_baseline`` (accuracy of the constant
    majority-label predictor, which is "fair" by DP and EO) and ``majority_baseline_gap`` (that
    constant predictor's accuracy gap; ties of the majority go to label 1). With
    ``y_pred_dense`` (predictions of the unpruned model on the same examples) it adds
    ``degradation`` (Def. 2), ``degradation_by_group`` and ``degradation_gap`` (Def. 3).

    Raises ``ValueError`` like the metrics it calls, in particular when a group has no positive
    or no negative examples (TPR / FPR undefined).
    """
    yt, yp = _pair(y_true, y_pred)
    sf = _as_numpy(sensitive_features, "sensitive_features")
    _groups(sf, len(yt))  # validate once, with the clearest message
    kw = {"sensitive_features": sf}
    acc_g = accuracy_by_group(yt, yp, **kw)
    sel_g = selection_rate_by_group(yt, yp, **kw)
    tpr_g = true_positive_rate_by_group(yt, yp, **kw)
    fpr_g = false_positive_rate_by_group(yt, yp, **kw)
    majority_label = int(yt.mean() >= 0.5)
    report: dict[str, Any] = {
        "accuracy": accuracy(yt, yp),
        "accuracy_gap": _spread(acc_g),
        "demographic_parity_difference": _spread(sel_g),
        "equalized_odds_difference": max(_spread(tpr_g), _spread(fpr_g)),
        "equal_opportunity_difference": _spread(tpr_g),
        "accuracy_by_group": acc_g,
        "selection_rate_by_group": sel_g,
        "true_positive_rate_by_group": tpr_g,
        "false_positive_rate_by_group": fpr_g,
        "group_counts": group_counts(sf),
        "majority_baseline": majority_baseline(yt),
        "majority_baseline_gap": accuracy_gap(yt, np.full_like(yt, majority_label), **kw),
    }
    if y_pred_dense is not None:
        report["degradation"] = degradation(yt, y_pred_dense, yp)
        report["degradation_by_group"] = degradation_by_group(yt, y_pred_dense, yp, **kw)
        report["degradation_gap"] = _spread(report["degradation_by_group"])
    return report


# ---------------------------------------------------------------------------------------------
# surrogates of the indicator 1(t > 0)
# ---------------------------------------------------------------------------------------------
_LN2 = math.log(2.0)


def surrogate(name: str, *, temperature: float = 1.0) -> Callable[[Tensor], Tensor]:
    """Smooth stand-in ``u(t)`` for the step ``1(t > 0)``, evaluated as ``u(t / temperature)``.

    ============ ============================== ======== ============== ===========
    name         u(t)                           convex   upper bound    u(0)
    ============ ============================== ======== ============== ===========
    ``hinge``    ``max(0, 1 + t)``              yes      yes            1
    ``logistic`` ``log2(1 + e^t)``              yes      yes            1
    ``ramp``     ``clamp(1 + t, 0, 1)``         no       yes            1
    ``sigmoid``  ``1 / (1 + e^-t)``             no       no             1/2
    ============ ============================== ======== ============== ===========

    *Upper bound* means ``u(t) >= 1(t >= 0) >= 1(t > 0)`` for every ``t``; since ``u(0) = 1``
    this holds whatever way a tie ``t = 0`` is counted, so replacing each indicator of a
    constraint by ``u`` bounds the constraint from above (:func:`constraint_values`). A convex
    ``u`` with ``u'(0) > 0`` bounds the step (Wu, Zhang & Wu, WWW 2019) and makes the surrogate
    constraint convex in a model's score, hence hinge and logistic. The ramp is a bound but
    not convex (its gradient vanishes outside ``-1 < t < 0``). The sigmoid is neither convex nor a
    bound: it is the smooth midpoint approximation, ``u(t) + u(-t) = 1``, tighter but it can
    under-estimate a violation. ``temperature > 0`` rescales ``t``: bounds and convexity are kept,
    and smaller temperatures approach the step.

    Logistic is computed as ``softplus(t) / ln 2`` (no overflow for large ``|t|``).
    """
    if name not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {name!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    inv = 1.0 / float(temperature)
    if inv == 1.0:  # t * 1.0 is t exactly (values and gradients): skip the multiplication
        return _unscaled(name)

    if name == "hinge":
        def u(t: Tensor) -> Tensor:
            return torch.relu(1.0 + t * inv)
    elif name == "logistic":
        def u(t: Tensor) -> Tensor:
            return F.softplus(t * inv) / _LN2
    elif name == "ramp":
        def u(t: Tensor) -> Tensor:
            return torch.clamp(1.0 + t * inv, 0.0, 1.0)
    else:
        def u(t: Tensor) -> Tensor:
            return torch.sigmoid(t * inv)
    u.__name__ = name
    u.__doc__ = f"{name} surrogate of 1(t > 0), temperature {temperature}"
    return u


# ---------------------------------------------------------------------------------------------
# one-sided constraints on a batch of logits
# ---------------------------------------------------------------------------------------------
def _unscaled(name: str) -> Callable[[Tensor], Tensor]:
    """:func:`surrogate` at temperature 1."""
    if name == "hinge":
        def u(t: Tensor) -> Tensor:
            return torch.relu(1.0 + t)
    elif name == "logistic":
        def u(t: Tensor) -> Tensor:
            return F.softplus(t) / _LN2
    elif name == "ramp":
        def u(t: Tensor) -> Tensor:
            return torch.clamp(1.0 + t, 0.0, 1.0)
    else:
        def u(t: Tensor) -> Tensor:
            return torch.sigmoid(t)
    u.__name__ = name
    u.__doc__ = f"{name} surrogate of 1(t > 0), temperature 1.0"
    return u


def _label_tensor(x: Any, name: str, like: Tensor) -> Tensor:
    t = torch.as_tensor(x, device=like.device)
    if t.dim() != 1 or t.shape[0] != like.shape[0]:
        raise ValueError(f"{name} must have shape [{like.shape[0]}] like logits, got {tuple(t.shape)}")
    if t.is_complex():
        raise ValueError(f"{name} must be real")
    return t


def cell_index(y: Tensor, s: Tensor) -> Tensor:
    """Cell index ``2 s + y`` of each example: (s=0,y=0), (s=0,y=1), (s=1,y=0), (s=1,y=1)."""
    return (2 * s + y).long()


def _hits(kind: str, logits: Tensor, y: Tensor) -> Tensor:
    """What the constraint's rates count: correct predictions (accuracy gap) or positive ones
    (demographic parity, equalized odds); the prediction is ``logit > 0``."""
    sel = logits.detach() > 0
    return (sel == (y == 1)) if kind == "accuracy_gap" else sel


def cell_counts(kind: str, logits: Tensor, y: Tensor, s: Tensor) -> list[float]:
    """:func:`cell_stats` as a list of Python floats (one ``bincount`` of ``cell + 4 * hit``; the
    training loop's form, without a tensor per statistic)."""
    y = torch.as_tensor(y).flatten().to(logits.device)
    code = cell_index(y, torch.as_tensor(s).flatten().to(logits.device)) + 4 * _hits(kind, logits.flatten(), y)
    c = torch.bincount(code, minlength=8).tolist()
    return [float(c[i] + c[i + 4]) for i in range(4)] + [float(c[i]) for i in range(4, 8)]


def cell_stats(kind: str, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
    """``[n_00, n_01, n_10, n_11, h_00, h_01, h_10, h_11]`` (float64, CPU): examples and hits
    (correct predictions for the accuracy gap, positive predictions otherwise) per (group, label)
    cell ``n_{s, y}``. Sums of these over batches are the pooled statistics; the exact values
    (:func:`values_from_stats`) and their standard errors (:func:`se_from_stats`) are functions of
    them alone. No validation (:func:`constraint_values` validates)."""
    return torch.tensor(cell_counts(kind, logits, y, s), dtype=torch.float64)


def rate_pairs(kind: str, st: Tensor | Sequence[float]) -> list[tuple[float, float, float, float]]:
    """``(hits+, n+, hits-, n-)`` of each compared rate from :func:`cell_stats` (one pair, the
    TPR and FPR pairs for equalized odds), as Python floats: a handful of scalars, cheaper than
    tensor arithmetic in a training loop."""
    n00, n01, n10, n11, h00, h01, h10, h11 = st.tolist() if isinstance(st, Tensor) else st
    if kind == "equalized_odds":
        return [(h11, n11, h01, n01), (h10, n10, h00, n00)]  # TPR (y=1), FPR (y=0)
    return [(h10 + h11, n10 + n11, h00 + h01, n00 + n01)]


def rates_defined(kind: str, counts: Sequence[float]) -> bool:
    """Whether every rate ``kind`` compares has examples, from the four cell counts
    ``[n_00, n_01, n_10, n_11]``: both groups, or all four cells for equalized odds."""
    n00, n01, n10, n11 = counts[:4].tolist() if isinstance(counts, Tensor) else counts[:4]
    if kind == "equalized_odds":
        return bool(n00 > 0 and n01 > 0 and n10 > 0 and n11 > 0)
    return bool(n00 + n01 > 0 and n10 + n11 > 0)


def values_from_stats(kind: str, st: Tensor | Sequence[float], *,
                      dtype: torch.dtype = torch.float64) -> Tensor | None:
    """The exact one-sided values ``[p+ - p-, p- - p+]`` of each compared rate (the accuracy gap's
    and DP's pair, or TPR then FPR for equalized odds) from :func:`cell_stats`, a CPU tensor of
    ``dtype``; None when a compared rate has no example. The one definition of the exact values:
    each rate is ``hits / n`` rounded in ``dtype`` (float64: Python floats, the same IEEE
    arithmetic), so the float32 values of :func:`constraint_values` are those of float32 logits."""
    out: list[float] = []
    parts: list[Tensor] = []
    for hp, np_, hm, nm in rate_pairs(kind, st):
        if np_ == 0 or nm == 0:
            return None
        if dtype == torch.float64:
            g = hp / np_ - hm / nm
            out += [g, -g]
        else:
            gt = torch.tensor(hp, dtype=dtype) / int(np_) - torch.tensor(hm, dtype=dtype) / int(nm)
            parts += [gt, -gt]
    return torch.tensor(out, dtype=torch.float64) if dtype == torch.float64 else torch.stack(parts)


def se_from_stats(kind: str, st: Tensor | Sequence[float]) -> Tensor:
    """Binomial standard errors of :func:`values_from_stats` (float64; NaN where undefined): a
    one-sided value is a difference of two group proportions ``p+ - p-``, so its SE is
    ``sqrt(p+(1-p+)/n+ + p-(1-p-)/n-)``; both sides of a pair share it."""
    out: list[float] = []
    for hp, np_, hm, nm in rate_pairs(kind, st):
        if np_ == 0 or nm == 0:
            v = float("nan")
        else:
            a, b = hp / np_, hm / nm
            v = math.sqrt(a * (1 - a) / np_ + b * (1 - b) / nm)
        out += [v, v]
    return torch.tensor(out, dtype=torch.float64)


def _check_groups(kind: str, n_minus: int, n_plus: int, what: str) -> None:
    for g, n_g in (("s=0", n_minus), ("s=1", n_plus)):
        if n_g == 0:
            raise ValueError(f"{kind}: no examples in group {g}{what}; its rate is undefined")


def constraint_values(
    kind: str,
    logits: Tensor,
    y: Tensor,
    s: Tensor,
    *,
    surrogate: str | Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """One-sided fairness constraints ``c_i`` of a batch (constraint: ``c_i <= tau`` for all i).

    Args:
        kind: ``"accuracy_gap"`` (2 entries), ``"demographic_parity"`` (2) or
            ``"equalized_odds"`` (4).
        logits: shape ``[B]``, one logit per example; the prediction is ``logit > 0``.
        y, s: shape ``[B]``, labels and sensitive attribute in {0, 1}; ``s+`` is ``s == 1``.
        surrogate: ``None`` for the exact values, or a name of :data:`SURROGATES` (or any
            callable ``u``) for the smooth version, differentiable in ``logits``.

    Returns:
        A 1-D tensor on ``logits``' device, of ``logits``' dtype (float32 if ``logits`` is not
        floating). The exact values carry no gradient.

    Derivation (accuracy gap). Let ``y_pm = 2y - 1`` and the margin ``t = y_pm * logit``. An
    example is correct, ``c = 1(pred == y)``, iff ``t > 0``, or ``t = 0`` and ``y = 0`` (the
    prediction ``logit > 0`` says 0 at a tie); write ``e = 1 - c`` for an error. Then ::

        acc+ - acc- = E[c | s+] - E[c | s-] = E[c | s+] + E[e | s-] - 1

    Entry 0 is ``g1 = acc+ - acc-`` and entry 1 ``g2 = acc- - acc+``, so ``|gap| = max`` of
    the entries and ``|gap| <= tau`` is ``entry <= tau`` for both. With a surrogate, ``c`` is
    replaced by ``u(t)`` and ``e`` by ``u(-t)``::

        entry 0 = E[u(t) | s+] + E[u(-t) | s-] - 1  >=  g1
        entry 1 = E[u(t) | s-] + E[u(-t) | s+] - 1  >=  g2

    The bounds hold for an upper-bound surrogate since ``u(t) >= c`` and ``u(-t) >= e`` for every
    ``t`` (``u(0) = 1`` covers ties either way). Note the minus sign inside ``u(-t)`` for the
    group on the negative side: the paper's Eq. 8, ``(1/N) sum_i u(y_i f(x_i)) / P(S = s_i) - 1``,
    leaves it implicit; the empirical ``E[. | s]`` is ``(1/N) sum_{i in s} . / P(S = s)``.

    Demographic parity: the same with ``t = logit`` and ``c = 1(logit > 0)`` (selected):
    entries ``sel+ - sel-`` and ``sel- - sel+``. Equalized odds: that construction restricted
    to ``y == 1`` (entries 0, 1: ``tpr+ - tpr-``, ``tpr- - tpr+``) and to ``y == 0`` (entries
    2, 3: ``fpr+ - fpr-``, ``fpr- - fpr+``). A (group, label) cell without examples makes its
    rate undefined and raises ``ValueError``.
    """
    if kind not in CONSTRAINT_KINDS:
        raise ValueError(f"kind must be one of {CONSTRAINT_KINDS}, got {kind!r}")
    if not isinstance(logits, Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 1:
        raise ValueError(f"logits must have shape [B] (one logit per example), got {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("logits is empty")
    if logits.is_complex():
        raise ValueError("logits must be real")
    if surrogate is None:
        u = None
    elif isinstance(surrogate, str):
        u = globals()["surrogate"](surrogate)
    elif callable(surrogate):
        u = surrogate
    else:
        raise ValueError(f"surrogate must be None, a name in {SURROGATES} or a callable, got {surrogate!r}")
    y_t = _label_tensor(y, "y", logits)
    s_t = _label_tensor(s, "s", logits)
    dtype = logits.dtype if logits.is_floating_point() else torch.float32
    lg = logits.to(dtype)

    # one host synchronisation for every check
    y_ok = ((y_t == 0) | (y_t == 1)).all()
    s_ok = ((s_t == 0) | (s_t == 1)).all()
    finite = torch.isfinite(lg).all()
    pos, plus = y_t == 1, s_t == 1
    cells = torch.stack([(~plus & ~pos).sum(), (~plus & pos).sum(), (plus & ~pos).sum(), (plus & pos).sum()])
    stats = torch.cat([torch.stack([y_ok, s_ok, finite]).long(), cells.long()]).tolist()
    if not stats[0]:
        raise ValueError("y must contain only 0 and 1")
    if not stats[1]:
        raise ValueError("s must contain only 0 and 1")
    if not stats[2]:
        raise ValueError("logits contains NaN or infinite values")
    n00, n01, n10, n11 = stats[3:]  # n_{s, y}
    if u is None:  # the one definition of the exact values, after the same checks as the surrogate's
        for n_minus, n_plus, what in ([(n01, n11, " with y=1"), (n00, n10, " with y=0")]
                                      if kind == "equalized_odds" else [(n00 + n01, n10 + n11, "")]):
            _check_groups(kind, n_minus, n_plus, what)
        exact = values_from_stats(kind, cell_stats(kind, lg, y_t, s_t), dtype=dtype)
        assert exact is not None  # every compared rate has examples (checked above)
        return exact.to(logits.device)

    uu = u  # the surrogate (not None here)

    def entries(t: Tensor, restrict: Tensor | None, counts: tuple[int, int], what: str) -> Tensor:
        """[E[u(t)|s+] + E[u(-t)|s-] - 1, E[u(t)|s-] + E[u(-t)|s+] - 1] on the examples in ``restrict``."""
        n_minus, n_plus = counts
        _check_groups(kind, n_minus, n_plus, what)
        keep = torch.ones_like(plus) if restrict is None else restrict
        w_plus = (keep & plus).to(dtype) / n_plus  # (1/N) 1(s_i = s+) / P(S = s+), on the cell
        w_minus = (keep & ~plus).to(dtype) / n_minus
        ut, umt = uu(t), uu(-t)
        e0 = (w_plus * ut).sum() + (w_minus * umt).sum() - 1.0
        e1 = (w_minus * ut).sum() + (w_plus * umt).sum() - 1.0
        return torch.stack([e0, e1])

    if kind == "accuracy_gap":
        return entries((2 * y_t.to(dtype) - 1) * lg, None, (n00 + n01, n10 + n11), "")
    if kind == "demographic_parity":
        return entries(lg, None, (n00 + n01, n10 + n11), "")
    tpr = entries(lg, pos, (n01, n11), " with y=1")
    fpr = entries(lg, ~pos, (n00, n10), " with y=0")
    return torch.cat([tpr, fpr])
