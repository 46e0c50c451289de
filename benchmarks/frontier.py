"""The accuracy-fairness frontier on Adult (90% sparsity, equalized odds): tau swept for BiFP
(certified protocol, safety test off: val's 2,000 rows cannot certify these taus), P&F and F&P,
against OMP, OMP + post-processing (fairlearn's ThresholdOptimizer, which needs the sensitive
attribute at prediction time) and the dense model; 5 seeds, test split, 95% t-intervals.

One JSON line per run (a provenance line first; resumable), then ``--figure`` draws test accuracy
against test equalized odds with the intervals and the majority-class line, and ``--table``
prints, per method, the best mean test accuracy among the taus whose mean test metric is <= the
given ``--tau-star``.

    OMP_NUM_THREADS=1 python benchmarks/frontier.py --out benchmarks/results/frontier_adult.jsonl
    python benchmarks/frontier.py --table benchmarks/results/frontier_adult.jsonl --tau-star 0.06
    python benchmarks/frontier.py --figure benchmarks/results/frontier_adult.jsonl
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import solver_measure as sm  # noqa: E402
from scipy import stats  # noqa: E402

from fairprune_lite import train  # noqa: E402

TAUS = (0.02, 0.05, 0.1, 0.15)
SWEPT = {"bifp": {"protocol": "certified", "safety": 0.0}, "pf": {}, "fp": {}}
FIXED = {"omp": {}, "postproc": {}}


def _jobs(seeds: list[int]) -> list[tuple[str, float, str, dict, int]]:
    out = []
    for seed in seeds:
        for m, kw in FIXED.items():
            out.append((m, 0.05, m, kw, seed))
        for tau in TAUS:
            for m, kw in SWEPT.items():
                out.append((f"{m}@{tau}", tau, m, kw, seed))
    return out


def _ci(v: list[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return m, float(stats.t.ppf(0.975, len(v) - 1)) * sd / math.sqrt(len(v))


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]


def summary(path: Path) -> dict[str, dict]:
    rows = _rows(path)
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["variant"], []).append(r)  # type: ignore[arg-type]
    res = {}
    for v, rs in out.items():
        acc, acc_ci = _ci([r["test"]["accuracy"] for r in rs])
        met, met_ci = _ci([r["test"]["equalized_odds_difference"] for r in rs])
        dacc, _ = _ci([r["dense"]["test"]["accuracy"] for r in rs])
        dmet, _ = _ci([r["dense"]["test"]["equalized_odds_difference"] for r in rs])
        res[v] = {"method": rs[0]["method"], "tau": rs[0]["tau"], "seeds": len(rs), "acc": acc, "acc_ci": acc_ci,
                  "eo": met, "eo_ci": met_ci, "majority": rs[0]["test"]["majority_baseline"],
                  "dense_acc": dacc, "dense_eo": dmet,
                  "near_majority": sum(r["test"]["accuracy"] < r["test"]["majority_baseline"] + 0.02 for r in rs)}
    return res


def table(path: Path, tau_star: float) -> str:
    s = summary(path)
    lines = ["| variant | seeds | test accuracy (95% CI) | test EO (95% CI) | near majority |", "|---|---|---|---|---|"]
    for v, d in s.items():
        lines.append(f"| {v} | {d['seeds']} | {d['acc']:.4f} ± {d['acc_ci']:.4f} | {d['eo']:.4f} ± {d['eo_ci']:.4f} | "
                     f"{d['near_majority']}/{d['seeds']} |")
    any_d = next(iter(s.values()))
    lines.append(f"\ndense: test accuracy {any_d['dense_acc']:.4f}, EO {any_d['dense_eo']:.4f}; "
                 f"majority class {any_d['majority']:.4f}")
    lines.append(f"\nBest mean test accuracy among settings with mean test EO <= {tau_star}:")
    for m in ("bifp", "pf", "fp", "omp", "postproc"):
        ok = [d for d in s.values() if d["method"] == m and d["eo"] <= tau_star]
        best = max(ok, key=lambda d: d["acc"]) if ok else None
        lines.append(f"- {m}: " + (f"{best['acc']:.4f} (EO {best['eo']:.4f}, tau {best['tau']})" if best else "none"))
    return "\n".join(lines)


def _clipped(pts: list[dict]) -> list[list[float]]:
    """Asymmetric x error bars of the EO intervals, clipped at 0 (a difference of rates is >= 0)."""
    return [[min(d["eo_ci"], d["eo"]) for d in pts], [d["eo_ci"] for d in pts]]


def figure(path: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = summary(path)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    colors = {"bifp": "C0", "pf": "C1", "fp": "C2", "omp": "C3", "postproc": "C4"}
    for m in ("bifp", "pf", "fp"):
        pts = sorted((d for d in s.values() if d["method"] == m), key=lambda d: d["tau"])
        ax.errorbar([d["eo"] for d in pts], [d["acc"] for d in pts], xerr=_clipped(pts),
                    yerr=[d["acc_ci"] for d in pts], marker="o", color=colors[m], label=f"{m} (tau swept)", capsize=2)
    for m in ("omp", "postproc"):
        d = s[m]
        ax.errorbar([d["eo"]], [d["acc"]], xerr=_clipped([d]), yerr=[d["acc_ci"]], marker="s", color=colors[m],
                    label=m, capsize=2, linestyle="none")
    d0 = next(iter(s.values()))
    ax.plot([d0["dense_eo"]], [d0["dense_acc"]], marker="*", color="k", markersize=12, linestyle="none", label="dense")
    ax.axhline(d0["majority"], color="gray", linestyle="--", label="majority class")
    ax.set_xlabel("test equalized-odds difference")
    ax.set_xlim(left=0)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Adult, 90% sparsity, 5 seeds (95% CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/frontier_adult.jsonl"))
    ap.add_argument("--table", type=Path, default=None)
    ap.add_argument("--tau-star", type=float, default=0.06)
    ap.add_argument("--figure", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.table, a.tau_star))
        return 0
    if a.figure:
        figure(a.figure, a.figure.with_suffix(".png"))
        return 0
    os.environ.setdefault("FAIRPRUNE_QUIET", "1")
    done = set()
    if a.out.exists():
        done = {(r["variant"], r["seed"]) for r in _rows(a.out)}
    with a.out.open("a") as fh:
        fh.write("# " + json.dumps(sm.provenance("python " + " ".join(sys.argv))) + "\n")
    for variant, tau, method, kw, seed in _jobs(a.seeds):
        if (variant, seed) in done:
            continue
        sm.BENCH["adult_tau"] = dict(dataset="adult", sparsity=0.9, constraint="equalized_odds", tau=tau)
        r = sm.run_one("adult_tau", variant, seed, method=method, kwargs=dict(kw))
        r["tau"] = tau
        r["test"]["equalized_odds_difference"] = r["test"]["equalized_odds_difference"]
        r["dense"] = {k: {"accuracy": v["accuracy"], "equalized_odds_difference": v["equalized_odds_difference"]}
                      for k, v in r["dense"].items()}
        with a.out.open("a") as fh:
            fh.write(json.dumps(train.to_jsonable(r)) + "\n")
        print(f"{variant} seed {seed}: test acc {r['test']['accuracy']:.4f} EO {r['test']['equalized_odds_difference']:.4f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
