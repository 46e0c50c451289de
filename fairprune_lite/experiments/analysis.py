"""Analyses of stored runs that evaluate models again (not drawing): the linear-interpolation probe
between two sparse solutions (the paper's Fig. 8), whose curves the ``interpolation`` figure kind
draws."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import train as _train
from .config import RunSpec, check_spec
from .results import SPLITS, write_json
from .run import build_model, load_splits

__all__ = ["interpolation_curve"]


def _load_weights(folder: Path, res: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if not res.get("weights"):
        raise ValueError(f"{res['run_id']}: no saved weights (run the sweep with save_weights: true)")
    ck = torch.load(folder / res["weights"], map_location="cpu", weights_only=True)
    return ck["state_dict"]


def interpolation_curve(res_a: Mapping[str, Any], res_b: Mapping[str, Any], *, points: int = 21,
                        folder: str | os.PathLike | None = None, root: Any = None) -> dict[str, Any]:
    """Loss and accuracy gap of ``(1 - t) * theta_a + t * theta_b`` on ``val`` and ``test``.

    Both results must share dataset, model, seed and profile; their saved final weights (pruned
    weights are exactly zero) are interpolated entry by entry, floating buffers (BatchNorm
    statistics) too; integer buffers are taken from ``a``. Cached as
    ``<folder>/interp/<id_a>__<id_b>_<points>.json``.
    """
    folder = Path(folder or Path(res_a["_path"]).parent)
    cache = folder / "interp" / f"{res_a['run_id']}__{res_b['run_id']}_{points}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except json.JSONDecodeError:
            print(f"warning: {cache} is corrupt; recomputing", file=sys.stderr)
    for k in ("dataset", "model", "seed", "profile", "target", "sensitive"):
        if res_a.get(k) != res_b.get(k):
            raise ValueError(f"interpolation needs two runs with the same {k}: {res_a.get(k)!r} vs {res_b.get(k)!r}")
    spec = RunSpec.from_dict(res_a["spec"])
    profile = check_spec(spec)
    splits = load_splits(spec, profile, root=root)
    model, _, _ = build_model(spec, profile, splits)
    sa, sb = _load_weights(folder, res_a), _load_weights(folder, res_b)
    ts = np.linspace(0.0, 1.0, int(points))
    curve: dict[str, Any] = {"t": ts.tolist(), "a": res_a["run_id"], "b": res_b["run_id"],
                             "label_a": res_a["label"], "label_b": res_b["label"]}
    for split in SPLITS:
        curve[split] = {"loss": [], "accuracy": [], "accuracy_gap": []}
    for t in ts:
        sd = {k: ((1 - t) * sa[k] + t * sb[k]) if sa[k].is_floating_point() else sa[k] for k in sa}
        model.load_state_dict(sd)
        for split in SPLITS:
            m = _train.evaluate(model, getattr(splits, split), batch_size=profile.eval_batch_size)
            for k in ("loss", "accuracy", "accuracy_gap"):
                curve[split][k].append(float(m[k]))
    write_json(cache, curve)
    return curve
