"""The containers every loader returns, the split protocol and the subsamplers.

Every example is a triple ``(x, y, s)``: ``x`` a float tensor, ``y`` the binary target and ``s``
the binary sensitive attribute, both ``torch.long`` in {0, 1}. A loader returns :class:`Splits`
(train / val / test), the protocol of the paper: pretrain on ``train``, prune and fine-tune on
``val``, report on ``test``. This module imports nothing of the project.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

SPLIT_NAMES = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# Core containers
# --------------------------------------------------------------------------------------------
def _as_binary_long(values: Any, what: str) -> Tensor:
    """Return ``values`` as a 1-D ``torch.long`` tensor in {0, 1}, or raise naming ``what``."""
    if not isinstance(values, Tensor):
        values = np.asarray(values)
        if values.dtype.kind not in "biuf":
            raise ValueError(f"{what} must hold binary values 0/1, found dtype {values.dtype} "
                             f"(e.g. {values.ravel()[:3].tolist()})")
    t = torch.as_tensor(values)
    if t.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        return t.long()
    if t.is_floating_point():
        if torch.isnan(t).any():
            raise ValueError(f"{what} contains NaN; it must hold binary values 0/1")
        if not torch.all(t == t.round()):
            raise ValueError(f"{what} must hold binary values 0/1, found non-integers")
    bad = torch.unique(t[(t != 0) & (t != 1)]) if t.numel() else t
    if bad.numel():
        raise ValueError(
            f"{what} must hold binary values 0/1, found {bad[:5].tolist()}"
            + (" ..." if bad.numel() > 5 else "")
        )
    return t.long()


class FairDataset(Dataset):
    """A torch ``Dataset`` of ``(x, y, s)`` triples.

    ``x`` is either a float tensor with the examples along dim 0 (data in memory) or any object
    with ``__len__`` and ``__getitem__`` returning a float tensor (images decoded lazily).
    ``y`` and ``s`` are always held in memory as ``torch.long`` in {0, 1}.
    """

    def __init__(
        self,
        x: Tensor | Any,
        y: Any,
        s: Any,
        *,
        name: str = "custom",
        meta: dict | None = None,
    ) -> None:
        self.y = _as_binary_long(y, f"{name}: y")
        self.s = _as_binary_long(s, f"{name}: s")
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if isinstance(x, Tensor):
            if not x.is_floating_point():
                x = x.float()
            if x.ndim < 2:
                raise ValueError(f"{name}: x must have shape [N, ...], got {tuple(x.shape)}")
            if not torch.isfinite(x).all():
                raise ValueError(f"{name}: x contains NaN or infinite values")
        if len(x) != len(self.y) or len(self.s) != len(self.y):
            raise ValueError(
                f"{name}: x, y and s must have the same length, got "
                f"{len(x)}, {len(self.y)} and {len(self.s)}"
            )
        self.x = x
        self.name = name
        self.meta: dict = dict(meta or {})

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.x[i], self.y[i], self.s[i]

    def batch(self, index: Sequence[int] | np.ndarray | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The examples at ``index`` as three stacked tensors ``(x [B, ...], y [B], s [B])``.

        One vectorised read where the storage allows it (a tensor, or an image store with its own
        ``batch``, such as the uint8 cache); otherwise item by item. Equal to stacking
        ``self[i]`` for every ``i``."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        if isinstance(self.x, Tensor):
            x = self.x[idx]
        elif callable(getattr(self.x, "batch", None)):
            x = self.x.batch(idx.numpy())
        else:
            x = torch.stack([torch.as_tensor(self.x[int(i)]) for i in idx])
        return x, self.y[idx], self.s[idx]

    @property
    def in_memory(self) -> bool:
        """True when ``x`` is one tensor (so ``dataset.x`` can be used directly)."""
        return isinstance(self.x, Tensor)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one ``x`` (without the batch dimension)."""
        if isinstance(self.x, Tensor):
            return tuple(self.x.shape[1:])
        return tuple(getattr(self.x, "item_shape", None) or self.x[0].shape)

    def group_counts(self) -> dict[tuple[int, int], int]:
        """Number of examples per ``(s, y)`` cell, all four cells present (zeros included)."""
        out = {}
        for sv in (0, 1):
            for yv in (0, 1):
                out[(sv, yv)] = int(((self.s == sv) & (self.y == yv)).sum())
        return out

    def subset(self, index: Sequence[int] | np.ndarray | Tensor, *, name: str | None = None) -> FairDataset:
        """A new dataset holding the examples at ``index`` (same meta)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        x = self.x[idx] if isinstance(self.x, Tensor) else self.x.take(idx.numpy())
        return FairDataset(x, self.y[idx], self.s[idx], name=name or self.name, meta=self.meta)

    def __repr__(self) -> str:
        return f"FairDataset(name={self.name!r}, n={len(self)}, input_shape={self.input_shape})"


@dataclass
class Splits:
    """The paper's protocol: ``train`` (pretrain), ``val`` (prune + fine-tune), ``test`` (report).

    Each split must contain both sensitive groups, otherwise group metrics are undefined.
    """

    train: FairDataset
    val: FairDataset
    test: FairDataset
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in SPLIT_NAMES:
            ds = getattr(self, split)
            if not isinstance(ds, FairDataset):
                raise ValueError(f"Splits.{split} must be a FairDataset, got {type(ds).__name__}")
            if len(ds) == 0:
                raise ValueError(f"{ds.name}: split {split!r} is empty")
            groups = torch.unique(ds.s).tolist()
            if len(groups) < 2:
                raise ValueError(
                    f"{ds.name}: split {split!r} contains only sensitive group s={groups[0]}; "
                    "both groups (s=0 and s=1) are needed to measure fairness"
                )

    def __iter__(self):
        return iter((self.train, self.val, self.test))

    def items(self) -> list[tuple[str, FairDataset]]:
        return [(k, getattr(self, k)) for k in SPLIT_NAMES]

    @property
    def name(self) -> str:
        return self.train.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    def summary(self) -> str:
        """A plain-text table: size, positive rate, share of s=1 and the four (s, y) cells."""
        head = f"{'split':<6}{'n':>8}{'P(y=1)':>8}{'P(s=1)':>8}{'s0y0':>8}{'s0y1':>8}{'s1y0':>8}{'s1y1':>8}"
        lines = [f"{self.name}: input shape {self.input_shape}", head, "-" * len(head)]
        for split, ds in self.items():
            c = ds.group_counts()
            n = len(ds)
            lines.append(
                f"{split:<6}{n:>8}{float(ds.y.float().mean()):>8.3f}{float(ds.s.float().mean()):>8.3f}"
                f"{c[(0, 0)]:>8}{c[(0, 1)]:>8}{c[(1, 0)]:>8}{c[(1, 1)]:>8}"
            )
        return "\n".join(lines)


def data_dir() -> Path:
    """The folder of shipped data: ``$FAIRPRUNE_DATA`` if set; else the copy inside the installed
    package (``fairprune_lite/data/shipped``, present in a wheel); else ``data/`` of the checkout."""
    env = os.environ.get("FAIRPRUNE_DATA")
    if env:
        path = Path(env)
        if not path.is_dir():
            raise FileNotFoundError(f"shipped data folder {path} (from FAIRPRUNE_DATA) not found")
        return path
    here = Path(__file__).resolve().parent
    candidates = (here / "shipped", here.parents[1] / "data")
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"shipped data folder not found (looked in {', '.join(str(p) for p in candidates)}); "
        "reinstall fairprune-lite from its wheel, or set FAIRPRUNE_DATA to the repository's data/ folder"
    )


def shipped_file(filename: str) -> Path:
    """The path of one shipped file, or FileNotFoundError naming it and where it was looked for."""
    path = data_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{filename} not found in {path.parent}; it ships with fairprune-lite (data/ in the "
            "repository, fairprune_lite/data/shipped in the wheel), or set FAIRPRUNE_DATA to a folder holding it"
        )
    return path


def _random_split(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Seeded random partition of ``range(n)``; the last part takes the remainder."""
    perm = np.random.default_rng(seed).permutation(n)
    out, start = [], 0
    for f in fractions:
        k = int(round(f * n))
        out.append(np.sort(perm[start : start + k]))
        start += k
    out.append(np.sort(perm[start:]))
    return out


