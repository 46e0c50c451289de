"""The command line end to end in the smoke profile: run, sweep (killed and resumed), figure,
verify, bad input. Subprocesses run ``python -m fairprune_lite`` exactly as a user would."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairprune_lite import experiments as ex
from fairprune_lite.__main__ import main

REPO = Path(__file__).resolve().parents[1]
HAVE_RAY = importlib.util.find_spec("ray") is not None  # the [cluster] extra


@pytest.fixture(scope="module")
def npz(toy_npz) -> Path:
    return toy_npz("cli_toy", seed=1, n=800, features=6)


def env(tmp: Path | None = None) -> dict:
    e = dict(os.environ)
    e["FAIRPRUNE_PROFILE"] = "smoke"
    e["FAIRPRUNE_QUIET"] = "1"
    e.pop("FAIRPRUNE_CACHE", None)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "fairprune_lite", *args], cwd=cwd, env=env(), capture_output=True,
                       text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def recomputable(res: dict) -> dict:
    return {k: res[k] for k in ("sparsity", "val", "test", "dense", "layers")} | {
        "cost": {k: v for k, v in res["cost"].items() if k != "wall_time_s"}}


def test_run_twice_gives_identical_numbers(tmp_path, npz):
    args = ["run", "--dataset", str(npz), "--method", "omp", "--sparsity", "0.6", "--seed", "3", "--tau", "0.05"]
    a = cli(*args, "--out", "a", cwd=tmp_path)
    cli(*args, "--out", "b", cwd=tmp_path)
    fa = sorted((tmp_path / "a").glob("*.json"))
    fb = sorted((tmp_path / "b").glob("*.json"))
    assert len(fa) == 1 and [p.name for p in fa] == [p.name for p in fb]
    ra, rb = ex.load_result(fa[0]), ex.load_result(fb[0])
    assert ra["profile"] == "smoke" and ra["seed"] == 3 and ra["method"] == "omp" and ra["tau"] == 0.05
    assert recomputable(ra) == recomputable(rb)
    assert str(fa[0].relative_to(tmp_path)) in a.stdout and "test accuracy" in a.stdout


def test_run_summary_prints_feasibility_beside_accuracy_and_the_majority_baseline(tmp_path, npz):
    p = cli("run", "--dataset", str(npz), "--method", "bifp", "--sparsity", "0.5", "--tau", "0.05",
            "--out", "o", cwd=tmp_path)
    res = ex.load_result(next((tmp_path / "o").glob("*.json")))
    for split in ("val", "test"):
        f = res[split]["feasibility"]
        verdict = "met" if f["met"] else "NOT met"
        assert f"{split}: accuracy_gap {f['value']:.4f} +- {f['se']:.4f} (SE) vs tau 0.05: {verdict}" in p.stdout
        assert f"majority baseline {res[split]['majority_baseline']:.4f}" in p.stdout
    assert "max violation" in p.stdout and "multipliers" in p.stdout
    assert "options:" not in p.stdout  # no constraint option was set


def test_run_constraint_options_reach_the_constraint_and_the_summary(tmp_path, npz, monkeypatch, capsys):
    monkeypatch.setenv("FAIRPRUNE_PROFILE", "smoke")
    monkeypatch.setenv("FAIRPRUNE_QUIET", "1")
    assert main(["run", "--dataset", str(npz), "--method", "pf", "--sparsity", "0.5", "--tau", "0.05",
                 "--out", str(tmp_path / "o"), "--constraint-option", "margin=1.645",
                 "--constraint-option", "dual=nupi", "--constraint-option", "kp=2",
                 "--constraint-option", "max_multiplier=null"]) == 0
    out = capsys.readouterr().out
    [path] = (tmp_path / "o").glob("*.json")
    res = ex.load_result(path)
    assert res["spec"]["constraint_options"] == {"dual": "nupi", "kp": 2, "margin": 1.645, "max_multiplier": None}
    for conf in (res["constraint_config"], res["method_config"]["constraint"]):
        assert (conf["margin"], conf["dual"], conf["kp"], conf["max_multiplier"]) == (1.645, "nupi", 2.0, None)
    assert ("constraint accuracy_gap <= tau 0.05, options: dual='nupi', kp=2.0, margin=1.645, "
            "max_multiplier=None") in out
    # the options are part of the run id: the same run without them is another file
    assert main(["run", "--dataset", str(npz), "--method", "pf", "--sparsity", "0.5", "--tau", "0.05",
                 "--out", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o").glob("*.json"))) == 2


@pytest.mark.parametrize("args, match", [
    (["--tau", "1.5"], r"tau must be in \[0.0, 1.0\], got 1.5"),
    (["--tau", "-0.1"], r"tau must be in \[0.0, 1.0\]"),
    (["--constraint-option", "margn=1.645"], r"unknown constraint option 'margn' \(did you mean 'margin'\?\)"),
    (["--constraint-option", "tau=0.1"], r"constraint option 'tau' is not set here: use .*--tau"),
    (["--constraint-option", "dual=foo"], r"dual must be one of \('gda', 'nupi'\), got 'foo'"),
    (["--constraint-option", "margin=-1"], "margin must be >= 0"),
    (["--constraint-option", "window=two"], "window must be a positive integer, got 'two'"),
    (["--constraint-option", "margin"], "--constraint-option must look like KEY=VALUE"),
    (["--method", "postproc"], r"method 'postproc' cannot honour constraint 'accuracy_gap'"),
    (["--method", "bifp", "--option", "stpes=3"], r"no option 'stpes' \(did you mean 'steps'\?\)"),
])
def test_bad_constraint_input_exits_2_before_data_or_pretraining(tmp_path, monkeypatch, capsys, npz, args, match):
    from fairprune_lite import data as _data
    from fairprune_lite import train as _train

    def never(*a, **k):
        raise AssertionError("data loaded or a model trained before the input was checked")

    monkeypatch.setattr(_data, "load_dataset", never)
    monkeypatch.setattr(_train, "fit", never)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAIRPRUNE_PROFILE", "smoke")
    monkeypatch.setenv("FAIRPRUNE_QUIET", "1")
    base = ["run", "--dataset", str(npz), "--method", "pf", "--sparsity", "0.5"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    import re

    assert re.search(match, err), err
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.json"))


def test_run_json_output_and_flags(tmp_path, npz):
    p = cli("run", "--dataset", str(npz), "--method", "random", "--sparsity", "0.3", "--out", "o",
            "--constraint", "demographic_parity", "--structured", "--json", "--set", "pretrain_epochs=1",
            "--label", "rand-str", cwd=tmp_path)
    res = json.loads(p.stdout)
    assert res["constraint"] == "demographic_parity" and res["label"] == "rand-str"
    assert res["spec"]["structured"] is True and res["profile_settings"]["pretrain_epochs"] == 1
    assert res["run_id"].startswith("rand-str_cli_toy_s0.3000_seed0_")


def test_sweep_killed_mid_run_resumes_where_it_stopped(tmp_path, npz):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"""
name: toy
figure: sparsity
datasets: ["{npz}"]
methods: [random, omp]
sparsities: [0.3, 0.6, 0.9]
seeds: [0, 1]
taus: [0.05]
""")
    folder = tmp_path / "runs" / "toy"
    proc = subprocess.Popen([sys.executable, "-m", "fairprune_lite", "sweep", str(cfg), "--out", "runs"],
                            cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if folder.is_dir() and any(p.name != "sweep.json" for p in folder.glob("*.json")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.read_bytes() for p in folder.glob("*.json") if p.name != "sweep.json"}
    assert 1 <= len(done) < 12, "the sweep should have been killed after its first result"
    for name in done:
        ex.load_result(folder / name)  # whatever was written is complete and valid

    p = cli("sweep", str(cfg), "--out", "runs", cwd=tmp_path)
    assert f"12 runs, {len(done)} were done, {12 - len(done)} ran now" in p.stdout
    results, bad = ex.load_results(folder)
    assert not bad and len(results) == 12
    for name, blob in done.items():
        assert (folder / name).read_bytes() == blob  # finished runs were not recomputed
    # the run interrupted by the kill gives the numbers of an uninterrupted run
    fresh = {r["run_id"]: r for r in results}
    spec = ex.RunSpec.from_dict(next(r for r in results if r["run_id"] + ".json" not in done)["spec"])
    redo = ex.run(spec, cache_dir=tmp_path / "other_cache")
    assert recomputable(redo) == recomputable(fresh[spec.run_id()])

    # figure from the config: PNG and SVG next to the results, with the provenance line
    p = cli("figure", str(cfg), "--out", "figs", cwd=tmp_path)
    png, svg = tmp_path / "figs" / "toy.png", tmp_path / "figs" / "toy.svg"
    assert png.stat().st_size > 1000 and "profile smoke" in svg.read_text()

    # verify: recompute two, then tamper with one file
    p = cli("verify", "runs/toy", "-n", "2", cwd=tmp_path)
    assert "all recomputed results match" in p.stdout
    victim = sorted(folder.glob("*.json"))[0]
    d = json.loads(victim.read_text())
    d["val"]["accuracy_gap"] = min(1.0, d["val"]["accuracy_gap"] + 0.01)
    victim.write_text(json.dumps(d))
    p = cli("verify", "runs/toy", "-n", "12", cwd=tmp_path, check=False)
    assert p.returncode == 1 and "MISMATCH" in p.stdout and "val.accuracy_gap" in p.stdout
    victim.write_text("{")
    p = cli("verify", "runs/toy", "-n", "1", cwd=tmp_path, check=False)
    assert p.returncode == 1 and "BAD FILE" in p.stdout


def test_list_commands(capsys):
    from fairprune_lite import pruners

    assert main(["list-methods"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    described = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert list(described) == list(pruners.METHODS)
    for name, info in pruners.METHODS.items():  # each method's own one-line description
        assert described[name] == info.description.strip(), name
    assert len(set(described.values())) == len(described), "two methods print the same description"
    assert not any(pruners.MethodInfo.__doc__.split(":")[0] in d for d in described.values())
    assert main(["list-profiles"]) == 0
    out = capsys.readouterr().out
    assert "smoke:" in out and "cpu:" in out and "gpu:" in out


@pytest.mark.parametrize("args, match", [
    (["run", "--method", "nope", "--sparsity", "0.5"], "unknown method 'nope'"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--dataset", "adulto"], "unknown dataset 'adulto'"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--dataset", "missing.npz"], "missing.npz not found"),
    (["run", "--method", "omp", "--sparsity", "1.2"], "sparsity must be in"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--tau", "-1"], "tau must be in"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--constraint", "parity"], "constraint must be one of"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--model", "vgg"], "unknown model 'vgg'"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--set", "pretrain_epoch=1"], "pretrain_epoch"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--option", "fair_mask"], "KEY=VALUE"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--out", "blocker/sub"], "not writable"),
    (["run", "--method", "omp", "--sparsity", "0.5", "--dataset", "adult", "--sensitive", "age"], "sensitive must be one of"),
    (["sweep", "typo.yaml"], r"unknown key 'sparsity' \(did you mean 'sparsities'\?\)"),
    (["sweep", "nothere.yaml"], "nothere.yaml not found"),
    (["figure", "results_dir_missing"], "neither a config file"),
    (["verify", "empty"], "no result files"),
    (["sweep", "good.yaml", "--jobs", "0"], "--jobs must be a positive integer"),
    (["sweep", "good.yaml", "--jobs", "-2"], "--jobs must be a positive integer"),
    (["sweep", "good.yaml", "--executor", "dask"], "unknown executor 'dask'"),
    (["sweep", "good.yaml", "--executor", "ray", "--address", "127.0.0.1:9"],
     "unreachable" if HAVE_RAY else r"needs Ray: pip install 'fairprune-lite\[cluster\]'"),
    (["compare", "empty", "--a", "omp", "--b", "bifp"], "no result files|no results of"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAIRPRUNE_PROFILE", "smoke")
    monkeypatch.setenv("FAIRPRUNE_QUIET", "1")
    (tmp_path / "blocker").write_text("a file, not a folder")
    (tmp_path / "typo.yaml").write_text("methods: [omp]\nsparsity: [0.5]\n")
    (tmp_path / "good.yaml").write_text("methods: [omp]\nsparsities: [0.5]\n")
    (tmp_path / "empty").mkdir()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    import re

    assert re.search(match, err), err
    # nothing was computed: no result and no dense checkpoint anywhere
    assert not list(tmp_path.rglob("*.pt")) and not [p for p in tmp_path.rglob("*.json")]


def test_bad_input_process_exit_status(tmp_path):
    p = cli("run", "--method", "nope", "--sparsity", "0.5", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "unknown method 'nope'" in p.stderr and "Traceback" not in p.stderr
    p = cli(cwd=tmp_path, check=False)
    assert p.returncode == 2


def test_no_progress_bars_when_output_is_not_a_terminal(tmp_path, npz):
    e = env()
    e.pop("FAIRPRUNE_QUIET")
    p = subprocess.run([sys.executable, "-m", "fairprune_lite", "run", "--dataset", str(npz), "--method", "omp",
                        "--sparsity", "0.5", "--out", str(tmp_path)], cwd=tmp_path, env=e, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "%|" not in p.stderr and "it/s" not in p.stderr, p.stderr  # piped: no tqdm bars
    assert "data:" in p.stderr  # but the log lines are there


def test_data_fetch_is_a_command(capsys, tmp_path):
    """`fairprune data fetch` is wired into the command line: bad input exits 2 naming it."""
    assert main(["data", "fetch", "nope", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["data", "fetch", "lfw", "--list-sources"]) == 0
    assert "lfw.tgz" in capsys.readouterr().out
