"""Tests of the safety test's bound (fairprune_lite.certify): validity, coverage, sizes, errors."""
import math

import pytest
import torch

from fairprune_lite import certify
from fairprune_lite.constraints import feasibility


def _sample(n, p_pos, p_neg, seed, share=0.3):
    """``n`` rows; group s=1 with probability ``share``; prediction correct w.p. p_pos (s=1) / p_neg."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(n, generator=g) < share).long()
    y = (torch.rand(n, generator=g) < 0.5).long()
    p = torch.where(s == 1, torch.tensor(p_pos), torch.tensor(p_neg))
    correct = torch.rand(n, generator=g) < p
    pred = torch.where(correct, y, 1 - y)
    logits = pred.float() * 2 - 1
    return logits, y, s


def test_interval_is_clopper_pearson():
    lo, hi = certify.rate_interval(0, 10, 0.05)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = certify.rate_interval(10, 10, 0.05)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    assert certify.rate_interval(0, 0, 0.05) == (0.0, 1.0)


def test_bound_is_above_the_observed_value_and_shrinks_with_n():
    b = []
    for n in (500, 5000, 50000):
        logits, y, s = _sample(n, 0.9, 0.85, seed=n)
        c = certify.certify("accuracy_gap", 0.1, logits, y, s, delta=0.05)
        assert c["bound"] >= c["value"] == pytest.approx(feasibility("accuracy_gap", 0.1, logits, y, s)["value"])
        assert c["n"] == n and sum(c["cells"]) == n
        b.append(c["bound"] - c["value"])
    assert b[0] > b[1] > b[2]


@pytest.mark.parametrize("kind", ["accuracy_gap", "equalized_odds"])
def test_coverage_of_the_bound_is_at_least_one_minus_delta(kind):
    """Population gap 0.05; over 300 samples of 400 rows the bound falls below it in at most
    delta of them (the bound is conservative: in practice far fewer)."""
    true_gap, delta, trials = 0.05, 0.1, 300
    misses = 0
    for t in range(trials):
        logits, y, s = _sample(400, 0.85, 0.80, seed=1000 + t)
        misses += certify.upper_bound(kind, logits, y, s, delta=delta) < true_gap
    assert misses <= delta * trials


def test_rows_needed_is_the_smallest_size_that_can_certify():
    _, y, s = _sample(4000, 0.9, 0.9, seed=0)
    n = certify.rows_needed("accuracy_gap", 0.1, y, s, delta=0.05)
    shares = torch.bincount(2 * s + y, minlength=4).double() / len(y)

    def bound(m):
        cells = (shares * m).tolist()
        return certify._bound_from_stats("accuracy_gap", cells + [c * 0.5 for c in cells], 0.05)[0]
    assert bound(n) <= 0.1 < bound(n - 1)
    assert certify.rows_needed("accuracy_gap", 0.05, y, s) > n > certify.rows_needed("accuracy_gap", 0.2, y, s)


@pytest.mark.parametrize("delta", [0, 1, -0.1, 1.5, float("nan"), True, "0.05"])
def test_bad_delta_is_named(delta):
    with pytest.raises(ValueError, match="delta"):
        certify.check_delta(delta)


def test_a_missing_cell_gives_the_trivial_bound():
    logits = torch.tensor([1.0, -1.0, 1.0])
    y = torch.tensor([1, 0, 1])
    s = torch.tensor([0, 0, 0])
    assert certify.upper_bound("accuracy_gap", logits, y, s) == 1.0
    assert not math.isnan(certify.certify("demographic_parity", 0.5, logits, y, s)["bound"])
