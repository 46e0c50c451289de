"""Datasets yielding ``(x, y, s)``: built-in loaders, the ``.npz`` format and the split protocol.

Every example is a triple ``(x, y, s)``: ``x`` a float tensor, ``y`` the binary target and ``s``
the binary sensitive attribute, both ``torch.long`` in {0, 1}. A loader returns :class:`Splits`
(train / val / test), the protocol of the paper: pretrain on ``train``, prune and fine-tune on
``val``, report on ``test``.

Built-in names for :func:`load_dataset`:

* ``"adult"``: UCI Adult, income > 50K, sensitive ``sex`` (shipped in ``data/``).
* ``"fashion"``: the controlled CPU image benchmark, a Fashion-MNIST subset with a minority
  group rendered with inverted intensities (shipped in ``data/``).
* ``"celeba"``: CelebA from a local folder in torchvision's layout (not shipped).
* ``"lfw"``: LFW with the attributes of Kumar et al. 2009 from a local folder (not shipped).
* a path ending in ``.npz``: bring your own data (:func:`load_npz`).

``data/README.md`` documents sources, checksums and every preprocessing choice.
"""
from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "FairDataset",
    "Splits",
    "data_dir",
    "load_dataset",
    "load_adult",
    "load_fashion",
    "load_celeba",
    "load_lfw",
    "load_npz",
    "from_tensors",
    "build_fashion_npz",
    "DATASETS",
    "CELEBA_ATTRIBUTES",
]

SPLIT_NAMES = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# Core containers
# --------------------------------------------------------------------------------------------
def _as_binary_long(values: Any, what: str) -> Tensor:
    """Return ``values`` as a 1-D ``torch.long`` tensor in {0, 1}, or raise naming ``what``."""
    t = torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)
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

    def subset(self, index: Sequence[int] | np.ndarray | Tensor, *, name: str | None = None) -> "FairDataset":
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
    """The folder of shipped data: ``$FAIRPRUNE_DATA`` if set, else ``data/`` next to the package."""
    env = os.environ.get("FAIRPRUNE_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"shipped data folder {path} not found; set FAIRPRUNE_DATA to the repository's data/ folder"
        )
    return path


def _shipped(filename: str) -> Path:
    path = data_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{filename} not found in {path.parent}; it ships with the repository (data/), "
            "or set FAIRPRUNE_DATA to a folder holding it"
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


def _limit(ds: FairDataset, limit: int | None, seed: int, split: str) -> FairDataset:
    """Seeded subsample of at most ``limit`` examples (for quick CPU runs)."""
    if limit is None or len(ds) <= limit:
        return ds
    if int(limit) < 2:
        raise ValueError(f"limit must be at least 2, got {limit}")
    idx = np.sort(np.random.default_rng([seed, SPLIT_NAMES.index(split), 7]).permutation(len(ds))[: int(limit)])
    return ds.subset(idx)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Adult
# --------------------------------------------------------------------------------------------
ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
)
ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_ROWS = {"adult.data": 32561, "adult.test": 16281}
ADULT_SENSITIVE = {"sex": ("Male", "s=1: Male, s=0: Female"), "race": ("White", "s=1: White, s=0: other")}


def _read_adult(path: Path) -> list[list[str]]:
    rows = []
    with gzip.open(path, "rt", encoding="ascii") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("|"):
                continue  # blank trailer lines; adult.test's first line "|1x3 Cross validator"
            fields = [v.strip() for v in line.split(",")]
            if len(fields) != len(ADULT_COLUMNS):
                raise ValueError(f"{path.name}: line {line_no} has {len(fields)} fields, expected 15")
            fields[-1] = fields[-1].rstrip(".")  # adult.test labels end with '.'
            rows.append(fields)
    return rows


