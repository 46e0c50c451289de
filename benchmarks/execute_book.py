"""Execute the chapters of the book top to bottom and record how long each took.

    python benchmarks/execute_book.py [--inplace] [--changed] [--profile cpu] [--tests] [chapter.ipynb ...]
    python benchmarks/execute_book.py --tests-only     # time the unit-test suite into the record
    python benchmarks/execute_book.py --status         # which chapters' inputs changed since they ran

With ``--inplace`` the executed notebooks (outputs included) replace the committed ones: this is
how the book's outputs are refreshed (``make book-execute``). Without it nothing in ``book/`` is
changed. Either way ``benchmarks/results/book_cost.json`` records, per chapter, the wall time, the
CPU time and the peak resident memory of its kernel, with the date, commit and load average of that chapter's
run and the machine and versions that produced them (a run of some chapters replaces their rows
and keeps the others), and with ``--tests`` the wall time of the unit-test suite (read by
``benchmarks/cost.py``).

Re-running only what changed (``--changed``, what ``make book-execute`` uses). A chapter written
back by ``--inplace`` carries, in its notebook metadata (``fairprune.inputs_sha256``), a hash of
everything its outputs can depend on: its own code cells and kernel, and the files a chapter may
import or read (:data:`INPUTS`: the library, the shipped data, the configurations, the stored
results, the benchmark scripts, the pinned versions). ``--changed`` executes only the chapters
whose hash differs from the one they carry. This is jupyter-cache's rule (myst-nb's
``execute_notebooks: cache``) with one difference that matters here: jupyter-cache hashes the
notebook's code cells only, so a change to the library or to a stored result would leave every
chapter's outputs stale; and the hash travels with the committed notebook, so a fresh clone knows
which outputs are current without a local cache.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from fairprune_lite.atomic import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "book_cost.json"
#: what a chapter's outputs may depend on besides its own code cells (globs under the repository
#: root); excluded: the record of run times (every chapter prints its own, from the last run) and
#: this script, which no chapter reads
INPUTS = ("fairprune_lite/**/*.py", "data/**/*", "configs/**/*", "book/results/**/*", "benchmarks/*.py",
          "benchmarks/results/**/*", "pyproject.toml", "constraints.txt")
EXCLUDED = {RECORD, Path(__file__).resolve()}
#: where in a notebook's metadata the hash of its inputs is kept
KEY = ("fairprune", "inputs_sha256")


def inputs_digest(root: Path = ROOT) -> str:
    """sha256 over the relative paths and contents of the files :data:`INPUTS` names."""
    h = hashlib.sha256()
    files = sorted({f for pat in INPUTS for f in root.glob(pat) if f.is_file() and f not in EXCLUDED
                    and "__pycache__" not in f.parts})
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _sources(nb: dict, kinds: tuple[str, ...] = ("code",)) -> list[str]:
    return ["".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") in kinds]


def chapter_key(nb: dict, digest: str, others: list[dict] = ()) -> str:  # type: ignore[assignment]
    """The hash a chapter's outputs are current for: its code cells, in order, its kernel, and
    :func:`inputs_digest` (``digest``). A chapter whose code reads the other chapters (it calls
    ``chapter_paths``: the course chapter's exercise index) also depends on their cells'
    sources (``others``; not their outputs, which change whenever they are executed)."""
    h = hashlib.sha256(digest.encode())
    h.update(json.dumps(nb.get("metadata", {}).get("kernelspec", {}).get("name", "")).encode())
    code = _sources(nb)
    for src in code:
        h.update(b"\0" + src.encode())
    if any("chapter_paths(" in src for src in code):
        for other in others:
            for src in _sources(other, ("code", "markdown")):
                h.update(b"\1" + src.encode())
    return h.hexdigest()


def stored_key(nb: dict) -> str | None:
    return nb.get("metadata", {}).get(KEY[0], {}).get(KEY[1])


def chapters(root: Path = ROOT) -> list[Path]:
    """The book's chapters in reading order (the library's rule, ``book.chapter_paths``)."""
    from fairprune_lite.book import chapter_paths  # imported here so --help needs no extra

    return chapter_paths(root / "book")


def _child_cpu_s() -> float:
    """CPU time (user + system) of the terminated children so far: the kernels. Unlike the wall
    time it hardly moves when other processes compete for the cores, so it is the number to
    compare between runs on a loaded machine."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _peak_child_rss_mb() -> float:
    # ru_maxrss of terminated children is in KiB on Linux; the kernel is our child.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def execute(path: Path, *, inplace: bool, timeout: int, key: str | None = None) -> dict:
    # the notebook runner comes with the [book] extra; imported here so --help needs no extra
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, cpu0 = time.perf_counter(), _child_cpu_s()
    try:
        client.execute()
    except Exception as exc:  # a failing chapter is recorded (and not written back), not fatal
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # tracebacks carry terminal colours
        first = (text.strip().splitlines() or [type(exc).__name__])[-1]
        return {"chapter": path.name, "wall_time_s": round(time.perf_counter() - start, 2),
                "error": f"{type(exc).__name__}: {first[:300]}"}
    wall = time.perf_counter() - start
    if inplace:
        if key is not None:
            nb.metadata.setdefault(KEY[0], {})[KEY[1]] = key
        # atomic: a crash never leaves a half-written chapter
        atomic_write(path, lambda tmp: nbformat.write(nb, tmp))
        # the machine whose numbers the chapters now print: their claim checks assert there
        # (experiments.check_claims) and only report elsewhere
        from fairprune_lite.experiments import kernel_fingerprint

        (path.parent / "FINGERPRINT.json").write_text(json.dumps(kernel_fingerprint(), indent=1) + "\n")
    return {"chapter": path.name, "wall_time_s": round(wall, 2), "cpu_time_s": round(_child_cpu_s() - cpu0, 2)}


