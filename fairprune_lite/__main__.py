"""Command line: ``python -m fairprune_lite <command> ...`` (also installed as ``fairprune``).

Commands: ``run`` (one experiment), ``sweep`` (a configuration file; ``--jobs N`` local processes
or ``--executor ray``), ``frontier`` (tau swept for the fairness-aware methods against
post-processing, OMP and the dense model: the sweep, its figure and the summary at ``--tau-star``),
``figure`` (from stored results), ``verify`` (recompute a sample of stored results), ``compare``
(paired difference of two methods over seeds), ``list-methods``, ``list-profiles``. Argument parsing only; the work is done by :mod:`fairprune_lite.experiments`.

Exit status: 0 on success, 1 when ``verify`` finds a mismatch or ``sweep`` has failed runs, 2 on
bad input (unknown method, dataset or attribute, a config typo, an unknown or bad constraint
option, a constraint the method cannot honour, an unwritable folder), reported before any data is
loaded or any model trained.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from . import __version__, pruners
from . import experiments as ex
from .data import fetch as data_fetch
from .experiments import frontier as ex_frontier
from .experiments.config import CONSTRAINT_KINDS, CONSTRAINT_OPTIONS, DEFAULT_TAU, check_number, slug, suggest

EXAMPLES = """examples:
  fairprune run --dataset adult --method bifp --sparsity 0.7 --seed 0
  fairprune run --dataset my_data.npz --method omp --sparsity 0.5 --profile smoke
  fairprune run --method bifp --sparsity 0.7 --constraint-option margin=1.645 --constraint-option dual=nupi
  fairprune sweep configs/fig1.yaml                      # runs only what is missing
  fairprune figure configs/fig1.yaml                     # PNG + SVG next to the results
  fairprune sweep configs/fig1.yaml --jobs 2             # two runs at a time
  fairprune sweep configs/fig1.yaml --executor ray --address HOST:6379
  fairprune frontier --dataset adult --sparsity 0.9 --constraint equalized_odds --tau-star 0.06 \
      -o bifp.protocol=certified                         # tau swept: BiFP, P&F, F&P vs post-processing
  fairprune verify runs/fig1 -n 3                        # recompute 3 stored results
  fairprune compare runs/fig3_4 --a bifp --b omp --metric test.equalized_odds_difference
profile: --profile or FAIRPRUNE_PROFILE (smoke | cpu | gpu; default cpu); quiet: --quiet or FAIRPRUNE_QUIET=1
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $FAIRPRUNE_PROFILE or cpu)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (default: the profile's)")
    p.add_argument("--quiet", "-q", action="store_true", default=None,
                   help="no progress bars or logs (also FAIRPRUNE_QUIET=1)")


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairprune", description="Fairness-constrained pruning experiments (fairprune-lite).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fairprune-lite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("run", help="one method on one dataset / sparsity / seed; writes one JSON result")
    _common(p)
    p.add_argument("--dataset", default=None, help="adult | fashion | celeba | lfw | PATH.npz (default: the profile's)")
    p.add_argument("--method", required=True, help="a pruning method (see list-methods)")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of prunable weights removed, in [0, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/single", help="folder for the result JSON (default runs/single)")
    p.add_argument("--constraint", default="accuracy_gap",
                   help="accuracy_gap | demographic_parity | equalized_odds (default accuracy_gap)")
    p.add_argument("--tau", type=float, default=DEFAULT_TAU,
                   help=f"allowed violation of the constraint (default {DEFAULT_TAU:g})")
    p.add_argument("--surrogate", default=None, help="hinge | logistic | sigmoid | ramp (default: the constraint's)")
    p.add_argument("--model", default=None, help="mlp | cnn | resnet10 | mobilenetv2 (default: from the data)")
    p.add_argument("--target", default=None, help="target attribute (dataset-specific)")
    p.add_argument("--sensitive", default=None, help="sensitive attribute (dataset-specific)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--structured", dest="structured", action="store_true", default=None,
                   help="prune whole channels / filters")
    g.add_argument("--unstructured", dest="structured", action="store_false", help="prune single weights")
    p.add_argument("--label", default=None, help="name of this variant in figures (default: the method)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a method keyword argument, e.g. -o fair_mask=false (repeatable)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KNOB=VALUE",
                   help="override a profile knob, e.g. --set pretrain_epochs=2 (repeatable)")
    p.add_argument("--constraint-option", dest="constraint_options", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a FairnessConstraint option, e.g. --constraint-option margin=1.645, dual=nupi, kp=5, "
                        f"mode=penalty (repeatable; options: {', '.join(CONSTRAINT_OPTIONS)})")
    p.add_argument("--budget", type=float, default=1.0, help="factor on the pruning-stage length (default 1)")
    p.add_argument("--save-weights", action="store_true", help="also store the final weights (for Fig. 8)")
    p.add_argument("--json", action="store_true", help="print the whole result JSON on stdout")
    p.add_argument("--allow-dirty", action="store_true",
                   help="allow writing into book/results from a tree with uncommitted changes (results say so)")

    p = sub.add_parser("sweep", help="methods x sparsities x seeds from a YAML/TOML config; runs what is missing")
    _common(p)
    p.add_argument("config", help="a .yaml/.yml/.toml sweep configuration (schema: configs/README.md)")
    p.add_argument("--out", default=None, help="results root (default: the config's 'out' or runs)")
    p.add_argument("--dry-run", action="store_true", help="check everything and list the missing runs only")
    p.add_argument("--jobs", "-j", type=int, default=1, help="runs at a time (local processes or Ray CPUs; default 1)")
    p.add_argument("--executor", default="local", help="local | ray (default local)")
    p.add_argument("--address", default=None, help="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="allow writing into book/results from a tree with uncommitted changes (results say so)")

    p = sub.add_parser("frontier", help="tau swept for fair methods vs post-processing, OMP and the dense model: "
                                        "runs what is missing, draws the figure, prints the summary")
    _common(p)
    p.add_argument("--dataset", default=None, help="adult | fashion | celeba | lfw | PATH.npz (default: the profile's)")
    p.add_argument("--target", default=None, help="target attribute (dataset-specific)")
    p.add_argument("--sensitive", default=None, help="sensitive attribute (dataset-specific)")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of prunable weights removed, in [0, 1)")
    p.add_argument("--constraint", default="equalized_odds",
                   help="accuracy_gap | demographic_parity | equalized_odds (default equalized_odds; post-processing "
                        "cannot honour accuracy_gap)")
    p.add_argument("--taus", type=float, nargs="+", default=list(ex_frontier.DEFAULT_TAUS),
                   help=f"tolerances swept (default {' '.join(map(str, ex_frontier.DEFAULT_TAUS))})")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--methods", nargs="+", default=list(ex_frontier.DEFAULT_METHODS),
                   help=f"methods (default {' '.join(ex_frontier.DEFAULT_METHODS)}); tau is swept for those "
                        "that use it")
    p.add_argument("--reference", nargs="*", default=None,
                   help="reference methods drawn as points (default: the registry's reference, omp)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method's option, e.g. -o bifp.protocol=certified (repeatable)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KNOB=VALUE",
                   help="override a profile knob (repeatable)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--structured", dest="structured", action="store_true", default=None)
    g.add_argument("--unstructured", dest="structured", action="store_false")
    p.add_argument("--tau-star", type=float, default=None,
                   help="summary: per method, the best mean test accuracy among settings whose mean test metric "
                        "is <= this")
    p.add_argument("--name", default=None, help="the sweep's name (its folder under --out)")
    p.add_argument("--out", default="runs", help="results root (default runs)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="runs at a time (default 1)")
    p.add_argument("--dry-run", action="store_true", help="check everything and list the missing runs only")
    p.add_argument("--no-run", action="store_true", help="only summarise and draw the stored results")
    p.add_argument("--allow-dirty", action="store_true",
                   help="allow writing into book/results from a tree with uncommitted changes (results say so)")

    p = sub.add_parser("figure", help="draw a figure (PNG + SVG) from stored results")
    p.add_argument("source", help="a sweep config (draws its grid) or a folder of results (needs --kind)")
    p.add_argument("--kind", default=None, help=" | ".join(ex.FIGURE_KINDS))
    p.add_argument("--out", default=None, help="folder for the images (default: the results folder)")
    p.add_argument("--results", default=None, help="results root of a config (default: its 'out' or runs)")
    p.add_argument("--name", default=None, help="file name stem of the images")
    p.add_argument("--spread", default=None, help="ci | std | minmax (default: the config's or ci, a 95%% t-interval)")
    p.add_argument("--profile", default=None, help="the profile whose results a config should draw")
    p.add_argument("--quiet", "-q", action="store_true", default=None)

    p = sub.add_parser("verify", help="recompute a random sample of stored results and compare")
    p.add_argument("results", help="a folder of result JSON files (searched recursively)")
    p.add_argument("-n", type=int, default=3, help="how many results to recompute (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sample (default 0)")
    p.add_argument("--atol", type=float, default=0.0,
                   help="absolute tolerance of the exact check on the same machine (default 0)")
    p.add_argument("--tolerances", default=None,
                   help="measured tolerances for results from another machine (default book/results/TOLERANCES.json)")
    p.add_argument("--reuse-cache", action="store_true", help="reuse stored dense checkpoints instead of retraining")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", "-q", action="store_true", default=None)

    p = sub.add_parser("compare", help="paired difference of two methods over seeds, with CI and tests")
    p.add_argument("results", help="a folder of result JSON files (searched recursively)")
    p.add_argument("--a", required=True, help="a label or method name")
    p.add_argument("--b", required=True, help="a label or method name")
    p.add_argument("--metric", default="test.accuracy_gap", help="dotted path, e.g. test.equalized_odds_difference")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the interval (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")

    sub.add_parser("list-methods", help="the pruning methods of the registry")
    sub.add_parser("list-profiles", help="the profiles and their knobs")
    add_data_parser(sub)
    return parser


# --------------------------------------------------------------------------------------------
# `fairprune data fetch ...` (the downloads themselves are fairprune_lite.data.fetch)
# --------------------------------------------------------------------------------------------
def add_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data`` with its subcommand ``fetch`` to the ``fairprune`` command line."""
    p = subparsers.add_parser("data", help="data sets not shipped: fetch CelebA / LFW with checksums")
    sub = p.add_subparsers(dest="data_command", metavar="subcommand")
    f = sub.add_parser("fetch", help="download and check CelebA or LFW into the loaders' layout")
    f.add_argument("dataset", help=f"one of: {', '.join(data_fetch.DATASETS)}")
    f.add_argument("--root", default=None,
                   help="data root (default: $FAIRPRUNE_DATA_ROOT); CelebA lands in ROOT/celeba, LFW in ROOT/lfw")
    f.add_argument("--source", action="append", default=None, metavar="NAME|URL",
                   help="a known source, or a URL serving every file by its name; repeat to try several "
                        "in order (default: all known sources)")
    f.add_argument("--optional", action="store_true", help="also fetch the files the loaders do not need")
    f.add_argument("--timeout", type=float, default=30.0,
                   help="seconds without data before a connection counts as lost")
    f.add_argument("--attempts", type=int, default=3, help="resumed attempts per source before the next source")
    f.add_argument("--remove-archives", action="store_true", help="delete the .zip / .tgz once unpacked")
    f.add_argument("--list-sources", action="store_true", help="print the sources and checksums and exit")
    return p


def cmd_data(args: argparse.Namespace) -> int:
    """Run ``fairprune data fetch``; 0 on success, 2 for bad input, 1 when a download failed."""
    if getattr(args, "data_command", None) != "fetch":
        print("usage: fairprune data fetch {celeba,lfw} [--root DIR] [--source NAME|URL]", file=sys.stderr)
        return 2
    if args.dataset not in data_fetch.DATASETS:
        print(f"error: unknown dataset {args.dataset!r} to fetch; known: {', '.join(data_fetch.DATASETS)}", file=sys.stderr)
        return 2
    if args.list_sources:
        print(data_fetch.describe(data_fetch.DATASETS[args.dataset]))
        return 0
    root = args.root or os.environ.get("FAIRPRUNE_DATA_ROOT")
    if not root:
        print("error: give --root DIR or set FAIRPRUNE_DATA_ROOT", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        got = data_fetch.fetch(args.dataset, root, source=args.source, optional=args.optional, timeout=args.timeout,
                    attempts=args.attempts, remove_archives=args.remove_archives)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except data_fetch.FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: ready under {Path(root).expanduser()} ({len(got)} files, "
          f"{time.perf_counter() - t0:.0f} s); load it with load_dataset({args.dataset!r}, root={str(root)!r})")
    return 0


def _key_values(items: Sequence[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{what} must look like KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ValueError(f"{what}: empty key in {item!r}")
        out[k.strip()] = _parse_value(v)
    return out


def _quiet(args: argparse.Namespace) -> bool:
    return bool(args.quiet) or ex.quiet_default()


def _cmd_run(args: argparse.Namespace) -> int:
    quiet = _quiet(args)
    profile = ex.get_profile(args.profile)
    spec = ex.RunSpec(
        method=args.method, dataset=args.dataset or profile.default_dataset, sparsity=args.sparsity,
        seed=args.seed, target=args.target, sensitive=args.sensitive, model=args.model, profile=profile.name,
        constraint=args.constraint, tau=args.tau, surrogate=args.surrogate, structured=args.structured,
        label=args.label, method_kwargs=_key_values(args.option, "--option"), budget=args.budget,
        settings=_key_values(args.settings, "--set"), save_weights=args.save_weights,
        constraint_options=_key_values(args.constraint_options, "--constraint-option"),
    )
    ex.check_spec(spec)
    ex.check_clean(args.out, args.allow_dirty)
    ex.check_writable(args.out)
    res = ex.run(spec, out=args.out, device=args.device, progress=ex.progress_default(quiet), quiet=quiet)
    path = os.path.join(args.out, f"{res['run_id']}.json")
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        t = res["test"]
        print(f"{path}\n  {res['label']} on {res['dataset']} ({res['model']}, profile {res['profile']}), "
              f"sparsity {res['sparsity']:.4f} (target {res['sparsity_target']:g})\n"
              f"  test accuracy {t['accuracy']:.4f} (dense {res['dense']['test']['accuracy']:.4f}), "
              f"accuracy gap {t['accuracy_gap']:.4f} (dense {res['dense']['test']['accuracy_gap']:.4f}), "
              f"degradation gap {t['degradation_gap']:.4f}\n"
              f"  {res['cost']['iterations']} iterations, {res['cost']['forward_passes']} forward / "
              f"{res['cost']['backward_passes']} backward passes, {res['wall_time_s']:.1f} s")
        for line in _constraint_lines(res):
            print(line)
        for line in _feasibility_lines(res):
            print(line)
    for w in res.get("warnings") or []:
        print(f"WARNING: {w}", file=sys.stderr)
    return 0


def _constraint_lines(res: dict[str, Any]) -> list[str]:
    """The constraint options the run set (``spec.constraint_options``), with the values the
    constraint actually ran with (its stored ``constraint_config``); nothing when none was set."""
    opts = (res.get("spec") or {}).get("constraint_options") or {}
    if not opts:
        return []
    used = res.get("constraint_config") or {}
    shown = ", ".join(f"{k}={used.get(k, v)!r}" for k, v in sorted(opts.items()))
    return [f"  constraint {res['constraint']} <= tau {res['tau']:g}, options: {shown}"]


def _feasibility_lines(res: dict[str, Any]) -> list[str]:
    """The constraint against tau on val and test (with its binomial SE, beside the majority
    baseline), and the solver's last logged estimate, violation and multipliers, if any."""
    lines = []
    for split in ("val", "test"):
        f = res.get(split, {}).get("feasibility")
        if f:
            lines.append(f"  {split}: {f['metric']} {f['value']:.4f} +- {f['se']:.4f} (SE) vs tau {f['tau']:g}: "
                         f"{'met' if f['met'] else 'NOT met'}; accuracy {res[split]['accuracy']:.4f}, "
                         f"majority baseline {res[split]['majority_baseline']:.4f}")
    last = (res.get("history") or [None])[-1]
    if isinstance(last, dict) and "max_violation" in last:
        mult = last.get("multipliers")
        lines.append(f"  last logged step: pooled estimate {last.get('estimate')}, max violation "
                     f"{last['max_violation']}, multipliers {mult}")
    return lines


def _cmd_sweep(args: argparse.Namespace) -> int:
    quiet = _quiet(args)
    summary = ex.sweep(args.config, out=args.out, profile=args.profile, device=args.device, quiet=quiet,
                       dry_run=args.dry_run, jobs=args.jobs, executor=args.executor, address=args.address,
                       allow_dirty=args.allow_dirty)
    return _print_sweep(summary, dry_run=args.dry_run)


def _print_sweep(summary: dict[str, Any], *, dry_run: bool = False) -> int:
    """Print a sweep's summary; the exit status (1 when runs failed)."""
    for _path, why in summary["corrupt"]:
        print(f"corrupt result recomputed: {why}", file=sys.stderr)
    if dry_run:
        print(f"{summary['folder']}: {summary['total']} runs, {summary['done_before']} done, "
              f"{len(summary['todo'])} missing")
        for rid in summary["todo"]:
            print(f"  missing {rid}")
        return 0
    print(f"{summary['folder']}: {summary['total']} runs, {summary['done_before']} were done, "
          f"{len(summary['ran'])} ran now ({summary.get('wall_time_s', 0.0):.1f} s)"
          + (" from a DIRTY tree" if summary.get("dirty") else ""))
    for rid, err in summary["failed"]:
        print(f"FAILED {rid}: {err} (details: {Path(summary['folder']) / (rid + '.failed.json')})", file=sys.stderr)
    if summary["failed"]:
        print(f"{len(summary['failed'])} runs failed; rerun the same command to retry them", file=sys.stderr)
    return 1 if summary["failed"] else 0


def _method_options(items: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``-o METHOD.KEY=VALUE`` items as ``{method: {key: value}}``; a ``ValueError`` naming
    ``--option`` for a malformed item or a method not in ``methods``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, eq, value = item.partition("=")
        method, dot, key = head.partition(".")
        if not (eq and dot and method.strip() and key.strip()):
            raise ValueError(f"--option must look like METHOD.KEY=VALUE, got {item!r}")
        method = method.strip()
        if method not in methods:
            raise ValueError(f"--option {item!r}: {method!r} is not a method of this frontier"
                             f"{suggest(method, methods)} ({', '.join(methods)})")
        out.setdefault(method, {})[key.strip()] = _parse_value(value)
    return out


def _frontier_config(args: argparse.Namespace) -> dict[str, Any]:
    """The frontier's sweep configuration from the command line; a ``ValueError`` naming the
    argument at fault, before anything runs."""
    profile = ex.get_profile(args.profile)
    check_number(args.sparsity, "--sparsity", 0.0, 1.0)
    for t in args.taus:
        check_number(t, "--taus entry", 0.0, 1.0, high_open=False)
    if args.tau_star is not None:
        check_number(args.tau_star, "--tau-star", 0.0, 1.0, high_open=False)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive number of seeds, got {args.seeds}")
    if args.constraint not in CONSTRAINT_KINDS:
        raise ValueError(f"--constraint must be one of {', '.join(CONSTRAINT_KINDS)}, got {args.constraint!r}")
    for flag, names in (("--methods", args.methods), ("--reference", args.reference or [])):
        for m in names:
            if m not in pruners.METHODS:
                raise ValueError(f"{flag}: unknown method {m!r}{suggest(m, pruners.METHODS)}; choose from "
                                 f"{', '.join(pruners.METHODS)}")
    reference = args.reference if args.reference is not None else \
        [n for n, m in pruners.METHODS.items() if m.reference]
    cfg = ex_frontier.frontier_config(
        dataset=args.dataset or profile.default_dataset, target=args.target, sensitive=args.sensitive,
        sparsity=args.sparsity, constraint=args.constraint, taus=args.taus, seeds=args.seeds, methods=args.methods,
        reference=reference, method_options=_method_options(args.option, [*args.methods, *reference]),
        tau_star=args.tau_star, name=args.name, profile=profile.name, structured=args.structured,
        settings=_key_values(args.settings, "--set"))
    ex.check_config(cfg, where="fairprune frontier")
    return cfg


def _cmd_frontier(args: argparse.Namespace) -> int:
    quiet = _quiet(args)
    cfg = _frontier_config(args)
    failed = False
    if not args.no_run:
        summary = ex.sweep(cfg, out=args.out, profile=args.profile, device=args.device, quiet=quiet,
                           dry_run=args.dry_run, jobs=args.jobs, allow_dirty=args.allow_dirty)
        if args.dry_run:
            return _print_sweep(summary, dry_run=True)
        failed = _print_sweep(summary) != 0
    results, missing = ex.sweep_results(cfg, out=args.out, profile=args.profile)
    if not results:
        raise ValueError(f"no stored results for frontier {cfg['name']!r} under {args.out}; run it without --no-run")
    front = ex_frontier.frontier_points(results)
    table = ex_frontier.frontier_table(front, args.tau_star)
    folder = ex.sweep_dir(cfg, args.out)
    stem = slug(cfg["name"])
    ex.figure("frontier", results, out=folder, name=stem, config=cfg, title=cfg.get("description"))
    (Path(folder) / f"{stem}.md").write_text(table + "\n")
    print(table)
    print(f"\n{Path(folder) / stem}.png\n{Path(folder) / stem}.svg\n{Path(folder) / stem}.md")
    if missing:
        print(f"warning: {len(missing)} runs of the frontier are missing; summarised from what exists", file=sys.stderr)
    return 1 if failed else 0


def _cmd_figure(args: argparse.Namespace) -> int:
    src = Path(args.source)
    if src.suffix in (".yaml", ".yml", ".toml"):
        cfg = ex.load_config(src)
        if args.spread:
            cfg["spread"] = args.spread
        if args.kind:
            if args.kind not in ex.FIGURE_KINDS:
                raise ValueError(f"--kind must be one of {', '.join(ex.FIGURE_KINDS)}, got {args.kind!r}")
            cfg["figure"] = args.kind
        out = args.out or ex.sweep_dir(cfg, args.results)
        ex.check_writable(out)
        _, missing = ex.figure_from_config(cfg, out=out, results_out=args.results, profile=args.profile)
        stem = args.name or slug(cfg["name"])
        if cfg.get("figure") == "frontier":  # its summary too, as `fairprune frontier` prints it
            results, _ = ex.sweep_results(cfg, out=args.results, profile=args.profile)
            print(ex_frontier.frontier_table(ex_frontier.frontier_points(results), cfg.get("tau_star")))
        if args.name:
            for ext in ("png", "svg"):
                shutil.move(str(Path(out) / f"{slug(cfg['name'])}.{ext}"), str(Path(out) / f"{stem}.{ext}"))
        if missing:
            print(f"warning: {len(missing)} runs of the sweep are missing; drawn from what exists", file=sys.stderr)
    else:
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: neither a config file (.yaml/.yml/.toml) nor a results folder")
        if not args.kind:
            raise ValueError("--kind is required when drawing from a results folder")
        out = args.out or src
        ex.check_writable(out)
        stem = args.name or args.kind
        ex.figure(args.kind, src, out=out, name=stem, spread=args.spread or "ci")
    print(f"{Path(out) / stem}.png\n{Path(out) / stem}.svg")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    quiet = _quiet(args)
    rep = ex.verify(args.results, n=args.n, seed=args.seed, atol=args.atol, fresh_cache=not args.reuse_cache,
                    device=args.device, quiet=quiet, tolerances=args.tolerances)
    for _path, why in rep["bad_files"]:
        print(f"BAD FILE {why}")
    for rid in rep["checked"]:
        diffs = rep["mismatches"].get(rid)
        print(f"{'MISMATCH' if diffs else 'ok      '} {rid}: {rep['checks'][rid]}")
        for d in (diffs or [])[:20]:
            print(f"    {d}")
    if rep["skipped"]:
        print(f"skipped {len(rep['skipped'])} results from another kind of device")
    print("verify: " + ("all recomputed results match" if rep["ok"] else "FAILED"))
    return 0 if rep["ok"] else 1


def _fmt(x: float) -> str:
    return f"{x:+.4f}"


def _cmd_compare(args: argparse.Namespace) -> int:
    if not 0 < args.level < 1:
        raise ValueError(f"--level must be in (0, 1), got {args.level}")
    results, bad = ex.load_results(args.results)
    for _path, why in bad:
        print(f"warning: skipping {why}", file=sys.stderr)
    rows = ex.compare(results, args.a, args.b, args.metric, level=args.level)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    pct = f"{100 * args.level:g}%"
    print(f"{args.metric}: {args.a} - {args.b}, paired over seeds (mean, {pct} t-interval; p-values: paired t, "
          f"exact sign, exact permutation)")
    for r in rows:
        budget = f" budget {r['budget']:g}" if r["budget"] not in (None, 1) else ""
        where = f"{r['dataset']}{'/' + str(r['target']) if r['target'] else ''} {r['model']} sparsity " \
                f"{r['sparsity']:g} tau {r['tau']:g}{budget}"
        if "error" in r:
            print(f"  {where}: {r['error']} (seeds {r['seeds']})")
            continue
        print(f"  {where}: {_fmt(r['mean_diff'])} [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}] n={r['n']} "
              f"p_t={r['t_test_p']:.3g} p_sign={r['sign_test_p']:.3g} p_perm={r['permutation_p']:.3g}")
    return 0


def method_description(info: Any) -> str:
    """A method's own one-line description: the one it was registered with, else the first line
    of its registered function's docstring (never the registry entry's class docstring)."""
    if (info.description or "").strip():
        return info.description.strip()
    doc = (getattr(info.fn, "__doc__", None) or "").strip().splitlines()
    return doc[0].strip() if doc else ""


def _cmd_list_methods(args: argparse.Namespace) -> int:
    width = max(map(len, pruners.METHODS), default=0)
    for name, info in pruners.METHODS.items():
        print(f"{name:<{width}} {method_description(info)}")
    return 0


def _cmd_list_profiles(args: argparse.Namespace) -> int:
    for name, prof in ex.PROFILES.items():
        print(f"{name}:")
        for k, v in prof.to_dict().items():
            if k != "name":
                print(f"  {k:<22} {v}")
    return 0


COMMANDS = {"run": _cmd_run, "sweep": _cmd_sweep, "frontier": _cmd_frontier, "figure": _cmd_figure, "verify": _cmd_verify,
            "compare": _cmd_compare, "list-methods": _cmd_list_methods, "list-profiles": _cmd_list_profiles,
            "data": cmd_data}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fairprune`` / ``python -m fairprune_lite``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "quiet", None):
        os.environ["FAIRPRUNE_QUIET"] = "1"
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, ex.ConfigError, ex.ResultError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished runs are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
