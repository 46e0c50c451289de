"""experiments/frontier.py and ``fairprune frontier``: the tau sweep of the fairness-aware methods
against post-processing, OMP and the dense model; its points, CIs, summary at tau*, figure."""
from __future__ import annotations

import math
import re

import pytest
import yaml

from fairprune_lite import experiments as ex
from fairprune_lite import pruners
from fairprune_lite.__main__ import main
from fairprune_lite.experiments import frontier as fr


def _result(label, method, tau, seed, acc, value, *, majority=0.6, dense=(0.85, 0.3)):
    return {"label": label, "method": method, "tau": tau, "seed": seed, "constraint": "equalized_odds",
            "sparsity_target": 0.9,
            "test": {"accuracy": acc, "equalized_odds_difference": value, "majority_baseline": majority},
            "dense": {"test": {"accuracy": dense[0] + 0.01 * seed, "equalized_odds_difference": dense[1]}}}


def test_the_config_sweeps_tau_only_for_the_methods_that_use_it():
    cfg = fr.frontier_config(dataset="adult", sparsity=0.9, taus=[0.05, 0.1], seeds=2, tau_star=0.06,
                             method_options={"bifp": {"protocol": "certified"}})
    by = {e["method"]: e for e in cfg["methods"]}
    assert set(by) == {*fr.DEFAULT_METHODS, "omp"}  # the registry's reference added
    assert by["bifp"]["protocol"] == "certified"
    specs = ex.expand_config(cfg, profile="smoke")
    per = {m: sum(s.method == m for s in specs) for m in by}
    assert per == {"bifp": 4, "pf": 4, "fp": 4, "postproc": 2, "omp": 2}  # tau moves neither postproc nor omp
    assert {s.tau for s in specs if s.method in ("postproc", "omp")} == {0.05}
    # the same grid as another kind of figure runs every method at every tau
    assert len(ex.expand_config({**cfg, "figure": "tradeoff"}, profile="smoke")) == 20
    assert ex.check_config(cfg).tau_star == 0.06 and ex.check_config(cfg).figure == "frontier"


@pytest.mark.parametrize("kw, match", [
    (dict(constraint="parity"), "constraint must be one of"),
    (dict(taus=[]), "taus must be a non-empty list"),
    (dict(taus=[1.5]), r"taus entry must be in \[0.0, 1.0\]"),
    (dict(tau_star=-0.1), "tau_star must be in"),
    (dict(methods=["bifpx"]), r"unknown method 'bifpx' \(did you mean 'bifp'\?\)"),
    (dict(method_options={"snip": {"batches": 2}}), "not methods of this frontier"),
])
def test_bad_frontier_arguments_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        fr.frontier_config(dataset="adult", sparsity=0.9, **kw)


def test_points_cis_and_the_summary_at_tau_star():
    """Means and 95% t half-widths per (label, tau), computed here from the definition; the
    summary keeps, per method, the most accurate point whose mean metric is <= tau*, none when no
    point gets there, and says which classifiers need the sensitive attribute."""
    rs = []
    for seed, (a1, v1, a2, v2) in enumerate([(0.80, 0.04, 0.84, 0.09), (0.82, 0.06, 0.86, 0.11)]):
        rs += [_result("bifp", "bifp", 0.05, seed, a1, v1), _result("bifp", "bifp", 0.1, seed, a2, v2),
               _result("pp", "postproc", 0.05, seed, 0.83, 0.02), _result("omp", "omp", 0.05, seed, 0.85, 0.2)]
    rs.append(_result("pp", "postproc", 0.05, 2, 0.61, 0.0))  # a third seed, near the majority class
    front = fr.frontier_points(rs)
    assert front["metric"] == "equalized_odds_difference"
    pts = {(p["label"], p["tau"]): p for p in front["points"]}
    assert set(pts) == {("bifp", 0.05), ("bifp", 0.1), ("pp", None), ("omp", None)}  # no tau for postproc / omp
    b = pts[("bifp", 0.05)]
    t975_1 = 12.706204736174707  # Student t, 1 degree of freedom, 0.975 quantile
    assert b["accuracy"] == pytest.approx(0.81) and b["value"] == pytest.approx(0.05)
    assert b["accuracy_ci"] == pytest.approx(t975_1 * 0.01 * math.sqrt(2) / math.sqrt(2))
    pp = pts[("pp", None)]
    assert pp["seeds"] == 3 and pp["near_majority"] == 1 and pp["needs_sensitive_at_prediction"]
    assert front["dense"]["accuracy"] == pytest.approx((0.85 + 0.86 + 0.87) / 3)
    assert front["majority"] == pytest.approx(0.6)
    best = {row["label"]: row["best"] for row in fr.frontier_summary(front, 0.06)}
    assert best["bifp"]["tau"] == 0.05  # tau 0.1 is more accurate but its metric, 0.10, is above tau*
    assert best["pp"] is pts[("pp", None)] and best["omp"] is None
    assert fr.frontier_summary(front, 0.2)[0]["best"]["tau"] == 0.1  # tau* 0.2: the more accurate point
    table = fr.frontier_table(front, 0.06)
    assert "- omp: none" in table and "- pp: " in table and "needs the sensitive attribute" in table
    assert "majority class 0.6000" in table
    with pytest.raises(ValueError, match="tau_star"):
        fr.frontier_summary(front, 2.0)
    with pytest.raises(ValueError, match="mix constraints"):
        fr.frontier_points(rs + [{**rs[0], "constraint": "accuracy_gap"}])


