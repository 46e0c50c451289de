"""Tests of the training / evaluation loop: seeding, counting, NaN guard, fit / predict / evaluate, the
constraint protocol, progress bars during fit."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from fairprune_lite import train
from fairprune_lite.constraints import FairnessConstraint
from fairprune_lite.data import FairDataset
from fairprune_lite.masks import MaskScores, apply_masks, sparsity_report


class Lin(nn.Module):
    def __init__(self, d=5, h=8, bn=False):
        super().__init__()
        layers = [nn.Linear(d, h)] + ([nn.BatchNorm1d(h)] if bn else []) + [nn.ReLU(), nn.Linear(h, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).reshape(-1)


def toy(n=200, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    s = (torch.rand(n, generator=g) < 0.4).long()
    y = ((x[:, 0] + 0.8 * s + 0.3 * torch.randn(n, generator=g)) > 0.3).long()
    return FairDataset(x, y, s, name="toy")


def test_set_seed_repeats_and_rejects_bad_seed():
    train.set_seed(3)
    a = (torch.rand(3), np.random.rand(), __import__("random").random())
    train.set_seed(3)
    b = (torch.rand(3), np.random.rand(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    with pytest.raises(ValueError, match="seed"):
        train.set_seed(1.5)


def test_fit_learns_counts_and_is_deterministic():
    ds = toy()
    runs = []
    for _ in range(2):
        train.set_seed(0)
        model = Lin()
        c = train.PassCounter()
        hist = train.fit(model, train.make_loader(ds, 32, shuffle=True, seed=0), epochs=3, lr=0.1, counter=c)
        runs.append((model, hist, c))
    (m1, h1, c1), (m2, h2, _) = runs
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    n_batches = math.ceil(200 / 32)
    assert c1.iterations == c1.forward_passes == c1.backward_passes == 3 * n_batches == len(h1)
    assert c1.examples == 3 * 200
    assert h1[-1]["loss"] < h1[0]["loss"]
    logits, y, s = train.predict(m1, ds)
    assert logits.shape == (200,) and torch.equal(y, ds.y) and torch.equal(s, ds.s)
    assert ((logits > 0).long() == y).float().mean() > 0.8


def test_fit_steps_and_log_every_and_adam():
    model = Lin()
    hist = train.fit(model, train.make_loader(toy(), 50, shuffle=True), steps=10, lr=1e-2, optimizer="adam",
                     log_every=4)
    assert [r["step"] for r in hist] == [0, 4, 8, 9]
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        train.fit(model, train.make_loader(toy(), 50, shuffle=True), steps=1, epochs=1)
    with pytest.raises(ValueError, match="optimizer"):
        train.fit(model, train.make_loader(toy(), 50, shuffle=True), steps=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr"):
        train.fit(model, train.make_loader(toy(), 50, shuffle=True), steps=1, lr=-1.0)


def test_nan_guard_names_the_step():
    ds = toy()
    x = ds.x.clone()
    x[150] = float("nan")  # batch 3 (examples 150-199) holds it: NaN logits, NaN loss
    bad = FairDataset.__new__(FairDataset)
    bad.__dict__.update(ds.__dict__)
    bad.x = x
    with pytest.raises(FloatingPointError, match="step 3"):
        train.fit(Lin(), train.make_loader(bad, 50, shuffle=False), steps=5, lr=0.1)
    with pytest.raises(FloatingPointError, match="step 12"):
        train.check_finite(torch.tensor(float("inf")), 12)
    train.check_finite(torch.tensor(1.0), 0)


def test_fit_on_masked_model_trains_weights_not_scores_and_keeps_mask():
    ds = toy()
    model = Lin(bn=True)
    ms = MaskScores(model, 0.5)
    apply_masks(model, ms)
    before = [p.detach().clone() for _, p in ms.items()]
    masks0 = ms.binary_masks()
    train.fit(model, train.make_loader(ds, 32, shuffle=True), epochs=2, lr=0.1)
    assert all(torch.equal(a, p) for a, (_, p) in zip(before, ms.items(), strict=True))
    assert all(torch.equal(masks0[n], m) for n, m in ms.binary_masks().items())
    assert sparsity_report(model)["overall"] == pytest.approx(0.5, abs=1 / 48)
    bn = model.net[1]
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # updated in train mode


def test_evaluate_reports_fairness_loss_and_degradation():
    ds = toy()
    train.set_seed(0)
    dense = Lin()
    train.fit(dense, train.make_loader(ds, 32, shuffle=True), epochs=3, lr=0.1)
    pruned = Lin()
    pruned.load_state_dict(dense.state_dict())
    with torch.no_grad():
        pruned.net[0].weight[:, :3] = 0
    rep = train.evaluate(pruned, ds, dense_model=dense)
    logits, y, s = train.predict(pruned, ds)
    dl, _, _ = train.predict(dense, ds)
    pred, dpred = (logits > 0).long(), (dl > 0).long()
    acc = (pred == y).float().mean().item()
    assert rep["accuracy"] == pytest.approx(acc)
    accs = [(pred[s == g] == y[s == g]).float().mean().item() for g in (0, 1)]
    assert rep["accuracy_gap"] == pytest.approx(abs(accs[0] - accs[1]))
    assert rep["degradation"] == pytest.approx((dpred == y).float().mean().item() - acc)
    deg = [(dpred[s == g] == y[s == g]).float().mean().item() - accs[g] for g in (0, 1)]
    assert rep["degradation_gap"] == pytest.approx(abs(deg[0] - deg[1]))
    assert rep["loss"] == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float()).item())
    rep2 = train.evaluate(pruned, ds, dense_model=dpred)
    assert rep2["degradation_gap"] == rep["degradation_gap"]
    with pytest.raises(ValueError, match="dense_model"):
        train.evaluate(pruned, ds, dense_model=dpred[:10])


def test_evaluate_adds_feasibility_with_a_constraint():
    ds = toy(400)
    train.set_seed(0)
    model = Lin()
    train.fit(model, train.make_loader(ds, 32, shuffle=True), epochs=2, lr=0.1)
    plain = train.evaluate(model, ds)
    assert "feasibility" not in plain
    rep = train.evaluate(model, ds, constraint=FairnessConstraint("accuracy_gap", tau=0.02))
    f = rep["feasibility"]
    assert set(f) == {"metric", "value", "tau", "se", "met"}
    assert f["value"] == pytest.approx(plain["accuracy_gap"]) and f["met"] == (f["value"] <= 0.02)
    assert 0 < f["se"] < 0.2
    eo = train.evaluate(model, ds, constraint=FairnessConstraint("equalized_odds", tau=0.05))["feasibility"]
    assert eo["value"] == pytest.approx(plain["equalized_odds_difference"])
    with pytest.raises(ValueError, match="constraint"):
        train.evaluate(model, ds, constraint="accuracy_gap")


class _Stream:
    def __init__(self, tty):
        self.tty, self.text = tty, []

    def isatty(self):
        return self.tty

    def write(self, t):
        self.text.append(t)

    def flush(self):
        pass


@pytest.mark.parametrize("tty,quiet,bar", [(True, "", True), (False, "", False), (True, "1", False)])
def test_progress_bar_only_on_a_terminal(monkeypatch, tty, quiet, bar):
    stream = _Stream(tty)
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setenv("FAIRPRUNE_QUIET", quiet)
    assert train.progress_enabled(True) is bar and train.progress_enabled(False) is False
    ds = toy()
    train.fit(Lin(), train.make_loader(ds, 32, shuffle=True), steps=3, lr=0.1, progress=True)
    assert any("fit" in t for t in stream.text) is bar


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_pretrain_schedules_and_resume():
    """constant: one fit over one loader; cosine: one fit an epoch at the epoch's rate, resumable."""
    ds = toy()
    train.set_seed(0)
    a, b = Lin(), Lin()
    b.load_state_dict(a.state_dict())
    cost = train.pretrain(a, ds, epochs=2, lr=0.1, batch_size=32, seed=5)
    train.fit(b, train.make_loader(ds, 32, shuffle=True, seed=5), epochs=2, lr=0.1)
    assert torch.equal(_weights(a), _weights(b)) and cost["iterations"] == 2 * 7
    c, d = Lin(), Lin()
    d.load_state_dict(c.state_dict())
    seen = []
    train.pretrain(c, ds, epochs=3, lr=0.1, batch_size=32, seed=9, schedule="cosine", reseed=True,
                   on_epoch=lambda e, cost: seen.append((e, cost["iterations"])))
    for e in range(3):
        train.set_seed(9 + e)
        train.fit(d, train.make_loader(ds, 32, shuffle=True, seed=9 + e), epochs=1,
                  lr=0.1 * 0.5 * (1.0 + math.cos(math.pi * e / 3)))
    assert torch.equal(_weights(c), _weights(d)) and seen == [(0, 7), (1, 7), (2, 7)]
    e2 = Lin()
    e2.load_state_dict(d.state_dict())  # resuming at the last epoch changes nothing already done
    assert train.pretrain(e2, ds, epochs=3, lr=0.1, seed=9, schedule="cosine", start_epoch=3) == {}
    with pytest.raises(ValueError, match="schedule"):
        train.pretrain(Lin(), ds, epochs=1, lr=0.1, schedule="step")
    with pytest.raises(ValueError, match="start_epoch"):
        train.pretrain(Lin(), ds, epochs=2, lr=0.1, start_epoch=1)
