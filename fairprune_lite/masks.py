"""Mask parameterization: scores in [0, 1], exact top-k binary masks, straight-through estimator.

A pruned model is ``f(m * theta)``: ``theta`` are the dense weights, ``m`` a binary mask of the
same shape (unstructured) or one entry per output channel (structured). The mask is the top-k
of real-valued *scores* kept in ``[0, 1]`` (BiP's relaxation). The forward pass uses the exact
binary mask; gradients reach the scores through the straight-through estimator (STE)::

    m = m_bin.detach() + (s - s.detach())      # value m_bin, derivative d m / d s = 1
    d loss / d s = d loss / d z * theta         # z = m * theta; summed over a filter if structured

Everything here is a small function over modules, in the style of ``torch.nn.utils.prune`` and
``torch.nn.utils.parametrize``: :func:`apply_masks` registers a parametrization on each masked
weight, so the model is not copied, the dense weights stay at
``layer.parametrizations.weight.original`` and the scores are *not* parameters of the model
(a weight optimizer built from ``model.parameters()`` never sees them).

Counting rule (same as ``torch.nn.utils.prune``): the number pruned is ``round(sparsity * n)``
over the scope (all masked units for ``scope="global"``, each layer for ``scope="layer"``); a
unit is a weight (unstructured) or an output channel (structured). Ties are broken by weight
magnitude at construction (``|w|``, a filter's L2 norm; normalised in the scope): among equal
scores the smaller magnitude is pruned first, and only exactly equal magnitudes fall back to
position. Scores pushed against the clamp at 1.0 tie in bulk, and a positional tie-break then
prunes the earliest layer first (how a structured network used to lose its first layer).

BatchNorm and channel masks (``gate_norm=True``, structured only): a BatchNorm directly after a
masked layer normalises away any rescaling of a kept channel, so the straight-through gradient
of a kept channel's score is ~0 while a pruned channel's (BN variance 0) is huge. With
``gate_norm`` the channel mask also multiplies that BatchNorm's affine ``weight`` and ``bias``
and the score's straight-through term moves there: the score then sees the *normalised*
channel (``d loss / d s = sum g_out * (gamma * x_hat + beta)``), and a pruned channel leaves the
block as exactly 0, as if removed. The checkpoint of a masked model holds its masks
(``<layer>.parametrizations.weight.0.mask``, like ``torch.nn.utils.prune``'s ``weight_mask``);
:func:`load_masked` restores them on a plain model.

What runs in every step is cached: the top-k is recomputed only when a score tensor's version,
its storage or the sparsity changed (an optimizer step, ``clamp_()``, a new target); when only
the values moved and every kept score is still strictly above every pruned one, the cached
result is kept (two gathers and one comparison: the top-k cannot have changed); otherwise it
returns after one comparison when the threshold is not tied; the float ``{0, 1}`` mask each masked
forward multiplies by is converted once per top-k result (:meth:`MaskScores.float_mask`), and
:meth:`MaskScores.kept_units` gives the global top-k's flat keep vector (mask changes counted in
one operation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils import parametrize

__all__ = [
    "prunable_layers",
    "MaskScores",
    "apply_masks",
    "remove_masks",
    "is_masked",
    "weight_parameters",
    "masked_weights",
    "model_masks",
    "sparsity_report",
    "count_pruned",
    "following_norms",
    "load_masked",
    "score_generator",
]

_INITS = ("magnitude", "uniform", "constant")
_SCOPES = ("global", "layer")
#: relative size of the magnitude tie-break added to scores initialised from a given mask
_TIE_BREAK = 1e-3
#: the random-score stream's constant (any odd 64-bit number; fixed so runs reproduce)
_SCORE_STREAM = 0x9E3779B97F4A7C15


def score_generator(seed: int) -> torch.Generator:
    """The generator of random mask scores for run ``seed``, on a stream of its own.

    Seeded with ``seed`` itself it would replay the weights' initialisation (a model built with
    ``manual_seed(seed)`` draws its uniform weights from the same sequence), and "random" scores
    would be the initial weights rescaled: a magnitude rule in disguise."""
    return torch.Generator().manual_seed((int(seed) * _SCORE_STREAM + 1) % 2**63)


# ---------------------------------------------------------------------------------------------
# layer discovery
# ---------------------------------------------------------------------------------------------
def prunable_layers(
    model: nn.Module,
    *,
    layer_types: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear),
    exclude: Iterable[str] = (),
    prune_last: bool = True,
) -> dict[str, nn.Module]:
    """Layers whose ``weight`` is pruned, ``{qualified name: module}`` in module order.

    ``exclude`` lists qualified names to leave dense. ``prune_last=False`` also leaves the last
    matching layer (in ``named_modules`` order, the output layer of every model in this
    package) dense: on tabular data pruning the output layer moves fairness a lot, so this is a
    choice, not a default hidden in a method.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    layer_types = tuple(layer_types)
    if not layer_types or not all(isinstance(t, type) for t in layer_types):
        raise ValueError(f"layer_types must be a non-empty tuple of module classes, got {layer_types!r}")
    exclude = set([exclude] if isinstance(exclude, str) else exclude)
    names = {n for n, _ in model.named_modules()}
    unknown = sorted(exclude - names)
    if unknown:
        raise ValueError(f"exclude names layers not in the model: {unknown}")
    found = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, layer_types) and isinstance(getattr(m, "weight", None), Tensor)
    }
    if not prune_last and found:
        found.pop(list(found)[-1])
    found = {n: m for n, m in found.items() if n not in exclude}
    if not found:
        raise ValueError(
            f"model has no prunable layers (layer_types={[t.__name__ for t in layer_types]}, "
            f"exclude={sorted(exclude)}, prune_last={prune_last})"
        )
    return found


