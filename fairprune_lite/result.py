"""What a pruning method returns (:class:`PruneResult`) and the conversion of results to JSON
types (:func:`to_jsonable`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["PruneResult", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Recursively convert tensors / numpy values / dataclasses / tuples to JSON types.

    Scalar tensors and numpy scalars become Python numbers, other tensors and arrays nested
    lists, tuple keys strings; modules are replaced by their class name.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Tensor):
        obj = obj.detach().cpu()
        return obj.item() if obj.numel() == 1 and obj.dim() == 0 else obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, nn.Module):
        return type(obj).__name__
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, str) else str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return to_jsonable(obj.state_dict())
    return repr(obj)


@dataclass
class PruneResult:
    """What every pruning method returns.

    Attributes:
        method: registry name (``"bifp"``, ``"snip"``, ...).
        sparsity_target: requested sparsity in ``[0, 1)``.
        masks: ``{layer name: weight-shaped {0, 1} float tensor}``, the final masks.
        model: the pruned (and fine-tuned) model; not serialised by :meth:`to_dict`.
        metrics: ``{split: evaluate(...) dict}``, e.g. ``{"val": ..., "test": ...}``.
        cost: ``{"iterations", "forward_passes", "backward_passes", "examples",
            "wall_time_s", "data": "train" | "val"}`` (which split the pruning used).
        history: per-step dicts (losses, surrogate values, multipliers, sparsity, ...).
        config: the arguments the method ran with (JSON types).
        scores: the final continuous mask scores ``{layer: tensor}`` of score-based methods
            (BiFP / BiP), else None; not serialised by :meth:`to_dict`.
    """

    method: str
    sparsity_target: float
    masks: dict[str, Tensor]
    model: nn.Module | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Tensor] | None = None

    def sparsity(self) -> float:
        """Achieved overall sparsity of :attr:`masks` (fraction of zeros)."""
        total = sum(m.numel() for m in self.masks.values())
        zeros = sum(int((m == 0).sum()) for m in self.masks.values())
        return zeros / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: no tensors, no model; masks as per-layer sparsity counts."""
        layers = {n: {"pruned": int((m == 0).sum()), "total": int(m.numel())} for n, m in self.masks.items()}
        return to_jsonable({
            "method": self.method,
            "sparsity_target": float(self.sparsity_target),
            "sparsity": self.sparsity(),
            "masks": layers,
            "metrics": self.metrics,
            "cost": self.cost,
            "history": self.history,
            "config": self.config,
        })
