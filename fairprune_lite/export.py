"""Export a masked model: to ``torch.nn.utils.prune`` form, to a plain dense model with zeros,
or to a physically smaller model (structured masks, through Torch-Pruning's DependencyGraph).

Kept apart from :mod:`fairprune_lite.masks`, which builds and applies masks (the ``masks.to_*``
aliases of 0.1 are gone). Imports :mod:`.masks` and :mod:`._optional` only.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils import prune as torch_prune

from ._optional import require
from .masks import (
    MaskScores,
    _check_structured,
    _expand,
    _masked_modules,
    _weight_of,
    model_masks,
    remove_masks,
)

__all__ = ["to_torch_prune", "to_dense", "to_smaller"]


def _resolve_masks(
    model: nn.Module, masks: MaskScores | Mapping[str, Tensor] | None
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """``(weight-shaped float masks, channel masks or None)`` from any accepted mask form.

    ``None`` takes the masks attached to ``model``; a dict is structured when every value has
    shape ``[out]`` (and unstructured when every value is weight-shaped).
    """
    if masks is None:
        masks = model_masks(model)
    modules = dict(model.named_modules())
    if isinstance(masks, MaskScores):
        for n in masks.names:
            if n not in modules:
                raise ValueError(f"masks name layer {n!r}, which is not a module of the model")
        wm = masks.binary_masks()
        return wm, (masks.channel_masks() if masks.structured else None)
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError("masks must be a MaskScores, a non-empty dict name -> tensor, or None")
    weight, channel = {}, {}
    for n, t in masks.items():
        if n not in modules or not isinstance(getattr(modules[n], "weight", None), Tensor):
            raise ValueError(f"masks name layer {n!r}, which is not a layer with a weight in the model")
        t = torch.as_tensor(t).detach()
        ws = _weight_of(modules[n]).shape
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"mask for layer {n!r} has values other than 0 and 1")
        if t.shape == ws:
            weight[n] = t.float()
        elif t.shape == ws[:1]:
            _check_structured(n, modules[n])
            channel[n] = t.float()
            weight[n] = _expand(t.float(), ws).clone()
        else:
            raise ValueError(f"mask for layer {n!r} has shape {tuple(t.shape)}; expected {tuple(ws)} or {tuple(ws[:1])}")
    if channel and len(channel) != len(weight):
        raise ValueError("masks mix channel-shaped ([out]) and weight-shaped tensors")
    return weight, (channel or None)


def _gated_norms(model: nn.Module, masks: Any) -> dict[str, str]:
    """``{layer: BatchNorm}`` gated by the masks in use (``gate_norm``); empty for dict masks."""
    if isinstance(masks, MaskScores):
        return dict(masks.norms)
    if masks is None:
        return dict(model_masks(model).norms)
    return {}


def _plain_copy(model: nn.Module) -> nn.Module:
    """Deep copy with our parametrizations removed, keeping the dense weights theta."""
    out = copy.deepcopy(model)
    if _masked_modules(out):
        remove_masks(out, bake=False)
    return out


def to_torch_prune(model: nn.Module, masks: MaskScores | Mapping[str, Tensor] | None = None) -> nn.Module:
    """Deep copy in ``torch.nn.utils.prune`` form (``weight_orig`` + ``weight_mask`` buffers).

    ``masks=None`` uses the masks attached to ``model``. Structured masks also prune the bias
    channels (``bias_orig`` / ``bias_mask``), as :func:`apply_masks` does.
    """
    weight, channel = _resolve_masks(model, masks)
    norms = _gated_norms(model, masks)
    out = _plain_copy(model)
    modules = dict(out.named_modules())
    for n, wm in weight.items():
        mod = modules[n]
        torch_prune.custom_from_mask(mod, "weight", wm.to(mod.weight.device))
        if channel is not None and isinstance(getattr(mod, "bias", None), Tensor):
            torch_prune.custom_from_mask(mod, "bias", channel[n].to(mod.bias.device))
        if n in norms:  # a gated BatchNorm: its channel goes with the mask
            assert channel is not None, n  # gate_norm exists only for structured (channel) masks
            bn = modules[norms[n]]
            for t in ("weight", "bias"):
                torch_prune.custom_from_mask(bn, t, channel[n].to(getattr(bn, t).device))
    return out


def to_dense(model: nn.Module, masks: MaskScores | Mapping[str, Tensor] | None = None) -> nn.Module:
    """Deep copy as a plain model whose pruned weights (and structured bias channels) are zero."""
    weight, channel = _resolve_masks(model, masks)
    norms = _gated_norms(model, masks)
    out = _plain_copy(model)
    modules = dict(out.named_modules())
    with torch.no_grad():
        for n, wm in weight.items():
            mod = modules[n]
            mod.weight.mul_(wm.to(mod.weight))
            if channel is not None and isinstance(getattr(mod, "bias", None), Tensor):
                mod.bias.mul_(channel[n].to(mod.bias))
            if n in norms:  # a gated BatchNorm: the pruned channel's affine is 0 as well
                assert channel is not None, n  # gate_norm exists only for structured (channel) masks
                bn = modules[norms[n]]
                bn.weight.mul_(channel[n].to(bn.weight))
                bn.bias.mul_(channel[n].to(bn.bias))
    return out


#: element-wise ops (autograd names, lower case) with f(0) = 0 channel by channel: a zero channel
#: stays zero through them, so removing it does not change what follows
_ZERO_PRESERVING = {
    "relu", "leakyrelu", "hardtanh", "gelu", "silu", "hardswish", "tanh", "elu", "mish",
    "add", "sub", "mul", "neg", "clone", "alias", "view", "unsafeview", "permute", "transpose", "t",
    "reshape", "reshapealias", "squeeze", "unsqueeze", "expand", "flatten", "contiguous",
    "adaptiveavgpool1d", "adaptiveavgpool2d", "adaptiveavgpool3d", "avgpool1d", "avgpool2d", "avgpool3d",
    "adaptivemaxpool1d", "adaptivemaxpool2d", "maxpool2dwithindices", "maxpool3dwithindices",
    "mean", "sum", "amax", "max", "nativedropout", "dropout",
}


def _dead_out_channels(module: nn.Module, idxs: list[int]) -> set[int]:
    """Which of ``idxs`` are output channels whose output is exactly zero for a zero input.

    Conv / Linear: weight slice and bias zero. BatchNorm: shift zero in both modes
    (``beta == 0`` and ``gamma * running_mean == 0``). Any other module: none (conservative).
    """
    if not idxs:
        return set()
    ix = torch.as_tensor(idxs, dtype=torch.long)
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and not getattr(module, "transposed", False):
        w = module.weight.detach()[ix].flatten(1)
        dead = (w == 0).all(dim=1)
        if module.bias is not None:
            dead &= module.bias.detach()[ix] == 0
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        dead = torch.ones(len(idxs), dtype=torch.bool)
        if module.affine:
            dead &= module.bias.detach()[ix] == 0
            gamma = module.weight.detach()[ix]
        else:
            gamma = torch.ones(len(idxs))
        if module.running_mean is not None:
            dead &= (gamma * module.running_mean.detach()[ix]) == 0
        elif module.affine:  # no running stats: batch statistics, output beta for a zero channel
            pass
    else:
        tp_ops = require("torch_pruning.ops", "export", "to_smaller")

        index_ops = (tp_ops._ConcatOp, tp_ops._SplitOp, tp_ops._UnbindOp, tp_ops._ReshapeOp,
                     tp_ops._SliceOp, tp_ops._ExpandOp)
        if isinstance(module, index_ops):  # move channels around: zero stays zero
            return set(idxs)
        if isinstance(module, tp_ops._ElementWiseOp):
            fn = module._grad_fn
            name = fn.name() if callable(getattr(fn, "name", None)) else str(fn)
            name = name.lower().split("backward")[0]
            if name in _ZERO_PRESERVING:
                return set(idxs)
        return set()  # anything else (outputs, unknown ops, norms of other kinds): keep
    return {i for i, d in zip(idxs, dead.tolist(), strict=True) if d}


def to_smaller(
    model: nn.Module,
    masks: MaskScores | Mapping[str, Tensor] | None,
    example_input: Tensor | tuple,
    *,
    atol: float = 1e-5,
) -> nn.Module:
    """A physically smaller copy for STRUCTURED masks, built with torch-pruning's DependencyGraph.

    Starts from :func:`to_dense` and removes each masked output channel together with everything
    coupled to it (following BatchNorm channels, input channels of the next layers, coupled
    residual channels), but only where removal is exact: every coupled producer of that channel
    must output exactly zero for it (Conv/Linear: zero filter and bias; BatchNorm: zero shift,
    ``beta == 0`` and ``gamma * running_mean == 0``). Other masked channels stay in the model as
    zeros, so the result always computes the same function as the masked model.

    When equality holds: a removed channel of the masked model feeds zeros downstream, so its
    removal changes nothing as long as every op between it and the next channel-mixing layer
    maps 0 to 0 (ReLU, pooling, zero padding, addition). A BatchNorm after a masked convolution
    breaks this: the masked channel leaves the BN as the constant ``beta - gamma * mean / std``
    (``beta`` in training mode), which removal would drop; such channels are kept (zero filter)
    unless the BN shift of that channel is zero. The result is checked on ``example_input``
    (in ``eval`` mode) and a ``ValueError`` is raised if outputs differ by more than ``atol``.
    Unstructured masks are refused. Needs the ``export`` extra (torch-pruning).
    """
    if isinstance(masks, MaskScores) and not masks.structured:
        raise ValueError("to_smaller needs structured masks (one per output channel); these masks are unstructured")
    weight, channel = _resolve_masks(model, masks)
    if channel is None:
        raise ValueError("to_smaller needs structured masks (one per output channel); these masks are unstructured")
    for n, c in channel.items():
        if not bool(c.any()):
            raise ValueError(f"structured mask prunes every output channel of layer {n!r}; cannot build a smaller model")
    tp = require("torch_pruning", "export", "to_smaller")
    dense = to_dense(model, masks)
    was_training = dense.training
    dense.eval()
    reference = copy.deepcopy(dense)
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    dg = tp.DependencyGraph().build_dependency(dense, example_inputs=example_input, verbose=False)
    modules = dict(dense.named_modules())
    for n in channel:
        mod = modules[n]
        # masked channels in the *current* indexing (earlier groups may have removed some)
        cand = sorted(_dead_out_channels(mod, list(range(_weight_of(mod).shape[0]))))
        pruner = dg.get_pruner_of_module(mod)
        while cand:
            group = dg.get_pruning_group(mod, pruner.prune_out_channels, cand)
            ok = set(cand)
            for item in group:
                dep = item.dep
                if not dg.is_out_channel_pruning_fn(dep.handler):
                    continue
                target = dep.target.module
                dead = _dead_out_channels(target, list(item.idxs))
                ok &= {r for i, r in zip(item.idxs, item.root_idxs, strict=True) if i in dead}
            if ok == set(cand):
                if not dg.check_pruning_group(group):
                    raise ValueError(f"removing the masked channels of layer {n!r} would leave a layer empty")
                group.prune()
                break
            cand = sorted(ok)
    dense.train(was_training)
    with torch.no_grad():
        reference.eval()
        dense_mode = dense.training
        dense.eval()
        a, b = reference(*inputs), dense(*inputs)
        dense.train(dense_mode)
    if a.shape != b.shape or not torch.allclose(a, b, atol=atol, rtol=0):
        raise ValueError(
            f"to_smaller: the smaller model differs from the masked model on example_input "
            f"(max abs difference {float((a - b).abs().max()) if a.shape == b.shape else 'shape mismatch'})"
        )
    return dense