def _weight_of(module: nn.Module) -> Tensor:
    """The dense weight theta of a layer, whether or not it is parametrized."""
    if parametrize.is_parametrized(module, "weight"):
        return cast(Tensor, cast(Any, module).parametrizations.weight.original)
    return cast(Tensor, module.weight)


def _check_structured(name: str, module: nn.Module) -> None:
    w = _weight_of(module)
    if w.dim() < 2:
        raise ValueError(f"structured masks need a weight with >= 2 dims; layer {name!r} has shape {tuple(w.shape)}")
    transposed = getattr(module, "transposed", False)
    if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or transposed:
        raise ValueError(
            f"structured masks support nn.Linear and (non-transposed) convolutions; "
            f"layer {name!r} is {type(module).__name__}"
        )


def _check_sparsity(sparsity: Any) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return s


def _kth_smallest(flat: Tensor, k: int) -> Tensor:
    """The ``k``-th smallest entry (1-based) of a 1-D tensor: ``kthvalue`` on the CPU (O(n)); a
    sort elsewhere, because CUDA's ``kthvalue`` is far slower than its sort on millions of scores
    (it took half of a ResNet-10 BiFP step on an H200, ``benchmarks/results/gpu``). Same value."""
    if flat.device.type == "cpu":
        return flat.kthvalue(k).values
    return flat.sort().values[k - 1]


def _topk_keep(flat: Tensor, sparsity: float, tie: Tensor | Callable[[], Tensor] | None = None) -> Tensor:
    """Boolean keep-mask of a 1-D score vector: prune exactly round(sparsity * n) lowest scores.

    Ties at the threshold are pruned in order of ``tie`` (smallest first; e.g. magnitude; a
    tensor, or a function returning it, called only when there is a tie to break), then of
    position (earliest first); O(n) via kthvalue and one comparison when the threshold is not
    tied (the common case), plus a sort of the tied entries only when it is.
    """
    n = flat.numel()
    k = round(sparsity * n)
    if k == 0:
        return torch.ones(n, dtype=torch.bool, device=flat.device)
    if torch.isnan(flat).any():
        raise ValueError("scores contain NaN; cannot rank them")
    v = _kth_smallest(flat, k)
    keep = flat > v
    if n - int(keep.sum()) == k:  # exactly k scores <= v: no tie at the threshold to break
        return keep
    less = flat < v
    need = k - int(less.sum())
    eq = flat == v
    if tie is not None and need < int(eq.sum()):
        tie_t = tie() if callable(tie) else tie
        idx = eq.nonzero().flatten()
        order = torch.argsort(tie_t.to(flat.device)[idx], stable=True)
        prune_eq = torch.zeros_like(eq)
        prune_eq[idx[order[:need]]] = True
    else:
        prune_eq = eq & (torch.cumsum(eq.to(torch.int64), 0) <= need)
    return ~(less | prune_eq)


