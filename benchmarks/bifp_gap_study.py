"""Does the constrained solver (BiFP) reduce the fairness gap that pruning opens, and at what cost?

Protocol (the paper's, at CPU scale), per seed:

* ``fashion`` (the controlled CPU image benchmark, inverted-intensity minority): the small CNN is
  pretrained on ``train`` (Adam); then, at each sparsity, three methods get the same budget of
  ``--prune-epochs`` passes over ``val`` (SGD, momentum 0.9, same learning rate for the weights):

  - ``omp``: one-shot global magnitude pruning (``MaskScores(init="magnitude")``) + masked
    fine-tuning with :func:`fairprune_lite.train.fit`;
  - ``bip``: :func:`fairprune_lite.bilevel.bip` (mask scores by the implicit gradient, weights
    trained jointly);
  - ``bifp``: :func:`fairprune_lite.bilevel.bifp` with an accuracy-gap constraint ``<= tau``
    (proxy-Lagrangian, default surrogate and multiplier window).

  Everything is reported on ``test``: accuracy, the majority-class baseline, the accuracy gap
  and whether ``gap <= tau``.
* ``adult`` (MLP): the same three methods with an equalized-odds constraint for BiFP (Adult's
  accuracy gap is set by the groups' base rates, so a constant predictor has a large one).

``--cost`` measures the per-iteration cost of each implicit-gradient variant and update mode:
forward / backward passes per upper step (from the pass counter) and wall time per step relative
to a masked SGD step (:func:`train.fit` on a masked model) on the fashion CNN, batch 128.

Writes the raw per-seed numbers and the summary to ``--out`` (JSON) and prints markdown tables.

    python benchmarks/bifp_gap_study.py --seeds 0 1 2 3 4 --out runs/bifp_gap_study.json
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from fairprune_lite import bilevel, train
from fairprune_lite.constraints import FairnessConstraint
from fairprune_lite.data import load_dataset
from fairprune_lite.fairness import METRIC_OF_KIND
from fairprune_lite.masks import MaskScores, apply_masks, remove_masks
from fairprune_lite.models import make_model
from fairprune_lite.result import to_jsonable

METRICS = ("accuracy", "accuracy_gap", "equalized_odds_difference", "demographic_parity_difference",
           "majority_baseline")


def report(model, ds) -> dict:
    r = train.evaluate(model, ds)
    return {k: float(r[k]) for k in METRICS}


def omp(dense, data, *, sparsity, epochs, lr, batch_size, seed):
    """One-shot global magnitude pruning, then masked fine-tuning (the OMP reference)."""
    train.set_seed(seed)
    model = copy.deepcopy(dense)
    apply_masks(model, MaskScores(model, sparsity, init="magnitude"))
    counter = train.PassCounter()
    train.fit(model, train.make_loader(data, batch_size, shuffle=True, seed=seed), epochs=epochs, lr=lr,
              weight_decay=5e-4, counter=counter)
    remove_masks(model, bake=True)
    model.eval()
    return model, counter.as_dict()


def run_setting(name, splits, dense, *, sparsity, kind, tau, args, seed, batch_size, lr):
    rows = []
    dense_rep = report(dense, splits.test)
    common = dict(sparsity=sparsity, epochs=args.prune_epochs, batch_size=batch_size, seed=seed, alpha=lr,
                  beta=args.beta, update=args.update)
    t = time.perf_counter()
    m, cost = omp(dense, splits.val, sparsity=sparsity, epochs=args.prune_epochs, lr=lr, batch_size=batch_size,
                  seed=seed)
    rows.append({"method": "omp", **report(m, splits.test), "wall_s": time.perf_counter() - t, "cost": cost})
    t = time.perf_counter()
    r = bilevel.bip(dense, splits.val, **common)
    rows.append({"method": "bip", **report(r.model, splits.test), "wall_s": time.perf_counter() - t, "cost": r.cost})
    t = time.perf_counter()
    c = FairnessConstraint(kind, tau, dual_lr=args.dual_lr, temperature=args.temperature)
    r = bilevel.bifp(dense, splits.val, constraint=c, protocol="paper", **common)
    val_rep = report(r.model, splits.val)
    rows.append({"method": "bifp", **report(r.model, splits.test), "wall_s": time.perf_counter() - t,
                 "cost": r.cost, "multipliers": c.multipliers.tolist(), "skipped": [c.skipped_terms, c.skipped_updates],
                 "val_gap": val_rep[_gap_key(kind)]})
    for row in rows:
        row.update(dataset=name, seed=seed, sparsity=sparsity, kind=kind, tau=tau,
                   tau_met=row[_gap_key(kind)] <= tau, dense=dense_rep)
    return rows


def _gap_key(kind):
    return METRIC_OF_KIND[kind]


def pretrain(splits, arch, epochs, seed, lr=1e-3, batch_size=128):
    train.set_seed(seed)
    shape = splits.train.input_shape
    model = make_model(arch, in_shape=shape, seed=seed)
    train.pretrain(model, splits.train, epochs=epochs, lr=lr, optimizer="adam", batch_size=batch_size, seed=seed)
    model.eval()
    return model


def fashion(seed, args):
    splits = load_dataset("fashion", seed=seed)
    dense = pretrain(splits, "cnn", args.pretrain_epochs, seed)
    rows = []
    for sp in args.sparsities:
        rows += run_setting("fashion", splits, dense, sparsity=sp, kind="accuracy_gap", tau=args.tau, args=args,
                            seed=seed, batch_size=128, lr=args.lr)
    return rows


def adult(seed, args):
    splits = load_dataset("adult", seed=seed)
    dense = pretrain(splits, "mlp", args.adult_pretrain_epochs, seed, batch_size=256)
    return run_setting("adult", splits, dense, sparsity=args.adult_sparsity, kind="equalized_odds",
                       tau=args.adult_tau, args=args, seed=seed, batch_size=256, lr=args.lr)


# ---------------------------------------------------------------------------------------------
def cost_study(args):
    """Passes per upper step and wall time per step relative to a masked SGD step."""
    splits = load_dataset("fashion", seed=0)
    dense = pretrain(splits, "cnn", 1, 0)
    steps, bs = args.cost_steps, 128
    loader = train.make_loader(splits.val, bs, shuffle=True, seed=0, drop_last=True)

    def sgd_time():
        model = copy.deepcopy(dense)
        apply_masks(model, MaskScores(model, 0.9))
        train.fit(model, loader, steps=3, lr=0.01)  # warm-up
        t = time.perf_counter()
        train.fit(model, loader, steps=steps, lr=0.01)
        return (time.perf_counter() - t) / steps

    out = []
    variants = [("bip", None, None)] + [("bifp", True, True), ("bifp w/o m", False, True), ("bifp w/o w", True, False)]
    base = [sgd_time()]
    for update in ("alternating", "joint"):
        for ig in bilevel.IG_VARIANTS:
            for label, fm, fw in variants:
                c = None if fm is None else FairnessConstraint("accuracy_gap", 0.02, init_multiplier=1.0)
                kw = dict(sparsity=0.9, batch_size=bs, seed=0, update=update, ig=ig, protocol="paper")
                if c is not None:
                    kw.update(constraint=c, fair_mask=fm, fair_weights=fw)
                bilevel.bifp(dense, loader, steps=3, **kw)  # warm-up
                t = time.perf_counter()
                r = bilevel.bifp(dense, loader, steps=steps, **kw)
                per = (time.perf_counter() - t) / steps
                out.append({"update": update, "ig": ig, "variant": label,
                            "forward_per_step": r.cost["forward_passes"] / steps,
                            "backward_per_step": r.cost["backward_passes"] / steps, "s_per_step": per})
        base.append(sgd_time())
    sgd = statistics.mean(base)
    for row in out:
        row["ratio_vs_masked_sgd"] = row["s_per_step"] / sgd
    return {"masked_sgd_s_per_step": sgd, "masked_sgd_samples": base, "rows": out}


# ---------------------------------------------------------------------------------------------
def summarise(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["sparsity"], r["method"]), []).append(r)
    out = []
    for (ds, sp, meth), rs in groups.items():
        key = _gap_key(rs[0]["kind"])

        def ms(k, rs=rs):
            v = [r[k] for r in rs]
            return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

        out.append({"dataset": ds, "sparsity": sp, "method": meth, "n": len(rs), "gap_metric": key,
                    "accuracy": ms("accuracy"), "gap": ms(key), "majority_baseline": ms("majority_baseline"),
                    "accuracy_gap": ms("accuracy_gap"), "tau": rs[0]["tau"],
                    "tau_met": sum(bool(r["tau_met"]) for r in rs),
                    "dense_accuracy": statistics.mean(r["dense"]["accuracy"] for r in rs),
                    "dense_gap": statistics.mean(r["dense"][key] for r in rs),
                    "wall_s": statistics.mean(r["wall_s"] for r in rs)})
    return out


def table(summary):
    f = lambda p: f"{100 * p[0]:.1f} ± {100 * p[1]:.1f}"  # noqa: E731
    lines = ["| data | sparsity | method | test accuracy | majority baseline | gap (metric) | accuracy gap | "
             "tau met (seeds) | dense acc / gap | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['dataset']} | {s['sparsity']} | {s['method']} | {f(s['accuracy'])} | "
                     f"{100 * s['majority_baseline'][0]:.1f} | {f(s['gap'])} ({s['gap_metric']}) | {f(s['accuracy_gap'])} | "
                     f"{s['tau_met']}/{s['n']} (tau={s['tau']}) | {100 * s['dense_accuracy']:.1f} / "
                     f"{100 * s['dense_gap']:.1f} | {s['wall_s']:.1f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--datasets", nargs="+", default=["fashion", "adult"], choices=["fashion", "adult"])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--pretrain-epochs", type=int, default=3)
    ap.add_argument("--prune-epochs", type=int, default=4, help="passes over val for every method")
    ap.add_argument("--lr", type=float, default=0.01, help="weight learning rate (SGD) of all methods")
    ap.add_argument("--beta", type=float, default=0.1, help="mask-score learning rate (BiP/BiFP)")
    ap.add_argument("--update", default="joint", choices=bilevel.UPDATES)
    ap.add_argument("--tau", type=float, default=0.02)
    ap.add_argument("--dual-lr", type=float, default=0.05)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--adult-pretrain-epochs", type=int, default=2)
    ap.add_argument("--adult-sparsity", type=float, default=0.9)
    ap.add_argument("--adult-tau", type=float, default=0.05)
    ap.add_argument("--cost", action="store_true", help="also run the per-iteration cost study")
    ap.add_argument("--cost-only", action="store_true")
    ap.add_argument("--cost-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bifp_gap_study.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    if not args.cost_only:
        for seed in args.seeds:
            for ds in args.datasets:
                rows += fashion(seed, args) if ds == "fashion" else adult(seed, args)
                print(f"seed {seed} {ds} done at {time.perf_counter() - t0:.0f}s", flush=True)
                partial = Path(args.out).with_suffix(".partial.json")  # survives an interrupted study
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps(to_jsonable({"args": vars(args), "rows": rows})))
    summary = summarise(rows)
    cost = cost_study(args) if (args.cost or args.cost_only) else None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    result = {"args": vars(args), "commit": commit, "torch": torch.__version__, "platform": platform.platform(),
              "total_wall_s": time.perf_counter() - t0, "rows": rows, "summary": summary, "cost": cost}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(to_jsonable(result), indent=1))
    if summary:
        print(table(summary))
    if cost:
        print(f"\nmasked SGD step: {1000 * cost['masked_sgd_s_per_step']:.1f} ms")
        print("| update | ig | variant | fwd/step | bwd/step | ms/step | ratio vs masked SGD |\n|---|---|---|---|---|---|---|")
        for r in cost["rows"]:
            print(f"| {r['update']} | {r['ig']} | {r['variant']} | {r['forward_per_step']:.0f} | "
                  f"{r['backward_per_step']:.0f} | {1000 * r['s_per_step']:.1f} | {r['ratio_vs_masked_sgd']:.2f} |")
    print(f"total {time.perf_counter() - t0:.0f}s -> {args.out}")


if __name__ == "__main__":
    main()
