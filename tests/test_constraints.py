"""Tests of FairnessConstraint: projected dual ascent, the term's value and direction, penalty mode,
bad input, and its use inside fit / bifp (ablation switches really remove the fairness terms)."""

import importlib.util
import math

import pytest
import torch

from fairprune_lite import bilevel, fairness, train
from fairprune_lite.constraints import N_CONSTRAINTS, FairnessConstraint, constraint_se, feasibility
from fairprune_lite.data import FairDataset


def _batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=g)
    y = (torch.rand(n, generator=g) < 0.5).long()
    s = torch.cat([torch.zeros(n // 2), torch.ones(n - n // 2)]).long()
    return logits, y, s


def test_bad_input():
    with pytest.raises(ValueError, match="tau"):
        FairnessConstraint(tau=-0.01)
    with pytest.raises(ValueError, match="kind"):
        FairnessConstraint(kind="parity")
    with pytest.raises(ValueError, match="mode"):
        FairnessConstraint(mode="augmented")
    with pytest.raises(ValueError, match="surrogate"):
        FairnessConstraint(surrogate="square")
    with pytest.raises(ValueError, match="dual_lr"):
        FairnessConstraint(dual_lr=-1.0)
    c = FairnessConstraint()
    with pytest.raises(ValueError, match="measured"):
        c.update(measured=torch.zeros(3))
    with pytest.raises(ValueError, match="logits"):
        c.update()


def test_projected_dual_ascent_on_measured_values():
    c = FairnessConstraint("accuracy_gap", tau=0.05, dual_lr=0.5)
    assert c.multipliers.tolist() == [0.0, 0.0] and c.n == N_CONSTRAINTS["accuracy_gap"] == 2
    c.update(measured=torch.tensor([0.25, -0.25]))
    assert c.multipliers.tolist() == pytest.approx([0.1, 0.0])  # 0.5*(0.25-0.05); -0.15 projected to 0
    c.update(measured=torch.tensor([0.0, 0.0]))
    assert c.multipliers.tolist() == pytest.approx([0.075, 0.0])
    for _ in range(10):
        c.update(measured=torch.tensor([0.0, 0.0]))
    assert c.multipliers.tolist() == [0.0, 0.0]  # satisfied with slack: decays to 0, never negative
    logits, y, s = _batch()
    exact = fairness.constraint_values("accuracy_gap", logits, y, s)
    c2 = FairnessConstraint("accuracy_gap", tau=0.0, dual_lr=1.0)
    c2.update(logits, y, s)
    assert c2.multipliers.tolist() == pytest.approx(torch.clamp(exact.double(), min=0).tolist())
    assert FairnessConstraint("equalized_odds").n == 4
    st = c2.state_dict()
    c3 = FairnessConstraint("accuracy_gap", tau=0.0)
    c3.load_state_dict(st)
    assert torch.equal(c3.multipliers, c2.multipliers)


def test_term_value_and_direction():
    logits, y, s = _batch()
    c = FairnessConstraint("accuracy_gap", tau=0.01, surrogate="logistic", init_multiplier=2.0)
    lg = logits.clone().requires_grad_(True)
    term = c.term(lg, y, s)
    sur = fairness.constraint_values("accuracy_gap", logits, y, s, surrogate="logistic")
    assert float(term.detach()) == pytest.approx(float((2.0 * (sur - 0.01)).sum()), rel=1e-6)
    # a small gradient step on the term lowers the weighted surrogate it is made of
    c1 = FairnessConstraint("accuracy_gap", tau=0.0, init_multiplier=0.0)
    c1.multipliers = torch.tensor([1.0, 0.0], dtype=torch.float64)
    lg = logits.clone().requires_grad_(True)
    t0 = c1.term(lg, y, s)
    (gr,) = torch.autograd.grad(t0, lg)
    t1 = c1.term(logits - 1e-2 * gr, y, s)
    assert float(t1) < float(t0.detach())
    # zero multipliers: zero term
    assert float(FairnessConstraint().term(logits, y, s)) == 0.0


def test_penalty_mode_is_fixed_and_hinged():
    logits, y, s = _batch()
    c = FairnessConstraint("accuracy_gap", tau=0.02, mode="penalty", penalty_weight=3.0, surrogate="hinge")
    sur = fairness.constraint_values("accuracy_gap", logits, y, s, surrogate="hinge")
    assert float(c.term(logits, y, s)) == pytest.approx(float(3.0 * torch.relu(sur - 0.02).sum()), rel=1e-6)
    c.update(logits, y, s)
    assert c.multipliers.tolist() == [0.0, 0.0] and "exact" in c.last_state()


def _unfair(n=400, seed=0):
    """Majority s=1 (80%): label follows x0; minority s=0: label follows x1. A model fit to the
    pooled data learns mostly the majority rule, so its minority accuracy is lower."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    s = (torch.rand(n, generator=g) < 0.8).long()
    x[:, 2] = s.float()
    y = torch.where(s == 1, x[:, 0] > 0, x[:, 1] > 0).long()
    return FairDataset(x, y, s, name="unfair")


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x).reshape(-1)


def test_ablation_switches_remove_the_fairness_terms():
    ds = _unfair()
    train.set_seed(0)
    model = Lin()
    train.fit(model, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.1)
    kw = dict(sparsity=0.5, steps=10, batch_size=64, seed=1, weight_decay=1e-4, protocol="paper")
    ref = bilevel.bip(model, ds, **kw)
    c = FairnessConstraint("accuracy_gap", tau=0.0, init_multiplier=5.0, dual_lr=1.0)
    off = bilevel.bifp(model, ds, constraint=c, fair_mask=False, fair_weights=False, **kw)
    assert c.updates == 0 and c.multipliers.tolist() == [5.0, 5.0]  # untouched
    assert all(torch.equal(ref.masks[n], off.masks[n]) for n in ref.masks)
    for a, b in zip(ref.model.parameters(), off.model.parameters(), strict=True):
        assert torch.equal(a, b)
    on = bilevel.bifp(model, ds, constraint=FairnessConstraint("accuracy_gap", tau=0.0, init_multiplier=5.0),
                      fair_mask=False, fair_weights=True, **kw)
    assert on.config["constraint"]["updates"] == 10
    assert any(not torch.equal(a, b) for a, b in zip(ref.model.parameters(), on.model.parameters(), strict=True))


def test_constraint_values_have_one_entry_per_one_sided_constraint():
    logits, y, s = _batch(200, seed=3)
    for kind, n in (("accuracy_gap", 2), ("demographic_parity", 2), ("equalized_odds", 4)):
        c = FairnessConstraint(kind, tau=0.0)
        assert c.n == n
        assert c.exact_values(logits, y, s).shape == (n,)
        assert c.surrogate_values(logits.clone().requires_grad_(True), y, s).shape == (n,)
        assert float(c.term(logits, y, s)) == 0.0  # zero multipliers


def test_update_pools_the_window_of_recent_batches():
    batches = [_batch(40, seed=k) for k in range(4)]
    c = FairnessConstraint("accuracy_gap", tau=0.0, dual_lr=1.0, window=3)
    for lg, y, s in batches:
        c.update(lg, y, s)
    pooled = [torch.cat([b[k] for b in batches[1:]]) for k in range(3)]  # the last 3 only
    assert c.last_state()["exact"] == pytest.approx(fairness.constraint_values("accuracy_gap", *pooled).tolist())
    # window=1 is the batch alone
    c1 = FairnessConstraint("accuracy_gap", tau=0.0, window=1)
    for lg, y, s in batches:
        c1.update(lg, y, s)
    assert c1.last_state()["exact"] == pytest.approx(fairness.constraint_values("accuracy_gap", *batches[-1]).tolist())
    with pytest.raises(ValueError, match="window"):
        FairnessConstraint(window=0)
    with pytest.raises(ValueError, match="temperature"):
        FairnessConstraint(temperature=0.0)


def test_batch_without_a_compared_cell_is_skipped_and_counted():
    logits, y, s = _batch(64)
    y = y.clone()
    y[s == 0] = 0  # no positive in group s=0: TPR of that group undefined
    c = FairnessConstraint("equalized_odds", tau=0.0, init_multiplier=1.0, window=1)
    assert not c.defined(y, s)
    lg = logits.clone().requires_grad_(True)
    term = c.term(lg, y, s)
    assert float(term.detach()) == 0.0 and c.skipped_terms == 1
    term.backward()  # connected to the graph, zero gradient
    assert torch.equal(lg.grad, torch.zeros_like(lg))
    before = c.multipliers.clone()
    c.update(logits, y, s)
    assert torch.equal(c.multipliers, before) and c.skipped_updates == 1 and c.updates == 0
    # the same batch is fine for the accuracy gap (both groups present)
    assert FairnessConstraint("accuracy_gap").defined(y, s)


def test_sigmoid_term_acts_along_the_signed_gap_only():
    """With equal multipliers the two one-sided sigmoid terms cancel exactly (u(t) + u(-t) = 1),
    while the logistic bound's sum still pulls every margin towards 0: the collapse the default
    avoids."""
    logits, y, s = _batch(128, seed=5)
    logits = 3 * logits
    grads = {}
    for sur in ("sigmoid", "logistic"):
        c = FairnessConstraint("accuracy_gap", tau=0.0, surrogate=sur, init_multiplier=1.0)
        sv = c.surrogate_values(logits, y, s)
        if sur == "sigmoid":
            assert float(sv[0] + sv[1]) == pytest.approx(0.0, abs=1e-6)
        lg = logits.clone().requires_grad_(True)
        (grads[sur],) = torch.autograd.grad(c.term(lg, y, s), lg)
    assert grads["sigmoid"].abs().max() < 1e-6
    margin = (2 * y - 1) * logits
    # logistic: a descent step on the summed term moves every margin towards zero
    step = -grads["logistic"] * (2 * y - 1)  # change of the margin under gradient descent
    assert bool((step * margin < 0).all())


def test_feasibility_value_se_and_met():
    logits, y, s = _batch(400, seed=3)
    for kind in ("accuracy_gap", "demographic_parity", "equalized_odds"):
        f = feasibility(kind, 0.05, logits, y, s)
        exact = fairness.constraint_values(kind, logits, y, s)
        assert f["metric"] == kind and f["value"] == pytest.approx(float(exact.max()))
        assert f["met"] == (f["value"] <= 0.05) and f["tau"] == 0.05
    # the SE is the binomial one of a difference of two proportions (accuracy gap by hand)
    pred = (logits > 0).long()
    se = 0.0
    for g in (0, 1):
        a = float((pred[s == g] == y[s == g]).float().mean())
        se += a * (1 - a) / int((s == g).sum())
    assert feasibility("accuracy_gap", 0.05, logits, y, s)["se"] == pytest.approx(se ** 0.5)
    assert constraint_se("equalized_odds", logits, y, s).shape == (4,)
    # a cell without examples: no value, never a NaN
    f = feasibility("accuracy_gap", 0.05, logits, y, torch.ones_like(s))
    assert f["value"] is None and f["met"] is None


def test_margin_ascends_against_tau_minus_z_se_and_init_multiplier_per_side():
    logits, y, s = _batch(200, seed=1)
    measured = fairness.constraint_values("accuracy_gap", logits, y, s)
    se = constraint_se("accuracy_gap", logits, y, s)
    c0 = FairnessConstraint("accuracy_gap", tau=0.1, dual_lr=1.0)
    c2 = FairnessConstraint("accuracy_gap", tau=0.1, dual_lr=1.0, margin=2.0)
    a, b = c0.update(logits, y, s, pooled=False), c2.update(logits, y, s, pooled=False)
    expect = (torch.full((2,), 0.0, dtype=torch.float64) + measured.double() - (0.1 - 2.0 * se)).clamp(min=0)
    assert torch.allclose(b, expect) and bool((b >= a).all()) and float((b - a).max()) > 0
    with pytest.raises(ValueError, match="se="):
        c2.update(measured=measured)
    c = FairnessConstraint("equalized_odds", init_multiplier=[1.0, 0.0, 2.0, 0.0])
    assert c.multipliers.tolist() == [1.0, 0.0, 2.0, 0.0]
    for bad, word in [(dict(init_multiplier=[1.0]), "init_multiplier"), (dict(margin=-1.0), "margin"),
                      (dict(tau=1.5), "tau"), (dict(tau=-0.1), "tau")]:
        with pytest.raises(ValueError, match=word):
            FairnessConstraint("accuracy_gap", **bad)


@pytest.mark.parametrize("kind", ["accuracy_gap", "demographic_parity", "equalized_odds"])
def test_fast_paths_equal_the_reference_values(kind):
    """The training loop's vectorised term, window statistics and batch values agree with
    fairness.constraint_values (the reference, with its validation)."""
    logits, y, s = _batch(300, seed=4)
    for surrogate in ("sigmoid", "hinge"):
        c = FairnessConstraint(kind, tau=0.0, surrogate=surrogate, temperature=2.0)
        lg = logits.clone().requires_grad_(True)
        n = torch.bincount(2 * s + y, minlength=4).tolist()
        fast = c._fast_surrogate(lg, y, s, n)
        ref = c.surrogate_values(lg, y, s)
        assert torch.allclose(fast, ref, atol=1e-6)
        g1, = torch.autograd.grad(fast.sum(), lg)
        g2, = torch.autograd.grad(ref.sum(), lg)
        assert torch.allclose(g1, g2, atol=1e-6)
    ref = fairness.constraint_values(kind, logits, y, s)
    assert torch.allclose(c.batch_values(logits, y, s).float(), ref, atol=1e-6)
    c.update(logits[:150], y[:150], s[:150])
    c.update(logits[150:], y[150:], s[150:])  # the window pools both halves
    assert torch.allclose(c._last["exact"].float(), ref, atol=1e-6)


def test_nupi_multipliers_from_cooper():
    """dual="nupi": cooper-optim's multiplier and nuPI controller. With kp = 0 and no smoothing
    nuPI is gradient ascent (the same multipliers as ours); kp > 0 changes them; a zero
    multiplier or violation never gives NaN; the projection keeps them >= 0."""
    seq = [torch.tensor([0.3, -0.3], dtype=torch.float64), torch.tensor([0.1, -0.1], dtype=torch.float64),
           torch.tensor([-0.2, 0.2], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    gda = FairnessConstraint("accuracy_gap", tau=0.0, dual_lr=0.5)
    pi0 = FairnessConstraint("accuracy_gap", tau=0.0, dual_lr=0.5, dual="nupi")
    pi1 = FairnessConstraint("accuracy_gap", tau=0.0, dual_lr=0.5, dual="nupi", kp=2.0)
    for v in seq:
        a, b, c = gda.update(measured=v), pi0.update(measured=v), pi1.update(measured=v)
        assert torch.allclose(a, b, atol=1e-6)
        assert bool(torch.isfinite(c).all()) and bool((c >= 0).all())
    assert not torch.allclose(pi1.multipliers, gda.multipliers)
    p = pi1
    with pytest.raises(ValueError, match="dual"):
        FairnessConstraint("accuracy_gap", dual="adam")
    assert p.dual == "nupi" and p.state_dict()["kp"] == 2.0


def test_feasibility_met_includes_equality_and_se_belongs_to_the_maximum():
    """``met`` is ``value <= tau`` (a gap exactly at tau meets it) and ``se`` is the standard
    error of the entry that attains the maximum, not of the first one."""
    from fairprune_lite.constraints import constraint_se, feasibility
    # equalized odds: TPR gap 0 (entries 0, 1), FPR gap 0.5 (entries 2, 3) with its own SE
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    s = torch.tensor([1] * 8 + [0] * 8)
    pred = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    logits = pred.float() * 2 - 1
    f = feasibility("equalized_odds", 0.5, logits, y, s)
    se = constraint_se("equalized_odds", logits, y, s)
    assert f["value"] == 0.5 and f["met"] is True
    assert f["se"] == pytest.approx(float(se[2])) and float(se[2]) != pytest.approx(float(se[0]))
    assert feasibility("equalized_odds", 0.49, logits, y, s)["met"] is False


# ---------------------------------------------------------------------------------------------
# the pieces, each alone: estimators, multipliers, formulations; and the one exact definition
# ---------------------------------------------------------------------------------------------
def test_window_estimate_pools_the_last_batches_and_bounds_with_the_margin():
    from fairprune_lite.constraints import WindowEstimate

    batches = [_batch(40, seed=k) for k in range(4)]
    est = WindowEstimate("demographic_parity", window=2)
    for lg, y, s in batches:
        e = est.observe(lg, y, s)
    pooled = [torch.cat([b[k] for b in batches[2:]]) for k in range(3)]
    ref = fairness.constraint_values("demographic_parity", pooled[0].double(), pooled[1], pooled[2])
    assert torch.equal(e.values, ref) and e.se is None  # margin 0: no SE needed
    assert torch.equal(est.batch_stats, fairness.cell_stats("demographic_parity", *batches[-1]))
    # pooled=False measures the data alone and leaves the window as it was
    alone = est.observe(*batches[0], pooled=False)
    assert torch.equal(alone.values, fairness.constraint_values("demographic_parity", batches[0][0].double(),
                                                                *batches[0][1:]))
    assert len(est._pool) == 2
    # the bound: tau - z * SE, with the binomial SEs of the pooled data
    z = WindowEstimate("demographic_parity", window=1, margin=2.0)
    e = z.observe(*batches[0])
    assert torch.equal(e.se, constraint_se("demographic_parity", *batches[0]))
    assert torch.allclose(z.bound(0.1, e.se, 2), 0.1 - 2.0 * e.se)
    assert torch.equal(WindowEstimate("demographic_parity").bound(0.1, None, 2), torch.full((2,), 0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="se"):
        z.bound(0.1, None, 2)
    with pytest.raises(ValueError, match="se"):
        z.bound(0.1, torch.zeros(3), 2)
    # a compared rate without examples: no estimate
    lg, y, s = batches[0]
    assert WindowEstimate("accuracy_gap").observe(lg, y, torch.ones_like(s)) is None
    for bad, word in [(dict(window=0), "window"), (dict(margin=-1.0), "margin"), (dict(kind="parity"), "kind")]:
        with pytest.raises(ValueError, match=word):
            WindowEstimate(**({"kind": "accuracy_gap"} | bad))


def test_surrogate_estimate_alone():
    from fairprune_lite.constraints import SurrogateEstimate

    logits, y, s = _batch(200, seed=2)
    for kind in ("accuracy_gap", "equalized_odds"):
        sur = SurrogateEstimate(kind, "ramp", temperature=0.5)
        n = torch.bincount(2 * s + y, minlength=4).tolist()
        ref = fairness.constraint_values(kind, logits, y, s, surrogate=fairness.surrogate("ramp", temperature=0.5))
        assert torch.allclose(sur.values(logits, y, s, n), ref, atol=1e-6)
        assert torch.allclose(sur.reference(logits, y, s), ref)
        # an upper bound of the exact values (ramp is a bound)
        assert bool((ref >= fairness.constraint_values(kind, logits, y, s) - 1e-6).all())
    with pytest.raises(ValueError, match="surrogate"):
        SurrogateEstimate("accuracy_gap", "square")
    with pytest.raises(ValueError, match="temperature"):
        SurrogateEstimate("accuracy_gap", temperature=-1.0)


def test_projected_ascent_steps_projects_and_caps():
    from fairprune_lite.constraints import ProjectedAscent

    m = ProjectedAscent(3, init=[0.5, 0.0, 2.0], lr=0.5, max_value=1.5)
    assert m.value.tolist() == [0.5, 0.0, 1.5]  # the cap applies to the initial values too
    out = m.step(torch.tensor([0.2, -0.4, 1.0], dtype=torch.float64))
    assert out.tolist() == [0.6, 0.0, 1.5]  # 0.5+0.1; 0-0.2 projected to 0; 1.5+0.5 capped
    out[0] = 99.0
    assert m.value[0] == 0.6  # step returns a copy
    m.load(torch.tensor([-1.0, 0.25, 0.5]))
    assert m.value.tolist() == [0.0, 0.25, 0.5]
    m.reset()
    assert m.value.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="entries"):
        m.load(torch.zeros(2))
    for bad, word in [(dict(init=[1.0]), "init_multiplier"), (dict(lr=-1.0), "dual_lr"),
                      (dict(max_value=float("nan")), "max_multiplier"), (dict(init=-0.5), "init_multiplier")]:
        with pytest.raises(ValueError, match=word):
            ProjectedAscent(3, **bad)


def test_nupi_multiplier_alone():
    pytest.importorskip("cooper")
    from fairprune_lite.constraints import NuPI, ProjectedAscent, make_multiplier

    seq = [torch.tensor([0.3, -0.3], dtype=torch.float64), torch.tensor([-0.2, 0.2], dtype=torch.float64)] * 3
    gda, pi0 = ProjectedAscent(2, lr=0.5), NuPI(2, lr=0.5)
    pi1 = NuPI(2, lr=0.5, kp=2.0, max_value=0.4)
    for v in seq:
        assert torch.allclose(gda.step(v), pi0.step(v), atol=1e-6)
        out = pi1.step(v)
        assert bool((out >= 0).all()) and bool((out <= 0.4).all())
    assert not torch.allclose(pi1.value, gda.value)
    pi1.load(torch.tensor([0.1, 0.2]))
    assert pi1._cooper is None and pi1.value.tolist() == pytest.approx([0.1, 0.2])  # restarts from the loaded values
    assert isinstance(make_multiplier("nupi", 2), NuPI) and isinstance(make_multiplier("gda", 2), ProjectedAscent)
    with pytest.raises(ValueError, match="dual"):
        make_multiplier("adam", 2)
    with pytest.raises(ValueError, match="ema_nu"):
        NuPI(2, ema_nu=1.0)


def test_nupi_cap_is_a_projection():
    """max_multiplier projects nuPI's own state, as it does for projected ascent: after many
    violated steps at the cap, one satisfied step moves the multiplier below the cap at once
    (with kp = 0 and no smoothing nuPI is projected ascent, step for step)."""
    pytest.importorskip("cooper")
    from fairprune_lite.constraints import NuPI, ProjectedAscent

    gda, pi = ProjectedAscent(1, lr=0.5, max_value=0.4), NuPI(1, lr=0.5, max_value=0.4)
    up, down = torch.tensor([1.0], dtype=torch.float64), torch.tensor([-0.2], dtype=torch.float64)
    for v in [up] * 20 + [down]:
        assert torch.allclose(gda.step(v), pi.step(v), atol=1e-6)
    assert pi.value.item() == pytest.approx(0.3)


def test_formulations_alone():
    from fairprune_lite.constraints import Lagrangian, Penalty, ProjectedAscent

    sur = torch.tensor([0.3, -0.3], requires_grad=True)
    lag = Lagrangian(ProjectedAscent(2, init=[2.0, 0.5], lr=1.0))
    t = lag.term(sur, 0.1)
    assert float(t.detach()) == pytest.approx(2.0 * 0.2 + 0.5 * (-0.4), abs=1e-6)
    (g,) = torch.autograd.grad(t, sur)
    assert g.tolist() == [2.0, 0.5]  # the multipliers are constants of the term
    lag.ascend(torch.tensor([0.5, -2.0], dtype=torch.float64))
    assert lag.multiplier.value.tolist() == [2.5, 0.0]
    pen = Penalty(3.0)
    assert float(pen.term(sur, 0.1).detach()) == pytest.approx(3.0 * 0.2)  # relu: the satisfied side adds nothing
    pen.ascend(torch.ones(2))  # nothing to move
    with pytest.raises(ValueError, match="penalty_weight"):
        Penalty(-1.0)


def test_fairness_constraint_is_the_composition_of_the_pieces():
    from fairprune_lite.constraints import Lagrangian, NuPI, Penalty, ProjectedAscent, SurrogateEstimate, WindowEstimate

    c = FairnessConstraint("equalized_odds", 0.05, window=3, margin=1.0, dual_lr=0.2, max_multiplier=4.0,
                           surrogate="hinge", temperature=2.0)
    assert isinstance(c.estimator, WindowEstimate) and c.estimator.window == 3 and c.margin == 1.0
    assert isinstance(c.relaxation, SurrogateEstimate) and c.surrogate == "hinge" and c.temperature == 2.0
    assert isinstance(c.multiplier, ProjectedAscent) and c.dual_lr == 0.2 and c.max_multiplier == 4.0
    assert isinstance(c.formulation, Lagrangian) and c.formulation.multiplier is c.multiplier
    assert c.multipliers is c.multiplier.value
    p = FairnessConstraint("accuracy_gap", mode="penalty", init_multiplier=3.0, penalty_weight=2.0)
    assert isinstance(p.formulation, Penalty) and p.multipliers.tolist() == [0.0, 0.0] and p.penalty_weight == 2.0
    if importlib.util.find_spec("cooper") is not None:
        assert isinstance(FairnessConstraint(dual="nupi").multiplier, NuPI)
    # the update runs through the pieces: the estimator's bound, the formulation's ascent
    logits, y, s = _batch(300, seed=6)
    c2 = FairnessConstraint("accuracy_gap", 0.0, dual_lr=1.0, margin=1.0, window=1)
    est = WindowEstimate("accuracy_gap", window=1, margin=1.0).observe(logits, y, s)
    expect = (est.values - (0.0 - est.se)).clamp(min=0)
    assert torch.equal(c2.update(logits, y, s), expect)
    assert list(c2.last_batch_stats()) == list(est.stats) == fairness.cell_stats("accuracy_gap", logits, y, s).tolist()


@pytest.mark.parametrize("kind", ["accuracy_gap", "demographic_parity", "equalized_odds"])
def test_one_definition_of_the_exact_values(kind):
    """constraint_values (float32 and float64 logits), the window's values and the safety test's
    observed value all come out of fairness.values_from_stats, bit for bit."""
    from fairprune_lite import certify

    logits, y, s = _batch(333, seed=7)
    st = fairness.cell_stats(kind, logits, y, s)
    for dtype in (torch.float32, torch.float64):
        got = fairness.constraint_values(kind, logits.to(dtype), y, s)
        assert got.dtype == dtype and torch.equal(got, fairness.values_from_stats(kind, st, dtype=dtype))
    v64 = fairness.values_from_stats(kind, st)
    # by hand: hits / n per group (per label cell for equalized odds), s=1 minus s=0
    pred = logits > 0
    hit = (pred == (y == 1)) if kind == "accuracy_gap" else pred
    cells = [y == 1, y == 0] if kind == "equalized_odds" else [torch.ones_like(y, dtype=torch.bool)]
    by_hand = []
    for cell in cells:
        g = (float(hit[cell & (s == 1)].sum()) / int((cell & (s == 1)).sum())
             - float(hit[cell & (s == 0)].sum()) / int((cell & (s == 0)).sum()))
        by_hand += [g, -g]
    assert v64.tolist() == by_hand
    assert torch.equal(FairnessConstraint(kind).batch_values(logits, y, s), v64)
    cert = certify.certify(kind, 0.5, logits, y, s)
    assert cert["value"] == float(v64.max())
    assert fairness.values_from_stats(kind, torch.zeros(8)) is None
    assert fairness.rates_defined(kind, [1, 1, 1, 1]) and not fairness.rates_defined(kind, [0, 0, 1, 1])


def _surrogate_loop(kind, u, logits, y, s, n):
    """The per-entry form of SurrogateEstimate.values (one scalar operation at a time)."""
    idx = (2 * s + y).long()
    t = (2 * y.to(logits.dtype) - 1) * logits if kind == "accuracy_gap" else logits
    a = logits.new_zeros(4).index_add(0, idx, u(t))
    b = logits.new_zeros(4).index_add(0, idx, u(-t))
    if kind == "equalized_odds":
        out = []
        for p_, m_ in ((3, 1), (2, 0)):
            out += [a[p_] / n[p_] + b[m_] / n[m_] - 1.0, a[m_] / n[m_] + b[p_] / n[p_] - 1.0]
        return torch.stack(out)
    a_p, a_m, b_p, b_m = a[2] + a[3], a[0] + a[1], b[2] + b[3], b[0] + b[1]
    n_p, n_m = n[2] + n[3], n[0] + n[1]
    return torch.stack([a_p / n_p + b_m / n_m - 1.0, a_m / n_m + b_p / n_p - 1.0])


@pytest.mark.parametrize("kind", ["accuracy_gap", "demographic_parity", "equalized_odds"])
def test_vectorised_surrogate_is_bit_identical_to_the_entrywise_form(kind):
    """The training loop's vectorised surrogate gives the same values and the same gradient of a
    Lagrangian term plus a task loss, bit for bit, as the entry-by-entry arithmetic."""
    from fairprune_lite.constraints import SurrogateEstimate

    g = torch.Generator().manual_seed(11)
    for trial in range(12):
        n_ex = int(torch.randint(16, 300, (1,), generator=g))
        y = (torch.rand(n_ex, generator=g) < 0.3).long()
        s = (torch.rand(n_ex, generator=g) < 0.7).long()
        n = torch.bincount(2 * s + y, minlength=4).tolist()
        if min(n) == 0:
            continue
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            logits = (3 * torch.randn(n_ex, generator=g)).to(dtype)
            for name in ("sigmoid", "hinge", "logistic"):
                est = SurrogateEstimate(kind, name, temperature=1.3)
                lam = torch.rand(4 if kind == "equalized_odds" else 2, generator=g).to(dtype)
                outs = []
                for vectorised in (True, False):
                    lg = logits.clone().requires_grad_(True)
                    v = est.values(lg, y, s, n) if vectorised else _surrogate_loop(kind, est.u, lg, y, s, n)
                    total = (lam * (v - 0.02)).sum() + torch.nn.functional.binary_cross_entropy_with_logits(
                        lg.float(), y.float()).to(dtype)
                    (gr,) = torch.autograd.grad(total, lg)
                    outs.append((v.detach(), gr))
                assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1]), (trial, dtype, name)


def test_surrogate_at_temperature_one_skips_only_a_multiplication_by_one():
    """At temperature 1 the surrogates are u(t) without the t * 1.0: the same values and gradients,
    bit for bit, as the general form; other temperatures still rescale."""
    import torch.nn.functional as F

    t = 4 * torch.randn(500, generator=torch.Generator().manual_seed(2))
    general = {"hinge": lambda v, i: torch.relu(1.0 + v * i), "logistic": lambda v, i: F.softplus(v * i) / math.log(2),
               "ramp": lambda v, i: torch.clamp(1.0 + v * i, 0.0, 1.0), "sigmoid": lambda v, i: torch.sigmoid(v * i)}
    for name, ref in general.items():
        for temp in (1.0, 2.5):
            a, b = t.clone().requires_grad_(True), t.clone().requires_grad_(True)
            ua, ub = fairness.surrogate(name, temperature=temp)(a), ref(b, 1.0 / temp)
            (ga,), (gb,) = torch.autograd.grad(ua.sum(), a), torch.autograd.grad(ub.sum(), b)
            assert torch.equal(ua, ub) and torch.equal(ga, gb), (name, temp)
