"""Fairness metrics for compressed models, and smooth surrogates of fairness constraints.

Metrics follow fairlearn's convention, ``metric(y_true, y_pred, *, sensitive_features=...)``:
numpy arrays, lists or torch tensors in (any device), a Python ``float`` out. Per-group
functions return ``{group value: float}``. With more than two groups a *difference* is
``max - min`` over groups (fairlearn's ``method="between_groups"``).

Definitions (Dai et al., arXiv:2312.10181):

* Def. 1, performance fairness: ``accuracy_gap = |A(f_c, D+) - A(f_c, D-)|``.
* Def. 2, compressed-model degradation: ``degradation = A(f, D) - A(f_c, D)`` (signed).
* Def. 3, degradation fairness: ``degradation_gap = |R(f, f_c, D+) - R(f, f_c, D-)|``.

Edge cases, shared by every function: empty input, mismatched lengths, NaN values, labels or
predictions outside {0, 1}, and a sensitive attribute with a single group all raise
``ValueError`` naming the argument. A group with no positive labels has an undefined true
positive rate (no negatives: undefined false positive rate); the rate-based functions raise
``ValueError`` naming the group rather than return fairlearn's silent 0.

The second half of the module turns the exact (indicator) quantities into differentiable upper
bounds, :func:`constraint_values`, used by the constrained solvers.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

__all__ = [
    "CONSTRAINT_KINDS", "SURROGATES",
    "accuracy_by_group", "selection_rate_by_group", "true_positive_rate_by_group",
    "false_positive_rate_by_group", "accuracy_gap", "degradation", "degradation_gap",
    "demographic_parity_difference", "equalized_odds_difference",
    "equal_opportunity_difference", "fairness_report", "surrogate", "constraint_values",
]

CONSTRAINT_KINDS = ("accuracy_gap", "demographic_parity", "equalized_odds")
SURROGATES = ("hinge", "logistic", "sigmoid", "ramp")


# --------------------------------------------------------------------------- input checking
def _as_array(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _binary(a: Any, name: str) -> np.ndarray:
    arr = _as_array(a, name)
    if arr.dtype == bool:
        return arr.astype(np.int64)
    values = np.unique(arr)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must be binary with values in {{0, 1}}, got values {values[:6].tolist()}")
    return arr.astype(np.int64)


def _groups(sensitive_features: Any, n: int) -> tuple[np.ndarray, list]:
    s = _as_array(sensitive_features, "sensitive_features")
    if len(s) != n:
        raise ValueError(f"sensitive_features has length {len(s)} but y_true has length {n}")
    groups = np.unique(s).tolist()
    if len(groups) < 2:
        raise ValueError(f"sensitive_features has a single group ({groups[0]!r}); "
                         "fairness needs at least two")
    return s, groups


def _check(y_true: Any, y_pred: Any, sensitive_features: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    yt = _binary(y_true, "y_true")
    yp = _binary(y_pred, "y_pred")
    if len(yp) != len(yt):
        raise ValueError(f"y_pred has length {len(yp)} but y_true has length {len(yt)}")
    s, groups = _groups(sensitive_features, len(yt))
    return yt, yp, s, groups


def _key(g: Any) -> Any:
    return g.item() if isinstance(g, np.generic) else g


def _spread(values: dict) -> float:
    v = list(values.values())
    return float(max(v) - min(v))


# --------------------------------------------------------------------------- per-group rates
def accuracy_by_group(y_true, y_pred, *, sensitive_features) -> dict:
    """Accuracy of ``y_pred`` within each group of ``sensitive_features``."""
    yt, yp, s, groups = _check(y_true, y_pred, sensitive_features)
    return {_key(g): float(np.mean(yt[s == g] == yp[s == g])) for g in groups}


def selection_rate_by_group(y_true, y_pred, *, sensitive_features) -> dict:
    """Fraction predicted positive, P(y_pred = 1 | group). ``y_true`` is only validated."""
    yt, yp, s, groups = _check(y_true, y_pred, sensitive_features)
    return {_key(g): float(np.mean(yp[s == g])) for g in groups}


def _conditional_rate(yt, yp, s, groups, label: int, what: str) -> dict:
    out = {}
    for g in groups:
        cell = (s == g) & (yt == label)
        if not cell.any():
            raise ValueError(f"{what} is undefined for group {_key(g)!r}: it has no examples "
                             f"with y_true == {label}")
        out[_key(g)] = float(np.mean(yp[cell]))
    return out


def true_positive_rate_by_group(y_true, y_pred, *, sensitive_features) -> dict:
    """P(y_pred = 1 | y_true = 1, group). A group without positives raises ``ValueError``."""
    yt, yp, s, groups = _check(y_true, y_pred, sensitive_features)
    return _conditional_rate(yt, yp, s, groups, 1, "true positive rate")


def false_positive_rate_by_group(y_true, y_pred, *, sensitive_features) -> dict:
    """P(y_pred = 1 | y_true = 0, group). A group without negatives raises ``ValueError``."""
    yt, yp, s, groups = _check(y_true, y_pred, sensitive_features)
    return _conditional_rate(yt, yp, s, groups, 0, "false positive rate")


# --------------------------------------------------------------------------- differences
def accuracy_gap(y_true, y_pred, *, sensitive_features) -> float:
    """Def. 1: ``|A(D+) - A(D-)|``, the largest accuracy difference between groups."""
    return _spread(accuracy_by_group(y_true, y_pred, sensitive_features=sensitive_features))


def degradation(y_true, y_pred_dense, y_pred_pruned) -> float:
    """Def. 2: accuracy lost by compression, ``A(dense) - A(pruned)`` (negative if it gained)."""
    yt = _binary(y_true, "y_true")
    yd = _binary(y_pred_dense, "y_pred_dense")
    yp = _binary(y_pred_pruned, "y_pred_pruned")
    for arr, name in ((yd, "y_pred_dense"), (yp, "y_pred_pruned")):
        if len(arr) != len(yt):
            raise ValueError(f"{name} has length {len(arr)} but y_true has length {len(yt)}")
    return float(np.mean(yd == yt) - np.mean(yp == yt))


def degradation_by_group(y_true, y_pred_dense, y_pred_pruned, *, sensitive_features) -> dict:
    """Def. 2 within each group: ``R(f, f_c, D_g)``."""
    dense = accuracy_by_group(y_true, y_pred_dense, sensitive_features=sensitive_features)
    pruned = accuracy_by_group(y_true, y_pred_pruned, sensitive_features=sensitive_features)
    return {g: dense[g] - pruned[g] for g in dense}


def degradation_gap(y_true, y_pred_dense, y_pred_pruned, *, sensitive_features) -> float:
    """Def. 3: ``|R(D+) - R(D-)|``, how unevenly compression cost the groups accuracy."""
    return _spread(degradation_by_group(y_true, y_pred_dense, y_pred_pruned,
                                        sensitive_features=sensitive_features))


def demographic_parity_difference(y_true, y_pred, *, sensitive_features) -> float:
    """Largest difference in selection rate P(y_pred = 1 | group) between groups."""
    return _spread(selection_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features))


def equal_opportunity_difference(y_true, y_pred, *, sensitive_features) -> float:
    """Largest difference in true positive rate between groups (Hardt et al., 2016)."""
    return _spread(true_positive_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features))


def equalized_odds_difference(y_true, y_pred, *, sensitive_features) -> float:
    """``max(TPR difference, FPR difference)``, fairlearn's default aggregation."""
    tpr = true_positive_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features)
    fpr = false_positive_rate_by_group(y_true, y_pred, sensitive_features=sensitive_features)
    return max(_spread(tpr), _spread(fpr))


