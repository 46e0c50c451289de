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
  Which surrogate: the default is ``"sigmoid"``, not a convex bound. For the accuracy gap the
  two one-sided surrogates are ``c~_0 = E[u(t)|s+] + E[u(-t)|s-] - 1`` and ``c~_1 = E[u(t)|s-] +
  E[u(-t)|s+] - 1``; with the sigmoid ``u(t) + u(-t) = 1``, so ``c~_1 = -c~_0`` exactly and
  ``lambda_0 c~_0 + lambda_1 c~_1 = (lambda_0 - lambda_1) c~_0``: the term only ever pushes
  along the signed gap. With a convex bound (hinge, logistic) ``u(t) + u(-t)`` is smallest at
  ``t = 0``, so whenever both multipliers are positive the term pulls *every* margin towards 0,
  and even with one multiplier its gradient on the confidently correct majority examples does
  not vanish (``u'(t) -> 1`` as ``t -> infinity``), so it levels the majority down. Measured on a
  synthetic problem built so that a fair sparse model with 75% accuracy exists (unconstrained
  pruning: 88% accuracy, gap 0.32-0.38; 3 seeds, ``tau = 0.02``): the logistic bound drove the
  pruned model to a constant output (accuracy 0.43-0.53) or did nothing (gap 0.41), the sigmoid
  reached gap 0.01-0.05 at 75-78% accuracy. In the proxy-Lagrangian the surrogate only supplies
  the gradient and need not bound anything; the convex bounds stay available (``penalty`` mode
  wants a bound). ``temperature`` widens the sigmoid for networks with large margins.
* ``"penalty"``: the paper's form, a fixed weight on the relaxed constraint. We use the hinge
  on the excess, ``penalty_weight * sum_i relu(c~_i - tau)``: zero inside the feasible set (so
  a satisfied constraint does not keep pushing), and the same term with ``tau = 0`` is the
  plain penalty ``penalty_weight * sum_i c~_i`` of a gap ``|gap| = max_i c~_i`` up to the
  ``relu``. No multiplier moves; ``update`` only records the measured values.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import fairness
from ._optional import require

__all__ = ["FairnessConstraint", "KINDS", "MODES", "N_CONSTRAINTS", "constraint_se", "feasibility"]

KINDS = fairness.CONSTRAINT_KINDS
MODES = ("lagrangian", "penalty")
DUALS = ("gda", "nupi")
SURROGATES = ("hinge", "logistic", "sigmoid", "ramp")
#: number of one-sided constraints of each kind
N_CONSTRAINTS = {"accuracy_gap": 2, "demographic_parity": 2, "equalized_odds": 4}


@torch.no_grad()
def constraint_se(kind: str, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
    """Binomial standard error of each exact one-sided value ``c_i`` (shape ``[n]``, float64).

    A one-sided value is a difference of two group proportions ``p+ - p-`` (accuracy, selection
    rate, TPR or FPR of ``s=1`` and ``s=0``), so its SE is ``sqrt(p+(1-p+)/n+ + p-(1-p-)/n-)``
    with the per-group (per-cell for equalized odds) counts; both sides of a pair share it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return se_from_stats(kind, cell_stats(kind, logits.detach().flatten(), y, s))


def feasibility(kind: str, tau: float, logits: Tensor, y: Tensor, s: Tensor) -> dict[str, Any]:
    """``{"metric", "value", "tau", "se", "met"}`` of ``F <= tau`` on ``(logits, y, s)``.

    ``value`` is the constrained metric ``max_i c_i`` (the absolute accuracy gap, the DP
    difference, or the EO difference ``max(|TPR gap|, |FPR gap|)``), ``se`` the binomial
    standard error of the entry that attains it (:func:`constraint_se`), ``met`` is
    ``value <= tau``. ``value``/``se`` are None when a compared group or cell has no example.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    tau = _number(tau, "tau")
    try:
        vals = fairness.constraint_values(kind, logits.detach().float(), y, s, surrogate=None)
    except ValueError:
        return {"metric": kind, "value": None, "tau": tau, "se": None, "met": None}
    i = int(torch.argmax(vals))
    value = float(vals[i])
    se = float(constraint_se(kind, logits, y, s)[i])
    return {"metric": kind, "value": value, "tau": tau, "se": se, "met": bool(value <= tau)}


def _number(value: Any, name: str, *, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


def _cells(y: Tensor, s: Tensor) -> Tensor:
    """Cell index ``2 s + y`` of each example: (s=0,y=0), (s=0,y=1), (s=1,y=0), (s=1,y=1)."""
    return (2 * s + y).long()


def _hits(kind: str, logits: Tensor, y: Tensor) -> Tensor:
    """What the constraint's rates count: correct predictions (accuracy gap) or positive ones."""
    sel = logits.detach() > 0
    return (sel == (y == 1)) if kind == "accuracy_gap" else sel


def cell_stats(kind: str, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
    """``[n_00, n_01, n_10, n_11, h_00, h_01, h_10, h_11]`` (float64, CPU): examples and hits
    (:func:`_hits`) per (group, label) cell. Sums of these over batches are the pooled
    statistics the exact values and their standard errors are computed from."""
    idx = _cells(torch.as_tensor(y).flatten(), torch.as_tensor(s).flatten()).cpu()
    hit = _hits(kind, logits.flatten(), torch.as_tensor(y).flatten().to(logits.device)).cpu().double()
    return torch.cat([torch.bincount(idx, minlength=4).double(), torch.bincount(idx, weights=hit, minlength=4)])


def _pairs(kind: str, st: Tensor | list[float]) -> list[tuple[float, float, float, float]]:
    """``(hits+, n+, hits-, n-)`` of each compared rate from cell statistics (Python floats:
    a handful of scalars, cheaper than tensor arithmetic in the training loop)."""
    n00, n01, n10, n11, h00, h01, h10, h11 = st.tolist() if isinstance(st, Tensor) else st
    if kind == "equalized_odds":
        return [(h11, n11, h01, n01), (h10, n10, h00, n00)]  # TPR (y=1), FPR (y=0)
    return [(h10 + h11, n10 + n11, h00 + h01, n00 + n01)]


def values_from_stats(kind: str, st: Tensor | list[float]) -> Tensor | None:
    """Exact one-sided values from :func:`cell_stats` (float64), None when a compared rate has
    no example."""
    out: list[float] = []
    for hp, np_, hm, nm in _pairs(kind, st):
        if np_ == 0 or nm == 0:
            return None
        g = hp / np_ - hm / nm
        out += [g, -g]
    return torch.tensor(out, dtype=torch.float64)


def se_from_stats(kind: str, st: Tensor | list[float]) -> Tensor:
    """Binomial standard errors of :func:`values_from_stats` (NaN where undefined)."""
    out: list[float] = []
    for hp, np_, hm, nm in _pairs(kind, st):
        if np_ == 0 or nm == 0:
            v = float("nan")
        else:
            a, b = hp / np_, hm / nm
            v = math.sqrt(a * (1 - a) / np_ + b * (1 - b) / nm)
        out += [v, v]
    return torch.tensor(out, dtype=torch.float64)


class FairnessConstraint:
    """One fairness constraint ``F <= tau`` with its multipliers (or fixed penalty weight).

    Args:
        kind: ``"accuracy_gap"`` (Def. 1), ``"demographic_parity"`` or ``"equalized_odds"``.
        tau: the allowed violation, ``>= 0`` (e.g. 0.02 for a 2-point accuracy gap).
        surrogate: the smooth stand-in used in :meth:`term` (``"sigmoid"``, the default, see the
            module docstring; ``"hinge"``, ``"logistic"``, ``"ramp"`` are upper bounds; see
            :func:`fairprune_lite.fairness.surrogate`).
        mode: ``"lagrangian"`` (multipliers by projected dual ascent on the measured violation)
            or ``"penalty"`` (fixed ``penalty_weight``).
        dual_lr: step of the dual ascent (lagrangian mode).
        penalty_weight: weight of the fixed penalty (penalty mode).
        init_multiplier: starting value of every ``lambda_i`` (lagrangian mode), or one value
            per one-sided constraint.
        max_multiplier: optional cap on ``lambda_i`` (projection onto ``[0, max]``); ``None``
            means no cap.
        window: :meth:`update` with a batch measures the exact values on the pooled predictions
            of the last ``window`` batches it was given (a moving window), not on the batch
            alone: a small group has only a few examples per batch, and a gap measured on them
            is noise that makes *both* one-sided multipliers grow.
        temperature: the surrogate is ``u(t / temperature)``; margins of a trained network are
            several units, so a sigmoid with temperature 1 sees gradient only near the boundary.
        dual: how the multipliers move: ``"gda"`` (projected gradient ascent, ours) or
            ``"nupi"``: cooper-optim's ``DenseMultiplier`` updated by its ``nuPI`` controller
            (Sohrabi et al., 2024) with gains ``kp`` (proportional) and ``Ki = 1`` and error
            smoothing ``ema_nu``, projected onto ``>= 0`` by the multiplier's ``post_step_``:
            the proportional term damps the oscillation of noisy measurements.
        kp, ema_nu: nuPI's gains (``dual="nupi"`` only); ``kp = 0, ema_nu = 0`` is plain
            gradient ascent.
        margin: ``z >= 0``: the multipliers ascend on ``c_i - (tau - z * SE_i)``, the measured
            value against ``tau`` lowered by ``z`` binomial standard errors of that measurement
            (:func:`constraint_se`), so that a value enforced on the pruning data stays below
            ``tau`` on unseen data with probability about ``Phi(z)`` (one-sided). 0: plain
            ``tau``.
    """

    def __init__(
        self,
        kind: str = "accuracy_gap",
        tau: float = 0.02,
        *,
        surrogate: str = "sigmoid",
        mode: str = "lagrangian",
        dual_lr: float = 0.05,
        penalty_weight: float = 1.0,
        init_multiplier: float | Sequence[float] = 0.0,
        max_multiplier: float | None = None,
        window: int = 8,
        temperature: float = 1.0,
        margin: float = 0.0,
        dual: str = "gda",
        kp: float = 0.0,
        ema_nu: float = 0.0,
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
        n = N_CONSTRAINTS[kind]
        if isinstance(init_multiplier, (list, tuple)):
            if len(init_multiplier) != n:
                raise ValueError(f"init_multiplier must have {n} entries for kind {kind!r}, got {len(init_multiplier)}")
            init = [_number(v, "init_multiplier") for v in init_multiplier]
        else:
            init = [_number(init_multiplier, "init_multiplier")] * n
        if self.tau > 1:
            raise ValueError(f"tau must be in [0, 1] (a difference of rates), got {tau!r}")
        self.margin = _number(margin, "margin")
        if dual not in DUALS:
            raise ValueError(f"dual must be one of {DUALS}, got {dual!r}")
        self.dual = dual
        self.kp = _number(kp, "kp")
        self.ema_nu = _number(ema_nu, "ema_nu")
        if self.ema_nu >= 1:
            raise ValueError(f"ema_nu must be in [0, 1), got {ema_nu!r}")
        self.max_multiplier = None if max_multiplier is None else _number(max_multiplier, "max_multiplier")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.window = window
        self.temperature = _number(temperature, "temperature", strict=True)
        self.n = N_CONSTRAINTS[kind]
        self._pool: deque[Tensor] = deque(maxlen=window)  # cell statistics of recent batches
        self._u: Callable[[Tensor], Tensor] | None = None  # the surrogate function, made on first use
        self.skipped_terms = 0
        self.skipped_updates = 0
        self.multipliers = torch.tensor(init if mode == "lagrangian" else [0.0] * self.n, dtype=torch.float64)
        if self.max_multiplier is not None:
            self.multipliers.clamp_(max=self.max_multiplier)
        self.updates = 0
        self._last: dict[str, Any] = {}
        self._cooper: tuple[Any, Any] | None = None

    # -- values --------------------------------------------------------------------------------
    def defined(self, y: Tensor, s: Tensor) -> bool:
        """Whether every rate the constraint compares has examples in ``(y, s)``: both groups
        (accuracy gap, DP), or all four (group, label) cells (equalized odds)."""
        n = torch.bincount(_cells(torch.as_tensor(y).flatten(), torch.as_tensor(s).flatten()).cpu(), minlength=4)
        return self._defined_counts(n)

    def _defined_counts(self, n: Tensor) -> bool:
        if self.kind == "equalized_odds":
            return bool((n[:4] > 0).all())
        return bool(n[0] + n[1] > 0 and n[2] + n[3] > 0)

    def surrogate_values(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """Differentiable values ``c~_i`` of the one-sided constraints, shape ``[n]`` (upper
        bounds for ``hinge``, ``logistic``, ``ramp``; see :func:`fairprune_lite.fairness.surrogate`)."""
        u = fairness.surrogate(self.surrogate, temperature=self.temperature)
        return fairness.constraint_values(self.kind, logits, y, s, surrogate=u)

    def _fast_surrogate(self, logits: Tensor, y: Tensor, s: Tensor, n: list[int]) -> Tensor:
        """:meth:`surrogate_values` in a few vectorised ops (per-cell sums by ``index_add``),
        for the training loop; ``n`` are the cell counts, every compared one positive. Equal to
        :func:`fairprune_lite.fairness.constraint_values` up to summation order (tested)."""
        if self._u is None:
            self._u = fairness.surrogate(self.surrogate, temperature=self.temperature)
        y = y.to(logits.device)
        idx = _cells(y, s.to(logits.device))
        t = (2 * y.to(logits.dtype) - 1) * logits if self.kind == "accuracy_gap" else logits
        u = self._u
        a = logits.new_zeros(4).index_add(0, idx, u(t))   # sum of u(t) per cell
        b = logits.new_zeros(4).index_add(0, idx, u(-t))  # sum of u(-t) per cell
        if self.kind == "equalized_odds":
            out = []
            for p_, m_ in ((3, 1), (2, 0)):  # TPR cells (s+, y=1) vs (s-, y=1), then FPR cells
                out += [a[p_] / n[p_] + b[m_] / n[m_] - 1.0, a[m_] / n[m_] + b[p_] / n[p_] - 1.0]
            return torch.stack(out)
        n_p, n_m = n[2] + n[3], n[0] + n[1]
        a_p, a_m, b_p, b_m = a[2] + a[3], a[0] + a[1], b[2] + b[3], b[0] + b[1]
        return torch.stack([a_p / n_p + b_m / n_m - 1.0, a_m / n_m + b_p / n_p - 1.0])

    @torch.no_grad()
    def batch_values(self, logits: Tensor, y: Tensor, s: Tensor, *, stats: Tensor | None = None) -> Tensor | None:
        """Exact one-sided values of one batch (float64) from its cell statistics (given as
        ``stats``, or counted), or None when the batch lacks a compared cell."""
        if stats is None:
            stats = cell_stats(self.kind, logits.detach().flatten(), y, s)
        return values_from_stats(self.kind, stats)

    @torch.no_grad()
    def exact_values(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """The measured one-sided constraints ``c_i`` (from 0/1 predictions), shape ``[n]``."""
        return fairness.constraint_values(self.kind, logits.detach(), y, s, surrogate=None)

    def term(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """Scalar to add to the loss: ``sum_i lambda_i (c~_i - tau)`` or the fixed penalty.

        In lagrangian mode with all multipliers zero the term is an exact 0 with no graph work
        beyond the surrogate (it still has a gradient of zero, so it can be added blindly).
        A batch in which a compared rate has no examples (e.g. no positive of the small group,
        for equalized odds) cannot estimate the constraint: the term is then 0 for that batch
        and counted in ``skipped_terms`` (reported by :meth:`last_state`).
        """
        n = torch.bincount(_cells(torch.as_tensor(y).flatten(), torch.as_tensor(s).flatten()).cpu(), minlength=4)
        if not self._defined_counts(n):
            self.skipped_terms += 1
            return logits.sum() * 0.0
        if logits.dim() != 1:
            raise ValueError(f"logits must have shape [B] (one logit per example), got {tuple(logits.shape)}")
        sur = self._fast_surrogate(logits, torch.as_tensor(y), torch.as_tensor(s), n.tolist())
        self._last["surrogate"] = sur.detach()
        if self.mode == "lagrangian":
            lam = self.multipliers.to(device=sur.device, dtype=sur.dtype)
            return (lam * (sur - self.tau)).sum()
        return self.penalty_weight * torch.relu(sur - self.tau).sum()

    @torch.no_grad()
    def update(self, logits: Tensor | None = None, y: Tensor | None = None, s: Tensor | None = None, *,
               measured: Tensor | None = None, se: Tensor | None = None, pooled: bool = True,
               step_scale: float = 1.0) -> Tensor:
        """Projected dual ascent on the measured violation; returns the new multipliers.

        Give either the batch (``logits, y, s``) or ``measured``, the exact one-sided values
        ``c_i`` (e.g. over a whole validation split). A batch joins the moving window of the last
        ``window`` batches and the exact values are measured on the pooled predictions; if a
        compared rate has no example in the whole window, no step is taken (counted in
        ``skipped_updates``). Penalty mode records the values and leaves the (zero) multipliers
        alone. ``pooled=False`` measures on the given data alone (e.g. a full pass) without
        joining the window. With ``margin > 0`` the standard errors come from the data's
        counts, or from ``se`` with ``measured``. ``step_scale`` multiplies the measured
        violation the multipliers ascend on (the solver's ``dual_rule="per_step"``: an update every
        ``k`` steps counts ``k`` times, so the multipliers grow at the same rate per step whatever
        ``k``).
        """
        if measured is None:
            if logits is None or y is None or s is None:
                raise ValueError("update needs logits, y and s, or measured=")
            st = cell_stats(self.kind, logits.detach().flatten(), y, s)
            self._last["batch_stats"] = st
            if pooled:
                self._pool.append(st)
                st = torch.stack(list(self._pool)).sum(0) if len(self._pool) > 1 else st
            self._last["stats"] = st
            if not self._defined_counts(st[:4]):
                self.skipped_updates += 1
                return self.multipliers.clone()
            measured = values_from_stats(self.kind, st)
            if self.margin > 0:
                se = se_from_stats(self.kind, st)
        elif self.margin > 0 and se is None:
            raise ValueError("margin > 0 needs the standard errors: give se= with measured=, or the data")
        measured = torch.as_tensor(measured).detach().to("cpu", torch.float64).flatten()
        if measured.shape != (self.n,):
            raise ValueError(f"measured must have {self.n} entries for kind {self.kind!r}, got {tuple(measured.shape)}")
        if not bool(torch.isfinite(measured).all()):
            raise ValueError(f"measured constraint values are not finite: {measured.tolist()}")
        self._last["exact"] = measured
        bound = torch.full_like(measured, self.tau)
        if self.margin > 0:
            se_t = torch.as_tensor(se, dtype=torch.float64).flatten()
            if se_t.shape != measured.shape:
                raise ValueError(f"se must have {self.n} entries, got {tuple(se_t.shape)}")
            bound = bound - self.margin * se_t
            self._last["bound"] = bound
        violation = (measured - bound) * float(step_scale)
        if self.mode == "lagrangian" and self.dual == "nupi":
            new = self._nupi_step(violation)
            if self.max_multiplier is not None:
                new.clamp_(max=self.max_multiplier)
            self.multipliers = new
        elif self.mode == "lagrangian":
            new = (self.multipliers + self.dual_lr * violation).clamp_(min=0.0)
            if self.max_multiplier is not None:
                new.clamp_(max=self.max_multiplier)
            self.multipliers = new
        self.updates += 1
        return self.multipliers.clone()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _nupi_step(self, violation: Tensor) -> Tensor:
        """One step of cooper's nuPI on a cooper ``DenseMultiplier`` (made on first use, from the
        current multipliers); the violation is the gradient of the Lagrangian in ``lambda``."""
        cooper = require("cooper", "nupi", 'FairnessConstraint(dual="nupi")')

        if self._cooper is None:
            mult = cooper.multipliers.DenseMultiplier(init=self.multipliers.clone())
            mult.set_constraint_type(cooper.ConstraintType.INEQUALITY)
            opt = cooper.optim.nuPI(mult.parameters(), lr=self.dual_lr, Kp=self.kp, Ki=1.0, ema_nu=self.ema_nu,
                                    maximize=True)
            self._cooper = (mult, opt)
        mult, opt = self._cooper
        opt.zero_grad()
        mult.weight.grad = violation.to(mult.weight.dtype).clone()
        opt.step()
        mult.post_step_()
        return mult.weight.detach().clone().to(torch.float64)

    def last_batch_stats(self) -> Tensor | None:
        """Cell statistics of the last batch :meth:`update` measured (None before any): the
        solver's log reuses them instead of counting the batch again."""
        return self._last.get("batch_stats")

    def feasibility(self, logits: Tensor, y: Tensor, s: Tensor) -> dict[str, Any]:
        """:func:`feasibility` of this constraint's kind and ``tau`` on ``(logits, y, s)``."""
        return feasibility(self.kind, self.tau, logits, y, s)

    def to(self, device: torch.device | str) -> FairnessConstraint:
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
        out["skipped_terms"] = self.skipped_terms
        out["skipped_updates"] = self.skipped_updates
        return out

    def state_dict(self) -> dict[str, Any]:
        """Configuration and multipliers (JSON types) for logging and checkpointing."""
        return {
            "kind": self.kind, "tau": self.tau, "surrogate": self.surrogate, "mode": self.mode,
            "dual_lr": self.dual_lr, "penalty_weight": self.penalty_weight,
            "max_multiplier": self.max_multiplier, "window": self.window, "temperature": self.temperature,
            "margin": self.margin, "dual": self.dual, "kp": self.kp, "ema_nu": self.ema_nu,
            "updates": self.updates, "skipped_terms": self.skipped_terms, "skipped_updates": self.skipped_updates,
            "multipliers": [float(v) for v in self.multipliers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mult = torch.as_tensor(state["multipliers"], dtype=torch.float64)
        if mult.shape != (self.n,):
            raise ValueError(f"state multipliers must have {self.n} entries, got {tuple(mult.shape)}")
        self.multipliers = mult.clamp(min=0.0)
        self.updates = int(state.get("updates", 0))
        self._cooper = None  # nuPI restarts from the loaded multipliers

    def reset(self) -> None:
        """Multipliers back to zero, counters cleared."""
        self.multipliers = torch.zeros(self.n, dtype=torch.float64)
        self.updates = 0
        self._last = {}
        self._pool.clear()
        self._cooper = None
        self.skipped_terms = self.skipped_updates = 0

    def clone(self) -> FairnessConstraint:
        """A fresh constraint with the same configuration and zero multipliers."""
        return FairnessConstraint(self.kind, self.tau, surrogate=self.surrogate, mode=self.mode,
                                  dual_lr=self.dual_lr, penalty_weight=self.penalty_weight,
                                  max_multiplier=self.max_multiplier, window=self.window,
                                  temperature=self.temperature, margin=self.margin, dual=self.dual, kp=self.kp,
                                  ema_nu=self.ema_nu)

    def __repr__(self) -> str:
        return (f"FairnessConstraint(kind={self.kind!r}, tau={self.tau}, surrogate={self.surrogate!r}, "
                f"window={self.window}, "
                f"mode={self.mode!r}, multipliers={[round(float(v), 4) for v in self.multipliers]})")
