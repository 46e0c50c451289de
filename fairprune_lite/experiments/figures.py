"""Figures drawn from stored results, readable at a book's column width (4.8 in, text >= 9 pt,
i.e. >= 11 px at 100 dpi): the mean over seeds with its spread (``"ci"``: 95% t-interval, the
default; ``"std"``; ``"minmax"``) clipped to the metric's range, saved as PNG and SVG, with a
caption line naming the profile and the provenance (commit, date, device; results written from a
dirty tree say so).

Kinds live in a small registry (:data:`FIGURES`, :func:`register_figure`): ``sparsity``
(Figs. 1, 3, 4: small multiples, one row per family of methods with the reference method, the
dense model, the majority-class baseline and the tolerance in every panel; the metric plotted is
the one the runs were constrained on), ``tradeoff`` (Fig. 5), ``cost`` (Fig. 6), ``ablation``
(Fig. 7: bars from 0 on an uncut axis with the seeds as dots), ``interpolation`` (Fig. 8: the
loss and accuracy gap along ``(1 - t) * theta_a + t * theta_b`` between the saved final weights
of two solutions; the curve is cached next to the results).
"""
from __future__ import annotations

import functools
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np

from .. import pruners
from ..atomic import atomic_write
from ..fairness import METRIC_OF_KIND
from .analysis import interpolation_curve
from .config import FIGURE_KINDS, SPREADS, check_config, load_config, slug, sweep_dir
from .frontier import constrained_metric
from .results import check_writable, load_results
from .stats import mean_ci
from .sweep import sweep_results

__all__ = ["figure", "figure_from_config", "caption", "iterations_to_fair", "interpolation_curve", "FIGURES",
           "register_figure", "FIGURE_KINDS", "constrained_metric", "method_groups", "COLUMN_WIDTH_IN"]

COLUMN_WIDTH_IN = 4.8
"""Figure width in inches: 480 px at the 100 dpi of the notebook's inline figures, narrower than the
book's text column at 1280 px (about 660 px), and scaled to no less than about 0.76 on a 390 px
phone (367 px, ``book.PHONE_COLUMN_PX``), where the smallest text (10 pt, 13.9 px) stays above 10 px."""

STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 12, "axes.grid": True,
         "grid.alpha": 0.3, "figure.dpi": 100}
"""Text sizes every kind is drawn with (nothing smaller than 10 pt is written: 10.6 px on a phone)."""

METRIC_NAMES = {"accuracy": "accuracy", "accuracy_gap": "accuracy gap",
                "equalized_odds_difference": "equalized-odds difference",
                "demographic_parity_difference": "demographic-parity difference",
                "equal_opportunity_difference": "equal-opportunity difference"}
CONSTRAINT_METRICS = METRIC_OF_KIND
FAMILIES = tuple((family, tuple(n for n, m in pruners.METHODS.items() if m.family == family))
                 for family in pruners.FAMILIES)
"""Rows of the ``sparsity`` kind: methods are grouped by their ``family`` trait (unknown methods
go last). Read from the registry when this module is imported; the figures ask the registry."""
REFERENCE = "#555555"


def _trait(method: str, name: str, default: Any = None) -> Any:
    """A trait of ``method`` (:class:`fairprune_lite.pruners.MethodInfo`); ``default`` for a
    method this process has not registered (results of a method registered elsewhere)."""
    info = pruners.METHODS.get(method)
    return default if info is None else getattr(info, name)


def uses_tau(method: str) -> bool:
    """Whether a method's result depends on the constraint's tolerance (unknown methods: yes)."""
    return bool(_trait(method, "uses_tau", True))


def _mean_spread(values: Sequence[float], spread: str, upper: float | None = 1.0) -> tuple[float, float, float]:
    """Mean and band (``ci``: 95% t-interval, ``std`` or ``minmax``), the band clipped to the
    quantity's range: ``[0, upper]`` (rates and gaps lie in [0, 1]; ``upper=None`` for losses
    and counts, which are only non-negative)."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    if spread == "ci":
        m, lo, hi = mean_ci(a)
    elif spread == "minmax":
        m, lo, hi = float(a.mean()), float(a.min()), float(a.max())
    else:
        m = float(a.mean())
        sd = float(a.std(ddof=1)) if a.size > 1 else 0.0
        lo, hi = m - sd, m + sd
    lo = max(lo, 0.0)
    hi = hi if upper is None else min(hi, upper)
    return m, lo, hi


def caption(results: Sequence[Mapping[str, Any]]) -> str:
    """One line naming the profile(s) and the provenance (commit, dates, devices) of ``results``."""
    if not results:
        return "no results"
    profiles = sorted({r["profile"] for r in results})
    commits = sorted({(r["provenance"].get("git_commit") or "no-git")[:10]
                      + ("+dirty" if r["provenance"].get("git_dirty") else "") for r in results})
    dates = sorted(r["provenance"].get("date", "")[:10] for r in results)
    devices = sorted({r["provenance"].get("device_name", "?") for r in results})
    seeds = sorted({r["seed"] for r in results})
    commit = commits[0] if len(commits) == 1 else f"{len(commits)} commits ({', '.join(commits[:3])}...)"
    date = dates[0] if dates[0] == dates[-1] else f"{dates[0]}..{dates[-1]}"
    n_dirty = sum(1 for r in results if r["provenance"].get("git_dirty"))
    dirty = f" | {n_dirty} of {len(results)} runs WRITTEN FROM A DIRTY TREE (uncommitted code)" if n_dirty else ""
    return (f"profile {', '.join(profiles)} | fairprune-lite {results[0]['provenance'].get('version')} "
            f"commit {commit} | {date} | {'; '.join(devices)} | {len(results)} runs, seeds {seeds}{dirty}")


def _group(results: Iterable[Mapping[str, Any]], keys: Callable[[Mapping[str, Any]], Any]) -> dict[Any, list]:
    out: dict[Any, list] = {}
    for r in results:
        out.setdefault(keys(r), []).append(r)
    return out


def _panel_key(r: Mapping[str, Any]) -> tuple:
    return (r["dataset"] if not r["dataset"].endswith(".npz") else Path(r["dataset"]).stem, r.get("target"), r["model"])


def _labels_in_order(results: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r["label"] not in seen:
            seen.append(r["label"])
    return seen


def _panel_title(key: tuple) -> str:
    ds, tgt, model = key
    tgt_s = "" if tgt is None else f" / {str(tgt).split(' (')[0]}"
    return f"{ds}{tgt_s} / {model}"


def _reference_label(results: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> str | None:
    labels = _labels_in_order(results)
    ref = config.get("reference")
    if ref is not None:
        if ref not in labels:
            raise ValueError(f"reference {ref!r} is not a label of the results ({', '.join(labels)})")
        return ref
    return next((r["label"] for r in results if _trait(r["method"], "reference", False)), None)


def method_groups(results: Sequence[Mapping[str, Any]], config: Mapping[str, Any] | None = None,
                  per_panel: int = 4) -> list[tuple[str, list[str]]]:
    """``[(family name, labels)]``: the rows of the ``sparsity`` kind. ``config["groups"]`` (a
    list of label lists) overrides the default, which groups labels by :data:`FAMILIES` (the
    reference method, OMP by default, is drawn in every row instead) and splits a family into
    rows of at most ``per_panel`` labels."""
    config = config or {}
    labels = _labels_in_order(results)
    if config.get("groups"):
        unknown = [lab for g in config["groups"] for lab in g if lab not in labels]
        if unknown:
            raise ValueError(f"groups name labels without results: {', '.join(map(str, unknown))}")
        return [("", list(g)) for g in config["groups"]]
    ref = _reference_label(results, config)
    method = {r["label"]: r["method"] for r in results}
    rows: list[tuple[str, list[str]]] = []
    taken: set[str] = {ref} if ref else set()
    family = {lab: str(_trait(method[lab], "family", "other")) for lab in labels}
    order = list(pruners.FAMILIES) + [f for f in dict.fromkeys(family.values()) if f not in pruners.FAMILIES]
    for name in order:
        fam = [lab for lab in labels if lab not in taken and family[lab] == name]
        taken.update(fam)
        for i in range(0, len(fam), per_panel):
            rows.append((name, fam[i:i + per_panel]))
    if not rows and ref:
        rows.append(("", [ref]))
    return rows


def _colors(labels: Sequence[str]) -> dict[str, str]:
    # tab10 without its grey (C7), which is the reference's colour
    palette = [f"C{i}" for i in range(10) if i != 7]
    return {lab: palette[i % len(palette)] for i, lab in enumerate(labels)}


def _majority(results: Sequence[Mapping[str, Any]], split: str = "test") -> float | None:
    vals = [r[split].get("majority_baseline") for r in results if r[split].get("majority_baseline") is not None]
    return float(np.mean(vals)) if vals else None


def _draw_majority(ax: Any, value: float | None, data_low: float, data_high: float, *, horizontal: bool = True) -> None:
    """The majority-class baseline as a dotted line; when it lies far below the data (more than
    the data's span under it) the axis is not stretched to it: a note on the axis says where it is."""
    if value is None:
        return
    span = max(data_high - data_low, 0.02)
    if value >= data_low - span:
        (ax.axhline if horizontal else ax.axvline)(value, color="k", ls=":", lw=1.2, label="majority-class baseline")
    else:
        ax.text(0.01, 0.01, f"majority-class baseline {100 * value:.1f}% (below the axis)", transform=ax.transAxes,
                fontsize=10, color="0.25", ha="left", va="bottom")


def _points(ax: Any, axis: str = "y") -> None:
    """Tick labels in percent / percentage points (0.05 -> 5); the axis label says which."""
    from matplotlib.ticker import FuncFormatter
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.3g}"))


