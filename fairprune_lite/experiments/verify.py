"""Recompute stored results and compare them with what was stored.

CPU runs are bit-identical only on a machine with the same fingerprint
(:func:`~fairprune_lite.experiments.provenance.fingerprint`: CPU model, dispatched instruction
set, torch build, threads). So each recomputed run is compared

* **exactly** when the stored fingerprint equals the current one;
* otherwise **within measured tolerances** read from ``book/results/TOLERANCES.json``: per model
  family (``result["model"]``) and metric key, the largest difference measured between CPU
  dispatch levels. Counts of ``cost`` (iterations, passes, examples), strings, booleans, split
  sizes, attributes and model are always exact; a float without a measured tolerance, or a
  family absent from the file, is a mismatch, never a silent pass. A key the recomputed result
  has and the stored one lacks (the schema grew since) is not compared; the reverse is a mismatch.

Results without a fingerprint (written before it was recorded) count as another machine.
"""
from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import RunSpec
from .profiles import log, quiet_default
from .provenance import BOOK_RESULTS
from .results import VERIFIED, load_results
from .run import default_cache_dir, run

__all__ = ["verify", "compare_results", "load_tolerances", "tolerance_key", "TOLERANCES_FILE"]

#: the measured tolerances: the book's file in a checkout, the copy shipped in the wheel otherwise
#: (pyproject.toml packages book/results/TOLERANCES.json as fairprune_lite.experiments.shipped)
TOLERANCES_FILE = (BOOK_RESULTS / "TOLERANCES.json" if (BOOK_RESULTS / "TOLERANCES.json").is_file()
                   else Path(__file__).resolve().parent / "shipped" / "TOLERANCES.json")
IGNORED = {"wall_time_s", "provenance", "_path", "cached", "date", "weights"}
ALWAYS_EXACT_TOP = {"n", "target", "sensitive", "model"}


