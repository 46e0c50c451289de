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

from ..fairness import METRIC_OF_KIND
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
FEASIBILITY_KEYS = METRIC_OF_KIND


def tolerance_key(path: str) -> str:
    """The key a compared leaf's tolerance is filed under in TOLERANCES.json: the last component
    of its dotted path that is not all digits (group labels and list indices are skipped)."""
    parts = [p for p in path.split(".") if not p.isdigit()]
    return parts[-1] if parts else path


def _family_tolerances(stored: Mapping[str, Any], tolerances: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The measured tolerances for ``stored``'s model family, the method's own entries (tighter
    where they exist) over the family's; None when the family has none."""
    family = str(stored.get("model"))
    fams = (tolerances or {}).get("families", {})
    if family not in fams:
        return None
    method_tol = (tolerances or {}).get("methods", {}).get(family, {}).get(str(stored.get("method")), {})
    return {**fams[family], **method_tol}


class _Comparison:
    """One walk over the verified fields of a stored and a recomputed result: the mismatches, and
    the largest difference of a number that was allowed to differ (``worst``, at ``worst_at``)."""

    def __init__(self, *, exact: bool, atol: float, family: str, tol: Mapping[str, float]) -> None:
        self.exact, self.atol, self.family, self.tol = exact, atol, family, tol
        self.mismatches: list[str] = []
        self.worst = 0.0
        self.worst_at: str | None = None

    def _differ(self, path: str, a: Any, b: Any, why: str = "") -> None:
        self.mismatches.append(f"{path}: stored {a!r} != recomputed {b!r}{why}")

    def walk(self, a: Any, b: Any, path: str, key: str | None = None) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            self._walk_dict(a, b, path)
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                self.mismatches.append(f"{path}: length {len(a)} != {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                self.walk(x, y, f"{path}.{i}")
        else:
            self._leaf(a, b, path, key)

    def _walk_dict(self, a: dict, b: dict, path: str) -> None:
        # across machines a feasibility block's value and se get the tolerance of the metric it
        # reports (``fkey``)
        feas = not self.exact and path.endswith(".feasibility")
        fkey = FEASIBILITY_KEYS.get(str(a.get("metric"))) if feas else None
        for k in sorted(set(a) | set(b), key=str):
            if k in IGNORED or k not in a:  # not compared; or a key the schema gained after storing
                continue
            if k not in b:
                self.mismatches.append(f"{path}.{k}: stored but not recomputed")
            elif not (k == "met" and self._met_may_differ(a, b, fkey)):
                self.walk(a[k], b[k], f"{path}.{k}", fkey if k in ("value", "se") else None)

    def _met_may_differ(self, a: dict, b: dict, fkey: str | None) -> bool:
        """Across machines ``met`` may differ where the stored value is within its metric's
        tolerance of tau."""
        return (fkey is not None and fkey in self.tol and a["met"] != b["met"]
                and abs(float(a["value"]) - float(a["tau"])) <= self.tol[fkey])

    def _leaf(self, a: Any, b: Any, path: str, key: str | None) -> None:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            if a != b:
                self._differ(path, a, b)
            return
        diff = abs(float(a) - float(b))
        if math.isnan(diff) or self.exact:
            if math.isnan(diff) or diff > self.atol:
                self._differ(path, a, b)
            return
        self._within_tolerance(a, b, diff, path, key or tolerance_key(path))

    def _within_tolerance(self, a: float, b: float, diff: float, path: str, key: str) -> None:
        top = path.split(".")[0]
        both_int = isinstance(a, int) and isinstance(b, int)
        if top in ALWAYS_EXACT_TOP or (top == "cost" and both_int):
            if diff != 0:
                self._differ(path, a, b, " (always exact)")
            return
        tol = self.tol.get(key)
        if tol is None:
            if diff != 0:
                self._differ(path, a, b, ": " + ("integer, exact" if both_int
                                                 else f"no measured tolerance for {path} ({self.family})"))
        elif diff > tol:
            self._differ(path, a, b, f" (|diff| {diff:.3g} > tolerance {tol:g} for {key!r}, {self.family})")
        elif diff > self.worst:
            self.worst, self.worst_at = diff, path


def compare_results(stored: Mapping[str, Any], new: Mapping[str, Any], *, exact: bool,
                    tolerances: Mapping[str, Any] | None = None, atol: float = 0.0) -> dict[str, Any]:
    """Compare the verified fields (:data:`~fairprune_lite.experiments.results.VERIFIED`) of two
    results. ``exact``: every number within ``atol``; else the measured ``tolerances``. Returns
    ``{"mismatches": [...], "max_diff": float, "at": path or None}`` (the largest difference of
    a number that was allowed to differ)."""
    family = str(stored.get("model"))
    fam_tol: dict[str, float] | None = {}  # exact comparisons use none
    if not exact:
        fam_tol = _family_tolerances(stored, tolerances)
        if fam_tol is None:
            where = "TOLERANCES.json" if tolerances is not None else "no tolerances file"
            return {"mismatches": [f"no measured tolerances for family {family!r} ({where}); cannot compare across "
                                   "machines"], "max_diff": 0.0, "at": None, "impossible": True}
    cmp = _Comparison(exact=exact, atol=atol, family=family, tol=fam_tol or {})
    for k in VERIFIED:
        cmp.walk(stored.get(k), new.get(k), k)
    return {"mismatches": cmp.mismatches, "max_diff": cmp.worst, "at": cmp.worst_at, "impossible": False}


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