#: a metric's name in a panel title: short enough for a column of the sparsity kind (the tables'
#: names: EO for equalized odds, as in :data:`fairprune_lite.experiments.report.SHORT_METRIC`)
SHORT = {"accuracy_gap": "accuracy gap", "equalized_odds_difference": "EO diff.",
         "demographic_parity_difference": "DP diff.", "equal_opportunity_difference": "equal-opp. diff."}


def _single(values: Iterable[Any]) -> Any:
    vals = {v for v in values if v is not None}
    return vals.pop() if len(vals) == 1 else None


def _test_value(metric: str) -> Callable[[Mapping[str, Any]], float]:
    """The function reading a result's test ``metric`` (bound now, not at call time)."""
    return lambda r: r["test"][metric]


def _series(rs: Sequence[Mapping[str, Any]], x_key: str, value: Callable[[Mapping[str, Any]], float], spread: str,
            upper: float | None = 1.0) -> tuple[list, np.ndarray]:
    """x values and ``(n_x, 3)`` array of mean, low, high over the runs at each x."""
    pts = _group(rs, lambda r: r[x_key])
    xs = sorted(pts)
    return xs, np.array([_mean_spread([value(r) for r in pts[x]], spread, upper) for x in xs]).reshape(-1, 3)


def _errorbar(ax: Any, xs: Sequence[float] | np.ndarray, st: np.ndarray, color: str, label: str, *, marker: str = "o",
              dx: float = 0.0) -> Any:
    x = np.asarray(xs, dtype=float) + dx
    return ax.errorbar(x, st[:, 0], yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]], fmt=f"{marker}-",
                       color=color, label=label, ms=4.5, capsize=2.5, lw=1.4, elinewidth=1.1)


def _kept_scale(ax: Any) -> None:
    """Sparsity on a log scale of the fraction of weights kept (50%, 80%, 90%, 95% evenly spaced)."""
    ax.set_xscale("function", functions=(lambda s: -np.log10(np.clip(1.0 - np.asarray(s, float), 1e-9, None)),
                                         lambda u: 1.0 - 10.0 ** (-np.asarray(u, float))))


def _dodge(xs: Sequence[float], decades: float) -> np.ndarray:
    """Shift sparsities by ``decades`` on the kept-fraction log scale (so error bars do not overlap)."""
    return 1.0 - (1.0 - np.asarray(xs, dtype=float)) * 10.0 ** (-decades)


def _sparsity_panel(ax: Any, rs: list, m: str, group: Sequence[str], ref: str | None, colors: Mapping[str, Any],
                    spread: str, decades: float, hlines: Sequence[tuple[float, dict[str, Any]]]) -> tuple[list, list]:
    """One panel of the sparsity figure: the reference method as a band (when not in ``group``),
    each method of ``group`` as means with intervals (dodged), then the horizontal reference
    lines ``(value, style)``. Returns what the axis must show (means and lines) and every
    interval as ``(ax, x, low, high, color)``."""
    means: list = []
    points: list = []
    _kept_scale(ax)
    if ref is not None and ref not in group:
        xs, st = _series([r for r in rs if r["label"] == ref], "sparsity_target", _test_value(m), spread)
        if xs:
            ax.fill_between(xs, st[:, 1], st[:, 2], color=REFERENCE, alpha=0.2, lw=0)
            ax.plot(xs, st[:, 0], "s-", color=REFERENCE, ms=3.5, lw=1.2)
            means += list(st[:, 0])
    for n, label in enumerate(group):
        xs, st = _series([r for r in rs if r["label"] == label], "sparsity_target", _test_value(m), spread)
        if not xs:
            continue
        x = _dodge(xs, (n - (len(group) - 1) / 2) * 0.03 * decades)
        ax.errorbar(x, st[:, 0], yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]], fmt="o-",
                    color=colors[label], ms=4.5, capsize=2.5, lw=1.4, elinewidth=1.1)
        means += list(st[:, 0])
        points += [(ax, xi, lo, hi, colors[label]) for xi, lo, hi in zip(x, st[:, 1], st[:, 2], strict=True)]
    for value, style in hlines:
        ax.axhline(value, **style)
        means.append(value)
    _points(ax)
    return means, points


def _column_limits(accuracy: bool, means: list, points: list) -> tuple[float, float]:
    """The y range of a column: every mean and reference line shows; an interval reaching far
    beyond is cut at the edge (one collapsed seed must not flatten every panel)."""
    if accuracy:
        lo = max(0.0, min(means) - 0.03)
        hi = min(1.0, max([max(means) + 0.02] + [p[3] + 0.01 for p in points]))
        lo = min(lo, min(p[2] for p in points) - 0.01) if points and min(p[2] for p in points) > lo - 0.1 else lo
        return max(0.0, lo), min(1.0, hi)
    lo, hi = 0.0, max(means) * 1.25 + 1e-3
    if points and max(p[3] for p in points) <= hi * 1.2:
        hi = max(hi, max(p[3] for p in points) * 1.04)
    return lo, hi


def _mark_cut_intervals(points: list, lo: float, hi: float) -> None:
    """Write the end of every interval cut at the axis edge there (an arrow and its value)."""
    for ax, x, plo, phi, color in points:
        if phi > hi + 1e-9:
            ax.annotate(f"\u2191{100 * phi:.0f}", (x, hi), xytext=(0, -2), textcoords="offset points",
                        ha="center", va="top", fontsize=10, color=color, annotation_clip=False)
        if plo < lo - 1e-9:
            ax.annotate(f"\u2193{100 * plo:.0f}", (x, lo), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=10, color=color, annotation_clip=False)


def _fig_sparsity(results: list, spread: str, plt: Any, cfg: Mapping[str, Any] | None = None) -> Any:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cfg = cfg or {}
    metric = constrained_metric(results)
    datasets = _group(results, _panel_key)
    rows = method_groups(results, cfg)
    ref = _reference_label(results, cfg)
    colors = _colors([lab for _, g in rows for lab in g])
    tau = _single(r.get("tau") for r in results)
    sps_all = sorted({r["sparsity_target"] for r in results})
    decades = float(-np.log10(1 - sps_all[-1]) + np.log10(1 - sps_all[0])) if len(sps_all) > 1 else 1.0
    ncols = 2 * len(datasets)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(COLUMN_WIDTH_IN * max(1.0, 0.75 * len(datasets)),
                                                        0.9 + 2.0 * len(rows)),
                             squeeze=False, sharex=True, sharey="col", layout="constrained")
    means: dict[int, list] = {k: [] for k in range(ncols)}     # what the axis must show
    points: dict[int, list] = {k: [] for k in range(ncols)}    # (ax, x, low, high) of every bar
    for j, (key, rs) in enumerate(datasets.items()):
        maj = _majority(rs)
        for i, (family, group) in enumerate(rows):
            for k, m in enumerate(("accuracy", metric)):
                col = 2 * j + k
                hlines = [(_mean_spread([r["dense"]["test"][m] for r in rs], spread)[0], dict(color="k", ls="--", lw=1.0))]
                if k == 0 and maj is not None:
                    hlines.append((maj, dict(color="k", ls=":", lw=1.3)))
                if k == 1 and tau is not None:
                    hlines.append((tau, dict(color="C3", ls=(0, (4, 2)), lw=1.1)))
                mm, pp = _sparsity_panel(axes[i][col], rs, m, group, ref, colors, spread, decades, hlines)
                means[col] += mm
                points[col] += pp
                if i == 0:  # two lines: a panel is about 1.4 in wide
                    what = "test accuracy\n(%)" if k == 0 else f"test {SHORT.get(m, m)}\n(points)"
                    axes[i][col].set_title(what if len(datasets) == 1 else f"{_panel_title(key)}\n{what}")
            handles = [Line2D([], [], color=colors[lab], marker="o", lw=1.4, ms=4.5) for lab in group]
            axes[i][-1].legend(handles, group, loc="center left", bbox_to_anchor=(1.03, 0.5), frameon=False,
                               title=family or None, title_fontsize=10, alignment="left")
    for col in range(ncols):
        axes[0][col].set_ylim(*_column_limits(col % 2 == 0, means[col], points[col]))
        _mark_cut_intervals(points[col], *axes[0][col].get_ylim())
    fig.supxlabel("sparsity (log-spaced)")  # one label for every column
    axes[0][0].set_xticks(sps_all, [f"{100 * s:g}%" for s in sps_all])
    for ax in axes[-1]:  # close sparsities (79%, 89.3%) sit close on the log scale: slanted labels
        ax.tick_params(axis="x", labelrotation=45)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")
    axes[0][0].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if len(sps_all) > 1:
        axes[0][0].set_xlim(_dodge([sps_all[0]], -0.12 * decades)[0], _dodge([sps_all[-1]], 0.12 * decades)[0])
    shared: list[tuple[Any, str]] = []
    if ref is not None:
        shared.append((Patch(facecolor=REFERENCE, alpha=0.35, edgecolor=REFERENCE), f"{ref} (reference, every row)"))
    shared += [(Line2D([], [], color="k", ls="--", lw=1.0), "dense model"),
               (Line2D([], [], color="k", ls=":", lw=1.3), "majority-class baseline")]
    if tau is not None:
        shared.append((Line2D([], [], color="C3", ls=(0, (4, 2)), lw=1.1), f"tolerance \u03c4 = {tau:g}"))
    fig.legend([h for h, _ in shared], [t for _, t in shared], loc="outside upper center",
               ncol=2 if len(shared) > 3 else len(shared), frameon=False)
    return fig


