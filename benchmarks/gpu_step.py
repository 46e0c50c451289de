"""GPU step throughput, the current path against the fast path (issue 22, item 3).

For ResNet-10 and MobileNetV2 on 64 x 64 and 128 x 128 images (3 channels), at batch ``--batch``:
a masked SGD step (79% global magnitude mask) and BiFP alternating, joint and structured
(the paper's protocol, accuracy-gap constraint with multipliers at 1 so the fairness term is
computed at every step), each on

* ``current``: the library as it runs today (``train.fit``; ``bilevel.bifp`` without ``accel``),
  fp32, TF32 and ``cudnn.benchmark`` as the process has them (off by default);
* ``fast``: :data:`fairprune_lite.accel.FAST` (bf16 autocast, channels_last, ``cudnn.benchmark``,
  TF32): ``bifp(accel=FAST)``, and for masked SGD the same step as ``fit``'s (task loss, SGD with
  momentum through ``make_optimizer``) with the forward through ``FAST`` (``train.fit`` takes no
  ``accel`` yet);
* ``fast_compile`` (with ``--compile``): ``FAST`` plus ``torch.compile`` of the masked forward.

Batches are made once on the device (random images, balanced labels and groups), so the input
path is not timed. Every step is time-stamped by the loop itself (the pass counter's ``step``,
after a device synchronisation); the first ``--warmup`` steps are dropped and the median of the
rest is reported as ms/step, with images/s = examples per step / median. FLOPs per step come from
:class:`torch.utils.flop_counter.FlopCounterMode` (one forward, one forward + backward of the
masked model at the batch, combined with the step's counted passes); achieved FLOP/s = FLOPs per
step / median, and its share of ``--peak-bf16`` / ``--peak-fp32`` TFLOP/s (defaults for the
H100/H200 dense peaks when the device name says so). One JSON file with provenance (device,
torch / CUDA / cuDNN versions, commit and whether the tree was clean, command, date).

    python benchmarks/gpu_step.py --device cuda --out benchmarks/results/gpu_step.json
    python benchmarks/gpu_step.py --smoke --out /tmp/gpu_step.json   # CPU, tiny sizes, seconds
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from fairprune_lite.accel import FAST, Accel, settings  # noqa: E402
from fairprune_lite.bilevel import bifp  # noqa: E402
from fairprune_lite.constraints import FairnessConstraint  # noqa: E402
from fairprune_lite.masks import MaskScores, apply_masks  # noqa: E402
from fairprune_lite.models import make_model  # noqa: E402
from fairprune_lite.train import PassCounter, fit, make_optimizer, set_seed, task_loss  # noqa: E402

METHODS = ("masked_sgd", "bifp_alternating", "bifp_joint", "bifp_structured")
SPARSITY = 0.79
LR = 0.01
#: dense peak TFLOP/s (bf16 tensor cores, fp32) by a substring of the device's name
PEAKS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0)}


class Clock(PassCounter):
    """A pass counter that time-stamps every step (after a device synchronisation)."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.stamps: list[float] = []

    def step(self, n: int = 1) -> None:
        super().step(n)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stamps.append(time.perf_counter())

    def diffs(self, warmup: int) -> list[float]:
        d = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]  # consecutive pairs
        return d[warmup:] if len(d) > warmup else d


def batches(n: int, batch: int, side: int, device: torch.device, seed: int = 0) -> list[tuple]:
    """``n`` batches of random images with balanced labels and groups, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, side, side, generator=g)
        y = torch.arange(batch) % 2
        s = (torch.arange(batch) // 2) % 2
        out.append((x.to(device), y.to(device), s.to(device)))
    return out


def dense_model(name: str, side: int, width: float | None, device: torch.device) -> nn.Module:
    set_seed(0)
    return make_model(name, in_shape=(3, side, side), width=width, seed=0).to(device)


def masked(dense: nn.Module) -> nn.Module:
    model = copy.deepcopy(dense)
    masks = MaskScores(model, SPARSITY, init="magnitude").binary_masks()
    apply_masks(model, MaskScores.from_masks(model, masks))
    return model


def masked_sgd_fast(model: nn.Module, data: list[tuple], steps: int, clock: Clock, accel: Accel) -> None:
    """``train.fit``'s step (task loss, SGD with momentum) with the forward through ``accel``."""
    accel.prepare(model)
    fwd = accel.forward_fn(model)
    opt = make_optimizer(model.parameters(), "sgd", lr=LR)
    model.train()
    with settings(accel):
        for i in range(steps):
            x, y, _s = data[i % len(data)]
            logits = accel.forward(fwd, x, clock.device)
            clock.forward(len(y))
            loss = task_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clock.backward()
            opt.step()
            clock.step()


