"""Tests of fairprune_lite.experiments: profiles, configs, run / sweep / verify / figure (smoke profile)."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fairprune_lite import experiments as ex


@pytest.fixture(scope="module")
def npz(toy_npz) -> Path:
    """A small synthetic bring-your-own dataset: 8 features, y depends on x and on s."""
    return toy_npz("toy", seed=0, n=900, features=8, s_rate=0.35, x0_shift=0.8,
                   logit=lambda x, s: 1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * (1 - s))


def spec_for(npz: Path, **kw) -> ex.RunSpec:
    base = dict(method="omp", dataset=str(npz), sparsity=0.5, seed=0, profile="smoke", tau=0.05)
    return ex.RunSpec(**(base | kw))


def numbers(res: dict) -> dict:
    """Everything recomputable (no wall times, dates, provenance)."""
    return {k: res[k] for k in ("sparsity", "val", "test", "dense", "layers", "n")} | {
        "cost": {k: v for k, v in res["cost"].items() if k != "wall_time_s"}}


# ------------------------------------------------------------------------------------------ profiles
def test_profile_switch_env_and_name(monkeypatch):
    monkeypatch.delenv("FAIRPRUNE_PROFILE", raising=False)
    assert ex.get_profile().name == "cpu"
    monkeypatch.setenv("FAIRPRUNE_PROFILE", "smoke")
    assert ex.get_profile().name == "smoke"
    assert ex.get_profile("gpu").name == "gpu"
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        ex.get_profile("nope")
    with pytest.raises(ValueError, match="unknown profile setting 'pretrain_epoch'"):
        ex.PROFILES["cpu"].replace(pretrain_epoch=3)
    p = ex.PROFILES["cpu"].replace(pretrain_epochs=1, limits={"train": 10})
    assert p.pretrain_epochs == 1 and p.limits["train"] == 10 and p.limits["val"] == ex.PROFILES["cpu"].limits["val"]
    assert ex.PROFILES["cpu"].pretrain_epochs != 1  # the registry is not modified


def test_lottery_levels():
    assert ex.lottery_levels(4) == [0.2, 0.36, 0.488, 0.5904]
    with pytest.raises(ValueError):
        ex.lottery_levels(0)


# ------------------------------------------------------------------------------------------ configs
def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_yaml_and_toml_expand_the_same(tmp_path, npz):
    y = write(tmp_path / "a.yaml", f"""
datasets: ["{npz}"]
methods: [random, {{method: omp, label: OMP, taus: [0.1]}}]
sparsities: [0.3, 0.6]
seeds: 2
taus: [0.01, 0.02]
budgets: [1, 2]
""")
    t = write(tmp_path / "a.toml", f"""
datasets = ["{npz}"]
methods = ["random", {{method = "omp", label = "OMP", taus = [0.1]}}]
sparsities = [0.3, 0.6]
seeds = 2
taus = [0.01, 0.02]
budgets = [1, 2]
""")
    sy = ex.expand_config(ex.load_config(y), profile="smoke")
    st = ex.expand_config(ex.load_config(t), profile="smoke")
    # random: 2 sparsities x 2 taus x 2 budgets x 2 seeds; OMP: its own single tau
    assert len(sy) == 16 + 8
    assert [s.run_id() for s in sy] == [s.run_id() for s in st]
    assert {s.tau for s in sy if s.label == "OMP"} == {0.1}
    assert len({s.run_id() for s in sy}) == len(sy)


@pytest.mark.parametrize("text, match", [
    ("methods: [omp]\nsparsities: [0.5]\nseed: [0]\n", r"unknown key 'seed' \(did you mean 'seeds'\?\)"),
    ("methods: [ompp]\nsparsities: [0.5]\n", "unknown method 'ompp'"),
    ("methods: [omp]\nsparsities: [1.5]\n", "sparsities entry"),
    ("methods: [omp]\nsparsities: 'lotery:3'\n", "lottery:K"),
    ("methods: [omp]\n", "'sparsities' is required"),
    ("methods: [omp, omp]\nsparsities: [0.5]\n", "labels must be unique"),
    ("methods: [omp]\nsparsities: [0.5]\nsettings: {pretrain_epoch: 2}\n", "pretrain_epoch"),
    ("methods: [omp]\nsparsities: [0.5]\nfigure: bars\n", "figure must be one of"),
    ("methods: [omp]\nsparsities: [0.5]\nconstraint: parity\n", "constraint must be one of"),
    ("methods: [omp]\nsparsities: [0.5]\ndatasets: [{dataset: adult, tagret: x}]\n", "unknown key 'tagret'"),
    ("methods: [{method: bifp, fair_mask: false}, {method: bifp, label: b}]\nsparsities: [0.5]\nfigure: interpolation\n",
     "needs 'pairs'"),
    ("methods: [omp]\nsparsities: [0.5]\n: [\n", "cannot parse"),
    ("methods: [{method: bifp, stpes: 3}]\nsparsities: [0.5]\n", r"stpes.*\(did you mean 'steps'\?\)"),
    ("methods: [omp]\nsparsities: [0.5]\nsettings: {pretrain_min_step: 2}\n", "did you mean 'pretrain_min_steps'"),
    ("methods: [omp]\nsparsities: [0.5]\nspread: sd\n", "spread must be one of ci, std, minmax"),
    ("methods: [pf]\nsparsities: [0.5]\nconstraint_options: {margn: 1}\n",
     r"unknown constraint option 'margn' \(did you mean 'margin'\?\)"),
    ("methods: [{method: pf, constraint_options: {dul: nupi}}]\nsparsities: [0.5]\n",
     r"methods\[0\]: unknown constraint option 'dul' \(did you mean 'dual'\?\)"),
    ("methods: [pf]\nsparsities: [0.5]\nconstraint_options: {dual: foo}\n", r"pf.*dual must be one of"),
    ("methods: [omp, {method: pf, constraint_options: {margin: -1}}]\nsparsities: [0.5]\n",
     r"methods\[1\] \(pf\).*margin must be >= 0"),
    ("methods: [pf]\nsparsities: [0.5]\nconstraint_options: {window: 0}\n", "window must be a positive integer"),
    ("methods: [pf]\nsparsities: [0.5]\nconstraint_options: {dual_lr: 0.1}\n",
     r"'dual_lr' is not set here: use the profile knob dual_lr"),
    ("methods: [pf]\nsparsities: [0.5]\nconstraint_options: [margin]\n", "constraint_options must be a mapping"),
    ("methods: [pf]\nsparsities: [0.5]\nsurrogate: sigmod\n", "surrogate must be one of"),
    ("methods: [postproc]\nsparsities: [0.5]\n", r"postproc.*cannot honour constraint 'accuracy_gap'"),
])
def test_config_errors_name_the_problem(tmp_path, text, match):
    with pytest.raises(ex.ConfigError, match=match):
        ex.load_config(write(tmp_path / "c.yaml", text))


def test_constraint_options_of_a_sweep_reach_every_spec(tmp_path):
    """Top-level options go to every method, a method's own override them name by name; a sweep
    without options expands to the specs (and run ids) it had before options existed."""
    cfg = ex.load_config(write(tmp_path / "c.yaml", """
