"""Turn stored results into the tables, paired tests and glued numbers the book's chapters 9 and 10 show.

Every function here reads results in the one schema of :mod:`.results` (dicts with ``label``,
``seed``, ``sparsity_target``, the splits' metric dicts and a ``dense`` block) and returns plain
values, strings or :class:`pandas.DataFrame` objects; nothing draws or prints, so a chapter keeps
only the lines that teach and the tests can check each helper on small made-up results.

Conventions: numbers for the reader are in percentage points (``scale=100``); an interval is the
95% Student-t interval of :func:`.stats.mean_ci` written ``mean ± half-width``; a comparison of
two methods is paired by seed (:func:`.stats.compare`), and it is called *resolved* only when the
95% interval of the paired difference excludes zero.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .config import expand_config, load_config
from .stats import compare, mean_ci, paired_difference
from .sweep import sweep_results

NBSP = "\u00a0"
SHORT_NAME = {"accuracy_gap": "accuracy gap", "equalized_odds_difference": "EO difference"}
SHORT_METRIC = {"accuracy_gap": "gap", "equalized_odds_difference": "EO", "accuracy": "acc."}

__all__ = ["stored", "commit_label", "seeds", "ci", "dense_values", "table", "paired", "vs_dense", "verdict",
           "diff", "diff_row", "tests_frame", "styled", "live_caption", "time_to_fair", "ratio_ci",
           "SHORT_NAME", "SHORT_METRIC"]


def stored(name: str, *, configs: str | Path, results: str | Path) -> tuple[dict, list[dict], list[str]]:
    """The sweep ``name``: its configuration (``configs/<name>.yaml``), its stored results
    (validated, from ``results/<name>/``) and the run ids of its grid not stored yet."""
    path = Path(configs) / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"name: no sweep configuration {path}")
    cfg = load_config(path)
    if not (Path(results) / name).is_dir():
        return cfg, [], [s.run_id() for s in expand_config(cfg)]
    res, missing = sweep_results(cfg, out=Path(results))
    return cfg, res, missing


def commit_label(result: Mapping[str, Any]) -> str:
    """The first 7 characters of the commit a result was made from, with ``+dirty`` when the
    tracked tree had uncommitted changes (``no-git`` outside a repository)."""
    prov = result["provenance"]
    return (prov.get("git_commit") or "no-git")[:7] + ("+dirty" if prov.get("git_dirty") else "")


def seeds(results: Iterable[Mapping[str, Any]]) -> list[int]:
    """The distinct seeds of ``results``, sorted."""
    return sorted({r["seed"] for r in results})


def ci(values: Iterable[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """``"mean ± half-width"`` of the 95% t-interval of ``values`` (``None`` entries skipped),
    multiplied by ``scale`` (percentage points by default), with no-break spaces around ``±``;
    ``"-"`` when there is no value."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return "-"
    m, _lo, hi = mean_ci(v)
    return f"{m * scale:.{digits}f}{NBSP}±{NBSP}{(hi - m) * scale:.{digits}f}"


def dense_values(results: Iterable[Mapping[str, Any]], metric: str, split: str = "test") -> list[float]:
    """The dense model's ``split.metric``, **one value per seed** (sorted by seed).

    Every run of a sweep stores the dense model it was pruned from, so a sweep with several
    methods (or sparsities) repeats the same dense value once per run. Averaging over the runs
    would count each seed as many times as it has runs and shrink the interval; this returns one
    value per seed and raises ``ValueError`` if two runs of the same seed disagree (then they did
    not start from the same dense model)."""
    per_seed: dict[int, float] = {}
    for r in results:
        v = float(r["dense"][split][metric])
        if r["seed"] in per_seed and per_seed[r["seed"]] != v:
            raise ValueError(f"results: seed {r['seed']} has two dense {split}.{metric} values "
                             f"({per_seed[r['seed']]} and {v}); they were not pruned from one dense model")
        per_seed[r["seed"]] = v
    return [per_seed[s] for s in sorted(per_seed)]


