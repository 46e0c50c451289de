"""verify: exact on the same machine, within measured tolerances across machines, and the tolerant
check still catches a real change."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fairprune_lite import experiments as ex

# a fixture in the format of book/results/TOLERANCES.json (the real file holds measured values)
TOL = {"schema": 1, "measured": "test fixture",
       "families": {"mlp": {"accuracy": 0.004, "loss": 1e-3, "accuracy_gap": 0.004, "accuracy_by_group": 0.004,
                            "degradation": 0.004, "sparsity": 0.0}}}


@pytest.fixture(scope="module")
def npz(toy_npz) -> Path:
    return toy_npz("verify_toy", seed=5, n=700, features=5, logit=lambda x, s: x[:, 0] + 0.4 * s)


@pytest.fixture(scope="module")
def stored(npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("res")
    res = ex.run(ex.RunSpec(method="omp", dataset=str(npz), sparsity=0.5, profile="smoke"), out=out)
    return out, res


def test_results_record_the_machine_fingerprint(stored):
    _, res = stored
    fp = res["provenance"]["fingerprint"]
    assert fp == ex.fingerprint() | {"threads": 1}  # the smoke profile runs on one thread
    assert fp["capability"] and fp["cpu"] and fp["torch"]


def test_exact_on_the_same_machine(stored, tmp_path):
    out, res = stored
    rep = ex.verify(out, n=1, quiet=True)
    assert rep["ok"] and rep["checks"][res["run_id"]] == "exact"


def copy_with(res: dict, folder: Path, change) -> Path:
    d = copy.deepcopy(res)
    change(d)
    folder.mkdir(exist_ok=True)
    ex.write_json(folder / f"{d['run_id']}.json", d)
    return folder


def test_other_machine_within_tolerance(stored, tmp_path):
    _, res = stored

    def other_machine(d):
        d["provenance"]["fingerprint"]["capability"] = "AVX2"
        d["test"]["loss"] += 4e-4

    folder = copy_with(res, tmp_path / "a", other_machine)
    tol_file = tmp_path / "TOLERANCES.json"
    tol_file.write_text(json.dumps(TOL))
    rep = ex.verify(folder, n=1, quiet=True, tolerances=tol_file)
    assert rep["ok"], rep["mismatches"]
    assert rep["checks"][res["run_id"]].startswith("within tolerance, max |diff| = 0.0004 (at test.loss)")
    # an old result without a fingerprint counts as another machine
    folder = copy_with(res, tmp_path / "b", lambda d: d["provenance"].pop("fingerprint"))
    rep = ex.verify(folder, n=1, quiet=True, tolerances=TOL)
    assert rep["ok"] and rep["checks"][res["run_id"]].startswith("within tolerance")
    # beyond the tolerance, or a cost count off by one: a mismatch
    def too_far(d):
        d["provenance"].pop("fingerprint")
        d["test"]["accuracy"] += 0.01
        d["cost"]["iterations"] += 1
    folder = copy_with(res, tmp_path / "c", too_far)
    rep = ex.verify(folder, n=1, quiet=True, tolerances=TOL)
    msgs = " ".join(rep["mismatches"][res["run_id"]])
    assert not rep["ok"] and "test.accuracy" in msgs and "tolerance 0.004" in msgs and "cost.iterations" in msgs


def test_no_measured_tolerance_is_a_mismatch_never_a_pass(stored, tmp_path):
    _, res = stored
    folder = copy_with(res, tmp_path / "a", lambda d: d["provenance"].pop("fingerprint"))
    rep = ex.verify(folder, n=1, quiet=True, tolerances={"families": {"cnn": {"accuracy": 1.0}}})
    assert not rep["ok"] and "no measured tolerances for family 'mlp'" in rep["mismatches"][res["run_id"]][0]
    assert rep["checks"][res["run_id"]].startswith("within tolerance: impossible")

    def dp(d):
        d["provenance"].pop("fingerprint")
        d["val"]["demographic_parity_difference"] += 1e-9
    folder = copy_with(res, tmp_path / "b", dp)
    rep = ex.verify(folder, n=1, quiet=True, tolerances=TOL)
    assert not rep["ok"]
    assert "no measured tolerance for val.demographic_parity_difference (mlp)" in " ".join(
        rep["mismatches"][res["run_id"]])


def test_tolerant_check_catches_a_real_change(stored, tmp_path):
    """One more fine-tuning step, or another learning rate, is not within the measured tolerance."""
    _, res = stored
    keys: set = set()

    def leaves(v, path):
        if isinstance(v, dict):
            for k, x in v.items():
                leaves(x, path + [str(k)])
        elif isinstance(v, float):
            keys.add([p for p in path if not p.isdigit()][-1])

    for k in ("val", "test", "dense", "sparsity"):
        leaves(res[k], [k])
    # a tolerance for every float metric (0.004 = one or two of 300 examples, loss 1e-3): the
    # change must show as a difference beyond a tolerance, not as a missing one
    tol = {"families": {"mlp": {k: (1e-3 if k == "loss" else 0.004) for k in keys}}}
    spec = ex.RunSpec.from_dict(res["spec"])
    for settings in ({"finetune_steps": ex.PROFILES["smoke"].finetune_steps + 1}, {"finetune_lr": 0.02}):
        changed = ex.run(ex.RunSpec(**{**spec.to_dict(), "settings": settings}), cache_dir=tmp_path / "cache")
        cmp = ex.compare_results(res, changed, exact=False, tolerances=tol)
        beyond = [m for m in cmp["mismatches"] if not m.startswith("cost.") and "> tolerance" in m]
        assert beyond, (settings, cmp["mismatches"])


def test_tolerances_file_errors(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="t.json: not valid JSON"):
        ex.load_tolerances(bad)
    bad.write_text(json.dumps({"families": {"mlp": {"accuracy": "x"}}}))
    with pytest.raises(ValueError, match="families.mlp"):
        ex.load_tolerances(bad)
    with pytest.raises(FileNotFoundError):
        ex.load_tolerances(tmp_path / "missing.json")


def test_feasibility_blocks_get_their_metrics_tolerance_across_machines(stored):
    """Across machines a feasibility block's value and SE get the tolerance of the metric it reports
    (accuracy_gap: 0.004 here); ``met`` may flip only when the stored value is within it of tau."""
    _, res = stored
    tol = {"families": {"mlp": dict(TOL["families"]["mlp"])}}
    feas = res["val"]["feasibility"]
    assert feas["metric"] == "accuracy_gap"

    def changed(**kw):
        new = copy.deepcopy(res)
        new["val"]["feasibility"].update(kw)
        return ex.compare_results(res, new, exact=False, tolerances=tol)["mismatches"]

    assert changed(value=feas["value"] + 0.003, se=feas["se"] - 0.003) == []
    (m,) = changed(value=feas["value"] + 0.01)
    assert "val.feasibility.value" in m and "> tolerance 0.004 for 'accuracy_gap'" in m
    assert changed(tau=feas["tau"] + 1e-6)  # tau is exact
    near, far = copy.deepcopy(res), copy.deepcopy(res)
    near["val"]["feasibility"].update(value=feas["tau"] - 0.001, met=True)
    far["val"]["feasibility"].update(value=feas["tau"] - 0.01, met=True)
    for stored_res, flips_ok in ((near, True), (far, False)):
        new = copy.deepcopy(stored_res)
        new["val"]["feasibility"]["met"] = False
        mism = ex.compare_results(stored_res, new, exact=False, tolerances=tol)["mismatches"]
        assert (mism == []) == flips_ok, mism
    # on the same machine everything is exact
    assert ex.compare_results(res, copy.deepcopy(res) | {"val": {**res["val"], "feasibility": {**feas, "se": feas["se"] + 1e-9}}},
                              exact=True)["mismatches"]
