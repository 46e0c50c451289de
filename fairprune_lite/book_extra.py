"""Small pieces the book's chapters 6-10 share, so a chapter shows only the lines that teach.

(Meant to join ``fairprune_lite/book.py`` under its ``# --- chapters 6-10`` section once that
module exists on the main branch; kept separate here so the two can be merged without conflict.)

* :func:`unfair_problem`: the small synthetic problem of the exercises (chapters 5, 6, 8, 9):
  nine features, the last one the group ``s``; the majority's label (``s = 0``, 75%) depends on
  features 0 and 3, the minority's on features 1 and 2, so a linear model cannot serve both
  groups and a small MLP can.
* :func:`swapped_feature_problem`: chapter 6's problem for a logistic regression: five features,
  the last the group; the majority's label is decided by feature 0, the minority's by feature 1.
* :func:`pretrain_mlp`: the dense MLP of the exercises, pretrained on ``splits.train`` with the
  library's ``fit``.
"""
from __future__ import annotations

import torch
from torch import nn

from .data import Splits, from_tensors
from .models import make_model
from .train import fit, make_loader, set_seed

__all__ = ["unfair_problem", "swapped_feature_problem", "pretrain_mlp", "use_book_style"]


def _check_n(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 50:
        raise ValueError(f"n must be an int >= 50 (enough examples for three splits of two groups), got {n!r}")
    return n


def unfair_problem(n: int = 4000, seed: int = 0) -> Splits:
    """The exercises' problem: ``x`` of 8 standard normal features plus the group indicator,
    ``s = 1`` with probability 0.25, label ``1(z > 0)`` with ``z = x1 - x2`` for ``s = 1`` and
    ``z = x0 + 0.5 x3`` for ``s = 0``, plus noise of SD 0.3; split 60/20/20 by ``from_tensors``."""
    n = _check_n(n)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    s = (torch.rand(n, generator=gen) < 0.25).long()
    z = torch.where(s == 1, x[:, 1] - x[:, 2], x[:, 0] + 0.5 * x[:, 3]) + 0.3 * torch.randn(n, generator=gen)
    return from_tensors(torch.cat([x, s[:, None].float()], 1), (z > 0).long(), s, seed=seed, name="unfair")


def swapped_feature_problem(n: int = 6000, seed: int = 0) -> Splits:
    """Chapter 6's problem: 4 standard normal features plus the group indicator, ``s = 1`` with
    probability 0.25, label ``1(z > 0)`` with ``z = x1`` for ``s = 1`` and ``z = x0`` for
    ``s = 0``, plus noise of SD 0.3; split 60/20/20 by ``from_tensors``."""
    n = _check_n(n)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    s = (torch.rand(n, generator=gen) < 0.25).long()
    z = torch.where(s == 1, x[:, 1], x[:, 0]) + 0.3 * torch.randn(n, generator=gen)
    return from_tensors(torch.cat([x, s[:, None].float()], 1), (z > 0).long(), s, seed=seed, name="unfair")


def pretrain_mlp(splits: Splits, seed: int = 0, *, width: int = 32, epochs: int = 8, lr: float = 0.05) -> nn.Module:
    """The exercises' dense model: the library's MLP (two hidden layers of ``width``) trained for
    ``epochs`` on ``splits.train`` (batches of 128, SGD), seeded; returned in eval mode."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    set_seed(seed)
    model = make_model("mlp", in_shape=splits.input_shape, width=width, seed=seed)
    fit(model, make_loader(splits.train, 128, shuffle=True, seed=seed), epochs=epochs, lr=lr)
    return model.eval()


def use_book_style() -> None:
    """Matplotlib settings for the book's figures: type large enough to stay at or above 9 px
    when a figure at most 5.2 inches wide is scaled to a 390 px phone column (11 pt at 100 dpi is
    15 px before scaling), legends without frames."""
    import matplotlib as mpl

    mpl.rcParams.update({"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 10,
                         "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.frameon": False,
                         "figure.dpi": 100})