methods: [omp, {method: pf, label: PF-nupi, constraint_options: {dual: nupi, margin: 0}}]
sparsities: [0.5]
constraint_options: {margin: 1.645, window: 4}
"""))
    by_label = {s.run_label: s for s in ex.expand_config(cfg, profile="smoke")}
    assert by_label["omp"].constraint_options == {"margin": 1.645, "window": 4}
    assert by_label["PF-nupi"].constraint_options == {"margin": 0, "window": 4, "dual": "nupi"}
    assert by_label["PF-nupi"].to_dict()["constraint_options"] == {"dual": "nupi", "margin": 0, "window": 4}
    plain = ex.expand_config({"methods": ["omp"], "sparsities": [0.5]}, profile="smoke")[0]
    assert "constraint_options" not in plain.to_dict()
    assert plain.run_id() != by_label["omp"].run_id()


def test_run_ids_without_constraint_options_are_unchanged():
    """The hash behind a run id is that of the spec without the (empty) constraint options: a
    known id, and every stored result of Fig. 5 still matches its spec."""
    spec = {"method": "bifp", "dataset": "fashion", "sparsity": 0.9, "seed": 0, "target": "tops", "sensitive": None,
            "model": None, "profile": "cpu", "constraint": "accuracy_gap", "tau": 0.01, "surrogate": None,
            "structured": None, "label": "BiFP", "method_kwargs": {}, "budget": 1.0, "settings": {},
            "save_weights": False}
    assert ex.RunSpec(**spec).run_id() == "BiFP_fashion_s0.9000_seed0_ac9a804195"
    assert ex.RunSpec(**spec, constraint_options={}).run_id() == "BiFP_fashion_s0.9000_seed0_ac9a804195"
    with_opts = ex.RunSpec(**spec, constraint_options={"margin": 1.645, "dual": "nupi"})
    assert with_opts.run_id() != "BiFP_fashion_s0.9000_seed0_ac9a804195"
    assert with_opts.run_id() == ex.RunSpec(**spec, constraint_options={"dual": "nupi", "margin": 1.645}).run_id()
    assert ex.RunSpec.from_dict(with_opts.to_dict()) == with_opts
    stored = sorted((Path(__file__).resolve().parents[1] / "book" / "results" / "fig5").glob("*.json"))
    stored = [json.loads(p.read_text()) for p in stored]
    stored = [r for r in stored if isinstance(r, dict) and "run_id" in r and "spec" in r]
    assert stored
    for r in stored:
        assert ex.RunSpec(**r["spec"]).run_id() == r["run_id"], r["run_id"]


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        ex.load_config(tmp_path / "missing.yaml")
    with pytest.raises(ex.ConfigError, match="must end in"):
        ex.load_config(write(tmp_path / "c.json", "{}"))


def test_every_shipped_config_is_valid():
    folder = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".toml"))
    kinds = set()
    for p in files:
        cfg = ex.load_config(p)
        kinds.add(cfg.get("figure", "sparsity"))
        assert ex.expand_config(cfg), p
    assert kinds == set(ex.FIGURE_KINDS)


# ------------------------------------------------------------------------------------------ run
@pytest.fixture(scope="module")
def first_run(tmp_path_factory, npz):
    out = tmp_path_factory.mktemp("run")
    res = ex.run(spec_for(npz), out=out, cache_dir=out / "cache")
    return out, res


def test_run_result_schema(first_run, npz):
    out, res = first_run
    path = out / f"{res['run_id']}.json"
    stored = ex.load_result(path)
    assert stored["run_id"] == res["run_id"]
    for key in ("method", "dataset", "target", "sensitive", "model", "sparsity_target", "sparsity", "seed",
                "profile", "constraint", "tau", "cost", "provenance"):
        assert key in stored, key
    assert stored["method"] == "omp" and stored["profile"] == "smoke" and stored["model"] == "mlp"
    assert stored["sparsity_target"] == 0.5 and abs(stored["sparsity"] - 0.5) < 1e-3
    for split in ("val", "test"):
        m = stored[split]
        for key in ("accuracy", "accuracy_gap", "accuracy_by_group", "demographic_parity_difference",
                    "equalized_odds_difference", "majority_baseline", "degradation", "degradation_gap"):
            assert key in m, (split, key)
        acc = m["accuracy_by_group"]
        assert abs(abs(acc["1"] - acc["0"]) - m["accuracy_gap"]) < 1e-12
        assert abs(m["degradation"] - (stored["dense"][split]["accuracy"] - m["accuracy"])) < 1e-12
    for key in ("iterations", "forward_passes", "backward_passes", "wall_time_s"):
        assert stored["cost"][key] >= 0
    assert stored["cost"]["iterations"] > 0
    prov = stored["provenance"]
    for key in ("version", "git_commit", "git_dirty", "torch", "device_name", "machine", "date"):
        assert key in prov
    assert os.uname().nodename not in json.dumps(prov)
    assert stored["profile_settings"]["name"] == "smoke"
    # the data: the model defaults to an MLP for feature vectors, the caps apply
    assert stored["n"]["train"] <= ex.PROFILES["smoke"].limits["train"]


def test_run_is_deterministic_with_and_without_cache(first_run, npz, tmp_path):
    out, res = first_run
    again = ex.run(spec_for(npz), out=None, cache_dir=tmp_path / "fresh")  # pretrains again
    assert numbers(again) == numbers(res)
    cached = ex.run(spec_for(npz), out=None, cache_dir=out / "cache")  # reuses the dense checkpoint
    assert cached["pretrain_cost"]["cached"] is True
    assert numbers(cached) == numbers(res)
    other = ex.run(spec_for(npz, seed=1), out=None, cache_dir=out / "cache")
    assert numbers(other) != numbers(res)


def test_dense_checkpoint_is_weights_only_and_resumes_bit_exactly(npz, tmp_path, monkeypatch):
    from fairprune_lite import train

    spec = spec_for(npz)
    profile = ex.check_spec(spec)
    splits = ex.load_splits(spec, profile)
    full, _ = ex.pretrain(spec, profile, splits, cache_dir=tmp_path / "a")
    files = list((tmp_path / "a" / "dense").glob("*.pt"))
    assert len(files) == 1
    ck = torch.load(files[0], weights_only=True)
    assert ck["epoch"] == profile.pretrain_epochs_for(len(splits.train)) >= 3

    calls = {"n": 0}
    real_fit = train.fit

    def dying_fit(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_fit(*a, **k)

    monkeypatch.setattr(train, "fit", dying_fit)
    with pytest.raises(KeyboardInterrupt):
        ex.pretrain(spec, profile, splits, cache_dir=tmp_path / "b")
    monkeypatch.setattr(train, "fit", real_fit)
    ck = torch.load(next((tmp_path / "b" / "dense").glob("*.pt")), weights_only=True)
    assert ck["epoch"] == 2
    resumed, cost = ex.pretrain(spec, profile, splits, cache_dir=tmp_path / "b")
    assert cost["cached"] is True
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k

    # a corrupt checkpoint is reported and retrained, not trusted
    path = next((tmp_path / "b" / "dense").glob("*.pt"))
    path.write_bytes(b"not a checkpoint")
    again, cost = ex.pretrain(spec, profile, splits, cache_dir=tmp_path / "b")
    assert cost["cached"] is False
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_run_bad_input_before_computation(npz, tmp_path):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        ex.run(spec_for(npz, method="nope"), out=tmp_path / "o")
    with pytest.raises(ValueError, match="sparsity"):
        ex.run(spec_for(npz, sparsity=1.0), out=tmp_path / "o")
    with pytest.raises(ValueError, match="unknown dataset 'adulto'"):
        ex.run(spec_for(npz, dataset="adulto"), out=tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        ex.run(spec_for(npz, dataset=str(tmp_path / "missing.npz")), out=tmp_path / "o")
    with pytest.raises(ValueError, match="constraint"):
        ex.run(spec_for(npz, constraint="parity"), out=tmp_path / "o")
    with pytest.raises(ValueError, match="unknown model"):
        ex.run(spec_for(npz, model="vgg"), out=tmp_path / "o")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        ex.run(spec_for(npz), out=blocker / "sub")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.json"))


@pytest.mark.parametrize("kw, match", [
    (dict(tau=1.5), r"tau must be in \[0.0, 1.0\], got 1.5"),
    (dict(tau=-0.01), r"tau must be in \[0.0, 1.0\]"),
    (dict(tau=float("nan")), "tau must be a number"),
    (dict(method="pf", constraint_options={"margn": 1.0}),
     r"unknown constraint option 'margn' \(did you mean 'margin'\?\)"),
    (dict(method="pf", constraint_options={"surrogate": "hinge"}), r"'surrogate' is not set here"),
    (dict(method="pf", constraint_options={"dual": "foo"}),
     r"constraint options \{'dual': 'foo'\}: dual must be one of"),
    (dict(method="pf", constraint_options={"margin": -1.0}), "margin must be >= 0"),
    (dict(method="pf", constraint_options={"ema_nu": 1.0}), r"ema_nu must be in \[0, 1\)"),
    (dict(method="pf", constraint_options={"mode": "hard"}), "mode must be one of"),
    (dict(method="pf", constraint_options={"init_multiplier": [1.0]}), "init_multiplier must have 2 entries"),
    (dict(method="pf", surrogate="sigmod"), "surrogate must be one of"),
    (dict(method="postproc"), r"method 'postproc' cannot honour constraint 'accuracy_gap'"),
    (dict(method="bifp", method_kwargs={"gama": 1.0}), r"no option 'gama' \(did you mean 'gamma'\?\)"),
    (dict(method="bifp", method_kwargs={"gamma": -1.0}), "method 'bifp': gamma must be a positive number"),
])
def test_bad_constraint_input_fails_before_data_or_pretraining(npz, tmp_path, monkeypatch, kw, match):
    """Each is found by check_spec, before run() loads data or pretrains (both would raise here)."""
    from fairprune_lite import data as _data
    from fairprune_lite import train as _train

    def never(*a, **k):
        raise AssertionError("data loaded or a model trained before the spec was checked")

    monkeypatch.setattr(_data, "load_dataset", never)
    monkeypatch.setattr(_train, "fit", never)
    with pytest.raises(ValueError, match=match):
        ex.check_spec(spec_for(npz, **kw))
    with pytest.raises(ValueError, match=match):
        ex.run(spec_for(npz, **kw), out=tmp_path / "o", cache_dir=tmp_path / "cache")
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.pt"))
    # the same spec without the bad setting passes the check (the failure is the setting's)
    if kw.get("method") in ("pf", "bifp") and len(kw) > 1:
        ex.check_spec(spec_for(npz, method=kw["method"]))


def test_constraint_options_from_yaml_reach_the_constraint(npz, tmp_path):
    """A sweep's options are in each result's spec and in the configuration of the constraint
    the method trained with (``method_config.constraint``), and the runner's own copy."""
    cfg = write(tmp_path / "opts.yaml", f"""
profile: smoke
datasets: ["{npz}"]
methods: [{{method: pf, constraint_options: {{dual: nupi, kp: 2.0}}}}]
sparsities: [0.5]
taus: [0.05]
constraint_options: {{margin: 1.645, window: 4}}
""")
    summary = ex.sweep(cfg, out=tmp_path / "runs", quiet=True)
    assert summary["failed"] == [] and len(summary["ran"]) == 1
    [path] = (tmp_path / "runs" / "opts").glob("pf_*.json")
    res = ex.load_result(path)
    want = {"margin": 1.645, "window": 4, "dual": "nupi", "kp": 2.0}
    assert res["spec"]["constraint_options"] == dict(sorted(want.items()))
    for conf in (res["constraint_config"], res["method_config"]["constraint"]):
        assert {k: conf[k] for k in want} == want
        assert conf["tau"] == 0.05 and conf["dual_lr"] == ex.PROFILES["smoke"].dual_lr
    # and they change training: the same run without them moves its multipliers otherwise
    plain = ex.run(ex.RunSpec.from_dict({k: v for k, v in res["spec"].items() if k != "constraint_options"}),
                   cache_dir=tmp_path / "runs" / "cache")
    assert plain["pretrain_cost"]["cached"] is True and plain["dense"] == res["dense"]
    trajectory = [h["constraint"]["multipliers"] for h in res["history"]]
    assert trajectory != [h["constraint"]["multipliers"] for h in plain["history"]]


