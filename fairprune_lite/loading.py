"""Batches of ``(x, y, s)``: the deterministic :class:`BatchLoader`, subsets, endless passes
(:func:`cycle`) and moving a batch to the model's device.

Every method and :func:`fairprune_lite.train.fit` / :func:`~fairprune_lite.train.predict` read
their data through these, so batch order and counting are the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["BatchLoader", "make_loader", "subset", "cycle", "model_device"]


class BatchLoader:
    """Deterministic batches of ``(x, y, s)`` from a dataset, no worker processes.

    In-memory datasets (``dataset.x`` a tensor, as :class:`~fairprune_lite.data.FairDataset`
    holds tabular and cached image data) are sliced directly, which is far faster than
    collating single items; any other map-style dataset is indexed item by item and stacked.
    With ``shuffle=True`` the order comes from a private generator seeded with ``seed``: the
    k-th pass over a loader is the same for every loader built with the same arguments, and the
    global RNG is neither used nor advanced.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ValueError(f"dataset must be a map-style dataset of (x, y, s), got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("dataset is empty")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self._gen = torch.Generator().manual_seed(self.seed)
        if self.drop_last and len(dataset) < self.batch_size:
            raise ValueError(f"drop_last=True with batch_size={batch_size} > dataset size {len(dataset)} gives no batch")

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self._gen) if self.shuffle else torch.arange(n)
        ds: Any = self.dataset  # a FairDataset, an image cache or any map-style dataset
        fast = isinstance(getattr(ds, "x", None), Tensor) and isinstance(getattr(ds, "y", None), Tensor) \
            and isinstance(getattr(ds, "s", None), Tensor)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if fast:
                yield ds.x[idx], ds.y[idx], ds.s[idx]
            elif callable(getattr(ds, "batch", None)):  # image caches read a batch in one gather
                yield ds.batch(idx)
            else:
                items = [ds[int(i)] for i in idx]
                yield tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(3))  # type: ignore[misc]


class _Part(Dataset):
    """Examples ``idx`` of an in-memory dataset, as tensors ``x, y, s`` (the loader's fast path)."""

    def __init__(self, base: Any, idx: Tensor) -> None:
        self.x, self.y, self.s = base.x[idx], base.y[idx], base.s[idx]
        self.name = f"{getattr(base, 'name', 'data')}[{len(idx)}]"

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.x[i], self.y[i], self.s[i]


def subset(dataset: Any, idx: Tensor) -> Dataset:
    """The examples ``idx`` of ``dataset``: tensors when it holds ``x``, ``y``, ``s`` tensors
    (fast batching), else a ``torch.utils.data.Subset``."""
    if all(isinstance(getattr(dataset, k, None), Tensor) for k in ("x", "y", "s")):
        return _Part(dataset, idx)
    return torch.utils.data.Subset(dataset, [int(i) for i in idx])


def make_loader(dataset: Dataset, batch_size: int = 128, *, shuffle: bool, seed: int = 0,
                drop_last: bool = False) -> BatchLoader:
    """A deterministic :class:`BatchLoader` over ``dataset`` (see there)."""
    return BatchLoader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


def _batches(data: Any, batch_size: int) -> Iterable:
    """Batches from a dataset (sequential, unshuffled) or from a loader / iterable of batches."""
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                     and hasattr(data, "y") and hasattr(data, "s")):
        return BatchLoader(data, batch_size, shuffle=False)
    if isinstance(data, (tuple, list)) and len(data) == 3 and all(isinstance(t, Tensor) for t in data):
        return [tuple(data)]
    if hasattr(data, "__iter__"):
        return data
    raise ValueError(f"data must be a dataset of (x, y, s), a loader, or an (x, y, s) tuple; got {type(data).__name__}")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without either)."""
    for t in model.parameters():
        return t.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _to(batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        raise ValueError(f"a batch must be (x, y, s), got {type(batch).__name__} of length "
                         f"{len(batch) if hasattr(batch, '__len__') else '?'}")
    x, y, s = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True), s.to(device, non_blocking=True)


def cycle(loader: Iterable) -> Iterator:
    """Endless batches: the loader's passes one after the other (each pass re-shuffled)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("loader yields no batches")
