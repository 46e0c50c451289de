"""GPU check: the CUDA-only tests, per-step times of masked SGD / BiFP / BiP, a short BiFP prune.

One prepared script for a machine with a CUDA GPU (it also runs on a CPU with tiny sizes, which
is how the unit tests exercise it). Three parts, all written to one JSON file with provenance
(GPU name, torch / CUDA / cuDNN versions, driver, the source commit, date):

* ``tests``: the tests of ``tests/`` that only do something on a GPU (found by reading the test
  files: a test function whose source mentions ``cuda``), run with pytest; outcome per test.
* ``steps``: per-step wall time at batch ``--batch`` of ResNet-10 and MobileNetV2 on 64 x 64
  images from the fake CelebA (``fairprune_lite.data.fixtures.make_fake_celeba``; batches kept on
  the device, so the input path is not timed here) for: a masked SGD step (``train.fit`` on a
  model carrying a 79% magnitude mask), BiFP alternating and joint (accuracy-gap constraint,
  unstructured; alternating also structured), and BiP (alternating). The time of every step is
  read off the training loop itself: the batch source records a CUDA event (on a CPU,
  ``perf_counter``) whenever the loop fetches a batch, and a step lasts from its first fetch to
  the next step's. The first ``--warmup`` steps of each run are dropped; the methods take turns
  run by run (``--rounds``), so a change of clock or load hits all of them alike; the result is
  the median step time, images/s = batch / median, and the ratio to masked SGD.
* ``end_to_end``: ResNet-10 pretrained briefly on the fake CelebA, then pruned to 79% by BiFP
  (unstructured and structured) and, for reference, OMP with the same number of steps, through
  ``pruners.prune`` on the GPU. Checked: no layer left empty, every logged loss finite, the
  target sparsity reached. Accuracy and gaps are printed with the majority baseline, but the
  data are cartoon faces whose label is the hair colour: **they say nothing about CelebA**.
* ``image_input`` (optional, ``--image-input``): ``benchmarks/image_input.py`` on the same
  fixtures with the ResNet-10 step on this device.

    python benchmarks/gpu_check.py --device cuda --out gpu_check.json
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/g.json   # seconds, on a CPU
"""
from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fairprune_lite import experiments, pruners  # noqa: E402
from fairprune_lite.bilevel import bifp  # noqa: E402
from fairprune_lite.constraints import FairnessConstraint  # noqa: E402
from fairprune_lite.data import fixtures, load_dataset  # noqa: E402
from fairprune_lite.masks import MaskScores, apply_masks, sparsity_report  # noqa: E402
from fairprune_lite.models import make_model  # noqa: E402
from fairprune_lite.train import PassCounter, evaluate, fit, make_loader, set_seed  # noqa: E402

#: the timed methods: (label, batches fetched per step, keyword arguments of bifp or None for fit)
METHODS: dict[str, tuple[int, dict[str, Any] | None]] = {
    "masked_sgd": (1, None),
    "bifp_alternating": (2, {"update": "alternating", "fair": True}),
    "bifp_joint": (1, {"update": "joint", "fair": True}),
    "bip": (2, {"update": "alternating", "fair": False}),
    "bifp_alternating_structured": (2, {"update": "alternating", "fair": True, "structured": True}),
}
SPARSITY = 0.79  # the Lottery schedule's 7th level (1 - 0.8^7)
TAU = 0.02


# ---------------------------------------------------------------------------------------------
# (a) the CUDA-only tests
# ---------------------------------------------------------------------------------------------
def find_cuda_tests(tests_dir: str | Path, exclude: tuple[str, ...] = ("test_gpu_check.py",)) -> list[str]:
    """Node ids (``tests/test_x.py::test_y``, ``...::Class::test_y``) of the test functions whose
    source, decorators included, mentions ``cuda``: they are skipped or do less without a GPU.
    ``exclude``: file names left out (this script's own tests, CPU tests that speak of cuda)."""
    tests_dir = Path(tests_dir)
    found = []
    for path in sorted(tests_dir.glob("test_*.py")):
        if path.name in exclude:
            continue
        src = path.read_text()
        tree = ast.parse(src)
        rel = f"{tests_dir.name}/{path.name}"

        def visit(nodes, prefix, src, rel):
            for node in nodes:
                if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                    visit(node.body, prefix + node.name + "::", src, rel)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                    text = "\n".join(src.splitlines()[start - 1:node.end_lineno])
                    if re.search(r"\bcuda\b", text):
                        found.append(f"{rel}::{prefix}{node.name}")

        visit(tree.body, "", src, rel)
    return found


