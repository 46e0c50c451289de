"""The controlled CPU image benchmark: binary Fashion-MNIST with an inverted minority group.

The shipped subset (``data/fashion_subset.npz``) is built from the official IDX files by
:func:`build_fashion_npz`; ``data/README.md`` documents the subset and the group construction.
"""
from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .core import SPLIT_NAMES, FairDataset, Splits, _check_fraction, random_subsample, shipped_file

__all__ = ["load_fashion", "build_fashion_npz", "FASHION_FILE", "FASHION_CLASSES", "FASHION_TARGETS"]

FASHION_FILE = "fashion_subset.npz"
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_TARGETS = {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9)}


def build_fashion_npz(
    idx_dir: str | Path,
    out: str | Path,
    *,
    per_class: tuple[int, int, int] = (1200, 300, 500),
    seed: int = 0,
) -> Path:
    """Build the shipped Fashion-MNIST subset from the four official IDX ``.gz`` files.

    For each of the 10 classes, a seeded permutation (``numpy.random.default_rng(seed)``, drawn
    once per class in class order, train file then test file) picks ``per_class[0]`` train and
    the next ``per_class[1]`` val images from the official training file, and ``per_class[2]``
    test images from the official test file. Stored: ``images`` uint8 [N, 28, 28], ``labels``
    uint8, ``split`` (0 train, 1 val, 2 test) and ``source_index`` (row in the official file).
    """
    idx_dir = Path(idx_dir)

    def read(name: str, offset: int) -> np.ndarray:
        path = idx_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (official Fashion-MNIST IDX file)")
        return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)

    tr_x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    tr_y = read("train-labels-idx1-ubyte.gz", 8)
    te_x = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    te_y = read("t10k-labels-idx1-ubyte.gz", 8)
    rng = np.random.default_rng(seed)
    parts: dict[int, list[np.ndarray]] = {0: [], 1: [], 2: []}
    for c in range(10):
        pick = np.flatnonzero(tr_y == c)[rng.permutation(int((tr_y == c).sum()))]
        parts[0].append(pick[: per_class[0]])
        parts[1].append(pick[per_class[0] : per_class[0] + per_class[1]])
    for c in range(10):
        pick = np.flatnonzero(te_y == c)[rng.permutation(int((te_y == c).sum()))]
        parts[2].append(pick[: per_class[2]])
    images, labels, split, source = [], [], [], []
    for k in (0, 1, 2):
        idx = np.sort(np.concatenate(parts[k]))
        xs, ys = (tr_x, tr_y) if k < 2 else (te_x, te_y)
        images.append(xs[idx])
        labels.append(ys[idx])
        split.append(np.full(len(idx), k, np.uint8))
        source.append(idx.astype(np.int32))
    out = Path(out)
    np.savez_compressed(
        out, images=np.concatenate(images), labels=np.concatenate(labels),
        split=np.concatenate(split), source_index=np.concatenate(source),
    )
    return out


def _minority_mask(y: np.ndarray, share: float, correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Pick the minority (s=1) with exact counts per class so that P(s=1) = ``share`` and the
    phi coefficient between s and y equals ``correlation`` (up to rounding)."""
    p_y = float(y.mean())
    spread = np.sqrt(share * (1 - share) * p_y * (1 - p_y))
    p11 = share * p_y + correlation * spread  # P(s=1, y=1)
    p_s_given = {1: p11 / p_y, 0: (share - p11) / (1 - p_y)}
    for v, p in p_s_given.items():
        if not -1e-12 <= p <= 1 + 1e-12:
            raise ValueError(
                f"fashion: correlation={correlation} is not reachable with minority_share={share} "
                f"and P(y=1)={p_y:.3f} (it would need P(s=1 | y={v}) = {p:.3f})"
            )
    s = np.zeros(len(y), dtype=np.int64)
    for v in (0, 1):
        idx = np.flatnonzero(y == v)
        k = int(round(min(max(p_s_given[v], 0.0), 1.0) * len(idx)))
        s[rng.choice(idx, size=k, replace=False)] = 1
    return s


def load_fashion(
    *,
    root: str | Path | None = None,
    target: str | Sequence[int] | None = None,
    sensitive: str | None = None,
    seed: int = 0,
    minority_share: float = 0.1,
    correlation: float = 0.0,
    limit: int | None = None,
) -> Splits:
    """The controlled CPU image benchmark: binary Fashion-MNIST with an inverted minority.

    ``y = 1`` when the label is in the target classes (``"tops"``: T-shirt, Pullover, Coat,
    Shirt; ``"footwear"``; or any sequence of class ids). In every split a seeded
    ``minority_share`` of the images (group ``s = 1``) is drawn with intensities inverted
    (``x -> 1 - x``), in the spirit of CIFAR-10S (Wang et al., CVPR 2020). ``correlation`` is
    the phi coefficient between ``s`` and ``y`` (0: independent). Images are float in [0, 1],
    shape [1, 28, 28]. ``limit`` keeps a seeded subsample of at most that many per split.
    """
    if target is None:
        target = "tops"
    if isinstance(target, str):
        if target not in FASHION_TARGETS:
            raise ValueError(
                f"fashion: target must be one of {sorted(FASHION_TARGETS)} or a sequence of class "
                f"ids 0-9 ({', '.join(f'{i}={n}' for i, n in enumerate(FASHION_CLASSES))}); got {target!r}"
            )
        positive = FASHION_TARGETS[target]
    else:
        positive = tuple(int(c) for c in target)
        if not positive or any(c not in range(10) for c in positive) or len(set(positive)) == 10:
            raise ValueError(f"fashion: target classes must be a non-empty proper subset of 0-9, got {target!r}")
    sensitive = sensitive or "inverted"
    if sensitive != "inverted":
        raise ValueError(f"fashion: sensitive must be 'inverted', got {sensitive!r}")
    minority_share = _check_fraction(minority_share, "minority_share")
    correlation = float(correlation)
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [-1, 1], got {correlation}")
    path = Path(root) / FASHION_FILE if root is not None else shipped_file(FASHION_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"fashion: {path} not found (build it with data.build_fashion_npz)")
    with np.load(path) as z:
        images, labels, split = z["images"], z["labels"], z["split"]
    meta = {
        "source": "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), MIT licence; subset in data/README.md",
        "target": f"label in {positive} ({', '.join(FASHION_CLASSES[c] for c in positive)}) -> y=1",
        "sensitive": "s=1: minority drawn with inverted intensities (x -> 1 - x); s=0: as is",
        "minority_share": minority_share,
        "correlation": correlation,
        "seed": seed,
    }
    out = []
    for k, name in enumerate(SPLIT_NAMES):
        sel = split == k
        y = np.isin(labels[sel], positive).astype(np.int64)
        s = _minority_mask(y, minority_share, correlation, np.random.default_rng([seed, k]))
        x = torch.from_numpy(images[sel]).float().div_(255.0).unsqueeze(1)
        inv = torch.from_numpy(s.astype(bool))
        x[inv] = 1.0 - x[inv]
        ds = FairDataset(x, y, s, name="fashion", meta=meta | {"split": name, "labels": labels[sel]})
        out.append(random_subsample(ds, limit, seed, name))
    train, val, test = out
    return Splits(train, val, test, meta=meta)


