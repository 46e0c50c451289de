"""Image input speed: batched reads from the uint8 cache against what a ResNet-10 step consumes.

A fake CelebA in the real layout (``fairprune_lite.data.fixtures``, cartoon faces of 178 x 218
pixels) is decoded once into the loader's uint8 cache (64 x 64); then, in one process, on one
thread unless ``--threads`` says otherwise:

* ``per_item``: what ``loading.BatchLoader`` does for a dataset whose images are not one tensor
  (every image read and converted alone, then stacked) - the input path before batched reads;
* ``batch``: ``FairDataset.batch`` - one gather from the memory-mapped cache, one conversion
  of the block (the path after);
* ``batch_in_ram``: the same with the cache read into memory first (to see what the memory map
  costs once the file is in the page cache);
* ``jpeg``: decoding the JPEG files on access (no cache), for reference;
* ``resnet10_step``: images/s a ResNet-10 training step (forward, backward, SGD) consumes on the
  chosen device, with ``train.fit`` on 64 x 64 inputs.

Every reader goes through the same shuffled batches (a seeded permutation, batch 128); the
readers take turns pass by pass and the result is the median of ``--repeats`` passes. Output:
``benchmarks/results/image_input_<device>.json`` with provenance (commit, torch, CPU or GPU, date,
threads, load average).

    python benchmarks/image_input.py                # CPU, about a minute
    python benchmarks/image_input.py --device cuda  # the ResNet-10 step on the GPU
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fairprune_lite import experiments  # noqa: E402
from fairprune_lite.data import CachedImages, FairDataset, fixtures, load_dataset  # noqa: E402
from fairprune_lite.models import make_model  # noqa: E402
from fairprune_lite.train import fit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _passes(readers: dict, batches, repeats: int) -> dict:
    """Median images/s of each reader over ``repeats`` passes over ``batches``, the readers
    interleaved pass by pass (so a change in the machine's load hits all of them alike), after
    one warm-up pass each."""
    n = sum(len(b) for b in batches)
    rates: dict[str, list[float]] = {k: [] for k in readers}
    for r in range(repeats + 1):
        for name, fn in readers.items():
            t0 = time.perf_counter()
            for idx in batches:
                fn(idx)
            if r:
                rates[name].append(n / (time.perf_counter() - t0))
    return {k: {"images_per_s": statistics.median(v), "runs": [round(x, 1) for x in v], "images_per_pass": n}
            for k, v in rates.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096, help="images in the fake CelebA (train split: 3/4)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jpeg-batches", type=int, default=4, help="batches decoded from JPEG (slow)")
    ap.add_argument("--steps", type=int, default=3, help="timed ResNet-10 training steps")
    ap.add_argument("--step-batch", type=int, default=None,
                    help="batch of the ResNet-10 steps (default: 16 on a CPU, where one step of 128 takes "
                         "most of a minute on one thread; --batch on a GPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default=None, help="reuse this fake CelebA folder (built when missing)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tmp = tempfile.TemporaryDirectory() if args.root is None else None
    root = Path(args.root or tmp.name)
    n_train = args.images * 3 // 4
    n_rest = (args.images - n_train) // 2
    t0 = time.perf_counter()
    if not (root / "celeba" / "list_attr_celeba.txt").is_file():
        fixtures.make_fake_celeba(root, (n_train, n_rest, n_rest), seed=0)
    t_fixture = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        cached = load_dataset("celeba", root=root, image_size=64, cache=True, verify="off").train
        t_cache = time.perf_counter() - t0
        lazy = load_dataset("celeba", root=root, image_size=64, verify="off").train
    assert isinstance(cached.x, CachedImages)

    order = torch.randperm(len(cached), generator=torch.Generator().manual_seed(0))
    batches = [order[i:i + args.batch] for i in range(0, len(order) - args.batch + 1, args.batch)]

    def per_item(idx, ds=cached):  # loading.BatchLoader's path for datasets without a tensor x
        items = [ds[int(i)] for i in idx]
        return tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(3))

    in_ram = FairDataset(CachedImages(np.asarray(cached.x.array), cached.x.rows), cached.y, cached.s)

    same = torch.equal(per_item(batches[0])[0], cached.batch(batches[0])[0])
    sections = _passes({"per_item": per_item, "batch": cached.batch, "batch_in_ram": in_ram.batch},
                       batches, args.repeats)
    sections |= _passes({"jpeg": lazy.batch}, batches[: args.jpeg_batches], 1)

    device = torch.device(args.device)
    model = make_model("resnet10", in_shape=(3, 64, 64), seed=0).to(device)
    step_batch = args.step_batch or (args.batch if device.type == "cuda" else 16)
    data = [cached.batch(batches[0][:step_batch])]
    fit(model, data, steps=1, lr=0.01, device=device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit(model, data, steps=args.steps, lr=0.01, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / args.steps
    sections["resnet10_step"] = {"images_per_s": step_batch / step_s, "step_s": step_s, "steps": args.steps,
                                 "batch": step_batch}

    consume = sections["resnet10_step"]["images_per_s"]
    summary = {k: round(v["images_per_s"], 1) for k, v in sections.items()}
    rate = {k: v["images_per_s"] for k, v in sections.items()}
    summary["speedup_batch_over_per_item"] = round(rate["batch"] / rate["per_item"], 2)
    summary["batch_over_resnet10_step"] = round(sections["batch"]["images_per_s"] / consume, 2)
    summary["per_item_over_resnet10_step"] = round(sections["per_item"]["images_per_s"] / consume, 2)
    prov = experiments.provenance(str(device))
    prov.update({"cpu_count": os.cpu_count(), "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]})
    out = {
        "benchmark": "image_input",
        "setup": {"images": args.images, "train_images": len(cached), "image_size": 64, "batch": args.batch,
                  "repeats": args.repeats, "threads": args.threads, "device": str(device),
                  "fixture_build_s": round(t_fixture, 1), "cache_build_s": round(t_cache, 1),
                  "batch_equals_per_item": same},
        "images_per_s": summary,
        "sections": sections,
        "provenance": prov,
    }
    path = Path(args.out) if args.out else RESULTS / f"image_input_{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["images_per_s"], indent=1))
    print(f"written {path}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
