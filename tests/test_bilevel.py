"""Tests of the BiFP / BiP solver and of the implicit gradient against exact hypergradients.

Exact references: (a) ridge regression on masked weights, theta*(m) by torch.linalg.solve and the
hypergradient by autograd through the solve; (b) logistic regression on masked weights, the lower
problem solved by Newton's method to machine precision and the hypergradient by the implicit
function theorem with the full Hessian (torch.func). The error of the "paper" approximation is
checked against the bound that follows from dropping the Hessian (see bilevel's docstring):

    d theta*/dm  exact  = -A^{-1} (diag(g) + D H diag(theta)),   A = D H D + gamma I >= gamma I
    d theta*/dm  approx = -diag(g) / gamma
    ||exact - approx|| <= ||H|| max|m|^2 ||g||_inf / gamma^2 + ||H|| max|m| ||theta||_inf / gamma

so ||IG_approx - IG_exact|| <= that bound times ||m * g_up||: first order in ||H|| / gamma.
"""


import dataclasses

import pytest
import torch
import torch.nn as nn
from torch.func import grad, hessian, jacrev

from fairprune_lite import bilevel, train
from fairprune_lite.bilevel import implicit_gradient, implicit_gradient_z
from fairprune_lite.constraints import FairnessConstraint
from fairprune_lite.data import FairDataset
from fairprune_lite.masks import MaskScores, apply_masks, weight_parameters
from fairprune_lite.models import SmallCNN

RATIOS = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0]  # gamma / ||H||


def paper_bifp(*args, **kwargs):
    """``bilevel.bifp`` under the paper's protocol unless the test names one: most tests here pin
    the solver's mechanics (steps, passes, selection, the IG), which the default protocol's splits
    and selection would change."""
    return bilevel.bifp(*args, **{"protocol": "paper", **kwargs})


def paper_bip(*args, **kwargs):
    """``bilevel.bip`` under the paper's protocol unless the test names one."""
    return bilevel.bip(*args, **{"protocol": "paper", **kwargs})


def _cmp(exact, approx):
    cos = torch.nn.functional.cosine_similarity(exact, approx, dim=0).item()
    return cos, ((approx - exact).norm() / exact.norm()).item()


def _bound(H, m, g_low, theta, m_g_up, gamma):
    h = torch.linalg.matrix_norm(H, ord=2).item()
    mm = m.abs().max().item()
    return (h * mm**2 * g_low.abs().max().item() / gamma**2 + h * mm * theta.abs().max().item() / gamma) * m_g_up.norm().item()


# ---------------------------------------------------------------------------------------------
# (a) closed form: ridge regression
# ---------------------------------------------------------------------------------------------
def _ridge_problem():
    g = torch.Generator().manual_seed(0)
    n, d = 40, 6
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    X2 = torch.randn(n, d, generator=g, dtype=torch.float64)
    y2 = X2 @ torch.randn(d, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    m = 0.5 + 0.5 * torch.rand(d, generator=g, dtype=torch.float64)  # relaxed mask in [0.5, 1]
    return X, y, X2, y2, m


def _ridge_case(gamma_ratio):
    X, y, X2, y2, m0 = _ridge_problem()
    n, d = X.shape
    H = X.T @ X / n
    gamma = gamma_ratio * torch.linalg.matrix_norm(H, ord=2).item()

    def l_low(z):
        return 0.5 * ((X @ z - y) ** 2).mean()

    def l_up(z):
        return 0.5 * ((X2 @ z - y2) ** 2).mean()

    def theta_star(m):
        D = torch.diag(m)
        return torch.linalg.solve(D @ H @ D + gamma * torch.eye(d, dtype=H.dtype), m * (X.T @ y) / n)

    m = m0.clone().requires_grad_(True)
    exact, = torch.autograd.grad(l_up(m * theta_star(m)), m)
    theta = theta_star(m0).detach()
    z = m0 * theta
    g_up, g_low = grad(l_up)(z), grad(l_low)(z)
    approx = {ig: implicit_gradient_z(g_up, theta, m0, gamma=gamma, g_low=g_low, ig=ig)
              for ig in bilevel.IG_VARIANTS}
    bound = _bound(H, m0, g_low, theta, m0 * g_up, gamma)
    return exact, approx, bound


@pytest.mark.parametrize("ratio", RATIOS)
def test_ridge_paper_ig_within_the_dropped_hessian_bound(ratio):
    exact, approx, bound = _ridge_case(ratio)
    err = (approx["paper"] - exact).norm().item()
    assert err <= bound * (1 + 1e-9) + 1e-12


def test_ridge_ig_holds_for_large_gamma_and_fails_for_small_gamma():
    rel = {r: _cmp(*(lambda c: (c[0], c[1]["paper"]))(_ridge_case(r)))[1] for r in RATIOS}
    cos_big, _ = _cmp(*(lambda c: (c[0], c[1]["paper"]))(_ridge_case(100.0)))
    # large gamma: error first order in ||H||/gamma, so 10x gamma gives ~10x smaller error
    assert rel[1000.0] < 0.2 * rel[100.0]
    assert rel[100.0] < 0.05 and cos_big > 0.999
    # small gamma: z* -> least-squares solution independent of m, exact hypergradient -> 0 while
    # the approximation tends to 2 g_up * theta != 0: relative error above 1
    assert rel[1e-3] > 1.0
    # first-order and repo variants: at the lower optimum theta = -m*g_low/gamma, so dropping the
    # correction (first_order) halves the hypergradient: relative error -> 1/2 for large gamma
    exact, approx, _ = _ridge_case(1000.0)
    assert _cmp(exact, approx["first_order"])[1] == pytest.approx(0.5, abs=0.05)
    assert _cmp(exact, approx["paper"])[1] < 0.1 * _cmp(exact, approx["first_order"])[1]


# ---------------------------------------------------------------------------------------------
# (b) nonlinear: logistic regression, lower level by Newton, exact IG by the implicit function thm
# ---------------------------------------------------------------------------------------------
def _logistic_case(gamma_ratio):
    g = torch.Generator().manual_seed(1)
    n, d = 60, 5
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(2 * X @ w)).double() * 2 - 1
    Xu = torch.randn(n, d, generator=g, dtype=torch.float64)
    yu = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(2 * Xu @ w)).double() * 2 - 1
    m0 = 0.5 + 0.5 * torch.rand(d, generator=g, dtype=torch.float64)

    def l_low(z):
        return torch.nn.functional.softplus(-y * (X @ z)).mean()

    def l_up(z):
        return torch.nn.functional.softplus(-yu * (Xu @ z)).mean()

    h_scale = torch.linalg.matrix_norm(X.T @ X / n, ord=2).item() / 4  # sup of ||H||: sigmoid' <= 1/4
    gamma = gamma_ratio * h_scale

    def obj(th, m):
        return l_low(m * th) + 0.5 * gamma * (th ** 2).sum()

    th = torch.zeros(d, dtype=torch.float64)
    for _ in range(100):  # Newton: the objective is gamma-strongly convex
        gr = grad(obj)(th, m0)
        if gr.norm() < 1e-14:
            break
        th = th - torch.linalg.solve(hessian(obj)(th, m0), gr)
    assert grad(obj)(th, m0).norm() < 1e-10
    d_theta = -torch.linalg.solve(hessian(obj, argnums=0)(th, m0), jacrev(grad(obj, argnums=0), argnums=1)(th, m0))
    z = m0 * th
    g_up, g_low = grad(l_up)(z), grad(l_low)(z)
    exact = th * g_up + d_theta.T @ (m0 * g_up)
    approx = {ig: implicit_gradient_z(g_up, th, m0, gamma=gamma, g_low=g_low, ig=ig) for ig in bilevel.IG_VARIANTS}
    bound = _bound(hessian(l_low)(z), m0, g_low, th, m0 * g_up, gamma)
    return exact, approx, bound


@pytest.mark.parametrize("ratio", RATIOS)
def test_logistic_paper_ig_within_the_dropped_hessian_bound(ratio):
    exact, approx, bound = _logistic_case(ratio)
    assert (approx["paper"] - exact).norm().item() <= bound * (1 + 1e-9) + 1e-12


def test_logistic_ig_trend_over_gamma():
    rel = {}
    for r in (0.1, 100.0, 1000.0):
        exact, approx, _ = _logistic_case(r)
        rel[r] = _cmp(exact, approx["paper"])
    assert rel[1000.0][1] < 0.2 * rel[100.0][1]  # first order in 1/gamma
    assert rel[100.0][1] < 0.05 and rel[100.0][0] > 0.999
    assert rel[0.1][1] > rel[100.0][1] * 10


# ---------------------------------------------------------------------------------------------
# the one-backward form used by the solver equals the formula in z
# ---------------------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self, d=6, h=8, bn=False):
        super().__init__()
        layers = [nn.Linear(d, h)] + ([nn.BatchNorm1d(h)] if bn else []) + [nn.Tanh(), nn.Linear(h, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).reshape(-1)


@pytest.mark.parametrize("structured", [False, True])
def test_one_backward_form_matches_formula_in_z(structured):
    torch.manual_seed(0)
    model = Net()
    x, y = torch.randn(32, 6), (torch.rand(32) < 0.5).long()
    ms = MaskScores(model, 0.4, structured=structured, layers=["net.0", "net.2"] if not structured else ["net.0"])
    apply_masks(model, ms)
    names = ms.names
    thetas = [weight_parameters(model)[n] for n in names]
    scores = [ms.score(n) for n in names]
    loss = train.task_loss(model(x), y)
    gs = torch.autograd.grad(loss, scores + thetas)
    hyper = implicit_gradient(dict(zip(names, gs[:len(names)], strict=True)),
                              dict(zip(names, gs[len(names):], strict=True)), gamma=0.7)
    # reference: g_z by differentiating the same function of z directly
    masks = ms.binary_masks()
    zs = [(masks[n] * t).detach().requires_grad_(True) for n, t in zip(names, thetas, strict=True)]

    def f_of_z(zs_):
        out = x
        for i, layer in enumerate(model.net):
            nm = f"net.{i}"
            if nm in names:
                z = zs_[names.index(nm)]
                out = torch.nn.functional.linear(out, z, layer.bias)
            else:
                out = layer(out)
        return train.task_loss(out.reshape(-1), y)

    g_z = torch.autograd.grad(f_of_z(zs), zs)
    for n, t, gz in zip(names, thetas, g_z, strict=True):
        ref = implicit_gradient_z(gz, t.detach(), masks[n], gamma=0.7)
        if structured:
            ref = ref.sum(1)
        assert torch.allclose(hyper[n], ref, atol=1e-6), n
    # first_order and repo from the same outputs
    fo = implicit_gradient(dict(zip(names, gs[:len(names)], strict=True)), None, gamma=0.7, ig="first_order")
    assert all(torch.equal(fo[n], gs[i]) for i, n in enumerate(names))
    with pytest.raises(ValueError, match="gamma"):
        implicit_gradient(fo, None, gamma=0.0)
    with pytest.raises(ValueError, match="ig"):
        implicit_gradient(fo, None, gamma=1.0, ig="exact")


# ---------------------------------------------------------------------------------------------
# solver
# ---------------------------------------------------------------------------------------------
def _data(n=256, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    s = (torch.rand(n, generator=g) < 0.3).long()
    y = ((x[:, 0] + 0.7 * s + 0.3 * torch.randn(n, generator=g)) > 0.3).long()
    return FairDataset(x, y, s, name="toy")


def _pretrained(ds, seed=0, bn=True):
    train.set_seed(seed)
    m = Net(bn=bn)
    train.fit(m, train.make_loader(ds, 64, shuffle=True, seed=seed), epochs=3, lr=0.1)
    return m


@pytest.mark.parametrize("kw", [
    dict(sparsity=0.7),
    dict(sparsity=0.5, structured=True),
    dict(sparsity=0.6, scope="layer", schedule="cubic"),
    dict(sparsity=0.7, update="joint", ig="repo"),
    dict(sparsity=0.3, mask_init="uniform", ig="first_order", lower_steps=2),
])
def test_solver_reaches_exact_sparsity_and_counts(kw):
    ds = _data()
    model = _pretrained(ds)
    dense = [p.detach().clone() for p in model.parameters()]
    res = paper_bip(model, train.make_loader(ds, 64, shuffle=True), steps=12, weight_decay=1e-4, **kw)
    assert all(torch.equal(a, p) for a, p in zip(dense, model.parameters(), strict=True))  # caller's model untouched
    ms = MaskScores(model, kw["sparsity"], structured=kw.get("structured", False), scope=kw.get("scope", "global"))
    units = {n: (m.flatten(1)[:, 0] if ms.structured else m) for n, m in res.masks.items()}
    if kw.get("scope") == "layer":
        for u in units.values():
            assert int((u == 0).sum()) == round(kw["sparsity"] * u.numel())
    else:
        total = sum(u.numel() for u in units.values())
        assert sum(int((u == 0).sum()) for u in units.values()) == round(kw["sparsity"] * total)
    assert set(res.masks) == set(ms.names)
    for n, mod in dict(res.model.named_modules()).items():
        if n in res.masks:
            assert bool((mod.weight.detach()[res.masks[n] == 0] == 0).all())  # baked: pruned weights are 0
    per_step = 1 if kw.get("update") == "joint" else kw.get("lower_steps", 1) + 1
    recal = 4 if kw.get("structured") else 0  # structured: one BN recalibration pass over the 4 batches
    assert res.cost["forward_passes"] == 12 * per_step + recal
    assert res.cost["iterations"] == 12 and len(res.history) == 12
    if kw.get("schedule") == "cubic":
        sp = [h["sparsity"] for h in res.history]
        # consecutive pairs (strict=False: sp[1:] is one shorter)
        assert sp[0] == 0 and all(a <= b for a, b in zip(sp, sp[1:], strict=False)) and sp[-1] == kw["sparsity"]
    res.to_dict()


def test_solver_is_deterministic_under_seed():
    ds = _data()
    model = _pretrained(ds)
    runs = [paper_bip(model, ds, sparsity=0.6, steps=15, batch_size=64, seed=3, weight_decay=1e-4) for _ in range(2)]
    assert all(torch.equal(runs[0].masks[n], runs[1].masks[n]) for n in runs[0].masks)
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [h["upper_loss"] for h in runs[0].history] == [h["upper_loss"] for h in runs[1].history]


def test_solver_moves_the_mask():
    # the scores are trained: after enough steps the mask differs from magnitude pruning
    ds = _data()
    model = _pretrained(ds)
    res = paper_bip(model, ds, sparsity=0.6, steps=60, beta=1.0, batch_size=64, weight_decay=1e-4)
    start = MaskScores(model, 0.6).binary_masks()
    assert any(not torch.equal(start[n], res.masks[n]) for n in start)


def test_nan_guard_and_bad_inputs():
    ds = _data()
    model = _pretrained(ds)
    bad = FairDataset.__new__(FairDataset)
    bad.__dict__.update(ds.__dict__)
    bad.x = ds.x.clone()
    bad.x[:] = float("nan")
    with pytest.raises(FloatingPointError, match="step 0"):
        paper_bip(model, train.make_loader(bad, 64, shuffle=False), sparsity=0.5, steps=3)
    loader = train.make_loader(ds, 64, shuffle=True)
    for kw, word in [(dict(sparsity=1.0), "sparsity"), (dict(sparsity=-0.1), "sparsity"),
                     (dict(sparsity=0.5, gamma=0), "gamma"), (dict(sparsity=0.5, ig="hessian"), "ig"),
                     (dict(sparsity=0.5, schedule="linear"), "schedule"),
                     (dict(sparsity=0.5, update="joint", lower_steps=2), "lower_steps"),
                     (dict(sparsity=0.5, mask_init="random"), "mask_init"),
                     (dict(sparsity=0.5, alpha=-1.0), "alpha")]:
        with pytest.raises(ValueError, match=word):
            paper_bip(model, loader, steps=2, **kw)
    with pytest.raises(ValueError, match="steps or epochs"):
        paper_bip(model, loader, sparsity=0.5, steps=2, epochs=1)
    with pytest.raises(ValueError, match="no field"):
        paper_bip(model, loader, sparsity=0.5, stepz=2)
    # the defaults live once, in the config: the solver and the registry read the same values
    from fairprune_lite import pruners

    opts = {p.name: p.default for p in __import__("inspect").signature(pruners.METHODS["bifp"].fn).parameters.values()
            if p.kind is p.KEYWORD_ONLY}
    assert opts["gamma"] == bilevel.DEFAULTS.gamma and opts["steps"] == bilevel.DEFAULTS.steps
    assert opts["update"] == bilevel.DEFAULTS.update and "fair_mask" in opts
    assert "fair_mask" not in pruners.METHODS["bip"].options()


# ---------------------------------------------------------------------------------------------
# the constraint does its job, and the ablation switches remove it
# ---------------------------------------------------------------------------------------------
def _two_rules(n, seed):
    """Majority s=1 (85%): y = 1(x0 > 0); minority s=0: y = 1(x1 > 0); s itself is not an input.

    The loss-optimal model follows x0 (accuracy ~0.89, gap ~0.35), while a model with equal
    weight on x0 and x1 is 75% accurate on both groups (gap 0): a fair model exists within two
    weights, so it exists at any sparsity that keeps a few, and only the constraint can find it.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    s = (torch.rand(n, generator=g) < 0.85).long()
    y = torch.where(s == 1, x[:, 0] > 0, x[:, 1] > 0).long()
    return FairDataset(x, y, s, name="two_rules")


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x).reshape(-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bifp_closes_the_gap_that_bip_leaves(seed):
    from fairprune_lite.constraints import FairnessConstraint

    tr, va, te = _two_rules(2000, seed), _two_rules(1000, 100 + seed), _two_rules(4000, 200 + seed)
    train.set_seed(seed)
    dense = Mlp()
    train.fit(dense, train.make_loader(tr, 64, shuffle=True, seed=seed), epochs=5, lr=0.05)
    kw = dict(sparsity=0.8, steps=300, batch_size=64, seed=seed, alpha=0.05, update="joint")
    bip = train.evaluate(paper_bip(dense, va, **kw).model, te)
    c = FairnessConstraint("accuracy_gap", tau=0.02)  # library defaults otherwise
    res = paper_bifp(dense, va, constraint=c, **kw)
    fair = train.evaluate(res.model, te)
    assert bip["accuracy_gap"] > 0.25  # the premise: pruning without the constraint is unfair
    assert fair["accuracy_gap"] < bip["accuracy_gap"] - 0.2
    assert fair["accuracy_gap"] < 0.1
    # not by collapsing to a constant: well above the majority baseline (~0.5 here)
    assert fair["accuracy"] > fair["majority_baseline"] + 0.15
    assert res.history[-1]["multipliers"][0] > 0  # the active side is s+ ahead of s-


def test_ablation_switches_remove_the_term_from_their_level():
    """Joint update, sparsity 0 (so the baked weights are theta), one step, one multiplier already
    positive ([5, 0]: with the sigmoid surrogate equal multipliers cancel exactly, so the term
    must be one-sided to be real): w/o w leaves the weight step equal to BiP's, w/o m
    (first-order IG) the score step; where the term acts, it moves things far above rounding."""
    from fairprune_lite.constraints import FairnessConstraint

    ds = _two_rules(256, 0)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.05)
    kw = dict(sparsity=0.0, steps=1, batch_size=64, seed=0, update="joint", ig="first_order", beta=0.5)

    def run(fm, fw):
        c = FairnessConstraint("accuracy_gap", tau=0.0, init_multiplier=[5.0, 0.0])
        return paper_bifp(dense, ds, constraint=c, fair_mask=fm, fair_weights=fw, **kw)

    ref = paper_bip(dense, ds, **kw)
    diff = lambda a, b: max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))  # noqa: E731
    weights = lambda r: [p.detach() for p in r.model.parameters()]  # noqa: E731
    scores = lambda r: [r.scores[n] for n in sorted(r.scores)]  # noqa: E731
    wo_w, wo_m, both, off = run(True, False), run(False, True), run(True, True), run(False, False)
    moved = 1e-4  # rounding of one step is ~1e-8; the term moves weights ~1e-3, scores ~1e-2
    assert diff(weights(wo_w), weights(ref)) == 0 and diff(scores(wo_w), scores(ref)) > moved
    assert diff(scores(wo_m), scores(ref)) == 0 and diff(weights(wo_m), weights(ref)) > moved
    assert diff(weights(both), weights(ref)) > moved and diff(scores(both), scores(ref)) > moved
    assert diff(weights(off), weights(ref)) == 0 and diff(scores(off), scores(ref)) == 0 and off.method == "bip"


def test_dual_every_measures_on_full_passes_and_counts_them():
    from fairprune_lite.constraints import FairnessConstraint

    ds = _two_rules(256, 0)
    dense = Mlp()
    c = FairnessConstraint("accuracy_gap", tau=0.0, dual_lr=1.0)
    res = paper_bifp(dense, ds, sparsity=0.5, steps=6, batch_size=64, update="joint", constraint=c, dual_every=3)
    assert c.updates == 2
    # 6 training batches + 2 evaluation passes over 256 examples (one batch of 1024 each)
    assert res.cost["forward_passes"] == 6 + 2 and res.cost["examples"] == 6 * 64 + 2 * 256
    with pytest.raises(ValueError, match="dual_every"):
        paper_bifp(dense, ds, sparsity=0.5, steps=2, constraint=c, dual_every=0)


def test_batches_missing_a_group_do_not_stop_the_run():
    """The last batch of a split (or any small batch) can lack a group: the term and the multiplier
    step skip it (counted) and the history logs its gap as None."""
    from fairprune_lite.constraints import FairnessConstraint

    ds = _two_rules(130, 0)
    order = torch.argsort(ds.s, descending=True, stable=True)  # batches: all s=1, mixed, all s=0
    ds = FairDataset(ds.x[order], ds.y[order], ds.s[order], name="sorted")
    assert int(ds.s[:64].sum()) == 64 and 0 < int(ds.s[64:128].sum()) < 64 and int(ds.s[128:].sum()) == 0
    c = FairnessConstraint("accuracy_gap", tau=0.0, window=1, init_multiplier=1.0)
    res = paper_bifp(Mlp(), train.make_loader(ds, 64, shuffle=False), sparsity=0.5, steps=3, update="joint",
                       constraint=c)
    assert [h["gap"] is None for h in res.history] == [True, False, True]
    assert c.skipped_terms == 2 and c.skipped_updates == 2 and c.updates == 1


# ---------------------------------------------------------------------------------------------
# one step by hand: pins the implicit gradient, gamma, the second backward, the clamp and the
# joint update's weight gradients inside the solver
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("update,fm,fw", [("alternating", False, True), ("alternating", True, True),
                                          ("joint", True, False), ("joint", True, True)])
def test_one_solver_step_equals_the_formula_by_hand(update, fm, fw):
    import copy

    from fairprune_lite.constraints import FairnessConstraint

    ds = _two_rules(256, 0)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.05)
    hp = dict(alpha=0.1, beta=5.0, gamma=0.05, weight_decay=1e-3, momentum=0.9)
    make_c = lambda: FairnessConstraint("accuracy_gap", tau=0.0, init_multiplier=[5.0, 0.0])  # noqa: E731
    loader = train.make_loader(ds, 64, shuffle=False)
    res = paper_bifp(dense, loader, sparsity=0.5, steps=1, update=update, fair_mask=fm, fair_weights=fw,
                       constraint=make_c(), ig="paper", **hp)

    # the same step written out with plain autograd
    m = copy.deepcopy(dense)
    ms = MaskScores(m, 0.5)
    apply_masks(m, ms)
    c = make_c()
    params = list(m.parameters())
    thetas = weight_parameters(m)
    w_opt = torch.optim.SGD(params, lr=hp["alpha"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    batches = iter(loader)

    def losses(x, y, s):
        logits = m(x)
        task = train.task_loss(logits, y)
        term = c.term(logits, y, s)
        return (task + term if fm else task), (task + term if fw else task)

    if update == "alternating":
        for _, p in ms.items():
            p.requires_grad_(False)
        _, low = losses(*next(batches))
        w_opt.zero_grad()
        low.backward()
        w_opt.step()
        for _, p in ms.items():
            p.requires_grad_(True)
    up, low = losses(*next(batches))
    names = ms.names
    S = [ms.score(n) for n in names]
    T = [thetas[n] for n in names]
    gs_up = torch.autograd.grad(up, S, retain_graph=True)
    gt_up = torch.autograd.grad(up, T, retain_graph=True)
    gt_low = torch.autograd.grad(low, T, retain_graph=True)
    expect = {n: (s - hp["beta"] * (g - a * b / hp["gamma"])).clamp(0, 1).detach()
              for n, s, g, a, b in zip(names, S, gs_up, gt_up, gt_low, strict=True)}
    raw = {n: (s - hp["beta"] * (g - a * b / hp["gamma"])).detach()
           for n, s, g, a, b in zip(names, S, gs_up, gt_up, gt_low, strict=True)}
    assert any(bool(((r < 0) | (r > 1)).any()) for r in raw.values())  # the clamp has work to do
    for n in names:
        assert torch.allclose(res.scores[n], expect[n], atol=1e-6, rtol=1e-5), n
    if update == "joint":  # the weight step follows the LOWER loss
        g_low = torch.autograd.grad(low, params)
        new = [p.detach() - hp["alpha"] * (g + hp["weight_decay"] * p.detach())
               for p, g in zip(params, g_low, strict=True)]
        got = res.model.state_dict()
        for (pn, _), q in zip(m.named_parameters(), new, strict=True):
            if pn.endswith(".parametrizations.weight.original"):
                layer = pn[: -len(".parametrizations.weight.original")]
                pn, q = layer + ".weight", q * res.masks[layer]
            assert torch.allclose(got[pn], q, atol=1e-6, rtol=1e-5), pn


@pytest.mark.parametrize("update", ["alternating", "joint"])
def test_bifp_closes_the_gap_in_both_update_modes(update):
    """The default update (alternating) is held to the same standard as joint (seed 0)."""
    from fairprune_lite.constraints import FairnessConstraint

    tr, va, te = _two_rules(2000, 0), _two_rules(1000, 100), _two_rules(4000, 200)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(tr, 64, shuffle=True, seed=0), epochs=5, lr=0.05)
    kw = dict(sparsity=0.8, steps=300, batch_size=64, seed=0, alpha=0.05, update=update)
    bip = train.evaluate(paper_bip(dense, va, **kw).model, te)
    fair = train.evaluate(paper_bifp(dense, va, constraint=FairnessConstraint("accuracy_gap", tau=0.02), **kw).model,
                          te)
    assert bip["accuracy_gap"] > 0.25
    assert fair["accuracy_gap"] < 0.1 and fair["accuracy"] > fair["majority_baseline"] + 0.15


# ---------------------------------------------------------------------------------------------
# structured BiFP on a BatchNorm network keeps every layer
# ---------------------------------------------------------------------------------------------
def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    s = (torch.rand(n, generator=g) < 0.3).long()
    y = (x[:, :, 2:6, 2:6].mean((1, 2, 3)) + 0.2 * s > 0).long()
    return FairDataset(x, y, s, name="images")


@pytest.mark.parametrize("sparsity", [0.79, 0.893])
def test_structured_bifp_on_batchnorm_keeps_every_layer(sparsity):
    """Global channel scope on conv-BN blocks: BN gates give kept channels a real score gradient,
    scores start from each filter's norm relative to its own layer, ties go by magnitude."""
    tr, va = _images(600, 0), _images(400, 1)
    train.set_seed(0)
    net = SmallCNN(1, width=8)
    train.fit(net, train.make_loader(tr, 64, shuffle=True), epochs=3, lr=0.05)
    res = paper_bifp(net, va, sparsity=sparsity, structured=True, steps=150, batch_size=64,
                       constraint=FairnessConstraint("accuracy_gap", tau=0.02))
    kept = {n: int(m.flatten(1)[:, 0].sum()) for n, m in res.masks.items()}
    assert all(k > 0 for k in kept.values()), kept
    te = train.evaluate(res.model, _images(1000, 2))
    assert te["accuracy"] > te["majority_baseline"] + 0.1, te


def test_holdout_selection_keeps_the_best_safe_iterate():
    ds = _two_rules(600, 0)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=3, lr=0.05)
    c = FairnessConstraint("accuracy_gap", tau=0.05, margin=1.0)
    res = paper_bifp(dense, ds, sparsity=0.8, steps=40, batch_size=64, update="joint", constraint=c,
                       holdout=0.25, select_every=10)
    sel = res.config["selection"]
    assert sel["held_out"] == 150 and sel["step"] in (9, 19, 29, 39)
    # 40 training batches of the 450 kept examples (the cycle is endless: range(40) cuts it, strict=False),
    # plus 4 evaluation passes of the held-out 150
    assert res.cost["examples"] == sum(len(b[1]) for b, _ in zip(train.cycle(train.make_loader(
        train.subset(ds, torch.arange(450)), 64, shuffle=False)), range(40), strict=False)) + 4 * 150
    # the returned model is the selected iterate: its held-out accuracy is the recorded one
    perm = torch.randperm(600, generator=torch.Generator().manual_seed(0))
    held = train.subset(ds, perm[:150])
    rep = train.evaluate(res.model, held)
    assert rep["accuracy"] == pytest.approx(sel["accuracy"])
    with pytest.raises(ValueError, match="holdout"):
        paper_bifp(dense, ds, sparsity=0.5, steps=2, constraint=c, holdout=1.0)


def test_recalibrate_bn_measures_the_final_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1), nn.Flatten(0))
    x = torch.randn(64, 4) * 3 + 1
    with torch.no_grad():
        net[1].running_mean.fill_(100.0)
        net[1].running_var.fill_(1e-6)  # as for a channel that was masked to 0 for a while
    net.eval()
    n = bilevel.recalibrate_bn(net, [(x[:32], torch.zeros(32), torch.zeros(32)),
                                     (x[32:], torch.zeros(32), torch.zeros(32))])
    h = net[0](x).detach()
    assert n == 1 and not net.training and net[1].momentum == 0.1
    assert torch.allclose(net[1].running_mean, h.mean(0), atol=1e-5)  # the pass's average
    # structured BiFP recalibrates by default and counts the pass
    va = _images(200, 1)
    cnn = SmallCNN(1, width=4)
    res = paper_bifp(cnn, va, sparsity=0.5, structured=True, steps=3, batch_size=64,
                       constraint=FairnessConstraint("accuracy_gap", tau=0.02))
    assert res.config["recalibrate_bn"] is True and res.cost["forward_passes"] == 3 * 2 + 4
    res = paper_bifp(cnn, va, sparsity=0.5, steps=3, batch_size=64,
                       constraint=FairnessConstraint("accuracy_gap", tau=0.02))
    assert res.config["recalibrate_bn"] is False and res.cost["forward_passes"] == 3 * 2


# ---------------------------------------------------------------------------------------------
# solver v3: selection, floor, certificate, mask level, records
# ---------------------------------------------------------------------------------------------
class _Const(nn.Module):
    """Predicts from a fixed table: logits[i] for the i-th example of x (x holds the index)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(logits, dtype=torch.float32))
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.table[x[:, 0].long()] + 0 * self.w


def _select_state(model, constraint, floor=None):
    from types import SimpleNamespace
    return SimpleNamespace(scores_grad=lambda flag: None, recal=False, model=model, counter=train.PassCounter(),
                           constraint=constraint, floor_majority=floor, scores=[])


def _held(y, s):
    x = torch.arange(len(y)).float().unsqueeze(1)
    return FairDataset(x, torch.as_tensor(y), torch.as_tensor(s), name="held")


def _logits_for(y, s, wrong):
    """+-1 logits: correct except at the indices in ``wrong``."""
    y = torch.as_tensor(y)
    pred = y.clone()
    pred[list(wrong)] = 1 - pred[list(wrong)]
    return pred.float() * 2 - 1


def test_select_step_ranks_feasible_then_smallest_violation_not_the_last_iterate():
    y = [1, 0] * 20
    s = [1] * 20 + [0] * 20
    held = _held(y, s)
    c = FairnessConstraint("accuracy_gap", tau=0.1)
    best = {}
    # iterate A: feasible (one error in each group), accuracy 0.95
    bilevel.select_step(_select_state(_Const(_logits_for(y, s, [0, 20])), c), 0, held, best)
    # iterate B: feasible but less accurate (two errors in each group): must not replace A
    bilevel.select_step(_select_state(_Const(_logits_for(y, s, [0, 1, 20, 21])), c), 1, held, best)
    assert best["step"] == 0 and best["passed"]
    # two infeasible iterates: the smaller violation is kept, not the larger or the last
    best = {}
    bilevel.select_step(_select_state(_Const(_logits_for(y, s, [0, 1, 2, 3])), c), 0, held, best)   # gap 0.2
    bilevel.select_step(_select_state(_Const(_logits_for(y, s, [0, 1, 2, 3, 4, 5])), c), 1, held, best)  # 0.3
    assert best["step"] == 0 and not best["passed"] and best["value"] == pytest.approx(0.2)


def test_select_step_margin_lowers_the_bar():
    """value <= tau but value + margin * SE > tau: not passed (a flipped sign would pass it)."""
    y = [1, 0] * 20
    s = [1] * 20 + [0] * 20
    held = _held(y, s)
    logits = _logits_for(y, s, [0])  # gap 0.05 <= tau 0.1, SE ~0.05
    best = {}
    bilevel.select_step(_select_state(_Const(logits), FairnessConstraint("accuracy_gap", tau=0.1, margin=2.0)),
                        0, held, best)
    assert best["feasible"] is False
    best = {}
    bilevel.select_step(_select_state(_Const(logits), FairnessConstraint("accuracy_gap", tau=0.1)), 0, held, best)
    assert best["feasible"] is True


def test_select_step_floor_refuses_a_near_constant_iterate():
    y = [1] * 30 + [0] * 10
    s = [1, 0] * 20
    held = _held(y, s)
    c = FairnessConstraint("accuracy_gap", tau=0.1)
    best = {}
    constant = torch.ones(40)  # accuracy 0.75 = majority, gap 0: fair because constant
    accurate = _logits_for(y, s, [0, 1, 2, 3])  # accuracy 0.9, gap 0.1
    bilevel.select_step(_select_state(_Const(constant), c, floor=0.77), 0, held, best)
    bilevel.select_step(_select_state(_Const(accurate), c, floor=0.77), 1, held, best)
    assert best["step"] == 1 and best["passed"] and best["floor_ok"]
    best = {}
    bilevel.select_step(_select_state(_Const(constant), c, floor=0.77), 0, held, best)
    assert not best["passed"] and best["feasible"] and not best["floor_ok"]


def test_dual_passes_never_read_the_selection_holdout(monkeypatch):
    ds = _two_rules(400, 0)
    dense = Mlp()
    seen = []
    orig = bilevel.dual_step

    def spy(st, step, logits, y, s, dual_data):
        seen.append(dual_data)
        return orig(st, step, logits, y, s, dual_data)
    monkeypatch.setattr(bilevel, "dual_step", spy)
    res = paper_bifp(dense, ds, sparsity=0.5, steps=4, batch_size=64, holdout=0.25, dual_every=2,
                       constraint=FairnessConstraint("accuracy_gap", tau=0.05))
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    held_rows = {tuple(r.tolist()) for r in ds.x[perm[:100]]}
    dual_rows = {tuple(r.tolist()) for r in seen[0].x} if hasattr(seen[0], "x") else None
    assert dual_rows is not None and len(dual_rows) == 300 and not (dual_rows & held_rows)
    assert res.config["split_sizes"] == {"fit": 300, "selection": 100, "safety": None}


def test_selected_iterate_on_batchnorm_is_the_returned_model():
    """Bug (1): with holdout selection and BN recalibration the returned model must be the one
    evaluated at selection (its held-out accuracy is the recorded one)."""
    tr, va = _images(400, 0), _images(400, 1)
    train.set_seed(0)
    net = SmallCNN(1, width=4)
    train.fit(net, train.make_loader(tr, 64, shuffle=True), epochs=2, lr=0.05)
    res = paper_bifp(net, va, sparsity=0.5, structured=True, steps=20, batch_size=64, holdout=0.25,
                       select_every=5, constraint=FairnessConstraint("accuracy_gap", tau=0.05))
    assert res.config["recalibrate_bn"] is True
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    held = train.subset(va, perm[:100])
    assert train.evaluate(res.model, held)["accuracy"] == pytest.approx(res.config["selection"]["accuracy"])


def test_structured_masks_gate_batchnorm_in_the_returned_model():
    """A pruned channel contributes nothing after its BatchNorm (bias and shift gated too)."""
    tr = _images(300, 0)
    train.set_seed(0)
    net = SmallCNN(1, width=4)
    train.fit(net, train.make_loader(tr, 64, shuffle=True), epochs=1, lr=0.05)
    res = paper_bifp(net, tr, sparsity=0.5, structured=True, steps=3, batch_size=64,
                       constraint=FairnessConstraint("accuracy_gap", tau=0.05))
    mods = dict(res.model.named_modules())
    checked = 0
    for name, bn_name in bilevel.MaskScores(net, 0.5, structured=True, gate_norm=True).norms.items():
        pruned = res.masks[name].flatten(1)[:, 0] == 0
        bn = mods[bn_name]
        out = bn.eval()(torch.randn(8, bn.num_features, 3, 3))
        assert bool((out[:, pruned] == 0).all()), name
        checked += int(pruned.sum())
    assert checked > 0


def test_prune_keeps_the_solvers_constraint_record():
    """Bug (2): the result's constraint record is the solver's (multipliers it ended with)."""
    from fairprune_lite import pruners
    from fairprune_lite.data import Splits
    ds = _two_rules(600, 0)
    splits = Splits(ds, ds, ds)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.05)
    res = pruners.prune("bifp", dense, splits, sparsity=0.7, steps=10, protocol="paper",
                        constraint=FairnessConstraint("accuracy_gap", tau=0.0))
    rec = res.config["constraint"]
    assert rec["updates"] == 10
    assert rec["multipliers"] == res.history[-1]["multipliers"] and any(v > 0 for v in rec["multipliers"])


def test_normalized_score_steps_move_the_mask_and_record_churn():
    ds = _two_rules(600, 0)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.05)
    c = FairnessConstraint("accuracy_gap", tau=0.02)
    clamped = paper_bifp(dense, ds, sparsity=0.8, steps=30, batch_size=64, constraint=c)
    normal = paper_bifp(dense, ds, sparsity=0.8, steps=30, batch_size=64, constraint=c, score_update="normalized",
                          beta=0.01)
    start = MaskScores(dense, 0.8).binary_masks()
    changed = sum(int((normal.masks[n].bool() & ~start[n].bool()).sum()) for n in start)
    assert normal.config["mask_churn"]["changed_units"] == changed > 0
    assert normal.config["swaps_total"] == sum(h["swaps"] or 0 for h in normal.history) > 0
    assert normal.config["mask_churn"]["overall"] > clamped.config["mask_churn"]["overall"]


def test_rank_scores_keep_the_first_mask():
    model = Mlp()
    ms = MaskScores(model, 0.7)
    before = ms.binary_masks()
    bilevel.rank_scores_(ms)
    after = ms.binary_masks()
    assert all(torch.equal(before[n], after[n]) for n in before)
    flat = torch.cat([ms.score(n).reshape(-1) for n in ms.names])
    assert torch.equal(flat.sort().values, torch.arange(1, flat.numel() + 1) / flat.numel())


def test_certified_protocol_certifies_on_the_safety_split():
    ds = _two_rules(2000, 0)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.05)
    res = paper_bifp(dense, ds, sparsity=0.7, steps=20, batch_size=64, protocol="certified", dual_every=5,
                     constraint=FairnessConstraint("accuracy_gap", tau=0.4))
    cert = res.config["certificate"]
    assert res.config["protocol"] == "certified" and cert["n"] == 500 and cert["delta"] == 0.05
    assert cert["bound"] >= cert["value"] and cert["certified"] == (cert["bound"] <= 0.4)
    assert res.config["split_sizes"] == {"fit": 1000, "selection": 500, "safety": 500}


def test_bad_certification_inputs_fail_before_training():
    ds = _two_rules(400, 0)
    dense = Mlp()
    c = FairnessConstraint("accuracy_gap", tau=0.02)
    with pytest.raises(ValueError, match="delta"):
        paper_bifp(dense, ds, sparsity=0.5, steps=2, constraint=c, delta=1.0)
    with pytest.raises(ValueError, match=r"safety=0.25: the safety split has 100 rows.*needs about \d+ rows"):
        paper_bifp(dense, ds, sparsity=0.5, steps=2, constraint=c, safety=0.25)
    with pytest.raises(ValueError, match="accuracy_floor=0.9 is above"):
        paper_bifp(dense, ds, sparsity=0.5, steps=2, constraint=c, holdout=0.25, accuracy_floor=0.9)
    with pytest.raises(ValueError, match="accuracy_floor .*needs holdout"):
        paper_bifp(dense, ds, sparsity=0.5, steps=2, constraint=c, accuracy_floor=0.02)
    with pytest.raises(ValueError, match="did you mean 'certified'"):
        paper_bifp(dense, ds, sparsity=0.5, steps=2, constraint=c, protocol="certifed")


def test_the_default_is_the_certified_protocol_and_the_paper_differs_only_in_its_protocol_fields():
    assert bilevel.DEFAULTS.protocol == "certified" and bilevel.PROTOCOLS["certified"] is bilevel.DEFAULTS
    paper = bilevel.PROTOCOLS["paper"]
    differ = {f.name for f in dataclasses.fields(paper) if getattr(paper, f.name) != getattr(bilevel.DEFAULTS, f.name)}
    assert differ == {"protocol", "prune_split", "dual_every", "dual_rule", "holdout", "select_every", "accuracy_floor",
                      "max_accuracy_drop", "safety"}
    assert bilevel.DEFAULTS.replace(protocol="paper") == paper and paper.replace(protocol="certified") == bilevel.DEFAULTS
    # BiP has no constraint to certify: it runs the paper's protocol unless told otherwise
    ds = _two_rules(400, 0)
    assert bilevel.bip(Mlp(), ds, sparsity=0.5, steps=2).config["protocol"] == "paper"


def test_a_default_safety_split_too_small_is_reported_uncertified_and_a_named_one_is_an_error():
    ds = _two_rules(1200, 0)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.05)
    c = lambda: FairnessConstraint("accuracy_gap", tau=0.02)  # noqa: E731
    with pytest.warns(UserWarning, match=r"not certified: the safety split has 300 rows.*needs about \d+ rows"):
        res = bilevel.bifp(dense, ds, sparsity=0.5, steps=5, batch_size=64, constraint=c())
    cert = res.config["certificate"]
    assert cert["certified"] is False and cert["bound"] is None and cert["n"] == 300 and cert["rows_needed"] > 300
    assert "looser tau" in cert["reason"] and res.config["split_sizes"]["safety"] == 300
    with pytest.raises(ValueError, match="safety=0.25: the safety split has 300 rows"):
        bilevel.bifp(dense, ds, sparsity=0.5, steps=5, batch_size=64, constraint=c(), safety=0.25)
    with pytest.raises(ValueError, match="safety=0.25"):
        bilevel.bifp(dense, ds, sparsity=0.5, steps=5, batch_size=64, constraint=c(), delta=0.1)
    # a dense model no better than the majority class: the default's accuracy floor refuses it, saying how not to
    with pytest.warns(UserWarning, match="not certified"), \
            pytest.raises(ValueError, match="accuracy_floor=0.02 is above.*protocol='paper'"):
        bilevel.bifp(Mlp(), ds, sparsity=0.5, steps=2, constraint=c())


def test_pruning_on_train_certifies_on_val_and_per_step_dual_rule_scales_the_step():
    from fairprune_lite import pruners
    from fairprune_lite.data import Splits
    tr, va = _two_rules(1200, 0), _two_rules(1500, 1)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(tr, 64, shuffle=True), epochs=2, lr=0.05)
    c = FairnessConstraint("accuracy_gap", tau=0.3)
    res = pruners.prune("bifp", dense, Splits(tr, va, va), sparsity=0.7, protocol="certified", prune_split="train",
                        steps=10, constraint=c)
    cert = res.config["certificate"]
    assert cert["n"] == 1500 and res.config["split_sizes"]["safety"] == 1500  # all of val, none of train
    assert res.config["split_sizes"]["fit"] + res.config["split_sizes"]["selection"] == 1200
    assert res.cost["data"] == "train+val"
    # per_step: one update every k steps moves the multipliers k times as far
    lam = {}
    for rule in ("per_update", "per_step"):
        cc = FairnessConstraint("accuracy_gap", tau=0.0, dual_lr=0.1)
        r = paper_bifp(dense, tr, sparsity=0.7, steps=5, dual_every=5, dual_rule=rule, constraint=cc)
        lam[rule] = r.config["constraint"]["multipliers"]
    assert max(lam["per_step"]) == pytest.approx(5 * max(lam["per_update"])) and max(lam["per_update"]) > 0


def test_max_accuracy_drop_sets_the_floor_from_the_dense_model():
    ds = _two_rules(800, 0)
    train.set_seed(0)
    dense = Mlp()
    train.fit(dense, train.make_loader(ds, 64, shuffle=True), epochs=2, lr=0.05)
    res = paper_bifp(dense, ds, sparsity=0.9, steps=10, batch_size=64, holdout=0.25, select_every=5,
                       max_accuracy_drop=0.01, constraint=FairnessConstraint("accuracy_gap", tau=0.0))
    perm = torch.randperm(800, generator=torch.Generator().manual_seed(0))
    dense_acc = train.evaluate(dense, train.subset(ds, perm[:200]))["accuracy"]
    sel = res.config["selection"]
    assert sel["floor"] == pytest.approx(dense_acc - 0.01)
    assert sel["floor_ok"] == (sel["accuracy"] >= sel["floor"]) and not sel["passed"]  # tau 0 is not met


class _TwoBranch(nn.Module):
    """Two branches of four channels, ``a`` reading feature 0 and ``b`` feature 1, summed by the output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(1, 4), nn.Linear(1, 4), nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.cat([torch.relu(self.a(x[:, :1])), torch.relu(self.b(x[:, 1:2]))], 1)).reshape(-1)