def load_tolerances(path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The measured tolerances (``None`` when the file does not exist); ``ValueError`` naming the
    file when it is not of the documented form."""
    p = Path(path) if path is not None else TOLERANCES_FILE
    if not p.is_file():
        if path is not None:
            raise FileNotFoundError(f"tolerances file {p} not found")
        return None
    try:
        tol = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(tol, dict) or not isinstance(tol.get("families"), dict):
        raise ValueError(f"{p}: expected an object with a 'families' mapping")
    for fam, keys in tol["families"].items():
        if not isinstance(keys, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in keys.values()):
            raise ValueError(f"{p}: families.{fam} must map metric keys to non-negative numbers")
    return tol


#: a ``feasibility`` block's ``metric`` -> the result key whose measured tolerance its numbers get
FEASIBILITY_KEYS = {"accuracy_gap": "accuracy_gap", "demographic_parity": "demographic_parity_difference",
                    "equalized_odds": "equalized_odds_difference"}


def tolerance_key(path: str) -> str:
    """The key a compared leaf's tolerance is filed under in TOLERANCES.json: the last component
    of its dotted path that is not all digits (group labels and list indices are skipped)."""
    parts = [p for p in path.split(".") if not p.isdigit()]
    return parts[-1] if parts else path


def compare_results(stored: Mapping[str, Any], new: Mapping[str, Any], *, exact: bool,
                    tolerances: Mapping[str, Any] | None = None, atol: float = 0.0) -> dict[str, Any]:
    """Compare the verified fields (:data:`~fairprune_lite.experiments.results.VERIFIED`) of two
    results. ``exact``: every number within ``atol``; else the measured ``tolerances``. Returns
    ``{"mismatches": [...], "max_diff": float, "at": path or None}`` (the largest difference of
    a number that was allowed to differ)."""
    family = str(stored.get("model"))
    fam_tol: dict[str, float] = {}  # exact comparisons use none
    out: list[str] = []
    if not exact:
        fams = (tolerances or {}).get("families", {})
        if family not in fams:
            where = "TOLERANCES.json" if tolerances is not None else "no tolerances file"
            out.append(f"no measured tolerances for family {family!r} ({where}); cannot compare across machines")
            return {"mismatches": out, "max_diff": 0.0, "at": None, "impossible": True}
        # the method's own measured entry is tighter where it exists; the family's covers the rest
        method_tol = (tolerances or {}).get("methods", {}).get(family, {}).get(str(stored.get("method")), {})
        fam_tol = {**fams[family], **method_tol}
    worst: dict[str, Any] = {"d": 0.0, "at": None}

    def leaf(a: Any, b: Any, path: str, key: str | None = None) -> None:
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if not numeric:
            if a != b:
                out.append(f"{path}: stored {a!r} != recomputed {b!r}")
            return
        diff = abs(float(a) - float(b))
        if math.isnan(diff):
            out.append(f"{path}: stored {a!r} != recomputed {b!r}")
            return
        if exact:
            if diff > atol:
                out.append(f"{path}: stored {a!r} != recomputed {b!r}")
            return
        top = path.split(".")[0]
        both_int = isinstance(a, int) and isinstance(b, int)
        if top in ALWAYS_EXACT_TOP or (top == "cost" and both_int):
            if diff != 0:
                out.append(f"{path}: stored {a!r} != recomputed {b!r} (always exact)")
            return
        key = key or tolerance_key(path)
        tol = fam_tol.get(key)
        if tol is None:
            if diff != 0:
                out.append(f"{path}: stored {a!r} != recomputed {b!r}: "
                           + ("integer, exact" if both_int else f"no measured tolerance for {path} ({family})"))
            return
        if diff > tol:
            out.append(f"{path}: stored {a!r} != recomputed {b!r} (|diff| {diff:.3g} > tolerance {tol:g} "
                       f"for {key!r}, {family})")
        elif diff > worst["d"]:
            worst.update(d=diff, at=path)

    def walk(a: Any, b: Any, path: str, key: str | None = None) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            # across machines a feasibility block's value and se get the tolerance of the metric
            # it reports, and ``met`` may differ where the stored value is within it of tau
            feas = not exact and path.endswith(".feasibility")
            fkey = FEASIBILITY_KEYS.get(str(a.get("metric"))) if feas else None
            for k in sorted(set(a) | set(b), key=str):
                if k in IGNORED:
                    continue
                if k not in a:  # a key the schema gained after the result was stored
                    continue
                if k not in b:
                    out.append(f"{path}.{k}: stored but not recomputed")
                    continue
                if (k == "met" and fkey is not None and fkey in fam_tol and a[k] != b[k]
                        and abs(float(a["value"]) - float(a["tau"])) <= fam_tol[fkey]):
                    continue
                walk(a[k], b[k], f"{path}.{k}", fkey if k in ("value", "se") else None)
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"{path}: length {len(a)} != {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}.{i}")
        else:
            leaf(a, b, path, key)

    for k in VERIFIED:
        walk(stored.get(k), new.get(k), k)
    return {"mismatches": out, "max_diff": worst["d"], "at": worst["at"], "impossible": False}


def verify(results_dir: str | os.PathLike, n: int = 3, seed: int = 0, *, atol: float = 0.0,
           fresh_cache: bool = True, device: str | None = None, quiet: bool | None = None,
           root: Any = None, tolerances: str | os.PathLike | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Recompute ``n`` randomly chosen stored results (chosen with ``seed``) and compare.

    Exactly (within ``atol``, default 0) when the result's machine fingerprint equals this
    machine's, else within the measured ``tolerances`` (a mapping, a file, or by default
    ``book/results/TOLERANCES.json``). ``fresh_cache`` recomputes the dense pretraining too (in a
    temporary cache). Results produced on another kind of device (e.g. a GPU) are skipped.
    Returns ``{"ok", "checked", "checks", "mismatches", "bad_files", "skipped"}``; ``checks``
    says per run which comparison was made (``"exact"`` or ``"within tolerance, max |diff| = ...
    (at <path>)"``); ``ok`` is False on any mismatch or unreadable file.
    """
    quiet = quiet_default() if quiet is None else quiet
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    tol = tolerances if isinstance(tolerances, Mapping) else load_tolerances(tolerances)
    results, bad = load_results(results_dir)
    if not results and not bad:
        raise ValueError(f"no result files in {results_dir}")
    here = "cuda" if (device or "").startswith("cuda") else "cpu"
    eligible: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for r in results:
        kind = "cuda" if str(r["provenance"].get("device", "cpu")).startswith("cuda") else "cpu"
        (eligible if kind == here else skipped).append(r)
    rng = random.Random(seed)
    sample = rng.sample(eligible, min(n, len(eligible)))
    report: dict[str, Any] = {"checked": [], "checks": {}, "mismatches": {}, "bad_files": bad,
                              "skipped": [r["run_id"] for r in skipped]}
    with tempfile.TemporaryDirectory(prefix="fairprune-verify-") as tmp:
        for r in sample:
            spec = RunSpec.from_dict(r["spec"])
            cache = Path(tmp) / "cache" if fresh_cache else default_cache_dir(Path(r["_path"]).parent.parent)
            log(f"verify {r['run_id']} ...", quiet)
            new = run(spec, out=None, cache_dir=cache, device=device, quiet=True, root=root)
            stored_fp = r["provenance"].get("fingerprint")
            exact = stored_fp is not None and stored_fp == new["provenance"]["fingerprint"]
            cmp = compare_results(r, new, exact=exact, tolerances=tol, atol=atol)
            if exact:
                check = "exact"
            elif cmp["impossible"]:
                check = f"within tolerance: impossible, no measured tolerances for family {r['model']!r}"
            elif cmp["at"] is None:
                check = "within tolerance, max |diff| = 0"
            else:
                check = f"within tolerance, max |diff| = {cmp['max_diff']:.3g} (at {cmp['at']})"
            report["checked"].append(r["run_id"])
            report["checks"][r["run_id"]] = check
            if cmp["mismatches"]:
                report["mismatches"][r["run_id"]] = cmp["mismatches"]
                log(f"  MISMATCH [{check.split(',')[0]}] ({len(cmp['mismatches'])}): "
                    + "; ".join(cmp["mismatches"][:5]), quiet)
            else:
                log(f"  ok: {check}", quiet)
    report["ok"] = not report["mismatches"] and not bad
    return report
