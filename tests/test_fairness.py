"""Tests of fairness.py: metrics against fairlearn (the reference oracle), Defs. 2/3 by hand,
exact constraint values against the metrics, surrogate bounds / convexity / gradients, bad input."""

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from fairprune_lite import fairness as fx

fm = pytest.importorskip("fairlearn.metrics")

TOL = 1e-12


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _random_case(seed):
    """Random binary labels/predictions with 2 or 3 groups, varied size and imbalance."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 400))
    k = 2 if seed % 3 else 3
    probs = rng.dirichlet(np.full(k, 0.7 if seed % 2 else 5.0))
    probs = np.maximum(probs, 0.02)
    probs /= probs.sum()
    s = rng.choice(k, size=n, p=probs)
    s[:k] = np.arange(k)  # every group present
    y = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(np.int64)
    p = np.where(rng.random(n) < rng.uniform(0.5, 0.95), y, 1 - y)
    return y, p, s


def _cells_full(y, s):
    return all(((s == g) & (y == v)).any() for g in np.unique(s) for v in (0, 1))


def _frame(metric, y, p, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fm.MetricFrame(metrics=metric, y_true=y, y_pred=p, sensitive_features=s)


def _tpr(y, p):
    return fm.true_positive_rate(y, p, pos_label=1)


def _fpr(y, p):
    return fm.false_positive_rate(y, p, pos_label=1)


def _acc(y, p):
    return float(np.mean(np.asarray(y) == np.asarray(p)))


def _close_dict(ours, series):
    assert set(ours) == set(series.index.tolist())
    for g, v in ours.items():
        assert isinstance(v, float)
        assert abs(v - float(series[g])) <= TOL, (g, v, float(series[g]))


# ---------------------------------------------------------------------------------------------
# metrics vs fairlearn
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(40))
def test_metrics_match_fairlearn(seed):
    y, p, s = _random_case(seed)
    kw = {"sensitive_features": s}
    _close_dict(fx.accuracy_by_group(y, p, **kw), _frame(_acc, y, p, s).by_group)
    _close_dict(fx.selection_rate_by_group(y, p, **kw), _frame(fm.selection_rate, y, p, s).by_group)
    dp = fx.demographic_parity_difference(y, p, **kw)
    assert isinstance(dp, float)
    assert abs(dp - fm.demographic_parity_difference(y, p, **kw)) <= TOL
    gap = fx.accuracy_gap(y, p, **kw)
    assert abs(gap - _frame(_acc, y, p, s).difference(method="between_groups")) <= TOL
    assert abs(fx.accuracy(y, p) - _acc(y, p)) <= TOL
    if _cells_full(y, s):
        _close_dict(fx.true_positive_rate_by_group(y, p, **kw), _frame(_tpr, y, p, s).by_group)
        _close_dict(fx.false_positive_rate_by_group(y, p, **kw), _frame(_fpr, y, p, s).by_group)
        eo = fx.equalized_odds_difference(y, p, **kw)
        assert abs(eo - fm.equalized_odds_difference(y, p, **kw)) <= TOL
        eop = fx.equal_opportunity_difference(y, p, **kw)
        assert abs(eop - fm.equal_opportunity_difference(y, p, **kw)) <= TOL
        assert abs(eop - _frame(_tpr, y, p, s).difference(method="between_groups")) <= TOL
    else:  # an undefined rate raises instead of fairlearn's silent 0
        with pytest.raises(ValueError, match="undefined"):
            fx.equalized_odds_difference(y, p, **kw)


def test_random_cases_cover_what_they_claim():
    """The parametrised cases above include 3 groups, strong imbalance and empty cells."""
    cases = [_random_case(seed) for seed in range(40)]
    assert any(len(np.unique(s)) == 3 for _, _, s in cases)
    assert any(np.bincount(s).min() / len(s) < 0.1 for _, _, s in cases)
    assert sum(_cells_full(y, s) for y, _, s in cases) >= 20
    assert any(not _cells_full(y, s) for y, _, s in cases)


def test_undefined_rate_differs_from_fairlearn_on_purpose():
    y = np.array([0, 0, 0, 1, 1, 0])
    p = np.array([1, 0, 0, 1, 0, 0])
    s = np.array([0, 0, 0, 1, 1, 1])  # group 0 has no positives
    assert float(_frame(_tpr, y, p, s).by_group[0]) == 0.0  # fairlearn: silent 0
    with pytest.raises(ValueError, match="true positive rate.*group 0.*y_true == 1"):
        fx.true_positive_rate_by_group(y, p, sensitive_features=s)
    with pytest.raises(ValueError, match="true positive rate"):
        fx.equal_opportunity_difference(y, p, sensitive_features=s)
    with pytest.raises(ValueError, match="true positive rate"):
        fx.fairness_report(y, p, sensitive_features=s)
    y2 = np.array([0, 1, 1, 1, 1, 0])  # group 1 ... fine; make group 0 all positive
    y2[:3] = 1
    with pytest.raises(ValueError, match="false positive rate.*group 0.*y_true == 0"):
        fx.false_positive_rate_by_group(y2, p, sensitive_features=s)


def test_input_types_agree_and_group_keys_are_python_scalars():
    y, p, s = _random_case(7)
    ref = fx.fairness_report(y, p, sensitive_features=s)
    variants = [
        (y.tolist(), p.tolist(), s.tolist()),
        (torch.tensor(y), torch.tensor(p), torch.tensor(s)),
        (torch.tensor(y).bool(), torch.tensor(p).float(), torch.tensor(s)),
        (y.astype(bool), p.astype(np.float32), s.astype(np.int32)),
        (torch.tensor(y, dtype=torch.float64, requires_grad=True), torch.tensor(p), torch.tensor(s)),
    ]
    for yy, pp, ss in variants:
        assert fx.fairness_report(yy, pp, sensitive_features=ss) == ref
    for g in ref["accuracy_by_group"]:
        assert type(g) is int
    named = fx.accuracy_by_group(y, p, sensitive_features=np.array(["abc"[g] for g in s]))
    assert list(named) == ["a", "b", "c"][: len(named)] and all(type(g) is str for g in named)


def test_fairness_report_contents():
    y, p, s = next(c for c in map(_random_case, range(100)) if _cells_full(c[0], c[2]) and len(c[0]) > 50)
    r = fx.fairness_report(y, p, sensitive_features=s, y_pred_dense=y)
    kw = {"sensitive_features": s}
    assert r["accuracy"] == fx.accuracy(y, p)
    assert r["accuracy_gap"] == fx.accuracy_gap(y, p, **kw)
    assert r["demographic_parity_difference"] == fx.demographic_parity_difference(y, p, **kw)
    assert r["equalized_odds_difference"] == fx.equalized_odds_difference(y, p, **kw)
    assert r["equal_opportunity_difference"] == fx.equal_opportunity_difference(y, p, **kw)
    assert r["true_positive_rate_by_group"] == fx.true_positive_rate_by_group(y, p, **kw)
    assert r["false_positive_rate_by_group"] == fx.false_positive_rate_by_group(y, p, **kw)
    assert r["group_counts"] == {int(g): int((s == g).sum()) for g in np.unique(s)}
    assert sum(r["group_counts"].values()) == len(y)
    maj = max(y.mean(), 1 - y.mean())
    assert r["majority_baseline"] == pytest.approx(maj, abs=TOL)
    const = np.full_like(y, int(y.mean() >= 0.5))
    assert r["majority_baseline"] == pytest.approx(_acc(y, const), abs=TOL)
    assert r["majority_baseline_gap"] == fx.accuracy_gap(y, const, **kw)
    # the dense model is the oracle: degradation = 1 - acc(pruned)
    assert r["degradation"] == pytest.approx(1 - r["accuracy"], abs=TOL)
    assert r["degradation_gap"] == pytest.approx(r["accuracy_gap"], abs=TOL)
    assert "degradation" not in fx.fairness_report(y, p, **kw)
    # a constant predictor is "fair" by DP and EO: why every report carries the baseline
    assert fx.demographic_parity_difference(y, const, **kw) == 0.0
    assert fx.equalized_odds_difference(y, const, **kw) == 0.0


def test_definitions_2_and_3_by_hand():
    #          0  1  2  3  4  5  6  7
    y = [1, 0, 1, 1, 0, 1, 0, 0]
    dense = [1, 0, 1, 1, 0, 1, 0, 1]  # 7/8 right; s=0 (first 4): 4/4, s=1: 3/4
    pruned = [1, 1, 0, 1, 0, 1, 0, 1]  # 5/8 right; s=0: 2/4, s=1: 3/4
    s = [0, 0, 0, 0, 1, 1, 1, 1]
    assert fx.degradation(y, dense, pruned) == pytest.approx(7 / 8 - 5 / 8, abs=TOL)
    assert fx.degradation(y, pruned, dense) == pytest.approx(-(7 / 8 - 5 / 8), abs=TOL)  # signed
    assert fx.degradation_by_group(y, dense, pruned, sensitive_features=s) == {0: 0.5, 1: 0.0}
    assert fx.degradation_gap(y, dense, pruned, sensitive_features=s) == pytest.approx(0.5, abs=TOL)
    # three groups: max - min of R_g
    s3 = [0, 0, 1, 1, 2, 2, 2, 2]  # R_0 = 1 - 1/2, R_1 = 1 - 1/2, R_2 = 3/4 - 3/4
    assert fx.degradation_gap(y, dense, pruned, sensitive_features=s3) == pytest.approx(0.5, abs=TOL)
    assert fx.accuracy_gap(y, pruned, sensitive_features=s) == pytest.approx(0.25, abs=TOL)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_raises_naming_the_problem():
    y, p, s = [1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]
    cases = [
        (lambda: fx.accuracy_gap([], [], sensitive_features=[]), "y_true is empty"),
        (lambda: fx.accuracy_gap(y, p[:3], sensitive_features=s), "y_pred has 3 entries but y_true has 4"),
        (lambda: fx.accuracy_gap(y, p, sensitive_features=s[:3]), "sensitive_features has 3 entries"),
        (lambda: fx.accuracy_gap(y, p, sensitive_features=[1, 1, 1, 1]), "sensitive_features has a single group"),
        (lambda: fx.group_counts([0, 0]), "single group"),
        (lambda: fx.accuracy_gap([0, 2, 1, 0], p, sensitive_features=s), r"y_true must be binary.*\[2\]"),
        (lambda: fx.accuracy_gap(y, [0.5, 1, 1, 0], sensitive_features=s), "y_pred must be binary"),
        (lambda: fx.accuracy_gap(y, [-1, 1, 1, -1], sensitive_features=s), "y_pred must be binary"),
        (lambda: fx.accuracy_gap(["a", "b", "a", "b"], p, sensitive_features=s), "y_true must be binary"),
        (lambda: fx.accuracy_gap([1, np.nan, 0, 0], p, sensitive_features=s), "y_true contains NaN"),
        (lambda: fx.accuracy_gap(y, torch.tensor([1.0, float("nan"), 0, 0]), sensitive_features=s),
         "y_pred contains NaN"),
        (lambda: fx.accuracy_gap(y, p, sensitive_features=[0.0, np.nan, 1.0, 1.0]), "sensitive_features contains NaN"),
        (lambda: fx.accuracy_gap(y, p, sensitive_features=["a", None, "b", "b"]), "sensitive_features contains NaN"),
        (lambda: fx.accuracy_gap(np.array([[1, 0], [1, 0]]), p, sensitive_features=s), "y_true must be 1-D"),
        (lambda: fx.accuracy_gap(y, p, sensitive_features=None), "sensitive_features is None"),
        (lambda: fx.degradation(y, p, p[:2]), "y_pred_pruned has 2 entries"),
        (lambda: fx.degradation(y, [2, 0, 0, 0], p), "y_pred_dense must be binary"),
        (lambda: fx.degradation_gap(y, p, p, sensitive_features=[0, 0, 0, 0]), "single group"),
        (lambda: fx.majority_baseline([]), "y_true is empty"),
        (lambda: fx.fairness_report(y, p, sensitive_features=s, y_pred_dense=[1, 1]), "y_pred_dense has 2"),
        (lambda: fx.equalized_odds_difference(y, p, sensitive_features=[0, 1, 0, 1]), "undefined"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()


def test_constraint_and_surrogate_bad_input():
    lg = torch.randn(6)
    y = torch.tensor([1, 0, 1, 0, 1, 0])
    s = torch.tensor([0, 0, 0, 1, 1, 1])
    cases = [
        (lambda: fx.constraint_values("parity", lg, y, s), "kind must be one of"),
        (lambda: fx.constraint_values("accuracy_gap", lg.numpy(), y, s), "logits must be a torch.Tensor"),
        (lambda: fx.constraint_values("accuracy_gap", lg[:, None], y, s), r"logits must have shape \[B\]"),
        (lambda: fx.constraint_values("accuracy_gap", lg[:0], y[:0], s[:0]), "logits is empty"),
        (lambda: fx.constraint_values("accuracy_gap", lg, y[:5], s), "y must have shape"),
        (lambda: fx.constraint_values("accuracy_gap", lg, y, s[:5]), "s must have shape"),
        (lambda: fx.constraint_values("accuracy_gap", lg, y + 1, s), "y must contain only 0 and 1"),
        (lambda: fx.constraint_values("accuracy_gap", lg, y, s * 2), "s must contain only 0 and 1"),
        (lambda: fx.constraint_values("accuracy_gap", torch.full((6,), float("nan")), y, s), "logits contains NaN"),
        (lambda: fx.constraint_values("demographic_parity", lg, y, torch.zeros(6).long()), "group s=1"),
        (lambda: fx.constraint_values("accuracy_gap", lg, y, torch.ones(6).long(), surrogate="hinge"), "group s=0"),
        (lambda: fx.constraint_values("equalized_odds", lg, y, torch.tensor([0, 1, 0, 1, 0, 1])),
         "group s=1 with y=1"),
        (lambda: fx.constraint_values("equalized_odds", lg, torch.tensor([1, 1, 0, 1, 1, 1]), s, surrogate="ramp"),
         "group s=1 with y=0"),
        (lambda: fx.constraint_values("accuracy_gap", lg, y, s, surrogate="square"), "surrogate must be one of"),
        (lambda: fx.constraint_values("accuracy_gap", lg, y, s, surrogate=3), "surrogate must be None"),
        (lambda: fx.surrogate("square"), "surrogate must be one of"),
        (lambda: fx.surrogate("hinge", temperature=0.0), "temperature"),
        (lambda: fx.surrogate("hinge", temperature=float("inf")), "temperature"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()


# ---------------------------------------------------------------------------------------------
# constraint_values
# ---------------------------------------------------------------------------------------------
def _batch(seed, n=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n = n or int(torch.randint(12, 300, (1,), generator=g))
    logits = (torch.randn(n, generator=g) * float(torch.rand(1, generator=g) * 4 + 0.1)).to(dtype)
    logits[: n // 10] = 0.0  # ties: prediction 0
    share = float(torch.rand(1, generator=g) * 0.8 + 0.1)
    s = (torch.rand(n, generator=g) < share).long()
    y = (torch.rand(n, generator=g) < 0.5).long()
    for i, (a, b) in enumerate(itertools.product((0, 1), (0, 1))):  # every (s, y) cell non-empty
        s[n - 1 - i], y[n - 1 - i] = a, b
    return logits, y, s


@pytest.mark.parametrize("seed", range(20))
def test_exact_constraints_equal_the_metrics(seed):
    logits, y, s = _batch(seed)
    pred = (logits > 0).long()
    kw = {"sensitive_features": s}
    acc = fx.accuracy_by_group(y, pred, **kw)
    sel = fx.selection_rate_by_group(y, pred, **kw)
    tpr = fx.true_positive_rate_by_group(y, pred, **kw)
    fpr = fx.false_positive_rate_by_group(y, pred, **kw)
    expected = {
        "accuracy_gap": [acc[1] - acc[0], acc[0] - acc[1]],
        "demographic_parity": [sel[1] - sel[0], sel[0] - sel[1]],
        "equalized_odds": [tpr[1] - tpr[0], tpr[0] - tpr[1], fpr[1] - fpr[0], fpr[0] - fpr[1]],
    }
    for kind, exp in expected.items():
        got = fx.constraint_values(kind, logits, y, s)
        assert got.dtype == torch.float64 and got.shape == (len(exp),) and not got.requires_grad
        assert np.allclose(got.numpy(), exp, atol=TOL, rtol=0), (kind, got, exp)
        got32 = fx.constraint_values(kind, logits.float(), y, s)
        assert got32.dtype == torch.float32 and np.allclose(got32.numpy(), exp, atol=1e-6, rtol=0)
    assert abs(float(fx.constraint_values("accuracy_gap", logits, y, s).max()) - fx.accuracy_gap(y, pred, **kw)) <= TOL
    dp = fx.constraint_values("demographic_parity", logits, y, s).max()
    assert abs(float(dp) - fx.demographic_parity_difference(y, pred, **kw)) <= TOL
    eo = fx.constraint_values("equalized_odds", logits, y, s).max()
    assert abs(float(eo) - fx.equalized_odds_difference(y, pred, **kw)) <= TOL


def test_tie_convention_logit_zero_predicts_zero():
    y = torch.tensor([0, 1, 0, 1])
    s = torch.tensor([0, 0, 1, 1])
    logits = torch.zeros(4)  # everything predicted 0: y=0 right, y=1 wrong in both groups
    assert fx.constraint_values("accuracy_gap", logits, y, s).tolist() == [0.0, 0.0]
    logits = torch.tensor([0.0, 0.0, 0.0, 5.0])  # s=1 now fully right, s=0 half right
    assert fx.constraint_values("accuracy_gap", logits, y, s).tolist() == [0.5, -0.5]
    assert fx.constraint_values("demographic_parity", logits, y, s).tolist() == [0.5, -0.5]


UPPER = ("hinge", "logistic", "ramp")


@pytest.mark.parametrize("seed", range(25))
def test_upper_bound_surrogates_bound_the_exact_entries(seed):
    logits, y, s = _batch(seed)
    for kind in fx.CONSTRAINT_KINDS:
        exact = fx.constraint_values(kind, logits, y, s)
        for name in UPPER:
            for temp in (1.0, 0.3):
                sur = fx.constraint_values(kind, logits, y, s, surrogate=fx.surrogate(name, temperature=temp))
                assert (sur >= exact - 1e-12).all(), (kind, name, temp, sur, exact)
        by_name = fx.constraint_values(kind, logits, y, s, surrogate="logistic")
        assert torch.equal(by_name, fx.constraint_values(kind, logits, y, s, surrogate=fx.surrogate("logistic")))


def test_surrogate_values_and_pointwise_bounds():
    t = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    t = torch.cat([t, torch.tensor([0.0, 1e-300, -1e-300, 1e4, -1e4], dtype=torch.float64)])
    step_ge = (t >= 0).double()  # bounding 1(t >= 0) bounds 1(t > 0) too, whatever the tie rule
    for name in UPPER:
        u = fx.surrogate(name)
        assert (u(t) >= step_ge).all(), name
        assert float(u(torch.tensor(0.0))) == pytest.approx(1.0, abs=1e-15)
    lo = fx.surrogate("logistic")
    assert float(lo(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(math.log2(1 + math.e), abs=1e-14)
    assert float(lo(torch.tensor(1e4, dtype=torch.float64))) == pytest.approx(1e4 / math.log(2), rel=1e-12)
    assert float(fx.surrogate("hinge")(torch.tensor(-0.25))) == 0.75
    assert float(fx.surrogate("ramp")(torch.tensor(3.0))) == 1.0
    assert float(fx.surrogate("ramp")(torch.tensor(-3.0))) == 0.0
    sig = fx.surrogate("sigmoid")
    assert torch.allclose(sig(t) + sig(-t), torch.ones_like(t), atol=1e-15)
    assert float(fx.surrogate("sigmoid", temperature=0.5)(torch.tensor(1.0))) == pytest.approx(1 / (1 + math.exp(-2)))


def test_sigmoid_is_not_an_upper_bound():
    # every example right in s=1, every one at a small positive margin: the exact gap is
    # acc+ - acc- = 1 - 0 = 1, the sigmoid entry only E[sig(t)|s+] + E[sig(-t)|s-] - 1 < 1.
    y = torch.tensor([1, 1, 1, 1])
    s = torch.tensor([1, 1, 0, 0])
    logits = torch.tensor([0.1, 0.1, -0.1, -0.1], dtype=torch.float64)
    exact = fx.constraint_values("accuracy_gap", logits, y, s)
    sig = fx.constraint_values("accuracy_gap", logits, y, s, surrogate="sigmoid")
    assert exact[0] == 1.0 and sig[0] < exact[0]
    # and its entries always sum to zero (u(t) + u(-t) = 1), like the exact ones
    logits, y, s = _batch(3)
    sig = fx.constraint_values("equalized_odds", logits, y, s, surrogate="sigmoid")
    assert torch.allclose(sig[0::2] + sig[1::2], torch.zeros(2, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name", ["hinge", "logistic"])
def test_convex_surrogates_are_convex_along_random_lines(name):
    g = torch.Generator().manual_seed(0)
    for seed in range(20):
        logits, y, s = _batch(seed, n=64)
        for kind in fx.CONSTRAINT_KINDS:
            a = logits
            b = torch.randn(64, generator=g, dtype=torch.float64) * 3
            fa = fx.constraint_values(kind, a, y, s, surrogate=name)
            fb = fx.constraint_values(kind, b, y, s, surrogate=name)
            for lam in (0.25, 0.5, 0.8):
                fm_ = fx.constraint_values(kind, lam * a + (1 - lam) * b, y, s, surrogate=name)
                assert (fm_ <= lam * fa + (1 - lam) * fb + 1e-12).all(), (name, kind, seed, lam)


def test_ramp_and_sigmoid_fail_the_convexity_check():
    """The check above can fail: ramp and sigmoid violate the midpoint inequality somewhere."""
    pairs = {"ramp": (-1.0, 1.0), "sigmoid": (0.0, 4.0)}
    for name, (a, b) in pairs.items():
        u = fx.surrogate(name)
        t_a, t_b = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
        assert float(u((t_a + t_b) / 2)) > float((u(t_a) + u(t_b)) / 2), name


@pytest.mark.parametrize("name", fx.SURROGATES)
def test_gradients_are_finite_even_for_extreme_logits(name):
    logits, y, s = _batch(5, n=80)
    logits = logits.clone()
    logits[:20] = 1e4
    logits[20:40] = -1e4
    for dtype in (torch.float32, torch.float64):
        for kind in fx.CONSTRAINT_KINDS:
            lg = logits.to(dtype).requires_grad_(True)
            vals = fx.constraint_values(kind, lg, y, s, surrogate=name)
            assert torch.isfinite(vals).all()
            (grad,) = torch.autograd.grad(vals.sum(), lg)
            assert torch.isfinite(grad).all() and grad.dtype == dtype
            assert grad.abs().sum() > 0 or name in ("ramp", "sigmoid")


def test_logistic_gradcheck():
    logits, y, s = _batch(11, n=30)
    for kind in fx.CONSTRAINT_KINDS:
        lg = logits.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda z, kind=kind: fx.constraint_values(kind, z, y, s, surrogate="logistic"), (lg,))


def test_surrogate_gradient_points_the_right_way():
    """A step against the gradient of entry 0 of the hinge bound lowers the exact gap g1."""
    logits, y, s = _batch(2, n=200)
    lg = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fx.constraint_values("accuracy_gap", lg, y, s, surrogate="logistic")[0], lg)
    before = fx.constraint_values("accuracy_gap", logits, y, s)[0]
    after = fx.constraint_values("accuracy_gap", logits - 50.0 * grad * len(logits), y, s)[0]
    assert after < before


def test_constraint_values_follow_the_logits_device_and_accept_bool_labels():
    logits, y, s = _batch(4, n=50)
    a = fx.constraint_values("equalized_odds", logits, y, s, surrogate="hinge")
    b = fx.constraint_values("equalized_odds", logits, y.bool(), s.bool(), surrogate="hinge")
    assert torch.equal(a, b) and a.device == logits.device
    if torch.cuda.is_available():
        c = fx.constraint_values("equalized_odds", logits.cuda(), y.cuda(), s.cuda(), surrogate="hinge")
        assert c.device.type == "cuda" and torch.allclose(c.cpu(), a)
