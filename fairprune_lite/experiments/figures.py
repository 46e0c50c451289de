"""Figures drawn from stored results: the mean over seeds with its spread (``"ci"``: 95%
t-interval, the default; ``"std"``; ``"minmax"``), saved as PNG and SVG, with a caption line naming
the profile and the provenance (commit, date, device; results written from a dirty tree say so).

Kinds live in a small registry (:data:`FIGURES`, :func:`register_figure`): ``sparsity``
(Figs. 1, 3, 4), ``tradeoff`` (Fig. 5), ``cost`` (Fig. 6), ``ablation`` (Fig. 7),
``interpolation`` (Fig. 8: the loss and accuracy gap along ``(1 - t) * theta_a + t * theta_b``
between the saved final weights of two solutions; the curve is cached next to the results).
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import matplotlib
import numpy as np
import torch

from .. import train as _train
from .config import FIGURE_KINDS, SPREADS, RunSpec, check_config, check_spec, load_config, slug, sweep_dir
from .results import SPLITS, check_writable, load_results, write_json
from .run import build_model, load_splits
from .stats import mean_ci
from .sweep import sweep_results

__all__ = ["figure", "figure_from_config", "caption", "iterations_to_fair", "interpolation_curve", "FIGURES",
           "register_figure", "FIGURE_KINDS"]

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


def _fig_sparsity(results: list, spread: str, plt: Any) -> Any:
    panels = _group(results, _panel_key)
    labels = _labels_in_order(results)
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.2), squeeze=False, sharex="col")
    colors = {l: f"C{i % 10}" for i, l in enumerate(labels)}
    for j, (key, rs) in enumerate(panels.items()):
        for row, metric, name in ((0, "accuracy", "test accuracy"), (1, "accuracy_gap", "bias (test accuracy gap)")):
            ax = axes[row][j]
            for label in labels:
                pts = _group([r for r in rs if r["label"] == label], lambda r: r["sparsity_target"])
                if not pts:
                    continue
                xs = sorted(pts)
                stats = [_mean_spread([r["test"][metric] for r in pts[x]], spread) for x in xs]
                ax.plot(xs, [s[0] for s in stats], "o-", color=colors[label], label=label, ms=3.5)
                ax.fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], color=colors[label], alpha=0.18)
            dense = _mean_spread([r["dense"]["test"][metric] for r in rs], spread)[0]
            ax.axhline(dense, color="k", ls="--", lw=0.9, label="dense")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(_panel_title(key), fontsize=10)
            else:
                ax.set_xlabel("sparsity")
    axes[0][0].legend(fontsize=8)
    return fig


def _fig_tradeoff(results: list, spread: str, plt: Any) -> Any:
    labels = _labels_in_order(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, label in enumerate(labels):
        rs = [r for r in results if r["label"] == label]
        by_tau = _group(rs, lambda r: r["tau"])
        taus = sorted(by_tau)
        xs = [_mean_spread([r["test"]["accuracy_gap"] for r in by_tau[t]], spread) for t in taus]
        ys = [_mean_spread([r["test"]["accuracy"] for r in by_tau[t]], spread) for t in taus]
        ax.errorbar([x[0] for x in xs], [y[0] for y in ys],
                    xerr=[[x[0] - x[1] for x in xs], [x[2] - x[0] for x in xs]],
                    yerr=[[y[0] - y[1] for y in ys], [y[2] - y[0] for y in ys]],
                    fmt="o-", color=f"C{i % 10}", label=label, ms=4, capsize=2, lw=1.2)
        if len(taus) > 1:
            for t, x, y in zip(taus, xs, ys):
                ax.annotate(f"{t:g}", (x[0], y[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    sp = sorted({r["sparsity_target"] for r in results})
    ax.set_xlabel("bias (test accuracy gap)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"accuracy-bias trade-off at sparsity {', '.join(f'{s:g}' for s in sp)} (labels: tau)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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


def _fig_cost(results: list, spread: str, plt: Any) -> Any:
    labels = _labels_in_order(results)
    itf = iterations_to_fair(results)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    ax = axes[0]
    for i, label in enumerate(labels):
        vals = [v for v in itf[label].values() if v is not None]
        n_all = len(itf[label])
        if vals:
            m, lo, hi = _mean_spread(vals, spread, upper=None)
            ax.bar(i, m, yerr=[[m - lo], [hi - m]], color=f"C{i % 10}", capsize=3)
            ax.text(i, m, f"{m:.0f}\n({len(vals)}/{n_all} fair)", ha="center", va="bottom", fontsize=7)
        else:
            ax.bar(i, 0, color="none", edgecolor=f"C{i % 10}", hatch="//")
            ax.text(i, 0, f"never fair\n(0/{n_all})", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    top = max([v for d in itf.values() for v in d.values() if v is not None] or [1.0])
    ax.set_ylim(0, top * 1.25)
    ax.set_ylabel("iterations to a fair sparse model")
    taus = sorted({r["tau"] for r in results})
    ax.set_title(f"fewest iterations with val accuracy gap <= tau ({', '.join(f'{t:g}' for t in taus)})", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax = axes[1]
    for i, label in enumerate(labels):
        rs = [r for r in results if r["label"] == label]
        by_b = _group(rs, lambda r: r["budget"])
        bs = sorted(by_b)
        it = [_mean_spread([r["cost"]["iterations"] for r in by_b[b]], spread, upper=None)[0] for b in bs]
        gap = [_mean_spread([r["val"]["accuracy_gap"] for r in by_b[b]], spread) for b in bs]
        ax.errorbar(it, [g[0] for g in gap], yerr=[[g[0] - g[1] for g in gap], [g[2] - g[0] for g in gap]],
                    fmt="o-", color=f"C{i % 10}", label=label, ms=4, capsize=2)
    for t in taus:
        ax.axhline(t, color="k", ls=":", lw=0.9)
    ax.set_xlabel("pruning-stage iterations")
    ax.set_ylabel("val accuracy gap")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _fig_ablation(results: list, spread: str, plt: Any) -> Any:
    labels = _labels_in_order(results)
    sps = sorted({r["sparsity_target"] for r in results})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    width = 0.8 / max(1, len(labels))
    for ax, metric, name in ((axes[0], "accuracy", "test accuracy"), (axes[1], "accuracy_gap", "bias (test accuracy gap)")):
        for i, label in enumerate(labels):
            ms, los, his = [], [], []
            for sp in sps:
                m, lo, hi = _mean_spread([r["test"][metric] for r in results
                                          if r["label"] == label and r["sparsity_target"] == sp], spread)
                ms.append(m), los.append(m - lo), his.append(hi - m)
            xs = np.arange(len(sps)) + (i - (len(labels) - 1) / 2) * width
            ax.bar(xs, ms, width, yerr=[los, his], label=label, color=f"C{i % 10}", capsize=2)
        ax.set_xticks(range(len(sps)), [f"{s:g}" for s in sps])
        ax.set_xlabel("sparsity")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, axis="y")
        if metric == "accuracy":
            lo = min(r["test"]["accuracy"] for r in results)
            ax.set_ylim(max(0.0, lo - 0.05), None)
    axes[0].legend(fontsize=8)
    return fig


def _load_weights(folder: Path, res: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if not res.get("weights"):
        raise ValueError(f"{res['run_id']}: no saved weights (run the sweep with save_weights: true)")
    ck = torch.load(folder / res["weights"], map_location="cpu", weights_only=True)
    return ck["state_dict"]


def interpolation_curve(res_a: Mapping[str, Any], res_b: Mapping[str, Any], *, points: int = 21,
                        folder: str | os.PathLike | None = None, root: Any = None) -> dict[str, Any]:
    """Loss and accuracy gap of ``(1 - t) * theta_a + t * theta_b`` on ``val`` and ``test``.

    Both results must share dataset, model, seed and profile; their saved final weights (pruned
    weights are exactly zero) are interpolated entry by entry, floating buffers (BatchNorm
    statistics) too; integer buffers are taken from ``a``. Cached as
    ``<folder>/interp/<id_a>__<id_b>_<points>.json``.
    """
    folder = Path(folder or Path(res_a["_path"]).parent)
    cache = folder / "interp" / f"{res_a['run_id']}__{res_b['run_id']}_{points}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except json.JSONDecodeError:
            print(f"warning: {cache} is corrupt; recomputing", file=sys.stderr)
    for k in ("dataset", "model", "seed", "profile", "target", "sensitive"):
        if res_a.get(k) != res_b.get(k):
            raise ValueError(f"interpolation needs two runs with the same {k}: {res_a.get(k)!r} vs {res_b.get(k)!r}")
    spec = RunSpec.from_dict(res_a["spec"])
    profile = check_spec(spec)
    splits = load_splits(spec, profile, root=root)
    model, _, _ = build_model(spec, profile, splits)
    sa, sb = _load_weights(folder, res_a), _load_weights(folder, res_b)
    ts = np.linspace(0.0, 1.0, int(points))
    curve: dict[str, Any] = {"t": ts.tolist(), "a": res_a["run_id"], "b": res_b["run_id"],
                             "label_a": res_a["label"], "label_b": res_b["label"]}
    for split in SPLITS:
        curve[split] = {"loss": [], "accuracy": [], "accuracy_gap": []}
    for t in ts:
        sd = {k: ((1 - t) * sa[k] + t * sb[k]) if sa[k].is_floating_point() else sa[k] for k in sa}
        model.load_state_dict(sd)
        for split in SPLITS:
            m = _train.evaluate(model, getattr(splits, split), batch_size=profile.eval_batch_size)
            for k in ("loss", "accuracy", "accuracy_gap"):
                curve[split][k].append(float(m[k]))
    write_json(cache, curve)
    return curve


def _fig_interpolation(results: list, spread: str, plt: Any, cfg: Mapping[str, Any]) -> Any:
    pairs = cfg.get("pairs") or []
    if not pairs:
        raise ValueError("the interpolation figure needs 'pairs' of method labels")
    points = int(cfg.get("points", 21))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
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
            stats = [_mean_spread([c["test"][metric][j] for c in curves], spread,
                                  upper=None if metric == "loss" else 1.0) for j in range(len(ts))]
            ax.plot(ts, [s[0] for s in stats], "-", color=f"C{i % 10}", label=f"{la} (t=0) -> {lb} (t=1)")
            ax.fill_between(ts, [s[1] for s in stats], [s[2] for s in stats], color=f"C{i % 10}", alpha=0.18)
    axes[0].set_ylabel("test loss")
    axes[1].set_ylabel("test accuracy gap")
    for ax in axes:
        ax.set_xlabel("t along (1 - t) theta_a + t theta_b")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


FIGURES: dict[str, Callable[..., Any]] = {}


def register_figure(kind: str, draw: Callable[[list, str, Any, Mapping[str, Any]], Any]) -> None:
    """Add a figure kind: ``draw(results, spread, plt, config) -> matplotlib figure``."""
    FIGURES[kind] = draw


register_figure("sparsity", lambda rs, spread, plt, cfg: _fig_sparsity(rs, spread, plt))
register_figure("tradeoff", lambda rs, spread, plt, cfg: _fig_tradeoff(rs, spread, plt))
register_figure("cost", lambda rs, spread, plt, cfg: _fig_cost(rs, spread, plt))
register_figure("ablation", lambda rs, spread, plt, cfg: _fig_ablation(rs, spread, plt))
register_figure("interpolation", _fig_interpolation)
SPREAD_TEXT = {"ci": "band/bars: 95% t-interval of the mean over seeds", "std": "band/bars: 1 std over seeds",
               "minmax": "band/bars: min-max over seeds"}


def figure(kind: str, results: Sequence[Mapping[str, Any]] | str | os.PathLike, *,
           out: str | os.PathLike | None = None, name: str | None = None, spread: str = "ci",
           config: Mapping[str, Any] | None = None, title: str | None = None) -> Any:
    """Draw a figure of ``kind`` (:data:`FIGURES`) from results (dicts or a results folder).

    Mean over seeds with the spread (``"ci"``: 95% t-interval, ``"std"``: one standard
    deviation, ``"minmax"``) as a band or error bars; a caption line names profile and
    provenance. With ``out`` the figure is saved as ``<out>/<name>.png`` and ``.svg`` (``name``
    defaults to ``kind``). Returns the matplotlib figure.
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

    fig = FIGURES[kind](results, spread, plt, dict(config or {}))
    if title:
        fig.suptitle(title, fontsize=11)
    width_chars = max(40, int(fig.get_figwidth() * 17))
    lines = textwrap.wrap(caption(results) + " | " + SPREAD_TEXT[spread], width_chars)
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=6.5, color="0.35", ha="left", va="bottom")
    bottom = (0.012 + 0.11 * len(lines) / fig.get_figheight()) if lines else 0.0
    fig.tight_layout(rect=(0, bottom, 1, 0.97 if title else 1))
    if out is not None:
        folder = check_writable(out)
        stem = name or kind
        for ext in ("png", "svg"):
            path = folder / f"{stem}.{ext}"
            tmp = folder / f".{stem}.tmp.{ext}"
            fig.savefig(tmp, dpi=150, format=ext, metadata={"Date": None} if ext == "svg" else None)
            os.replace(tmp, path)
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
