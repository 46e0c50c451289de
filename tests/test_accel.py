"""The GPU fast path's options (fairprune_lite.accel) where they run on a CPU: off changes nothing,
bf16 autocast runs the forward in bf16, channels_last keeps the masks, backend settings are
restored; and benchmarks/gpu_step.py's smoke mode."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from fairprune_lite.accel import FAST, Accel, settings
from fairprune_lite.bilevel import bifp
from fairprune_lite.constraints import FairnessConstraint
from fairprune_lite.data import FairDataset
from fairprune_lite.models import make_model
from fairprune_lite.train import make_loader

ROOT = Path(__file__).resolve().parents[1]


def _images(n: int = 96, side: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, side, side, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    s = torch.randint(0, 2, (n,), generator=g)
    return [(x[i:i + 32], y[i:i + 32], s[i:i + 32]) for i in range(0, n, 32)]


def _cnn() -> nn.Module:
    return make_model("cnn", in_shape=(1, 8, 8), width=4, seed=0)


def _run(accel: Accel | None, *, structured: bool = False, steps: int = 6, update: str = "alternating") -> object:
    return bifp(_cnn(), _images(), sparsity=0.5, steps=steps, protocol="paper", seed=0, structured=structured,
                update=update, constraint=FairnessConstraint("accuracy_gap", 0.05, init_multiplier=0.5),
                accel=accel)


def test_options_are_checked_and_off_by_default():
    assert not Accel().enabled and FAST.enabled
    with pytest.raises(ValueError, match="autocast"):
        Accel(autocast="float8")
    with pytest.raises(ValueError, match="channels_last"):
        Accel(channels_last=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compile_backend"):
        Accel(compile_backend="")
    assert Accel(autocast="bf16").as_dict()["autocast"] == "bf16"


@pytest.mark.parametrize("update", ["alternating", "joint"])
def test_all_off_is_the_plain_path_bit_for_bit(update):
    plain, off = _run(None, update=update), _run(Accel(), update=update)
    assert all(torch.equal(plain.masks[n], off.masks[n]) for n in plain.masks)
    sd_a, sd_b = plain.model.state_dict(), off.model.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert [h["upper_loss"] for h in plain.history] == [h["upper_loss"] for h in off.history]
    assert "accel" not in plain.config and off.config["accel"] == Accel().as_dict()


def test_bf16_autocast_runs_the_forward_in_bf16_on_cpu():
    seen: list[torch.dtype] = []
    model = _cnn()
    model.features[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    res = bifp(model, _images(), sparsity=0.5, steps=4, protocol="paper", seed=0,
               constraint=FairnessConstraint("accuracy_gap", 0.05, init_multiplier=0.5),
               accel=Accel(autocast="bf16"))
    assert torch.bfloat16 in seen  # the training passes ran under autocast
    assert all(isinstance(h["upper_loss"], float) and h["upper_loss"] == h["upper_loss"] for h in res.history)
    assert res.config["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert res.config["accel"]["autocast"] == "bf16"


def test_forward_returns_float32_logits_under_autocast():
    lin = nn.Linear(4, 1)
    out = Accel(autocast="bf16").forward(lambda x: lin(x).squeeze(1), torch.randn(3, 4), torch.device("cpu"))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("structured", [False, True])
def test_channels_last_gives_the_same_masks(structured):
    plain, cl = _run(None, structured=structured), _run(Accel(channels_last=True), structured=structured)
    assert all(torch.equal(plain.masks[n], cl.masks[n]) for n in plain.masks)
    sd_a, sd_b = plain.model.state_dict(), cl.model.state_dict()
    assert all(torch.allclose(sd_a[k].float(), sd_b[k].float(), atol=1e-5) for k in sd_a)


def test_channels_last_input_and_model_layout():
    acc = Accel(channels_last=True)
    model = acc.prepare(_cnn())
    w = model.features[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    assert acc.input(torch.randn(2, 1, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    flat = torch.randn(2, 5)
    assert acc.input(flat) is flat


def test_backend_settings_are_restored():
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with settings(Accel(cudnn_benchmark=True, tf32=True)):
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(RuntimeError):
        with settings(FAST):
            raise RuntimeError("inside")
    assert torch.backends.cudnn.benchmark == before[0]


def test_compile_wires_the_forward_through_torch_compile():
    # the eager backend: compiles (traces with dynamo) without a C++ toolchain, in seconds
    res = bifp(make_model("mlp", in_shape=(6,), width=8, seed=0),
               make_loader(_tabular(), 32, shuffle=True, seed=0), sparsity=0.5, steps=3, protocol="paper",
               seed=0, accel=Accel(compile=True, compile_backend="eager"))
    assert res.config["accel"]["compile"] is True
    assert res.config["achieved_sparsity"] == pytest.approx(0.5, abs=0.02)


def _tabular():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 6, generator=g)
    return FairDataset(x, (x[:, 0] > 0).long(), torch.randint(0, 2, (128,), generator=g))


def test_gpu_step_smoke_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_step.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_step.py"), "--smoke", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["provenance"]["device"] == "cpu" and res["smoke"] is True
    rows = res["rows"]
    methods = {r["method"] for r in rows}
    assert methods == {"masked_sgd", "bifp_alternating", "bifp_joint", "bifp_structured"}
    assert {r["path"] for r in rows} == {"current", "fast"}
    for r in rows:
        assert r["ms_per_step"] > 0 and r["images_per_s"] > 0 and r["flops_per_step"] > 0
        assert r["achieved_tflops"] > 0


def test_fit_with_accel_off_is_the_plain_fit_and_bf16_runs():
    from fairprune_lite.train import fit

    data = _images()
    a, b, c = _cnn(), _cnn(), _cnn()
    ha = fit(a, data, steps=4, lr=0.05)
    hb = fit(b, data, steps=4, lr=0.05, accel=Accel())
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    hc = fit(c, data, steps=4, lr=0.05, accel=Accel(autocast="bf16", channels_last=True))
    assert all(h["loss"] == h["loss"] for h in hc)
