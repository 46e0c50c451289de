"""Fairness constraints as a training term, in three small pieces, shaped as cooper shapes them.

A constraint ``F(f) <= tau`` (accuracy gap, demographic parity or equalized odds) is split
into one-sided constraints ``c_i(f) <= tau`` (2 for the accuracy gap and DP, 4 for EO), given by
:func:`fairprune_lite.fairness.constraint_values`: exactly (indicators, not differentiable) or as
differentiable upper bounds ``c~_i >= c_i`` built from a surrogate ``u`` of the indicator.

The pieces (each usable and tested alone; cooper-optim calls them the constraint's state, the
multiplier with its optimizer, and the formulation):

* **Estimators** say how large the constraint is. :class:`WindowEstimate` measures the *exact*
  values ``c_i`` (0/1 predictions) on the pooled cell statistics of the last ``window`` batches
  (or on one full pass), with their binomial standard errors and the bound ``tau - margin * SE``
  they are held to: what the multipliers ascend on. :class:`SurrogateEstimate` gives the
  differentiable values ``c~_i`` of one batch: what the model's gradient sees. The exact values
  have one definition, :func:`fairprune_lite.fairness.values_from_stats`.
* **Multipliers** ``lambda_i >= 0`` with their update rule: :class:`ProjectedAscent` (ours,
  ``lambda <- clip(lambda + lr * violation, 0, max)``) or :class:`NuPI` (cooper-optim's
  ``DenseMultiplier`` moved by its ``nuPI`` controller, extra ``nupi``).
* **Formulations** say how a multiplier and the surrogate enter the loss: :class:`Lagrangian`
  (``sum_i lambda_i (c~_i - tau)``, the multiplier ascends) or :class:`Penalty` (a fixed weight
  on the excess, nothing ascends).

:class:`FairnessConstraint` is the composition the solver, the two-stage baselines and the book
use (the constructor's arguments and attributes are those of the one class it used to be).

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

import abc
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import fairness
from ._optional import require
from .fairness import (
    N_CONSTRAINTS,
    cell_counts,
    cell_index,
    cell_stats,
    rates_defined,
    se_from_stats,
    values_from_stats,
)

__all__ = ["FairnessConstraint", "KINDS", "MODES", "DUALS", "N_CONSTRAINTS", "constraint_se", "feasibility",
           "Estimate", "WindowEstimate", "SurrogateEstimate", "Multiplier", "ProjectedAscent", "NuPI",
           "make_multiplier", "Lagrangian", "Penalty", "cell_stats", "values_from_stats", "se_from_stats"]

KINDS = fairness.CONSTRAINT_KINDS
MODES = ("lagrangian", "penalty")
DUALS = ("gda", "nupi")
SURROGATES = fairness.SURROGATES


def _number(value: Any, name: str, *, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


def _kind(kind: Any) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return str(kind)


def _counts(y: Tensor, s: Tensor) -> list[int]:
    """Examples per (group, label) cell ``[n_00, n_01, n_10, n_11]`` (Python ints)."""
    return torch.bincount(cell_index(torch.as_tensor(y).flatten(), torch.as_tensor(s).flatten()).cpu(),
                          minlength=4).tolist()


# ---------------------------------------------------------------------------------------------
# measuring: exact values with standard errors, and the differentiable surrogate
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def constraint_se(kind: str, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
    """Binomial standard error of each exact one-sided value ``c_i`` (shape ``[n]``, float64).

    A one-sided value is a difference of two group proportions ``p+ - p-`` (accuracy, selection
    rate, TPR or FPR of ``s=1`` and ``s=0``), so its SE is ``sqrt(p+(1-p+)/n+ + p-(1-p-)/n-)``
    with the per-group (per-cell for equalized odds) counts; both sides of a pair share it.
    """
    return se_from_stats(_kind(kind), cell_stats(kind, logits.detach().flatten(), y, s))


def feasibility(kind: str, tau: float, logits: Tensor, y: Tensor, s: Tensor) -> dict[str, Any]:
    """``{"metric", "value", "tau", "se", "met"}`` of ``F <= tau`` on ``(logits, y, s)``.

    ``value`` is the constrained metric ``max_i c_i`` (the absolute accuracy gap, the DP
    difference, or the EO difference ``max(|TPR gap|, |FPR gap|)``) in float32 arithmetic, ``se``
    the binomial standard error of the entry that attains it (:func:`constraint_se`), ``met`` is
    ``value <= tau``. ``value``/``se`` are None when a compared group or cell has no example (or
    the input is not valid for :func:`fairprune_lite.fairness.constraint_values`).
    """
    kind = _kind(kind)
    tau = _number(tau, "tau")
    try:
        vals = fairness.constraint_values(kind, logits.detach().float(), y, s, surrogate=None)
    except ValueError:
        return {"metric": kind, "value": None, "tau": tau, "se": None, "met": None}
    i = int(torch.argmax(vals))
    value = float(vals[i])
    se = float(constraint_se(kind, logits, y, s)[i])
    return {"metric": kind, "value": value, "tau": tau, "se": se, "met": bool(value <= tau)}


@dataclass
class Estimate:
    """One measurement of the exact constraint: the one-sided ``values`` (float64, CPU), their
    standard errors ``se`` (None unless asked for), the cell statistics ``stats`` they come from
    (:func:`fairprune_lite.fairness.cell_stats`' eight numbers)."""

    values: Tensor
    se: Tensor | None
    stats: Sequence[float] | None = None


class WindowEstimate:
    """The exact one-sided values the multipliers ascend on, and the bound they are held to.

    :meth:`observe` adds a batch's cell statistics (:func:`fairprune_lite.fairness.cell_stats`)
    to a moving window of the last ``window`` batches and measures the exact values on the pooled
    statistics (a small group has a few examples per batch; a gap measured on them is noise that
    makes *both* one-sided multipliers grow); ``pooled=False`` measures the given data alone (a
    full pass) without joining the window. :meth:`bound` is ``tau - margin * SE``: a value held
    below it on the data measured stays below ``tau`` on unseen data with probability about
    ``Phi(margin)`` (one-sided); ``margin = 0`` is plain ``tau``. The statistics are counts, so
    the pooled sums are exact (kept as Python floats: the window runs once per training step).
    """

    def __init__(self, kind: str, *, window: int = 8, margin: float = 0.0) -> None:
        self.kind = _kind(kind)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.window = window
        self.margin = _number(margin, "margin")
        self._pool: deque[list[float]] = deque(maxlen=window)
        self._batch: list[float] | None = None  # the last batch observed
        self._stats: list[float] | None = None  # the statistics the last estimate used

    @property
    def batch_stats(self) -> Tensor | None:
        """Cell statistics of the last batch observed (float64), None before any."""
        return None if self._batch is None else torch.tensor(self._batch, dtype=torch.float64)

    @property
    def stats(self) -> Tensor | None:
        """The (pooled) cell statistics of the last estimate, None before any."""
        return None if self._stats is None else torch.tensor(self._stats, dtype=torch.float64)

    @torch.no_grad()
    def observe(self, logits: Tensor, y: Tensor, s: Tensor, *, pooled: bool = True) -> Estimate | None:
        """Measure on ``(logits, y, s)`` (pooled with the window, or alone); None when a compared
        rate has no example in what was measured. SEs are computed when ``margin > 0``."""
        st = cell_counts(self.kind, logits.detach(), y, s)
        self._batch = st
        if pooled:
            self._pool.append(st)
            if len(self._pool) > 1:
                st = [sum(col) for col in zip(*self._pool, strict=True)]
        self._stats = st
        return self.from_stats(st)

    def from_stats(self, st: Tensor | Sequence[float]) -> Estimate | None:
        """The estimate of given cell statistics (None when a compared rate has no example)."""
        if isinstance(st, Tensor):
            st = st.tolist()
        values = values_from_stats(self.kind, st)
        if values is None:
            return None
        return Estimate(values, se_from_stats(self.kind, st) if self.margin > 0 else None, st)

    def bound(self, tau: float, se: Tensor | None, n: int) -> Tensor:
        """``tau - margin * se`` per one-sided constraint (``tau`` when ``margin = 0``)."""
        bound = torch.full((n,), float(tau), dtype=torch.float64)
        if self.margin > 0:
            if se is None:
                raise ValueError("margin > 0 needs the standard errors: give se= with measured=, or the data")
            se_t = torch.as_tensor(se, dtype=torch.float64).flatten()
            if se_t.shape != bound.shape:
                raise ValueError(f"se must have {n} entries, got {tuple(se_t.shape)}")
            bound = bound - self.margin * se_t
        return bound


class SurrogateEstimate:
    """The differentiable one-sided values ``c~_i`` of one batch: each indicator of the exact
    values replaced by ``u(t / temperature)`` (:func:`fairprune_lite.fairness.surrogate`; upper
    bounds for ``hinge``, ``logistic``, ``ramp``). :meth:`values` is the training loop's
    vectorised form, equal to :meth:`reference` (:func:`fairprune_lite.fairness.constraint_values`,
    with its validation) up to summation order."""

    def __init__(self, kind: str, surrogate: str = "sigmoid", *, temperature: float = 1.0) -> None:
        self.kind = _kind(kind)
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
        self.name = surrogate
        self.temperature = _number(temperature, "temperature", strict=True)
        self._u: Callable[[Tensor], Tensor] | None = None  # made on first use
        self._index: dict[torch.device, tuple[Tensor, Tensor]] = {}

    @property
    def u(self) -> Callable[[Tensor], Tensor]:
        if self._u is None:
            self._u = fairness.surrogate(self.name, temperature=self.temperature)
        return self._u

    def reference(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """:func:`fairprune_lite.fairness.constraint_values` with this surrogate."""
        u = fairness.surrogate(self.name, temperature=self.temperature)
        return fairness.constraint_values(self.kind, logits, y, s, surrogate=u)

    def values(self, logits: Tensor, y: Tensor, s: Tensor, n: Sequence[float], *,
               idx: Tensor | None = None) -> Tensor:
        """The values in a few vectorised ops (per-cell sums by ``index_add``); ``n`` are the
        cell counts ``[n_00, n_01, n_10, n_11]``, every compared one positive.

        Each entry is ``sum_cell u(.) / n_cell + sum_cell' u(-.) / n_cell' - 1`` evaluated in
        ``logits``' dtype (the counts are exact in float32 below 2^24), the same arithmetic,
        operation by operation, for every entry at once; other dtypes (half precision, where a
        count need not be exact) divide by each count as a Python number. ``idx``: the examples'
        cell indices (:func:`fairprune_lite.fairness.cell_index`) when already computed."""
        y = y.to(logits.device)
        if idx is None:
            idx = cell_index(y, s.to(logits.device))
        t = (2 * y.to(logits.dtype) - 1) * logits if self.kind == "accuracy_gap" else logits
        u = self.u
        a = logits.new_zeros(4).index_add(0, idx, u(t))   # sum of u(t) per cell
        b = logits.new_zeros(4).index_add(0, idx, u(-t))  # sum of u(-t) per cell
        exact = logits.dtype in (torch.float32, torch.float64)
        if self.kind == "equalized_odds":
            if not exact:
                out = []
                for p_, m_ in ((3, 1), (2, 0)):  # TPR cells (s+, y=1) vs (s-, y=1), then FPR cells
                    out += [a[p_] / n[p_] + b[m_] / n[m_] - 1.0, a[m_] / n[m_] + b[p_] / n[p_] - 1.0]
                return torch.stack(out)
            cnt = torch.tensor(list(n), dtype=logits.dtype, device=logits.device)
            ia, ib = self._eo_index(logits.device)
            # [a3/n3 + b1/n1, a1/n1 + b3/n3, a2/n2 + b0/n0, a0/n0 + b2/n2] - 1: TPR then FPR pairs
            return (a / cnt)[ia] + (b / cnt)[ib] - 1.0
        n_m, n_p = n[0] + n[1], n[2] + n[3]
        ga, gb = a.view(2, 2), b.view(2, 2)
        sa, sb = ga[:, 0] + ga[:, 1], gb[:, 0] + gb[:, 1]  # [sum over s-, sum over s+]
        if not exact:
            return torch.stack([sa[1] / n_p + sb[0] / n_m - 1.0, sa[0] / n_m + sb[1] / n_p - 1.0])
        cnt = torch.tensor([n_m, n_p], dtype=logits.dtype, device=logits.device)
        # [a_p/n_p + b_m/n_m, a_m/n_m + b_p/n_p] - 1
        return (sa / cnt).flip(0) + sb / cnt - 1.0

    def _eo_index(self, device: torch.device) -> tuple[Tensor, Tensor]:
        hit = self._index.get(device)
        if hit is None:
            hit = self._index[device] = (torch.tensor([3, 1, 2, 0], device=device),
                                         torch.tensor([1, 3, 0, 2], device=device))
        return hit


# ---------------------------------------------------------------------------------------------
# multipliers and their update rules
# ---------------------------------------------------------------------------------------------
class Multiplier(abc.ABC):
    """Multipliers ``lambda_i >= 0`` (float64, CPU), one per one-sided constraint, optionally
    capped at ``max_value``; :meth:`step` moves them by the violation (the gradient of the
    Lagrangian in ``lambda``) and returns a copy of the new values."""

    rule = "none"

    def __init__(self, n: int, *, init: float | Sequence[float] = 0.0, lr: float = 0.05,
                 max_value: float | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        self.n = n
        self.lr = _number(lr, "dual_lr")
        self.max_value = None if max_value is None else _number(max_value, "max_multiplier")
        if isinstance(init, (list, tuple)):
            if len(init) != n:
                raise ValueError(f"init_multiplier must have {n} entries, got {len(init)}")
            vals = [_number(v, "init_multiplier") for v in init]
        else:
            vals = [_number(init, "init_multiplier")] * n
        self.value = torch.tensor(vals, dtype=torch.float64)
        if self.max_value is not None:
            self.value.clamp_(max=self.max_value)

    def _cap(self, new: Tensor) -> Tensor:
        if self.max_value is not None:
            new.clamp_(max=self.max_value)
        return new

    @abc.abstractmethod
    def step(self, violation: Tensor) -> Tensor:
        """Move the multipliers by ``violation`` (one entry per constraint); the new values."""

    def load(self, value: Tensor) -> None:
        """Set the multipliers (projected onto ``>= 0``), e.g. from a checkpoint."""
        value = torch.as_tensor(value, dtype=torch.float64)
        if value.shape != (self.n,):
            raise ValueError(f"state multipliers must have {self.n} entries, got {tuple(value.shape)}")
        self.value = value.clamp(min=0.0)

    def reset(self) -> None:
        """Back to zero."""
        self.value = torch.zeros(self.n, dtype=torch.float64)


class ProjectedAscent(Multiplier):
    """Projected gradient ascent: ``lambda <- clip(lambda + lr * violation, 0, max_value)``."""

    rule = "gda"

    def step(self, violation: Tensor) -> Tensor:
        self.value = self._cap((self.value + self.lr * violation).clamp_(min=0.0))
        return self.value.clone()


class NuPI(Multiplier):
    """cooper-optim's ``DenseMultiplier`` moved by its ``nuPI`` controller (Sohrabi et al., ICML
    2024) with gains ``kp`` (proportional) and ``Ki = 1``, error smoothing ``ema_nu`` and step
    ``lr``, projected onto ``>= 0`` by the multiplier's ``post_step_`` and onto ``<= max_value``
    here, in cooper's own state too (a cap on the returned values alone would let the state wind
    up above it, and the multiplier would then stay at the cap for many steps after the violation
    turned negative). ``kp = 0, ema_nu = 0`` is projected gradient ascent. The cooper objects are
    made on the first step, from the current values."""

    rule = "nupi"

    def __init__(self, n: int, *, init: float | Sequence[float] = 0.0, lr: float = 0.05,
                 max_value: float | None = None, kp: float = 0.0, ema_nu: float = 0.0) -> None:
        super().__init__(n, init=init, lr=lr, max_value=max_value)
        self.kp = _number(kp, "kp")
        self.ema_nu = _number(ema_nu, "ema_nu")
        if self.ema_nu >= 1:
            raise ValueError(f"ema_nu must be in [0, 1), got {ema_nu!r}")
        self._cooper: tuple[Any, Any] | None = None

    def step(self, violation: Tensor) -> Tensor:
        cooper = require("cooper", "nupi", 'FairnessConstraint(dual="nupi")')
        if self._cooper is None:
            mult = cooper.multipliers.DenseMultiplier(init=self.value.clone())
            mult.set_constraint_type(cooper.ConstraintType.INEQUALITY)
            opt = cooper.optim.nuPI(mult.parameters(), lr=self.lr, Kp=self.kp, Ki=1.0, ema_nu=self.ema_nu,
                                    maximize=True)
            self._cooper = (mult, opt)
        mult, opt = self._cooper
        opt.zero_grad()
        mult.weight.grad = violation.to(mult.weight.dtype).clone()
        opt.step()
        mult.post_step_()
        if self.max_value is not None:
            with torch.no_grad():
                mult.weight.clamp_(max=self.max_value)
        self.value = self._cap(mult.weight.detach().clone().to(torch.float64))  # exact in float64
        return self.value.clone()

    def load(self, value: Tensor) -> None:
        super().load(value)
        self._cooper = None  # nuPI restarts from the loaded multipliers

    def reset(self) -> None:
        super().reset()
        self._cooper = None


def make_multiplier(rule: str, n: int, *, init: float | Sequence[float] = 0.0, lr: float = 0.05,
                    max_value: float | None = None, kp: float = 0.0, ema_nu: float = 0.0) -> Multiplier:
    """The multiplier of update rule ``rule`` (``"gda"`` or ``"nupi"``, :data:`DUALS`)."""
    if rule not in DUALS:
        raise ValueError(f"dual must be one of {DUALS}, got {rule!r}")
    if rule == "nupi":
        return NuPI(n, init=init, lr=lr, max_value=max_value, kp=kp, ema_nu=ema_nu)
    # validated even though projected ascent does not use them (they are recorded)
    _number(kp, "kp")
    if _number(ema_nu, "ema_nu") >= 1:
        raise ValueError(f"ema_nu must be in [0, 1), got {ema_nu!r}")
    return ProjectedAscent(n, init=init, lr=lr, max_value=max_value)


# ---------------------------------------------------------------------------------------------
# formulations: how the multiplier and the surrogate enter the loss
# ---------------------------------------------------------------------------------------------
class Lagrangian:
    """The proxy-Lagrangian: the loss gets ``sum_i lambda_i (c~_i - tau)`` and the multiplier
    ascends on the measured violation."""

    mode = "lagrangian"

    def __init__(self, multiplier: Multiplier) -> None:
        self.multiplier = multiplier

    def term(self, surrogate: Tensor, tau: float) -> Tensor:
        lam = self.multiplier.value.to(device=surrogate.device, dtype=surrogate.dtype)
        return (lam * (surrogate - tau)).sum()

    def ascend(self, violation: Tensor) -> None:
        self.multiplier.step(violation)


class Penalty:
    """A fixed penalty on the excess, ``weight * sum_i relu(c~_i - tau)``; nothing ascends."""

    mode = "penalty"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = _number(weight, "penalty_weight")

    def term(self, surrogate: Tensor, tau: float) -> Tensor:
        return self.weight * torch.relu(surrogate - tau).sum()

    def ascend(self, violation: Tensor) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# the composition
# ---------------------------------------------------------------------------------------------
class FairnessConstraint:
    """One fairness constraint ``F <= tau`` with its multipliers (or fixed penalty weight): a
    :class:`WindowEstimate` (``estimator``), a :class:`SurrogateEstimate` (``relaxation``), a
    :class:`Multiplier` (``multiplier``) and a formulation, :class:`Lagrangian` or
    :class:`Penalty` (``formulation``).

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
        dual: how the multipliers move: ``"gda"`` (:class:`ProjectedAscent`, ours) or ``"nupi"``
            (:class:`NuPI`, cooper-optim's controller: the proportional term damps the
            oscillation of noisy measurements).
        kp, ema_nu: nuPI's gains (``dual="nupi"`` only); ``kp = 0, ema_nu = 0`` is plain
            gradient ascent.
        margin: ``z >= 0``: the multipliers ascend on ``c_i - (tau - z * SE_i)``, the measured
            value against ``tau`` lowered by ``z`` binomial standard errors of that measurement
            (:func:`constraint_se`, :meth:`WindowEstimate.bound`). 0: plain ``tau``.
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
        self.kind = _kind(kind)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.tau = _number(tau, "tau")
        if self.tau > 1:
            raise ValueError(f"tau must be in [0, 1] (a difference of rates), got {tau!r}")
        self.n = N_CONSTRAINTS[self.kind]
        self.relaxation = SurrogateEstimate(self.kind, surrogate, temperature=temperature)
        self.estimator = WindowEstimate(self.kind, window=window, margin=margin)
        if isinstance(init_multiplier, (list, tuple)) and len(init_multiplier) != self.n:
            raise ValueError(f"init_multiplier must have {self.n} entries for kind {self.kind!r}, "
                             f"got {len(init_multiplier)}")
        self.multiplier = make_multiplier(dual, self.n, init=init_multiplier, lr=dual_lr, max_value=max_multiplier,
                                          kp=kp, ema_nu=ema_nu)
        self.formulation: Lagrangian | Penalty
        if mode == "lagrangian":
            self.formulation = Lagrangian(self.multiplier)
        else:
            self.formulation = Penalty(penalty_weight)
            self.multiplier.reset()  # no multiplier moves in penalty mode: zeros, whatever init_multiplier
        self._penalty_weight = _number(penalty_weight, "penalty_weight")
        self._kp, self._ema_nu = float(kp), float(ema_nu)
        self.skipped_terms = 0
        self.skipped_updates = 0
        self.updates = 0
        self._last: dict[str, Any] = {}

    # -- configuration, read from the pieces ----------------------------------------------------
    @property
    def surrogate(self) -> str:
        return self.relaxation.name

    @property
    def temperature(self) -> float:
        return self.relaxation.temperature

    @property
    def mode(self) -> str:
        return self.formulation.mode

    @property
    def dual(self) -> str:
        return self.multiplier.rule

    @property
    def dual_lr(self) -> float:
        return self.multiplier.lr

    @property
    def max_multiplier(self) -> float | None:
        return self.multiplier.max_value

    @property
    def penalty_weight(self) -> float:
        return self._penalty_weight

    @property
    def kp(self) -> float:
        return self._kp

    @property
    def ema_nu(self) -> float:
        return self._ema_nu

    @property
    def window(self) -> int:
        return self.estimator.window

    @property
    def margin(self) -> float:
        return self.estimator.margin

    @property
    def multipliers(self) -> Tensor:
        """``lambda_i`` (float64, CPU; zeros in penalty mode)."""
        return self.multiplier.value

    @multipliers.setter
    def multipliers(self, value: Tensor) -> None:
        self.multiplier.value = value

    # -- values --------------------------------------------------------------------------------
    def defined(self, y: Tensor, s: Tensor) -> bool:
        """Whether every rate the constraint compares has examples in ``(y, s)``: both groups
        (accuracy gap, DP), or all four (group, label) cells (equalized odds)."""
        return rates_defined(self.kind, _counts(y, s))

    def surrogate_values(self, logits: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """Differentiable values ``c~_i`` of the one-sided constraints, shape ``[n]`` (upper
        bounds for ``hinge``, ``logistic``, ``ramp``; see :func:`fairprune_lite.fairness.surrogate`)."""
        return self.relaxation.reference(logits, y, s)

    def _fast_surrogate(self, logits: Tensor, y: Tensor, s: Tensor, n: Sequence[float]) -> Tensor:
        """:meth:`SurrogateEstimate.values` (the training loop's form of :meth:`surrogate_values`)."""
        return self.relaxation.values(logits, y, s, n)

    @torch.no_grad()
    def batch_values(self, logits: Tensor, y: Tensor, s: Tensor, *,
                     stats: Tensor | Sequence[float] | None = None) -> Tensor | None:
        """Exact one-sided values of one batch (float64) from its cell statistics (given as
        ``stats``, or counted), or None when the batch lacks a compared cell."""
        if stats is None:
            stats = cell_counts(self.kind, logits.detach(), y, s)
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
        y, s = torch.as_tensor(y), torch.as_tensor(s)
        idx = cell_index(y.flatten(), s.flatten())
        n = torch.bincount(idx.cpu(), minlength=4).tolist()
        if not rates_defined(self.kind, n):
            self.skipped_terms += 1
            return logits.sum() * 0.0
        if logits.dim() != 1:
            raise ValueError(f"logits must have shape [B] (one logit per example), got {tuple(logits.shape)}")
        sur = self.relaxation.values(logits, y, s, n, idx=idx.to(logits.device))
        self._last["surrogate"] = sur.detach()
        return self.formulation.term(sur, self.tau)

    @torch.no_grad()
    def update(self, logits: Tensor | None = None, y: Tensor | None = None, s: Tensor | None = None, *,
               measured: Tensor | None = None, se: Tensor | None = None, pooled: bool = True,
               step_scale: float = 1.0) -> Tensor:
        """One step of the multipliers on the measured violation; returns the new multipliers.

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
            est = self.estimator.observe(logits, y, s, pooled=pooled)
            if est is None:
                self.skipped_updates += 1
                return self.multipliers.clone()
            measured, se = est.values, est.se  # float64, CPU, finite (counts of a defined window)
        else:
            if self.margin > 0 and se is None:
                raise ValueError("margin > 0 needs the standard errors: give se= with measured=, or the data")
            measured = torch.as_tensor(measured).detach().to("cpu", torch.float64).flatten()
            if measured.shape != (self.n,):
                raise ValueError(f"measured must have {self.n} entries for kind {self.kind!r}, "
                                 f"got {tuple(measured.shape)}")
            if not bool(torch.isfinite(measured).all()):
                raise ValueError(f"measured constraint values are not finite: {measured.tolist()}")
        self._last["exact"] = measured
        bound = self.estimator.bound(self.tau, se, self.n)
        if self.margin > 0:
            self._last["bound"] = bound
        violation = measured - bound
        if step_scale != 1.0:
            violation = violation * float(step_scale)
        self.formulation.ascend(violation)
        self.updates += 1
        return self.multipliers.clone()

    # -- bookkeeping ---------------------------------------------------------------------------
    def last_batch_stats(self) -> Sequence[float] | None:
        """Cell statistics of the last batch :meth:`update` measured (the eight numbers of
        :func:`fairprune_lite.fairness.cell_stats`; None before any): the solver's log reuses them
        instead of counting the batch again."""
        return self.estimator._batch

    def feasibility(self, logits: Tensor, y: Tensor, s: Tensor) -> dict[str, Any]:
        """:func:`feasibility` of this constraint's kind and ``tau`` on ``(logits, y, s)``."""
        return feasibility(self.kind, self.tau, logits, y, s)

    def to(self, device: torch.device | str) -> FairnessConstraint:
        """No-op kept for symmetry with modules: multipliers live on the CPU in float64 and are
        moved to the logits' device inside :meth:`term`."""
        return self

    def last_state(self) -> dict[str, Any]:
        """Floats for logging: multipliers and the last surrogate / exact values seen."""
        out: dict[str, Any] = {"multipliers": self.multipliers.tolist()}
        for k in ("surrogate", "exact"):
            if k in self._last:
                out[k] = self._last[k].tolist()
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
        self.multiplier.load(state["multipliers"])
        self.updates = int(state.get("updates", 0))

    def __repr__(self) -> str:
        return (f"FairnessConstraint(kind={self.kind!r}, tau={self.tau}, surrogate={self.surrogate!r}, "
                f"window={self.window}, "
                f"mode={self.mode!r}, multipliers={[round(float(v), 4) for v in self.multipliers]})")
