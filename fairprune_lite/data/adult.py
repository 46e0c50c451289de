"""UCI Adult (income > 50K, sensitive ``sex`` or ``race``), shipped gzip-compressed in ``data/``.

Sources, checksums and every preprocessing choice: ``data/README.md``.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .core import FairDataset, Splits, _check_fraction, _random_split, shipped_file

__all__ = ["load_adult", "ADULT_COLUMNS", "ADULT_NUMERIC", "ADULT_ROWS", "ADULT_SENSITIVE"]

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
        path = (folder / f"{fname}.gz") if folder else shipped_file(f"{fname}.gz")
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