# ------------------------------------------------------------------------------------------ files
def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    ex.write_json(path, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ex.write_json(path, {"a": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_corrupt_and_tampered_files_are_reported(first_run, tmp_path):
    out, res = first_run
    src = out / f"{res['run_id']}.json"
    folder = tmp_path / "res"
    folder.mkdir()
    good = folder / src.name
    good.write_text(src.read_text())
    trunc = folder / ("x" + src.name)
    trunc.write_text(src.read_text()[:200])
    with pytest.raises(ex.ResultError, match="not valid JSON"):
        ex.load_result(trunc)
    d = json.loads(src.read_text())
    d["spec"]["seed"] = 5  # the spec no longer matches the run id
    wrong = folder / ("y" + src.name)
    wrong.write_text(json.dumps(d))
    with pytest.raises(ex.ResultError, match="run_id does not match"):
        ex.load_result(wrong)
    d = json.loads(src.read_text())
    del d["test"]["accuracy_gap"]
    with pytest.raises(ex.ResultError, match="test.accuracy_gap"):
        ex.validate_result(d)
    results, bad = ex.load_results(folder)
    assert [r["run_id"] for r in results] == [res["run_id"]]
    assert sorted(Path(p).name for p, _ in bad) == sorted([trunc.name, wrong.name])


# ------------------------------------------------------------------------------------------ sweep, verify, figures
@pytest.fixture(scope="module")
def swept(tmp_path_factory, npz):
    root = tmp_path_factory.mktemp("sweep")
    cfg = {
        "name": "toy", "profile": "smoke", "datasets": [str(npz)],
        "methods": ["random", {"method": "omp", "label": "OMP"}],
        "sparsities": [0.5, 0.8], "seeds": [0, 1], "taus": [0.05, 0.2], "budgets": [1, 2],
        "save_weights": True,
    }
    summary = ex.sweep(cfg, out=root, quiet=True)
    return root, cfg, summary


def test_sweep_runs_only_what_is_missing_and_recomputes_corrupt(swept):
    root, cfg, summary = swept
    n = 2 * 2 * 2 * 2 * 2
    assert summary["total"] == n and len(summary["ran"]) == n and summary["done_before"] == 0
    folder = root / "toy"
    again = ex.sweep(cfg, out=root, quiet=True)
    assert again["ran"] == [] and again["done_before"] == n
    victim = sorted(folder.glob("OMP_*.json"))[0]
    before = json.loads(victim.read_text())
    victim.write_text(victim.read_text()[:100])
    third = ex.sweep(cfg, out=root, quiet=True)
    assert third["ran"] == [victim.stem] and [Path(p).name for p, _ in third["corrupt"]] == [victim.name]
    assert (folder / (victim.name + ".corrupt")).exists()
    assert numbers(ex.load_result(victim)) == numbers(before)


def test_verify_passes_then_fails_on_tampering(swept, tmp_path):
    root, cfg, _ = swept
    folder = tmp_path / "copy"
    folder.mkdir()
    files = sorted((root / "toy").glob("random_*.json"))[:2]
    for p in files:
        (folder / p.name).write_text(p.read_text())
    rep = ex.verify(folder, n=2, seed=0, quiet=True)
    assert rep["ok"] and len(rep["checked"]) == 2 and not rep["mismatches"]
    d = json.loads(files[0].read_text())
    d["test"]["accuracy"] = d["test"]["accuracy"] + 1e-6
    (folder / files[0].name).write_text(json.dumps(d))
    rep = ex.verify(folder, n=2, seed=0, quiet=True)
    assert not rep["ok"]
    assert list(rep["mismatches"]) == [files[0].stem]
    assert any(m.startswith("test.accuracy:") for m in rep["mismatches"][files[0].stem])


def test_figures_of_every_kind(swept, tmp_path):
    import matplotlib.pyplot as plt

    root, cfg, _ = swept
    results, bad = ex.load_results(root / "toy")
    assert not bad and len(results) == 32
    for kind in ("sparsity", "tradeoff", "cost", "ablation"):
        fig = ex.figure(kind, results, out=tmp_path, name=f"f_{kind}")
        text = " ".join(t.get_text() for t in fig.texts)
        assert "profile smoke" in text and "commit" in text
        plt.close(fig)
        assert (tmp_path / f"f_{kind}.png").stat().st_size > 1000
        assert (tmp_path / f"f_{kind}.svg").read_text().lstrip().startswith("<?xml")
    fig = ex.figure("interpolation", results, out=tmp_path, config={"pairs": [["random", "OMP"]], "points": 5})
    plt.close(fig)
    assert (tmp_path / "interpolation.png").exists() and (tmp_path / "interpolation.svg").exists()
    with pytest.raises(ValueError, match="figure kind"):
        ex.figure("pie", results)


def test_interpolation_endpoints_are_the_two_solutions(swept):
    root, cfg, _ = swept
    results, _ = ex.load_results(root / "toy")

    def key(r):
        return (r["seed"], r["sparsity_target"], r["tau"], r["budget"])

    a = next(r for r in results if r["label"] == "random")
    b = next(r for r in results if r["label"] == "OMP" and key(r) == key(a))
    curve = ex.interpolation_curve(a, b, points=3)
    for split in ("val", "test"):
        assert abs(curve[split]["loss"][0] - a[split]["loss"]) < 1e-6
        assert abs(curve[split]["loss"][-1] - b[split]["loss"]) < 1e-6
        assert curve[split]["accuracy_gap"][0] == a[split]["accuracy_gap"]
    other = next(r for r in results if r["seed"] != a["seed"])
    with pytest.raises(ValueError, match="same seed"):
        ex.interpolation_curve(a, other, points=3)


def test_iterations_to_fair_picks_the_cheapest_fair_run():
    def r(label, seed, it, gap, tau=0.05):
        return {"label": label, "seed": seed, "cost": {"iterations": it}, "val": {"accuracy_gap": gap}, "tau": tau}

    res = [r("a", 0, 10, 0.2), r("a", 0, 20, 0.04), r("a", 0, 40, 0.01), r("a", 1, 10, 0.3), r("b", 0, 5, 0.0)]
    assert ex.iterations_to_fair(res) == {"a": {0: 20.0, 1: None}, "b": {0: 5.0}}


# ------------------------------------------------------------------------------------------ pretraining budget
def test_pretraining_budget_has_a_minimum_number_of_steps():
    cpu, smoke = ex.PROFILES["cpu"], ex.PROFILES["smoke"]
    # Adult and the Fashion benchmark under the cpu / smoke caps: exactly the epochs they always had
    assert cpu.pretrain_epochs_for(cpu.limits["train"]) == cpu.pretrain_epochs == 4
    assert smoke.pretrain_epochs_for(smoke.limits["train"]) == smoke.pretrain_epochs == 5
    # a 1,000-row table (600 training rows, 5 steps per epoch): 40 epochs = 200 steps, not 20
    assert cpu.pretrain_epochs_for(600) == 40
    assert cpu.replace(pretrain_min_steps=0).pretrain_epochs_for(600) == 4


def test_a_dense_model_no_better_than_the_majority_is_reported(tmp_path, capsys):
    from fairprune_lite.experiments.run import dense_warnings

    ok = {"val": {"accuracy": 0.85, "majority_baseline": 0.75}}
    const = {"val": {"accuracy": 0.682, "majority_baseline": 0.682}}
    assert dense_warnings(ok) == []
    [w] = dense_warnings(const)
    assert "no better than the majority class" in w and "0.6820" in w
    # end to end: labels independent of the features, one pretraining step
    rng = np.random.default_rng(0)
    n = 600
    path = tmp_path / "noise.npz"
    np.savez(path, x=rng.normal(size=(n, 4)).astype(np.float32), y=(rng.random(n) < 0.3).astype(np.int64),
             s=(rng.random(n) < 0.4).astype(np.int64))
    res = ex.run(ex.RunSpec(method="omp", dataset=str(path), sparsity=0.5, profile="smoke",
                            settings={"pretrain_epochs": 1, "pretrain_min_steps": 0}), out=tmp_path / "o")
    assert res["dense"]["val"]["accuracy"] <= res["dense"]["val"]["majority_baseline"]
    assert res["warnings"] and "majority" in res["warnings"][0]
    from fairprune_lite.__main__ import main

    capsys.readouterr()
    assert main(["run", "--dataset", str(path), "--method", "omp", "--sparsity", "0.5", "--profile", "smoke",
                 "--set", "pretrain_epochs=1", "--set", "pretrain_min_steps=0", "--out", str(tmp_path / "c"),
                 "--quiet"]) == 0
    assert capsys.readouterr().err.count("WARNING: dense model no better than the majority class") == 1
    assert ex.load_result(tmp_path / "o" / f"{res['run_id']}.json")["warnings"] == res["warnings"]


def test_unknown_dataset_in_a_sweep_fails_before_any_run(tmp_path):
    cfg = {"name": "t", "profile": "smoke", "datasets": ["adlut"], "methods": ["omp"], "sparsities": [0.5]}
    with pytest.raises(ValueError, match=r"unknown dataset 'adlut' \(did you mean 'adult'\?\)"):
        ex.sweep(cfg, out=tmp_path, quiet=True)
    assert not list(tmp_path.rglob("*"))


def test_figure_bands_stay_within_the_metric_range():
    """A confidence band of a rate never leaves [0, 1]; losses and counts are only kept >= 0."""
    from fairprune_lite.experiments.figures import _mean_spread

    m, lo, hi = _mean_spread([0.97, 0.99, 1.0], "ci")
    assert 0.0 <= lo <= m <= hi == 1.0
    m, lo, hi = _mean_spread([0.0, 0.01, 0.2], "std")
    assert lo == 0.0 and hi < 1.0
    m, lo, hi = _mean_spread([2.0, 3.0, 9.0], "ci", upper=None)
    assert lo == 0.0 and hi > 9.0


def test_pruned_model_no_better_than_majority_is_warned():
    from fairprune_lite.experiments.run import pruned_warnings

    feas = {"metric": "accuracy_gap", "value": 0.0, "tau": 0.02, "se": 0.01, "met": True}
    const = {"val": {"accuracy": 0.6, "majority_baseline": 0.6, "feasibility": feas}}
    (w,) = pruned_warnings(const)
    assert "within 0.02 of the majority class on val" in w and "constant predictor" in w
    assert pruned_warnings({"val": {"accuracy": 0.9, "majority_baseline": 0.6, "feasibility": feas}}) == []
    unmet = {"val": {"accuracy": 0.5, "majority_baseline": 0.6, "feasibility": dict(feas, met=False)}}
    (w,) = pruned_warnings(unmet)
    assert "constant predictor" not in w
    (w,) = pruned_warnings(const, fairness_aware=False)  # e.g. random pruning: no constraint to blame
    assert "constant predictor" not in w
    # the test split is checked too (a run can be near-constant on test only), and within 2 points counts
    near = {"val": {"accuracy": 0.9, "majority_baseline": 0.6, "feasibility": feas},
            "test": {"accuracy": 0.575, "majority_baseline": 0.565, "feasibility": feas}}
    (w,) = pruned_warnings(near)
    assert "on test" in w and "0.5750" in w
    # BiFP's selection found nothing, and its certificate failed: both said
    cfg = {"selection": {"passed": False, "floor_ok": True, "held_out": 500, "step": 9, "accuracy": 0.8,
                         "value": 0.1},
           "certificate": {"certified": False, "delta": 0.05, "bound": 0.3, "n": 2000, "tau": 0.1}}
    w1, w2 = pruned_warnings({"val": {"accuracy": 0.9, "majority_baseline": 0.6}}, method_config=cfg)
    assert w1.startswith("no solution found at this tau and sparsity") and "not certified" in w2
    # a safety split too small to bound anything: the reason and the rows it would need, not a bound
    small = {"certificate": {"certified": False, "delta": 0.05, "bound": None, "n": 2000, "tau": 0.05,
                             "rows_needed": 35254, "reason": "the safety split has 2000 rows, but ... needs about 35254"}}
    (w,) = pruned_warnings({"val": {"accuracy": 0.9, "majority_baseline": 0.6}}, method_config=small)
    assert w.startswith("not certified: the safety split has 2000 rows") and "35254" in w


def _run_config(spec, profile):
    """The BiFPConfig a run of ``spec`` gets: the runner's arguments, then the spec's options."""
    from fairprune_lite import pruners
    from fairprune_lite.experiments.run import _method_arguments

    own = set(pruners.METHODS[spec.method].options())
    args = _method_arguments(spec, profile) | dict(spec.method_kwargs)
    return pruners.bilevel_config(spec.method, {k: v for k, v in args.items() if k in own})


@pytest.mark.parametrize("default", ["paper", "certified"])
def test_the_profiles_paper_overrides_apply_exactly_under_the_paper_protocol(monkeypatch, default):
    """A profile's ``bifp_paper`` overrides apply when the run's protocol resolves to "paper"
    (named, or the library default when none is named) and never over another protocol's own
    settings; ``bifp_steps`` sizes every protocol. Checked with the library default set to each
    protocol in turn (the default moves from "paper" to "certified")."""
    from fairprune_lite import bilevel

    monkeypatch.setattr(bilevel, "DEFAULTS", bilevel.PROTOCOLS[default])
    profile = ex.get_profile("smoke").replace(bifp_paper={"beta": 0.2, "gamma": 2.0})
    for named in (None, "paper", "certified"):
        kw = {} if named is None else {"protocol": named}
        spec = ex.RunSpec(method="bifp", dataset="adult", sparsity=0.5, profile="smoke", method_kwargs=kw)
        cfg = _run_config(spec, profile)
        protocol = named or default
        base = bilevel.PROTOCOLS[protocol]
        assert cfg.protocol == protocol and cfg.steps == profile.bifp_steps
        assert (cfg.beta, cfg.gamma) == ((0.2, 2.0) if protocol == "paper" else (base.beta, base.gamma))
        assert cfg.holdout == base.holdout and cfg.alpha == base.alpha
    # a spec's own option wins over the profile's
    spec = ex.RunSpec(method="bifp", dataset="adult", sparsity=0.5, profile="smoke",
                      method_kwargs={"protocol": "paper", "beta": 0.3})
    assert _run_config(spec, profile).beta == 0.3
    # BiP starts from the paper's protocol whatever the library default (its protocol trait): it
    # gets the profile's paper overrides
    bip = _run_config(ex.RunSpec(method="bip", dataset="adult", sparsity=0.5, profile="smoke"), profile)
    assert bip.protocol == "paper" and (bip.beta, bip.gamma) == (0.2, 2.0)
    assert bip.holdout == bilevel.PROTOCOLS["paper"].holdout


def test_stored_bilevel_runs_get_the_step_sizes_they_ran_with_under_the_paper_protocol():
    """Every stored BiFP / BiP result of the book, rerun with ``protocol: "paper"`` named, gets the
    steps and step sizes it recorded; its stored profile settings (which repeated the paper
    protocol's step sizes) read as today's profile (the sweep does not call it stale)."""
    from fairprune_lite import pruners
    from fairprune_lite.experiments.sweep import _same_profile

    root = Path(__file__).resolve().parents[1] / "book" / "results"
    checked = 0
    for path in sorted(root.glob("*/*.json")):
        if path.name == "sweep.json" or path.name.endswith(".failed.json"):
            continue
        r = json.loads(path.read_text())
        if not isinstance(r, dict) or "spec" not in r or not pruners.METHODS[r["method"]].bilevel:
            continue
        spec = ex.RunSpec.from_dict(r["spec"])
        if "protocol" in pruners.METHODS[spec.method].options():
            spec = ex.RunSpec(**{**spec.to_dict(), "method_kwargs": {"protocol": "paper", **spec.method_kwargs}})
        cfg = _run_config(spec, ex.check_spec(spec))
        got = {k: getattr(cfg, k) for k in ("alpha", "beta", "gamma", "steps")}
        assert got == {k: r["method_config"][k] for k in got}, path.name
        assert _same_profile(r, ex.RunSpec.from_dict(r["spec"])), path.name
        checked += 1
    assert checked > 0


def test_a_method_registered_from_outside_runs_through_the_runner_and_a_sweep(npz, tmp_path):
    """Adding a method is one function and one registry entry: its traits decide what the runner
    and the sweep do (the constraint it needs, that tau does not move it), no module names it."""
    from fairprune_lite import pruners

    @pruners.register("_toy_outside", fairness_aware=True, needs_constraint=True, uses_tau=False,
                      description="toy: magnitude times a factor")
    def _toy(ctx, *, factor: float = 1.0):
        model = ctx.apply({n: factor * w.abs() for n, w in ctx.weights().items()})
        return pruners.MethodOutput(model, ctx.finetune(model))

    try:
        spec = ex.RunSpec(method="_toy_outside", dataset=str(npz), sparsity=0.5, profile="smoke",
                          method_kwargs={"factor": 2.0})
        res = ex.run(spec, cache_dir=tmp_path / "cache")
        assert res["method"] == "_toy_outside" and res["method_config"]["factor"] == 2.0
        with pytest.raises(ValueError, match=r"no option 'factr' \(did you mean 'factor'\?\)"):
            ex.check_spec(ex.RunSpec(method="_toy_outside", dataset=str(npz), sparsity=0.5, profile="smoke",
                                     method_kwargs={"factr": 2.0}))
        cfg = {"name": "toy_outside", "profile": "smoke", "datasets": [str(npz)], "methods": ["_toy_outside"],
               "sparsities": [0.5], "seeds": 1}
        summary = ex.sweep(cfg, out=tmp_path / "runs", quiet=True)
        assert len(summary["ran"]) == 1 and not summary["failed"]
        from fairprune_lite.experiments.figures import uses_tau  # the figures ask its traits

        assert not uses_tau("_toy_outside")
    finally:
        del pruners.METHODS["_toy_outside"]


@pytest.mark.parametrize("overrides, match", [
    ({"bifp_paper": {"betta": 0.2}}, r"bifp_paper: BiFPConfig has no field 'betta' \(did you mean 'beta'\?\)"),
    ({"bifp_paper": {"protocol": "certified"}}, "'protocol' is not set here: use the method option protocol"),
    ({"bifp_paper": {"steps": 5}}, "'steps' is not set here: use the profile knob bifp_steps"),
    ({"bifp_paper": {"gamma": -1.0}}, "bifp_paper: .*gamma"),
    ({"bifp_paper": [1]}, "bifp_paper must be a mapping"),
    ({"bifp_beta": 0.2}, r"'bifp_beta' no longer exists: .*bifp_paper: \{beta: ...\}"),
])
def test_a_profiles_solver_overrides_are_checked_once_at_the_edge(overrides, match):
    with pytest.raises(ValueError, match=match):
        ex.get_profile("smoke").replace(**overrides)
    with pytest.raises(ex.ConfigError, match=match):
        ex.check_config({"methods": ["bifp"], "sparsities": [0.5], "settings": overrides})


def test_stored_profile_settings_read_in_todays_form():
    """A stored result's legacy bifp_alpha/beta/gamma equal to the paper protocol's own are no
    override (the run is not stale); other values are the overrides they were (stale today)."""
    from fairprune_lite.experiments.sweep import _current_form, _same_profile

    spec = ex.RunSpec(method="omp", dataset="adult", sparsity=0.5, profile="smoke")
    today = ex.get_profile("smoke").to_dict()
    legacy = {k: v for k, v in today.items() if k != "bifp_paper"} | {
        "bifp_alpha": ex.get_profile("smoke").bifp_alpha, "bifp_beta": ex.get_profile("smoke").bifp_beta,
        "bifp_gamma": ex.get_profile("smoke").bifp_gamma}
    assert _current_form(legacy) == today
    assert _same_profile({"profile_settings": legacy}, spec)
    assert _current_form(legacy | {"bifp_beta": 0.3})["bifp_paper"] == {"beta": 0.3}
    assert not _same_profile({"profile_settings": legacy | {"bifp_beta": 0.3}}, spec)


def test_a_profiles_fast_path_reaches_pretraining_finetuning_and_the_solver(npz, tmp_path, monkeypatch):
    """``accel`` (the ``gpu`` profile's fast path) is one profile knob: the runner hands it to
    pretraining and to ``prune`` (fine-tuning and the bi-level solver), it keys the dense cache,
    and a profile without it keys and trains exactly as before."""
    from fairprune_lite import accel as A
    from fairprune_lite import pruners
    from fairprune_lite import train as T
    R = importlib.import_module("fairprune_lite.experiments.run")

    assert ex.get_profile("gpu").accel == A.FAST and ex.get_profile("cpu").accel is None
    seen: dict[str, list] = {"fit": [], "prune": []}
    fit, prune = T.fit, pruners.prune

    def spy_fit(*a, **k):
        seen["fit"].append(k.get("accel"))
        return fit(*a, **k)

    def spy_prune(*a, **k):
        seen["prune"].append(k.get("accel"))
        return prune(*a, **k)

    monkeypatch.setattr(T, "fit", spy_fit)
    monkeypatch.setattr(R.pruners, "prune", spy_prune)
    fast = {"pretrain_epochs": 1, "pretrain_min_steps": 0, "accel": {"autocast": "bf16"}}
    res = ex.run(spec_for(npz, method="bip", settings=fast), cache_dir=tmp_path / "c")
    assert seen["prune"] == [A.Accel(autocast="bf16")] and seen["fit"] == [A.Accel(autocast="bf16")]
    assert res["profile_settings"]["accel"]["autocast"] == "bf16"
    assert 0.0 < res["test"]["accuracy"] <= 1.0
    plain = spec_for(npz, method="bip", settings={"pretrain_epochs": 1, "pretrain_min_steps": 0})
    prof, prof_fast = ex.check_spec(plain), ex.check_spec(spec_for(npz, method="bip", settings=fast))
    splits = R.load_splits(plain, prof)
    keys = {R.dense_key(plain, p, "mlp", 8, splits) for p in (prof, prof_fast)}
    assert len(keys) == 2  # a fast-path dense model is never taken for a plain one
