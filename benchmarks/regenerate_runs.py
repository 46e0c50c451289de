"""Re-run stored results whose method code changed, from their own specs, with the current code.

When a method's implementation changes, the stored runs it produced are stale: ``verify`` would
(rightly) report them. This script recomputes exactly those runs (same specs, hence the same run
ids and file names) into a staging folder, N at a time in local processes; after checking them,
move them over the stored ones and commit. Run it from a clean tree so every result names one
commit (the staging folder is outside the repository, so the tree stays clean while it runs).

    python benchmarks/regenerate_runs.py --methods bifp pf fp --structured-too bip \
        --stage /tmp/regen --jobs 2
    rsync -a /tmp/regen/ book/results/
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stale(results: Path, methods: set[str], structured_methods: set[str]) -> list[Path]:
    """Stored result files of ``methods`` (all runs) and of ``structured_methods`` (structured runs)."""
    out = []
    for p in sorted(results.glob("*/*.json")):
        if p.name == "sweep.json" or p.name.endswith(".failed.json"):
            continue
        r = json.loads(p.read_text())
        m, st = r.get("method"), bool((r.get("spec") or {}).get("structured"))
        if m in methods or (m in structured_methods and st):
            out.append((r.get("model") != "mlp", str(p), p))
    # cheap (tabular) runs first, so a partial regeneration still covers whole sweeps
    return [p for *_key, p in sorted(out)]


def _one(path: str, stage: str) -> tuple[str, float]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from fairprune_lite import experiments

    p = Path(path)
    spec = experiments.RunSpec.from_dict(json.loads(p.read_text())["spec"])
    out = Path(stage) / p.parent.name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = experiments.run(spec, out=out, quiet=True)
    if res["run_id"] + ".json" != p.name:
        raise RuntimeError(f"{p}: the spec now gives run id {res['run_id']}")
    return path, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "book" / "results")
    ap.add_argument("--methods", nargs="+", default=[])
    ap.add_argument("--structured-too", nargs="*", default=[], help="methods whose structured runs only")
    ap.add_argument("--stage", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error("--jobs must be >= 1")
    todo = [p for p in stale(a.results, set(a.methods), set(a.structured_too))
            if not (a.stage / p.parent.name / p.name).exists()]
    print(f"{len(todo)} runs to regenerate into {a.stage}", flush=True)
    with ProcessPoolExecutor(a.jobs) as pool:
        futs = [pool.submit(_one, str(p), str(a.stage)) for p in todo]
        for i, f in enumerate(as_completed(futs), 1):
            path, dt = f.result()
            print(f"[{i}/{len(todo)}] {Path(path).parent.name}/{Path(path).name} {dt:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