def fairness_report(y_true, y_pred, *, sensitive_features, y_pred_dense=None) -> dict[str, Any]:
    """Every metric of this module in one JSON-ready dict.

    Always carries ``majority_baseline`` (accuracy of predicting the majority class): a
    constant predictor is "fair" by every metric, so a gap means little without it. Rates that
    are undefined for some group (no positives or no negatives in it) are reported as ``None``.
    With ``y_pred_dense`` the degradation entries (Defs. 2 and 3) are added.
    """
    yt, yp, s, groups = _check(y_true, y_pred, sensitive_features)
    kw = {"sensitive_features": s}
    counts = {str(_key(g)): int((s == g).sum()) for g in groups}
    pos = float(yt.mean())
    report: dict[str, Any] = {
        "n": int(len(yt)),
        "accuracy": float(np.mean(yt == yp)),
        "majority_baseline": max(pos, 1.0 - pos),
        "positive_rate": pos,
        "accuracy_gap": accuracy_gap(yt, yp, **kw),
        "demographic_parity_difference": demographic_parity_difference(yt, yp, **kw),
        "group_counts": counts,
        "group_accuracy": {str(k): v for k, v in accuracy_by_group(yt, yp, **kw).items()},
        "group_selection_rate": {str(k): v for k, v in selection_rate_by_group(yt, yp, **kw).items()},
        "group_base_rate": {str(_key(g)): float(yt[s == g].mean()) for g in groups},
    }
    for name, fn in (("true_positive_rate", true_positive_rate_by_group),
                     ("false_positive_rate", false_positive_rate_by_group)):
        try:
            report[f"group_{name}"] = {str(k): v for k, v in fn(yt, yp, **kw).items()}
        except ValueError:
            report[f"group_{name}"] = None
    tpr, fpr = report["group_true_positive_rate"], report["group_false_positive_rate"]
    report["equal_opportunity_difference"] = _spread(tpr) if tpr else None
    report["equalized_odds_difference"] = max(_spread(tpr), _spread(fpr)) if tpr and fpr else None
    if y_pred_dense is not None:
        yd = _binary(y_pred_dense, "y_pred_dense")
        report["degradation"] = degradation(yt, yd, yp)
        report["group_degradation"] = {str(k): v for k, v in
                                       degradation_by_group(yt, yd, yp, **kw).items()}
        report["degradation_gap"] = degradation_gap(yt, yd, yp, **kw)
    return report


