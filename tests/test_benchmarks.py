"""Smoke test of the cost benchmark (``benchmarks/cost.py --quick``) and its small helpers.

No timing assertions: the numbers are machine- and load-dependent; only their presence, types
and internal consistency are checked.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "cost.py"


def _load_cost():
    spec = importlib.util.spec_from_file_location("bench_cost", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_cost"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "cost.json").read_text()), (out / "cost.md").read_text()


def test_quick_run_writes_every_section(quick_run):
    _out, res, md = quick_run
    assert res["bench_profile"] == "quick"
    assert set(res["sections"]) == {"step", "convergence", "scaling", "book"}
    for sec in res["sections"].values():
        m = sec["machine"]
        for key in ("git_commit", "torch", "python", "device", "device_name", "cpu_count", "date",
                    "bench_profile", "load_average_1_5_15"):
            assert key in m
    for title in ("## 1.", "## 2.", "## 3.", "## 4."):
        assert title in md


def test_step_section_is_consistent(quick_run):
    _out, res, _md = quick_run
    step = res["sections"]["step"]
    entry = next(iter(step["models"].values()))
    rows = entry["rows"]
    assert rows["dense_sgd"]["vs_dense_sgd"] == 1.0
    assert rows["masked_sgd"]["vs_masked_sgd"] == 1.0
    for name, r in rows.items():
        assert r["median_ms"] > 0 and math.isfinite(r["median_ms"]), name
        assert r["p25_ms"] <= r["median_ms"] <= r["p75_ms"], name
    # passes come from the library's counter: one of each for SGD and the joint update, two
    # forward for alternating, a third backward when the levels' losses differ (w/o m)
    assert rows["dense_sgd"]["forward_per_step"] == 1 and rows["dense_sgd"]["backward_per_step"] == 1
    assert rows["bifp/paper/joint"]["forward_per_step"] == 1
    assert rows["bifp/paper/alternating"]["forward_per_step"] == 2
    assert rows["bifp/paper/alternating/w-o-m"]["backward_per_step"] == 3
    assert res["bifp_vs_masked_sgd"] == entry["bifp_vs_masked_sgd"] == rows["bifp/paper/alternating"]["vs_masked_sgd"]
    assert set(entry["bifp_vs_masked_sgd_by_variant"]) >= {f"{ig}/{u}" for ig in ("paper", "repo", "first_order")
                                                          for u in ("alternating", "joint")}
    assert entry["fair_floor_vs_masked_sgd"] == pytest.approx(2 * rows["masked_sgd_fair"]["vs_masked_sgd"], abs=2e-3)


def test_convergence_section_is_consistent(quick_run):
    _out, res, _md = quick_run
    conv = res["sections"]["convergence"]["datasets"]
    assert set(conv) == {"adult", "fashion"}
    for ds, e in conv.items():
        assert set(e["summary"]) == {"bifp", "pf_omp", "pf_imp", "pf_snip", "fp_omp", "fp_imp", "fp_snip"}
        for mname, run in e["runs"].items():
            its = [p["iterations"] for p in run["points"]]
            assert its == sorted(its), (ds, mname)
            s = e["summary"][mname]
            if s["reached"]:
                at = s["at"]
                assert at["gap"] <= e["tau"] and at["accuracy"] >= e["target_accuracy"] - 1e-9
                assert at["accuracy"] >= e["accuracy_floor"]
        # IMP pays for its retraining rounds before its last stage starts
        first_imp = e["runs"]["pf_imp"]["points"][0]["iterations"]
        assert first_imp == len(e["imp_levels"]) * e["imp_retrain_steps_per_round"]
        assert e["runs"]["pf_omp"]["points"][0]["iterations"] == 0


def test_only_merges_into_existing_results(quick_run, tmp_path):
    out, res, _md = quick_run
    target = tmp_path / "merged"
    target.mkdir()
    (target / "cost.json").write_text(json.dumps(res))
    assert _load_cost().main(["--quick", "--device", "cpu", "--only", "book", "--out", str(target)]) == 0
    merged = json.loads((target / "cost.json").read_text())
    assert merged["sections"]["step"] == res["sections"]["step"]
    assert merged["last_run"]["sections"] == ["book"]


def test_benchmark_calls_the_library_not_a_copy():
    """One Lottery schedule, one subsampler, one model rule, the registry's OMP / IMP / SNIP."""
    cost = _load_cost()
    for copy_name in ("global_topk", "snip_masks", "lottery_levels", "_subset", "model_name"):
        assert not hasattr(cost, copy_name), copy_name
    from fairprune_lite import experiments, pruners
    from fairprune_lite import masks as fp_masks

    tr, va, te, shape = cost.load_limited("adult", (300, 200, 100))
    splits = cost.load_dataset("adult", seed=0)
    for k, mine, limit in (("train", tr, 300), ("val", va, 200), ("test", te, 100)):
        ref = experiments.stratified_subsample(getattr(splits, k), limit, 0, k)
        assert torch.equal(mine.x, ref.x) and abs(len(mine) - limit) <= 4, k  # one rounding per (s, y) cell
    dense = cost.make_model("mlp", in_shape=shape, width=8, seed=0)
    for how in ("omp", "imp", "snip"):
        model, off, stage = cost._prune_stage(how, dense, va, 0.5, 2, torch.device("cpu"), cost._zero_offset())
        lib = pruners.prune(how, dense, type("S", (), {"train": va, "val": va, "test": va})(), sparsity=0.5,
                            seed=1, finetune_steps=0, batch_size=experiments.get_profile("cpu").batch_size,
                            lr=experiments.get_profile("cpu").finetune_lr, evaluate_on=(),
                            **({"round_steps": 2} if how == "imp" else {}))
        mine = fp_masks.model_masks(model).binary_masks()
        assert {k: v.tolist() for k, v in mine.items()} == {k: v.tolist() for k, v in lib.masks.items()}, how
        assert (stage["iterations"] > 0) == (how == "imp"), (how, stage)


