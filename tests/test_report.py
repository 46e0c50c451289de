"""experiments.report: the helpers that turn stored results into the book's tables and glued numbers."""
from __future__ import annotations

import math

import pytest

from fairprune_lite.experiments import report as R
from fairprune_lite.experiments.stats import mean_ci


def _result(label, seed, sp=0.9, gap=0.05, acc=0.9, dense_gap=0.04, dense_acc=0.95):
    split = {"accuracy": acc, "accuracy_gap": gap, "majority_baseline": 0.6}
    dense = {"accuracy": dense_acc, "accuracy_gap": dense_gap, "majority_baseline": 0.6}
    return {"label": label, "method": label.lower(), "seed": seed, "sparsity_target": sp, "dataset": "toy",
            "target": None, "model": "mlp", "tau": 0.02, "budget": None, "profile": "cpu",
            "test": split, "val": split, "dense": {"test": dense, "val": dense},
            "provenance": {"git_commit": "0123456789abcdef", "git_dirty": True, "version": "0.1.0"}}


def _sweep():
    # two methods x 4 seeds; the dense model differs per seed and is repeated in both methods' runs
    out = []
    for s, (dg, a_gap, b_gap) in enumerate([(0.02, 0.05, 0.09), (0.06, 0.04, 0.10), (0.03, 0.06, 0.08), (0.05, 0.05, 0.11)]):
        out.append(_result("A", s, gap=a_gap, dense_gap=dg))
        out.append(_result("B", s, gap=b_gap, dense_gap=dg))
    return out


def test_ci_matches_mean_ci_and_skips_none():
    vals = [0.01, 0.03, 0.02, None]
    m, lo, hi = mean_ci([0.01, 0.03, 0.02])
    assert R.ci(vals) == f"{100 * m:.1f}\u00a0±\u00a0{100 * (hi - m):.1f}"
    assert R.ci([None]) == "-" and R.ci([]) == "-"


def test_dense_values_one_per_seed_not_per_run():
    res = _sweep()
    per_seed = R.dense_values(res, "accuracy_gap")
    assert per_seed == [0.02, 0.06, 0.03, 0.05]
    # the interval over the repeated rows is narrower than the honest one over seeds
    _m, _lo, hi_rows = mean_ci([r["dense"]["test"]["accuracy_gap"] for r in res])
    m, _lo, hi_seeds = mean_ci(per_seed)
    assert hi_rows - m < hi_seeds - m


def test_dense_values_rejects_two_dense_models_for_one_seed():
    res = _sweep()
    res[1] = _result("B", 0, dense_gap=0.5)
    with pytest.raises(ValueError, match="seed 0"):
        R.dense_values(res, "accuracy_gap")


def test_table_rows_columns_and_dense_row():
    res = _sweep() + [_result("A", s, sp=0.5, dense_gap=[0.02, 0.06, 0.03, 0.05][s]) for s in range(4)]
    df = R.table(res, "accuracy_gap")
    assert list(df.index) == ["A", "B", "dense"]
    assert list(df.columns) == ["0.5", "0.9"]
    assert df.loc["dense", "0.9"] == R.ci([0.02, 0.06, 0.03, 0.05])
    assert df.loc["B", "0.5"] == "-"
    assert "n = 4 seeds" in df.attrs["caption"]
    acc = R.table(res, "accuracy")
    assert acc.loc["majority class", "0.9"] == "60.0"
    with pytest.raises(ValueError, match="results"):
        R.table([], "accuracy")


def test_paired_and_verdict_and_words():
    res = _sweep()
    d = R.paired(res, "A", "B", "accuracy_gap", sparsity_target=0.9)
    assert d["n"] == 4 and math.isclose(d["mean_diff"], -0.045)
    assert R.verdict(d) == "lower" and R.verdict(d, "a<b", "a>b", "tie") == "a<b"
    assert R.verdict({"ci": [-0.01, 0.02]}) == "not distinguishable"
    assert R.verdict({"ci": [0.01, 0.02]}) == "higher"
    assert R.diff(d).startswith("-4.5 points (95% CI ") and R.diff(d).endswith("n = 4)")
    row = R.diff_row(d)
    assert row["95% CI"] == "a < b" and row["a − b [95% CI]"].startswith("-4.5 [")
    two = res + [_result(lab, s, sp=0.5) for lab in "AB" for s in range(4)]
    with pytest.raises(ValueError, match="2 paired conditions"):
        R.paired(two, "A", "B", "accuracy_gap")


def test_vs_dense_pairs_each_run_with_its_own_dense_model():
    res = _sweep()
    d = R.vs_dense(res, "B", "accuracy_gap")
    assert d["seeds"] == [0, 1, 2, 3] and d["b"] == "dense"
    assert math.isclose(d["mean_diff"], (0.07 + 0.04 + 0.05 + 0.06) / 4)
    with pytest.raises(ValueError, match="label"):
        R.vs_dense(res, "C", "accuracy_gap")


def test_tests_frame_index_and_short_metric():
    res = _sweep()
    d = R.paired(res, "A", "B", "accuracy_gap")
    df = R.tests_frame([{"a": "A", "b": "B", "metric": "accuracy_gap"} | R.diff_row(d)], "metric")
    assert df.index.names == ["a − b", "metric"] and df.index[0] == ("A − B", "gap")
    with pytest.raises(ValueError, match="rows"):
        R.tests_frame([])


def test_live_caption_claims_no_provenance():
    cap = R.live_caption(_sweep()[:2])
    assert "live illustration" in cap and "not a stored result" in cap
    assert "DIRTY" not in cap and "commit" not in cap and "0123456" not in cap
    with pytest.raises(ValueError, match="results"):
        R.live_caption([])


