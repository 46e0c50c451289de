"""Face images from files: CelebA (official partition) and LFW with Kumar et al.'s attributes.

Both datasets share one path once labels and the split are read: images decoded lazily from
JPEG files (:class:`ImageFiles`) or from a uint8 cache decoded once and memory-mapped
(:class:`CachedImages`), with batched reads for training loops. Neither is shipped;
``fairprune data fetch celeba|lfw`` (:mod:`fairprune_lite.data.fetch`) downloads them.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..atomic import atomic_write, atomic_write_text
from .core import SPLIT_NAMES, FairDataset, Splits, _check_fraction, _random_split, random_subsample

__all__ = [
    "load_celeba", "load_lfw", "ImageFiles", "CachedImages", "CELEBA_ATTRIBUTES", "CELEBA_MD5",
    "CELEBA_OFFICIAL_ROWS", "CELEBA_HOWTO", "LFW_HOWTO",
]


def _pil_load(path: Path, size: int, crop: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        im: Image.Image = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"image {path} is not a readable image file (corrupt or truncated download?)") from None
    with im:
        try:
            im = im.convert("RGB")
        except OSError as e:
            raise ValueError(f"image {path} cannot be decoded ({e}); corrupt or truncated download?") from None
        w, h = im.size
        side = min(w, h) if crop is None else min(crop, w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
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

    def batch(self, idx: np.ndarray) -> Tensor:
        """Images at ``idx`` as one float tensor [B, 3, size, size] (decoded one by one)."""
        block = np.stack([_pil_load(self.paths[int(i)], self.size, self.crop) for i in idx])
        return torch.from_numpy(block).float().div_(255.0)

    def take(self, idx: np.ndarray) -> ImageFiles:
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

    def batch(self, idx: np.ndarray) -> Tensor:
        """Images at ``idx`` as one float tensor [B, 3, H, W]: one gather from the uint8 array
        (memory-mapped: only the rows asked for are read), then one conversion of the whole
        block. Equal to stacking ``self[i]``."""
        block = self.array[self.rows[np.asarray(idx, dtype=np.int64)]]
        return torch.from_numpy(np.ascontiguousarray(block)).float().div_(255.0)

    def take(self, idx: np.ndarray) -> CachedImages:
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

    def build(tmp: str) -> None:  # no half-built cache is left behind (atomic_write removes tmp)
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
        for i, p in enumerate(paths):
            arr[i] = _pil_load(p, size, crop)
        arr.flush()
        del arr
        side.unlink(missing_ok=True)  # an old sidecar must never describe the new array

    atomic_write(cache_file, build)
    atomic_write_text(side, json.dumps(spec))
    return np.load(cache_file, mmap_mode="r")


def _images_for(
    paths: list[Path], keys: list[str], rows: np.ndarray, *, size: int, crop: int | None,
    cache: bool | str | Path, default_cache: Path, fetch_hint: str = "",
) -> Any:
    missing = [p for p in (paths[int(i)] for i in rows[:1]) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"image {missing[0]} not found{fetch_hint}")
    if not cache:
        return ImageFiles([paths[int(i)] for i in rows], size, crop)
    cache_file = default_cache if cache is True else Path(cache)
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"image {p} not found (needed to build the cache {cache_file}){fetch_hint}")
    try:
        arr = _image_cache(paths, keys, size, crop, cache_file)
    except ValueError as e:
        raise ValueError(f"{e}{fetch_hint}") from None
    return CachedImages(arr, rows)


def _face_splits(
    name: str, paths: list[Path], keys: list[str], y: np.ndarray, s: np.ndarray, part: np.ndarray, meta: dict,
    *, image_size: int, crop: int | None, cache: bool | str | Path, default_cache: Path, seed: int,
    limit: int | None, fetch_root: Path,
) -> Splits:
    """The path CelebA and LFW share once labels and the split are known: images per split
    (decoded lazily or from the uint8 cache), the datasets, the optional subsample."""
    hint = f"; `fairprune data fetch {name} --root {fetch_root}` downloads and checks the data"
    out = []
    for k, split in enumerate(SPLIT_NAMES):
        rows = np.flatnonzero(part == k)
        x = _images_for(paths, keys, rows, size=image_size, crop=crop, cache=cache, default_cache=default_cache,
                        fetch_hint=hint)
        ds = FairDataset(x, y[rows], s[rows], name=name, meta=meta | {"split": split})
        out.append(random_subsample(ds, limit, seed, split))
    train, val, test = out
    return Splits(train, val, test, meta=meta)


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
    "CelebA is not shipped. Fetch it with `fairprune data fetch celeba --root <root>` (official "
    "files and mirrors, each checked against its published MD5), or get it from the official site "
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
            f"({'; '.join(f for f in findings if 'differs' in f)}). Re-download them "
            f"(`fairprune data fetch celeba --root {folder.parent}`), or pass "
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


def _read_celeba_attributes(path: Path) -> tuple[list[str], list[str], list[list[int]]]:
    """``list_attr_celeba.txt``: the count, the 40 names, one row of +1/-1 per image."""
    lines = path.read_text(errors="replace").splitlines()
    try:
        n_declared = int(lines[0].strip())
    except (IndexError, ValueError):
        raise ValueError("celeba: list_attr_celeba.txt must start with the number of images") from None
    names = lines[1].split() if len(lines) > 1 else []
    if len(names) != 40:
        raise ValueError(f"celeba: list_attr_celeba.txt header has {len(names)} attribute names, expected 40")
    files, table = [], []
    for line_no, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 41:
            raise ValueError(f"celeba: list_attr_celeba.txt row for {parts[0]} has {len(parts) - 1} values, expected 40")
        try:
            table.append([int(v) for v in parts[1:]])
        except ValueError:
            raise ValueError(f"celeba: list_attr_celeba.txt line {line_no}: non-integer attribute value") from None
        files.append(parts[0])
    if len(files) != n_declared:
        raise ValueError(f"celeba: list_attr_celeba.txt declares {n_declared} images but lists {len(files)}")
    return names, files, table


def _read_celeba_partition(path: Path) -> dict[str, int]:
    """``list_eval_partition.txt``: image -> 0 (train), 1 (val) or 2 (test)."""
    partition = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if parts:
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"celeba: list_eval_partition.txt: bad line {line[:80]!r}")
            partition[parts[0]] = int(parts[1])
    return partition


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
    ``<root>/celeba/fairprune_cache/celeba_<S>_<crop>.npy`` (uint8, memory-mapped afterwards) so epochs
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

    refetch = f"; `fairprune data fetch celeba --root {folder.parent}` fetches checked copies"
    try:
        names, files, table = _read_celeba_attributes(folder / "list_attr_celeba.txt")
        partition = _read_celeba_partition(folder / "list_eval_partition.txt")
    except ValueError as e:
        raise ValueError(f"{e}{refetch}") from None
    findings = _verify_celeba(folder, len(files), verify)
    attrs = np.array(table, dtype=np.int64)
    target = _attr_name(target or "Blond_Hair", names, "target", "celeba")
    sensitive = _attr_name(sensitive or "Male", names, "sensitive", "celeba")
    if target == sensitive:
        raise ValueError(f"celeba: target and sensitive are the same attribute ({target})")

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
    return _face_splits(
        "celeba", paths, files, y, s, part, meta, image_size=image_size, crop=crop, cache=cache,
        default_cache=folder / "fairprune_cache" / f"celeba_{image_size}_{crop}.npy", seed=seed, limit=limit,
        fetch_root=folder.parent,
    )


# --------------------------------------------------------------------------------------------
# LFW with attributes (Kumar et al. 2009)
# --------------------------------------------------------------------------------------------
LFW_HOWTO = (
    "LFW is not shipped. Fetch it with `fairprune data fetch lfw --root <root>`, or get the images (lfw.tgz, http://vis-www.cs.umass.edu/lfw/ or a mirror "
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
    try:
        header, keys, values = _read_lfw_attributes(attr_path)
    except ValueError as e:
        raise ValueError(f"{e}; `fairprune data fetch lfw --root {root}` fetches a checked copy") from None
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
    return _face_splits(
        "lfw", paths, names, y, s, part, meta, image_size=image_size, crop=crop, cache=cache,
        default_cache=root / "fairprune_cache" / f"lfw_{image_size}_{crop}.npy", seed=seed, limit=limit,
        fetch_root=root,
    )