def run_tests(timeout: int) -> dict:
    """Time the unit-test suite (``pytest tests``) in a child process; its peak RSS is the
    largest of any child so far (an upper bound, as for the chapters)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return {"command": "python -m pytest -q tests", "wall_time_s": round(wall, 2),
            "peak_rss_mb": round(_peak_child_rss_mb(), 1), "returncode": proc.returncode,
            "summary": lines[-1] if lines else ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="*", type=Path)
    ap.add_argument("--inplace", action="store_true", help="write executed notebooks back")
    ap.add_argument("--profile", default=os.environ.get("FAIRPRUNE_PROFILE", "cpu"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ap.add_argument("--out", type=Path, default=RECORD)
    ap.add_argument("--tests", action="store_true", help="also time the unit-test suite")
    ap.add_argument("--changed", action="store_true",
                    help="execute only the chapters whose inputs changed since they were written back")
    ap.add_argument("--status", action="store_true", help="list which chapters' inputs changed, execute nothing")
    ap.add_argument("--tests-only", action="store_true",
                    help="only time the unit-test suite, stored into the existing record")
    args = ap.parse_args(argv)
    os.environ["FAIRPRUNE_PROFILE"] = args.profile
    if args.tests_only:
        if not args.out.exists():
            raise FileNotFoundError(f"--tests-only updates an existing record; {args.out} does not exist")
        record = json.loads(args.out.read_text())
        record["test_suite"] = run_tests(args.timeout) | {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average_1_5_15": list(os.getloadavg())}
        print(f"{'unit tests':<40} {record['test_suite']['wall_time_s']:8.1f} s  {record['test_suite']['summary']}")
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
        return 0
    paths = [p.resolve() for p in args.chapters] or chapters()
    digest = inputs_digest()
    book = {p: json.loads(p.read_text()) for p in chapters()}
    nbs = {p: book.get(p) or json.loads(p.read_text()) for p in paths}
    keys = {p: chapter_key(nbs[p], digest, [nb for q, nb in book.items() if q != p]) for p in paths}
    stale = {p: stored_key(nbs[p]) != keys[p] for p in paths}
    if args.status:
        for p in paths:
            print(f"{p.name:<40} {'inputs changed' if stale[p] else 'current'}")
        return 0
    rows = []
    source = _source()  # the tree the run starts from: --inplace write-backs (and the record) dirty it later
    for ch in paths:
        if args.changed and not stale[ch]:
            print(f"{ch.name:<40} unchanged inputs, not executed", flush=True)
            continue
        before = _peak_child_rss_mb()
        row = execute(ch, inplace=args.inplace, timeout=args.timeout, key=keys[ch])
        row["peak_rss_mb_upper_bound"] = round(max(before, _peak_child_rss_mb()), 1)
        row.update(_when(), commit=source)
        rows.append(row)
        cpu = f"  (CPU {row['cpu_time_s']:.1f} s)" if "cpu_time_s" in row else ""
        print(f"{row['chapter']:<40} {row['wall_time_s']:8.1f} s{cpu}" + (f"  FAILED {row['error']}" if "error" in row else ""),
              flush=True)
    print(f"{'total (executed now)':<40} {sum(r['wall_time_s'] for r in rows):8.1f} s")
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    record = _merge(record, rows, args.profile)
    if args.tests:
        record["test_suite"] = run_tests(args.timeout) | _when()
        print(f"{'unit tests':<40} {record['test_suite']['wall_time_s']:8.1f} s  {record['test_suite']['summary']}")
    if rows or args.tests:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    return 1 if any("error" in r for r in rows) else 0


def _source() -> str | None:
    """The commit of the tree, ``+dirty`` when tracked files have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _when() -> dict:
    """When and from what a row was measured: date, commit (:func:`_source`) and the load average
    of the machine at the end of the run (near 2 on this 2-core machine means both cores busy)."""
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _source(),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def _merge(record: dict, rows: list[dict], profile: str) -> dict:
    """The stored record with ``rows`` replacing the rows of the same chapters; rows of chapters
    no longer in the book are dropped; the chapters in reading order."""
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "torch": torch_version}
    by_name = {r["chapter"]: r for r in record.get("chapters", [])}
    if set(by_name) - {r["chapter"] for r in rows} and rows and record.get("machine") not in (None, machine):
        print("note: rows kept from the stored record were measured on another machine (each has its date)")
    for r in rows:
        by_name[r["chapter"]] = r
    order = [p.name for p in chapters()]
    merged = [by_name[n] for n in order if n in by_name]
    out = dict(record)
    out.update({"profile": profile, "chapters": merged,
                "total_wall_time_s": round(sum(r["wall_time_s"] for r in merged), 2),
                "failed_chapters": [r["chapter"] for r in merged if "error" in r],
                "machine": machine if rows else record.get("machine", machine)})
    if rows:  # the top-level date and commit are those of the latest chapter run
        out.update({k: rows[-1][k] for k in ("date", "commit", "load_average_1_5_15")})
    return out


if __name__ == "__main__":
    sys.exit(main())
