"""Sweeps: a failing run is recorded and the others go on; --jobs N and Ray give the serial
sweep's numbers; bad executor arguments fail before anything is written; the clean-tree rule."""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

from fairprune_lite import experiments as ex
from fairprune_lite import pruners
from fairprune_lite.pruners import MethodOutput

prov = importlib.import_module("fairprune_lite.experiments.provenance")  # the module, not the function


@pytest.fixture(scope="module")
def npz(toy_npz) -> Path:
    return toy_npz("sweep_toy", seed=3, n=700, features=5)


def config(npz: Path, **kw) -> dict:
    return {"name": "toy", "profile": "smoke", "datasets": [str(npz)], "methods": ["omp", "random"],
            "sparsities": [0.5], "seeds": [0, 1]} | kw


def numbers(res: dict) -> dict:
    return {k: res[k] for k in ("sparsity", "val", "test", "dense", "layers", "n")} | {
        "cost": {k: v for k, v in res["cost"].items() if k != "wall_time_s"}}


def stored(folder: Path) -> dict:
    results, bad = ex.load_results(folder)
    assert not bad, bad
    return {r["run_id"]: numbers(r) for r in results}


@pytest.fixture()
def flaky_method():
    """A registered method that raises for seed 1 (a deliberately failing run)."""
    state = {"fail": True}

    @pruners.register("flaky_for_test", description="omp that fails for seed 1 (tests only)")
    def _flaky(ctx):
        if ctx.seed == 1 and state["fail"]:
            raise RuntimeError("deliberate failure of seed 1")
        model = ctx.apply({n: w.detach().abs() for n, w in ctx.weights().items()})
        return MethodOutput(model, ctx.finetune(model))

    yield state
    del pruners.METHODS["flaky_for_test"]


def test_a_failing_run_is_recorded_and_the_others_go_on(npz, tmp_path, flaky_method):
    cfg = config(npz, methods=["flaky_for_test", "omp"])
    summary = ex.sweep(cfg, out=tmp_path, quiet=True)
    folder = tmp_path / "toy"
    assert summary["total"] == 4 and len(summary["ran"]) == 3
    [(rid, err)] = summary["failed"]
    assert "seed1" in rid and "deliberate failure of seed 1" in err
    record = json.loads((folder / f"{rid}.failed.json").read_text())
    assert record["run_id"] == rid and "Traceback" in record["traceback"] and record["spec"]["seed"] == 1
    assert ex.failed_runs(folder) == {rid: err}
    assert len(ex.load_results(folder)[0]) == 3  # the failure record is not a result
    # a re-run retries only the failed run; once it succeeds its record is gone
    flaky_method["fail"] = False
    again = ex.sweep(cfg, out=tmp_path, quiet=True)
    assert again["ran"] == [rid] and again["done_before"] == 3 and not again["failed"]
    assert not (folder / f"{rid}.failed.json").exists()


def test_cli_exits_1_naming_the_failed_runs(npz, tmp_path, flaky_method, capsys, monkeypatch):
    from fairprune_lite.__main__ import main

    monkeypatch.setenv("FAIRPRUNE_QUIET", "1")
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config(npz, methods=["flaky_for_test"])))
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "FAILED flaky_for_test_sweep_toy_s0.5000_seed1_" in err and "deliberate failure" in err


def test_jobs_2_gives_the_serial_numbers(npz, tmp_path):
    serial = ex.sweep(config(npz), out=tmp_path / "serial", quiet=True)
    parallel = ex.sweep(config(npz), out=tmp_path / "parallel", quiet=True, jobs=2)
    assert not serial["failed"] and not parallel["failed"]
    assert sorted(parallel["ran"]) == sorted(serial["ran"])
    assert stored(tmp_path / "parallel" / "toy") == stored(tmp_path / "serial" / "toy")


def test_ray_executor_on_a_local_instance(npz, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is the optional 'cluster' extra")
    serial = ex.sweep(config(npz), out=tmp_path / "serial", quiet=True)
    try:
        summary = ex.sweep(config(npz), out=tmp_path / "ray", quiet=True, executor="ray", jobs=2)
    finally:
        ray.shutdown()
    assert not summary["failed"] and sorted(summary["ran"]) == sorted(serial["ran"])
    assert stored(tmp_path / "ray" / "toy") == stored(tmp_path / "serial" / "toy")


@pytest.mark.parametrize("kw, match", [
    ({"jobs": 0}, "--jobs must be a positive integer"),
    ({"jobs": -1}, "--jobs must be a positive integer"),
    ({"jobs": 1.5}, "--jobs must be a positive integer"),
    ({"executor": "dask"}, "unknown executor 'dask'"),
    ({"executor": "ray", "address": "127.0.0.1:9"}, "unreachable"),
    ({"executor": "ray", "address": "nonsense"}, "HOST:PORT"),
    ({"address": "127.0.0.1:9"}, "--address is for --executor ray"),
])
def test_bad_executor_arguments_write_nothing(npz, tmp_path, kw, match):
    if kw.get("executor") == "ray":
        pytest.importorskip("ray", reason="Ray is the optional 'cluster' extra")
    with pytest.raises(ValueError, match=match):
        ex.sweep(config(npz), out=tmp_path, quiet=True, **kw)
    assert not list(tmp_path.rglob("*"))


def test_book_results_refused_from_a_dirty_tree(npz, tmp_path, monkeypatch):
    book = tmp_path / "book" / "results"
    monkeypatch.setattr(prov, "BOOK_RESULTS", book)
    monkeypatch.setattr(prov, "git_state", lambda: ("abc", True))
    with pytest.raises(ValueError, match="uncommitted changes.*--allow-dirty"):
        ex.sweep(config(npz), out=book, quiet=True)
    assert not book.exists()
    summary = ex.sweep(config(npz, seeds=[0], methods=["omp"]), out=book, quiet=True, allow_dirty=True)
    assert summary["dirty"] and len(summary["ran"]) == 1
    res = ex.load_results(book)[0]  # the result and the caption say so
    assert res[0]["provenance"]["git_dirty"] is True
    assert "1 of 1 runs WRITTEN FROM A DIRTY TREE" in ex.caption(res)
    assert ex.check_clean(tmp_path / "elsewhere", allow_dirty=False) is True  # only the book's results
    monkeypatch.setattr(prov, "git_state", lambda: ("abc", False))
    assert ex.check_clean(book, allow_dirty=False) is False


def _dies_on_one(x: int) -> int:
    if x == 1:
        os._exit(3)  # a worker killed mid-run (out of memory, SIGKILL)
    return x


def test_a_lost_local_worker_is_reported_not_raised():
    sweep_mod = importlib.import_module("fairprune_lite.experiments.sweep")
    out = list(sweep_mod._processes(2)(_dies_on_one, [(0,), (1,)]))
    assert len(out) == 2 and any(isinstance(o, str) and o.startswith("worker lost") for o in out)
