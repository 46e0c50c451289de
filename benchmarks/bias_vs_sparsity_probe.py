"""Does magnitude pruning make the "fashion" benchmark less fair as sparsity grows?

Protocol (one run per seed and minority share): train the small CNN on ``train``; for each
sparsity (0 included), prune a copy with ``torch.nn.utils.prune.global_unstructured`` (L1 magnitude over all
conv and linear weights), fine-tune it for ``--finetune-epochs`` on ``--finetune-split``
(default ``val``, the paper's protocol) and evaluate on ``test``. Prints mean and standard
deviation over seeds of accuracy, per-group accuracy and the accuracy gap |acc(s=1) - acc(s=0)|,
next to the majority-class baseline, and writes the raw numbers as JSON.

    python benchmarks/bias_vs_sparsity_probe.py --seeds 0 1 2 --shares 0.05 0.1
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from fairprune_lite.data import load_dataset
from fairprune_lite.models import make_model


def batches(ds, batch_size, shuffle, gen=None):
    n = len(ds)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        yield ds.x[idx], ds.y[idx], ds.s[idx]


def train_epochs(model, ds, epochs, lr, seed):
    """Adam with a cosine learning-rate decay to 0 over ``epochs``, batch size 128."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(ds) + 127) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for x, y, _s in batches(ds, 128, True, gen):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(x), y.float()).backward()
            opt.step()
            sched.step()


@torch.no_grad()
def evaluate(model, ds):
    model.eval()
    pred = torch.cat([(model(x) > 0).long() for x, _, _ in batches(ds, 1000, False)])
    ok = (pred == ds.y).float()
    a1, a0 = ok[ds.s == 1].mean().item(), ok[ds.s == 0].mean().item()
    return {"acc": ok.mean().item(), "acc_s1": a1, "acc_s0": a0, "gap": abs(a1 - a0),
            "pos_rate": pred.float().mean().item()}


def run(seed, share, sparsities, args):
    splits = load_dataset("fashion", seed=seed, minority_share=share, correlation=args.correlation)
    torch.manual_seed(seed)
    dense = make_model("cnn", in_shape=splits.input_shape, width=args.width, seed=seed)
    t = time.time()
    train_epochs(dense, splits.train, args.epochs, 1e-3, seed)
    dense_test = evaluate(dense, splits.test)
    epoch_s = (time.time() - t) / args.epochs
    rows = []
    ft = getattr(splits, args.finetune_split)
    for sp in sparsities:
        model = copy.deepcopy(dense)
        # sparsity 0 gets the same fine-tuning, so every row has had the same training
        params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sp)
        train_epochs(model, ft, args.finetune_epochs, args.finetune_lr, seed + 1000)
        rows.append({"seed": seed, "share": share, "sparsity": sp, **evaluate(model, splits.test)})
    base = max(splits.test.y.float().mean().item(), 1 - splits.test.y.float().mean().item())
    rows.append({"seed": seed, "share": share, "sparsity": "dense, no fine-tune", **dense_test})
    return rows, base, epoch_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0, 0.5, 0.8, 0.9, 0.95, 0.98])
    p.add_argument("--correlation", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-lr", type=float, default=1e-3)
    p.add_argument("--finetune-split", choices=["train", "val"], default="val")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/bias_vs_sparsity_probe.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows, bases, epoch_times = [], {}, []
    for share in args.shares:
        for seed in args.seeds:
            r, base, es = run(seed, share, args.sparsities, args)
            rows += r
            bases[share] = base
            epoch_times.append(es)
            print(f"share {share} seed {seed}: " + ", ".join(f"{x['sparsity']}: acc {x['acc']:.3f} gap {x['gap']:.3f}" for x in r), flush=True)
    print(f"\none training epoch on train: {np.mean(epoch_times):.2f} s ({args.threads} threads)")
    print(f"fine-tune: {args.finetune_epochs} epoch(s) on {args.finetune_split}; {len(args.seeds)} seeds; "
          f"correlation {args.correlation}; pretrain {args.epochs} epochs\n")
    print("| minority share | sparsity | accuracy | acc s=1 (inverted) | acc s=0 | gap (points) | majority baseline |")
    print("|---|---|---|---|---|---|---|")
    for share in args.shares:
        for sp in ["dense, no fine-tune"] + args.sparsities:
            sel = [r for r in rows if r["share"] == share and r["sparsity"] == sp]
            m = {k: (np.mean([r[k] for r in sel]), np.std([r[k] for r in sel])) for k in ("acc", "acc_s1", "acc_s0", "gap")}
            print(f"| {share} | {sp} | {100*m['acc'][0]:.1f} ± {100*m['acc'][1]:.1f} | {100*m['acc_s1'][0]:.1f} ± {100*m['acc_s1'][1]:.1f} "
                  f"| {100*m['acc_s0'][0]:.1f} ± {100*m['acc_s0'][1]:.1f} | {100*m['gap'][0]:.1f} ± {100*m['gap'][1]:.1f} | {100*bases[share]:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                                    "rows": rows, "majority_baseline": bases}, indent=1))


if __name__ == "__main__":
    main()