def _fig_tradeoff(results: list, spread: str, plt: Any, cfg: Mapping[str, Any] | None = None) -> Any:
    metric = constrained_metric(results)
    labels = _labels_in_order(results)
    colors = _colors(labels)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 4.4), layout="constrained")
    ys_all: list[float] = []
    constrained = sorted({r["tau"] for r in results if uses_tau(r["method"])})
    # strict=False: six markers; a tau beyond the sixth gets the default "o" (markers.get below)
    markers = dict(zip(constrained, "os^Dvp", strict=False))
    for label in labels:
        rs = [r for r in results if r["label"] == label]
        xs_t, xst = _series(rs, "tau", lambda r: r["test"][metric], spread)
        _, yst = _series(rs, "tau", lambda r: r["test"]["accuracy"], spread)
        free = not uses_tau(rs[0]["method"])
        why = " (unconstrained)" if not _trait(rs[0]["method"], "fairness_aware", False) else " (no tau)"
        ax.plot(xst[:, 0], yst[:, 0], "-", color=colors[label], lw=1.4, label=label + (why if free else ""))
        for t, x, y in zip(xs_t, xst, yst, strict=True):
            ax.errorbar([x[0]], [y[0]], xerr=[[x[0] - x[1]], [x[2] - x[0]]], yerr=[[y[0] - y[1]], [y[2] - y[0]]],
                        fmt="*" if free else markers.get(t, "o"), color=colors[label], ms=9 if free else 6,
                        capsize=2.5, elinewidth=1.1)
        ys_all += list(yst[:, 0])
    dx = _mean_spread([r["dense"]["test"][metric] for r in results], spread)[0]
    dy = _mean_spread([r["dense"]["test"]["accuracy"] for r in results], spread)[0]
    ax.plot([dx], [dy], "kX", ms=8, label="dense model")
    ys_all.append(dy)
    for t in constrained:
        ax.axvline(t, color="C3", ls=(0, (4, 2)), lw=1.0)
        ax.plot([], [], markers[t], color="0.3", ls=(0, (4, 2)), ms=6, label=f"\u03c4 = {t:g} (marker, line)")
    _draw_majority(ax, _majority(results), float(np.nanmin(ys_all)), float(np.nanmax(ys_all)))
    ax.set_xlim(left=0.0)
    _points(ax, "x")
    _points(ax, "y")
    sp = sorted({r["sparsity_target"] for r in results})
    ax.set_xlabel(f"test {METRIC_NAMES[metric]} (points)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"sparsity {', '.join(f'{100 * s:g}%' for s in sp)}: up and to the left is better")
    ax.set_ylim(top=min(1.0, ax.get_ylim()[1]))
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def iterations_to_fair(results: Sequence[Mapping[str, Any]], *, split: str = "val") -> dict[str, dict[int, float | None]]:
    """Per label and seed, the fewest pruning-stage iterations among runs (e.g. different
    budgets) whose ``split`` accuracy gap is within the run's ``tau``; ``None`` if none is."""
    out: dict[str, dict[int, float | None]] = {}
    for label, rs in _group(results, lambda r: r["label"]).items():
        out[label] = {}
        for seed, rr in _group(rs, lambda r: r["seed"]).items():
            fair = [r["cost"]["iterations"] for r in rr if r[split]["accuracy_gap"] <= r["tau"]]
            out[label][seed] = float(min(fair)) if fair else None
    return out


def _fig_cost(results: list, spread: str, plt: Any, cfg: Mapping[str, Any] | None = None) -> Any:
    labels = _labels_in_order(results)
    colors = _colors(labels)
    itf = iterations_to_fair(results)
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH_IN, 3.8), layout="constrained")
    ax = axes[0]
    top = 1.0
    for i, label in enumerate(labels):
        vals = [v for v in itf[label].values() if v is not None]
        n_all = len(itf[label])
        if vals:
            m, lo, hi = _mean_spread(vals, spread, upper=None)
            ax.bar(i, m, yerr=[[m - lo], [hi - m]], color=colors[label], capsize=3, alpha=0.85)
            ax.plot(np.full(len(vals), i) + np.linspace(-0.12, 0.12, len(vals)), vals, "k.", ms=5)
            ax.text(i, hi, f"{len(vals)}/{n_all} seeds\nfair", ha="center", va="bottom", fontsize=10)
            top = max(top, hi, max(vals))
        else:
            ax.bar(i, 0, color="none", edgecolor=colors[label], hatch="//")
            ax.text(i, 0, f"never fair\n(0/{n_all})", ha="center", va="bottom", fontsize=10)
    ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0)
    ax.set_ylim(0, top * 1.35)
    ax.set_ylabel("iterations to a fair model")
    taus = sorted({r["tau"] for r in results})
    ax.set_title(f"first run with val gap \u2264 \u03c4 ({', '.join(f'{t:g}' for t in taus)})")
    ax.grid(False, axis="x")
    ax = axes[1]
    ticks: set[float] = set()
    for n, label in enumerate(labels):
        rs = [r for r in results if r["label"] == label]
        by_b = _group(rs, lambda r: r["budget"])
        bs = sorted(by_b)
        it = [_mean_spread([r["cost"]["iterations"] for r in by_b[b]], spread, upper=None)[0] for b in bs]
        ticks.update(it)
        gap = np.array([_mean_spread([r["val"]["accuracy_gap"] for r in by_b[b]], spread) for b in bs]).reshape(-1, 3)
        _errorbar(ax, np.asarray(it) * 10 ** ((n - (len(labels) - 1) / 2) * 0.02), gap, colors[label], label)
    for t in taus:
        ax.axhline(t, color="C3", ls=(0, (4, 2)), lw=1.1)
    ax.plot([], [], color="C3", ls=(0, (4, 2)), lw=1.1, label="\u03c4")
    ax.set_xlabel("pruning-stage iterations")
    ax.set_ylabel("val accuracy gap (points)")
    ax.set_ylim(bottom=0.0)
    _points(ax)
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [f"{t:.0f}" for t in sorted(ticks)])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", ncol=len(names), frameon=False)
    return fig


