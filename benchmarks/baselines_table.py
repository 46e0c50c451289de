"""Accuracy and accuracy gap on test of every pruning method, at Lottery sparsities, over seeds.

A measurement, not a test: for each dataset (Adult with the MLP, the CPU image benchmark
"fashion" with the small CNN of the ``cpu`` profile) and each seed, the dense model is pretrained
on train (:func:`fairprune_lite.experiments.pretrain`, cached), then every method of
:data:`fairprune_lite.pruners.METHODS` prunes and fine-tunes it on val through
:func:`fairprune_lite.pruners.prune` and is evaluated on test. The table gives mean ± std over
seeds of test accuracy and test accuracy gap (Def. 1), beside the dense model and the
majority-class baseline (the constant predictor of the test split's majority label, as
:func:`fairprune_lite.fairness.fairness_report` defines it), and the mean training iterations
each method spent in the pruning stage.

The budgets are deliberately small (2 shared CPU cores): ``--finetune-steps`` of masked SGD after
pruning, the same number of steps for BiP/BiFP and for the retraining of every IMP round (so
IMP's iterations grow with its number of rounds; the table shows them).
Results are written after every run (``--out``), so an interrupted run keeps what it measured.

    python benchmarks/baselines_table.py --out /tmp/baselines_table.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairprune_lite import experiments, pruners, train  # noqa: E402
from fairprune_lite.constraints import FairnessConstraint  # noqa: E402
from fairprune_lite.experiments.config import DEFAULT_TAU  # noqa: E402

SPARSITIES = [0.2, 0.488, 0.672, 0.79, 0.866, 0.893]
DATASETS = {"adult": {}, "fashion": {"target": "tops"}}
# named variants (label -> (method, prune() keyword arguments)), selectable with --methods
VARIANTS = {"fairgrape_paper": ("fairgrape", {"rate": 0.1, "chunks": None}),
            "omp_layer": ("omp", {"scope": "layer"})}  # the per-layer scope FairGRAPE and FPGM use


def _method_options(method: str, args: argparse.Namespace) -> dict:
    """A bi-level method trains inside its own ``steps``: the fine-tuning budget is its length."""
    if pruners.METHODS[method].bilevel:
        return {"steps": args.finetune_steps}
    return {}


def _honours_accuracy_gap(method: str) -> bool:
    kinds = pruners.METHODS[VARIANTS.get(method, (method, {}))[0]].constraint_kinds
    return kinds is None or "accuracy_gap" in kinds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--methods", nargs="+", default=[m for m in pruners.METHODS if _honours_accuracy_gap(m)],
                   help=f"registered methods or variants {list(VARIANTS)} (default: every method that can "
                        f"honour the accuracy-gap constraint)")
    p.add_argument("--sparsities", nargs="+", type=float, default=SPARSITIES)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--finetune-steps", type=int, default=30)
    p.add_argument("--tau", type=float, default=DEFAULT_TAU)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--cache", default="/tmp/baselines_table_cache")
    p.add_argument("--out", default="/tmp/baselines_table.json")
    p.add_argument("--table-from", nargs="+", metavar="JSON",
                   help="only print the table of stored outputs of this script (merged; no runs)")
    args = p.parse_args(argv)
    if args.table_from:
        dense_rows, rows = [], []
        for f in args.table_from:
            d = json.loads(Path(f).read_text())
            dense_rows += [r for r in d["dense"] if r not in dense_rows]
            rows += d["runs"]
        print(table(dense_rows, rows, sorted({r["sparsity"] for r in rows})))
        return 0
    for m in args.methods:
        if m not in pruners.METHODS and m not in VARIANTS:
            raise ValueError(f"--methods: unknown method {m!r}; choose from {list(pruners.METHODS) + list(VARIANTS)}")
    torch.set_num_threads(1)
    profile = experiments.get_profile(args.profile)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    dense_rows: list[dict] = []
    t_all = time.perf_counter()
    for ds, opts in DATASETS.items():
        if ds not in args.datasets:
            continue
        for seed in range(args.seeds):
            spec = experiments.RunSpec(method="omp", dataset=ds, sparsity=0.0, seed=seed, **opts)
            splits = experiments.load_splits(spec, profile)
            dense, pre = experiments.pretrain(spec, profile, splits, cache_dir=args.cache)
            dm = train.evaluate(dense, splits.test)
            dense_rows.append({"dataset": ds, "seed": seed, "accuracy": dm["accuracy"],
                               "accuracy_gap": dm["accuracy_gap"], "majority_baseline": dm["majority_baseline"],
                               "majority_baseline_gap": dm["majority_baseline_gap"],
                               "model": pre["model"], "n": [len(d) for d in splits]})
            for label in args.methods:
                method, variant_opts = VARIANTS.get(label, (label, {}))
                for sp in args.sparsities:
                    t0 = time.perf_counter()
                    constraint = FairnessConstraint("accuracy_gap", args.tau, dual_lr=profile.dual_lr)
                    r = pruners.prune(method, dense, splits, sparsity=sp, seed=seed, constraint=constraint,
                                      finetune_steps=args.finetune_steps, batch_size=profile.batch_size,
                                      lr=profile.finetune_lr, evaluate_on=("test",),
                                      **_method_options(method, args), **variant_opts)
                    m = r.metrics["test"]
                    rows.append({"dataset": ds, "seed": seed, "method": label, "sparsity": sp,
                                 "accuracy": m["accuracy"], "accuracy_gap": m["accuracy_gap"],
                                 "degradation_gap": m.get("degradation_gap"),
                                 "iterations": r.cost["iterations"], "forward_passes": r.cost["forward_passes"],
                                 "backward_passes": r.cost["backward_passes"], "data": r.cost["data"],
                                 "wall_s": time.perf_counter() - t0})
                    out.write_text(json.dumps({"args": vars(args), "dense": dense_rows, "runs": rows}, indent=1))
            print(f"[{ds} seed {seed}] done, {time.perf_counter() - t_all:.0f} s so far", flush=True)
    print(table(dense_rows, rows, args.sparsities))
    print(f"total {time.perf_counter() - t_all:.0f} s", flush=True)
    return 0


def _ms(values: list[float]) -> str:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if not len(v):
        return "-"
    return f"{v.mean():.3f}±{v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def table(dense_rows: list[dict], rows: list[dict], sparsities: list[float]) -> str:
    """Markdown tables (one per dataset): accuracy | accuracy gap on test, mean±std over seeds."""
    lines = []
    for ds in dict.fromkeys(r["dataset"] for r in dense_rows):
        d = [r for r in dense_rows if r["dataset"] == ds]
        lines.append(f"\n### {ds} ({d[0]['model']}, train/val/test {d[0]['n']}, {len(d)} seeds)\n")
        lines.append(f"dense: acc {_ms([r['accuracy'] for r in d])}, gap {_ms([r['accuracy_gap'] for r in d])}; "
                     f"majority class: acc {_ms([r['majority_baseline'] for r in d])}, "
                     f"gap {_ms([r['majority_baseline_gap'] for r in d])}\n")
        lines.append("| method | iters | " + " | ".join(f"{s:g}" for s in sparsities) + " |")
        lines.append("|---|---|" + "---|" * len(sparsities))
        methods = list(dict.fromkeys(r["method"] for r in rows if r["dataset"] == ds))
        for m in methods:
            cells = []
            its = [r["iterations"] for r in rows if r["dataset"] == ds and r["method"] == m]
            for s in sparsities:
                rr = [r for r in rows if r["dataset"] == ds and r["method"] == m and r["sparsity"] == s]
                cells.append(f"{_ms([r['accuracy'] for r in rr])} / {_ms([r['accuracy_gap'] for r in rr])}"
                             if rr else "-")
            lines.append(f"| {m} | {np.mean(its):.0f} | " + " | ".join(cells) + " |")
    lines.append("\ncells: test accuracy / test accuracy gap, mean±std over seeds; iters: mean training "
                 "iterations of the pruning stage (fine-tuning, fair training, IMP rounds, bi-level steps).")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