def following_norms(model: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """``{layer: BatchNorm name}`` for each layer of ``names`` directly followed by a BatchNorm.

    "Directly followed" is read from module registration order (the next module in
    ``named_modules`` after the layer, skipping containers, is a ``_BatchNorm`` with one feature
    per output channel), which holds for conv-BN blocks of ``nn.Sequential`` and of torchvision's
    ResNet and MobileNetV2. Layers without one are left out.
    """
    mods = list(model.named_modules())
    out: dict[str, str] = {}
    wanted = set(names)
    for i, (n, m) in enumerate(mods):
        if n not in wanted:
            continue
        for n2, m2 in mods[i + 1:]:
            if len(m2._modules) and not isinstance(m2, nn.modules.batchnorm._BatchNorm):
                continue  # a container: look inside it
            if (isinstance(m2, nn.modules.batchnorm._BatchNorm) and m2.affine
                    and m2.num_features == _weight_of(m).shape[0] and n2.rpartition(".")[0] == n.rpartition(".")[0]):
                out[n] = n2
            break
    return out


# ---------------------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------------------
class MaskScores(nn.Module):
    """Real-valued mask scores in ``[0, 1]``, one per weight or per output channel.

    Args:
        model: the model whose layers are masked (only read, never modified).
        sparsity: target fraction pruned, in ``[0, 1)``; settable later (schedules). May be
            ``None`` only with ``mask=``, then it is the mask's overall fraction of pruned units.
        structured: one score per output channel / filter (shape ``[out]``) instead of one per
            weight. For ``Linear`` and non-transposed convolutions only.
        scope: ``"global"`` (one top-k over all masked units) or ``"layer"`` (the same
            sparsity within each layer).
        init: how the scores start (the binary mask at step 0 follows from this):

            * ``"magnitude"`` (default): ``|w|`` divided by the largest ``|w|`` in the scope
              (structured: a filter's L2 norm divided by the largest filter norm *of its layer*,
              in either scope: filter norms of layers with different fan-in are not comparable,
              and a global norm ranking empties the layer with the smallest filters first),
              so the first mask is exactly magnitude pruning (global or per layer), the mask
              BiP starts from.
            * ``"uniform"``: i.i.d. ``U(0, 1)`` from :func:`score_generator` of ``seed`` (the
              global torch RNG when ``seed`` is None): a random first mask.
            * ``"constant"``: all scores 0.5; the first mask then follows the magnitude
              tie-break (so it equals ``"magnitude"``'s), useful to study the scores' dynamics.
        layers: which layers: ``None`` means :func:`prunable_layers` (with ``prune_last=False``
            when ``structured``, since removing the output unit(s) of the classifier removes
            outputs); or a dict ``{name: module}`` / list of names.
        mask: start from a given binary mask ``{name: tensor}`` (weight-shaped; structured also
            accepts ``[out]``). Scores are ``(1 - eps) * mask + eps * magnitude`` with
            ``eps = 1e-3``: the mask decides the ranking, weight magnitude breaks ties within
            the kept and the pruned sets, so top-k at the mask's own sparsity reproduces the mask
            exactly (for ``scope="layer"`` when every layer has that sparsity).
        seed: seed of ``init="uniform"``.
        gate_norm: structured only: the channel mask also gates the BatchNorm that directly
            follows a masked layer, and the scores' straight-through gradient is taken there
            (module docstring). Off by default: baselines keep their historical behaviour.

    Attributes:
        names: qualified layer names in module order.
        scores: ``nn.ParameterDict``; use :meth:`score` / :meth:`items` to address by layer name.
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: float | None,
        *,
        structured: bool = False,
        scope: str = "global",
        init: str = "magnitude",
        layers: Mapping[str, nn.Module] | Iterable[str] | None = None,
        mask: Mapping[str, Tensor] | None = None,
        seed: int | None = None,
        gate_norm: bool = False,
    ) -> None:
        super().__init__()
        if scope not in _SCOPES:
            raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        self.structured = bool(structured)
        self.scope = scope
        self.init = init if mask is None else "mask"
        self._fixed: dict[str, Tensor] | None = None
        self._cache_key: tuple | None = None
        self._cache: dict[str, Tensor] | None = None
        self._float_cache: dict[tuple, tuple[Tensor, int, Tensor]] = {}
        self._tie_flat: Tensor | None = None
        self._keep_flat: Tensor | None = None
        self._split: list[_Split] = []  # kept / pruned indices of the cached top-k (per scope)

        if layers is None:
            mods = prunable_layers(model, prune_last=not self.structured)
        else:
            mods = self._resolve_layers(model, layers)
        if self.structured:
            for n, m in mods.items():
                _check_structured(n, m)
        self.names: list[str] = list(mods)
        self._keys = {n: n.replace(".", "__") for n in self.names}
        if len(set(self._keys.values())) != len(self._keys):
            raise ValueError(f"layer names collide after replacing '.' by '__': {self.names}")
        self.weight_shapes: dict[str, torch.Size] = {n: _weight_of(m).shape for n, m in mods.items()}
        if gate_norm and not self.structured:
            raise ValueError("gate_norm=True needs structured=True (it gates BatchNorm channels)")
        #: ``{layer: name of the BatchNorm it gates}`` (empty unless ``gate_norm``)
        self.norms: dict[str, str] = following_norms(model, self.names) if gate_norm else {}

        with torch.no_grad():
            mag = self._magnitude(mods)
            if mask is not None:
                unit = self._check_mask_dict(mask)
                init_scores = {n: (1 - _TIE_BREAK) * unit[n] + _TIE_BREAK * mag[n] for n in self.names}
                if sparsity is None:
                    pruned = sum(int((unit[n] == 0).sum()) for n in self.names)
                    total = sum(unit[n].numel() for n in self.names)
                    sparsity = pruned / total
            elif init == "magnitude":
                init_scores = mag
            elif init == "uniform":
                gen = None
                if seed is not None:
                    gen = score_generator(seed)
                init_scores = {n: torch.rand(mag[n].shape, generator=gen).to(mag[n]) for n in self.names}
            else:
                init_scores = {n: torch.full_like(mag[n], 0.5) for n in self.names}
        if sparsity is None:
            raise ValueError("sparsity is required unless mask= is given")
        self._sparsity = _check_sparsity(sparsity)
        self.scores = nn.ParameterDict(
            {self._keys[n]: nn.Parameter(init_scores[n].clone().clamp_(0, 1)) for n in self.names}
        )
        # tie-break key of the top-k: magnitude at construction (never position)
        self._tie = {n: mag[n].detach().clone() for n in self.names}

    # -- construction helpers ----------------------------------------------------------------
    @staticmethod
    def _resolve_layers(model: nn.Module, layers: Any) -> dict[str, nn.Module]:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        modules = dict(model.named_modules())
        if isinstance(layers, Mapping):
            names = list(layers)
        elif isinstance(layers, str):
            names = [layers]
        else:
            names = list(layers)
        if not names:
            raise ValueError("layers is empty: no prunable layers")
        out = {}
        for n in names:
            if n not in modules:
                raise ValueError(f"layers names {n!r}, which is not a module of the model")
            if not isinstance(getattr(modules[n], "weight", None), Tensor):
                raise ValueError(f"layer {n!r} ({type(modules[n]).__name__}) has no weight tensor")
            out[n] = modules[n]
        return out

    def _magnitude(self, mods: Mapping[str, nn.Module]) -> dict[str, Tensor]:
        """Magnitude scores in [0, 1], normalised by the maximum over the scope."""
        raw = {}
        for n, m in mods.items():
            w = _weight_of(m).detach().float()
            raw[n] = w.flatten(1).norm(dim=1) if self.structured else w.abs()
        if self.scope == "global" and not self.structured:
            top = max(float(r.max()) if r.numel() else 0.0 for r in raw.values())
            tops = {n: top for n in raw}
        else:
            tops = {n: float(r.max()) if r.numel() else 0.0 for n, r in raw.items()}
        return {n: r / tops[n] if tops[n] > 0 else torch.zeros_like(r) for n, r in raw.items()}

    def _unit_shape(self, name: str) -> torch.Size:
        ws = self.weight_shapes[name]
        return torch.Size([ws[0]]) if self.structured else ws

    def _check_mask_dict(self, mask: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Validate a user mask and return it at unit level (weight-shaped or ``[out]``), float."""
        if not isinstance(mask, Mapping):
            raise ValueError(f"mask must be a dict name -> tensor, got {type(mask).__name__}")
        missing = [n for n in self.names if n not in mask]
        unknown = [n for n in mask if n not in self.weight_shapes]
        if missing:
            raise ValueError(f"mask is missing layers {missing}")
        if unknown:
            raise ValueError(f"mask names unknown layers {unknown} (masked layers: {self.names})")
        out = {}
        for n in self.names:
            t = torch.as_tensor(mask[n]).detach()
            ws, us = self.weight_shapes[n], self._unit_shape(n)
            if t.shape != ws and t.shape != us:
                raise ValueError(f"mask for layer {n!r} has shape {tuple(t.shape)}, expected {tuple(us)}")
            if not bool(((t == 0) | (t == 1)).all()):
                raise ValueError(f"mask for layer {n!r} has values other than 0 and 1")
            t = t.float()
            if self.structured and t.shape == ws and t.shape != us:
                ch = t.flatten(1)
                if not bool((ch == ch[:, :1]).all()):
                    raise ValueError(f"structured mask for layer {n!r} is not constant within each output channel")
                t = ch[:, 0].clone()
            out[n] = t
        return out

    @classmethod
    def from_masks(
        cls,
        model: nn.Module,
        masks: Mapping[str, Tensor],
        *,
        structured: bool = False,
        gate_norm: bool = False,
    ) -> MaskScores:
        """Fixed binary masks (no trainable scores), e.g. the output of a baseline pruner.

        :meth:`binary_masks` returns exactly ``masks`` whatever their per-layer sparsities;
        ``sparsity`` is their overall fraction of pruned units and cannot be changed. The
        scores exist (mask plus a tiny magnitude tie-break) with ``requires_grad=False``.
        """
        if not isinstance(masks, Mapping) or not masks:
            raise ValueError("masks must be a non-empty dict name -> tensor")
        self = cls(model, None, structured=structured, layers=list(masks), mask=masks, gate_norm=gate_norm)
        unit = self._check_mask_dict(masks)
        for p in self.scores.values():
            p.requires_grad_(False)
        self._fixed = {n: unit[n].to(self.score(n).device).bool() for n in self.names}
        self.init = "fixed"
        return self

    def _set_unit_mask(self, name: str, mask: Tensor) -> None:
        """Make layer ``name``'s mask equal ``mask`` (from a checkpoint): fixed masks take it as
        is; trainable scores become ``(1 - eps) * mask + eps * magnitude`` (as ``mask=`` does), so
        the top-k at the checkpoint's sparsity reproduces it."""
        unit = self._check_mask_dict({**{n: self._unit_masks()[n].float() for n in self.names}, name: mask})[name]
        with torch.no_grad():
            if self._fixed is not None:
                self._fixed[name] = unit.to(self._fixed[name].device).bool()
            else:
                p = self.score(name)
                p.copy_(((1 - _TIE_BREAK) * unit + _TIE_BREAK * self._tie[name]).to(p))

    # -- accessors ---------------------------------------------------------------------------
    @property
    def fixed(self) -> bool:
        """True for masks from :meth:`from_masks` (no top-k, no trainable scores)."""
        return self._fixed is not None

    @property
    def sparsity(self) -> float:
        """Target fraction of pruned units in the scope, in ``[0, 1)``."""
        return self._sparsity

    @sparsity.setter
    def sparsity(self, value: float) -> None:
        if self._fixed is not None:
            raise ValueError("sparsity of fixed masks (MaskScores.from_masks) cannot be changed")
        self._sparsity = _check_sparsity(value)

    def score(self, name: str) -> nn.Parameter:
        """The score Parameter of layer ``name`` (qualified module name)."""
        if name not in self._keys:
            raise ValueError(f"no scores for layer {name!r} (masked layers: {self.names})")
        return self.scores[self._keys[name]]

    def items(self) -> list[tuple[str, nn.Parameter]]:
        """``[(qualified name, score Parameter)]`` in module order."""
        return [(n, self.scores[self._keys[n]]) for n in self.names]

    def extra_repr(self) -> str:
        return (
            f"layers={len(self.names)}, sparsity={self._sparsity:.4g}, structured={self.structured}, "
            f"scope={self.scope!r}, init={self.init!r}"
        )

    # -- masks -------------------------------------------------------------------------------
    def _unit_masks(self) -> dict[str, Tensor]:
        """Boolean masks at unit level (weight-shaped, or ``[out]`` when structured), cached.

        The cache key is every score's ``_version`` and storage plus the sparsity, so an
        optimizer step, ``clamp_()`` or a new sparsity triggers one recomputation; repeated
        forward passes in between cost nothing.
        """
        if self._fixed is not None:
            return self._fixed
        # read from the ParameterDict's own storage, in self.names order (its item access costs
        # ~10x more, and this runs in every masked layer's forward pass)
        stored = self.scores._parameters
        params = [cast(Tensor, stored[self._keys[n]]) for n in self.names]
        key = (self._sparsity, tuple((p._version, p.data_ptr(), p.device) for p in params))
        if key == self._cache_key and self._cache is not None:
            return self._cache
        with torch.no_grad():
            flats = ([torch.cat([p.detach().reshape(-1) for p in params])] if self.scope == "global"
                     else [p.detach().reshape(-1) for p in params])
            if self._same_split(key, flats):  # the scores moved, the ranking's split did not
                self._cache_key = key
                return cast(dict, self._cache)
            if self.scope == "global":
                keep = _topk_keep(flats[0], self._sparsity, self._flat_tie)
                self._keep_flat = keep
                self._split = [_Split(keep)]
                parts = keep.split([p.numel() for p in params])
                cache = {n: k.view(p.shape) for n, k, p in zip(self.names, parts, params, strict=True)}
            else:
                cache = {n: _topk_keep(f, self._sparsity, self._tie[n].reshape(-1)).view(p.shape)
                         for n, f, p in zip(self.names, flats, params, strict=True)}
                self._keep_flat = None
                self._split = [_Split(cache[n].reshape(-1)) for n in self.names]
        self._cache, self._cache_key = cache, key
        self._float_cache = {}
        return self._cache

    def _same_split(self, key: tuple, flats: list[Tensor]) -> bool:
        """Whether the cached top-k is still the top-k of the scores' new values (``flats``, one
        vector per top-k): same sparsity and tensors, and every kept score strictly above every
        pruned one (the ``k`` lowest are then unique, the pruned set, whatever tie-break chose it
        before). Two gathers and a comparison instead of a selection; NaN scores fail it (then
        the top-k raises)."""
        old = self._cache_key
        if old is None or self._cache is None or old[0] != key[0] or not self._split:
            return False
        if any(a[1:] != b[1:] for a, b in zip(old[1], key[1], strict=True)):
            return False
        return all(sp.holds(f) for sp, f in zip(self._split, flats, strict=True))

    def _flat_tie(self) -> Tensor:
        """The tie-break keys of every layer in one vector (global scope; built when first needed)."""
        if self._tie_flat is None:
            self._tie_flat = torch.cat([self._tie[n].reshape(-1) for n in self.names])
        return self._tie_flat

    def float_mask(self, name: str, like: Tensor) -> Tensor:
        """Layer ``name``'s unit mask as ``{0, 1}`` of ``like``'s dtype and device: converted once
        per top-k result (not in every forward pass), shared and read-only."""
        unit = self._unit_masks()[name]
        key = (name, like.dtype, like.device)
        hit = self._float_cache.get(key)
        if hit is None or hit[0] is not unit or hit[1] != unit._version:
            hit = self._float_cache[key] = (unit, unit._version, unit.to(device=like.device, dtype=like.dtype))
        return hit[2]

    def kept_units(self) -> Tensor:
        """Every layer's unit mask in one boolean vector, in :attr:`names` order (the global
        top-k's own result, not a copy, when there is one): comparing two masks costs one
        operation instead of one per layer. Shared and read-only."""
        units = self._unit_masks()
        if self._fixed is None and self.scope == "global" and self._keep_flat is not None:
            return self._keep_flat
        return torch.cat([units[n].reshape(-1) for n in self.names])

    def unit_masks(self) -> dict[str, Tensor]:
        """Boolean masks at unit level (weight-shaped, or ``[out]`` when structured): the top-k's
        cached result, shared and read-only (a new dict after each recomputation); use
        :meth:`binary_masks` for tensors to modify."""
        return self._unit_masks()

    def channel_masks(self) -> dict[str, Tensor]:
        """Structured only: float ``{0, 1}`` masks of shape ``[out]`` per layer."""
        if not self.structured:
            raise ValueError("channel_masks() needs structured=True scores")
        return {n: m.float() for n, m in self._unit_masks().items()}

    def binary_masks(self) -> dict[str, Tensor]:
        """Weight-shaped float ``{0, 1}`` masks, exactly ``round(sparsity * n)`` units pruned.

        Fresh tensors each call (safe to modify); the top-k itself is cached.
        """
        out = {}
        for n, m in self._unit_masks().items():
            out[n] = _expand(m, self.weight_shapes[n]).to(torch.float32).clone()
        return out

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project the scores back into ``[0, 1]`` (in place)."""
        for p in self.scores.values():
            p.clamp_(0.0, 1.0)


class _Split:
    """The indices of the kept and the pruned entries of one top-k's keep vector."""

    def __init__(self, keep: Tensor) -> None:
        self.kept = keep.nonzero().flatten()
        self.pruned = (~keep).nonzero().flatten()

    def holds(self, flat: Tensor) -> bool:
        """Every kept value of ``flat`` strictly above every pruned one (True when either side is
        empty and the other is NaN-free; False on NaN)."""
        if not self.kept.numel() or not self.pruned.numel():
            return not bool(torch.isnan(flat).any())
        return bool(flat.index_select(0, self.kept).amin() > flat.index_select(0, self.pruned).amax())


def _expand(unit_mask: Tensor, weight_shape: torch.Size) -> Tensor:
    """Broadcast a unit-level mask (weight-shaped or ``[out]``) to the weight shape (a view)."""
    if unit_mask.shape == weight_shape:
        return unit_mask
    return unit_mask.view(-1, *([1] * (len(weight_shape) - 1))).expand(weight_shape)


# ---------------------------------------------------------------------------------------------
# parametrization
# ---------------------------------------------------------------------------------------------
class _Mask(nn.Module):
    """Parametrization ``theta -> m * theta`` with the STE on the scores of one layer.

    ``role``: ``"weight"`` (the masked layer's weight, with the STE unless the layer's BatchNorm
    is gated), ``"bias"`` (structured: the bias channel follows the weight's channel mask, no
    STE) or ``"gate"`` (``weight``/``bias`` of the BatchNorm after a structured layer; the STE
    sits on its ``weight`` and ``bias``). The scores object is held in a plain attribute (not a
    submodule), so it never becomes a parameter of the model. The current unit mask is saved
    in the checkpoint as ``...mask`` (weight role) and restored from it on loading.
    """

    def __init__(self, scores: MaskScores, name: str, *, bias: bool = False, role: str | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "mask_scores", scores)
        self.layer_name = name
        self.role = role or ("bias" if bias else "weight")
        self.is_bias = self.role == "bias"

    def forward(self, theta: Tensor) -> Tensor:
        ms: MaskScores = self.mask_scores  # type: ignore[assignment]
        name = self.layer_name
        m = ms.float_mask(name, theta)
        if self.role == "gate" or (self.role == "weight" and name not in ms.norms):
            # the ParameterDict's own storage (its item access costs ~10x more; every forward)
            score = cast(Tensor, ms.scores._parameters[ms._keys[name]])
            if score.requires_grad and torch.is_grad_enabled():
                sc = score if score.dtype == theta.dtype else score.to(dtype=theta.dtype)
                m = m + (sc - sc.detach())
        if self.role == "weight" and ms.structured:
            m = m.view(-1, *([1] * (theta.dim() - 1)))
        return theta * m

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.role == "weight":
            ms: MaskScores = self.mask_scores  # type: ignore[assignment]
            destination[prefix + "mask"] = ms._unit_masks()[self.layer_name].detach().float().clone()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "mask"
        if self.role == "weight":
            if key in state_dict:
                ms: MaskScores = self.mask_scores  # type: ignore[assignment]
                ms._set_unit_mask(self.layer_name, state_dict[key])
            elif strict:
                missing_keys.append(key)
        super()._load_from_state_dict({k: v for k, v in state_dict.items() if k != key}, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return f"layer={self.layer_name!r}, role={self.role!r}"


def _our_param(module: nn.Module, tensor_name: str) -> _Mask | None:
    if not parametrize.is_parametrized(module, tensor_name):
        return None
    plist = getattr(module.parametrizations, tensor_name)
    for p in plist:
        if isinstance(p, _Mask):
            return p
    return None


def is_masked(module: nn.Module) -> bool:
    """True if ``module.weight`` carries a mask from :func:`apply_masks` (a gated BatchNorm is
    not a masked layer)."""
    p = _our_param(module, "weight")
    return p is not None and p.role != "gate"


def apply_masks(model: nn.Module, scores: MaskScores) -> None:
    """Make ``model`` compute with ``m * theta`` on every layer of ``scores`` (in place, no copy).

    Registers a ``torch.nn.utils.parametrize`` parametrization on each layer's ``weight`` (and,
    for structured masks, on its ``bias``, masked by the same channel mask but without an STE
    term, so ``d loss / d score = sum over the filter of d loss / d z * theta``). The dense
    weights stay trainable at ``layer.parametrizations.weight.original`` (see
    :func:`weight_parameters`); the scores are not registered in the model.
    """
    if not isinstance(scores, MaskScores):
        raise ValueError(f"scores must be a MaskScores, got {type(scores).__name__}")
    modules = dict(model.named_modules())
    for n in scores.names:
        if n not in modules:
            raise ValueError(f"scores name layer {n!r}, which is not a module of the model")
        mod = modules[n]
        if is_masked(mod):
            raise ValueError(f"layer {n!r} is already masked; call remove_masks(model) first")
        w = getattr(mod, "weight", None)
        if not isinstance(w, Tensor) or w.shape != scores.weight_shapes[n]:
            raise ValueError(
                f"layer {n!r} weight shape {None if w is None else tuple(w.shape)} does not match "
                f"the scores ({tuple(scores.weight_shapes[n])})"
            )
    for n in scores.names:
        mod = modules[n]
        parametrize.register_parametrization(mod, "weight", _Mask(scores, n), unsafe=True)
        if scores.structured and isinstance(getattr(mod, "bias", None), Tensor):
            parametrize.register_parametrization(mod, "bias", _Mask(scores, n, bias=True), unsafe=True)
        if n in scores.norms:
            bn = modules[scores.norms[n]]
            if _our_param(bn, "weight") is not None:
                raise ValueError(f"BatchNorm {scores.norms[n]!r} is already gated; call remove_masks(model) first")
            for t in ("weight", "bias"):
                parametrize.register_parametrization(bn, t, _Mask(scores, n, role="gate"), unsafe=True)


def remove_masks(model: nn.Module, *, bake: bool = True) -> None:
    """Remove the masks of :func:`apply_masks`; ``bake=True`` keeps ``m * theta`` as the weight,
    ``bake=False`` restores the dense ``theta``. Gated BatchNorms (``gate_norm``) are released
    the same way (baked: a pruned channel's ``weight`` and ``bias`` become 0).

    The weight Parameter object is kept (an optimizer holding it stays valid). Removal restores
    each module's own class rather than editing the parametrized class, so it is also safe on a
    ``copy.deepcopy`` of a masked model (which shares that class with the original).
    """
    found = False
    for n, mod in model.named_modules():
        if _our_param(mod, "weight") is None:
            continue
        names = list(mod.parametrizations.keys())
        for t in names:
            plist = getattr(mod.parametrizations, t)
            if len(plist) != 1 or not isinstance(plist[0], _Mask):
                raise ValueError(f"layer {n!r} {t} has other parametrizations besides the mask; remove them first")
        with torch.no_grad():
            values = {t: getattr(mod, t).detach().clone() for t in names} if bake else {}
            originals = {t: getattr(mod.parametrizations, t).original for t in names}
            del mod._modules["parametrizations"]
            mod.__class__ = mod.__class__.__bases__[0]
            for t in names:
                if bake:
                    originals[t].copy_(values[t])
                mod.register_parameter(t, originals[t])
        found = True
    if not found:
        raise ValueError("model has no masks to remove (apply_masks was not called on it)")


def load_masked(model: nn.Module, state_dict: Mapping[str, Tensor], *, strict: bool = True) -> nn.Module:
    """Load the checkpoint of a masked model into a plain ``model`` of the same architecture.

    The masks saved in ``state_dict`` (``<layer>.parametrizations.weight.0.mask``) are applied
    as fixed masks (:meth:`MaskScores.from_masks`, structured when they are one entry per output
    channel, BatchNorm gates where the checkpoint has them), then the weights are loaded. Returns
    ``model`` (changed in place). Raises ``ValueError`` when the checkpoint holds no mask.
    """
    suffix = ".parametrizations.weight.0.mask"
    found = {k[: -len(suffix)]: v for k, v in state_dict.items() if k.endswith(suffix)}
    if not found:
        raise ValueError("state_dict holds no masks (keys '<layer>.parametrizations.weight.0.mask'); "
                         "use model.load_state_dict for a plain checkpoint")
    modules = dict(model.named_modules())
    unknown = [n for n in found if n not in modules]
    if unknown:
        raise ValueError(f"state_dict masks layers {unknown}, which are not modules of the model")
    structured = all(v.dim() == 1 and _weight_of(modules[n]).dim() > 1 for n, v in found.items())
    gated = structured and any(k.endswith(".parametrizations.weight.original") and
                               isinstance(modules.get(k.split(".parametrizations.")[0]),
                                          nn.modules.batchnorm._BatchNorm) for k in state_dict)
    ms = MaskScores.from_masks(model, found, structured=structured, gate_norm=gated)
    apply_masks(model, ms)
    model.load_state_dict(dict(state_dict), strict=strict)
    return model


def _masked_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if is_masked(m)}


def weight_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The dense weights theta of the masked layers, ``{name: original weight Parameter}``."""
    mods = _masked_modules(model)
    if not mods:
        raise ValueError("model has no masked layers (call apply_masks first)")
    return {n: cast(nn.Parameter, cast(Any, m).parametrizations.weight.original) for n, m in mods.items()}


def masked_weights(model: nn.Module) -> dict[str, Tensor]:
    """The effective weights ``z = m * theta`` of the masked layers (differentiable)."""
    mods = _masked_modules(model)
    if not mods:
        raise ValueError("model has no masked layers (call apply_masks first)")
    return {n: cast(Tensor, m.weight) for n, m in mods.items()}


def model_masks(model: nn.Module) -> MaskScores:
    """The :class:`MaskScores` attached to ``model`` by :func:`apply_masks`."""
    params = [cast(_Mask, _our_param(m, "weight")) for m in _masked_modules(model).values()]  # masked: never None
    found = {id(p.mask_scores): p.mask_scores for p in params}
    if not found:
        raise ValueError("model has no masked layers (call apply_masks first)")
    if len(found) > 1:
        raise ValueError("model carries masks from more than one MaskScores")
    return next(iter(found.values()))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------
def count_pruned(masks: Mapping[str, Tensor]) -> tuple[int, int]:
    """``(pruned, total)`` entries of a dict of {0, 1} masks."""
    pruned = sum(int((m == 0).sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return pruned, total


def sparsity_report(model_or_masks: nn.Module | MaskScores | Mapping[str, Tensor]) -> dict:
    """Weight-level sparsity from the actual masks.

    Accepts a :class:`MaskScores`, a dict of weight-shaped masks, a model carrying masks from
    :func:`apply_masks` (its masked layers), or a plain model (zero weights of its
    :func:`prunable_layers`, which also covers ``torch.nn.utils.prune`` and dense exports).
    Returns ``{"overall", "layers": {name: sparsity}, "pruned", "total",
    "counts": {name: {"pruned", "total"}}}``.
    """
    if isinstance(model_or_masks, MaskScores):
        masks = model_or_masks.binary_masks()
    elif isinstance(model_or_masks, nn.Module):
        if _masked_modules(model_or_masks):
            masks = model_masks(model_or_masks).binary_masks()
        else:
            masks = {n: (_weight_of(m).detach() != 0).float() for n, m in prunable_layers(model_or_masks).items()}
    elif isinstance(model_or_masks, Mapping):
        if not model_or_masks:
            raise ValueError("model_or_masks is an empty dict")
        masks = {n: torch.as_tensor(m) for n, m in model_or_masks.items()}
    else:
        raise ValueError(f"model_or_masks must be a model, MaskScores or dict, got {type(model_or_masks).__name__}")
    counts = {n: {"pruned": int((m == 0).sum()), "total": m.numel()} for n, m in masks.items()}
    pruned = sum(c["pruned"] for c in counts.values())
    total = sum(c["total"] for c in counts.values())
    return {
        "overall": pruned / total if total else 0.0,
        "layers": {n: c["pruned"] / c["total"] if c["total"] else 0.0 for n, c in counts.items()},
        "pruned": pruned,
        "total": total,
        "counts": counts,
    }
