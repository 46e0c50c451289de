"""The accuracy-fairness frontier on Adult (90% sparsity, equalized odds): tau swept for BiFP
(certified protocol, safety test off: val's 2,000 rows cannot certify these taus), P&F and F&P,
against OMP, OMP + post-processing (fairlearn's ThresholdOptimizer, which needs the sensitive
attribute at prediction time) and the dense model; 5 seeds, test split, 95% t-intervals.

One JSON line per run (a provenance line first; resumable), then ``--figure`` draws test accuracy
against test equalized odds with the intervals and the majority-class line, and ``--table``
prints, per method, the best mean test accuracy among the taus whose mean test metric is <= the
given ``--tau-star``: both are the library's (:mod:`fairprune_lite.experiments.frontier`, the
``frontier`` figure kind), which ``fairprune frontier`` and ``configs/frontier_adult.yaml`` run
as a sweep of result files.

    OMP_NUM_THREADS=1 python benchmarks/frontier.py --out benchmarks/results/frontier_adult.jsonl
    python benchmarks/frontier.py --table benchmarks/results/frontier_adult.jsonl --tau-star 0.06
    python benchmarks/frontier.py --figure benchmarks/results/frontier_adult.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import solver_measure as sm  # noqa: E402

from fairprune_lite import experiments as ex  # noqa: E402
from fairprune_lite.experiments import frontier  # noqa: E402
from fairprune_lite.result import to_jsonable  # noqa: E402

TAUS = (0.02, 0.05, 0.1, 0.15)
BENCH = dict(dataset="adult", sparsity=0.9, constraint="equalized_odds")
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


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]


def results(path: Path) -> list[dict]:
    """The file's rows as the library's result dicts (label: the method, so a method's taus form
    one series; its provenance line as each row's provenance, for the figure's caption)."""
    header: dict = {}
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            header = json.loads(line[2:])
            continue
        if not line.strip():
            continue
        r = json.loads(line)
        # provenance lines in either format: the early one (commit, cpu) or the library's record
        prov = {"git_commit": header.get("commit") or header.get("git_commit"), "date": header.get("date", ""),
                "device_name": header.get("cpu") or header.get("device_name"),
                "version": header.get("version", "(not recorded)"), "git_dirty": header.get("git_dirty")}
        out.append({**r, "label": r["method"], "constraint": BENCH["constraint"], "sparsity_target": r["sparsity"],
                    "profile": "cpu", "provenance": prov})
    return out


def table(path: Path, tau_star: float) -> str:
    """Every (method, tau) point with its 95% t-intervals, the dense model and the majority class,
    and the best mean test accuracy per method among points whose mean test EO is <= ``tau_star``
    (:mod:`fairprune_lite.experiments.frontier`)."""
    return frontier.frontier_table(frontier.frontier_points(results(path)), tau_star)


def figure(path: Path, out: Path, tau_star: float | None = None) -> None:
    """The library's ``frontier`` figure of the file, saved as ``out`` (PNG) and its SVG."""
    ex.figure("frontier", results(path), out=out.parent, name=out.stem,
              config={} if tau_star is None else {"tau_star": tau_star},
              title="Adult, 90% sparsity, equalized odds")


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
        figure(a.figure, a.figure.with_suffix(".png"), a.tau_star)
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
        sm.BENCH["adult_tau"] = dict(BENCH, tau=tau)
        r = sm.run_one("adult_tau", variant, seed, method=method, kwargs=dict(kw))
        r["tau"] = tau
        r["dense"] = {k: {"accuracy": v["accuracy"], "equalized_odds_difference": v["equalized_odds_difference"]}
                      for k, v in r["dense"].items()}
        with a.out.open("a") as fh:
            fh.write(json.dumps(to_jsonable(r)) + "\n")
        print(f"{variant} seed {seed}: test acc {r['test']['accuracy']:.4f} EO {r['test']['equalized_odds_difference']:.4f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
