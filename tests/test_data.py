"""Datasets: shipped Adult and Fashion, generated CelebA/LFW fixtures, the .npz format, errors."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fairprune_lite import data
from fairprune_lite.data import FairDataset, Splits, faces, fixtures, from_tensors, load_dataset, load_npz

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# shared checks
# --------------------------------------------------------------------------------------------
def check_splits(sp: Splits) -> None:
    assert isinstance(sp, Splits)
    for split, ds in sp.items():
        x, y, s = ds[0]
        assert x.dtype == torch.float32 and tuple(x.shape) == ds.input_shape
        assert y.dtype == torch.long and s.dtype == torch.long
        assert set(torch.unique(ds.y).tolist()) <= {0, 1}
        assert set(torch.unique(ds.s).tolist()) == {0, 1}, split
        counts = ds.group_counts()
        assert set(counts) == {(0, 0), (0, 1), (1, 0), (1, 1)}
        assert sum(counts.values()) == len(ds)
        assert counts[(1, 1)] == int(((ds.s == 1) & (ds.y == 1)).sum())
    table = sp.summary()
    assert all(k in table for k in ("train", "val", "test"))


# --------------------------------------------------------------------------------------------
# Adult
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adult() -> Splits:
    return load_dataset("adult")


def _cell_total(sp: Splits, splits: tuple[str, ...], *, s=None, y=None) -> int:
    total = 0
    for name in splits:
        ds = getattr(sp, name)
        sel = torch.ones(len(ds), dtype=torch.bool)
        if s is not None:
            sel &= ds.s == s
        if y is not None:
            sel &= ds.y == y
        total += int(sel.sum())
    return total


def test_adult_counts_match_published(adult):
    check_splits(adult)
    assert adult.meta["raw_rows"] == {"adult.data": 32561, "adult.test": 16281}
    assert len(adult.train) + len(adult.val) == 32561 and len(adult.test) == 16281
    assert abs(len(adult.val) - 0.2 * 32561) < 1
    # published: adult.data 21,790 Male / 10,771 Female, 7,841 >50K; adult.test 10,860 / 5,421, 3,846
    tv = ("train", "val")
    assert _cell_total(adult, tv, s=1) == 21790 and _cell_total(adult, tv, s=0) == 10771
    assert _cell_total(adult, tv, y=1) == 7841
    assert _cell_total(adult, ("test",), s=1) == 10860 and _cell_total(adult, ("test",), s=0) == 5421
    assert _cell_total(adult, ("test",), y=1) == 3846


def test_adult_features(adult):
    names = adult.meta["feature_names"]
    assert adult.train.x.shape[1] == len(names) == adult.input_shape[0]
    assert not any(n.startswith("sex") for n in names), "sex must be dropped by default"
    assert "workclass=?" in names and "occupation=?" in names  # '?' kept as a category
    k = len(adult.meta["standardisation"]["columns"])
    num = adult.train.x[:, :k].double()
    assert torch.allclose(num.mean(0), torch.zeros(k, dtype=torch.double), atol=1e-5)
    assert torch.allclose(num.std(0, unbiased=False), torch.ones(k, dtype=torch.double), atol=1e-4)
    assert not torch.allclose(adult.val.x[:, :k].double().mean(0), torch.zeros(k, dtype=torch.double), atol=1e-4)
    onehot = adult.train.x[:, k:]
    assert set(torch.unique(onehot).tolist()) == {0.0, 1.0}


def test_adult_options_and_seed():
    kept = load_dataset("adult", keep_sensitive=True)
    assert "sex=Male" in kept.meta["feature_names"] and "sex=Female" in kept.meta["feature_names"]
    dropped = load_dataset("adult", missing="drop")
    assert len(dropped.train) + len(dropped.val) == 30162 and len(dropped.test) == 15060
    race = load_dataset("adult", sensitive="race")
    assert "White" in race.meta["sensitive"]
    a, b, c = (load_dataset("adult", seed=k) for k in (1, 1, 2))
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.val.y[:200], c.val.y[:200]) or not torch.equal(a.val.x[:50], c.val.x[:50])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"target": "age"}, "target"),
        ({"sensitive": "gender"}, "sensitive"),
        ({"missing": "impute"}, "missing"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_adult_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("adult", **kw)


def test_adult_corrupt_copy(tmp_path):
    import gzip

    lines = [ln for ln in gzip.open(data.data_dir() / "adult.data.gz", "rt").read().splitlines() if ln.strip()]
    with gzip.open(tmp_path / "adult.data.gz", "wt") as f:
        f.write("\n".join(lines[:-5]) + "\n")
    (tmp_path / "adult.test.gz").write_bytes((data.data_dir() / "adult.test.gz").read_bytes())
    with pytest.raises(ValueError, match="32556 rows, expected 32561"):
        load_dataset("adult", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="adult.data"):
        load_dataset("adult", root=tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------
# Shipped files and data/README.md agree
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fname", ["adult.data.gz", "adult.test.gz", "fashion_subset.npz"])
def test_shipped_sha256_documented(fname):
    readme = (ROOT / "data" / "README.md").read_text()
    digest = hashlib.sha256((ROOT / "data" / fname).read_bytes()).hexdigest()
    line = next((ln for ln in readme.splitlines() if f"data/{fname}" in ln and re.search(r"[0-9a-f]{64}", ln)), None)
    assert line is not None, f"data/README.md has no SHA-256 line for data/{fname}"
    assert digest in line


def test_adult_gzip_holds_the_original():
    import gzip

    readme = (ROOT / "data" / "README.md").read_text()
    for fname in ("adult.data", "adult.test"):
        digest = hashlib.sha256(gzip.open(ROOT / "data" / f"{fname}.gz").read()).hexdigest()
        assert re.search(rf"{re.escape(fname)}\b(?!\.gz).*{digest}", readme), fname


def test_data_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRPRUNE_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="fashion_subset.npz"):
        load_dataset("fashion")
    monkeypatch.setenv("FAIRPRUNE_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="FAIRPRUNE_DATA"):
        data.data_dir()


# --------------------------------------------------------------------------------------------
# Fashion
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion() -> Splits:
    return load_dataset("fashion")


def test_fashion_shapes_and_groups(fashion):
    check_splits(fashion)
    assert [len(d) for d in fashion] == [12000, 3000, 5000]
    assert fashion.input_shape == (1, 28, 28)
    share = fashion.meta["minority_share"]
    for ds in fashion:
        assert 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
        assert abs(float(ds.s.float().mean()) - share) < 2 / len(ds) + 1e-9
        # independence (correlation 0): the minority share is the same in both classes
        p1 = ds.s[ds.y == 1].float().mean().item()
        p0 = ds.s[ds.y == 0].float().mean().item()
        assert abs(p1 - p0) < 0.005
        # tops vs rest: y follows the stored Fashion-MNIST labels
        labels = torch.as_tensor(ds.meta["labels"].astype(np.int64))
        assert torch.equal(ds.y, torch.isin(labels, torch.tensor([0, 2, 4, 6])).long())


def test_fashion_minority_is_inverted(fashion):
    ds = fashion.train
    corner = ds.x[:, 0, 0, 0]  # Fashion-MNIST backgrounds are black: inverted ones white
    assert bool((corner[ds.s == 1] > 0.5).all()) and bool((corner[ds.s == 0] < 0.5).all())
    with np.load(data.data_dir() / "fashion_subset.npz") as z:
        raw = torch.from_numpy(z["images"][z["split"] == 0]).float() / 255
    i1 = int(torch.nonzero(ds.s == 1)[0])
    i0 = int(torch.nonzero(ds.s == 0)[0])
    assert torch.allclose(ds.x[i1, 0], 1 - raw[i1]) and torch.allclose(ds.x[i0, 0], raw[i0])


def test_fashion_parameters():
    sp = load_dataset("fashion", minority_share=0.2, correlation=0.3, target="footwear", seed=3, limit=1000)
    check_splits(sp)
    assert max(len(d) for d in sp) <= 1000
    full = load_dataset("fashion", minority_share=0.2, correlation=0.3, seed=3)
    s, y = full.train.s.double(), full.train.y.double()
    phi = float(torch.corrcoef(torch.stack([s, y]))[0, 1])
    assert abs(phi - 0.3) < 0.01
    assert abs(float(s.mean()) - 0.2) < 1e-3
    custom = load_dataset("fashion", target=[1, 3], limit=500)
    assert abs(float(custom.train.y.float().mean()) - 0.2) < 0.08


def test_fashion_seed_reproducible():
    a, b, c = (load_dataset("fashion", seed=k, limit=2000) for k in (5, 5, 6))
    assert torch.equal(a.train.s, b.train.s) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.train.s, c.train.s)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"target": "shoes"}, "target"),
        ({"target": [0, 11]}, "target"),
        ({"target": list(range(10))}, "target"),
        ({"sensitive": "colour"}, "sensitive"),
        ({"minority_share": 0.0}, "minority_share"),
        ({"correlation": 2.0}, "correlation"),
        ({"correlation": 0.9}, "not reachable"),
    ],
)
def test_fashion_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("fashion", **kw)


# --------------------------------------------------------------------------------------------
# Bring your own data
# --------------------------------------------------------------------------------------------
def _toy(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = rng.integers(0, 2, n)
    s = np.arange(n) % 2
    return x, y, s


def test_npz_roundtrip(tmp_path):
    x, y, s = _toy()
    split = np.array(["train"] * 30 + ["val"] * 14 + ["test"] * 16)
    np.savez(tmp_path / "mine.npz", x=x, y=y, s=s, split=split)
    sp = load_dataset(tmp_path / "mine.npz")
    check_splits(sp)
    assert [len(d) for d in sp] == [30, 14, 16]
    assert torch.equal(sp.val.x, torch.from_numpy(x[30:44]))
    assert sp.name == "mine"
    np.savez(tmp_path / "nosplit.npz", x=x, y=y.astype(bool), s=s.astype(np.float64))
    a = load_npz(tmp_path / "nosplit.npz", seed=1)
    b = load_dataset(str(tmp_path / "nosplit.npz"), seed=1)
    check_splits(a)
    assert [len(d) for d in a] == [36, 12, 12]
    assert torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.test.x, load_npz(tmp_path / "nosplit.npz", seed=2).test.x)


def test_from_tensors():
    x, y, s = _toy()
    sp = from_tensors(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(s), seed=0)
    check_splits(sp)
    assert sum(len(d) for d in sp) == 60
    images = from_tensors(np.zeros((40, 1, 8, 8), np.uint8), np.arange(40) % 2, (np.arange(40) // 2) % 2)
    assert images.input_shape == (1, 8, 8) and images.train.x.dtype == torch.float32


def _bad_npz_cases() -> dict[str, tuple[dict, str]]:
    x, y, s = _toy()
    split = np.array(["train"] * 30 + ["val"] * 14 + ["test"] * 16)
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    return {
        "no y": ({"x": x, "s": s}, "'y' missing"),
        "no x": ({"y": y, "s": s}, "'x' missing"),
        "no s": ({"x": x, "y": y}, "'s' missing"),
        "y=2": ({"x": x, "y": np.where(np.arange(60) == 3, 2, y), "s": s}, r"y must hold binary values 0/1, found \[2\]"),
        "s=3": ({"x": x, "y": y, "s": s * 3}, "s must hold binary"),
        "split value": ({"x": x, "y": y, "s": s, "split": np.where(split == "val", "valid", split)}, "split holds values"),
        "split length": ({"x": x, "y": y, "s": s, "split": split[:-1]}, "one entry per example"),
        "one group": ({"x": x, "y": y, "s": np.where(split == "test", 1, s), "split": split},
                      "split 'test' contains only sensitive group s=1"),
        "no test": ({"x": x, "y": y, "s": s, "split": np.where(split == "test", "val", split)}, "no 'test'"),
        "length": ({"x": x[:-1], "y": y, "s": s}, "same length"),
        "nan": ({"x": x_nan, "y": y, "s": s}, "NaN"),
        "1-d x": ({"x": x[:, 0], "y": y, "s": s}, "x must have shape"),
    }


@pytest.mark.parametrize("case", list(_bad_npz_cases()))
def test_npz_bad_input(tmp_path, case):
    arrays, match = _bad_npz_cases()[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_npz(tmp_path / "bad.npz")


def test_npz_strings_and_objects_are_named(tmp_path):
    x, y, s = _toy()
    np.savez(tmp_path / "words.npz", x=x, y=np.where(y == 1, "yes", "no"), s=s)
    with pytest.raises(ValueError, match=r"words.npz: array 'y' holds strings \(dtype <U3\); it must be numeric"):
        load_npz(tmp_path / "words.npz")
    np.savez(tmp_path / "xwords.npz", x=np.full((60, 2), "a"), y=y, s=s)
    with pytest.raises(ValueError, match=r"xwords.npz: array 'x' holds strings"):
        load_dataset(tmp_path / "xwords.npz")
    np.savez(tmp_path / "objects.npz", x=x, y=np.array([1] * 59 + [None], dtype=object), s=s)
    with pytest.raises(ValueError, match=r"objects.npz: array 'y' holds Python objects"):
        load_npz(tmp_path / "objects.npz")
    with pytest.raises(ValueError, match="y must hold binary values 0/1, found dtype <U1"):
        from_tensors(x, np.array(["1", "0"] * 30), s)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"x,y,s\n1,0,1\n", r"not a \.npz file: not a zip archive \(it starts with b'x,y,'\)"),
        (b"", r"not a \.npz file: empty"),
        (None, r"not a \.npz file: a single \.npy array"),
        ("truncated", r"not a readable \.npz archive"),
    ],
    ids=["csv", "empty", "npy", "truncated zip"],
)
def test_npz_not_an_archive(tmp_path, content, match):
    path = tmp_path / "bad.npz"
    x, y, s = _toy()
    if content is None:
        with open(path, "wb") as f:
            np.save(f, x)
    elif content == "truncated":
        np.savez(tmp_path / "good.npz", x=x, y=y, s=s)
        path.write_bytes((tmp_path / "good.npz").read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_cli_bad_npz_exits_2(tmp_path):
    import os
    import subprocess
    import sys

    x, y, s = _toy()
    np.savez(tmp_path / "words.npz", x=x, y=np.where(y == 1, "yes", "no"), s=s)
    (tmp_path / "table.npz").write_text("age,income\n31,>50K\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               FAIRPRUNE_QUIET="1")
    procs = {  # both at once: the start-up of the interpreter dominates
        name: subprocess.Popen(
            [sys.executable, "-m", "fairprune_lite", "run", "--dataset", str(tmp_path / name), "--method", "omp",
             "--sparsity", "0.5", "--profile", "smoke", "--out", str(tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        for name in ("words.npz", "table.npz")
    }
    for name, expected in (("words.npz", "array 'y' holds strings"), ("table.npz", "not a zip archive")):
        _out, err = procs[name].communicate(timeout=120)
        assert procs[name].returncode == 2, err
        assert "Traceback" not in err
        assert f"{tmp_path / name}: " in err and expected in err


def test_batch_equals_items(tmp_path):
    sp = load_dataset("fashion", limit=50)
    idx = [7, 3, 3, 41, 0]
    xb, yb, sb = sp.train.batch(idx)
    assert torch.equal(xb, torch.stack([sp.train[i][0] for i in idx]))
    assert torch.equal(yb, sp.train.y[idx]) and torch.equal(sb, sp.train.s[idx])
    root = make_celeba(tmp_path, n_per_split=6)
    for cache in (False, True):
        ds = load_dataset("celeba", root=root, image_size=16, verify="off", cache=cache).train
        order = [5, 0, 2, 2, 4]
        xb, yb, sb = ds.batch(np.array(order))
        assert xb.dtype == torch.float32 and xb.shape == (5, 3, 16, 16)
        assert torch.equal(xb, torch.stack([ds[i][0] for i in order])), cache
        assert torch.equal(yb, ds.y[order]) and torch.equal(sb, ds.s[order])


def test_corrupt_image_names_file_and_fetch_command(tmp_path):
    root = make_celeba(tmp_path)
    bad = root / "celeba" / "img_align_celeba" / "000002.jpg"
    bad.write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(ValueError, match=r"000002.jpg is not a readable image.*fairprune data fetch celeba --root"):
        load_dataset("celeba", root=root, verify="off", cache=True)
    assert not list((root / "celeba" / "fairprune_cache").glob("*.npy"))  # nothing half-built left
    lazy = load_dataset("celeba", root=root, verify="off", image_size=16)
    with pytest.raises(ValueError, match="000002.jpg is not a readable image"):
        lazy.train[1]


def test_corrupt_text_files_name_file_and_fetch_command(tmp_path):
    root = make_celeba(tmp_path)
    attr = root / "celeba" / "list_attr_celeba.txt"
    attr.write_text("<!DOCTYPE html><html>Google Drive - Quota exceeded</html>\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt must start with the number of images; "
                                         r"`fairprune data fetch celeba --root .*` fetches checked copies"):
        load_dataset("celeba", root=root, verify="off")
    attr.write_bytes(b"PK\x03\x04\xff\xfe binary")
    with pytest.raises(ValueError, match="list_attr_celeba.txt"):
        load_dataset("celeba", root=root, verify="off")
    lfw = make_lfw(tmp_path / "lfw")
    (lfw / "lfw_attributes.txt").write_text("<html>quota</html>\n")
    with pytest.raises(ValueError, match="no header line.*fairprune data fetch lfw --root"):
        load_dataset("lfw", root=lfw)


def test_stratified_subsample_keeps_every_cell():
    sp = load_dataset("fashion")
    small = data.stratified_subsample(sp.train, 200, 0, "train")
    assert 196 <= len(small) <= 204
    full, part = sp.train.group_counts(), small.group_counts()
    for cell, n in full.items():
        assert abs(part[cell] - 200 * n / len(sp.train)) <= 1
    again = data.stratified_subsample(sp.train, 200, 0, "train")
    assert torch.equal(again.x, small.x)
    assert data.stratified_subsample(sp.train, None, 0, "train") is sp.train


def test_registry_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_dataset(tmp_path / "nothing.npz")
    x, y, s = _toy()
    np.savez(tmp_path / "t.npz", x=x, y=y, s=s)
    with pytest.raises(ValueError, match="target"):
        load_dataset(tmp_path / "t.npz", target="y2")
    with pytest.raises(ValueError, match="unknown argument 'limit'"):
        load_dataset(tmp_path / "t.npz", limit=3)
    with pytest.raises(ValueError, match="same length"):
        FairDataset(torch.zeros(3, 2), [0, 1], [0, 1, 1])


# --------------------------------------------------------------------------------------------
# CelebA fixture (torchvision layout), from fairprune_lite.data.fixtures
# --------------------------------------------------------------------------------------------
def make_celeba(root: Path, n_per_split: int = 4, single_group_test: bool = False) -> Path:
    """A tiny CelebA folder: 3 x ``n_per_split`` cartoon faces, both Male values and both
    Blond_Hair values in every split, with identity_CelebA.txt."""
    return fixtures.make_fake_celeba(root, n_per_split, identity=True, single_group_test=single_group_test)


def test_celeba_fixture_loads(tmp_path):
    root = make_celeba(tmp_path)
    with pytest.warns(UserWarning, match="not the official files"):
        sp = load_dataset("celeba", root=root, image_size=16, crop=None)
    check_splits(sp)
    assert [len(d) for d in sp] == [4, 4, 4]
    assert sp.input_shape == (3, 16, 16)
    x, _, _ = sp.test[1]
    assert x.shape == (3, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert sp.train.group_counts() == {(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 1}
    findings = sp.meta["verification"]
    assert any("list_attr_celeba.txt: MD5" in f and "differs" in f for f in findings)
    assert any("list_bbox_celeba.txt: absent" in f for f in findings)
    other = load_dataset("celeba", root=root, target="bags under eyes", sensitive="blond hair", verify="off",
                         image_size=16)
    assert "Bags_Under_Eyes" in other.meta["target"] and "Blond_Hair" in other.meta["sensitive"]
    assert other.meta["verification"] == ["verification off"]


def test_celeba_verify_modes(tmp_path, monkeypatch):
    root = make_celeba(tmp_path)
    with pytest.raises(ValueError, match="list_attr_celeba.txt.*differ from the official"):
        load_dataset("celeba", root=root, verify="strict")
    # files that claim to be official (the official row count) must match the official MD5s
    monkeypatch.setattr(faces, "CELEBA_OFFICIAL_ROWS", 12)
    with pytest.raises(ValueError, match="identity_CelebA.txt"):
        load_dataset("celeba", root=root)
    with pytest.raises(ValueError, match="verify"):
        load_dataset("celeba", root=root, verify="maybe")


def test_celeba_cache_matches_decoding(tmp_path):
    root = make_celeba(tmp_path)
    lazy = load_dataset("celeba", root=root, image_size=16, verify="off")
    cached = load_dataset("celeba", root=root, image_size=16, verify="off", cache=True)
    cache_file = root / "celeba" / "fairprune_cache" / "celeba_16_178.npy"
    assert cache_file.is_file()
    stamp = cache_file.stat().st_mtime_ns
    for a, b in zip(lazy, cached, strict=True):
        assert torch.equal(torch.stack([a[i][0] for i in range(len(a))]), torch.stack([b[i][0] for i in range(len(b))]))
        assert torch.equal(a.y, b.y) and torch.equal(a.s, b.s)
    load_dataset("celeba", root=root, image_size=16, verify="off", cache=True)
    assert cache_file.stat().st_mtime_ns == stamp  # reused, not rebuilt
    load_dataset("celeba", root=root, image_size=12, verify="off", cache=cache_file)
    assert np.load(cache_file, mmap_mode="r").shape[-1] == 12  # a mismatching cache is rebuilt


def test_celeba_errors(tmp_path):
    root = make_celeba(tmp_path)
    with pytest.raises(ValueError, match="unknown target attribute 'Blonde'.*Blond_Hair.*Wavy_Hair"):
        load_dataset("celeba", root=root, target="Blonde", verify="off")
    with pytest.raises(ValueError, match="unknown sensitive attribute 'Gender'"):
        load_dataset("celeba", root=root, sensitive="Gender", verify="off")
    with pytest.raises(ValueError, match="same attribute"):
        load_dataset("celeba", root=root, target="Male", verify="off")
    with pytest.raises(ValueError, match="root is required"):
        load_dataset("celeba")
    (root / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt.*(?s:.*)Kaggle"):
        load_dataset("celeba", root=root)
    one = make_celeba(tmp_path / "one", single_group_test=True)
    with pytest.raises(ValueError, match="split 'test' contains only sensitive group s=1"):
        load_dataset("celeba", root=one, verify="off")


# --------------------------------------------------------------------------------------------
# LFW fixture
# --------------------------------------------------------------------------------------------
LFW_ATTRS = list(fixtures.LFW_FAKE_ATTRIBUTES)


def make_lfw(root: Path, people: int = 12, per_person: int = 2) -> Path:
    """Male alternates over each person's images (both groups in any split by identity),
    Wavy Hair is set per person (odd persons)."""
    return fixtures.make_fake_lfw(root, people, per_person, male_by="image")


def test_lfw_fixture_loads(tmp_path):
    root = make_lfw(tmp_path)
    sp = load_dataset("lfw", root=root, image_size=16, crop=30)
    check_splits(sp)
    assert sum(len(d) for d in sp) == 24
    assert [len(d) for d in sp] == [16, 4, 4]  # by identity: 8 / 2 / 2 people
    assert sp.input_shape == (3, 16, 16) and sp.test[0][0].shape == (3, 16, 16)
    assert "Wavy Hair" in sp.meta["target"]
    people = [{Path(p).parent.name for p in ds.x.paths} for ds in sp]
    assert not (people[0] & people[1]) and not (people[0] & people[2]) and not (people[1] & people[2])
    wavy = {Path(p).parent.name: int(yv) for ds in sp for p, yv in zip(ds.x.paths, ds.y, strict=True)}
    assert all(v == (ord(name.split("_")[1]) - 65) % 2 for name, v in wavy.items())
    again = load_dataset("lfw", root=root, image_size=16, crop=30)
    assert torch.equal(again.test.y, sp.test.y) and again.test.x.paths == sp.test.x.paths
    nose = load_dataset("lfw", root=root, target="Big_Nose", seed=3, by_identity=False, image_size=16)
    assert "Big Nose" in nose.meta["target"] and [len(d) for d in nose] == [16, 4, 4]
    rows = [ln.split("\t") for ln in (root / "lfw_attributes.txt").read_text().splitlines()[2:]]
    big = {(r[0].replace(" ", "_"), int(r[1])): int(float(r[2 + LFW_ATTRS.index("Big Nose")]) > 0) for r in rows}
    for ds in nose:
        for path, yv in zip(ds.x.paths, ds.y.tolist(), strict=True):
            assert big[(Path(path).parent.name, int(Path(path).stem[-4:]))] == yv
    cached = load_dataset("lfw", root=root, image_size=16, crop=30, cache=True)
    assert torch.equal(cached.val[1][0], sp.val[1][0])


def test_lfw_errors(tmp_path):
    root = make_lfw(tmp_path)
    with pytest.raises(ValueError, match="unknown target attribute 'Curly'.*Wavy Hair"):
        load_dataset("lfw", root=root, target="Curly")
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("lfw", root=root, val_fraction=0)
    with pytest.raises(FileNotFoundError, match="lfw_attributes.txt"):
        load_dataset("lfw", root=tmp_path / "empty")
    (root / "lfw" / "Person_A_Test" / "Person_A_Test_0001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="Person_A_Test_0001.jpg"):
        load_dataset("lfw", root=root, cache=True)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "lfw").mkdir()
    (bad / "lfw_attributes.txt").write_text("person\tMale\nA\t1\n")
    with pytest.raises(ValueError, match="no header line"):
        load_dataset("lfw", root=bad)


# --------------------------------------------------------------------------------------------
# The installed package finds its data
# --------------------------------------------------------------------------------------------
def test_wheel_carries_every_shipped_file():
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"]["fairprune_lite.data.shipped"] == "data"
    assert "fairprune_lite.data.shipped" in cfg["packages"]
    shipped = sorted(p.name for p in (ROOT / "data").iterdir() if p.is_file())
    assert sorted(cfg["package-data"]["fairprune_lite.data.shipped"]) == shipped


def test_data_dir_prefers_the_package_copy(tmp_path, monkeypatch):
    from fairprune_lite.data import core

    pkg = tmp_path / "site-packages" / "fairprune_lite" / "data"
    (pkg / "shipped").mkdir(parents=True)
    monkeypatch.delenv("FAIRPRUNE_DATA", raising=False)
    monkeypatch.setattr(core, "__file__", str(pkg / "core.py"))
    assert core.data_dir() == pkg / "shipped"
    (pkg / "shipped").rmdir()
    with pytest.raises(FileNotFoundError, match="shipped data folder not found.*FAIRPRUNE_DATA"):
        core.data_dir()