def test_commit_label_and_seeds():
    r = _result("A", 3)
    assert R.commit_label(r) == "0123456+dirty"
    r["provenance"] = {"git_commit": None, "git_dirty": False}
    assert R.commit_label(r) == "no-git"
    assert R.seeds(_sweep()) == [0, 1, 2, 3]


def test_stored_missing_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        R.stored("nope", configs=tmp_path, results=tmp_path)


# --- time to a fair sparse model ------------------------------------------------------------------
def _ttf_row(variant, seed, budget, acc, value, *, examples=1280, bwd=10, wall=1.0, tau=0.05, test=None):
    block = lambda a, v: {"accuracy": a, "majority_baseline": 0.75,  # noqa: E731
                          "feasibility": {"metric": "equalized_odds", "value": v, "tau": tau, "se": 0.01,
                                          "met": v <= tau}}
    ta, tv = test if test is not None else (acc, value)
    return {"kind": "run", "bench": "b", "variant": variant, "seed": seed, "budget": budget,
            "cost": {"iterations": int(100 * budget), "forward_passes": 10, "backward_passes": bwd,
                     "examples": examples, "wall_time_s": wall},
            "batch_size": 128, "check_passes": 16, "check_seconds": 0.5,
            "val": block(acc, value), "test": block(ta, tv)}


def test_time_to_fair_takes_the_first_budget_that_is_fair_and_accurate():
    rows = [
        # seed 0: ref fair and accurate at 0.2; other fair at 0.1 but 3 points less accurate, ok at 0.4
        _ttf_row("ref", 0, 0.1, 0.85, 0.09), _ttf_row("ref", 0, 0.2, 0.85, 0.04, examples=2560, bwd=20, wall=2.0),
        _ttf_row("other", 0, 0.1, 0.82, 0.01), _ttf_row("other", 0, 0.2, 0.80, 0.02),
        _ttf_row("other", 0, 0.4, 0.845, 0.05, examples=5120, bwd=40, wall=8.0),
        # a nearly constant predictor is fair by every metric: it never sets the target
        _ttf_row("const", 0, 0.1, 0.76, 0.0),
    ]
    out = R.time_to_fair(rows, reference="ref")["b"]
    assert out["target"][0] == pytest.approx(0.85 - 0.01)
    ref, other, const = (out["methods"][v]["per_seed"][0] for v in ("ref", "other", "const"))
    assert ref["reached"] and ref["budget"] == 0.2
    assert ref["passes"] == pytest.approx(2560 / 128 + 20 + 16) and ref["seconds"] == pytest.approx(2.5)
    assert other["reached"] and other["budget"] == 0.4
    assert other["passes"] == pytest.approx(5120 / 128 + 40 + 16) and other["library_passes"] == 50
    assert not const["reached"]
    r = out["methods"]["other"]["ratio"]
    assert r["passes"]["gmean"] == pytest.approx(96 / 56) and r["passes"]["n"] == 1
    assert r["seconds"]["gmean"] == pytest.approx(8.5 / 2.5)


def test_time_to_fair_not_reached_costs_the_largest_budget_and_is_left_out_of_ratios():
    rows = []
    for seed in (0, 1, 2):
        rows.append(_ttf_row("ref", seed, 0.1, 0.85, 0.01, wall=1.0 + seed))
        rows += [_ttf_row("other", seed, 0.1, 0.85, 0.2), _ttf_row("other", seed, 0.2, 0.85, 0.2, wall=3.0,
                                                                       examples=2560, bwd=20)]
    rows.append(_ttf_row("other", 0, 0.4, 0.85, 0.03, wall=6.0))
    rows[-1]["uncounted_passes"] = 16
    m = R.time_to_fair(rows, reference="ref")["b"]["methods"]["other"]
    assert m["reached"] == 1 and m["n"] == 3
    miss = m["per_seed"][1]
    assert not miss["reached"] and miss["budget"] == 0.2 and miss["seconds"] == pytest.approx(3.5)
    assert m["per_seed"][0]["passes"] == pytest.approx(1280 / 128 + 10 + 16 + 16)
    assert m["ratio_seeds"] == [0] and m["ratio"]["seconds"]["gmean"] == pytest.approx(6.5 / 1.5)


def test_time_to_fair_reads_the_split_asked_for():
    rows = [_ttf_row("ref", 0, 0.1, 0.85, 0.2, test=(0.85, 0.01)), _ttf_row("ref", 0, 0.2, 0.85, 0.01, test=(0.85, 0.2))]
    assert R.time_to_fair(rows, reference="ref")["b"]["methods"]["ref"]["per_seed"][0]["budget"] == 0.2
    assert R.time_to_fair(rows, split="test", reference="ref")["b"]["methods"]["ref"]["per_seed"][0]["budget"] == 0.1
    with pytest.raises(ValueError, match="split"):
        R.time_to_fair(rows, split="train", reference="ref")
    with pytest.raises(ValueError, match="reference"):
        R.time_to_fair(rows, reference="bifp_certified")


def test_ratio_ci_is_a_t_interval_on_the_log_scale():
    r = R.ratio_ci([2.0, 0.5])
    assert r["gmean"] == pytest.approx(1.0) and r["n"] == 2
    m, lo, hi = mean_ci([math.log(2.0), math.log(0.5)])
    assert r["lo"] == pytest.approx(math.exp(lo)) and r["hi"] == pytest.approx(math.exp(hi))
    assert R.ratio_ci([])["gmean"] is None
    with pytest.raises(ValueError, match="ratios"):
        R.ratio_ci([1.0, 0.0])