def load_adult(
    *,
    root: str | Path | None = None,
    target: str | None = None,
    sensitive: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    missing: str = "category",
    keep_sensitive: bool = False,
) -> Splits:
    """UCI Adult: predict income > 50K; sensitive ``sex`` (s=1 Male) or ``race`` (s=1 White).

    ``train``/``val`` are a seeded random partition of ``adult.data`` (``val_fraction`` to val),
    ``test`` is ``adult.test``. Categorical columns are one-hot encoded (categories from
    ``adult.data``); numeric columns are standardised with the mean/std of ``train`` only.
    ``missing="category"`` keeps rows with '?' and treats '?' as its own category;
    ``missing="drop"`` removes them (30,162 / 15,060 rows remain). The sensitive column is
    dropped from the features unless ``keep_sensitive=True``.
    """
    target = target or "income"
    if target != "income":
        raise ValueError(f"adult: target must be 'income' (>50K), got {target!r}")
    sensitive = sensitive or "sex"
    if sensitive not in ADULT_SENSITIVE:
        raise ValueError(f"adult: sensitive must be one of {sorted(ADULT_SENSITIVE)}, got {sensitive!r}")
    if missing not in ("category", "drop"):
        raise ValueError(f"adult: missing must be 'category' or 'drop', got {missing!r}")
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    folder = Path(root) if root is not None else None
    raw = {}
    for fname, expected in ADULT_ROWS.items():
        path = (folder / f"{fname}.gz") if folder else _shipped(f"{fname}.gz")
        if not path.is_file():
            raise FileNotFoundError(f"adult: {path} not found (expected the gzip of UCI's {fname})")
        rows = _read_adult(path)
        if len(rows) != expected:
            raise ValueError(f"adult: {path.name} has {len(rows)} rows, expected {expected} (corrupt copy?)")
        raw[fname] = rows
    n_raw = {k: len(v) for k, v in raw.items()}
    if missing == "drop":
        raw = {k: [r for r in v if "?" not in r] for k, v in raw.items()}

    col = {c: i for i, c in enumerate(ADULT_COLUMNS)}
    s_value, s_doc = ADULT_SENSITIVE[sensitive]
    dropped = {"income"} | ({sensitive} if not keep_sensitive else set())
    categorical = [c for c in ADULT_COLUMNS if c not in ADULT_NUMERIC and c not in dropped]
    numeric = [c for c in ADULT_NUMERIC if c not in dropped]
    categories = {c: sorted({r[col[c]] for r in raw["adult.data"]}) for c in categorical}

    def encode(rows: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        table = np.array(rows, dtype=object)
        num = table[:, [col[c] for c in numeric]].astype(np.float64)
        blocks = []
        for c in categorical:
            values = table[:, col[c]]
            # a category unseen in adult.data stays all-zero
            blocks.append((values[:, None] == np.array(categories[c], dtype=object)[None, :]).astype(np.float32))
        y = (table[:, col["income"]] == ">50K").astype(np.int64)
        s = (table[:, col[sensitive]] == s_value).astype(np.int64)
        return num, np.concatenate(blocks, axis=1), y, s

    num_tr, cat_tr, y_tr, s_tr = encode(raw["adult.data"])
    num_te, cat_te, y_te, s_te = encode(raw["adult.test"])
    val_idx, tr_idx = _random_split(len(y_tr), [val_fraction], seed)
    mean = num_tr[tr_idx].mean(axis=0)
    std = num_tr[tr_idx].std(axis=0)
    std[std == 0] = 1.0
    feature_names = numeric + [f"{c}={v}" for c in categorical for v in categories[c]]

    def make(num, cat, y, s, idx, split):
        x = np.concatenate([((num[idx] - mean) / std).astype(np.float32), cat[idx]], axis=1)
        return FairDataset(torch.from_numpy(x), y[idx], s[idx], name="adult", meta=meta | {"split": split})

    meta = {
        "source": "UCI Adult (Becker & Kohavi 1996), doi:10.24432/C5XW20, CC BY 4.0",
        "target": "income >50K (y=1)",
        "sensitive": f"{sensitive} ({s_doc})",
        "missing": missing,
        "raw_rows": n_raw,
        "feature_names": feature_names,
        "standardisation": {"mean": mean.tolist(), "std": std.tolist(), "columns": numeric},
        "seed": seed,
    }
    all_idx = np.arange(len(y_te))
    return Splits(
        make(num_tr, cat_tr, y_tr, s_tr, tr_idx, "train"),
        make(num_tr, cat_tr, y_tr, s_tr, val_idx, "val"),
        make(num_te, cat_te, y_te, s_te, all_idx, "test"),
        meta=meta,
    )


# --------------------------------------------------------------------------------------------
# Fashion: the controlled CPU image benchmark
# --------------------------------------------------------------------------------------------
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
        images.append(xs[idx]), labels.append(ys[idx]), split.append(np.full(len(idx), k, np.uint8))
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
    path = Path(root) / FASHION_FILE if root is not None else _shipped(FASHION_FILE)
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
        out.append(_limit(ds, limit, seed, name))
    return Splits(*out, meta=meta)


# --------------------------------------------------------------------------------------------
# Images from files (CelebA, LFW): lazy decoding or a resized uint8 cache
# --------------------------------------------------------------------------------------------
def _pil_load(path: Path, size: int, crop: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h) if crop is None else min(crop, w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        return np.ascontiguousarray(np.array(im, dtype=np.uint8).transpose(2, 0, 1))  # [3, H, W]


class ImageFiles:
    """Images decoded on access: centre square crop (side ``crop`` or the short side), resize to
    ``size`` x ``size``, RGB float in [0, 1] of shape [3, size, size]."""

    def __init__(self, paths: Sequence[Path], size: int, crop: int | None = None) -> None:
        self.paths, self.size, self.crop = list(paths), int(size), crop
        self.item_shape = (3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(_pil_load(self.paths[int(i)], self.size, self.crop)).float().div_(255.0)

    def take(self, idx: np.ndarray) -> "ImageFiles":
        return ImageFiles([self.paths[int(i)] for i in idx], self.size, self.crop)


class CachedImages:
    """Rows of a uint8 array [N, 3, H, W] (usually a memory map), returned as float in [0, 1]."""

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)
        self.item_shape = tuple(array.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(np.array(self.array[self.rows[int(i)]])).float().div_(255.0)

    def take(self, idx: np.ndarray) -> "CachedImages":
        return CachedImages(self.array, self.rows[np.asarray(idx)])


def _image_cache(paths: list[Path], keys: list[str], size: int, crop: int | None, cache_file: Path) -> np.ndarray:
    """Decode every image once into ``cache_file`` (uint8 .npy) and return it memory-mapped.

    A sidecar ``.json`` records the image keys, size and crop; a cache that does not match is
    rebuilt, so a stale cache is never used silently.
    """
    side = cache_file.with_suffix(".json")
    spec = {"size": size, "crop": crop, "keys": keys}
    if cache_file.is_file() and side.is_file():
        try:
            if json.loads(side.read_text()) == spec:
                return np.load(cache_file, mmap_mode="r")
        except (ValueError, OSError):
            pass
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(cache_file.stem + ".partial.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
    for i, p in enumerate(paths):
        arr[i] = _pil_load(p, size, crop)
    arr.flush()
    del arr
    os.replace(tmp, cache_file)
    side.write_text(json.dumps(spec))
    return np.load(cache_file, mmap_mode="r")


def _images_for(
    paths: list[Path], keys: list[str], rows: np.ndarray, *, size: int, crop: int | None,
    cache: bool | str | Path, default_cache: Path,
) -> Any:
    missing = [p for p in (paths[int(i)] for i in rows[:1]) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"image {missing[0]} not found")
    if not cache:
        return ImageFiles([paths[int(i)] for i in rows], size, crop)
    cache_file = default_cache if cache is True else Path(cache)
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"image {p} not found (needed to build the cache {cache_file})")
    arr = _image_cache(paths, keys, size, crop, cache_file)
    return CachedImages(arr, rows)


def _check_size(size: int, crop: int | None) -> None:
    if int(size) < 8:
        raise ValueError(f"image_size must be at least 8, got {size}")
    if crop is not None and int(crop) < 1:
        raise ValueError(f"crop must be a positive number of pixels or None, got {crop}")


# --------------------------------------------------------------------------------------------
# CelebA
# --------------------------------------------------------------------------------------------
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)
# MD5s of the official text files (the values torchvision's CelebA checks).
CELEBA_MD5 = {
    "list_attr_celeba.txt": "75e246fa4810816ffd6ee81facbd244c",
    "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668",
    "identity_CelebA.txt": "32bd1bd63d3c78cd57e08160ec5ed1e2",
    "list_bbox_celeba.txt": "00566efa6fedff7a56946cd1c10f1c16",
    "list_landmarks_align_celeba.txt": "cc24ecafdb5b50baae59b03474781f8c",
}
CELEBA_OFFICIAL_ROWS = 202599
CELEBA_HOWTO = (
    "CelebA is not shipped. Get it from the official site "
    "(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, Google Drive links there) or a Kaggle "
    "mirror (e.g. 'jessicali9530/celeba-dataset'), and arrange it as torchvision does: "
    "<root>/celeba/img_align_celeba/*.jpg, <root>/celeba/list_attr_celeba.txt, "
    "<root>/celeba/list_eval_partition.txt (identity_CelebA.txt, list_bbox_celeba.txt and "
    "list_landmarks_align_celeba.txt are optional here)."
)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify_celeba(folder: Path, n_rows: int, verify: str) -> list[str]:
    """Compare the text files' MD5s with the official ones; return a list of findings.

    ``"strict"``: any difference raises. ``"auto"``: files whose attribute table has the
    official 202,599 rows claim to be official, so a difference raises; otherwise (a subset or
    a fixture) the differences are reported in a ``UserWarning`` and in ``meta``.
    ``"off"``: nothing is checked.
    """
    if verify == "off":
        return ["verification off"]
    findings, differ = [], []
    for fname, md5 in CELEBA_MD5.items():
        path = folder / fname
        if not path.is_file():
            findings.append(f"{fname}: absent (not needed to load)")
            continue
        got = _md5(path)
        if got == md5:
            findings.append(f"{fname}: MD5 matches the official file")
        else:
            differ.append(fname)
            findings.append(f"{fname}: MD5 {got} differs from the official {md5}")
    claims_official = n_rows == CELEBA_OFFICIAL_ROWS
    if differ and (verify == "strict" or claims_official):
        raise ValueError(
            f"celeba: {', '.join(differ)} in {folder} differ from the official files "
            f"({'; '.join(f for f in findings if 'differs' in f)}). Re-download them, or pass "
            "verify='off' to use modified files knowingly."
        )
    if differ:
        warnings.warn(
            f"celeba: not the official files ({n_rows} rows instead of {CELEBA_OFFICIAL_ROWS}); "
            f"MD5 differs for {', '.join(differ)}",
            UserWarning,
            stacklevel=3,
        )
    return findings


def _attr_name(name: str, valid: Sequence[str], what: str, dataset: str) -> str:
    norm = {v.replace(" ", "_").lower(): v for v in valid}
    key = str(name).replace(" ", "_").lower()
    if key not in norm:
        raise ValueError(f"{dataset}: unknown {what} attribute {name!r}; valid names: {', '.join(valid)}")
    return norm[key]


def load_celeba(
    *,
    root: str | Path | None = None,
    target: str | None = None,
    sensitive: str | None = None,
    seed: int = 0,
    image_size: int = 64,
    crop: int | None = 178,
    cache: bool | str | Path = False,
    verify: str = "auto",
    limit: int | None = None,
) -> Splits:
    """CelebA from ``<root>/celeba`` (torchvision's layout) with the official partition.

    ``target`` is any of the 40 attributes (default ``Blond_Hair``), ``sensitive`` another
    (default ``Male``; s=1 when the attribute is +1). Images are centre-cropped to ``crop``
    pixels (178: the full width of the aligned images), resized to ``image_size`` and returned
    as float [3, S, S] in [0, 1]. ``cache=True`` decodes every image once into
    ``<root>/celeba/fairprune_cache/celeba_<S>.npy`` (uint8, memory-mapped afterwards) so epochs
    are not bound by JPEG decoding; a path chooses another cache file. ``verify`` is described
    in :func:`_verify_celeba`. ``limit`` keeps a seeded subsample per split.
    """
    if root is None:
        raise ValueError("celeba: root is required (the folder that contains celeba/). " + CELEBA_HOWTO)
    if verify not in ("auto", "strict", "off"):
        raise ValueError(f"celeba: verify must be 'auto', 'strict' or 'off', got {verify!r}")
    _check_size(image_size, crop)
    folder = Path(root) / "celeba"
    for fname in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        if not (folder / fname).is_file():
            raise FileNotFoundError(f"celeba: {folder / fname} not found. {CELEBA_HOWTO}")
    img_dir = folder / "img_align_celeba"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"celeba: image folder {img_dir} not found. {CELEBA_HOWTO}")

    lines = (folder / "list_attr_celeba.txt").read_text().splitlines()
    try:
        n_declared = int(lines[0].strip())
    except (IndexError, ValueError):
        raise ValueError("celeba: list_attr_celeba.txt must start with the number of images") from None
    names = lines[1].split()
    if len(names) != 40:
        raise ValueError(f"celeba: list_attr_celeba.txt header has {len(names)} attribute names, expected 40")
    files, table = [], []
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 41:
            raise ValueError(f"celeba: list_attr_celeba.txt row for {parts[0]} has {len(parts) - 1} values, expected 40")
        files.append(parts[0])
        table.append([int(v) for v in parts[1:]])
    if len(files) != n_declared:
        raise ValueError(f"celeba: list_attr_celeba.txt declares {n_declared} images but lists {len(files)}")
    findings = _verify_celeba(folder, len(files), verify)
    attrs = np.array(table, dtype=np.int64)
    target = _attr_name(target or "Blond_Hair", names, "target", "celeba")
    sensitive = _attr_name(sensitive or "Male", names, "sensitive", "celeba")
    if target == sensitive:
        raise ValueError(f"celeba: target and sensitive are the same attribute ({target})")

    partition = {}
    for line in (folder / "list_eval_partition.txt").read_text().splitlines():
        parts = line.split()
        if parts:
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"celeba: list_eval_partition.txt: bad line {line!r}")
            partition[parts[0]] = int(parts[1])
    missing = [f for f in files if f not in partition]
    if missing:
        raise ValueError(f"celeba: list_eval_partition.txt has no entry for {missing[0]} ({len(missing)} missing)")
    part = np.array([partition[f] for f in files])
    y = (attrs[:, names.index(target)] > 0).astype(np.int64)
    s = (attrs[:, names.index(sensitive)] > 0).astype(np.int64)
    paths = [img_dir / f for f in files]
    meta = {
        "source": "CelebA (Liu et al., ICCV 2015), local copy at " + str(folder),
        "target": f"{target} (y=1 when +1)",
        "sensitive": f"{sensitive} (s=1 when +1)",
        "verification": findings,
        "image_size": image_size,
        "crop": crop,
        "seed": seed,
    }
    out = []
    for k, split in enumerate(SPLIT_NAMES):
        rows = np.flatnonzero(part == k)
        x = _images_for(
            paths, files, rows, size=image_size, crop=crop, cache=cache,
            default_cache=folder / "fairprune_cache" / f"celeba_{image_size}_{crop}.npy",
        )
        ds = FairDataset(x, y[rows], s[rows], name="celeba", meta=meta | {"split": split})
        out.append(_limit(ds, limit, seed, split))
    return Splits(*out, meta=meta)


