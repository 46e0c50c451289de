"""Structured BiFP on ResNet-10 and MobileNetV2 (BatchNorm after every conv): no empty layer.

A check, not a benchmark of accuracy: freshly initialised models (ResNet-10 width 16,
MobileNetV2 width 0.25) on 256 random 3x32x32 images, 8 BiFP steps at the Lottery levels
0.79 and 0.893 (channels, global scope). Records, per model and level, the layers with a BN
gate, the layers left empty and the achieved weight sparsity. Writes
``benchmarks/results/solver_structured_deep.json`` (or ``--out``).

    OMP_NUM_THREADS=1 python benchmarks/solver_structured_deep.py [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from solver_measure import provenance  # noqa: E402

from fairprune_lite import bilevel, masks  # noqa: E402
from fairprune_lite.constraints import FairnessConstraint  # noqa: E402
from fairprune_lite.data import FairDataset  # noqa: E402
from fairprune_lite.models import make_model  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "solver_structured_deep.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULT, help="JSON file to write (default benchmarks/results/solver_structured_deep.json)")
    args = ap.parse_args(argv)
    if args.out.is_dir():
        raise ValueError(f"--out must be a file path, not a folder: {args.out}")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 32, 32, generator=g)
    s = (torch.rand(256, generator=g) < 0.3).long()
    y = (x[:, 0, 8:24, 8:24].mean((1, 2)) > 0).long()
    ds = FairDataset(x, y, s, name="random_images")
    out = {"provenance": provenance("python " + " ".join(sys.argv)), "runs": []}
    for name, w in (("resnet10", 16), ("mobilenetv2", 0.25)):
        m = make_model(name, in_shape=(3, 32, 32), width=w, seed=0)
        layers = masks.prunable_layers(m, prune_last=False)
        gated = len(masks.following_norms(m, layers))
        for sp in (0.79, 0.893):
            res = bilevel.bifp(m, ds, sparsity=sp, structured=True, steps=8, batch_size=64,
                               constraint=FairnessConstraint("accuracy_gap", 0.02))
            empty = [n for n, mk in res.masks.items() if not bool(mk.any())]
            row = {"model": name, "width": w, "sparsity": sp, "layers": len(layers), "bn_gated_layers": gated,
                   "empty_layers": empty, "weight_sparsity": res.sparsity()}
            out["runs"].append(row)
            print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
