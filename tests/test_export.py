"""fairprune_lite.export; its behaviour is tested in tests/test_masks.py (export section), here
that the names moved from masks still work there, as the chapters call them."""
from __future__ import annotations

import torch

from fairprune_lite import export, masks


def test_masks_aliases_call_export():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    sc = masks.MaskScores(model, 0.5, structured=True)
    x = torch.randn(2, 3, 8, 8)
    for name in ("to_dense", "to_torch_prune"):
        a, b = getattr(masks, name)(model, sc), getattr(export, name)(model, sc)
        assert torch.equal(a(x), b(x)), name
    assert torch.equal(masks.to_smaller(model, sc, x)(x), export.to_smaller(model, sc, x)(x))