def _fig_ablation(results: list, spread: str, plt: Any, cfg: Mapping[str, Any] | None = None) -> Any:
    from matplotlib.lines import Line2D

    metric = constrained_metric(results)
    labels = _labels_in_order(results)
    colors = _colors(labels)
    sps = sorted({r["sparsity_target"] for r in results})
    tau = _single(r.get("tau") for r in results)
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH_IN, 3.8), layout="constrained")
    width = 0.8 / len(sps)
    for ax, m in zip(axes, ("accuracy", metric), strict=True):
        top = 0.0
        for i, label in enumerate(labels):
            for k, sp in enumerate(sps):
                vals = [r["test"][m] for r in results if r["label"] == label and r["sparsity_target"] == sp]
                if not vals:
                    continue
                mean, lo, hi = _mean_spread(vals, spread)
                x = i + (k - (len(sps) - 1) / 2) * width
                ax.bar(x, mean, width * 0.9, yerr=[[mean - lo], [hi - mean]], color=colors[label],
                       alpha=0.55 + 0.45 * (k + 1) / len(sps), capsize=3, ecolor="k")
                ax.plot(x + np.linspace(-0.15, 0.15, len(vals)) * width, vals, "k.", ms=5, zorder=3)
                top = max(top, hi, max(vals))
        dense = _mean_spread([r["dense"]["test"][m] for r in results], spread)[0]
        ax.axhline(dense, color="k", ls="--", lw=1.0, label="dense model")
        if m == "accuracy":
            maj = _majority(results)
            if maj is not None:
                ax.axhline(maj, color="k", ls=":", lw=1.3, label="majority-class baseline")
            ax.set_ylim(0.0, 1.0)
            ax.set_title("test accuracy (%)")
        else:
            if tau is not None:
                ax.axhline(tau, color="C3", ls=(0, (4, 2)), lw=1.1, label=f"\u03c4 = {tau:g}")
            ax.set_ylim(0.0, max(top, dense, tau or 0.0) * 1.1 + 1e-3)
            ax.set_title(f"test {SHORT.get(m, m)} (points)")
        _points(ax)
        slant = len(labels) > 3  # many names under a half-width panel: slanted, anchored at their tick
        ax.set_xticks(range(len(labels)), labels, rotation=45 if slant else 0, ha="right" if slant else "center",
                      rotation_mode="anchor")
        ax.grid(False, axis="x")
    if len(sps) > 1:  # one label for both panels, wrapped to the figure
        fig.supxlabel("bars per method: sparsity " + ", ".join(f"{100 * s:g}%" for s in sps) + "\n(darker = higher)")
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    handles.append(Line2D([], [], color="k", marker=".", ls="none", ms=6))
    names.append("one seed")
    fig.legend(handles, names, loc="outside upper center", ncol=min(len(names), 2), frameon=False)
    return fig


def _fig_interpolation(results: list, spread: str, plt: Any, cfg: Mapping[str, Any]) -> Any:
    pairs = cfg.get("pairs") or []
    if not pairs:
        raise ValueError("the interpolation figure needs 'pairs' of method labels")
    points = int(cfg.get("points", 21))
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH_IN, 3.6), layout="constrained")
    for i, (la, lb) in enumerate(pairs):
        curves = []
        a_runs = {(r["seed"], r["sparsity_target"], r["tau"], r["budget"], _panel_key(r)): r
                  for r in results if r["label"] == la}
        for r in results:
            if r["label"] != lb:
                continue
            key = (r["seed"], r["sparsity_target"], r["tau"], r["budget"], _panel_key(r))
            if key in a_runs:
                curves.append(interpolation_curve(a_runs[key], r, points=points))
        if not curves:
            raise ValueError(f"no pair of runs {la!r} / {lb!r} with the same seed and sparsity")
        ts = curves[0]["t"]
        for ax, metric in ((axes[0], "loss"), (axes[1], "accuracy_gap")):
            stats = np.array([_mean_spread([c["test"][metric][j] for c in curves], spread,
                                           upper=None if metric == "loss" else 1.0) for j in range(len(ts))])
            ax.plot(ts, stats[:, 0], "o-", ms=3, color=f"C{i % 10}",
                    label=f"{la} (t=0) \u2192 {lb} (t=1), {len(curves)} seeds")
            ax.fill_between(ts, stats[:, 1], stats[:, 2], color=f"C{i % 10}", alpha=0.18, lw=0)
    axes[0].set_title("test loss")
    axes[1].set_title("test accuracy gap (points)")
    axes[1].set_ylim(bottom=0.0)
    _points(axes[1])
    fig.supxlabel(r"$t$ on the line $(1 - t)\,\theta_a + t\,\theta_b$")  # one label for both panels
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", ncol=1, frameon=False)
    return fig


FIGURES: dict[str, Callable[..., Any]] = {}


def _fig_frontier(results: list, spread: str, plt: Any, cfg: Mapping[str, Any] | None = None) -> Any:
    """Test accuracy against the test metric: one line per method whose result depends on tau
    (a point per tau), one point for each other method, the dense model, the majority class and,
    with ``tau_star`` in the config, that tolerance (:mod:`~fairprune_lite.experiments.frontier`).
    Bars: 95% t-intervals over seeds (the metric's clipped at 0)."""
    from .frontier import frontier_points

    if spread != "ci":
        raise ValueError(f"the frontier figure draws 95% t-intervals: spread must be 'ci', got {spread!r}")
    cfg = cfg or {}
    front = frontier_points(results)
    metric = front["metric"]
    labels = _labels_in_order(results)
    colors = _colors(labels)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 5.4), layout="constrained")
    ys_all: list[float] = []
    for label in labels:
        pts = [p for p in front["points"] if p["label"] == label]
        swept = pts[0]["uses_tau"]
        xs, ys = [p["value"] for p in pts], [p["accuracy"] for p in pts]
        xci = [0.0 if np.isnan(p["value_ci"]) else p["value_ci"] for p in pts]
        yci = [0.0 if np.isnan(p["accuracy_ci"]) else p["accuracy_ci"] for p in pts]
        note = (" (tau swept)" if swept and len(pts) > 1 else "") + \
            (" (needs s at prediction)" if pts[0]["needs_sensitive_at_prediction"] else "")
        ax.errorbar(xs, ys, xerr=[[min(c, x) for c, x in zip(xci, xs, strict=True)], xci], yerr=yci,
                    fmt="o-" if swept else "s", color=colors[label], ms=5 if swept else 7, capsize=2.5,
                    elinewidth=1.0, lw=1.3, label=label + note)
        ys_all += ys
    d = front["dense"]
    ax.plot([d["value"]], [d["accuracy"]], "k*", ms=11, label="dense model")
    ys_all.append(d["accuracy"])
    if cfg.get("tau_star") is not None:
        ax.axvline(float(cfg["tau_star"]), color="0.35", ls=(0, (4, 2)), lw=1.0,
                   label=f"\u03c4* = {float(cfg['tau_star']):g} (summary)")
    _draw_majority(ax, front["majority"], float(np.nanmin(ys_all)), float(np.nanmax(ys_all)))
    ax.set_xlim(left=0.0)
    _points(ax, "x")
    _points(ax, "y")
    ax.set_xlabel(f"test {METRIC_NAMES[metric]} (points)")
    ax.set_ylabel("test accuracy (%)")
    sp = sorted({r["sparsity_target"] for r in results})
    ax.set_title(f"sparsity {', '.join(f'{100 * s:g}%' for s in sp)}: up and to the left is better")
    handles, texts = ax.get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside upper center", ncol=2, frameon=False, fontsize=10)
    return fig


def register_figure(kind: str, draw: Callable[[list, str, Any, Mapping[str, Any]], Any]) -> None:
    """Add a figure kind: ``draw(results, spread, plt, config) -> matplotlib figure``."""
    FIGURES[kind] = draw


register_figure("sparsity", _fig_sparsity)
register_figure("tradeoff", _fig_tradeoff)
register_figure("cost", _fig_cost)
register_figure("ablation", _fig_ablation)
register_figure("interpolation", _fig_interpolation)
register_figure("frontier", _fig_frontier)
SPREAD_TEXT = {"ci": "bars/bands: 95% t-interval of the mean over seeds, clipped to the metric's range",
               "std": "bars/bands: 1 std over seeds", "minmax": "bars/bands: min-max over seeds"}
CAPTION_PT = 10.0


def figure(kind: str, results: Sequence[Mapping[str, Any]] | str | os.PathLike, *,
           out: str | os.PathLike | None = None, name: str | None = None, spread: str = "ci",
           config: Mapping[str, Any] | None = None, title: str | None = None) -> Any:
    """Draw a figure of ``kind`` (:data:`FIGURES`) from results (dicts or a results folder).

    Mean over seeds with the spread (``"ci"``: 95% t-interval, ``"std"``: one standard
    deviation, ``"minmax"``) as error bars or bands, clipped to the metric's range; a caption line
    names profile and provenance. ``config`` is the sweep's configuration (``pairs`` and
    ``points`` for ``interpolation``; optional ``groups`` (lists of labels, one row each) and
    ``reference`` (the label drawn in every row, default OMP) for ``sparsity``). Drawn
    :data:`COLUMN_WIDTH_IN` wide with text of 9 pt or more. With ``out`` the figure is saved as
    ``<out>/<name>.png`` and ``.svg`` (``name`` defaults to ``kind``). Returns the figure.
    """
    if kind not in FIGURES:
        raise ValueError(f"figure kind must be one of {', '.join(FIGURES)}, got {kind!r}")
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")
    if isinstance(results, (str, os.PathLike)):
        results, bad = load_results(results)
        for p, why in bad:
            print(f"warning: skipping {p}: {why}", file=sys.stderr)
    results = [dict(r) for r in results]
    if not results:
        raise ValueError("no results to draw")
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]  # matplotlib types rc keys as Literal names
        fig = FIGURES[kind](results, spread, plt, dict(config or {}))
        if title and fig.legends:  # a figure legend above the axes: the title goes on top of it
            fig.legends[0].set_title(title, prop={"size": STYLE["figure.titlesize"]})
        elif title:
            fig.suptitle(title)
        for ax in fig.axes:  # ticks are made lazily, after this context: fix their size now
            ax.tick_params(labelsize=STYLE["xtick.labelsize"])
        width_chars = max(40, int(fig.get_figwidth() * 72 / (0.55 * CAPTION_PT)))
        n = len({r["seed"] for r in results})
        lines = textwrap.wrap(caption(results) + f" | {SPREAD_TEXT[spread]} (n = {n} seeds)", width_chars)
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=CAPTION_PT, color="0.3", ha="left", va="bottom")
        bottom = 0.012 + 1.25 * CAPTION_PT / 72 * len(lines) / fig.get_figheight()
        shared_x = getattr(fig, "_supxlabel", None)  # a label shared by the columns goes above the caption
        if shared_x is not None:
            fig.supxlabel(shared_x.get_text(), y=bottom, va="bottom")
            bottom += 1.5 * shared_x.get_fontsize() / 72 / fig.get_figheight()
        engine = fig.get_layout_engine()
        if engine is not None and hasattr(engine, "set") and "rect" in engine.get():
            engine.set(rect=(0, bottom, 1, 1 - bottom))
        else:
            fig.tight_layout(rect=(0, bottom, 1, 0.97 if title else 1))
        if out is not None:
            folder = check_writable(out)
            stem = name or kind
            for ext in ("png", "svg"):
                atomic_write(folder / f"{stem}.{ext}", functools.partial(
                    fig.savefig, dpi=150, format=ext, metadata={"Date": None} if ext == "svg" else None))
    return fig


def figure_from_config(config: str | os.PathLike | Mapping[str, Any], *, out: Any = None, results_out: Any = None,
                       profile: str | None = None, kind: str | None = None) -> tuple[Any, list[str]]:
    """Draw the figure of a sweep configuration from its stored results; return the figure and
    the run ids still missing (drawn from what exists)."""
    raw = load_config(config) if isinstance(config, (str, os.PathLike)) else config
    cfg = check_config(raw)
    results, missing = sweep_results(cfg, out=results_out, profile=profile)
    if not results:
        raise ValueError(f"no stored results for sweep {cfg.name!r} in {sweep_dir(cfg, results_out)}; "
                         f"run the sweep first")
    fig = figure(kind or cfg.figure, results, out=out or sweep_dir(cfg, results_out), name=slug(cfg.name),
                 spread=cfg.spread, config=cfg.raw, title=cfg.description)
    return fig, missing
