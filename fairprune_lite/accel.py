"""The GPU fast path of the training steps: options, all off by default.

:class:`Accel` names what a step may use to run at the hardware's pace (issue 22, item 3):

* ``autocast``: ``"bf16"`` (or ``"fp16"``) runs the forward pass under :func:`torch.autocast`
  (matrix products and convolutions on the tensor cores); the weights, the mask scores, the
  optimiser state and the loss stay in float32 (the logits are cast back before the loss and
  the fairness term, whose counts are exact only in float32).
* ``channels_last``: 4-d weights and image batches in ``torch.channels_last`` memory format
  (what cuDNN's tensor-core convolutions want). The masks are unchanged: a mask multiplies its
  weight elementwise, whatever the layout.
* ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` during the run (fastest convolution
  algorithm per shape, chosen once), restored after.
* ``tf32``: TF32 matrix products and convolutions for what stays in float32, restored after.
* ``compile``: the masked model's forward through :func:`torch.compile` (``compile_mode``, e.g.
  ``"max-autotune"``; ``compile_backend``, default inductor). Graph breaks at the mask cache are
  allowed: the compiled regions are the layers between them.

``Accel()`` changes nothing: the solver then takes its plain path and its results are the same,
bit for bit (``tests/test_accel.py``). On the CPU, ``autocast="bf16"`` and ``channels_last`` run
too (tested there); ``cudnn_benchmark`` and ``tf32`` touch only CUDA settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["Accel", "AUTOCAST_DTYPES", "FAST", "settings"]

#: the dtypes ``autocast=`` accepts
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Accel:
    """Options of the fast path (module docstring); every one off by default."""

    autocast: str | None = None
    channels_last: bool = False
    cudnn_benchmark: bool = False
    tf32: bool = False
    compile: bool = False
    compile_mode: str | None = None
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None or one of {sorted(AUTOCAST_DTYPES)}, got {self.autocast!r}")
        for name in ("channels_last", "cudnn_benchmark", "tf32", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.compile_mode is not None and not isinstance(self.compile_mode, str):
            raise ValueError(f"compile_mode must be None or a string, got {self.compile_mode!r}")
        if not isinstance(self.compile_backend, str) or not self.compile_backend:
            raise ValueError(f"compile_backend must be a backend name, got {self.compile_backend!r}")

    @property
    def enabled(self) -> bool:
        """Whether any option is on (``Accel()`` is the plain path)."""
        return self != Accel()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Accel:
        return dataclasses.replace(self, **changes)

    # -- what a training loop calls --------------------------------------------------------------
    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in the options' memory format (in place; returns it)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # 4-d parameters only; others unchanged
        return model

    def forward_fn(self, model: nn.Module) -> Callable[[Tensor], Tensor]:
        """The function a step calls for the forward pass: the model, or its compiled forward."""
        if not self.compile:
            return model
        return torch.compile(model, mode=self.compile_mode, backend=self.compile_backend)

    def input(self, x: Tensor) -> Tensor:
        """A batch of inputs in the options' memory format."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast_context(self, device: torch.device) -> contextlib.AbstractContextManager:
        """:func:`torch.autocast` on ``device`` with the options' dtype, or a no-op."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[self.autocast])

    def forward(self, fn: Callable[[Tensor], Tensor], x: Tensor, device: torch.device) -> Tensor:
        """``fn(x)`` with the options applied; the output in float32 (what the losses expect)."""
        with self.autocast_context(device):
            out = fn(self.input(x))
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out


#: the options the ``gpu`` profile is meant to use (bf16, channels_last, cudnn.benchmark, TF32 for
#: what stays in float32; compile stays a separate choice: it costs minutes of compilation per shape)
FAST = Accel(autocast="bf16", channels_last=True, cudnn_benchmark=True, tf32=True)


@contextlib.contextmanager
def settings(accel: Accel | None) -> Iterator[None]:
    """The process-wide backend settings of ``accel`` for a block (``cudnn.benchmark``, TF32),
    restored after it; nothing changes for ``None`` or options that leave them off."""
    if accel is None or not (accel.cudnn_benchmark or accel.tf32):
        yield
        return
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    try:
        if accel.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        if accel.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved
