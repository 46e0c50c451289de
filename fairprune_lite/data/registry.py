"""The dataset registry: built-in names and ``.npz`` paths behind one :func:`load_dataset`."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .adult import load_adult
from .core import Splits
from .faces import load_celeba, load_lfw
from .fashion import load_fashion
from .npz import load_npz

__all__ = ["DATASETS", "load_dataset"]

DATASETS: dict[str, Callable[..., Splits]] = {
    "adult": load_adult,
    "fashion": load_fashion,
    "celeba": load_celeba,
    "lfw": load_lfw,
}


def load_dataset(
    name: str | Path,
    *,
    root: str | Path | None = None,
    target: str | Sequence[int] | None = None,
    sensitive: str | None = None,
    seed: int = 0,
    **kw: Any,
) -> Splits:
    """Load a built-in dataset by name (``adult``, ``fashion``, ``celeba``, ``lfw``) or a ``.npz``
    file by path; extra keyword arguments go to that loader (unknown ones raise ValueError)."""
    key = str(name)
    if key.endswith(".npz"):
        if target is not None or sensitive is not None or root is not None:
            raise ValueError("a .npz file defines its own x, y, s: target, sensitive and root do not apply")
        accepted = ("val_fraction", "test_fraction", "name")
        for k in kw:
            if k not in accepted:
                raise ValueError(f"load_npz: unknown argument {k!r}; accepted: seed, {', '.join(accepted)}")
        return load_npz(key, seed=seed, **kw)
    if key.lower() not in DATASETS:
        raise ValueError(f"unknown dataset {key!r}; choose one of {sorted(DATASETS)} or a path ending in .npz")
    loader = DATASETS[key.lower()]
    params = inspect.signature(loader).parameters
    for k in kw:
        if k not in params:
            options = [p for p in params if p not in ("root", "target", "sensitive", "seed")]
            raise ValueError(f"{key}: unknown argument {k!r}; accepted: {', '.join(options)}")
    return loader(root=root, target=target, sensitive=sensitive, seed=seed, **kw)
