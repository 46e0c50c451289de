"""How sure: the mean over seeds with a 95% t-interval, and paired comparisons of two methods over
the same seeds (paired t-test, exact sign test, exact permutation test)."""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _st

__all__ = ["mean_ci", "paired_difference", "compare", "metric_value"]


def mean_ci(values: Iterable[float | None] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its two-sided ``level`` Student-t interval
    (``low == high == mean`` for a single value, all NaN for none)."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    m = float(a.mean())
    if a.size == 1:
        return m, m, m
    half = float(_st.t.ppf(0.5 + level / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return m, m - half, m + half


def _permutation_p(d: np.ndarray) -> float:
    """Exact two-sided p-value of the sign-flip permutation test of mean(d) = 0 (all 2^n flips
    up to n = 20, else 100,000 seeded random flips)."""
    n = d.size
    obs = abs(d.mean())
    if n <= 20:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(100_000, n))
    means = np.abs((signs * d).mean(axis=1))
    return float(np.mean(means >= obs - 1e-15))


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """The paired difference ``a - b`` (one pair per seed): mean, ``level`` t-interval, paired
    t-test p-value, exact sign-test p-value (ties dropped) and exact permutation-test p-value."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 1:
        raise ValueError(f"paired values must be two lists of the same length, got {xa.shape} and {xb.shape}")
    if xa.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds, got {xa.size}")
    d = xa - xb
    mean, lo, hi = mean_ci(d, level)
    if np.all(d == d[0]):
        t_p = 1.0 if d[0] == 0 else 0.0
    else:
        t_p = float(_st.ttest_rel(xa, xb).pvalue)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    sign_p = float(_st.binomtest(pos, pos + neg, 0.5).pvalue) if pos + neg else 1.0
    return {"n": int(d.size), "mean_diff": mean, "ci": [lo, hi], "level": level, "t_test_p": t_p,
            "sign_test_p": sign_p, "permutation_p": _permutation_p(d), "wins_a_greater": pos,
            "wins_b_greater": neg, "differences": d.tolist()}


def metric_value(result: Mapping[str, Any], metric: str) -> float:
    """A result's number at a dotted path, e.g. ``test.equalized_odds_difference``; ``ValueError``
    naming the path when it is missing or not a number."""
    v: Any = result
    for part in metric.split("."):
        if not isinstance(v, Mapping) or part not in v:
            raise ValueError(f"metric {metric!r}: {result.get('run_id', 'result')} has no {part!r}")
        v = v[part]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"metric {metric!r} is not a number ({v!r})")
    return float(v)


def _matches(r: Mapping[str, Any], name: str) -> bool:
    return r.get("label") == name or r.get("method") == name


def compare(results: Sequence[Mapping[str, Any]], a: str, b: str, metric: str,
            level: float = 0.95) -> list[dict[str, Any]]:
    """Paired comparison of methods ``a`` and ``b`` (a label, else a method name) on ``metric``:
    one entry per condition (dataset, target, model, sparsity, tau, budget) where both have runs
    of the same seeds, with :func:`paired_difference` of ``a - b`` over those seeds."""
    ra = [r for r in results if _matches(r, a)]
    rb = [r for r in results if _matches(r, b)]
    for name, rs in ((a, ra), (b, rb)):
        if not rs:
            known = sorted({str(r.get("label")) for r in results} | {str(r.get("method")) for r in results})
            raise ValueError(f"no results of {name!r}; labels and methods present: {', '.join(known)}")

    def cond(r: Mapping[str, Any]) -> tuple:
        return (r["dataset"], r.get("target"), r["model"], r["sparsity_target"], r["tau"], r.get("budget"))

    by_b = {(cond(r), r["seed"]): r for r in rb}
    groups: dict[tuple, list[tuple[float, float]]] = {}
    seeds: dict[tuple, list[int]] = {}
    for r in sorted(ra, key=lambda r: r["seed"]):
        other = by_b.get((cond(r), r["seed"]))
        if other is not None:
            groups.setdefault(cond(r), []).append((metric_value(r, metric), metric_value(other, metric)))
            seeds.setdefault(cond(r), []).append(r["seed"])
    if not groups:
        raise ValueError(f"no condition where {a!r} and {b!r} have runs of the same seed")
    out = []
    for c, pairs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        entry = {"dataset": c[0], "target": c[1], "model": c[2], "sparsity": c[3], "tau": c[4], "budget": c[5],
                 "a": a, "b": b, "metric": metric, "seeds": seeds[c]}
        if len(pairs) < 2:
            entry.update(n=len(pairs), error="fewer than 2 paired seeds")
        else:
            entry.update(paired_difference([p[0] for p in pairs], [p[1] for p in pairs], level))
        out.append(entry)
    return out