# --------------------------------------------------------------------------------------------
# LFW with attributes (Kumar et al. 2009)
# --------------------------------------------------------------------------------------------
LFW_HOWTO = (
    "LFW is not shipped. Get the images (lfw.tgz, http://vis-www.cs.umass.edu/lfw/ or a mirror "
    "such as Kaggle's 'jessicali9530/lfw-dataset') and the attribute file lfw_attributes.txt "
    "(Kumar et al. 2009, https://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt), "
    "and arrange them as <root>/lfw/<Name>/<Name>_<NNNN>.jpg and <root>/lfw_attributes.txt."
)


def _read_lfw_attributes(path: Path) -> tuple[list[str], list[tuple[str, int]], np.ndarray]:
    header: list[str] | None = None
    keys, rows = [], []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("\t")]
        if header is None:
            flat = [c.lstrip("#").strip() for c in cells]
            flat = [c for c in flat if c]
            if len(flat) > 2 and flat[0] == "person" and flat[1] == "imagenum":
                header = flat[2:]
            continue
        if len(cells) != len(header) + 2:
            raise ValueError(
                f"lfw: {path.name} line {line_no} has {len(cells)} tab-separated fields, expected {len(header) + 2}"
            )
        try:
            keys.append((cells[0], int(cells[1])))
            rows.append([float(v) for v in cells[2:]])
        except ValueError:
            raise ValueError(f"lfw: {path.name} line {line_no}: non-numeric imagenum or attribute value") from None
    if header is None:
        raise ValueError(f"lfw: {path.name} has no header line with 'person', 'imagenum' and attribute names")
    if not rows:
        raise ValueError(f"lfw: {path.name} lists no images")
    return header, keys, np.array(rows, dtype=np.float64)


