"""Choosing BiFP's default protocol (issue 19, item 8): the two remaining benches.

Adult, Fashion and Fashion structured are measured by ``solver_v3.py``; this script adds

* ``synthetic``: a table drawn from a known distribution, so the best accuracy any classifier of
  ``(x, s)`` can reach under equalized odds ``<= tau`` is computed exactly (below), and each
  method's test accuracy and EO stand beside that optimum;
* ``celeba_fixture``: the CelebA-shaped fixture (``fairprune_lite.data.fixtures``, cartoon faces
  in CelebA's layout, Blond_Hair by Male), through the real CelebA loader at the cpu profile's
  32 x 32, to check the default on image data of that shape. Its labels are drawn, not learned
  from photographs: a dense CNN separates them almost perfectly, so it says whether the default
  breaks anything there, not how fair it makes a real face classifier.

Each run goes through ``solver_measure.run_one`` (the runner's data, dense model and profile), one
JSON line per run after a provenance line, resumable; ``--table`` prints the summary.

The synthetic distribution: ``s ~ Bernoulli(0.3)``; ``y | s ~ Bernoulli(p_s)`` with ``p_0 = 0.45``,
``p_1 = 0.3``; ``x | y, s ~ N(mu, I_8)`` with ``mu_1 = (2y - 1) sep_s / 2`` (``sep_0 = 2``,
``sep_1 = 1.5``: the minority's classes overlap more) and ``mu_2 = 0.5 s``; the features are
``(x, s)``. Within a group the log-odds are ``sep_s x_1 + log(p_s / (1 - p_s))``, so the rates of a
threshold ``t`` on ``x_1`` are ``TPR_s(t) = 1 - Phi(t - sep_s / 2)``, ``FPR_s(t) = 1 - Phi(t + sep_s / 2)``.
The best classifier under EO ``<= tau`` (randomised, as in Hardt et al., 2016) thresholds ``x_1``
per group and mixes thresholds: a linear programme over mixtures of a fine threshold grid per
group (``fair_optimum``). The noise features ``x_3..x_8`` let a network mix, so the optimum is
within reach of the model class.

    OMP_NUM_THREADS=1 python benchmarks/default_choice.py --data /tmp/fp_default \\
        --out benchmarks/results/default_choice.jsonl
    python benchmarks/default_choice.py --table benchmarks/results/default_choice.jsonl
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import solver_measure as sm  # noqa: E402

PI1 = 0.3                     # share of the minority group s = 1
BASE = {0: 0.45, 1: 0.3}      # P(y = 1 | s)
SEP = {0: 2.0, 1: 1.5}        # class separation along x_1, per group
SIZES = {"train": 8000, "val": 2000, "test": 4000}
TAU = 0.05

JOBS: list[tuple[str, str, str, dict]] = [
    ("synthetic", "omp", "omp", {}),
    ("synthetic", "postproc", "postproc", {}),
    ("synthetic", "bifp_paper", "bifp", {"protocol": "paper"}),
    ("synthetic", "bifp_certified", "bifp", {}),  # the library default, nothing named
    ("synthetic", "bifp_certified_k10", "bifp", {"dual_every": 10, "select_every": 10}),
    ("celeba_fixture", "omp", "omp", {}),
    ("celeba_fixture", "bifp_paper", "bifp", {"protocol": "paper"}),
    ("celeba_fixture", "bifp_certified", "bifp", {}),
]


def synthetic_table(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` rows of the distribution above: ``x`` (``[n, 9]``, the last column ``s``), ``y``, ``s``."""
    rng = np.random.default_rng(seed)
    s = (rng.random(n) < PI1).astype(np.int64)
    y = (rng.random(n) < np.where(s == 1, BASE[1], BASE[0])).astype(np.int64)
    x = rng.standard_normal((n, 8))
    x[:, 0] += (2 * y - 1) * np.where(s == 1, SEP[1], SEP[0]) / 2
    x[:, 1] += 0.5 * s
    return {"x": np.concatenate([x, s[:, None]], 1).astype(np.float32), "y": y, "s": s}


def _phi(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)


def fair_optimum(tau: float, grid: int = 4001) -> dict[str, float]:
    """The best population accuracy of any (randomised) classifier of ``(x, s)`` with equalized
    odds ``<= tau``, and the accuracy and EO of the unconstrained Bayes classifier."""
    from scipy.optimize import linprog

    t = np.concatenate([[-np.inf], np.linspace(-8, 8, grid), [np.inf]])
    tpr = {g: 1 - _phi(t - SEP[g] / 2) for g in (0, 1)}
    fpr = {g: 1 - _phi(t + SEP[g] / 2) for g in (0, 1)}
    share = {0: 1 - PI1, 1: PI1}
    k = len(t)
    # maximise sum_g share_g [p_g TPR_g + (1 - p_g)(1 - FPR_g)] over mixture weights w_g (k each)
    c = np.concatenate([-share[g] * (BASE[g] * tpr[g] - (1 - BASE[g]) * fpr[g]) for g in (0, 1)])
    a_ub, b_ub = [], []
    for rate in (tpr, fpr):
        for sign in (1, -1):
            a_ub.append(np.concatenate([sign * rate[0], -sign * rate[1]]))
            b_ub.append(tau)
    a_eq = np.zeros((2, 2 * k))
    a_eq[0, :k] = 1
    a_eq[1, k:] = 1
    res = linprog(c, A_ub=np.array(a_ub), b_ub=b_ub, A_eq=a_eq, b_eq=[1, 1], bounds=(0, None), method="highs")
    if not res.success:
        raise RuntimeError(f"the fair optimum's linear programme failed: {res.message}")
    const = sum(share[g] * (1 - BASE[g]) for g in (0, 1))
    fair_acc = float(-res.fun + const)
    # the unconstrained Bayes rule: threshold x_1 at -log(p / (1 - p)) / sep in each group
    bayes = {g: -math.log(BASE[g] / (1 - BASE[g])) / SEP[g] for g in (0, 1)}
    b_tpr = {g: float(1 - _phi(np.array(bayes[g] - SEP[g] / 2))) for g in (0, 1)}
    b_fpr = {g: float(1 - _phi(np.array(bayes[g] + SEP[g] / 2))) for g in (0, 1)}
    b_acc = sum(share[g] * (BASE[g] * b_tpr[g] + (1 - BASE[g]) * (1 - b_fpr[g])) for g in (0, 1))
    b_eo = max(abs(b_tpr[0] - b_tpr[1]), abs(b_fpr[0] - b_fpr[1]))
    majority = max(sum(share[g] * BASE[g] for g in (0, 1)), 1 - sum(share[g] * BASE[g] for g in (0, 1)))
    return {"tau": tau, "fair_accuracy": fair_acc, "bayes_accuracy": float(b_acc), "bayes_eo": float(b_eo),
            "majority": float(majority)}


