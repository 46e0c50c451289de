"""Confidence intervals and paired comparisons over seeds (experiments.stats, `fairprune compare`)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from fairprune_lite import experiments as ex


def test_mean_ci_is_the_student_t_interval():
    v = [0.1, 0.3, 0.2, 0.25, 0.15]
    m, lo, hi = ex.mean_ci(v)
    half = st.t.ppf(0.975, 4) * np.std(v, ddof=1) / math.sqrt(5)
    assert m == pytest.approx(0.2) and lo == pytest.approx(0.2 - half) and hi == pytest.approx(0.2 + half)
    assert half == pytest.approx(0.0982, abs=1e-4)  # 2.776 * 0.0791 / sqrt(5)
    assert ex.mean_ci([0.5]) == (0.5, 0.5, 0.5)
    assert all(math.isnan(x) for x in ex.mean_ci([]))
    wider = ex.mean_ci(v, level=0.99)
    assert wider[1] < lo and wider[2] > hi


def test_paired_difference_tests():
    a = [0.10, 0.12, 0.08, 0.11, 0.09]
    b = [0.05, 0.06, 0.07, 0.04, 0.05]
    r = ex.paired_difference(a, b)
    assert r["n"] == 5 and r["mean_diff"] == pytest.approx(0.046)
    assert r["t_test_p"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert r["sign_test_p"] == pytest.approx(2 / 32)  # 5 of 5 positive, exact two-sided
    assert r["permutation_p"] == pytest.approx(2 / 32)  # only the all-positive and all-negative flips
    assert r["ci"][0] > 0 and r["wins_a_greater"] == 5
    same = ex.paired_difference([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert same["mean_diff"] == 0 and same["t_test_p"] == 1.0 and same["sign_test_p"] == 1.0
    with pytest.raises(ValueError, match="at least 2 seeds"):
        ex.paired_difference([0.1], [0.2])
    with pytest.raises(ValueError, match="same length"):
        ex.paired_difference([0.1, 0.2], [0.2])


def _r(label, seed, sp, eo, method=None):
    return {"run_id": f"{label}{seed}{sp}", "label": label, "method": method or label.lower(), "seed": seed,
            "dataset": "adult", "target": None, "model": "mlp", "sparsity_target": sp, "tau": 0.05, "budget": 1.0,
            "test": {"equalized_odds_difference": eo}}


def test_compare_pairs_runs_of_the_same_seed_and_condition():
    res = [_r("BiFP", s, sp, 0.02 + 0.001 * s) for s in range(5) for sp in (0.5, 0.9)]
    res += [_r("OMP", s, sp, 0.10 + 0.002 * s) for s in range(4) for sp in (0.5, 0.9)]
    rows = ex.compare(res, "bifp", "OMP", "test.equalized_odds_difference")
    assert [r["sparsity"] for r in rows] == [0.5, 0.9]
    for r in rows:
        assert r["seeds"] == [0, 1, 2, 3] and r["n"] == 4  # seed 4 has no OMP partner
        assert r["mean_diff"] == pytest.approx(np.mean([0.02 + 0.001 * s - 0.10 - 0.002 * s for s in range(4)]))
        assert r["ci"][1] < 0
    with pytest.raises(ValueError, match="no results of 'snip'.*BiFP"):
        ex.compare(res, "snip", "OMP", "test.equalized_odds_difference")
    with pytest.raises(ValueError, match="has no 'nope'"):
        ex.compare(res, "BiFP", "OMP", "test.nope")


def test_cli_compare(tmp_path, capsys, monkeypatch):
    from fairprune_lite.__main__ import main

    monkeypatch.setattr(ex, "load_results", lambda folder: ([_r("A", s, 0.5, 0.1 * s) for s in range(3)]
                                                             + [_r("B", s, 0.5, 0.05 * s) for s in range(3)], []))
    assert main(["compare", str(tmp_path), "--a", "A", "--b", "B", "--metric", "test.equalized_odds_difference"]) == 0
    out = capsys.readouterr().out
    assert "A - B" in out and "+0.0500" in out and "p_perm=" in out and "n=3" in out