def load_lfw(
    *,
    root: str | Path | None = None,
    target: str | None = None,
    sensitive: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    by_identity: bool = True,
    image_size: int = 64,
    crop: int | None = 150,
    cache: bool | str | Path = False,
    attributes_file: str = "lfw_attributes.txt",
    limit: int | None = None,
) -> Splits:
    """LFW with the real-valued attributes of Kumar et al. (2009), thresholded at 0.

    Layout: ``<root>/lfw/<Name>/<Name>_<NNNN>.jpg`` and ``<root>/lfw_attributes.txt`` (tab
    separated, a header line ``person imagenum <attributes...>``, one row per image; spaces in
    the person's name become underscores in the folder). ``target`` default ``Wavy_Hair``
    (also e.g. ``Big_Nose``), ``sensitive`` default ``Male``; names match with spaces or
    underscores. LFW has no official split for this task, so the split is a seeded random
    partition, by identity by default (a person's images all land in one split). Images are
    centre-cropped to ``crop`` pixels (the face region of the 250x250 originals), resized to
    ``image_size``. ``cache``/``limit`` as in :func:`load_celeba`.
    """
    if root is None:
        raise ValueError("lfw: root is required (the folder that holds lfw/ and lfw_attributes.txt). " + LFW_HOWTO)
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    if val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction + test_fraction must be below 1")
    _check_size(image_size, crop)
    root = Path(root)
    attr_path = root / attributes_file
    if not attr_path.is_file():
        raise FileNotFoundError(f"lfw: attribute file {attr_path} not found. {LFW_HOWTO}")
    img_dir = root / "lfw"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"lfw: image folder {img_dir} not found. {LFW_HOWTO}")
    header, keys, values = _read_lfw_attributes(attr_path)
    target = _attr_name(target or "Wavy_Hair", header, "target", "lfw")
    sensitive = _attr_name(sensitive or "Male", header, "sensitive", "lfw")
    if target == sensitive:
        raise ValueError(f"lfw: target and sensitive are the same attribute ({target})")
    y = (values[:, header.index(target)] > 0).astype(np.int64)
    s = (values[:, header.index(sensitive)] > 0).astype(np.int64)
    paths, names = [], []
    for person, num in keys:
        folder_name = person.replace(" ", "_")
        paths.append(img_dir / folder_name / f"{folder_name}_{num:04d}.jpg")
        names.append(f"{folder_name}/{folder_name}_{num:04d}.jpg")
    if by_identity:
        people = sorted({p for p, _ in keys})
        if len(people) < 3:
            raise ValueError(f"lfw: by_identity split needs at least 3 people, found {len(people)}")
        val_p, test_p, _ = _random_split(len(people), [val_fraction, test_fraction], seed)
        which = {people[i]: 1 for i in val_p} | {people[i]: 2 for i in test_p}
        part = np.array([which.get(p, 0) for p, _ in keys])
    else:
        val_i, test_i, _ = _random_split(len(keys), [val_fraction, test_fraction], seed)
        part = np.zeros(len(keys), dtype=np.int64)
        part[val_i], part[test_i] = 1, 2
    meta = {
        "source": "LFW (Huang et al. 2007) + attributes (Kumar et al., ICCV 2009), local copy at " + str(root),
        "target": f"{target} (y=1 when the attribute score > 0)",
        "sensitive": f"{sensitive} (s=1 when the attribute score > 0)",
        "split": f"seeded random, {'by identity' if by_identity else 'by image'}, "
                 f"val {val_fraction}, test {test_fraction}",
        "image_size": image_size,
        "crop": crop,
        "seed": seed,
    }
    out = []
    for k, split in enumerate(SPLIT_NAMES):
        rows = np.flatnonzero(part == k)
        x = _images_for(
            paths, names, rows, size=image_size, crop=crop, cache=cache,
            default_cache=root / "fairprune_cache" / f"lfw_{image_size}_{crop}.npy",
        )
        ds = FairDataset(x, y[rows], s[rows], name="lfw", meta=meta | {"split": split})
        out.append(_limit(ds, limit, seed, split))
    return Splits(*out, meta=meta)


