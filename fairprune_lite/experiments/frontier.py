"""The accuracy-fairness frontier: tau swept for the fairness-aware methods (BiFP, P&F, F&P by
default) against post-processing (OMP + fairlearn's ThresholdOptimizer, which needs the sensitive
attribute at prediction time), with the reference method (OMP) and the dense model as points.

* :func:`frontier_config` builds the sweep (a configuration with ``figure: frontier``, the
  frontier kind: every method whose result depends on tau, its ``uses_tau`` trait, runs at each
  tau; the others, unless they name their own ``taus``, once per seed, at the first tau, which
  they do not use);
* :func:`frontier_points` reduces results to one point per (label, tau): mean test accuracy and
  mean test metric (the constrained one) with their 95% t-intervals over seeds, how many seeds
  ended near the majority class, and the dense model and the majority class;
* :func:`frontier_summary` gives one line per method: the best mean test accuracy among its
  points whose mean test metric is ``<= tau_star``; :func:`frontier_table` prints it all
  (markdown). The ``frontier`` figure kind (:mod:`~fairprune_lite.experiments.figures`) draws
  the points. ``fairprune frontier`` runs the sweep, draws the figure and prints the table.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import pruners
from ..fairness import METRIC_OF_KIND
from .config import CONSTRAINT_KINDS, check_number, suggest
from .stats import mean_ci

__all__ = ["DEFAULT_METHODS", "DEFAULT_TAUS", "frontier_config", "frontier_points", "frontier_summary",
           "frontier_table", "METRICS"]

#: the methods a frontier sweeps by default (tau swept where the method uses it)
DEFAULT_METHODS = ("bifp", "pf", "fp", "postproc")
#: the tolerances a frontier sweeps by default
DEFAULT_TAUS = (0.02, 0.05, 0.1, 0.15)
#: constraint kind -> the result metric a frontier plots against accuracy (the library's one map)
METRICS = METRIC_OF_KIND


def _reference_methods() -> list[str]:
    return [n for n, m in pruners.METHODS.items() if m.reference]


def frontier_config(*, dataset: str, sparsity: float, constraint: str = "equalized_odds",
                    taus: Sequence[float] = DEFAULT_TAUS, seeds: int | Sequence[int] = 5,
                    methods: Sequence[str] = DEFAULT_METHODS, reference: Sequence[str] | None = None,
                    method_options: Mapping[str, Mapping[str, Any]] | None = None, tau_star: float | None = None,
                    name: str | None = None, profile: str | None = None, structured: bool | None = None,
                    settings: Mapping[str, Any] | None = None, target: str | None = None,
                    sensitive: str | None = None) -> dict[str, Any]:
    """The sweep configuration (a mapping for :func:`~fairprune_lite.experiments.sweep`) of a
    frontier. ``methods`` are swept over ``taus``; ``reference`` (default: the registry's
    reference methods, OMP) are added as points; a method that does not use tau runs once per
    seed. ``method_options``: ``{method: {option: value}}`` (e.g. ``{"bifp": {"protocol":
    "paper"}}``). A bad argument is a ``ValueError`` naming it; the whole configuration is then
    checked as any sweep's."""
    if constraint not in CONSTRAINT_KINDS:
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINT_KINDS)}, got {constraint!r}")
    taus = list(taus)
    if not taus:
        raise ValueError("taus must be a non-empty list")
    taus = [check_number(t, "taus entry", 0.0, 1.0, high_open=False) for t in taus]
    if tau_star is not None:
        check_number(tau_star, "tau_star", 0.0, 1.0, high_open=False)
    reference = _reference_methods() if reference is None else list(reference)
    options = dict(method_options or {})
    names = list(dict.fromkeys([*methods, *reference]))
    for m in [*names, *options]:
        if m not in pruners.METHODS:
            raise ValueError(f"methods: unknown method {m!r}{suggest(m, pruners.METHODS)}; "
                             f"choose one of {', '.join(pruners.METHODS)}")
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"method_options: {stray} are not methods of this frontier ({', '.join(names)})")
    # the frontier kind runs a method that tau does not move once per seed (SweepConfig)
    entries = [{"method": m, **dict(options.get(m, {}))} for m in names]
    ds: dict[str, Any] = {"dataset": str(dataset)}
    if target is not None:
        ds["target"] = target
    if sensitive is not None:
        ds["sensitive"] = sensitive
    cfg: dict[str, Any] = {
        "name": name or f"frontier_{dataset}_{constraint}_s{sparsity:g}", "figure": "frontier",
        "description": f"accuracy-fairness frontier: {dataset}, {100 * sparsity:g}% sparsity, {constraint}",
        "datasets": [ds], "methods": entries, "sparsities": [sparsity], "constraint": constraint, "taus": taus,
        "seeds": seeds if isinstance(seeds, int) else list(seeds),
    }
    for key, value in (("tau_star", tau_star), ("profile", profile), ("structured", structured),
                       ("settings", dict(settings) if settings else None)):
        if value is not None:
            cfg[key] = value
    return cfg


def constrained_metric(results: Sequence[Mapping[str, Any]]) -> str:
    """The result metric the runs were constrained on (``accuracy_gap`` for an accuracy-gap
    constraint, ``equalized_odds_difference`` for equalized odds, ...); ``ValueError`` when the
    runs mix constraints (one figure or frontier plots one metric)."""
    kinds = {r.get("constraint") or "accuracy_gap" for r in results}
    if len(kinds) != 1:
        raise ValueError(f"results mix constraints {sorted(kinds)}; draw or summarise each constraint separately")
    kind = kinds.pop()
    if kind not in METRICS:
        raise ValueError(f"unknown constraint {kind!r}; known: {', '.join(METRICS)}")
    return METRICS[kind]


