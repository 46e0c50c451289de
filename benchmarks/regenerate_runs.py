"""Re-run stored results whose method code changed, from their own specs, with the current code.

When a method's implementation changes, the stored runs it produced are stale: ``verify`` would
(rightly) report them. This script recomputes exactly those runs (same specs, hence the same run
ids and file names) into a staging folder, N at a time in local processes; after checking them,
move them over the stored ones and commit. Run it from a clean tree so every result names one
commit (the staging folder is outside the repository, so the tree stays clean while it runs).

    python benchmarks/regenerate_runs.py --methods bifp pf fp --structured-too bip \
        --stage /tmp/regen --jobs 2
    rsync -a /tmp/regen/ book/results/

``--pin KEY=VALUE`` (e.g. ``--pin protocol=paper``) also writes that method option into each
regenerated spec, which changes its run id; ``--apply`` then moves the staged runs in, removes
the runs they replace and rewrites each folder's ``sweep.json`` (its config from
``configs/<name>.yaml``, its run list with the new ids). This is how the stored BiFP runs were
pinned to the paper's protocol when the library's default became the certified one:

    python benchmarks/regenerate_runs.py --methods bifp --pin protocol=paper --stage /tmp/pin --jobs 2
    python benchmarks/regenerate_runs.py --methods bifp --pin protocol=paper --stage /tmp/pin --apply
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


def stale(results: Path, methods: set[str], structured_methods: set[str], *, folders: set[str] | None = None,
          datasets: set[str] | None = None) -> list[Path]:
    """Stored result files of ``methods`` (all runs) and of ``structured_methods`` (structured runs),
    optionally only in ``folders`` (sweep names) and of ``datasets``."""
    out = []
    for p in sorted(results.glob("*/*.json")):
        if p.name == "sweep.json" or p.name.endswith(".failed.json"):
            continue
        if folders and p.parent.name not in folders:
            continue
        r = json.loads(p.read_text())
        m, st = r.get("method"), bool((r.get("spec") or {}).get("structured"))
        if datasets and r.get("dataset") not in datasets:
            continue
        if m in methods or (m in structured_methods and st):
            out.append((r.get("model") != "mlp", str(p), p))
    # cheap (tabular) runs first, so a partial regeneration still covers whole sweeps
    return [p for *_key, p in sorted(out)]


def _spec(path: Path, pin: dict[str, object]) -> dict:
    """The stored run's spec, with the ``pin`` options written into its method options."""
    spec = json.loads(path.read_text())["spec"]
    if pin:
        spec = dict(spec, method_kwargs=dict(spec.get("method_kwargs") or {}, **pin))
    return spec


def _one(path: str, stage: str, pin: dict[str, object]) -> tuple[str, float]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from fairprune_lite import experiments

    p = Path(path)
    spec = experiments.RunSpec.from_dict(_spec(p, pin))
    out = Path(stage) / p.parent.name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = experiments.run(spec, out=out, quiet=True)
    if not pin and res["run_id"] + ".json" != p.name:
        raise RuntimeError(f"{p}: the spec now gives run id {res['run_id']}")
    return path, time.perf_counter() - t0


def _new_name(path: Path, pin: dict[str, object]) -> str:
    from fairprune_lite import experiments

    return experiments.RunSpec.from_dict(_spec(path, pin)).run_id() + ".json"


def apply(results: Path, stage: Path, todo: list[Path], pin: dict[str, object]) -> None:
    """Move the staged runs over the stored ones (removing those they replace) and rewrite each
    touched folder's ``sweep.json`` from its ``configs/<name>.yaml`` with the new run ids."""
    from fairprune_lite.atomic import atomic_write_text
    from fairprune_lite.experiments import config as cfgmod

    renamed: dict[str, dict[str, str]] = {}
    missing = [p for p in todo if not (stage / p.parent.name / _new_name(p, pin)).exists()]
    if missing:
        raise SystemExit(f"{len(missing)} runs are not staged yet, e.g. {missing[0]}")
    for p in todo:
        new = _new_name(p, pin)
        os.replace(stage / p.parent.name / new, p.parent / new)
        weights = stage / p.parent.name / (new[:-5] + ".weights.pt")  # saved with the run (save_weights)
        if weights.exists():
            os.replace(weights, p.parent / weights.name)
        if new != p.name:
            p.unlink()
            p.with_name(p.stem + ".weights.pt").unlink(missing_ok=True)
        renamed.setdefault(p.parent.name, {})[p.stem] = new[:-5]
    for folder, names in renamed.items():
        sw = results / folder / "sweep.json"
        doc = json.loads(sw.read_text())
        yaml_path = ROOT / "configs" / f"{folder}.yaml"
        new_cfg = cfgmod.load_config(yaml_path)
        doc["config"] = json.loads(json.dumps(new_cfg, default=str))
        doc["runs"] = [names.get(r, r) for r in doc["runs"]]
        atomic_write_text(sw, json.dumps(doc, indent=1) + "\n")
        print(f"{folder}: {len(names)} runs replaced, sweep.json rewritten from {yaml_path.name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "book" / "results")
    ap.add_argument("--methods", nargs="+", default=[])
    ap.add_argument("--structured-too", nargs="*", default=[], help="methods whose structured runs only")
    ap.add_argument("--stage", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--pin", nargs="*", default=[], metavar="KEY=VALUE",
                    help="method options written into every regenerated spec (changes the run ids)")
    ap.add_argument("--apply", action="store_true", help="move the staged runs in and rewrite sweep.json")
    ap.add_argument("--folders", nargs="*", default=None, help="only these sweeps (folder names)")
    ap.add_argument("--datasets", nargs="*", default=None, help="only runs of these datasets")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error("--jobs must be >= 1")
    pin: dict[str, object] = {}
    for item in a.pin:
        key, eq, value = item.partition("=")
        if not eq or not key:
            ap.error(f"--pin takes KEY=VALUE, got {item!r}")
        pin[key] = value
    stored = stale(a.results, set(a.methods), set(a.structured_too), folders=set(a.folders or ()) or None,
                   datasets=set(a.datasets or ()) or None)
    if pin:  # runs that already carry the pinned options are done
        stored = [p for p in stored if any((json.loads(p.read_text())["spec"].get("method_kwargs") or {}).get(k) != v
                                           for k, v in pin.items())]
    if a.apply:
        apply(a.results, a.stage, stored, pin)
        return 0
    todo = [p for p in stored if not (a.stage / p.parent.name / _new_name(p, pin)).exists()]
    print(f"{len(todo)} runs to regenerate into {a.stage}", flush=True)
    with ProcessPoolExecutor(a.jobs) as pool:
        futs = [pool.submit(_one, str(p), str(a.stage), pin) for p in todo]
        for i, f in enumerate(as_completed(futs), 1):
            path, dt = f.result()
            print(f"[{i}/{len(todo)}] {Path(path).parent.name}/{Path(path).name} {dt:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
