"""Per-step wall time of BiFP / BiP against a masked SGD step on the Adult MLP (cpu profile).

Every variant runs ``--steps`` steps on the cpu profile's Adult val split (batch 128, MLP of
width 64, 90% sparsity, one thread) after ``--warmup`` untimed steps; the ratio is its time per
step over masked SGD's (``train.fit`` on the masked model), measured in the same process, each
variant timed ``--repeats`` times (median). Writes ``benchmarks/results/solver_cost.json``.

    OMP_NUM_THREADS=1 python benchmarks/solver_cost.py
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from solver_measure import provenance  # noqa: E402

from fairprune_lite import bilevel, masks, train  # noqa: E402
from fairprune_lite import experiments as ex
from fairprune_lite.constraints import FairnessConstraint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "solver_cost.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = ex.RunSpec(method="bifp", dataset="adult", sparsity=0.9, profile="cpu", constraint="equalized_odds", tau=0.05)
    profile = ex.check_spec(spec)
    splits = ex.load_splits(spec, profile)
    dense, _ = ex.pretrain(spec, profile, splits, cache_dir=ex.default_cache_dir(None), device="cpu")
    loader = train.make_loader(splits.val, 128, shuffle=True, seed=0)

    def sgd(n):
        m = copy.deepcopy(dense)
        masks.apply_masks(m, masks.MaskScores.from_masks(m, masks.MaskScores(m, 0.9).binary_masks()))
        train.fit(m, loader, steps=n, lr=0.01)

    def solver(update, fair):
        def go(n):
            c = FairnessConstraint("equalized_odds", 0.05, dual_lr=0.5) if fair else None
            bilevel.bifp(dense, loader, sparsity=0.9, steps=n, update=update, constraint=c, protocol="paper")
        return go

    variants = {"masked_sgd": sgd, "bip_joint": solver("joint", False), "bip_alternating": solver("alternating", False),
                "bifp_joint": solver("joint", True), "bifp_alternating": solver("alternating", True)}
    per_step = {}
    for name, fn in variants.items():
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn(a.warmup)
            t1 = time.perf_counter()
            fn(a.warmup + a.steps)
            t2 = time.perf_counter()
            times.append(((t2 - t1) - (t1 - t0)) / a.steps)
        per_step[name] = statistics.median(times)
        print(f"{name}: {1e3 * per_step[name]:.3f} ms/step", flush=True)
    base = per_step["masked_sgd"]
    out = {"provenance": provenance("python " + " ".join(sys.argv)), "steps": a.steps, "repeats": a.repeats,
           "ms_per_step": {k: 1e3 * v for k, v in per_step.items()},
           "ratio_to_masked_sgd": {k: v / base for k, v in per_step.items()}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["ratio_to_masked_sgd"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
