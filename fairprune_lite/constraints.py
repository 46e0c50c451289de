"""Fairness constraints as a training term: Lagrange multipliers or a fixed penalty.

A constraint ``F(f) <= tau`` (accuracy gap, demographic parity or equalized odds) is split
into one-sided constraints ``c_i(f) <= tau`` (2 for the accuracy gap and DP, 4 for EO), given by
:func:`fairprune_lite.fairness.constraint_values`: exactly (indicators, not differentiable) or as
differentiable upper bounds ``c~_i >= c_i`` built from a surrogate ``u`` of the indicator.

Two forms, selected by ``mode``:

* ``"lagrangian"`` (default), the proxy-Lagrangian of Cotter, Jiang, Sridharan (2019): the model
  minimises ``loss + sum_i lambda_i * (c~_i - tau)`` (the *surrogate* values, which have
  gradients), while the multipliers ``lambda_i >= 0`` ascend on the *measured* violation,
  ``lambda_i <- max(0, lambda_i + dual_lr * (c_i - tau))`` with the exact ``c_i``. The surrogate
  only has to point in the right direction; whether the constraint holds is judged on the real
  metric, so ``tau`` keeps its meaning. A multiplier grows while its constraint is violated and
  decays to 0 once it holds with slack.
* ``"penalty"``: the paper's form, a fixed weight on the relaxed constraint. We use the hinge
  on the excess, ``penalty_weight * sum_i relu(c~_i - tau)``: zero inside the feasible set (so
  a satisfied constraint does not keep pushing), and the same term with ``tau = 0`` is the
  plain penalty ``penalty_weight * sum_i c~_i`` of a gap ``|gap| = max_i c~_i`` up to the
  ``relu``. No multiplier moves; ``update`` only records the measured values.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["FairnessConstraint", "KINDS", "MODES", "N_CONSTRAINTS"]

KINDS = ("accuracy_gap", "demographic_parity", "equalized_odds")
MODES = ("lagrangian", "penalty")
SURROGATES = ("hinge", "logistic", "sigmoid", "ramp")
#: number of one-sided constraints of each kind
N_CONSTRAINTS = {"accuracy_gap": 2, "demographic_parity": 2, "equalized_odds": 4}


def _number(value: Any, name: str, *, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


class FairnessConstraint:
    """One fairness constraint ``F <= tau`` with its multipliers (or fixed penalty weight).

    Args:
        kind: ``"accuracy_gap"`` (Def. 1), ``"demographic_parity"`` or ``"equalized_odds"``.
        tau: the allowed violation, ``>= 0`` (e.g. 0.02 for a 2-point accuracy gap).
        surrogate: the smooth bound used in :meth:`term` (``"hinge"``, ``"logistic"``,
            ``"sigmoid"``, ``"ramp"``; see :func:`fairprune_lite.fairness.surrogate`).
        mode: ``"lagrangian"`` (multipliers by projected dual ascent on the measured violation)
            or ``"penalty"`` (fixed ``penalty_weight``).
        dual_lr: step of the dual ascent (lagrangian mode).
        penalty_weight: weight of the fixed penalty (penalty mode).
        init_multiplier: starting value of every ``lambda_i`` (lagrangian mode).
        max_multiplier: optional cap on ``lambda_i`` (projection onto ``[0, max]``); ``None``
            means no cap.
    """

    def __init__(
        self,
        kind: str = "accuracy_gap",
        tau: float = 0.02,
        *,
        surrogate: str = "logistic",
        mode: str = "lagrangian",
        dual_lr: float = 0.05,
        penalty_weight: float = 1.0,
        init_multiplier: float = 0.0,
        max_multiplier: float | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
        self.kind = kind
        self.tau = _number(tau, "tau")
        self.surrogate = surrogate
        self.mode = mode
        self.dual_lr = _number(dual_lr, "dual_lr")
        self.penalty_weight = _number(penalty_weight, "penalty_weight")
        init = _number(init_multiplier, "init_multiplier")
        self.max_multiplier = None if max_multiplier is None else _number(max_multiplier, "max_multiplier")
        self.n = N_CONSTRAINTS[kind]
        self.multipliers = torch.full((self.n,), init if mode == "lagrangian" else 0.0, dtype=torch.float64)
        if self.max_multiplier is not None:
            self.multipliers.clamp_(max=self.max_multiplier)
        self.updates = 0
        self._last: dict[str, Any] = {}

    # -- values --------------------------------------------------------------------------------
    def surrogate_values(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """Differentiable upper bounds ``c~_i`` of the one-sided constraints, shape ``[n]``."""
        from . import fairness  # imported on use, so this module loads on its own

        return fairness.constraint_values(self.kind, logits, y, s, surrogate=self.surrogate)

    @torch.no_grad()
    def exact_values(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """The measured one-sided constraints ``c_i`` (from 0/1 predictions), shape ``[n]``."""
        from . import fairness

        return fairness.constraint_values(self.kind, logits.detach(), y, s, surrogate=None)

    def term(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """Scalar to add to the loss: ``sum_i lambda_i (c~_i - tau)`` or the fixed penalty.

        In lagrangian mode with all multipliers zero the term is an exact 0 with no graph work
        beyond the surrogate (it still has a gradient of zero, so it can be added blindly).
        """
        sur = self.surrogate_values(logits, y, s)
        if sur.shape != (self.n,):
            raise ValueError(f"constraint_values returned shape {tuple(sur.shape)}, expected ({self.n},)")
        self._last["surrogate"] = sur.detach()
        if self.mode == "lagrangian":
            lam = self.multipliers.to(device=sur.device, dtype=sur.dtype)
            return (lam * (sur - self.tau)).sum()
        return self.penalty_weight * torch.relu(sur - self.tau).sum()

    @torch.no_grad()
    def update(self, logits: Tensor | None = None, y: Tensor | None = None, s: Tensor | None = None, *,
               measured: Tensor | None = None) -> Tensor:
        """Projected dual ascent on the measured violation; returns the new multipliers.

        Give either the batch (``logits, y, s``; the exact values are computed) or ``measured``,
        the exact one-sided values ``c_i`` (e.g. over a whole validation split). Penalty mode
        records the values and leaves the (zero) multipliers alone.
        """
        if measured is None:
            if logits is None or y is None or s is None:
                raise ValueError("update needs logits, y and s, or measured=")
            measured = self.exact_values(logits, y, s)
        measured = torch.as_tensor(measured).detach().to("cpu", torch.float64).flatten()
        if measured.shape != (self.n,):
            raise ValueError(f"measured must have {self.n} entries for kind {self.kind!r}, got {tuple(measured.shape)}")
        if not bool(torch.isfinite(measured).all()):
            raise ValueError(f"measured constraint values are not finite: {measured.tolist()}")
        self._last["exact"] = measured
        if self.mode == "lagrangian":
            new = (self.multipliers + self.dual_lr * (measured - self.tau)).clamp_(min=0.0)
            if self.max_multiplier is not None:
                new.clamp_(max=self.max_multiplier)
            self.multipliers = new
        self.updates += 1
        return self.multipliers.clone()

    # -- bookkeeping ---------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> "FairnessConstraint":
        """No-op kept for symmetry with modules: multipliers live on the CPU in float64 and are
        moved to the logits' device inside :meth:`term`."""
        return self

    def last_state(self) -> dict[str, Any]:
        """Floats for logging: multipliers and the last surrogate / exact values seen."""
        out: dict[str, Any] = {"multipliers": [float(v) for v in self.multipliers]}
        for k in ("surrogate", "exact"):
            if k in self._last:
                out[k] = [float(v) for v in self._last[k]]
        if "exact" in self._last:
            out["max_violation"] = float(self._last["exact"].max()) - self.tau
        return out

    def state_dict(self) -> dict[str, Any]:
        """Configuration and multipliers (JSON types) for logging and checkpointing."""
        return {
            "kind": self.kind, "tau": self.tau, "surrogate": self.surrogate, "mode": self.mode,
            "dual_lr": self.dual_lr, "penalty_weight": self.penalty_weight,
            "max_multiplier": self.max_multiplier, "updates": self.updates,
            "multipliers": [float(v) for v in self.multipliers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mult = torch.as_tensor(state["multipliers"], dtype=torch.float64)
        if mult.shape != (self.n,):
            raise ValueError(f"state multipliers must have {self.n} entries, got {tuple(mult.shape)}")
        self.multipliers = mult.clamp(min=0.0)
        self.updates = int(state.get("updates", 0))

    def reset(self) -> None:
        """Multipliers back to zero, counters cleared."""
        self.multipliers = torch.zeros(self.n, dtype=torch.float64)
        self.updates = 0
        self._last = {}

    def clone(self) -> "FairnessConstraint":
        """A fresh constraint with the same configuration and zero multipliers."""
        return FairnessConstraint(self.kind, self.tau, surrogate=self.surrogate, mode=self.mode,
                                  dual_lr=self.dual_lr, penalty_weight=self.penalty_weight,
                                  max_multiplier=self.max_multiplier)

    def __repr__(self) -> str:
        return (f"FairnessConstraint(kind={self.kind!r}, tau={self.tau}, surrogate={self.surrogate!r}, "
                f"mode={self.mode!r}, multipliers={[round(float(v), 4) for v in self.multipliers]})")