def run_one(method: str, path: str, dense: nn.Module, data: list[tuple], steps: int, clock: Clock,
            compile_backend: str) -> None:
    accel = {"current": None, "fast": FAST, "fast_compile": FAST.replace(compile=True,
                                                                          compile_backend=compile_backend)}[path]
    if method == "masked_sgd":
        model = masked(dense)
        if accel is None:
            fit(model, data, steps=steps, lr=LR, counter=clock)
        else:
            masked_sgd_fast(model, data, steps, clock, accel)
        return
    update = "joint" if method == "bifp_joint" else "alternating"
    bifp(dense, data, sparsity=SPARSITY, steps=steps, protocol="paper", seed=0, counter=clock, update=update,
         structured=method == "bifp_structured", accel=accel,
         constraint=FairnessConstraint("accuracy_gap", 0.05, init_multiplier=1.0))


def pass_flops(dense: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """``(forward, forward + backward)`` FLOPs of the masked model on one batch."""
    model = masked(dense)
    model.train()
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            model(x)
    fwd = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        task_loss(model(x), y).backward()
    return fwd, fc.get_total_flops()


def provenance(device: torch.device, argv: list[str]) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    status = git("status", "--porcelain")
    return {
        "script": "benchmarks/gpu_step.py", "command": " ".join(["python", "benchmarks/gpu_step.py", *argv]),
        "commit": git("rev-parse", "HEAD"), "clean": status == "" if status is not None else None,
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
    }


def peaks(name: str, bf16: float | None, fp32: float | None) -> tuple[float | None, float | None]:
    for key, (b, f) in PEAKS.items():
        if key in name:
            return bf16 or b, fp32 or f
    return bf16, fp32


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:N]")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device (seconds; the unit tests)")
    ap.add_argument("--models", default="resnet10,mobilenetv2", help="comma-separated model names")
    ap.add_argument("--sides", default="64,128", help="comma-separated image sides")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also the fast path with torch.compile (slow to start)")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--peak-bf16", type=float, default=None, help="dense bf16 peak, TFLOP/s")
    ap.add_argument("--peak-fp32", type=float, default=None, help="fp32 peak, TFLOP/s")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default: print only)")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    models, sides, width = args.models.split(","), [int(v) for v in args.sides.split(",")], {}
    batch, steps, warmup = args.batch, args.steps, args.warmup
    if args.smoke:
        sides, batch, steps, warmup = [16], 4, 3, 1
        width = {"resnet10": 4, "mobilenetv2": 0.25}
        torch.set_num_threads(1)
    paths = ["current", "fast"] + (["fast_compile"] if args.compile else [])
    prov = provenance(device, argv)
    peak_bf16, peak_fp32 = peaks(str(prov["device_name"]), args.peak_bf16, args.peak_fp32)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for name in models:
        for side in sides:
            dense = dense_model(name, side, width.get(name), device)
            data = batches(4, batch, side, device)
            fwd, fwd_bwd = pass_flops(dense, data[0][0], data[0][1])
            base: dict[str, float] = {}
            for path in paths:
                for method in METHODS:
                    clock = Clock(device)
                    run_one(method, path, dense, data, steps + warmup + 1, clock, args.compile_backend)
                    med = statistics.median(clock.diffs(warmup))
                    it = max(clock.iterations, 1)
                    f_per, b_per = clock.forward_passes / it, clock.backward_passes / it
                    flops = f_per * fwd + b_per * (fwd_bwd - fwd)
                    peak = peak_bf16 if path != "current" else peak_fp32
                    row = {"model": name, "side": side, "batch": batch, "method": method, "path": path,
                           "ms_per_step": round(1e3 * med, 4), "images_per_s": round(clock.examples / it / med, 1),
                           "forward_per_step": f_per, "backward_per_step": b_per, "flops_per_step": flops,
                           "achieved_tflops": round(flops / med / 1e12, 4),
                           "share_of_peak": round(flops / med / 1e12 / peak, 4) if peak else None,
                           "n_timed": len(clock.diffs(warmup))}
                    if method == "masked_sgd":
                        base[path] = med
                    row["vs_masked_sgd"] = round(med / base[path], 3)
                    rows.append(row)
                    print(f"{name:12s} {side:4d} {path:12s} {method:18s} {row['ms_per_step']:9.3f} ms/step "
                          f"{row['images_per_s']:10.1f} img/s {row['achieved_tflops']:8.3f} TFLOP/s "
                          f"x{row['vs_masked_sgd']:.2f} masked SGD", flush=True)
    speedup = {f"{r['model']}/{r['side']}/{r['method']}": round(
        next(c["ms_per_step"] for c in rows if c["path"] == "current" and
             (c["model"], c["side"], c["method"]) == (r["model"], r["side"], r["method"])) / r["ms_per_step"], 3)
        for r in rows if r["path"] == "fast"}
    res = {"schema": 1, "smoke": bool(args.smoke), "provenance": prov, "sparsity": SPARSITY,
           "fast": FAST.as_dict(), "peaks_tflops": {"bf16": peak_bf16, "fp32": peak_fp32},
           "flops_method": "torch.utils.flop_counter.FlopCounterMode: one forward and one forward+backward of the "
                           "masked model at the batch, times the step's counted forward / backward passes",
           "rows": rows, "fast_speedup": speedup, "wall_s": round(time.perf_counter() - t0, 1)}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
