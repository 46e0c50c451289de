"""Sweeps: every missing run of a :class:`~fairprune_lite.experiments.config.SweepConfig`, one
at a time, in ``jobs`` local processes, or as Ray tasks on a cluster.

* Before any training the whole configuration is checked, the output folder proven writable (and
  refused under ``book/results`` from a dirty tree unless ``allow_dirty``), the executor checked
  (``jobs`` a positive integer, a known executor, a reachable Ray address) and every dataset
  loaded once; a problem there writes nothing.
* A run whose result file exists, validates and was made with the same profile knobs is skipped;
  a corrupt one is renamed ``<name>.corrupt`` and a stale one ``<name>.stale``, then recomputed.
* Each run writes its own result atomically, so a killed sweep or a lost worker loses only the
  runs in flight; a run that raises leaves ``<run_id>.failed.json`` (error and traceback) and
  the others go on. A lost worker is recorded the same way: Ray retries its task twice first;
  a local process pool breaks when one of its processes dies, so its unfinished runs are all
  recorded as "worker lost". Re-running retries only failed and missing runs.
* In parallel, the distinct dense models are pretrained first (one task each), then the runs
  read them from the cache: results are identical to a serial sweep apart from timing and
  provenance.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import json
import multiprocessing
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..bilevel import PROTOCOLS
from ..result import to_jsonable
from .book_rules import check_clean
from .config import RunSpec, SweepConfig, check_config, check_spec, load_config, sweep_dir
from .profiles import Profile, log, progress_default, quiet_default
from .results import ResultError, check_writable, load_result, write_json
from .run import build_model, default_cache_dir, dense_key, load_splits, pretrain, run

__all__ = ["sweep", "sweep_results", "EXECUTORS", "failed_runs"]

EXECUTORS = ("local", "ray")


# ---------------------------------------------------------------------------------------------
# tasks (module-level functions: they are sent to worker processes and Ray workers)
# ---------------------------------------------------------------------------------------------
def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def pretrain_task(spec: dict, cache: str, device: str | None, root: Any, threads: int | None) -> str | None:
    """Pretrain (or find in the cache) the dense model of ``spec``; the error text on failure."""
    _set_threads(threads)
    try:
        s = RunSpec.from_dict(spec)
        profile = check_spec(s)
        before = torch.get_num_threads()
        if profile.threads:
            torch.set_num_threads(int(profile.threads))
        try:
            pretrain(s, profile, load_splits(s, profile, root=root), cache_dir=cache,
                     device=profile.resolve_device(device))
        finally:
            torch.set_num_threads(before)
    except Exception as e:  # the run itself will fail again and record it
        return f"{type(e).__name__}: {e}"
    return None


def record_failure(spec: dict, folder: str, err: str, tb: str) -> dict[str, Any]:
    """Write ``<folder>/<run_id>.failed.json`` (error and traceback); the sweep's record of it."""
    s = RunSpec.from_dict(spec)
    rid = s.run_id()
    write_json(Path(folder) / f"{rid}.failed.json", {
        "run_id": rid, "spec": s.to_dict(), "error": err, "traceback": tb,
        "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()})
    return {"run_id": rid, "ok": False, "error": err}


def run_task(spec: dict, folder: str, cache: str, device: str | None, root: Any,
             threads: int | None) -> dict[str, Any]:
    """One run of a sweep, never raising: the result's summary, or the error recorded in
    ``<folder>/<run_id>.failed.json``."""
    _set_threads(threads)
    s = RunSpec.from_dict(spec)
    rid = s.run_id()
    failed = Path(folder) / f"{rid}.failed.json"
    try:
        res = run(s, out=folder, cache_dir=cache, device=device, progress=False, quiet=True, root=root)
    except Exception as e:
        return record_failure(spec, folder, f"{type(e).__name__}: {e}", traceback.format_exc())
    if failed.exists():
        failed.unlink()
    return {"run_id": rid, "ok": True, "line": f"test acc {res['test']['accuracy']:.4f} gap "
            f"{res['test']['accuracy_gap']:.4f} sparsity {res['sparsity']:.3f} ({res['wall_time_s']:.1f} s)",
            "warnings": res.get("warnings") or []}


# ---------------------------------------------------------------------------------------------
# executors: each maps a task over argument tuples and yields results as they finish
# ---------------------------------------------------------------------------------------------
def _serial(fn: Callable, args: Sequence[tuple]) -> Any:
    for a in args:
        yield fn(*a)


def _lost(fn: Callable, a: tuple, e: BaseException) -> Any:
    """What a task whose worker was lost (killed, out of memory) returns: a recorded failure."""
    err = f"worker lost ({type(e).__name__}: {e})"
    return record_failure(a[0], a[1], err, "".join(traceback.format_exception(e))) if fn is run_task else err


def _processes(jobs: int) -> Callable:
    def map_(fn: Callable, args: Sequence[tuple]) -> Any:
        ctx = multiprocessing.get_context("spawn")  # no forked torch / OpenMP state
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(fn, *a): a for a in args}
            for f in cf.as_completed(futures):
                try:
                    yield f.result()
                except cf.process.BrokenProcessPool as e:  # the other runs of the pool are lost too
                    yield _lost(fn, futures[f], e)
    return map_


def _check_address(address: str) -> None:
    """A clear error for an address nothing listens on (before Ray's own long retries)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address must look like HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ValueError(f"Ray address {address!r} is unreachable ({e.strerror or e})") from None


def _ray(jobs: int, address: str | None, gpu: bool) -> Callable:
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'fairprune-lite[cluster]'") from None
    if address:
        _check_address(address)
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError) as e:
            raise ValueError(f"cannot start or reach Ray ({type(e).__name__}: {e})") from None

    def map_(fn: Callable, args: Sequence[tuple]) -> Any:
        remote = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=2)(fn)
        tasks = {remote.remote(*a): a for a in args}
        pending = list(tasks)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except (ray.exceptions.RayError, OSError) as e:  # the worker died after its retries
                yield _lost(fn, tasks[done[0]], e)
    return map_


def _executor(jobs: Any, executor: str, address: str | None, gpu: bool) -> Callable:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise ValueError("--address is for --executor ray")
    if executor == "ray":
        return _ray(jobs, address, gpu)
    return _serial if jobs == 1 else _processes(jobs)


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
def _preflight_data(specs: Sequence[RunSpec], profiles: Mapping[str, Profile], root: Any = None) -> None:
    """Load every distinct dataset of a sweep once (catches unknown attributes / missing files
    before any training); ``profiles``: run id -> the spec's checked profile."""
    seen = set()
    for spec in specs:
        key = (spec.dataset, spec.target, spec.sensitive, spec.profile, json.dumps(spec.settings, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        load_splits(spec, profiles[spec.run_id()], root=root)


def _same_profile(old: Mapping[str, Any], spec: RunSpec, profile: Profile | None = None) -> bool:
    """Whether a stored result was made with the profile knobs ``spec`` runs with now
    (``profile``: the spec's checked profile, else checked here). Knobs added to
    :class:`Profile` after the result was written count as equal when the result shows their
    effect was nil (``pretrain_min_steps``: the same number of pretraining epochs)."""
    profile = check_spec(spec) if profile is None else profile
    current = to_jsonable(profile.to_dict())
    stored = _current_form(old.get("profile_settings") or {})
    if any(current.get(k) != v for k, v in stored.items()) or any(k not in current for k in stored):
        return False
    # a knob added later whose value is None is off (``accel``): the stored run was made without it
    missing = {k for k in set(current) - set(stored) if current[k] is not None}
    if missing - {"pretrain_min_steps"}:
        return False
    if "pretrain_min_steps" in missing:
        n_train = (old.get("n") or {}).get("train")
        epochs = (old.get("pretrain_cost") or {}).get("epochs")
        return n_train is not None and epochs == profile.pretrain_epochs_for(n_train)
    return True


def _current_form(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Stored profile settings in today's form. Until session 5 a profile repeated the paper
    protocol's step sizes (``bifp_alpha`` / ``bifp_beta`` / ``bifp_gamma``); the runner passed
    them to paper-protocol runs only, where they equal the protocol's own, so the same values
    read as no ``bifp_paper`` override (other values, as the overrides they were)."""
    out = dict(stored)
    legacy = {k[len("bifp_"):]: out.pop(k) for k in ("bifp_alpha", "bifp_beta", "bifp_gamma") if k in out}
    if legacy and "bifp_paper" not in out:
        paper = PROTOCOLS["paper"]
        out["bifp_paper"] = {k: v for k, v in legacy.items() if v != getattr(paper, k)}
    return out


def failed_runs(folder: str | os.PathLike) -> dict[str, str]:
    """``run_id -> error`` of the ``*.failed.json`` records in a sweep folder."""
    out = {}
    for p in sorted(Path(folder).glob("*.failed.json")):
        try:
            rec = json.loads(p.read_text())
            out[rec["run_id"]] = rec["error"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            out[p.name[: -len(".failed.json")]] = "unreadable failure record"
    return out


def sweep(config: str | os.PathLike | Mapping[str, Any] | SweepConfig, *, out: str | os.PathLike | None = None,
          profile: str | None = None, device: str | None = None, quiet: bool | None = None,
          progress: bool | None = None, dry_run: bool = False, root: Any = None, jobs: int = 1,
          executor: str = "local", address: str | None = None, allow_dirty: bool = False) -> dict[str, Any]:
    """Run every missing (or failed) run of a sweep configuration; return a summary.

    ``jobs``: runs at a time (local processes, or the CPUs of a local Ray instance);
    ``executor``: ``"local"`` or ``"ray"`` (``address`` of a running cluster, else a local
    instance; one GPU per run when the profile's device is CUDA). Summary keys: ``folder``,
    ``total``, ``done_before``, ``ran``, ``corrupt`` (list of ``(path, reason)``), ``stale``,
    ``failed`` (``(run_id, error)``), ``dirty``, ``wall_time_s``.
    """
    quiet = quiet_default() if quiet is None else quiet
    progress = progress_default(quiet) if progress is None else progress
    cfg = _as_config(config)
    specs = cfg.specs(profile=profile)
    profiles = {s.run_id(): check_spec(s) for s in specs}  # every spec checked once, here
    target = sweep_dir(cfg, out)
    dirty = check_clean(target, allow_dirty)
    devices = {profiles[s.run_id()].resolve_device(device) for s in specs}
    run_map = _executor(jobs, executor, address, gpu=any(d.startswith("cuda") for d in devices)) \
        if not dry_run else None
    folder = check_writable(target)
    _preflight_data(specs, profiles, root)
    write_json(folder / "sweep.json", {"config": cfg.raw, "profile": specs[0].profile if specs else profile,
                                       "runs": [s.run_id() for s in specs]})
    todo, corrupt, stale, done_before = _still_to_run(specs, profiles, folder)
    retry = set(failed_runs(folder)) & {s.run_id() for s in todo}
    log(f"sweep {cfg.name}: {len(specs)} runs, {done_before} done, {len(todo)} to run "
        f"({len(retry)} failed before) -> {folder}", quiet)
    summary: dict[str, Any] = {"folder": str(folder), "total": len(specs), "done_before": done_before,
                               "ran": [], "corrupt": corrupt, "stale": stale, "failed": [], "dirty": dirty}
    if dry_run:
        summary["todo"] = [s.run_id() for s in todo]
        return summary
    assert run_map is not None  # set above unless dry_run
    t0 = time.perf_counter()
    cache = str(default_cache_dir(Path(out or cfg.out or "runs")))
    threads = None
    if run_map is not _serial:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        _pretrain_in_parallel(todo, profiles, run_map, cache, device, root, threads)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm  # on use: importing it in a kernel without ipywidgets warns

        bar = tqdm(total=len(todo), desc=f"sweep {cfg.name}")
    try:
        for rec in run_map(run_task, [(s.to_dict(), str(folder), cache, device, root, threads) for s in todo]):
            _record(summary, rec, quiet=quiet or bar is not None)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    summary["wall_time_s"] = time.perf_counter() - t0
    return summary


def _as_config(config: str | os.PathLike | Mapping[str, Any] | SweepConfig) -> SweepConfig:
    """A sweep configuration from a file, a mapping (named ``"sweep"`` unless it says) or as is, checked."""
    raw: Any
    if isinstance(config, (str, os.PathLike)):
        raw = load_config(config)
    else:
        raw = config
        if isinstance(raw, Mapping):
            raw = {"name": "sweep", **dict(raw)}
    return check_config(raw)


def _still_to_run(specs: Sequence[RunSpec], profiles: Mapping[str, Profile],
                  folder: Path) -> tuple[list[RunSpec], list[tuple[str, str]], list[str], int]:
    """``(todo, corrupt, stale, done_before)``: a run is done when its stored result validates and
    was made with the same profile; a corrupt or stale result is moved aside (``.corrupt`` /
    ``.stale``) and its run redone."""
    todo: list[RunSpec] = []
    corrupt: list[tuple[str, str]] = []
    stale: list[str] = []
    done_before = 0
    for spec in specs:
        p = folder / f"{spec.run_id()}.json"
        if p.exists():
            try:
                old = load_result(p)
            except ResultError as e:
                corrupt.append((str(p), str(e)))
                log(f"corrupt result, recomputing: {e}", False)
                os.replace(p, p.with_name(p.name + ".corrupt"))
            else:
                if _same_profile(old, spec, profiles[spec.run_id()]):
                    done_before += 1
                    continue
                stale.append(str(p))
                log(f"stale result (profile {spec.profile!r} has changed since), recomputing: {p}", False)
                os.replace(p, p.with_name(p.name + ".stale"))
        todo.append(spec)
    return todo, corrupt, stale, done_before


def _pretrain_in_parallel(todo: Sequence[RunSpec], profiles: Mapping[str, Profile], run_map: Callable,
                          cache: str, device: str | None, root: Any, threads: int) -> None:
    """One pretraining task per distinct dense model of ``todo``, before the runs that share it."""
    keys: dict[str, RunSpec] = {}
    for s in todo:
        prof = profiles[s.run_id()]
        splits = load_splits(s, prof, root=root)
        _, name, width = build_model(s, prof, splits)
        keys.setdefault(dense_key(s, prof, name, width, splits), s)
    if keys:
        for _ in run_map(pretrain_task, [(s.to_dict(), cache, device, root, threads) for s in keys.values()]):
            pass


def _record(summary: dict[str, Any], rec: Mapping[str, Any], *, quiet: bool) -> None:
    """Add one finished task's record to the sweep's summary and log it (failures and warnings always)."""
    if rec["ok"]:
        summary["ran"].append(rec["run_id"])
        log(f"  {rec['run_id']}: {rec['line']}", quiet)
        for w in rec["warnings"]:
            log(f"WARNING [{rec['run_id']}]: {w}", False)
    else:
        summary["failed"].append((rec["run_id"], rec["error"]))
        log(f"  FAILED {rec['run_id']}: {rec['error']}", False)


def sweep_results(cfg: Mapping[str, Any] | SweepConfig, *, out: Any = None,
                  profile: str | None = None) -> tuple[list[dict], list[str]]:
    """The stored results of a sweep's grid, and the run ids still missing."""
    c = check_config(cfg)
    folder = sweep_dir(c, out)
    got, missing = [], []
    for spec in c.specs(profile=profile):
        p = folder / f"{spec.run_id()}.json"
        try:
            got.append(load_result(p) | {"_path": str(p)})
        except ResultError:
            missing.append(spec.run_id())
    return got, missing
