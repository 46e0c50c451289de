"""The results the book reads are real: every stored file validates, and a sample recomputes.

The sweeps behind the book's figures (``book/results/<config>/``) are produced by
``fairprune sweep configs/<config>.yaml --out book/results``. CPU runs are deterministic, so
recomputing a stored run from its spec must give the same numbers (``experiments.verify``).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from fairprune_lite import experiments

RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"
SWEEPS = sorted(p for p in RESULTS.glob("*") if p.is_dir() and any(p.glob("*.json")))


def test_there_are_stored_results():
    assert SWEEPS, f"no stored sweeps under {RESULTS}"


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_every_stored_result_validates_and_names_its_provenance(sweep):
    results, bad = experiments.load_results(sweep)
    assert not bad, bad
    for r in results:
        prov = r["provenance"]
        assert r["profile"] and prov["torch"] and prov["date"] and "git_commit" in prov and prov["device"]


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_a_stored_result_recomputes_exactly(sweep):
    report = experiments.verify(sweep, n=1, seed=zlib.crc32(sweep.name.encode()), quiet=True)
    assert report["checked"], f"nothing checked in {sweep}"
    assert report["ok"], report["mismatches"]
