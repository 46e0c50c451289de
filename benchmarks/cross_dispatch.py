"""Measure how far stored results move when the same code runs on other CPU kernels.

CPU runs are bit-identical on one machine, not across CPUs: PyTorch dispatches its vectorised
kernels by instruction set (``ATEN_CPU_CAPABILITY=default|avx2|avx512``), oneDNN and MKL pick
their own code paths (``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``), and a few hundred
SGD steps amplify a last-bit difference into a different trained model. This script recomputes
stored runs under each dispatch level this CPU offers, compares every verified leaf with the
stored value and with the other levels, and writes the largest absolute difference per model
family and leaf key: the measured basis of ``book/results/TOLERANCES.json``.

    python benchmarks/cross_dispatch.py measure --out benchmarks/results/cross_dispatch
    python benchmarks/cross_dispatch.py summarize benchmarks/results/cross_dispatch \
        --tolerances book/results/TOLERANCES.json

``measure`` runs each level in its own process (the variables must be set before torch loads).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fairprune_lite.experiments.verify import tolerance_key  # the one rule that files a tolerance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "book" / "results"

#: name -> environment; each is a way this CPU can run the same code on other kernels.
LEVELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
#: the smallest tolerance: 8 float32 ulps at 1.0. Metrics stored as float32 (losses) can move by
#: a few ulps where everything else agreed; metrics that are ratios of counts (accuracies, rates)
#: move in steps of at least 1/n >= 2.5e-4, so the floor never hides a changed prediction.
FLOOR = 1e-6
VERIFIED = ("sparsity", "val", "test", "dense", "cost", "layers")
IGNORED = {"wall_time_s", "provenance", "_path", "cached", "date", "weights", "feasibility"}


def leaves(d: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted path, value)`` for every scalar under ``d``."""
    if isinstance(d, dict):
        for k, v in d.items():
            if k not in IGNORED:
                yield from leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from leaves(v, f"{path}.{i}")
    else:
        yield path, d


def pick(per_family_cnn: int, seed: int) -> list[Path]:
    """Every stored Adult (MLP) run, and one fashion (CNN) run per method up to a count."""
    rng = random.Random(seed)
    files = sorted(p for p in RESULTS.glob("*/*.json") if p.name != "sweep.json")
    mlp = [p for p in files if p.parent.name == "fig3_4_adult"]
    by_method: dict[str, list[Path]] = defaultdict(list)
    for p in files:
        if p.parent.name == "fig3_4":
            by_method[json.loads(p.read_text())["method"]].append(p)
    cnn = [rng.choice(by_method[m]) for m in sorted(by_method)]
    rng.shuffle(cnn)
    return mlp + cnn[:per_family_cnn]


def run_level(files: list[Path], out: Path) -> None:
    """Recompute ``files`` under the current process's dispatch (child of ``measure``)."""
    import torch

    from fairprune_lite import experiments

    out.mkdir(parents=True, exist_ok=True)
    info = {"capability": torch.backends.cpu.get_cpu_capability(),
            "env": {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                   "MKL_ENABLE_INSTRUCTIONS")},
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "level.json").write_text(json.dumps(info, indent=1))
    with tempfile.TemporaryDirectory(prefix="fairprune-xdispatch-") as tmp:
        for f in files:
            target = out / f"{f.parent.name}__{f.name}"
            if target.exists():
                continue
            stored = json.loads(f.read_text())
            spec = experiments.RunSpec.from_dict(stored["spec"])
            new = experiments.run(spec, out=None, cache_dir=Path(tmp) / "cache", quiet=True)
            target.write_text(json.dumps({k: new.get(k) for k in VERIFIED + ("model",)}, default=float))
            print(f"{info['capability']}: {target.name}", flush=True)


def measure(out: Path, per_family_cnn: int, seed: int, levels: list[str]) -> None:
    files = pick(per_family_cnn, seed)
    (out).mkdir(parents=True, exist_ok=True)
    (out / "runs.txt").write_text("\n".join(str(p.relative_to(ROOT)) for p in files) + "\n")
    for name in levels:
        env = {**os.environ, **LEVELS[name], "OMP_NUM_THREADS": "1", "FAIRPRUNE_QUIET": "1"}
        subprocess.run([sys.executable, __file__, "_child", str(out / name)], env=env, check=True,
                       cwd=ROOT)