def parse_junit(xml_text: str) -> list[dict[str, str]]:
    """``[{"test", "outcome" (passed / failed / error / skipped), "message"}]`` from pytest's
    JUnit XML."""
    rows = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or "")[:300]
                break
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "message": message})
    return rows


def run_cuda_tests(root: Path = ROOT, timeout: int = 300) -> dict[str, Any]:
    """Run :func:`find_cuda_tests` with pytest in a subprocess; outcomes per test."""
    ids = find_cuda_tests(root / "tests")
    if not ids:
        raise ValueError(f"no test mentioning cuda found under {root / 'tests'}")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                               f"--junitxml={xml}", *ids], cwd=root, capture_output=True, text=True,
                              timeout=timeout)
        wall = time.perf_counter() - t0
        rows = parse_junit(xml.read_text()) if xml.is_file() else []
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "error", "skipped")}
    return {"selected": ids, "returncode": proc.returncode, "counts": counts, "results": rows,
            "wall_s": round(wall, 1), "cuda_available": torch.cuda.is_available(),
            "output_tail": (proc.stdout + proc.stderr)[-2000:]}


# ---------------------------------------------------------------------------------------------
# (b) per-step times
# ---------------------------------------------------------------------------------------------
class TimedBatches:
    """Batches already on the device, served in order pass after pass; every fetch is marked
    with a CUDA event (and ``perf_counter``), so step times are read off the training loop."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], device: torch.device) -> None:
        if not batches:
            raise ValueError("TimedBatches needs at least one batch")
        self.batches = batches
        self.cuda = torch.device(device).type == "cuda"
        self.events: list[Any] = []
        self.walls: list[float] = []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            if self.cuda:
                ev = torch.cuda.Event(enable_timing=True)
                ev.record()
                self.events.append(ev)
            self.walls.append(time.perf_counter())
            yield b

    def step_times(self, per_step: int, skip: int) -> dict[str, list[float]]:
        """Seconds of each step after the first ``skip``, from the fetch marks (``per_step``
        fetches per step; a step ends at the next step's first fetch, so the last step of the
        run has no time). ``event`` (GPU timeline, CUDA only) and ``wall`` (host clock)."""
        return {k: _durations(marks, per_step, skip, self.cuda and k == "event")
                for k, marks in (("event", self.events), ("wall", self.walls)) if marks}


def _durations(marks: list, per_step: int, skip: int, events: bool) -> list[float]:
    """Differences between every ``per_step``-th mark, from step ``skip`` on (seconds)."""
    if per_step < 1 or skip < 0:
        raise ValueError(f"per_step must be >= 1 and skip >= 0, got {per_step}, {skip}")
    starts = marks[::per_step]
    if events:
        torch.cuda.synchronize()
        return [a.elapsed_time(b) / 1e3 for a, b in zip(starts[skip:-1], starts[skip + 1:], strict=True)]
    return [b - a for a, b in zip(starts[skip:-1], starts[skip + 1:], strict=True)]


def summarize(times: list[float], batch: int) -> dict[str, Any]:
    """Median, quartiles and images/s of step times in seconds."""
    if len(times) < 2:
        raise ValueError(f"need at least 2 step times, got {len(times)}")
    q = statistics.quantiles(times, n=4)
    med = statistics.median(times)
    return {"median_ms": med * 1e3, "q1_ms": q[0] * 1e3, "q3_ms": q[2] * 1e3, "n": len(times),
            "images_per_s": batch / med}


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def time_method(method: str, model: torch.nn.Module, batches: list, device: torch.device, *, steps: int,
                warmup: int, seed: int = 0) -> dict[str, Any]:
    """One run of ``method`` (a key of :data:`METHODS`) for ``warmup + steps + 1`` steps on a copy
    of ``model``: its step times after the warm-up and its passes per step."""
    per, opts = METHODS[method]
    total = warmup + steps + 1
    src = TimedBatches(batches, device)
    counter = PassCounter()
    _reset_peak(device)
    if opts is None:
        m = copy.deepcopy(model).to(device)
        ms = MaskScores(m, SPARSITY).to(device)
        apply_masks(m, ms)
        fit(m, src, steps=total, lr=0.01, device=device, counter=counter, log_every=total)
    else:
        kw = dict(opts)
        fair = kw.pop("fair")
        c = FairnessConstraint("accuracy_gap", TAU) if fair else None
        bifp(model, src, sparsity=SPARSITY, steps=total, constraint=c, fair_mask=fair, fair_weights=fair,
             seed=seed, device=device, counter=counter, log_every=total, **{"protocol": "paper", **kw})
    if len(src.walls) < total * per - (per - 1):
        raise RuntimeError(f"{method}: {len(src.walls)} batches fetched for {total} steps of {per}")
    out = src.step_times(per, warmup)
    out["forward_per_step"] = counter.forward_passes / total
    out["backward_per_step"] = counter.backward_passes / total
    out["peak_mib"] = _peak_mib(device)
    return out


def step_timings(batches: list, device: torch.device, *, models: dict[str, Any], image_size: int, batch: int,
                 steps: int, warmup: int, rounds: int, methods: list[str], log=print) -> dict[str, Any]:
    """:func:`time_method` for every model and method, methods interleaved round by round."""
    out: dict[str, Any] = {}
    for name, width in models.items():
        model = make_model(name, in_shape=(3, image_size, image_size), width=width, seed=0)
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for r in range(rounds):
            for m in methods:
                runs[m].append(time_method(m, model, batches, device, steps=steps, warmup=warmup, seed=r))
                log(f"  {name} {m} round {r}: {1e3 * statistics.median(runs[m][-1]['wall']):.1f} ms (host median)")
        key = "event" if device.type == "cuda" else "wall"
        rows = {}
        for m in methods:
            all_t = [t for run in runs[m] for t in run[key]]
            rows[m] = summarize(all_t, batch) | {
                "host_median_ms": statistics.median(t for run in runs[m] for t in run["wall"]) * 1e3,
                "round_medians_ms": [round(statistics.median(run[key]) * 1e3, 3) for run in runs[m]],
                "forward_per_step": runs[m][0]["forward_per_step"],
                "backward_per_step": runs[m][0]["backward_per_step"],
                "peak_mib": max((run["peak_mib"] or 0) for run in runs[m]) if device.type == "cuda" else None,
            }
        base = rows.get("masked_sgd", {}).get("median_ms")
        for m in methods:
            rows[m]["ratio_vs_masked_sgd"] = rows[m]["median_ms"] / base if base else None
        n_params = sum(p.numel() for p in model.parameters())
        out[name] = {"width": width, "parameters": n_params, "timer": key, "methods": rows}
    return out


def profile_steps(method: str, model: torch.nn.Module, batches: list, device: torch.device, *, steps: int,
                  top: int = 12) -> dict[str, Any]:
    """Where a step's time goes: ``torch.profiler`` over ``steps`` steps of ``method`` (after the
    step sections, so kernels are warm). Per step: host wall time, the GPU's busy time (sum of the
    kernels' self device time; kernels do not overlap on one stream) and the ops with the most
    self host / device time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    time_method(method, model, batches, device, steps=2, warmup=0)  # warm-up outside the profile
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        time_method(method, model, batches, device, steps=steps - 1, warmup=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    avgs = prof.key_averages()

    def row(e) -> dict[str, Any]:
        return {"name": e.key[:80], "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3 / steps,
                "self_device_ms": getattr(e, "self_device_time_total", 0) / 1e3 / steps}

    rows = [row(e) for e in avgs]
    kernels = [e for e in prof.events() if getattr(e, "device_type", None) is not None
               and str(e.device_type).endswith("CUDA")]
    busy = sum(getattr(e, "self_device_time_total", 0) for e in kernels) / 1e3 / steps
    reads = sum(e.count for e in avgs if e.key == "aten::_local_scalar_dense")  # tensor -> Python number
    syncs = sum(e.count for e in avgs if "Synchronize" in e.key)
    return {"method": method, "steps": steps, "wall_ms_per_step": wall * 1e3 / steps,
            "gpu_busy_ms_per_step": busy if device.type == "cuda" else None,
            "scalar_reads_per_step": reads / steps, "synchronize_calls_per_step": syncs / steps,
            "top_self_device": sorted(rows, key=lambda r: -r["self_device_ms"])[:top],
            "top_self_cpu": sorted(rows, key=lambda r: -r["self_cpu_ms"])[:top],
            "note": "profiled, so slower than the timed steps; compare shares, not absolute times"}


# ---------------------------------------------------------------------------------------------
# (c) a short end-to-end prune
# ---------------------------------------------------------------------------------------------
def _finite_history(history: list[dict]) -> tuple[bool, int]:
    """Whether every logged loss is finite, and how many values were checked."""
    vals = [v for rec in history for k, v in rec.items()
            if k.endswith("loss") and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return all(math.isfinite(v) for v in vals), len(vals)


def empty_layers(masks: dict[str, torch.Tensor]) -> list[str]:
    """Layers whose mask keeps nothing."""
    return [n for n, c in sparsity_report(masks)["counts"].items() if c["pruned"] == c["total"]]


def channel_counts(masks: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(output channels pruned, output channels) over the layers of weight-shaped masks; a
    channel is pruned when its whole slice is 0."""
    pruned = total = 0
    for m in masks.values():
        rows = torch.as_tensor(m).reshape(m.shape[0], -1)
        pruned += int((rows == 0).all(dim=1).sum())
        total += rows.shape[0]
    return pruned, total


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "majority_baseline", "accuracy_gap", "equalized_odds_difference", "loss", "n")
    out = {k: m.get(k) for k in keys}
    if "feasibility" in m:
        out["feasibility"] = {k: m["feasibility"].get(k) for k in ("value", "se", "tau", "met")}
    return out


def end_to_end(splits, device: torch.device, *, width: Any, pretrain_epochs: int, steps: int, batch: int,
               log=print) -> dict[str, Any]:
    """Pretrain ResNet-10 on ``splits.train``, prune to :data:`SPARSITY` by BiFP (unstructured,
    structured) and OMP on ``val``, evaluate on ``val`` and ``test``, run the checks."""
    shape = tuple(splits.train.input_shape)
    set_seed(0)
    dense = make_model("resnet10", in_shape=shape, width=width, seed=0).to(device)
    t0 = time.perf_counter()
    hist = fit(dense, make_loader(splits.train, batch, shuffle=True, seed=0), epochs=pretrain_epochs, lr=0.05,
               device=device, log_every=10**9)
    pre_s = time.perf_counter() - t0
    dense.eval()
    out: dict[str, Any] = {
        "pretrain": {"epochs": pretrain_epochs, "lr": 0.05, "optimizer": "sgd momentum 0.9", "wall_s": pre_s,
                     "last_loss": hist[-1]["loss"], "test": _metrics(evaluate(dense, splits.test))},
        "runs": {},
    }
    log(f"  pretrained in {pre_s:.1f} s, test accuracy {out['pretrain']['test']['accuracy']:.3f}")
    todo = [("bifp", False), ("bifp", True), ("omp", False)]
    for method, structured in todo:
        label = f"{method}_{'str' if structured else 'uns'}"
        c = FairnessConstraint("accuracy_gap", TAU)
        info = pruners.METHODS[method]
        kw: dict[str, Any] = {"steps": steps} if info.bilevel else {"finetune_steps": steps}
        if "protocol" in info.options():
            kw["protocol"] = "paper"  # the protocol this check's stored results ran with
        _reset_peak(device)
        t0 = time.perf_counter()
        res = pruners.prune(method, dense, splits, sparsity=SPARSITY, structured=structured, constraint=c,
                            device=device, seed=0, batch_size=batch, **kw)
        wall = time.perf_counter() - t0
        finite, n_checked = _finite_history(res.history)
        finite = finite and all(math.isfinite(res.metrics[s]["loss"]) for s in res.metrics)
        rep = sparsity_report(res.masks)
        baked = sparsity_report(res.model)  # zeros of the returned plain model
        empty = empty_layers(res.masks)
        # exactly round(0.79 n) units pruned: weights (unstructured) or output channels (structured)
        ch_pruned, ch_total = channel_counts(res.masks)
        reached = (ch_pruned == round(SPARSITY * ch_total)) if structured else \
            (rep["pruned"] == round(SPARSITY * rep["total"]))
        checks = {"no_empty_layer": not empty, "losses_finite": finite, "target_sparsity": reached,
                  "baked_model_matches_masks": baked["pruned"] >= rep["pruned"]}
        out["runs"][label] = {
            "method": method, "structured": structured, "steps": steps, "wall_s": wall,
            "weight_sparsity": rep["overall"], "channel_sparsity": ch_pruned / ch_total, "layers": len(rep["counts"]), "empty_layers": empty,
            "min_layer_kept": min(c["total"] - c["pruned"] for c in rep["counts"].values()),
            "losses_checked": n_checked, "checks": checks, "passed": all(checks.values()),
            "cost": {k: res.cost.get(k) for k in ("iterations", "forward_passes", "backward_passes", "wall_time_s")},
            "peak_mib": _peak_mib(device),
            "val": _metrics(res.metrics["val"]), "test": _metrics(res.metrics["test"]),
        }
        log(f"  {label}: {wall:.1f} s, sparsity {rep['overall']:.3f}, checks {checks}")
    out["passed"] = all(r["passed"] for r in out["runs"].values())
    return out


# ---------------------------------------------------------------------------------------------
# provenance and main
# ---------------------------------------------------------------------------------------------
def package_digest(root: Path = ROOT) -> str:
    """SHA-256 over the package's ``.py`` files (path and bytes, sorted): which code ran."""
    h = hashlib.sha256()
    for p in sorted((root / "fairprune_lite").rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def gpu_info(device: torch.device) -> dict[str, Any]:
    """What the GPU and its software stack are (empty on a CPU)."""
    if device.type != "cuda":
        return {}
    p = torch.cuda.get_device_properties(device)
    info = {"name": p.name, "multiprocessors": p.multi_processor_count,
            "memory_gib": round(p.total_memory / 2**30, 1), "capability": f"{p.major}.{p.minor}",
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip() if smi.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    ap.add_argument("--images", type=int, default=4096, help="images of the fake CelebA (3/4 train, 1/8 val, 1/8 test)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="steps dropped at the start of each run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per method, methods interleaved")
    ap.add_argument("--e2e-steps", type=int, default=300, help="BiFP steps (OMP fine-tuning steps) of the prune")
    ap.add_argument("--pretrain-epochs", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="narrow models (ResNet-10 width 4, MobileNetV2 0.25): CPU tests")
    ap.add_argument("--skip", action="append", default=[], choices=("tests", "steps", "end_to_end"))
    ap.add_argument("--image-input", action="store_true", help="also run benchmarks/image_input.py on this device")
    ap.add_argument("--profile", type=int, default=0,
                    help="also profile this many steps of masked SGD and BiFP / BiP on ResNet-10 (0: no)")
    ap.add_argument("--source-commit", default=None, help="the commit the copied code comes from")
    ap.add_argument("--source-dirty", default=None, choices=("true", "false"))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    for name in ("images", "image_size", "batch", "steps", "rounds", "e2e_steps", "pretrain_epochs"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.steps < 2:
        print("error: --steps must be >= 2 (a median of step times)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    widths = {"resnet10": 4 if args.tiny else None, "mobilenetv2": 0.25 if args.tiny else None}
    result: dict[str, Any] = {
        "benchmark": "gpu_check",
        "note": ("Fake CelebA (cartoon faces in CelebA's layout, labels set by the builder): timings are "
                 "real, accuracies and gaps are not results on CelebA."),
        "setup": {k: getattr(args, k) for k in ("images", "image_size", "batch", "steps", "warmup", "rounds",
                                                "e2e_steps", "pretrain_epochs", "tiny")}
        | {"sparsity": SPARSITY, "tau": TAU, "constraint": "accuracy_gap", "widths": widths,
           "methods": {m: {"batches_per_step": p, "bifp_options": o} for m, (p, o) in METHODS.items()}},
    }
    prov = experiments.provenance(str(device))
    prov.update({"source_commit": args.source_commit, "source_dirty": None if args.source_dirty is None
                 else args.source_dirty == "true", "package_sha256": package_digest(),
                 "gpu": gpu_info(device)})
    result["provenance"] = prov
    log(f"device {prov['device_name']}, torch {torch.__version__}, CUDA {torch.version.cuda}")

    def save(final: bool = False) -> dict[str, bool]:
        """Write what exists so far (a run cut off by a time limit still leaves its parts)."""
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        ok = {"tests": result.get("tests", {}).get("returncode", 0) == 0,
              "end_to_end": result.get("end_to_end", {}).get("passed", True)}
        result["passed"] = ok
        result["complete"] = final
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        return ok

    if "tests" not in args.skip:
        log("CUDA tests")
        result["tests"] = run_cuda_tests()
        log(f"  {result['tests']['counts']}")
        save()

    with tempfile.TemporaryDirectory() as tmp:
        n_train = args.images * 3 // 4
        n_rest = max(1, (args.images - n_train) // 2)
        t0 = time.perf_counter()
        root = fixtures.make_fake_celeba(tmp, (n_train, n_rest, n_rest), seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fixture is a subset: the MD5 finding is expected
            splits = load_dataset("celeba", root=root, image_size=args.image_size, cache=True, verify="off")
        result["setup"]["fixture_s"] = round(time.perf_counter() - t0, 1)
        result["setup"]["split_sizes"] = {k: len(getattr(splits, k)) for k in ("train", "val", "test")}
        log(f"fixtures: {result['setup']['split_sizes']}")

        n_b = max(1, min(8, len(splits.train) // args.batch))
        if len(splits.train) < args.batch:
            raise ValueError(f"--batch {args.batch} is larger than the fixture's train split ({len(splits.train)})")
        order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
        batches = [tuple(t.to(device) for t in splits.train.batch(order[i * args.batch:(i + 1) * args.batch]))
                   for i in range(n_b)]
        if "steps" not in args.skip:
            log("step timings")
            result["steps"] = step_timings(batches, device, models=widths, image_size=args.image_size,
                                           batch=args.batch, steps=args.steps, warmup=args.warmup,
                                           rounds=args.rounds, methods=list(METHODS), log=log)
            result["setup"]["timing_batches"] = n_b
            save()

        if args.profile:
            log("profile")
            model = make_model("resnet10", in_shape=(3, args.image_size, args.image_size), width=widths["resnet10"],
                               seed=0)
            result["profile"] = {}
            for m in ("masked_sgd", "bifp_alternating", "bip", "bifp_alternating_structured"):
                try:
                    r = result["profile"][m] = profile_steps(m, model, batches, device, steps=args.profile)
                except Exception as e:  # a profiler problem must not cost the other sections
                    result["profile"][m] = {"error": f"{type(e).__name__}: {e}"}
                    log(f"  {m}: profile failed: {e}")
                    continue
                log(f"  {m}: {r['wall_ms_per_step']:.1f} ms/step, GPU busy {r['gpu_busy_ms_per_step']}, "
                    f"scalar reads {r['scalar_reads_per_step']:.1f}, syncs {r['synchronize_calls_per_step']:.1f}; "
                    "top device: "
                    + ", ".join(f"{x['name']} {x['self_device_ms']:.2f}" for x in r["top_self_device"][:6])
                    + "; top host: " + ", ".join(f"{x['name']} {x['self_cpu_ms']:.2f}" for x in r["top_self_cpu"][:6]))
            save()

        if "end_to_end" not in args.skip:
            log("end-to-end prune")
            result["end_to_end"] = end_to_end(splits, device, width=widths["resnet10"],
                                              pretrain_epochs=args.pretrain_epochs, steps=args.e2e_steps,
                                              batch=args.batch, log=log)
            save()

        if args.image_input:
            log("image input benchmark")
            sys.path.insert(0, str(ROOT / "benchmarks"))
            import image_input  # noqa: E402  (a sibling script)

            path = Path(tmp) / "image_input.json"
            image_input.main(["--device", str(device), "--root", str(root), "--images", str(args.images),
                              "--batch", str(args.batch), "--out", str(path)]
                             + (["--step-batch", "4", "--steps", "1", "--repeats", "1", "--jpeg-batches", "1"]
                                if args.tiny else []))
            result["image_input"] = json.loads(path.read_text())

    ok = save(final=True)
    log(f"wrote {args.out}; passed: {ok}")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
