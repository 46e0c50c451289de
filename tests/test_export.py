"""Tests of fairprune_lite.export: a masked model to torch.nn.utils.prune form, to a dense model
with zeros, and to a physically smaller model (Torch-Pruning), each computing what the masked
model computes."""

import pytest
import torch
import torch.nn as nn

from fairprune_lite.export import to_dense, to_smaller, to_torch_prune
from fairprune_lite.masks import MaskScores, apply_masks, is_masked, prunable_layers


# --------------------------------------------------------------------------------------------
# exports
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("structured", [False, True])
def test_exports_match_masked_model(structured, cnn):
    model = cnn(seed=3)
    sc = MaskScores(model, 0.5, structured=structured, init="uniform", seed=4,
                    layers=prunable_layers(model, prune_last=not structured))
    apply_masks(model, sc)
    x = torch.randn(4, 3, 8, 8)
    ref = model(x).detach()
    tp_form = to_torch_prune(model)
    assert hasattr(tp_form[0], "weight_orig") and hasattr(tp_form[0], "weight_mask")
    assert torch.equal(tp_form[0].weight_mask, sc.binary_masks()["0"])
    assert torch.allclose(tp_form(x), ref, atol=1e-6)
    dense = to_dense(model, sc)
    assert not any(is_masked(m) for m in dense.modules())
    assert not any("parametrizations" in k for k in dense.state_dict())
    assert torch.allclose(dense(x), ref, atol=1e-6)
    assert torch.equal(model(x), ref)  # the masked model is untouched
    # a plain dict of masks works too (channel-shaped for structured)
    as_dict = sc.channel_masks() if structured else sc.binary_masks()
    assert torch.allclose(to_dense(dense, as_dict)(x), ref, atol=1e-6)


def _param_count(model):
    return sum(p.numel() for p in model.parameters())


def _masked_and_smaller(model):
    """Half of each layer's channels masked on ``model`` (in place); the tracing input, the masked
    model's output on it, and the physically smaller model."""
    sc = MaskScores(model, 0.5, structured=True, scope="layer")
    apply_masks(model, sc)
    x = torch.randn(3, 3, 8, 8)
    ref = model(x).detach()
    return x, ref, to_smaller(model, sc, x)


def test_to_smaller_without_bn(cnn):
    pytest.importorskip("torch_pruning", reason="the [export] extra")
    model = cnn(seed=6)
    x, ref, small = _masked_and_smaller(model)
    assert small[0].out_channels == 3 and small[2].out_channels == 4 and small[6].out_features == 3
    assert small[2].in_channels == 3 and small[6].in_features == 4 and small[8].in_features == 3
    assert _param_count(small) < _param_count(to_dense(model))
    assert torch.allclose(small(x), ref, atol=1e-5)
    x2 = torch.randn(2, 3, 8, 8)  # also on inputs other than the tracing example
    assert torch.allclose(small(x2), model(x2), atol=1e-5)


def test_to_smaller_with_bn_zero_shift_removes_channels(cnn):
    pytest.importorskip("torch_pruning", reason="the [export] extra")
    model = cnn(seed=7, bn=True).eval()
    with torch.no_grad():  # BN with zero shift: beta = 0 and running_mean = 0
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.bias.zero_()
    x, ref, small = _masked_and_smaller(model)
    assert small[0].out_channels == 3 and small[1].num_features == 3 and small[3].out_channels == 4
    assert torch.allclose(small(x), ref, atol=1e-5)


def test_to_smaller_with_bn_shift_keeps_channels_exact(cnn):
    pytest.importorskip("torch_pruning", reason="the [export] extra")
    model = cnn(seed=8, bn=True).eval()
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.bias.uniform_(0.1, 0.5)  # a masked channel leaves the BN as a nonzero constant
            bn.running_mean.uniform_(-1, 1)
    sc = MaskScores(model, 0.5, structured=True, scope="layer")
    apply_masks(model, sc)
    x = torch.randn(3, 3, 8, 8)
    ref = model(x).detach()
    small = to_smaller(model, sc, x)
    # the conv channels feeding a shifted BN cannot be removed exactly: kept (as zeros)
    assert small[0].out_channels == 6 and small[3].out_channels == 8
    assert small[8].out_features == 3  # the Linear layer's channels can go
    assert torch.allclose(small(x), ref, atol=1e-5)
    # dropping the shift (what a naive removal does) would change the output
    naive = to_dense(model)
    with torch.no_grad():
        ch = sc.channel_masks()["0"]
        naive[1].bias.mul_(ch)
        naive[1].running_mean.mul_(ch)
    assert not torch.allclose(naive(x), ref, atol=1e-3)


def test_to_smaller_refuses_unstructured(cnn):
    model = cnn()
    sc = MaskScores(model, 0.5)
    with pytest.raises(ValueError, match="structured"):
        to_smaller(model, sc, torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="structured"):
        to_smaller(model, sc.binary_masks(), torch.randn(1, 3, 8, 8))



class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.a = nn.Conv2d(6, 5, 3, padding=1)
        self.b = nn.Conv2d(5, 6, 3, padding=1)
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.b(torch.relu(self.a(h))))
        return self.head(h.mean(dim=(2, 3))).squeeze(1)


def test_to_smaller_residual_coupling_is_exact():
    torch.manual_seed(9)
    model = _Res()
    # stem and b share the residual channels; mask channel 0 in both (removable), channel 1
    # only in b (not removable: the stem still writes it); a's channels are free
    masks = {
        "stem": torch.tensor([0.0, 1, 1, 1, 1, 1]),
        "a": torch.tensor([1.0, 0, 1, 0, 1]),
        "b": torch.tensor([0.0, 0, 1, 1, 1, 1]),
    }
    sc = MaskScores.from_masks(model, masks, structured=True)
    apply_masks(model, sc)
    x = torch.randn(2, 3, 8, 8)
    small = to_smaller(model, sc, x)
    assert small.a.out_channels == 3 and small.b.in_channels == 3
    assert small.stem.out_channels == 5 and small.b.out_channels == 5 and small.head.in_features == 5
    x2 = torch.randn(3, 3, 8, 8)
    assert torch.allclose(small(x2), model(x2), atol=1e-5)


def test_to_smaller_refuses_empty_layer(cnn):
    model = cnn()
    masks = {n: torch.ones(m.weight.shape[0]) for n, m in prunable_layers(model, prune_last=False).items()}
    masks["2"] = torch.zeros(8)
    with pytest.raises(ValueError, match="every output channel of layer '2'"):
        to_smaller(model, masks, torch.randn(1, 3, 8, 8))