def test_a_structured_mask_moves_a_channel_between_layers_when_the_constraint_demands_it():
    """A constructed case: the majority's label is ``|x0| > 0.67``, the minority's (20%) ``|x1| > 0.67``,
    each group's signal in its own feature. The dense net computes ``4|x0| + 4|x1|`` with channels
    ``relu(+-x)``: branch ``a`` has four channels of nearly equal norm (two of them unused), branch
    ``b`` one strong and three weak, so the per-layer-normalised magnitude mask keeping 4 of 8
    channels starts at a=3, b=1, which drops ``relu(-x1)``: the minority loses half its positives.
    BiP (accuracy only, the majority is 80%) keeps that allocation; BiFP with an accuracy-gap
    constraint moves one channel from ``a`` to ``b`` and keeps ``relu(-x1)``. (Measured while
    writing this: with the mask's fairness term off, ``fair_mask=False``, the allocation moves too,
    with half the churn: the weights' fairness term reshapes the magnitudes the scores follow.)"""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 2, generator=g)
    s = (torch.rand(3000, generator=g) < 0.2).long()
    x[:, 0] *= 1 - s
    x[:, 1] *= s
    y = torch.where(s == 1, x[:, 1].abs() > 0.67, x[:, 0].abs() > 0.67).long()
    ds = FairDataset(torch.cat([x, s[:, None].float()], 1), y, s)
    net = _TwoBranch()
    with torch.no_grad():
        net.a.weight.copy_(4 * torch.tensor([[1.0], [-0.95], [0.9], [-0.85]]))
        net.b.weight.copy_(4 * torch.tensor([[1.0], [-0.3], [0.2], [-0.2]]))
        net.a.bias.zero_()
        net.b.bias.zero_()
        net.out.weight.copy_(torch.tensor([[1.0, 1 / 0.95, 0, 0, 1.0, 1 / 0.3, 0, 0]]))
        net.out.bias.fill_(-0.67 * 4)
    assert train.evaluate(net, ds)["accuracy"] == 1.0
    start = MaskScores(net, 0.5, structured=True).binary_masks()
    assert {n: int(m.flatten(1)[:, 0].sum()) for n, m in start.items()} == {"a": 3, "b": 1}
    kw = dict(sparsity=0.5, structured=True, steps=60, batch_size=64, seed=0)

    def kept(res):
        return {n: m.flatten(1)[:, 0].bool().tolist() for n, m in res.masks.items()}

    bip = kept(paper_bip(net, ds, **kw))
    fair = kept(paper_bifp(net, ds, constraint=FairnessConstraint("accuracy_gap", 0.02, dual_lr=1.0), **kw))
    assert sum(bip["b"]) == 1
    assert sum(fair["a"]) == 2 and sum(fair["b"]) == 2 and fair["b"][:2] == [True, True]


