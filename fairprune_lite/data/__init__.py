"""Datasets yielding ``(x, y, s)``: built-in loaders, the ``.npz`` format and the split protocol.

Every example is a triple ``(x, y, s)``: ``x`` a float tensor, ``y`` the binary target and ``s``
the binary sensitive attribute, both ``torch.long`` in {0, 1}. A loader returns :class:`Splits`
(train / val / test), the protocol of the paper: pretrain on ``train``, prune and fine-tune on
``val``, report on ``test``.

Built-in names for :func:`load_dataset`:

* ``"adult"``: UCI Adult, income > 50K, sensitive ``sex`` (shipped; :mod:`.adult`).
* ``"fashion"``: the controlled CPU image benchmark, a Fashion-MNIST subset with a minority
  group rendered with inverted intensities (shipped; :mod:`.fashion`).
* ``"celeba"``, ``"lfw"``: face images from a local folder (not shipped; :mod:`.faces`),
  downloaded and checked by ``fairprune data fetch celeba|lfw`` (:mod:`.fetch`).
* a path ending in ``.npz``: bring your own data (:mod:`.npz`).

The modules: :mod:`.core` (containers, split helpers, the subsamplers), one module per source,
:mod:`.registry` (:func:`load_dataset`), :mod:`.fetch` (downloads with checksums) and
:mod:`.fixtures` (fake CelebA / LFW folders in the real layouts, for tests and the book).
``data/README.md`` documents sources, checksums and every preprocessing choice.
"""
from __future__ import annotations

from .adult import ADULT_COLUMNS, ADULT_NUMERIC, ADULT_ROWS, ADULT_SENSITIVE, load_adult
from .core import (
    SPLIT_NAMES,
    FairDataset,
    Splits,
    data_dir,
    random_subsample,
    shipped_file,
    stratified_subsample,
)
from .faces import (
    CELEBA_ATTRIBUTES,
    CELEBA_HOWTO,
    CELEBA_MD5,
    CELEBA_OFFICIAL_ROWS,
    LFW_HOWTO,
    CachedImages,
    ImageFiles,
    load_celeba,
    load_lfw,
)
from .fashion import FASHION_CLASSES, FASHION_FILE, FASHION_TARGETS, build_fashion_npz, load_fashion
from .npz import from_tensors, load_npz
from .registry import DATASETS, load_dataset

__all__ = [
    # containers, splits and subsamplers (core)
    "FairDataset", "Splits", "SPLIT_NAMES", "data_dir", "shipped_file", "stratified_subsample", "random_subsample",
    # the registry
    "load_dataset", "DATASETS",
    # one module per source
    "load_adult", "ADULT_COLUMNS", "ADULT_NUMERIC", "ADULT_ROWS", "ADULT_SENSITIVE",
    "load_fashion", "build_fashion_npz", "FASHION_CLASSES", "FASHION_FILE", "FASHION_TARGETS",
    "load_celeba", "load_lfw", "CachedImages", "ImageFiles", "CELEBA_ATTRIBUTES", "CELEBA_HOWTO", "CELEBA_MD5",
    "CELEBA_OFFICIAL_ROWS", "LFW_HOWTO",
    "load_npz", "from_tensors",
]
