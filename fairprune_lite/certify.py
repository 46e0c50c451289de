r"""The safety test: a one-sided upper confidence bound on a fairness metric, from held-out data.

A constraint enforced on the data an optimiser saw says little about unseen data (the measured
gap of a small group is noisy, and the optimiser fits that noise). A *safety test* (Thomas et
al., "Preventing undesirable behavior of intelligent machines", Science 2019) evaluates the
returned model once on a split that nothing else touched and accepts it only if a
``(1 - delta)`` upper confidence bound on the metric is ``<= tau``.

The bound. Every metric the project constrains is a maximum of differences of group rates:
the accuracy gap and demographic parity compare one rate between the two groups
(``|p+ - p-|``), equalized odds compares two (TPR and FPR: ``max(|TPR+ - TPR-|, |FPR+ - FPR-|)``).
Each rate is a binomial proportion ``h / n`` of one cell. With ``r`` rates in all (2, or 4 for
equalized odds), give each a two-sided Clopper-Pearson interval ``[L, U]`` at level
``1 - delta / r``. By the union bound all ``r`` intervals hold at once with probability at least
``1 - delta``, and on that event every difference satisfies ``|p+ - p-| <= max(U+ - L-, U- - L+)``,
so the maximum over the pairs is bounded by the same maximum of these bounds. The bound is
conservative (Clopper-Pearson and the union bound both are) and valid for every sample size:
no normal approximation is used. Its coverage is measured in ``benchmarks/solver_certify.py``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from scipy import stats
from torch import Tensor

from .constraints import KINDS
from .fairness import cell_stats, rate_pairs, values_from_stats

__all__ = ["rate_interval", "upper_bound", "certify", "rows_needed", "check_delta"]


def check_delta(delta: Any) -> float:
    """``delta`` as a float in ``(0, 1)``, or a ``ValueError`` naming it."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) \
            or not 0 < delta < 1:
        raise ValueError(f"delta must be a number in (0, 1) (the safety test's error probability), got {delta!r}")
    return float(delta)


def rate_interval(hits: float, n: float, alpha: float) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval ``(L, U)`` of a binomial proportion at level
    ``1 - alpha`` (``(0, 1)`` when ``n == 0``)."""
    if n <= 0:
        return 0.0, 1.0
    h = float(hits)
    lo = 0.0 if h <= 0 else float(stats.beta.ppf(alpha / 2, h, n - h + 1))
    hi = 1.0 if h >= n else float(stats.beta.ppf(1 - alpha / 2, h + 1, n - h))
    return lo, hi


def _bound_from_stats(kind: str, st: Sequence[float], delta: float) -> tuple[float, float | None]:
    """``(upper bound, observed value)`` from cell statistics
    (:func:`fairprune_lite.fairness.cell_stats`; the observed value is the largest exact one-sided
    value, :func:`fairprune_lite.fairness.values_from_stats`)."""
    pairs = rate_pairs(kind, st)
    alpha = delta / (2 * len(pairs))  # one two-sided interval per rate, union bound over all rates
    bound = 0.0
    for hp, np_, hm, nm in pairs:
        lp, up = rate_interval(hp, np_, alpha)
        lm, um = rate_interval(hm, nm, alpha)
        bound = max(bound, up - lm, um - lp)
    values = values_from_stats(kind, st)
    return min(bound, 1.0), (None if values is None else max(0.0, float(values.max())))


def upper_bound(kind: str, logits: Tensor, y: Tensor, s: Tensor, *, delta: float = 0.05) -> float:
    """A ``(1 - delta)`` upper confidence bound on the metric ``kind`` of the 0/1 predictions
    ``logits > 0`` (module docstring). A compared cell without examples gives the bound 1."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    delta = check_delta(delta)
    st = cell_stats(kind, torch.as_tensor(logits).detach().flatten(), torch.as_tensor(y), torch.as_tensor(s))
    return _bound_from_stats(kind, st.tolist(), delta)[0]


def certify(kind: str, tau: float, logits: Tensor, y: Tensor, s: Tensor, *, delta: float = 0.05) -> dict[str, Any]:
    """The safety test on held-out ``(logits, y, s)``: ``{"certified", "bound", "value", "tau",
    "delta", "n", "cells"}``; ``certified`` is ``bound <= tau``. ``cells`` are the example counts
    ``[n(s=0,y=0), n(s=0,y=1), n(s=1,y=0), n(s=1,y=1)]`` the bound was computed from."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    delta = check_delta(delta)
    st = cell_stats(kind, torch.as_tensor(logits).detach().flatten(), torch.as_tensor(y), torch.as_tensor(s)).tolist()
    bound, value = _bound_from_stats(kind, st, delta)
    return {"certified": bool(bound <= tau), "bound": bound, "value": value, "tau": float(tau), "delta": delta,
            "n": int(sum(st[:4])), "cells": [int(v) for v in st[:4]]}


def rows_needed(kind: str, tau: float, y: Tensor, s: Tensor, *, delta: float = 0.05,
                rate: float = 0.5, limit: int = 10**8) -> int:
    """The smallest number of rows, drawn with the cell shares of ``(y, s)``, on which a model
    whose compared rates are all equal to ``rate`` (a perfectly fair model; 0.5 is the worst
    case of the binomial variance) would get a bound ``<= tau``. ``limit`` when no size up to it
    does (e.g. a cell with no example). Used to refuse a safety split that cannot certify."""
    y = torch.as_tensor(y).flatten().long()
    s = torch.as_tensor(s).flatten().long()
    counts = torch.bincount((2 * s + y).cpu(), minlength=4).double()
    total = float(counts.sum())
    if total == 0:
        return limit
    shares = (counts / total).tolist()

    def ok(n: int) -> bool:
        cells = [sh * n for sh in shares]
        st = cells + [c * rate for c in cells]
        return _bound_from_stats(kind, st, delta)[0] <= tau

    if not ok(limit):
        return limit
    lo, hi = 1, 1
    while not ok(hi):
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi
