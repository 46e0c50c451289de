"""Measure BiFP and its baselines on the cpu profile: val and test blocks with feasibility.

Runs each (benchmark, method variant, seed) through the runner's own data, dense model and
profile arguments (``experiments.load_splits`` / ``pretrain`` / ``_method_arguments``), then
``pruners.prune``, and keeps ``PruneResult.metrics`` (the val and test blocks, feasibility
included; for ``postproc`` the post-processed predictions). One JSON line per run is appended
to the output file, so an interrupted measurement keeps what it finished and resumes.

    OMP_NUM_THREADS=1 python benchmarks/solver_measure.py --group fair --seeds 0 1 2 3 4 \\
        --out benchmarks/results/solver_runs.jsonl
    python benchmarks/solver_measure.py --table benchmarks/results/solver_runs.jsonl
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from fairprune_lite import experiments as ex
from fairprune_lite import pruners, train
from fairprune_lite.experiments import config as _config
from fairprune_lite.result import to_jsonable

_run_mod = importlib.import_module("fairprune_lite.experiments.run")  # the module (ex.run is the function)

BENCH = {
    "fashion": dict(dataset="fashion", sparsity=0.9, constraint="accuracy_gap", tau=0.02),
    "adult": dict(dataset="adult", sparsity=0.9, constraint="equalized_odds", tau=0.05),
}
#: variant -> (method, method_kwargs, structured)
VARIANTS = {
    "omp": ("omp", {}, None),
    "pf": ("pf", {}, None),
    "postproc": ("postproc", {}, None),
    "bifp": ("bifp", {}, None),
    "bifp_joint": ("bifp", {"update": "joint"}, None),
    "bifp_margin": ("bifp", {"margin": 1.645}, None),
    "bifp_nupi": ("bifp", {"dual": "nupi", "kp": 5.0}, None),
    "bifp_full_margin": ("bifp", {"dual_every": 1, "margin": 1.645}, None),
    "bifp_select": ("bifp", {"holdout": 0.25, "select_every": 10, "margin": 1.645}, None),
    "bifp_train_dual": ("bifp", {"dual_every": 5, "dual_split": "train"}, None),
    "bifp_train_dual_margin": ("bifp", {"dual_every": 5, "dual_split": "train", "margin": 1.645}, None),
    "bifp_prune_train": ("bifp", {"prune_split": "train"}, None),
    "bifp_prune_train_dual5": ("bifp", {"prune_split": "train", "dual_every": 5}, None),
    "bifp_prune_train_dual5_lr5": ("bifp", {"prune_split": "train", "dual_every": 5, "dual_lr": 5.0}, None),
    "bifp_prune_train_dual1_lr5": ("bifp", {"prune_split": "train", "dual_every": 1, "dual_lr": 5.0}, None),
    "bip_str": ("bip", {}, True),
    "bip_str_layer": ("bip", {"scope": "layer"}, True),
}


def _honours(method: str, kind: str) -> bool:
    """Whether ``method`` can run under a constraint of ``kind`` (its ``constraint_kinds`` trait)."""
    kinds = pruners.METHODS[method].constraint_kinds
    return kinds is None or kind in kinds


# these explorations ran before the certified protocol became the default: the paper's is their base
VARIANTS = {k: (m, {"protocol": "paper", **kw} if "protocol" in pruners.METHODS[m].options() else kw, st)
            for k, (m, kw, st) in VARIANTS.items()}
#: keys of a variant's options that are profile knobs (RunSpec.settings)
SETTING_KEYS = ("dual_lr",)
#: keys of a variant's options that configure the constraint, not the method
CONSTRAINT_KEYS = tuple(_config.CONSTRAINT_OPTIONS)
GROUPS = {
    "fair": [(b, v) for b in ("adult", "fashion") for v in ("omp", "pf", "bifp", "bifp_joint", "bifp_margin", "postproc")
             if _honours(VARIANTS[v][0], BENCH[b]["constraint"])],
    "adult_dual": [("adult", v) for v in ("bifp_nupi", "bifp_full_margin", "bifp_select")],
    "fashion_select": [("fashion", "bifp_select")],
    "train_dual": [(b, v) for b in ("adult", "fashion") for v in ("bifp_train_dual", "bifp_train_dual_margin")],
    "adult_splits": [("adult", v) for v in ("omp", "bifp", "bifp_train_dual", "bifp_prune_train", "bifp_prune_train_dual5",
                                            "bifp_prune_train_dual5_lr5", "bifp_prune_train_dual1_lr5")],
}


def provenance(command: str) -> dict:
    """The library's provenance record (versions, git commit and whether the tracked tree was
    dirty, device, machine fingerprint) plus the command that produced the runs."""
    return ex.provenance("cpu") | {"command": command}


def run_one(bench: str, variant: str, seed: int, sparsity: float | None = None, structured: bool | None = None,
            method: str | None = None, kwargs: dict | None = None, budget: float = 1.0) -> dict:
    """One run through the runner's data, dense model and profile arguments, then
    ``pruners.prune``; ``budget`` scales the pruning stage's steps (``RunSpec.budget``)."""
    b = dict(BENCH[bench])
    if sparsity is not None:
        b["sparsity"] = sparsity
    m, kw, st = VARIANTS.get(variant, (method, kwargs or {}, structured))
    kw = dict(kw)
    cons = {k: kw.pop(k) for k in CONSTRAINT_KEYS if k in kw}
    settings = {k: kw.pop(k) for k in SETTING_KEYS if k in kw}
    scope = kw.pop("scope", None)  # an argument of pruners.prune, not a method option
    margin = cons.get("margin")
    spec = ex.RunSpec(method=m, dataset=b["dataset"], sparsity=b["sparsity"], seed=seed, profile="cpu",
                      constraint=b["constraint"], tau=b["tau"], structured=st if structured is None else structured,
                      method_kwargs=kw, constraint_options=cons, settings=settings, budget=budget)
    profile = ex.check_spec(spec)
    torch.set_num_threads(1)
    splits = ex.load_splits(spec, profile)
    dense, _ = ex.pretrain(spec, profile, splits, cache_dir=ex.default_cache_dir(None), device="cpu")
    constraint = _config.run_constraint(spec, profile)
    args = _run_mod._method_arguments(spec, profile) | kw | ({"scope": scope} if scope else {})
    if spec.structured is not None:
        args["structured"] = spec.structured
    train.set_seed(seed)
    t0 = time.perf_counter()
    res = pruners.prune(m, copy.deepcopy(dense), splits, sparsity=spec.sparsity, seed=seed, constraint=constraint,
                        device="cpu", **args)
    wall = time.perf_counter() - t0
    dense_m = {k: train.evaluate(dense, getattr(splits, k), constraint=constraint) for k in ("val", "test")}
    layers = {n: int(mk.flatten(1)[:, 0].sum()) if mk.dim() > 1 else int(mk.sum()) for n, mk in res.masks.items()}
    return {"bench": bench, "variant": variant, "seed": seed, "sparsity": spec.sparsity, "method": m, "budget": budget,
            "method_kwargs": kw, "scope": scope or "global", "constraint_options": cons, "settings": settings, "margin": margin, "structured": spec.structured,
            "val": res.metrics["val"], "test": res.metrics["test"], "dense": dense_m,
            "achieved_sparsity": res.sparsity(), "kept_units_per_layer": layers,
            "empty_layers": [n for n, mk in res.masks.items() if not bool(mk.any())],
            "cost": res.cost, "wall_s": wall,
            "solver": {k: res.config.get(k) for k in ("mask_churn", "swaps_total", "certificate", "selection",
                                                      "split_sizes", "constraint", "protocol")}}


def _done(path: Path) -> set:
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            r = json.loads(line)
            out.add((r["bench"], r["variant"], r["seed"], r["sparsity"]))
    return out


def mean_se(v: list) -> str:
    """``"mean ± SE"`` over the non-None values (SE of the mean over seeds), ``"n/a"`` when none."""
    v = [x for x in v if x is not None]
    if not v:
        return "n/a"
    m = sum(v) / len(v)
    se = (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{m:.4f} ± {se:.4f}"


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    rows = [r for r in rows if "bench" in r]
    keys = sorted({(r["bench"], r["sparsity"], r["variant"]) for r in rows})
    lines = ["| bench | sparsity | variant | seeds | split | accuracy ± se | majority | metric mean ± se | "
             "per-seed value (±2 binomial SE) | seeds met | empty layers |", "|" + "---|" * 11]

    for b, sp, v in keys:
        rs = sorted([r for r in rows if (r["bench"], r["sparsity"], r["variant"]) == (b, sp, v)], key=lambda r: r["seed"])
        for split in ("val", "test"):
            f = [r[split]["feasibility"] for r in rs]
            per = ", ".join(f"{x['value']:.3f}±{2 * x['se']:.3f}" for x in f)
            lines.append(f"| {b} | {sp} | {v} | {len(rs)} | {split} | {mean_se([r[split]['accuracy'] for r in rs])} | "
                         f"{mean_se([r[split]['majority_baseline'] for r in rs])} | {mean_se([x['value'] for x in f])} | {per} | "
                         f"{sum(bool(x['met']) for x in f)}/{len(f)} | {sum(len(r['empty_layers']) > 0 for r in rs)} |")
    return "\n".join(lines)


def runs_file_arguments(ap: argparse.ArgumentParser, out: str) -> None:
    """The options of a script that appends runs to a JSON-lines file and tables it: ``--seeds``,
    ``--out`` (default ``out``) and ``--table`` (print the summary of a results file)."""
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--table", type=Path, default=None, help="print the summary of this results file")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", choices=sorted(GROUPS) + ["structured", "structured_layer", "structured_bifp", "structured_bip"],
                    default=None)
    runs_file_arguments(ap, "benchmarks/results/solver_runs.jsonl")
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    if a.group is None:
        ap.error("give --group or --table")
    os.environ.setdefault("FAIRPRUNE_QUIET", "1")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(a.out)
    if not a.out.exists():
        a.out.write_text("")
    with a.out.open("a") as fh:
        fh.write("# " + json.dumps(provenance("python " + " ".join(sys.argv))) + "\n")
    if a.group == "structured":
        jobs = [("fashion", v, s, sp) for sp in (0.79, 0.893) for s in a.seeds for v in ("bifp_str", "fpgm")]
    elif a.group == "structured_bifp":
        jobs = [("fashion", v, s, sp) for sp in (0.79, 0.893) for s in a.seeds for v in ("bifp_str", "bifp_str_layer")]
    elif a.group == "structured_bip":
        jobs = [("fashion", v, s, sp) for sp in (0.79, 0.893) for s in a.seeds for v in ("bip_str", "bip_str_layer")]
    elif a.group == "structured_layer":
        jobs = [("fashion", "bifp_str_layer", s, sp) for sp in (0.79, 0.893) for s in a.seeds]
    else:
        jobs = [(b, v, s, BENCH[b]["sparsity"]) for s in a.seeds for b, v in GROUPS[a.group]]
    for b, v, s, sp in jobs:
        if (b, v, s, sp) in done:
            continue
        if v == "bifp_str":
            r = run_one(b, v, s, sparsity=sp, structured=True, method="bifp", kwargs={"protocol": "paper"})
        elif v == "bifp_str_layer":
            r = run_one(b, v, s, sparsity=sp, structured=True, method="bifp", kwargs={"scope": "layer", "protocol": "paper"})
        elif v in ("bip_str", "bip_str_layer"):
            r = run_one(b, v, s, sparsity=sp)
        elif v == "fpgm":
            r = run_one(b, v, s, sparsity=sp, structured=True, method="fpgm")
        else:
            r = run_one(b, v, s, sparsity=sp)
        record(a.out, r, f"{b} {v} seed {s} sp {sp}")
    return 0


def record(out: Path, r: dict, label: str) -> None:
    """Append one run to the JSON-lines file ``out`` and print its test line."""
    with out.open("a") as fh:
        fh.write(json.dumps(to_jsonable(r)) + "\n")
    print(f"{label}: test acc {r['test']['accuracy']:.4f} "
          f"{r['test']['feasibility']['metric']} {r['test']['feasibility']['value']:.4f} ({r['wall_s']:.0f}s)",
          flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
