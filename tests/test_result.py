"""Tests of what a method returns and of results converted to JSON types."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from fairprune_lite import result, train
from fairprune_lite.masks import MaskScores


def test_prune_result_to_dict_is_json():
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    ms = MaskScores(model, 0.25)
    masks = ms.binary_masks()
    c = train.PassCounter()
    c.forward(10)
    c.backward()
    c.step()
    res = result.PruneResult(
        method="demo", sparsity_target=0.25, masks=masks, model=model,
        metrics={"val": {"accuracy": np.float64(0.5), "groups": {(0, 1): torch.tensor(0.3)}}},
        cost=c.as_dict() | {"data": "val"},
        history=[{"step": 0, "loss": torch.tensor(1.5), "mult": torch.tensor([0.0, 1.0])}],
        config={"lr": 0.1, "device": torch.device("cpu")},
    )
    d = res.to_dict()
    text = json.dumps(d)
    back = json.loads(text)
    assert back["sparsity"] == pytest.approx(0.25, abs=1 / 48)
    assert back["history"][0]["mult"] == [0.0, 1.0]
    assert back["cost"]["forward_passes"] == 1 and back["cost"]["data"] == "val"
    assert "model" not in back
    assert sum(v["pruned"] for v in back["masks"].values()) == round(0.25 * 48)


def test_to_jsonable_converts_every_kind():
    out = result.to_jsonable({(0, 1): np.int64(3), "t": torch.tensor(2.5), "a": np.arange(2), "m": nn.ReLU(),
                              "d": torch.device("cpu"), "s": (1, 2.0)})
    assert out == {"(0, 1)": 3, "t": 2.5, "a": [0, 1], "m": "ReLU", "d": "cpu", "s": [1, 2.0]}
    json.dumps(out)
    assert train.to_jsonable is result.to_jsonable and train.PruneResult is result.PruneResult