def test_the_frontier_figure_draws_the_points(tmp_path):
    rs = [_result(m, m, t, seed, 0.8 + 0.01 * seed, 0.05 + t / 4) for m in ("bifp", "postproc", "omp")
          for t in ((0.05, 0.1) if pruners.METHODS[m].uses_tau else (0.05,)) for seed in (0, 1)]
    for r in rs:
        r["provenance"] = {"git_commit": "abc", "date": "2026-12-02", "device_name": "cpu", "version": "x"}
        r["profile"] = "smoke"
    fig = ex.figure("frontier", rs, out=tmp_path, name="f", config={"tau_star": 0.06})
    assert (tmp_path / "f.png").is_file() and (tmp_path / "f.svg").is_file()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "bifp (tau swept)" in labels and "postproc (needs s at prediction)" in labels and "dense model" in labels
    with pytest.raises(ValueError, match="spread must be 'ci'"):
        ex.figure("frontier", rs, spread="std")


def test_fairprune_frontier_runs_draws_and_summarises(tmp_path, toy_npz, capsys):
    """The whole command on a tiny table (smoke profile): a tau sweep for P&F, post-processing and
    OMP once per seed; results, figure and summary under the sweep's folder; a rerun runs
    nothing and ``--no-run`` only summarises."""
    npz = toy_npz("frontier_toy", seed=3, n=700, features=6, x0_shift=1.0)
    args = ["frontier", "--dataset", str(npz), "--sparsity", "0.5", "--constraint", "demographic_parity",
            "--taus", "0.05", "0.3", "--seeds", "2", "--methods", "pf", "postproc", "--tau-star", "0.5",
            "--profile", "smoke", "--out", str(tmp_path), "--name", "fr", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "fr"
    results, bad = ex.load_results(folder)
    assert not bad and len(results) == 2 * 2 + 2 + 2  # pf: 2 taus x 2 seeds; postproc, omp: 2 seeds
    assert {r["method"] for r in results} == {"pf", "postproc", "omp"}
    for ext in ("png", "svg", "md"):
        assert (folder / f"fr.{ext}").is_file()
    assert "Best mean test accuracy" in out and "- pf: " in out and "- omp: " in out
    assert (folder / "fr.md").read_text().strip() in out
    assert main(args) == 0 and "0 ran now" in capsys.readouterr().out
    assert main([*args, "--no-run"]) == 0
    capsys.readouterr()
    # the same sweep as a configuration file: `fairprune figure` draws it and prints the summary
    cfg = fr.frontier_config(dataset=str(npz), sparsity=0.5, constraint="demographic_parity", taus=[0.05, 0.3],
                             seeds=2, methods=["pf", "postproc"], tau_star=0.5, name="fr", profile="smoke")
    path = tmp_path / "fr.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["figure", str(path), "--results", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    assert (folder / "fr.md").read_text().strip() in capsys.readouterr().out
    assert (tmp_path / "fig" / "fr.png").is_file()


@pytest.mark.parametrize("extra, match", [
    (["--tau-star", "2"], "--tau-star must be in"),
    (["--taus", "0.1", "1.5"], "--taus entry must be in"),
    (["--seeds", "0"], "--seeds must be a positive"),
    (["--constraint", "parity"], "--constraint must be one of"),
    (["--methods", "bifpx"], r"--methods: unknown method 'bifpx' \(did you mean 'bifp'\?\)"),
    (["--reference", "ompp"], r"--reference: unknown method 'ompp' \(did you mean 'omp'\?\)"),
    (["-o", "bifp"], "--option must look like METHOD.KEY=VALUE"),
    (["-o", "snip.batches=2"], "--option 'snip.batches=2': 'snip' is not a method of this frontier"),
    (["-o", "bifp.stpes=3"], r"no option 'stpes' \(did you mean 'steps'\?\)"),
    (["--sparsity", "1.2"], "--sparsity must be in"),
    (["--constraint", "accuracy_gap"], r"postproc.*cannot honour constraint 'accuracy_gap'"),
])
def test_frontier_argument_errors_name_the_argument(tmp_path, capsys, extra, match):
    base = ["frontier", "--sparsity", "0.5", "--profile", "smoke", "--out", str(tmp_path)]
    assert main(base + extra) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert not any(tmp_path.iterdir())  # nothing written before the error
