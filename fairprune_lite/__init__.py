"""fairprune-lite: fairness-constrained pruning (BiFP) as a small PyTorch library.

Modules, one per concept (see CONTRIBUTING.md): ``fairness``, ``masks``, ``data``, ``models``,
``loading``, ``progress``, ``train``, ``result``, ``export``, ``constraints``, ``certify``, ``bilevel``, ``pruners``, ``experiments``. The names below are the
public API in brief (each also lives in its module); ``experiments`` (the runner, sweeps,
figures) is imported on its own: ``from fairprune_lite import experiments``.
"""

__version__ = "0.1.0"

from .data import FairDataset, Splits, load_dataset
from .fairness import (
    accuracy_gap,
    degradation_gap,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    fairness_report,
)
from .masks import MaskScores, apply_masks, remove_masks, sparsity_report
from .models import make_model
from .pruners import METHODS, prune
from .result import PruneResult
from .train import evaluate, fit, set_seed

__all__ = [
    "__version__",
    # data
    "FairDataset", "Splits", "load_dataset",
    # fairness metrics
    "accuracy_gap", "degradation_gap", "demographic_parity_difference", "equal_opportunity_difference",
    "equalized_odds_difference", "fairness_report",
    # masks
    "MaskScores", "apply_masks", "remove_masks", "sparsity_report",
    # models, training
    "make_model", "set_seed", "fit", "evaluate", "PruneResult",
    # methods
    "METHODS", "prune",
]
