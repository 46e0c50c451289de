"""The result of one run: ONE schema (:class:`Result`) that the runner writes, :func:`validate_result`
reads and ``verify`` compares; atomic storage (:mod:`fairprune_lite.atomic`).

Each field of :class:`Result` says its JSON type, whether it is required, and whether ``verify``
recomputes it (``verify=True``: measured sparsity, the metrics of ``val`` / ``test`` / ``dense``,
the counts of ``cost``, per-layer masks, split sizes, attributes and model). Wall times, dates
and provenance are never compared.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write, atomic_write_bytes
from .config import RunSpec

__all__ = ["Result", "ResultError", "SCHEMA", "SPLITS", "validate_result", "load_result", "load_results",
           "write_json", "atomic_torch_save", "check_writable", "finite", "VERIFIED", "METRIC_KEYS"]

SCHEMA = "fairprune-lite/result/1"
SPLITS = ("val", "test")
METRIC_KEYS = ("accuracy", "accuracy_gap", "demographic_parity_difference", "equalized_odds_difference",
               "majority_baseline", "degradation", "degradation_gap")
COST_KEYS = ("iterations", "forward_passes", "backward_passes", "wall_time_s")
FEASIBILITY_KEYS = {"metric": (str,), "value": (int, float), "tau": (int, float), "se": (int, float, type(None)),
                    "met": (bool,)}


class ResultError(ValueError):
    """A result file that does not parse or does not validate."""


def _f(typ: Any, *, required: bool = False, verify: bool = False, default: Any = None) -> Any:
    return field(default=default, metadata={"type": typ, "required": required, "verify": verify})


@dataclass
class Result:
    """One run's result; field order is the order of the JSON file."""

    schema: str = _f(str, required=True, default=SCHEMA)
    run_id: str = _f(str, required=True, default="")
    spec: dict = _f(dict, required=True)
    label: str = _f(str, required=True, default="")
    method: str = _f(str, required=True, default="")
    dataset: str = _f(str, required=True, default="")
    target: str | None = _f((str, type(None)), verify=True)
    sensitive: str | None = _f((str, type(None)), verify=True)
    model: str = _f(str, required=True, verify=True, default="")
    width: Any = _f(object)
    sparsity_target: float = _f(float, required=True, default=0.0)
    sparsity: float = _f(float, required=True, verify=True, default=0.0)
    structured: bool | None = _f((bool, type(None)))
    seed: int = _f(int, required=True, default=0)
    profile: str = _f(str, required=True, default="")
    profile_settings: dict | None = _f((dict, type(None)))
    constraint: str = _f(str, required=True, default="")
    tau: float = _f(float, required=True, default=0.0)
    surrogate: str | None = _f((str, type(None)))
    constraint_config: dict | None = _f((dict, type(None)))
    budget: float | None = _f((int, float, type(None)))
    n: dict | None = _f((dict, type(None)), verify=True)
    val: dict = _f(dict, required=True, verify=True)
    test: dict = _f(dict, required=True, verify=True)
    dense: dict = _f(dict, required=True, verify=True)
    cost: dict = _f(dict, required=True, verify=True)
    pretrain_cost: dict | None = _f((dict, type(None)))
    wall_time_s: float | None = _f((int, float, type(None)))
    layers: dict | None = _f((dict, type(None)), verify=True)
    method_config: dict | None = _f((dict, type(None)))
    history: list | None = _f((list, type(None)))
    weights: str | None = _f((str, type(None)))
    warnings: list | None = _f((list, type(None)))
    provenance: dict = _f(dict, required=True)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not d["warnings"]:
            d.pop("warnings")  # results without warnings look as they always did
        return d


FIELDS = {f.name: f for f in dataclasses.fields(Result)}
VERIFIED = tuple(name for name, f in FIELDS.items() if f.metadata["verify"])


def _is(v: Any, typ: Any) -> bool:
    if typ is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if typ is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if typ is object:
        return True
    return isinstance(v, typ)


def _typename(typ: Any) -> str:
    return "/".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__


