"""Fake CelebA and LFW in the real layouts, for the tests and the book (no real data needed).

The faces are cartoons drawn with PIL (hair, face, eyes, mouth, a beard for ``Male``) on canvases
of the real sizes (CelebA's aligned 178 x 218, LFW's 250 x 250); the labels are set here, so a
loader's output can be checked against them. :func:`celeba_archives` and :func:`lfw_archives`
pack the same folders into the files the official sources serve (``img_align_celeba.zip`` and
the text files; ``lfw.tgz`` and ``lfw_attributes.txt``), for the download tests.
"""
from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .faces import CELEBA_ATTRIBUTES

__all__ = ["fake_face", "make_fake_celeba", "make_fake_lfw", "celeba_archives", "lfw_archives",
           "LFW_FAKE_ATTRIBUTES", "LFW_FAKE_PEOPLE"]

LFW_FAKE_ATTRIBUTES = ("Male", "Asian", "Wavy Hair", "Big Nose")
LFW_FAKE_PEOPLE = ("Ann Smith", "Bo Lee", "Cy Young", "Di Park", "Ed Wu", "Flo Ray", "Gus Kim", "Hal Poe")


def fake_face(blond: bool, male: bool, rng: np.random.Generator):
    """A cartoon face on a 178 x 218 canvas (the size of CelebA's aligned images), as a PIL image."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (178, 218), tuple(int(v) for v in rng.integers(90, 200, 3)))
    d = ImageDraw.Draw(img)
    hair = (235, 205, 120) if blond else tuple(int(v) for v in rng.integers(20, 90, 3))
    d.ellipse((34, 30, 144, 150), fill=hair)                       # hair
    skin = tuple(int(v) for v in rng.integers(150, 240, 3))
    d.ellipse((49, 55, 129, 175), fill=skin)                       # face
    d.ellipse((67, 95, 79, 105), fill=(40, 40, 40))                # eyes
    d.ellipse((99, 95, 111, 105), fill=(40, 40, 40))
    d.line((75, 145, 103, 145), fill=(120, 40, 40), width=3)       # mouth
    if male:
        d.rectangle((69, 152, 109, 168), fill=(70, 55, 45))        # beard
    return img


def make_fake_celeba(
    root: str | Path,
    n_per_split: int | Sequence[int] = (24, 8, 8),
    seed: int = 0,
    *,
    identity: bool = False,
    single_group_test: bool = False,
) -> Path:
    """Write ``<root>/celeba`` in torchvision's layout and return ``root``.

    In each split (``n_per_split`` images, one number for all three or one per split) the odd
    images are ``Male``; ``Blond_Hair`` is common among the others (every 4th) and rare among
    the male ones (every 8th), as in the real data; the other 38 attributes are -1.
    ``identity=True`` also writes ``identity_CelebA.txt``; ``single_group_test=True`` makes every
    test image male (a split the loader must refuse)."""
    counts = (n_per_split,) * 3 if isinstance(n_per_split, int) else tuple(n_per_split)
    rng = np.random.default_rng(seed)
    folder = Path(root) / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    names = list(CELEBA_ATTRIBUTES)
    files: list[str] = []
    rows: list[np.ndarray] = []
    parts: list[int] = []
    for part, n in enumerate(counts):
        for j in range(n):
            male = j % 2 == 1 or (single_group_test and part == 2)
            blond = (j % 4 == 0) if j % 2 == 0 else (j % 8 == 1)
            f = f"{len(files) + 1:06d}.jpg"
            fake_face(blond, male, rng).save(folder / "img_align_celeba" / f, quality=90)
            attrs = -np.ones(40, dtype=int)
            attrs[names.index("Male")] = 1 if male else -1
            attrs[names.index("Blond_Hair")] = 1 if blond else -1
            files.append(f)
            rows.append(attrs)
            parts.append(part)
    header = [str(len(files)), " ".join(names)]
    body = [f + " " + " ".join(f"{v:2d}" for v in r) for f, r in zip(files, rows, strict=True)]
    (folder / "list_attr_celeba.txt").write_text("\n".join(header + body) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, parts, strict=True)))
    if identity:
        (folder / "identity_CelebA.txt").write_text("".join(f"{f} {i % 3 + 1}\n" for i, f in enumerate(files)))
    return Path(root)


def make_fake_lfw(
    root: str | Path,
    people: Sequence[str] | int = LFW_FAKE_PEOPLE,
    per_person: int = 4,
    seed: int = 0,
    *,
    male_by: str = "person",
) -> Path:
    """Write ``<root>/lfw/<Name>/<Name>_<NNNN>.jpg`` and ``<root>/lfw_attributes.txt`` (Kumar et
    al.'s tab-separated layout with its ``#``-prefixed header) and return ``root``.

    ``male_by="person"``: every second person is male and ``Wavy Hair`` alternates over each
    person's images. ``male_by="image"``: the other way round, so that a split by identity always
    holds both groups. ``Big Nose`` follows a fixed pattern; scores are > 0 for "has it"."""
    if male_by not in ("person", "image"):
        raise ValueError(f"male_by must be 'person' or 'image', got {male_by!r}")
    if isinstance(people, int):
        people = [f"Person {chr(65 + p)} Test" for p in range(people)]
    root = Path(root)
    rng = np.random.default_rng(seed)
    lines = ["# fake file in the layout of lfw_attributes.txt",
             "\t".join(["#", "person", "imagenum", *LFW_FAKE_ATTRIBUTES])]
    for p, person in enumerate(people):
        folder = person.replace(" ", "_")
        (root / "lfw" / folder).mkdir(parents=True, exist_ok=True)
        for k in range(1, per_person + 1):
            if male_by == "person":
                male, wavy, nose = p % 2 == 1, k % 2 == 0, 0.1
            else:
                male, wavy, nose = k % 2 == 1, p % 2 == 1, 0.3 if (p + k) % 3 == 0 else -0.3
            fake_face(False, male, rng).resize((250, 250)).save(root / "lfw" / folder / f"{folder}_{k:04d}.jpg")
            scores = [1.2 if male else -0.8, -1.0, 0.7 if wavy else -0.4, nose]
            lines.append("\t".join([person, str(k)] + [f"{v:.6f}" for v in scores]))
    (root / "lfw_attributes.txt").write_text("\n".join(lines) + "\n")
    return root


def celeba_archives(out: str | Path, n_per_split: int | Sequence[int] = 4, seed: int = 0) -> dict[str, Path]:
    """A fake CelebA as the official files: ``img_align_celeba.zip`` (holding
    ``img_align_celeba/*.jpg``) and the five text files, written to ``out``; returns name -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_fake_celeba(tmp, n_per_split, seed, identity=True) / "celeba"
        n = len(list((folder / "img_align_celeba").iterdir()))
        files = sorted(p.name for p in (folder / "img_align_celeba").iterdir())
        (folder / "list_bbox_celeba.txt").write_text(
            f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{f} 0 0 178 218\n" for f in files))
        (folder / "list_landmarks_align_celeba.txt").write_text(
            f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
            "rightmouth_y\n" + "".join(f"{f} 69 109 106 113 77 142 73 152 108 154\n" for f in files))
        with zipfile.ZipFile(out / "img_align_celeba.zip", "w") as z:
            for f in files:
                z.write(folder / "img_align_celeba" / f, f"img_align_celeba/{f}")
        result = {"img_align_celeba.zip": out / "img_align_celeba.zip"}
        for p in sorted(folder.glob("*.txt")):
            shutil.copy(p, out / p.name)
            result[p.name] = out / p.name
    return result


def lfw_archives(out: str | Path, people: int = 8, per_person: int = 2, seed: int = 0) -> dict[str, Path]:
    """A fake LFW as the official files: ``lfw.tgz`` (holding ``lfw/<Name>/<Name>_<NNNN>.jpg``)
    and ``lfw_attributes.txt``, written to ``out``; returns name -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_fake_lfw(tmp, people, per_person, seed, male_by="image")
        with tarfile.open(out / "lfw.tgz", "w:gz") as t:
            t.add(root / "lfw", arcname="lfw")
        shutil.copy(root / "lfw_attributes.txt", out / "lfw_attributes.txt")
    return {"lfw.tgz": out / "lfw.tgz", "lfw_attributes.txt": out / "lfw_attributes.txt"}