def test_bad_arguments_are_refused(tmp_path):
    cost = _load_cost()
    with pytest.raises(ValueError, match="--threads"):
        cost.main(["--quick", "--device", "cpu", "--threads", "0", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="pruning step"):
        cost._prune_stage("fpgm", torch.nn.Linear(2, 1), None, 0.5, 1, torch.device("cpu"), cost._zero_offset())


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_every_benchmark_script_imports_and_has_help(script, monkeypatch, capsys):
    """Each script under benchmarks/ still imports against the library and parses its arguments:
    ``script --help`` prints its usage and exits 0 before doing any work. Run as ``__main__`` in
    this process (torch is imported once for all scripts, not once per script)."""
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put their folders in front
    env = dict(os.environ)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(ROOT / "benchmarks" / script), run_name="__main__")
    finally:
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert exit_.value.code in (0, None), out[-2000:]
    assert "usage:" in out, f"{script} --help printed no usage (does it parse its arguments?)"


def test_solver_measure_runs_one_variant(tmp_path, monkeypatch):
    """The measurement script runs a variant end to end through the runner's own pieces
    (data, dense cache, constraint with its options)."""
    monkeypatch.setenv("FAIRPRUNE_CACHE", str(tmp_path))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import solver_measure
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    row = solver_measure.run_one("adult", "bifp_margin", 0, sparsity=0.5, kwargs=None)
    assert row["constraint_options"] == {"margin": 1.645}
    assert row["val"]["feasibility"]["metric"] == "equalized_odds"
    assert 0 <= row["test"]["accuracy"] <= 1 and row["empty_layers"] == []


def test_solver_v3_table_pairs_each_run_with_its_own_certificate(tmp_path, monkeypatch):
    """Coverage counts a run as above its bound only against that run's certificate: a run
    without one (listed first here) must not shift the pairing of the others."""
    monkeypatch.setattr(sys, "path", [str(ROOT / "benchmarks"), *sys.path])
    spec = importlib.util.spec_from_file_location("bench_solver_v3", ROOT / "benchmarks" / "solver_v3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def row(seed, value, cert):
        split = {"accuracy": 0.8, "majority_baseline": 0.7, "feasibility": {"value": value}}
        return {"bench": "b", "variant": "v", "seed": seed, "sparsity": 0.9, "val": split, "test": split,
                "solver": {"certificate": cert}}

    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(json.dumps(r) + "\n" for r in (
        row(0, 0.5, None),  # uncertified, far above the other run's bound
        row(1, 0.05, {"bound": 0.1, "certified": True}),  # below its own bound
        row(2, 0.15, {"bound": 0.2, "certified": False}),  # below its own bound
    )))
    last = mod.table(runs).splitlines()[-1].strip("| ").split(" | ")
    assert last[-2:] == ["1/2", "0/2"]  # certified 1 of 2 certificates; no test value above its bound
