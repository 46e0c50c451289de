"""Where a result comes from: versions, git commit and whether the tree was dirty, device, and the
machine fingerprint that decides how exactly a result can be recomputed elsewhere.

CPU float kernels differ between processors (vector width, oneDNN / MKL code paths), so a run is
bit-identical only on a machine with the same :func:`fingerprint`; ``verify`` compares exactly
when the fingerprints are equal and within measured tolerances otherwise.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__

__all__ = ["provenance", "device_name", "fingerprint", "git_state", "REPO", "BOOK_RESULTS", "IN_CHECKOUT"]

_PACKAGE = Path(__file__).resolve().parents[1]
#: whether the package runs from a checkout of the repository (else from an installed wheel)
IN_CHECKOUT = (_PACKAGE.parent / "pyproject.toml").is_file() and (_PACKAGE.parent / "book").is_dir()
#: the checkout; for an installed package the package folder itself (no .git there: no commit
#: is recorded), never the folder that happens to hold it (site-packages)
REPO = _PACKAGE.parent if IN_CHECKOUT else _PACKAGE
#: the book's stored results (in an installed package a path that does not exist: nothing to guard)
BOOK_RESULTS = REPO / "book" / "results"
FINGERPRINT_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """The repository's commit and whether tracked files differ from it (``None`` without git)."""
    if not (REPO / ".git").exists():
        return None, None
    commit = _git(["rev-parse", "HEAD"], REPO)
    status = _git(["status", "--porcelain", "--untracked-files=no"], REPO)
    return commit, (None if status is None else bool(status))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: str) -> str:
    """A human-readable name of the device (GPU model or CPU model)."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return _cpu_name()


def fingerprint(device: str = "cpu") -> dict[str, Any]:
    """What decides the bits of a run: CPU model, the instruction set torch dispatches to
    (``torch.backends.cpu.get_cpu_capability()``), torch version and build, torch threads, the
    dispatch overrides ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` when set, and the GPU."""
    fp: dict[str, Any] = {
        "cpu": _cpu_name(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "threads": torch.get_num_threads(),
    }
    for k in FINGERPRINT_ENV:
        if os.environ.get(k):
            fp[k] = os.environ[k]
    if str(device).startswith("cuda") and torch.cuda.is_available():
        fp["gpu"] = torch.cuda.get_device_name(torch.device(device))
        fp["cuda"] = torch.version.cuda
    return fp


def provenance(device: str = "cpu") -> dict[str, Any]:
    """Where a result comes from: versions, git commit (and whether the tracked tree was dirty),
    device, a machine description without the hostname, the fingerprint, and the UTC date."""
    commit, dirty = git_state()
    return {
        "package": "fairprune-lite",
        "version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs",
        "torch_threads": torch.get_num_threads(),
        "fingerprint": fingerprint(device),
        "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    }
