"""Models: one logit per example, parameter counts, seeded initialisation, bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v2

from fairprune_lite.models import MODELS, default_model_for, make_model

CASES = [
    ("mlp", (106,), None),
    ("mlp", (1, 28, 28), 16),
    ("cnn", (1, 28, 28), None),
    ("cnn", (3, 32, 32), 8),
    ("cnn", (3, 64, 64), 4),
    ("resnet10", (1, 28, 28), 8),
    ("resnet10", (3, 32, 32), 8),
    ("resnet10", (3, 64, 64), 4),
    ("resnet10", (3, 96, 96), 4),
    ("mobilenetv2", (1, 28, 28), 0.25),
    ("mobilenetv2", (3, 64, 64), 0.25),
    ("mobilenetv2", (3, 96, 96), 0.25),
]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name, shape, width", CASES)
def test_one_logit_per_example(name, shape, width):
    model = make_model(name, in_shape=shape, width=width, seed=0)
    for b in (3, 1):
        model.train()
        out = model(torch.randn(b, *shape))
        assert out.shape == (b,) and out.dtype == torch.float32
    loss = F.binary_cross_entropy_with_logits(out, torch.ones(1))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2,)


def test_parameter_counts():
    d, w = 106, 64
    assert n_params(make_model("mlp", in_shape=(d,))) == (d * w + w) + (w * w + w) + (w + 1)
    # CNN 16/32/64 channels, conv without bias (BatchNorm follows), linear head on 64 features
    conv = 1 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9
    bn = 2 * (16 + 32 + 64)
    assert n_params(make_model("cnn", in_shape=(1, 28, 28))) == conv + bn + 64 + 1
    assert make_model("cnn", in_shape=(1, 28, 28), batchnorm=False).features[0].bias is not None
    # ResNet-10 (BasicBlock, [1, 1, 1, 1]) at width 64: about 4.9 M parameters
    r = make_model("resnet10", in_shape=(3, 64, 64))
    assert 4.85e6 < n_params(r) < 4.95e6
    assert r.net.fc.out_features == 1 and r.net.conv1.kernel_size == (3, 3)
    assert isinstance(r.net.maxpool, nn.Identity)
    big = make_model("resnet10", in_shape=(3, 128, 128))
    assert big.net.conv1.kernel_size == (7, 7) and isinstance(big.net.maxpool, nn.MaxPool2d)
    # MobileNetV2: torchvision's network with one output; only the stem's input channels change
    ref = n_params(mobilenet_v2(num_classes=1))
    assert n_params(make_model("mobilenetv2", in_shape=(3, 64, 64))) == ref
    assert n_params(make_model("mobilenetv2", in_shape=(1, 28, 28))) == ref - 2 * 32 * 9


@pytest.mark.parametrize("name, shape, width", [c for c in CASES if c[0] != "mlp" or c[1] == (106,)][::2])
def test_seeded_initialisation(name, shape, width):
    a = make_model(name, in_shape=shape, width=width, seed=7)
    b = make_model(name, in_shape=shape, width=width, seed=7)
    c = make_model(name, in_shape=shape, width=width, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point() and sa[k].numel() > 1)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    make_model(name, in_shape=shape, width=width, seed=3)
    assert torch.equal(torch.rand(1), before), "seed= must not disturb the global random state"
    torch.manual_seed(5)
    g1 = make_model(name, in_shape=shape, width=width)
    torch.manual_seed(5)
    g2 = make_model(name, in_shape=shape, width=width)
    assert all(torch.equal(v, g2.state_dict()[k]) for k, v in g1.state_dict().items())


def test_default_model_for():
    class Data:
        input_shape = (20,)

    assert isinstance(default_model_for(Data()).net[1], nn.Linear)
    Data.input_shape = (1, 28, 28)
    cnn = default_model_for(Data(), width=4)
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2,)
    assert isinstance(default_model_for((3, 16, 16)).features[0], nn.Conv2d)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"name": "vgg", "in_shape": (3, 32, 32)}, "unknown model 'vgg'"),
        ({"name": "cnn", "in_shape": (10,)}, r"in_shape must be \(C, H, W\)"),
        ({"name": "resnet10", "in_shape": (3, 4, 4)}, "at least 8x8"),
        ({"name": "mlp", "in_shape": ()}, "in_shape"),
        ({"name": "mlp", "in_shape": (0,)}, "in_shape"),
        ({"name": "mlp", "in_shape": (5,), "width": 0}, "width"),
        ({"name": "mlp", "in_shape": (5,), "depth": 0}, "depth"),
        ({"name": "mlp", "in_shape": (5,), "batchnorm": True}, "unknown option 'batchnorm'"),
    ],
)
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        make_model(**kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", MODELS)
def test_cuda(name):
    shape = (5,) if name == "mlp" else (3, 32, 32)
    model = make_model(name, in_shape=shape, width=4 if name != "mobilenetv2" else 0.25, seed=0).cuda()
    assert model(torch.randn(2, *shape, device="cuda")).shape == (2,)


def test_the_one_model_for_dataset_rule():
    from fairprune_lite import experiments
    from fairprune_lite.models import default_model_for, default_model_name

    assert default_model_name((14,)) == "mlp" and default_model_name((1, 28, 28)) == "cnn"
    assert type(default_model_for((14,))).__name__ == "MLP"
    with pytest.raises(ValueError, match="non-empty"):
        default_model_name(())
    # the profiles use it for data they do not name (bring-your-own .npz)
    prof = experiments.PROFILES["cpu"]
    assert prof.model_for("mine.npz", (3, 32, 32)) == "cnn" and prof.model_for("mine.npz", (7,)) == "mlp"
    assert prof.model_for("adult", (14,)) == prof.models["adult"]