# --------------------------------------------------------------------------------------------
# Bring your own data
# --------------------------------------------------------------------------------------------
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
    x_t = torch.as_tensor(np.asarray(x)) if not isinstance(x, Tensor) else x
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
    return Splits(*sets, meta=info)


def load_npz(
    path: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    name: str | None = None,
) -> Splits:
    """Your own data: a ``.npz`` with arrays ``x`` [N, ...], ``y`` [N] and ``s`` [N] (binary 0/1),
    and optionally ``split`` [N] of 'train'/'val'/'test' strings (else a seeded split)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a readable .npz without pickled objects ({e})") from None
    with z:
        for key in ("x", "y", "s"):
            if key not in z.files:
                raise ValueError(f"{path.name}: array {key!r} missing (found {sorted(z.files)}); need x, y, s")
        arrays = {k: z[k] for k in z.files}
    return from_tensors(
        arrays["x"], arrays["y"], arrays["s"], split=arrays.get("split"), seed=seed,
        val_fraction=val_fraction, test_fraction=test_fraction, name=name or path.stem,
        meta={"source": str(path)},
    )


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
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
            accepted = [p for p in params if p not in ("root", "target", "sensitive", "seed")]
            raise ValueError(f"{key}: unknown argument {k!r}; accepted: {', '.join(accepted)}")
    return loader(root=root, target=target, sensitive=sensitive, seed=seed, **kw)