def _stat(values: Iterable[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (NaN for one value: no interval)."""
    vals = list(values)
    m, lo, hi = mean_ci(vals)
    return m, ((hi - lo) / 2 if len(vals) > 1 else math.nan)


def frontier_points(results: Sequence[Mapping[str, Any]], *, metric: str | None = None) -> dict[str, Any]:
    """One point per (label, tau) of ``results`` (result dicts: ``label``, ``method``, ``tau``,
    ``seed``, ``test``, ``dense``): ``{"metric", "points": [...], "dense", "majority"}``. A point
    holds ``label``, ``method``, ``tau`` (None when the method does not use it), ``seeds``,
    ``accuracy`` / ``accuracy_ci`` and ``value`` / ``value_ci`` (mean test accuracy and test
    metric, 95% t half-widths over seeds), ``near_majority`` (seeds within
    :data:`~fairprune_lite.pruners.NEAR_MAJORITY` of the majority class on test),
    ``uses_tau`` and ``needs_sensitive_at_prediction`` (the method's traits). ``dense``: the dense
    model's mean test accuracy and metric over the seeds; ``majority``: the test majority
    class's accuracy (mean over seeds)."""
    if not results:
        raise ValueError("no results to summarise")
    metric = metric or constrained_metric(results)
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for r in results:
        info = pruners.METHODS.get(r["method"])
        tau = r["tau"] if info is None or info.uses_tau else None
        groups.setdefault((r["label"], tau), []).append(r)
    points = []
    for (label, tau), rs in groups.items():
        info = pruners.METHODS.get(rs[0]["method"])
        acc, acc_ci = _stat(r["test"]["accuracy"] for r in rs)
        val, val_ci = _stat(r["test"][metric] for r in rs)
        points.append({"label": label, "method": rs[0]["method"], "tau": tau, "seeds": len(rs),
                       "accuracy": acc, "accuracy_ci": acc_ci, "value": val, "value_ci": val_ci,
                       "near_majority": sum(bool(pruners.near_majority(r["test"])) for r in rs),
                       "uses_tau": info is None or info.uses_tau,
                       "needs_sensitive_at_prediction": bool(info and info.needs_sensitive_at_prediction)})
    order = {lab: i for i, lab in enumerate(dict.fromkeys(r["label"] for r in results))}
    points.sort(key=lambda p: (order[p["label"]], -1.0 if p["tau"] is None else p["tau"]))
    by_seed = {r["seed"]: r for r in results}  # the dense model depends on the seed only
    dense_acc, _ = _stat(r["dense"]["test"]["accuracy"] for r in by_seed.values())
    dense_val, _ = _stat(r["dense"]["test"][metric] for r in by_seed.values())
    majority, _ = _stat(r["test"]["majority_baseline"] for r in by_seed.values())
    return {"metric": metric, "points": points, "dense": {"accuracy": dense_acc, "value": dense_val},
            "majority": majority}


def frontier_summary(front: Mapping[str, Any], tau_star: float) -> list[dict[str, Any]]:
    """Per label (in the order the results name them): ``{"label", "method", "best"}``,
    ``best`` the point with the highest mean test accuracy among those whose mean test metric
    is ``<= tau_star`` (None when no point gets there)."""
    check_number(tau_star, "tau_star", 0.0, 1.0, high_open=False)
    out: dict[str, dict[str, Any]] = {}
    for p in front["points"]:
        row = out.setdefault(p["label"], {"label": p["label"], "method": p["method"], "best": None,
                                          "needs_sensitive_at_prediction": p["needs_sensitive_at_prediction"]})
        if p["value"] <= tau_star and (row["best"] is None or p["accuracy"] > row["best"]["accuracy"]):
            row["best"] = p
    return list(out.values())


def _pm(mean: float, half: float) -> str:
    return f"{mean:.4f}" + ("" if math.isnan(half) else f" ± {half:.4f}")


def frontier_table(front: Mapping[str, Any], tau_star: float | None = None) -> str:
    """The frontier as markdown: every point (with its 95% CI and near-majority count), the dense
    model and the majority class, and with ``tau_star`` the summary of :func:`frontier_summary`."""
    metric = front["metric"]
    lines = [f"| label | method | tau | seeds | test accuracy (95% CI) | test {metric} (95% CI) | near majority |",
             "|---|---|---|---|---|---|---|"]
    for p in front["points"]:
        tau = "-" if p["tau"] is None else f"{p['tau']:g}"
        lines.append(f"| {p['label']} | {p['method']} | {tau} | {p['seeds']} | {_pm(p['accuracy'], p['accuracy_ci'])} "
                     f"| {_pm(p['value'], p['value_ci'])} | {p['near_majority']}/{p['seeds']} |")
    d = front["dense"]
    lines.append(f"\ndense model: test accuracy {d['accuracy']:.4f}, {metric} {d['value']:.4f}; "
                 f"majority class {front['majority']:.4f}")
    if tau_star is not None:
        lines.append(f"\nBest mean test accuracy among settings with mean test {metric} <= {tau_star:g}:")
        for row in frontier_summary(front, tau_star):
            b = row["best"]
            note = " (needs the sensitive attribute at prediction time)" if row["needs_sensitive_at_prediction"] else ""
            where = "none" if b is None else (f"{b['accuracy']:.4f} ({metric} {b['value']:.4f}"
                                               + ("" if b["tau"] is None else f", tau {b['tau']:g}") + ")")
            lines.append(f"- {row['label']}: {where}{note}")
    return "\n".join(lines)