def table(results: Sequence[Mapping[str, Any]], metric: str, *, split: str = "test",
          column: str = "sparsity_target", extra_rows: bool = True) -> pd.DataFrame:
    """Methods (rows, in the order they first appear) x values of ``column``: ``mean ± 95% CI
    half-width`` over seeds of ``split.metric`` in points. With ``extra_rows`` a row ``dense``
    (one value per seed) and, for accuracy, the majority-class baseline are added."""
    if not results:
        raise ValueError("results: empty, nothing to tabulate")
    labels = list(dict.fromkeys(r["label"] for r in results))
    cols = sorted({r[column] for r in results})

    def pick(label: str, c: Any) -> list[Mapping[str, Any]]:
        return [r for r in results if r["label"] == label and r[column] == c]

    df = pd.DataFrame({f"{c:g}": [ci([r[split][metric] for r in pick(lab, c)]) for lab in labels] for c in cols},
                      index=labels)
    if extra_rows:
        df.loc["dense"] = [ci(dense_values([r for r in results if r[column] == c], metric, split)) for c in cols]
        if metric == "accuracy":
            df.loc["majority class"] = f"{100 * results[0][split]['majority_baseline']:.1f}"
    df.columns.name = column.replace("_target", "")
    df.attrs["caption"] = (f"{split} {SHORT_NAME.get(metric, metric)} (%): mean ± 95% CI half-width, "
                           f"n = {len(seeds(results))} seeds")
    return df


def paired(results: Sequence[Mapping[str, Any]], a: str, b: str, metric: str, split: str = "test",
           **where: Any) -> dict[str, Any]:
    """``a - b`` on ``split.metric``, paired by seed, in the one condition selected by ``where``
    (e.g. ``sparsity_target=0.9``); ``ValueError`` unless exactly one condition matches."""
    rs = [r for r in results if all(r[k] == v for k, v in where.items())]
    entries = [e for e in compare(rs, a, b, f"{split}.{metric}") if "error" not in e]
    if len(entries) != 1:
        raise ValueError(f"where: {a} vs {b} on {metric} {where}: {len(entries)} paired conditions, expected 1")
    return entries[0]


def vs_dense(results: Sequence[Mapping[str, Any]], label: str, metric: str, split: str = "test",
             **where: Any) -> dict[str, Any]:
    """The pruned model ``label`` against the dense model it was pruned from, paired by seed."""
    rs = sorted((r for r in results if r["label"] == label and all(r[k] == v for k, v in where.items())),
                key=lambda r: r["seed"])
    if not rs:
        raise ValueError(f"label: no results of {label!r} with {where}")
    d = paired_difference([r[split][metric] for r in rs], [r["dense"][split][metric] for r in rs])
    return d | {"a": label, "b": "dense", "metric": f"{split}.{metric}", "seeds": [r["seed"] for r in rs]}


def verdict(d: Mapping[str, Any], lower: str = "lower", higher: str = "higher",
            same: str = "not distinguishable") -> str:
    """Read the 95% interval of a paired difference ``a - b``: ``lower`` if it lies below 0,
    ``higher`` if above, ``same`` if it contains 0."""
    lo, hi = d["ci"]
    return lower if hi < 0 else higher if lo > 0 else same


def diff(d: Mapping[str, Any], scale: float = 100.0) -> str:
    """A paired difference in words: mean, 95% CI, the paired t, sign and permutation p-values, n."""
    lo, hi = d["ci"]
    return (f"{scale * d['mean_diff']:+.1f} points (95% CI {scale * lo:+.1f} to {scale * hi:+.1f}; "
            f"paired t p = {d['t_test_p']:.2g}, sign p = {d['sign_test_p']:.2g}, "
            f"permutation p = {d['permutation_p']:.2g}; n = {d['n']})")


def diff_row(d: Mapping[str, Any], scale: float = 100.0) -> dict[str, str]:
    """A paired difference as three table cells: ``a − b [95% CI]``, the p-values, the verdict."""
    lo, hi = d["ci"]
    return {"a − b [95% CI]": f"{scale * d['mean_diff']:+.1f} [{scale * lo:+.1f},{NBSP}{scale * hi:+.1f}]",
            "p: t / sign / perm.": f"{d['t_test_p']:.2g} / {d['sign_test_p']:.2g} / {d['permutation_p']:.2g}",
            "95% CI": verdict(d, "a < b", "a > b", "contains 0")}