@pytest.mark.parametrize("wd,momentum", [(5e-4, 0.9), (0.0, 0.9), (5e-4, 0.0)])
def test_sgd_of_make_optimizer_is_bit_identical_to_the_loop(wd, momentum):
    """make_optimizer's SGD (foreach kernels, the lean step) gives the same weights and momentum,
    bit for bit, as torch's per-tensor loop (a parameter without a gradient on some steps); with
    a step hook it takes SGD's own step, and calls the hook."""
    def run(opt_factory, hook=False):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(7, 9), nn.ReLU(), nn.Linear(9, 1))
        opt = opt_factory(list(net.parameters()))
        calls = []
        if hook:
            opt.register_step_post_hook(lambda *a: calls.append(1))
        x, y = torch.randn(32, 7), torch.randn(32, 1)
        for step in range(25):
            opt.zero_grad(set_to_none=step % 5 != 4)
            ((net(x) - y) ** 2).mean().backward()
            if step % 7 == 3:
                net[0].bias.grad = None
            opt.step()
        bufs = [opt.state[p]["momentum_buffer"] for p in net.parameters()] if momentum else []
        return [p.detach().clone() for p in net.parameters()] + bufs, len(calls)

    ours, _ = run(lambda ps: train.make_optimizer(ps, "sgd", lr=0.05, weight_decay=wd, momentum=momentum))
    loop, _ = run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum, weight_decay=wd, foreach=False))
    hooked, calls = run(lambda ps: train.make_optimizer(ps, "sgd", lr=0.05, weight_decay=wd, momentum=momentum),
                        hook=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, loop, strict=True)) and len(ours) == len(loop)
    assert all(torch.equal(a, b) for a, b in zip(hooked, loop, strict=True)) and calls == 25
    assert train.make_optimizer([nn.Parameter(torch.ones(2))], lr=0.1).param_groups[0]["foreach"] is True
