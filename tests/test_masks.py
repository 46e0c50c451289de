"""Tests of fairprune_lite.masks: exact top-k, STE gradients, parametrization, report (exports: tests/test_export.py)."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune

from fairprune_lite import masks
from fairprune_lite.export import to_dense, to_smaller, to_torch_prune
from fairprune_lite.masks import (
    MaskScores,
    apply_masks,
    is_masked,
    load_masked,
    masked_weights,
    model_masks,
    prunable_layers,
    remove_masks,
    sparsity_report,
    weight_parameters,
)

SPARSITIES = [0.0, 0.1, 0.2, 0.33, 0.5, 0.512, 0.7, 0.9, 0.99]


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Linear(13, 9), nn.ReLU(), nn.Linear(9, 1))


def n_units(scores, name):
    p = scores.score(name)
    return p.numel()


# --------------------------------------------------------------------------------------------
# prunable_layers
# --------------------------------------------------------------------------------------------
def test_prunable_layers_order_and_prune_last(cnn):
    m = cnn()
    assert list(prunable_layers(m)) == ["0", "2", "6", "8"]
    assert list(prunable_layers(m, prune_last=False)) == ["0", "2", "6"]
    assert list(prunable_layers(m, exclude=["0"])) == ["2", "6", "8"]
    assert list(prunable_layers(m, layer_types=(nn.Linear,))) == ["6", "8"]


def test_prunable_layers_errors():
    with pytest.raises(ValueError, match="no prunable layers"):
        prunable_layers(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="no prunable layers"):
        prunable_layers(nn.Sequential(nn.Linear(2, 1)), prune_last=False)
    with pytest.raises(ValueError, match="exclude"):
        prunable_layers(mlp(), exclude=["nope"])


# --------------------------------------------------------------------------------------------
# exact counts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("structured", [False, True])
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("init", ["magnitude", "uniform", "constant"])
def test_exact_counts(structured, scope, init, cnn):
    model = cnn()
    sc = MaskScores(model, 0.0, structured=structured, scope=scope, init=init, seed=1,
                    layers=prunable_layers(model))
    for s in SPARSITIES:
        sc.sparsity = s
        masks = sc.binary_masks()
        assert set(masks) == set(sc.names)
        for n, m in masks.items():
            assert m.shape == sc.weight_shapes[n]
            assert set(m.unique().tolist()) <= {0.0, 1.0}
        if structured:
            ch = {n: m.flatten(1)[:, 0] for n, m in masks.items()}
            for n, m in masks.items():  # constant within a filter
                assert torch.equal(m, ch[n].view(-1, *[1] * (m.dim() - 1)).expand_as(m))
            units = ch
        else:
            units = masks
        if scope == "global":
            total = sum(u.numel() for u in units.values())
            assert sum(int((u == 0).sum()) for u in units.values()) == round(s * total)
        else:
            for n, u in units.items():
                assert int((u == 0).sum()) == round(s * u.numel()), n


def test_ties_broken_by_magnitude_never_by_position(cnn):
    model = mlp()
    sc = MaskScores(model, 0.3, init="constant")  # every score ties: magnitude decides
    assert all(torch.equal(a, b) for a, b in zip(sc.binary_masks().values(),
                                                  MaskScores(model, 0.3).binary_masks().values(), strict=True))
    # ties only at the threshold: lower scores are pruned first, then the smallest |w| among the tied
    with torch.no_grad():
        sc.score("0").fill_(0.5)
        sc.score("2").fill_(0.2)
        sc.score("4").fill_(0.5)
    sc.sparsity = (117 + 10) / (91 + 117 + 9)
    m = sc.binary_masks()
    assert m["2"].sum() == 0
    tied = torch.cat([model[0].weight.detach().abs().flatten(), model[4].weight.detach().abs().flatten()])
    pruned_tied = torch.cat([m["0"].flatten(), m["4"].flatten()]) == 0
    assert int(pruned_tied.sum()) == 10
    assert float(tied[pruned_tied].max()) <= float(tied[~pruned_tied].min())
    # structured: a whole layer of equal scores is not pruned because it comes first
    cnn_model = cnn(seed=2)
    ss = MaskScores(cnn_model, 0.5, structured=True)
    with torch.no_grad():
        for _, p in ss.items():
            p.fill_(1.0)  # all at the clamp
    ch = ss.channel_masks()
    assert all(bool(c.any()) for c in ch.values())


def test_global_magnitude_matches_torch_prune():
    for s in [0.1, 0.37, 0.5, 0.8, 0.95]:
        model = mlp(seed=3)
        sc = MaskScores(model, s, scope="global", init="magnitude")
        ref = copy.deepcopy(model)
        params = [(ref[i], "weight") for i in (0, 2, 4)]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=s)
        mine = sc.binary_masks()
        for i in (0, 2, 4):
            assert torch.equal(mine[str(i)], ref[i].weight_mask), (s, i)


def test_layer_magnitude_matches_torch_prune():
    for s in [0.1, 0.37, 0.5, 0.8, 0.95]:
        model = mlp(seed=4)
        sc = MaskScores(model, s, scope="layer", init="magnitude")
        mine = sc.binary_masks()
        for i in (0, 2, 4):
            ref = copy.deepcopy(model[i])
            prune.l1_unstructured(ref, "weight", amount=s)
            assert torch.equal(mine[str(i)], ref.weight_mask), (s, i)


def test_structured_magnitude_prunes_smallest_filters(cnn):
    model = cnn(seed=5)
    sc = MaskScores(model, 0.5, structured=True, scope="layer")
    ch = sc.channel_masks()
    for n in sc.names:
        norms = model.get_submodule(n).weight.detach().flatten(1).norm(dim=1)
        k = round(0.5 * norms.numel())
        pruned = set(torch.argsort(norms)[:k].tolist())
        assert set((ch[n] == 0).nonzero().flatten().tolist()) == pruned


def test_uniform_init_is_seeded():
    a = MaskScores(mlp(), 0.5, init="uniform", seed=7).binary_masks()
    b = MaskScores(mlp(), 0.5, init="uniform", seed=7).binary_masks()
    c = MaskScores(mlp(), 0.5, init="uniform", seed=8).binary_masks()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_scores_in_unit_interval_and_clamp():
    sc = MaskScores(mlp(), 0.5, init="magnitude")
    for _, p in sc.items():
        assert float(p.detach().min()) >= 0 and float(p.detach().max()) <= 1
    assert max(float(p.detach().max()) for _, p in sc.items()) == 1.0  # normalised by the global max
    with torch.no_grad():
        sc.score("0").add_(5.0)
        sc.score("2").sub_(5.0)
    sc.clamp_()
    assert float(sc.score("0").detach().min()) == 1.0 and float(sc.score("2").detach().max()) == 0.0


def test_structured_default_excludes_output_layer(cnn):
    sc = MaskScores(cnn(), 0.5, structured=True)
    assert sc.names == ["0", "2", "6"]
    assert MaskScores(cnn(), 0.5).names == ["0", "2", "6", "8"]


# --------------------------------------------------------------------------------------------
# masks from a given mask, fixed masks
# --------------------------------------------------------------------------------------------
def _random_mask(model, s, seed, structured=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, mod in prunable_layers(model).items():
        shape = mod.weight.shape[:1] if structured else mod.weight.shape
        out[n] = (torch.rand(shape, generator=g) >= s).float()
    return out


@pytest.mark.parametrize("structured", [False, True])
def test_init_from_mask_reproduces_it(structured, cnn):
    model = cnn(seed=2)
    given = _random_mask(model, 0.6, seed=3, structured=structured)
    sc = MaskScores(model, None, mask=given, structured=structured, layers=prunable_layers(model))
    got = sc.channel_masks() if structured else sc.binary_masks()
    assert all(torch.equal(got[n], given[n]) for n in given)
    pruned = sum(int((m == 0).sum()) for m in given.values())
    assert sc.sparsity == pruned / sum(m.numel() for m in given.values())
    # the scores still rank by magnitude within the kept set: raising sparsity prunes the
    # smallest kept weights next
    if not structured:
        sc.sparsity = min(0.99, sc.sparsity + 0.05)
        more = sc.binary_masks()
        assert all(bool((more[n] <= given[n]).all()) for n in given)


def test_from_masks_is_fixed():
    model = mlp()
    given = _random_mask(model, 0.5, seed=0)
    given["4"] = torch.ones(1, 9)  # per-layer sparsities differ: top-k could not reproduce it
    sc = MaskScores.from_masks(model, given)
    assert sc.fixed
    assert all(not p.requires_grad for _, p in sc.items())
    assert all(torch.equal(sc.binary_masks()[n], given[n]) for n in given)
    with pytest.raises(ValueError, match="fixed"):
        sc.sparsity = 0.3
    apply_masks(model, sc)
    x = torch.randn(4, 7)
    model(x).sum().backward()
    assert all(p.grad is None for _, p in sc.items())
    assert sparsity_report(model)["pruned"] == sum(int((m == 0).sum()) for m in given.values())


# --------------------------------------------------------------------------------------------
# parametrization and straight-through gradients
# --------------------------------------------------------------------------------------------
def test_scores_are_not_model_parameters():
    model = mlp()
    sc = MaskScores(model, 0.5)
    n_before = len(list(model.parameters()))
    apply_masks(model, sc)
    ids = {id(p) for p in model.parameters()}
    assert len(ids) == n_before
    assert not any(id(p) in ids for _, p in sc.items())
    assert not any("score" in k for k in model.state_dict())
    theta = weight_parameters(model)
    assert list(theta) == ["0", "2", "4"]
    assert all(id(p) in ids for p in theta.values())
    assert all(is_masked(model[i]) for i in (0, 2, 4))
    assert model_masks(model) is sc


def _manual_forward(model, masks, x, channel=None):
    h = x
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            w = weight_parameters(model)[str(i)] * masks[str(i)]
            b = layer.bias if channel is None else layer.parametrizations.bias.original * channel[str(i)]
            h = F.linear(h, w, b)
        else:
            h = layer(h)
    return h


@pytest.mark.parametrize("structured", [False, True])
def test_forward_equals_manual(structured):
    model = mlp()
    sc = MaskScores(model, 0.4, structured=structured, layers=prunable_layers(model))
    x = torch.randn(5, 7)
    apply_masks(model, sc)
    ch = sc.channel_masks() if structured else None
    assert torch.allclose(model(x), _manual_forward(model, sc.binary_masks(), x, ch), atol=0, rtol=0)
    for n, z in masked_weights(model).items():
        assert torch.equal(z, weight_parameters(model)[n] * sc.binary_masks()[n])


def test_ste_gradient_unstructured():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    model = nn.Sequential(lin)
    sc = MaskScores(model, 0.5, init="uniform", seed=0)
    apply_masks(model, sc)
    x, t = torch.randn(8, 6), torch.randn(8, 4)
    loss = ((model(x) - t) ** 2).sum()
    loss.backward()
    # by hand: z = m * theta, out = x z^T + b, d loss / d z = 2 (out - t)^T x
    theta = lin.parametrizations.weight.original.detach()
    m = sc.binary_masks()["0"]
    out = x @ (m * theta).T + lin.bias.detach()
    grad_z = 2 * (out - t).T @ x
    assert torch.allclose(sc.score("0").grad, grad_z * theta, atol=1e-5)
    assert torch.allclose(lin.parametrizations.weight.original.grad, grad_z * m, atol=1e-5)


def test_ste_gradient_structured_sums_over_filter():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 5, 3)
    model = nn.Sequential(conv)
    sc = MaskScores(model, 0.4, structured=True, init="uniform", seed=2, layers=["0"])
    apply_masks(model, sc)
    x = torch.randn(3, 2, 6, 6)
    w_out = torch.randn(3, 5, 4, 4)
    (model(x) * w_out).sum().backward()
    # by hand with autograd on z directly
    theta = conv.parametrizations.weight.original.detach()
    bias = conv.parametrizations.bias.original.detach()
    ch = sc.channel_masks()["0"]
    z = (theta * ch.view(-1, 1, 1, 1)).requires_grad_(True)
    (F.conv2d(x, z, bias * ch) * w_out).sum().backward()
    expected = (z.grad * theta).flatten(1).sum(1)
    assert torch.allclose(sc.score("0").grad, expected, atol=1e-4)
    # masked channels also lose their bias
    out = model(x)
    for j in (ch == 0).nonzero().flatten().tolist():
        assert float(out[:, j].detach().abs().max()) == 0.0


def test_cache_recomputes_once_per_update():
    model = mlp()
    sc = MaskScores(model, 0.5, init="uniform", seed=0)
    apply_masks(model, sc)
    calls = []
    orig = MaskScores._unit_masks

    import fairprune_lite.masks as masks_mod

    real_topk = masks_mod._topk_keep

    def counting(flat, s, tie=None):
        calls.append(1)
        return real_topk(flat, s, tie)

    masks_mod._topk_keep = counting
    try:
        x = torch.randn(4, 7)
        for _ in range(3):
            model(x)
        assert len(calls) == 1  # global scope: one top-k for all layers and all passes
        before = sc.binary_masks()
        opt = torch.optim.SGD([p for _, p in sc.items()], lr=10.0)
        model(x).sum().backward()
        opt.step()
        model(x)
        assert len(calls) == 2
        after = sc.binary_masks()
        assert any(not torch.equal(before[n], after[n]) for n in before)
        with torch.no_grad():  # a move that keeps every kept score above every pruned one
            for _, p in sc.items():
                p.mul_(0.5)
        model(x)
        assert len(calls) == 2  # the split still holds: no new top-k
        assert all(torch.equal(after[n], m) for n, m in sc.binary_masks().items())
        sc.sparsity = 0.7
        model(x)
        model(x)
        assert len(calls) == 3
    finally:
        masks_mod._topk_keep = real_topk
    assert orig is MaskScores._unit_masks


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("structured", [False, True])
def test_cached_topk_equals_fresh_topk_under_score_moves(scope, structured):
    """The cache keeps its top-k while every kept score stays above every pruned one; after any
    move (small, large, ties at the clamp, NaN) the masks equal a fresh top-k of the new scores."""
    model = mlp()
    sc = MaskScores(model, 0.6, scope=scope, structured=structured, init="uniform", seed=1)
    gen = torch.Generator().manual_seed(0)
    for it in range(40):
        sc.unit_masks()  # fill the cache at the current scores
        with torch.no_grad():
            for _, p in sc.items():
                scale = 1e-4 if it % 3 else 0.3
                p.add_(scale * torch.randn(p.shape, generator=gen))
                if it % 7 == 0:
                    p.clamp_(0, 1)  # bulk ties at 0 and 1: the tie-break decides
        fresh = MaskScores(model, 0.6, scope=scope, structured=structured,
                           mask={n: torch.ones_like(m) for n, m in sc.unit_masks().items()})
        fresh._tie = sc._tie
        with torch.no_grad():
            for (_, a), (_, b) in zip(fresh.items(), sc.items(), strict=True):
                a.copy_(b)
        got, want = sc.unit_masks(), fresh.unit_masks()
        assert all(torch.equal(got[n], want[n]) for n in sc.names), it
    with torch.no_grad():
        sc.score(sc.names[0]).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sc.unit_masks()


def test_remove_masks_bake_and_restore():
    model = mlp()
    theta = {n: m.weight.detach().clone() for n, m in prunable_layers(model).items()}
    sc = MaskScores(model, 0.6)
    apply_masks(model, sc)
    x = torch.randn(5, 7)
    ref = model(x).detach()
    twin = copy.deepcopy(model)
    remove_masks(twin, bake=False)  # a copy shares the parametrized class: the original must survive
    assert is_masked(model[0]) and torch.equal(model(x), ref)
    assert all(torch.equal(twin.get_submodule(n).weight, theta[n]) for n in theta)
    remove_masks(model, bake=True)
    assert not is_masked(model[0]) and type(model[0]) is nn.Linear
    assert torch.equal(model(x), ref)
    assert sparsity_report(model)["pruned"] == round(0.6 * sum(t.numel() for t in theta.values()))
    with pytest.raises(ValueError, match="no masks"):
        remove_masks(model)


def test_weight_optimizer_trains_theta_under_mask():
    model = mlp()
    sc = MaskScores(model, 0.5)
    apply_masks(model, sc)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 7)
    scores_before = {n: p.detach().clone() for n, p in sc.items()}
    theta_before = {n: p.detach().clone() for n, p in weight_parameters(model).items()}
    model(x).pow(2).mean().backward()
    opt.step()
    assert all(torch.equal(scores_before[n], p) for n, p in sc.items())
    changed = [not torch.equal(theta_before[n], p) for n, p in weight_parameters(model).items()]
    assert all(changed)
    # pruned weights get no gradient through the mask
    for n, p in weight_parameters(model).items():
        m = sc.binary_masks()[n]
        assert torch.equal(p.detach()[m == 0], theta_before[n][m == 0])


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("structured", [False, True])
def test_sparsity_report_agrees_with_counts(structured, cnn):
    model = cnn()
    sc = MaskScores(model, 0.5, structured=structured, scope="layer", layers=prunable_layers(model))
    masks = sc.binary_masks()
    rep = sparsity_report(sc)
    pruned = {n: int((m == 0).sum()) for n, m in masks.items()}
    total = {n: m.numel() for n, m in masks.items()}
    assert rep["pruned"] == sum(pruned.values()) and rep["total"] == sum(total.values())
    assert rep["overall"] == pytest.approx(sum(pruned.values()) / sum(total.values()))
    assert rep["layers"] == {n: pruned[n] / total[n] for n in masks}
    assert sparsity_report(masks) == rep
    apply_masks(model, sc)
    assert sparsity_report(model) == rep
    assert sparsity_report(to_dense(model)) == rep  # zeros of a plain model
    assert sparsity_report(to_torch_prune(model))["pruned"] == rep["pruned"]


def test_sparsity_report_plain_model_counts_zeros():
    model = mlp()
    with torch.no_grad():
        model[0].weight[:2].zero_()
    rep = sparsity_report(model)
    assert rep["pruned"] == 14 and rep["total"] == 91 + 117 + 9
    assert rep["layers"]["0"] == 14 / 91 and rep["layers"]["2"] == 0.0


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_bad_input_raises():
    model = mlp()
    for s in (-0.1, 1.0, 1.5, "0.5", None, True):
        with pytest.raises(ValueError, match="sparsity"):
            MaskScores(model, s)
    sc = MaskScores(model, 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        sc.sparsity = 1.0
    with pytest.raises(ValueError, match="scope"):
        MaskScores(model, 0.5, scope="net")
    with pytest.raises(ValueError, match="init"):
        MaskScores(model, 0.5, init="kaiming")
    with pytest.raises(ValueError, match="no prunable layers"):
        MaskScores(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ValueError, match="'9'"):
        MaskScores(model, 0.5, layers=["9"])
    good = _random_mask(model, 0.5, seed=0)
    bad_shape = dict(good, **{"2": torch.ones(3, 3)})
    with pytest.raises(ValueError, match="'2'.*shape"):
        MaskScores(model, None, mask=bad_shape)
    missing = {k: v for k, v in good.items() if k != "4"}
    with pytest.raises(ValueError, match="missing.*'4'"):
        MaskScores(model, None, mask=missing)
    unknown = dict(good, extra=torch.ones(1))
    with pytest.raises(ValueError, match="unknown.*extra"):
        MaskScores(model, None, mask=unknown)
    with pytest.raises(ValueError, match="0 and 1"):
        MaskScores(model, None, mask=dict(good, **{"4": torch.full((1, 9), 0.5)}))
    with pytest.raises(ValueError, match="'4'.*shape"):
        to_dense(model, dict(good, **{"4": torch.ones(2, 9)}))
    with pytest.raises(ValueError, match="score"):
        apply_masks(model, good)


def test_structured_unsupported_layers():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="dims.*'1'"):
        MaskScores(m, 0.5, structured=True, layers=["0", "1"])
    t = nn.Sequential(nn.ConvTranspose2d(2, 3, 3), nn.Conv2d(3, 1, 1))
    with pytest.raises(ValueError, match="'0'.*ConvTranspose2d"):
        MaskScores(t, 0.5, structured=True, layers=prunable_layers(t, layer_types=(nn.ConvTranspose2d, nn.Conv2d)))


def test_apply_twice_and_mismatch():
    model = mlp()
    sc = MaskScores(model, 0.5)
    apply_masks(model, sc)
    with pytest.raises(ValueError, match="already masked"):
        apply_masks(model, sc)
    other = nn.Sequential(nn.Linear(7, 12), nn.ReLU(), nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 1))
    with pytest.raises(ValueError, match="'0'.*shape"):
        apply_masks(other, sc)
    with pytest.raises(ValueError, match="no masked layers"):
        weight_parameters(mlp())


# --------------------------------------------------------------------------------------------
# BatchNorm gates (structured) and checkpoints
# --------------------------------------------------------------------------------------------
def test_gate_norm_gives_kept_channels_a_real_score_gradient(cnn):
    """Without the gate, BN cancels a kept channel's rescaling (score gradient ~0) while a
    pruned channel (BN variance 0) gets a huge one; with it both are of the loss's own scale."""
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def grads(gate):
        model = cnn(seed=4, bn=True).train()
        with torch.no_grad():
            for bn in (model[1], model[4]):
                bn.bias.uniform_(0.1, 0.5)  # as after training: a pruned channel leaves BN as beta
        sc = MaskScores(model, 0.5, structured=True, scope="layer", gate_norm=gate)
        apply_masks(model, sc)
        model(x).square().mean().backward()
        g, keep = sc.score("0").grad.abs(), sc.channel_masks()["0"].bool()
        return g[keep].max().item(), g[~keep].max().item(), model, sc

    kept, pruned, _, _ = grads(False)
    assert pruned > 1e3 * kept  # the defect the gate removes
    kept_g, pruned_g, model, sc = grads(True)
    assert sc.norms == {"0": "1", "3": "4"}
    assert kept_g > 1e3 * kept and pruned_g < 100 * kept_g  # kept channels now see the loss
    # a pruned channel leaves its block as exactly 0, in train and eval mode, and after baking
    out = {}
    model[2].register_forward_hook(lambda m, i, o: out.__setitem__("relu", o))
    for mode in (True, False):
        model.train(mode)
        model(x)
        assert bool((out["relu"][:, ~sc.channel_masks()["0"].bool()] == 0).all())
    ref = model.eval()(x).detach()
    for export in (to_dense, to_torch_prune):  # exports keep the gate
        assert torch.allclose(export(model).eval()(x), ref, atol=1e-6)
    small = to_smaller(model, None, x)  # a gated channel is exactly 0: it can be removed
    assert small[0].out_channels == int(sc.channel_masks()["0"].sum())
    assert torch.allclose(small(x), ref, atol=1e-5)
    remove_masks(model, bake=True)
    assert torch.allclose(model(x), ref, atol=1e-6)
    assert not any(is_masked(m) for m in model.modules())
    with pytest.raises(ValueError, match="structured"):
        MaskScores(cnn(bn=True), 0.5, gate_norm=True)


@pytest.mark.parametrize("structured,gate", [(False, False), (True, False), (True, True)])
def test_state_dict_holds_the_mask_and_loading_restores_it(structured, gate, cnn):
    model = cnn(seed=5, bn=True)
    sc = MaskScores(model, 0.6, structured=structured, init="uniform", seed=1, gate_norm=gate)
    apply_masks(model, sc)
    x = torch.randn(4, 3, 8, 8)
    ref = model.eval()(x).detach()
    state = model.state_dict()
    keys = [k for k in state if k.endswith(".mask")]
    assert keys == [f"{n}.parametrizations.weight.0.mask" for n in sc.names]
    assert torch.equal(state["0.parametrizations.weight.0.mask"], sc._unit_masks()["0"].float())
    # into a plain model: masks come back as fixed masks, the function is the same
    plain = load_masked(cnn(seed=9, bn=True), state)
    assert all(torch.equal(a, b) for a, b in zip(model_masks(plain).binary_masks().values(),
                                                  sc.binary_masks().values(), strict=True))
    assert torch.allclose(plain.eval()(x), ref, atol=1e-6)
    # into a masked model with other scores: its mask becomes the saved one
    other = cnn(seed=9, bn=True)
    apply_masks(other, MaskScores(other, 0.6, structured=structured, gate_norm=gate))
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(model_masks(other).binary_masks().values(),
                                                  sc.binary_masks().values(), strict=True))
    assert torch.allclose(other.eval()(x), ref, atol=1e-6)
    with pytest.raises(ValueError, match="no masks"):
        load_masked(cnn(bn=True), cnn(bn=True).state_dict())


def test_kth_smallest_by_sort_equals_kthvalue_with_ties():
    """The sort used off the CPU picks the same threshold as ``kthvalue`` (ties included)."""
    g = torch.Generator().manual_seed(0)
    flat = torch.randint(0, 50, (5000,), generator=g).float() / 50  # many ties
    for k in (1, 17, 2500, 4999, 5000):
        assert float(flat.sort().values[k - 1]) == float(flat.kthvalue(k).values)
        assert float(masks._kth_smallest(flat, k)) == float(flat.kthvalue(k).values)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_topk_keep_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(1)
    flat = torch.randint(0, 200, (200_000,), generator=g).float() / 200
    tie = torch.rand(200_000, generator=g)
    cpu = masks._topk_keep(flat, 0.79, tie)
    cuda = masks._topk_keep(flat.cuda(), 0.79, tie.cuda()).cpu()
    assert torch.equal(cpu, cuda)


def _topk_reference(flat, sparsity, tie):
    """Prune the round(sparsity * n) smallest by (score, tie key, position): a full sort."""
    n = flat.numel()
    k = round(sparsity * n)
    order = torch.arange(n)
    order = order[torch.sort(tie[order], stable=True).indices]
    order = order[torch.sort(flat[order], stable=True).indices]
    keep = torch.ones(n, dtype=torch.bool)
    keep[order[:k]] = False
    return keep


@pytest.mark.parametrize("levels", [None, 7, 2])
def test_topk_keep_equals_a_full_sort_with_and_without_ties(levels):
    """The fast path (no tie at the threshold: one comparison) and the tie path give exactly the
    mask of a full sort by (score, tie key, position); the tie key may be given lazily."""
    g = torch.Generator().manual_seed(3)
    for _ in range(40):
        n = int(torch.randint(5, 400, (1,), generator=g))
        flat = torch.rand(n, generator=g)
        if levels is not None:  # many exact ties, at the threshold too
            flat = (flat * levels).floor() / levels
        tie = torch.randint(0, 5, (n,), generator=g).float()
        for sp in (0.1, 0.5, 0.77, 0.9):
            ref = _topk_reference(flat, sp, tie)
            assert torch.equal(masks._topk_keep(flat, sp, tie), ref)
            assert torch.equal(masks._topk_keep(flat, sp, lambda t=tie: t), ref)
    with pytest.raises(ValueError, match="NaN"):
        masks._topk_keep(torch.tensor([0.1, float("nan"), 0.3]), 0.5)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_kept_units_and_float_masks_follow_the_scores(scope):
    """kept_units is every layer's unit mask in one vector; the float masks the forward pass uses
    are converted once per top-k result and follow every change of the scores or the sparsity."""
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    sc = MaskScores(net, 0.5, scope=scope)
    apply_masks(net, sc)
    units = sc.unit_masks()
    assert torch.equal(sc.kept_units(), torch.cat([units[n].reshape(-1) for n in sc.names]))
    w = weight_parameters(net)["0"]
    f1 = sc.float_mask("0", w)
    assert f1.dtype == w.dtype and torch.equal(f1, units["0"].float())
    assert sc.float_mask("0", w) is f1  # cached
    x = torch.randn(4, 6)
    out = net(x)
    with torch.no_grad():  # reverse layer 0's ranking: its mask must change
        s0 = sc.score("0")
        s0.copy_(s0.max() - s0)
    f2 = sc.float_mask("0", w)
    assert not torch.equal(f2, f1) and torch.equal(f2, sc.unit_masks()["0"].float())
    assert not torch.equal(net(x), out)
    assert torch.equal(net[0](x), F.linear(x, w * f2, net[0].bias))
    sc.sparsity = 0.8
    assert torch.equal(sc.float_mask("0", w), sc.unit_masks()["0"].float())
    assert torch.equal(sc.kept_units(), torch.cat([sc.unit_masks()[n].reshape(-1) for n in sc.names]))
    # fixed masks: the same views
    fixed = MaskScores.from_masks(net, sc.binary_masks())
    assert torch.equal(fixed.kept_units(), sc.kept_units())