def tests_frame(rows: Sequence[Mapping[str, Any]], *keys: str) -> pd.DataFrame:
    """One row per paired comparison ``a − b`` (rows made of ``{"a", "b", *keys} | diff_row(d)``),
    indexed by the comparison and ``keys``."""
    if not rows:
        raise ValueError("rows: no paired comparison to show")
    df = pd.DataFrame(list(rows))
    df.insert(0, "a − b", df.pop("a") + " − " + df.pop("b"))
    if "metric" in df:
        df["metric"] = df["metric"].fillna("accuracy_gap").map(lambda m: SHORT_METRIC.get(m, m))
    df = df.set_index(["a − b", *keys])
    df.columns.name = "paired over seeds"
    return df


def styled(df: pd.DataFrame, uid: str, caption: str | None = None) -> Any:
    """``df`` styled for the book: compact padding, a fixed id (deterministic HTML), a caption."""
    style = (df.style.set_uuid(uid).format(precision=3)
             .set_table_styles([{"selector": "td, th", "props": "padding: 2px 5px; font-size: 0.92em;"}]))
    cap = caption or df.attrs.get("caption")
    return style.set_caption(cap) if cap else style


def live_caption(results: Sequence[Mapping[str, Any]]) -> str:
    """The caption of runs computed while a chapter executes: what they are (a live illustration,
    profile, seeds, library version) and what they are not. They are not stored results and carry
    no claim about a clean commit: the git state of the tree that builds the book is not the
    stored results' provenance, so the caption leaves it out."""
    if not results:
        raise ValueError("results: no live run to caption")
    profiles = ", ".join(sorted({r["profile"] for r in results}))
    version = results[0]["provenance"].get("version")
    return (f"live illustration computed while this page was built (profile {profiles}, fairprune-lite "
            f"{version}, {len(results)} runs, seeds {seeds(results)}); not a stored result")


# ---------------------------------------------------------------------------------------------
# time to a fair sparse model (benchmarks/time_to_fair.py, ch. 9's Fig. 6)
# ---------------------------------------------------------------------------------------------
def ratio_ci(ratios: Iterable[float]) -> dict[str, Any]:
    """The geometric mean of positive ``ratios`` with the 95% t-interval of the mean of their
    logarithms, mapped back (``{"gmean", "lo", "hi", "n"}``; ``None`` values when there is none).
    A ratio of costs is summarised on the log scale: 2x and 0.5x average to 1x."""
    r = [float(x) for x in ratios]
    if any(not x > 0 or not math.isfinite(x) for x in r):
        raise ValueError(f"ratios: every ratio must be a positive finite number, got {r}")
    if not r:
        return {"gmean": None, "lo": None, "hi": None, "n": 0}
    m, lo, hi = mean_ci([math.log(x) for x in r])
    return {"gmean": math.exp(m), "lo": math.exp(lo), "hi": math.exp(hi), "n": len(r)}


def _fair(r: Mapping[str, Any], split: str, floor: float) -> bool:
    f = r[split]["feasibility"]
    return (f["value"] is not None and f["value"] <= f["tau"]
            and r[split]["accuracy"] >= r[split]["majority_baseline"] + floor)


def _cost(r: Mapping[str, Any]) -> dict[str, Any]:
    """One run's cost in batch-sized passes and seconds, with the check's evaluation."""
    c = r["cost"]
    return {"budget": r["budget"], "iterations": int(c["iterations"]),
            "passes": (c["examples"] / r["batch_size"] + c["backward_passes"] + r["check_passes"]
                       + r.get("uncounted_passes", 0)),
            "library_passes": int(c["forward_passes"] + c["backward_passes"]),
            "seconds": float(c["wall_time_s"]) + float(r["check_seconds"]),
            "accuracy": r["val"]["accuracy"], "value": r["val"]["feasibility"]["value"],
            "test_accuracy": r["test"]["accuracy"], "test_value": r["test"]["feasibility"]["value"]}


def time_to_fair(rows: Sequence[Mapping[str, Any]], *, split: str = "val", reference: str = "bifp_certified",
                 slack: float = 0.01, floor: float = 0.02) -> dict[str, Any]:
    """What each method costs until it returns a fair sparse model, per benchmark and seed, and
    its ratio to ``reference`` (the rows of ``benchmarks/time_to_fair.py``: one per run, with
    ``bench``, ``variant``, ``seed``, ``budget``, ``cost``, ``batch_size``, ``check_passes``,
    ``check_seconds`` and the ``val`` / ``test`` metric blocks with their ``feasibility``).

    The rule: a run is *fair* when its constrained metric on ``split`` is within tau and its
    ``split`` accuracy is at least ``floor`` above the majority class (a constant predictor is
    fair by every metric). Per benchmark and seed the target accuracy is the best accuracy of any
    fair run of any method and budget, minus ``slack``; a method *reaches* it at the smallest
    budget whose run is fair and at least that accurate, and costs that run: ``passes`` in
    batches of the run's ``batch_size`` (examples through forward passes / batch size, plus
    backward passes, plus the check's evaluation passes: the library counts a pass over 1,024
    evaluation rows as one, so its raw count, ``library_passes``, understates evaluation-heavy
    methods), ``seconds`` (the method's training wall time plus the check's), ``iterations``. A method that never
    reaches it is "not reached" at the cost of its largest budget. Ratios (method / reference,
    seeds where both reached) are summarised by :func:`ratio_ci`.

    Returns ``{bench: {"tau", "metric", "seeds", "target": {seed: acc | None},
    "methods": {variant: {"per_seed": {seed: {"reached", **cost}}, "reached", "n",
    "ratio": {"passes" | "seconds" | "iterations": ratio_ci(...)}}}}}``.
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    runs = [r for r in rows if r.get("kind", "run") == "run"]
    if not runs:
        raise ValueError("rows: no run to read")
    out: dict[str, Any] = {}
    for bench in dict.fromkeys(r["bench"] for r in runs):
        rb = [r for r in runs if r["bench"] == bench]
        seeds_b = sorted({r["seed"] for r in rb})
        variants = list(dict.fromkeys(r["variant"] for r in rb))
        if reference not in variants:
            raise ValueError(f"reference: {reference!r} has no run on {bench!r}; variants {variants}")
        target: dict[int, float | None] = {}
        for s in seeds_b:
            ok = [r[split]["accuracy"] for r in rb if r["seed"] == s and _fair(r, split, floor)]
            target[s] = max(ok) - slack if ok else None
        methods: dict[str, Any] = {}
        for v in variants:
            per: dict[int, Any] = {}
            for s in seeds_b:
                rs = sorted((r for r in rb if r["variant"] == v and r["seed"] == s), key=lambda r: r["budget"])
                if not rs:
                    continue
                t = target[s]
                hit = next((r for r in rs if t is not None and _fair(r, split, floor)
                            and r[split]["accuracy"] >= t - 1e-12), None)
                per[s] = {"reached": hit is not None, **_cost(hit if hit is not None else rs[-1]),
                          "budgets": [r["budget"] for r in rs]}
            methods[v] = {"per_seed": per, "reached": sum(p["reached"] for p in per.values()), "n": len(per)}
        ref = methods[reference]["per_seed"]
        for m in methods.values():
            both = [s for s, p in m["per_seed"].items() if p["reached"] and s in ref and ref[s]["reached"]]
            m["ratio"] = {k: ratio_ci([m["per_seed"][s][k] / ref[s][k] for s in both])
                          for k in ("passes", "seconds", "iterations")}
            m["ratio_seeds"] = both
        first = rb[0][split]["feasibility"]
        out[bench] = {"tau": first["tau"], "metric": first["metric"], "seeds": seeds_b, "target": target,
                      "methods": methods}
    return out