def make_data(folder: Path) -> dict[str, str]:
    """Write the synthetic table (``synthetic_eo.npz``, fixed train/val/test) and the CelebA-shaped
    fixture (2,000 / 500 / 1,000 images) under ``folder``; returns the dataset arguments."""
    from fairprune_lite.data.fixtures import make_fake_celeba

    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / "synthetic_eo.npz"
    if not npz.exists():
        n = sum(SIZES.values())
        d = synthetic_table(n, seed=0)
        split = np.array(["train"] * SIZES["train"] + ["val"] * SIZES["val"] + ["test"] * SIZES["test"])
        np.savez(npz, **d, split=split)
    if not (folder / "celeba" / "list_attr_celeba.txt").exists():
        make_fake_celeba(folder, (2000, 500, 1000), seed=0)
    return {"synthetic": str(npz), "celeba": str(folder)}


def table(path: Path) -> str:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]
    out = ["| bench | variant | seeds | val acc | test acc ± SE | test majority | val metric | test metric ± SE | "
           "near majority (test) | certified | not certifiable (rows needed) |", "|" + "---|" * 11]
    keys: list[tuple[str, str]] = []
    for r in rows:
        if (r["bench"], r["variant"]) not in keys:
            keys.append((r["bench"], r["variant"]))
    for b, v in keys:
        rs = [r for r in rows if (r["bench"], r["variant"]) == (b, v)]
        certs = [c for c in ((r.get("solver") or {}).get("certificate") for r in rs) if c]
        near = sum(r["test"]["accuracy"] < r["test"]["majority_baseline"] + 0.02 for r in rs)
        small = [c["rows_needed"] for c in certs if c.get("bound") is None]
        out.append(
            f"| {b} | {v} | {len(rs)} | {sm.mean_se([r['val']['accuracy'] for r in rs])} | "
            f"{sm.mean_se([r['test']['accuracy'] for r in rs])} | {rs[0]['test']['majority_baseline']:.3f} | "
            f"{sm.mean_se([r['val']['feasibility']['value'] for r in rs])} | "
            f"{sm.mean_se([r['test']['feasibility']['value'] for r in rs])} | {near}/{len(rs)} | "
            f"{sum(bool(c['certified']) for c in certs)}/{len(certs) if certs else '-'} | "
            f"{f'{len(small)} ({min(small)}-{max(small)})' if small else '-'} |")
    opt = fair_optimum(TAU)
    out.append("")
    out.append(f"synthetic, population values: best accuracy of any classifier of (x, s) with EO <= {TAU}: "
               f"{opt['fair_accuracy']:.4f}; unconstrained Bayes accuracy {opt['bayes_accuracy']:.4f} at EO "
               f"{opt['bayes_eo']:.4f}; majority class {opt['majority']:.4f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sm.runs_file_arguments(ap, "benchmarks/results/default_choice.jsonl")
    ap.add_argument("--data", type=Path, default=Path("/tmp/fairprune_default_choice"),
                    help="folder for the generated data (outside the repository)")
    ap.add_argument("--only", nargs="*", default=None, help="benches to run (default: all)")
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    os.environ.setdefault("FAIRPRUNE_QUIET", "1")
    where = make_data(a.data)
    os.environ["FAIRPRUNE_DATA_ROOT"] = where["celeba"]
    sm.BENCH.update({
        "synthetic": dict(dataset=where["synthetic"], sparsity=0.9, constraint="equalized_odds", tau=TAU),
        "celeba_fixture": dict(dataset="celeba", sparsity=0.9, constraint="accuracy_gap", tau=0.02),
    })
    done = set()
    if a.out.exists():
        done = {(r["bench"], r["variant"], r["seed"]) for r in
                (json.loads(x) for x in a.out.read_text().splitlines() if x.strip() and not x.startswith("#"))}
    with a.out.open("a") as fh:
        fh.write("# " + json.dumps(sm.provenance("python " + " ".join(sys.argv))) + "\n")
    for seed in a.seeds:
        for bench, variant, method, opts in JOBS:
            if (a.only and bench not in a.only) or (bench, variant, seed) in done:
                continue
            r = sm.run_one(bench, variant, seed, method=method, kwargs=opts)
            sm.record(a.out, r, f"{bench} {variant} seed {seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