def _check_fraction(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{what} must be in (0, 1), got {value}")
    return value


def random_subsample(ds: FairDataset, limit: int | None, seed: int, split: str) -> FairDataset:
    """Seeded subsample of at most ``limit`` examples (the loaders' ``limit=``, for quick CPU runs)."""
    if limit is None or len(ds) <= limit:
        return ds
    if int(limit) < 2:
        raise ValueError(f"limit must be at least 2, got {limit}")
    idx = np.sort(np.random.default_rng([seed, SPLIT_NAMES.index(split), 7]).permutation(len(ds))[: int(limit)])
    return ds.subset(idx)


def stratified_subsample(ds: FairDataset, limit: int | None, seed: int, split: str) -> FairDataset:
    """At most ``limit`` examples, the same share of every ``(s, y)`` cell (at least one of each
    non-empty cell), chosen by a seeded generator; the order of the kept examples is preserved.

    The experiment runner caps splits with it, so that a capped split keeps the group structure
    the fairness metrics measure."""
    n = len(ds)
    if limit is None or n <= limit:
        return ds
    rng = np.random.default_rng([seed, SPLIT_NAMES.index(split), 11])
    y = ds.y.cpu().numpy()
    s = ds.s.cpu().numpy()
    keep = []
    for sv in (0, 1):
        for yv in (0, 1):
            idx = np.flatnonzero((s == sv) & (y == yv))
            if len(idx) == 0:
                continue
            k = max(1, int(round(limit * len(idx) / n)))
            keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    index = np.sort(np.concatenate(keep))
    return ds.subset(index)
