"""Experiments: the layer the command line (``python -m fairprune_lite``) and the book's notebooks
share, so what the book shows is what the command line produces.

One module per concept (imports point down this list only):

==================  ==========================================================================
``profiles``        the size knobs of every experiment (``smoke``, ``cpu``, ``gpu``)
``config``          :class:`RunSpec` (one run) and :class:`SweepConfig` (a checked grid)
``provenance``      versions, git state, the machine fingerprint; the clean-tree rule
``results``         the ONE result schema (:class:`Result`), validation, atomic storage
``run``             data caps, cached dense pretraining, one run
``verify``          recompute stored results: exactly on the same machine, within measured
                    tolerances elsewhere
``sweep``           the grid, serial / local processes / Ray, failures isolated
``stats``           95% t-intervals, paired comparisons over seeds
``figures``         figure kinds in a registry, captions with provenance
==================  ==========================================================================
"""
from __future__ import annotations

from .book_rules import check_claims, check_clean, kernel_fingerprint
from .config import (
                     CONFIG_KEYS,
                     CONSTRAINT_KINDS,
                     CONSTRAINT_OPTIONS,
                     FIGURE_KINDS,
                     SPREADS,
                     ConfigError,
                     RunSpec,
                     SweepConfig,
                     check_config,
                     check_spec,
                     expand_config,
                     load_config,
                     make_constraint,
                     run_constraint,
                     sweep_dir,
)
from .figures import (
                     FIGURES,
                     caption,
                     constrained_metric,
                     figure,
                     figure_from_config,
                     interpolation_curve,
                     iterations_to_fair,
                     method_groups,
                     register_figure,
)
from .profiles import PROFILES, Profile, get_profile, lottery_levels, progress_default, quiet_default
from .provenance import device_name, fingerprint, provenance
from .results import (
                     SCHEMA,
                     SPLITS,
                     Result,
                     ResultError,
                     check_writable,
                     load_result,
                     load_results,
                     validate_result,
                     write_json,
)
from .run import HISTORY_MAX, default_cache_dir, load_splits, pretrain, run, run_to_file, stratified_subsample
from .stats import compare, mean_ci, paired_difference
from .sweep import EXECUTORS, failed_runs, sweep, sweep_results
from .verify import TOLERANCES_FILE, compare_results, load_tolerances, verify

__all__ = [
    "Profile", "PROFILES", "get_profile", "lottery_levels", "quiet_default", "progress_default",
    "RunSpec", "SweepConfig", "ConfigError", "check_spec", "load_config", "check_config", "expand_config",
    "sweep_dir", "CONFIG_KEYS", "CONSTRAINT_KINDS", "CONSTRAINT_OPTIONS", "FIGURE_KINDS", "SPREADS",
    "make_constraint", "run_constraint",
    "provenance", "device_name", "fingerprint", "kernel_fingerprint", "check_claims", "check_clean",
    "Result", "ResultError", "SCHEMA", "SPLITS", "validate_result", "load_result", "load_results", "write_json",
    "check_writable",
    "run", "run_to_file", "pretrain", "load_splits", "stratified_subsample", "default_cache_dir", "HISTORY_MAX",
    "verify", "compare_results", "load_tolerances", "TOLERANCES_FILE",
    "sweep", "sweep_results", "failed_runs", "EXECUTORS",
    "mean_ci", "paired_difference", "compare",
    "figure", "figure_from_config", "caption", "iterations_to_fair", "interpolation_curve", "FIGURES",
    "register_figure", "constrained_metric", "method_groups",
]