def summarize(out: Path, tolerances: Path | None, factor: float) -> dict[str, Any]:
    """Largest |diff| per family and key, over stored-vs-level and level-vs-level pairs."""
    files = [ROOT / line for line in (out / "runs.txt").read_text().split()]
    levels = sorted(p.name for p in out.iterdir() if (p / "level.json").exists())
    worst: dict[str, dict[str, list]] = defaultdict(dict)
    runs_per_family: dict[str, int] = defaultdict(int)
    by_block: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for f in files:
        stored = json.loads(f.read_text())
        versions = {"stored": {k: stored.get(k) for k in VERIFIED}}
        for lv in levels:
            p = out / lv / f"{f.parent.name}__{f.name}"
            if p.exists():
                versions[lv] = json.loads(p.read_text())
        if len(versions) < 2:
            continue
        fam = stored["model"]
        runs_per_family[fam] += 1
        flat = {name: dict(leaves({k: v.get(k) for k in VERIFIED})) for name, v in versions.items()}
        names = sorted(flat)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for path, va in flat[a].items():
                    vb = flat[b].get(path)
                    if isinstance(va, bool) or not isinstance(va, (int, float)) or not isinstance(vb, (int, float)):
                        continue
                    d = abs(float(va) - float(vb))
                    key = tolerance_key(path)
                    where = [d, path, f.parent.name + "/" + f.name, f"{a} vs {b}"]
                    cur = worst[fam].get(key)
                    if cur is None or d > cur[0]:
                        worst[fam][key] = where
                    # a method's entry covers every path verify compares for its runs (its dense
                    # block included); "dense" alone is reported for information
                    blocks = [stored["method"]] + (["dense"] if path.startswith("dense.") else [])
                    for block in blocks:
                        cur = by_block[fam][block].get(key)
                        if cur is None or d > cur:
                            by_block[fam][block][key] = d
    summary = {"levels": {lv: json.loads((out / lv / "level.json").read_text()) for lv in levels},
               "stored_device": "AMD EPYC (provenance of the stored runs)",
               "machine": platform.processor() or platform.machine(),
               "runs_per_family": dict(runs_per_family),
               "max_abs_diff": {fam: {k: v for k, v in sorted(d.items())} for fam, d in worst.items()},
               "max_abs_diff_by_method": {fam: {b: dict(sorted(d.items())) for b, d in sorted(bl.items())}
                                          for fam, bl in by_block.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for fam, d in worst.items():
        print(f"\n{fam} ({runs_per_family[fam]} runs)")
        for k, (v, path, run, pair) in sorted(d.items()):
            if v:
                print(f"  {k:38s} {v:.3g}  ({path}, {run}, {pair})")
    if tolerances is not None:
        def tol(v: float) -> float:  # factor x the maximum, rounded UP to two significant digits
            if factor * v <= FLOOR:
                return FLOOR
            scale = 10.0 ** (math.floor(math.log10(factor * v)) - 1)
            return float(f"{math.ceil(factor * v / scale) * scale:.3g}")

        fams = {}
        for fam, d in worst.items():
            fams[fam] = {k: tol(v) for k, (v, *_rest) in sorted(d.items())}
        methods = {fam: {m: {k: tol(v) for k, v in d.items()} for m, d in sorted(bl.items()) if m != "dense"}
                   for fam, bl in by_block.items()}
        doc = {"schema": 1,
               "measured": (f"max(floor, max |diff| x {factor}, rounded up) over {dict(runs_per_family)} recomputed stored runs, "
                            f"pairs among the stored values (AMD EPYC) and this CPU's dispatch levels "
                            f"{levels}; benchmarks/results/cross_dispatch/summary.json has each maximum "
                            f"with the run and pair where it occurred"),
               "factor": factor,
               "floor": FLOOR,
               "families": fams,
               "methods": methods}
        tolerances.write_text(json.dumps(doc, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cross_dispatch")
    m.add_argument("--cnn-runs", type=int, default=6)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    s = sub.add_parser("summarize")
    s.add_argument("out", type=Path)
    s.add_argument("--tolerances", type=Path)
    s.add_argument("--factor", type=float, default=2.0)
    c = sub.add_parser("_child")
    c.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "measure":
        measure(a.out, a.cnn_runs, a.seed, a.levels)
    elif a.cmd == "summarize":
        summarize(a.out, a.tolerances, a.factor)
    else:
        files = [ROOT / line for line in (a.out.parent / "runs.txt").read_text().split()]
        run_level(files, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