def validate_result(res: Any, *, where: str = "result") -> dict[str, Any]:
    """Check a result dict against :class:`Result`; raise :class:`ResultError` naming what is wrong."""
    if not isinstance(res, dict):
        raise ResultError(f"{where}: not a JSON object")
    _check_fields(res, where)
    if res["schema"] != SCHEMA:
        raise ResultError(f"{where}: unknown schema {res['schema']!r} (expected {SCHEMA!r})")
    for split in SPLITS:
        _check_split(res, split, where)
    for k in COST_KEYS:
        v = res["cost"].get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ResultError(f"{where}: cost.{k} missing or not a non-negative number")
    if not 0.0 <= res["sparsity"] <= 1.0:
        raise ResultError(f"{where}: sparsity {res['sparsity']} outside [0, 1]")
    if res.get("warnings") is not None and not all(isinstance(w, str) for w in res["warnings"]):
        raise ResultError(f"{where}: warnings must be a list of strings")
    try:
        spec = RunSpec.from_dict(res["spec"])
    except (TypeError, ValueError) as e:
        raise ResultError(f"{where}: bad spec ({e})") from None
    if spec.run_id() != res["run_id"]:
        raise ResultError(f"{where}: run_id does not match its spec")
    return res


def _check_fields(res: dict[str, Any], where: str) -> None:
    """Every required field of :class:`Result` present, every present field of its type."""
    for name, f in FIELDS.items():
        if name not in res:
            if f.metadata["required"]:
                raise ResultError(f"{where}: missing key {name!r}")
            continue
        if not _is(res[name], f.metadata["type"]):
            raise ResultError(f"{where}: {name!r} must be {_typename(f.metadata['type'])}, "
                              f"got {type(res[name]).__name__}")


def _check_split(res: dict[str, Any], split: str, where: str) -> None:
    """A split's metrics: every :data:`METRIC_KEYS` a number, accuracy and its gap in [0, 1], a
    well-formed feasibility block, and the dense model's accuracy on the split."""
    m = res[split]
    for k in METRIC_KEYS:
        v = m.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ResultError(f"{where}: {split}.{k} missing or not a number")
    for k in ("accuracy", "accuracy_gap"):
        if not 0.0 <= m[k] <= 1.0:
            raise ResultError(f"{where}: {split}.{k} = {m[k]} outside [0, 1]")
    if "feasibility" in m:
        _check_feasibility(m["feasibility"], f"{where}: {split}.feasibility")
    if split not in res["dense"] or "accuracy" not in res["dense"][split]:
        raise ResultError(f"{where}: dense.{split}.accuracy missing")


def _check_feasibility(fz: Any, where: str) -> None:
    if not isinstance(fz, dict):
        raise ResultError(f"{where}: must be a mapping")
    for k, typ in FEASIBILITY_KEYS.items():
        if k not in fz:
            raise ResultError(f"{where}: missing key {k!r}")
        if not isinstance(fz[k], typ) or (bool not in typ and isinstance(fz[k], bool)):
            raise ResultError(f"{where}.{k}: must be {_typename(typ)}, got {type(fz[k]).__name__}")


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one result file; :class:`ResultError` if it does not parse or validate."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ResultError(f"{p}: unreadable ({e.strerror or e})") from None
    try:
        res = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    res = validate_result(res, where=str(p))
    if p.name != f"{res['run_id']}.json":
        raise ResultError(f"{p}: file name does not match run_id {res['run_id']!r}")
    return res


def is_result_file(p: Path, folder: Path) -> bool:
    rel = p.relative_to(folder).parts
    return not (p.name.startswith(".") or p.name == "sweep.json" or p.name.endswith(".failed.json")
                or "interp" in rel[:-1] or "cache" in rel[:-1])


def load_results(folder: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """All valid results in ``folder`` (recursively) and the ``(path, reason)`` of bad files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} not found")
    good, bad = [], []
    for p in sorted(folder.rglob("*.json")):
        if not is_result_file(p, folder):
            continue
        try:
            good.append(load_result(p) | {"_path": str(p)})
        except ResultError as e:
            bad.append((str(p), str(e)))
    return good, bad


# ---------------------------------------------------------------------------------------------
# atomic storage
# ---------------------------------------------------------------------------------------------
def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (temporary file in the same folder, then ``os.replace``)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove it is writable; ``ValueError`` naming it otherwise."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"output folder {str(path)!r} is not writable ({e.strerror or e})") from None
    return path


def finite(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` (JSON has no NaN) so files stay strictly valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj
