"""Tests of FairnessConstraint: projected dual ascent, the term's value and direction, penalty mode,
bad input, and its use inside fit / bifp (ablation switches really remove the fairness terms)."""

import pytest
import torch

fairness = pytest.importorskip("fairprune_lite.fairness")

from fairprune_lite import bilevel, train  # noqa: E402
from fairprune_lite.constraints import N_CONSTRAINTS, FairnessConstraint  # noqa: E402
from fairprune_lite.data import FairDataset  # noqa: E402


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
    assert float(t1) < float(t0)
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
    kw = dict(sparsity=0.5, steps=10, batch_size=64, seed=1, weight_decay=1e-4)
    ref = bilevel.bip(model, ds, **kw)
    c = FairnessConstraint("accuracy_gap", tau=0.0, init_multiplier=5.0, dual_lr=1.0)
    off = bilevel.bifp(model, ds, constraint=c, fair_mask=False, fair_weights=False, **kw)
    assert c.updates == 0 and c.multipliers.tolist() == [5.0, 5.0]  # untouched
    assert all(torch.equal(ref.masks[n], off.masks[n]) for n in ref.masks)
    for a, b in zip(ref.model.parameters(), off.model.parameters()):
        assert torch.equal(a, b)
    on = bilevel.bifp(model, ds, constraint=FairnessConstraint("accuracy_gap", tau=0.0, init_multiplier=5.0),
                      fair_mask=False, fair_weights=True, **kw)
    assert on.config["constraint"]["updates"] == 10
    assert any(not torch.equal(a, b) for a, b in zip(ref.model.parameters(), on.model.parameters()))
