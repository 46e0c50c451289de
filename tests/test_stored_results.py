"""The results the book reads are real: every stored file validates, and stored runs recompute.

The sweeps behind the book's figures (``book/results/<config>/``) are produced by
``fairprune sweep configs/<config>.yaml --out book/results``. A recomputed run must match exactly
on a machine with the stored fingerprint, and within the tolerances measured across CPU dispatch
levels (``book/results/TOLERANCES.json``) elsewhere (``experiments.verify``).

``make test`` recomputes a sample (two Adult runs and one CNN run of the Fashion benchmark);
``make verify`` (the ``slow`` marker) recomputes ``$FAIRPRUNE_VERIFY_N`` runs (default 1) of every
stored sweep.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from fairprune_lite import experiments

RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"
SWEEPS = sorted(p for p in RESULTS.glob("*") if p.is_dir() and any(p.glob("*.json")))
SAMPLE = [("fig3_4_adult", 2), ("fig1", 1)]  # Adult MLP runs, one Fashion CNN run


def test_there_are_stored_results():
    assert SWEEPS, f"no stored sweeps under {RESULTS}"
    assert {name for name, _ in SAMPLE} <= {p.name for p in SWEEPS}


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_every_stored_result_validates_and_names_its_provenance(sweep):
    results, bad = experiments.load_results(sweep)
    assert not bad, bad
    for r in results:
        prov = r["provenance"]
        assert r["profile"] and prov["torch"] and prov["date"] and "git_commit" in prov and prov["device"]


def _check(sweep: Path, n: int) -> None:
    report = experiments.verify(sweep, n=n, seed=zlib.crc32(sweep.name.encode()), quiet=True)
    assert len(report["checked"]) == n, f"nothing checked in {sweep}"
    assert report["ok"], (report["checks"], report["mismatches"])


@pytest.mark.parametrize("name, n", SAMPLE, ids=[s for s, _ in SAMPLE])
def test_a_sample_of_stored_results_recomputes(name, n):
    _check(RESULTS / name, n)


@pytest.mark.slow
@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_every_stored_sweep_recomputes(sweep):
    _check(sweep, int(os.environ.get("FAIRPRUNE_VERIFY_N", "1")))


@pytest.fixture(scope="module")
def dense_cache(tmp_path_factory):
    """The dense-model cache these runs share (never runs/cache in the repository)."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("settings", [{"finetune_steps": "+1"}, {"finetune_lr": "x1.5"}], ids=["one_more_step", "lr"])
def test_the_measured_tolerances_still_catch_a_real_change(settings, dense_cache):
    """A stored Adult OMP run, recomputed with one more fine-tuning step or another learning rate,
    fails the tolerant check (the one ``verify`` uses on another CPU) with the real TOLERANCES.json."""
    stored = next(r for r in experiments.load_results(RESULTS / "fig3_4_adult")[0]
                  if r["method"] == "omp" and r["sparsity_target"] == 0.893 and r["seed"] == 0)
    spec = experiments.RunSpec.from_dict(stored["spec"])
    profile = experiments.get_profile(spec.profile)
    knob, how = next(iter(settings.items()))
    value = getattr(profile, knob) + 1 if how == "+1" else getattr(profile, knob) * 1.5
    changed = experiments.run(experiments.RunSpec(**{**spec.to_dict(), "settings": {knob: value}}),
                              cache_dir=dense_cache)
    cmp = experiments.compare_results(stored, changed, exact=False, tolerances=experiments.load_tolerances())
    assert cmp["mismatches"], f"{knob}={value} passed the tolerant check"
    if how == "x1.5":  # no count changes: the metrics themselves must move beyond their tolerance
        assert any("> tolerance" in m for m in cmp["mismatches"]), cmp["mismatches"]