# --------------------------------------------------------------------------- surrogates
def _hinge(t: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1.0 + t, min=0.0)


def _logistic(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(t) / math.log(2.0)


def _sigmoid(t: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(t)


def _ramp(t: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1.0 + t, min=0.0, max=1.0)


_SURROGATE_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hinge": _hinge, "logistic": _logistic, "sigmoid": _sigmoid, "ramp": _ramp,
}


def surrogate(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A smooth stand-in ``u(t)`` for the indicator ``1(t > 0)``.

    ========  ======================  =======  ====================
    name      u(t)                    convex   u(t) >= 1(t > 0)
    ========  ======================  =======  ====================
    hinge     max(0, 1 + t)           yes      yes
    logistic  log2(1 + e^t)           yes      yes (u(0) = 1)
    ramp      min(1, max(0, 1 + t))   no       yes (tightest of the three)
    sigmoid   1 / (1 + e^-t)          no       no  (u(0) = 1/2; smooth, not a bound)
    ========  ======================  =======  ====================

    Convex surrogates with ``u'(0) > 0`` make the relaxed constraint convex in the logits and an
    upper bound of the true one (Wu, Zhang & Wu, WWW 2019); the others trade that guarantee
    for a closer fit.
    """
    try:
        return _SURROGATE_FNS[name]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {SURROGATES}") from None


def _tensor(a: Any, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if like is not None:
        t = t.to(like.device)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    return t


def _two_sided(t: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor, u, where: str) -> torch.Tensor:
    """[P(t>0 | plus) - P(t>0 | minus), its negative] exactly, or their surrogate upper bounds."""
    for cell, name in ((plus, "s = 1"), (minus, "s = 0")):
        if not bool(cell.any()):
            raise ValueError(f"constraint needs examples with {name}{where}; the batch has none")
    if u is None:
        pos = (t > 0).to(t.dtype)
        a, b = pos[plus].mean(), pos[minus].mean()
        return torch.stack([a - b, b - a])
    # 1(t > 0) <= u(t) and 1(t <= 0) <= u(-t):
    # P(t>0|+) - P(t>0|-) = P(t>0|+) + P(t<=0|-) - 1 <= E[u(t)|+] + E[u(-t)|-] - 1
    up, um = u(t), u(-t)
    return torch.stack([up[plus].mean() + um[minus].mean() - 1.0,
                        up[minus].mean() + um[plus].mean() - 1.0])


def constraint_values(kind: str, logits, y, s, *, surrogate: str | None = None) -> torch.Tensor:
    """One-sided fairness constraint values; the constraint is ``value <= tau`` for each entry.

    ``logits`` has one entry per example (prediction ``logit > 0``), ``y`` and ``s`` are binary.
    Groups: ``s+ = (s == 1)``, ``s- = (s == 0)``. With ``t = y_pm * logit``, ``y_pm = 2y - 1``,
    an example is classified correctly iff ``t > 0`` (a logit of exactly 0 predicts class 0,
    which is correct for y = 0: for y = 0 the code uses ``t = -logit`` and counts ``logit <= 0``
    as correct, matching the predictions). Then

        acc+ - acc- = P(t > 0 | s+) - P(t > 0 | s-) = P(t > 0 | s+) + P(t <= 0 | s-) - 1.

    The sign flip sits on the *second* group: its indicator is ``1(t <= 0)``, i.e. the surrogate
    is evaluated at ``-t``. Replacing ``1(t > 0)`` by ``u(t)`` and ``1(t <= 0)`` by ``u(-t)``
    gives, for an upper-bounding ``u``,

        entry 0 = E[u(t) | s+] + E[u(-t) | s-] - 1 >= acc+ - acc-,
        entry 1 = E[u(t) | s-] + E[u(-t) | s+] - 1 >= acc- - acc+,

    so entries ``<= tau`` imply ``|acc+ - acc-| <= tau``. (The paper's Eq. 8 writes both groups
    as ``sum_i u(y_i f(x_i)) / P(S = s_i) - 1`` and leaves this flip implicit.)

    kinds: ``"accuracy_gap"`` (2 entries, the above), ``"demographic_parity"`` (2 entries, the
    same with ``t = logit``: selection rates), ``"equalized_odds"`` (4 entries: demographic
    parity within ``y = 1``, i.e. TPR, then within ``y = 0``, i.e. FPR).
    ``surrogate=None`` returns the exact values (not differentiable); a name from
    :data:`SURROGATES` returns the differentiable relaxation.
    """
    if kind not in CONSTRAINT_KINDS:
        raise ValueError(f"unknown constraint kind {kind!r}; choose one of {CONSTRAINT_KINDS}")
    u = None if surrogate is None else globals()["surrogate"](surrogate)
    z = _tensor(logits, "logits")
    if not torch.is_floating_point(z):
        z = z.float()
    if torch.isnan(z).any():
        raise ValueError("logits contain NaN")
    yy = _tensor(y, "y", z)
    ss = _tensor(s, "s", z)
    if len(yy) != len(z) or len(ss) != len(z):
        raise ValueError(f"logits, y and s must have one entry per example, got lengths "
                         f"{len(z)}, {len(yy)}, {len(ss)}")
    for arr, name in ((yy, "y"), (ss, "s")):
        bad = (arr != 0) & (arr != 1)
        if bool(bad.any()):
            raise ValueError(f"{name} must be binary with values in {{0, 1}}")
    plus, minus = ss == 1, ss == 0
    if kind == "accuracy_gap":
        # t > 0 <=> correct. For y = 0, correct means logit <= 0; use -logit with a tie nudge so
        # that logit == 0 counts as correct for y = 0 exactly as the prediction rule says.
        if u is None:
            correct = torch.where(yy == 1, z > 0, z <= 0)
            t = correct.to(z.dtype) * 2.0 - 1.0
        else:
            t = (2.0 * yy.to(z.dtype) - 1.0) * z
        return _two_sided(t, plus, minus, u, "")
    if kind == "demographic_parity":
        return _two_sided(z, plus, minus, u, "")
    pos, neg = yy == 1, yy == 0
    return torch.cat([_two_sided(z, plus & pos, minus & pos, u, " and y = 1"),
                      _two_sided(z, plus & neg, minus & neg, u, " and y = 0")])
