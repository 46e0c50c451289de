"""Bring your own data: arrays in memory (:func:`from_tensors`) or a ``.npz`` file (:func:`load_npz`)."""
from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .core import SPLIT_NAMES, FairDataset, Splits, _as_binary_long, _check_fraction, _random_split

__all__ = ["from_tensors", "load_npz"]


def from_tensors(
    x: Any,
    y: Any,
    s: Any,
    *,
    split: Sequence[str] | np.ndarray | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    name: str = "tensors",
    meta: dict | None = None,
) -> Splits:
    """In-memory data as :class:`Splits`. ``split`` gives 'train'/'val'/'test' per example;
    without it a seeded random partition with the given fractions is used."""
    x_t = torch.as_tensor(_numeric(np.asarray(x), f"{name}: x")) if not isinstance(x, Tensor) else x
    if x_t.ndim < 2:
        raise ValueError(f"{name}: x must have shape [N, ...] with at least 2 dimensions, got {tuple(x_t.shape)}")
    if not (x_t.is_floating_point() or x_t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise ValueError(f"{name}: x must be numeric, got dtype {x_t.dtype}")
    x_t = x_t.float()
    y_t = _as_binary_long(y, f"{name}: y")
    s_t = _as_binary_long(s, f"{name}: s")
    n = len(x_t)
    if len(y_t) != n or len(s_t) != n:
        raise ValueError(f"{name}: x, y and s must have the same length, got {n}, {len(y_t)} and {len(s_t)}")
    if split is None:
        val_fraction = _check_fraction(val_fraction, "val_fraction")
        test_fraction = _check_fraction(test_fraction, "test_fraction")
        if val_fraction + test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        val_i, test_i, train_i = _random_split(n, [val_fraction, test_fraction], seed)
        parts = {"train": train_i, "val": val_i, "test": test_i}
        how = f"seeded random (seed {seed}), val {val_fraction}, test {test_fraction}"
    else:
        split_a = np.asarray(split).astype(str)
        if split_a.shape != (n,):
            raise ValueError(f"{name}: split must have one entry per example ({n}), got shape {split_a.shape}")
        bad = sorted(set(split_a.tolist()) - set(SPLIT_NAMES))
        if bad:
            raise ValueError(f"{name}: split holds values {bad[:5]}; allowed are 'train', 'val', 'test'")
        parts = {k: np.flatnonzero(split_a == k) for k in SPLIT_NAMES}
        for k, idx in parts.items():
            if len(idx) == 0:
                raise ValueError(f"{name}: split has no {k!r} examples")
        how = "given by the split array"
    info = dict(meta or {}) | {"split_rule": how, "seed": seed}
    sets = [FairDataset(x_t[parts[k]], y_t[parts[k]], s_t[parts[k]], name=name, meta=info | {"split": k})
            for k in SPLIT_NAMES]
    train, val, test = sets
    return Splits(train, val, test, meta=info)


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (a .npz), or an empty one
NPY_MAGIC = b"\x93NUMPY"


def _numeric(array: np.ndarray, what: str, *, binary: bool = False) -> np.ndarray:
    """``array`` if its dtype is boolean or numeric, else ValueError naming ``what`` and the dtype."""
    if array.dtype.kind not in "biuf":
        kind = {"U": "strings", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time deltas",
                "c": "complex numbers", "V": "structured records"}.get(array.dtype.kind, "non-numeric values")
        raise ValueError(f"{what} holds {kind} (dtype {array.dtype}); it must be numeric"
                         + (" (binary 0/1 or bool)" if binary else ""))
    return array


def load_npz(
    path: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    name: str | None = None,
) -> Splits:
    """Your own data: a ``.npz`` with arrays ``x`` [N, ...], ``y`` [N] and ``s`` [N] (binary 0/1),
    and optionally ``split`` [N] of 'train'/'val'/'test' strings (else a seeded split).

    A file that is not a zip archive of arrays (``numpy.savez``), an array of strings or objects
    where numbers are needed, or a missing array raises ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(ZIP_MAGIC):
        what = ("a single .npy array (save x, y and s together with numpy.savez)" if head.startswith(NPY_MAGIC)
                else "empty" if not head else f"not a zip archive (it starts with {head[:4]!r})")
        raise ValueError(f"{path}: not a .npz file: {what}; expected numpy.savez(path, x=..., y=..., s=...)")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e})") from None
    with z:
        for key in ("x", "y", "s"):
            if key not in z.files:
                raise ValueError(f"{path}: array {key!r} missing (found {sorted(z.files)}); need x, y, s")
        arrays = {}
        for k in z.files:
            try:
                arrays[k] = z[k]
            except ValueError:  # object arrays need pickle, which is refused
                raise ValueError(f"{path}: array {k!r} holds Python objects (pickled); save numeric arrays "
                                 "(and split as strings)") from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise ValueError(f"{path}: array {k!r} cannot be read, the archive is damaged "
                                 f"({type(e).__name__}: {e})") from None
    for key in ("x", "y", "s"):
        _numeric(arrays[key], f"{path}: array {key!r}", binary=key != "x")
    return from_tensors(
        arrays["x"], arrays["y"], arrays["s"], split=arrays.get("split"), seed=seed,
        val_fraction=val_fraction, test_fraction=test_fraction, name=name or path.stem,
        meta={"source": str(path)},
    )
