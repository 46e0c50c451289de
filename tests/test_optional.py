"""fairprune_lite._optional: a missing optional package names the extra that installs it."""
from __future__ import annotations

import pytest

from fairprune_lite._optional import require


def test_present_module_is_returned():
    import json

    assert require("json", "none", "a feature") is json


def test_missing_module_names_the_feature_and_the_extra():
    with pytest.raises(ImportError, match=r"to_smaller needs the optional package 'no_such_pkg_x': "
                                          r"pip install 'fairprune-lite\[export\]'"):
        require("no_such_pkg_x.ops", "export", "to_smaller")


def test_to_smaller_without_torch_pruning_names_the_extra(monkeypatch):
    import sys

    import torch

    from fairprune_lite import export, masks

    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # as if not installed
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    sc = masks.MaskScores(model, 0.5, structured=True)
    with pytest.raises(ImportError, match=r"fairprune-lite\[export\]"):
        export.to_smaller(model, sc, torch.randn(1, 3, 8, 8))
