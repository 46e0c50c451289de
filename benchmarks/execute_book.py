"""Execute every chapter of the book top to bottom and record how long each took.

    python benchmarks/execute_book.py [--inplace] [--profile cpu] [--tests] [chapter.ipynb ...]
    python benchmarks/execute_book.py --tests-only     # time the unit-test suite into the record

With ``--inplace`` the executed notebooks (outputs included) replace the committed ones: this is
how the book's outputs are refreshed (``make book-execute``). Without it nothing in ``book/`` is
changed. Either way ``benchmarks/results/book_cost.json`` records, per chapter, the wall time and
the peak resident memory of its kernel, with the machine and versions that produced them, and
with ``--tests`` the wall time of the unit-test suite (read by ``benchmarks/cost.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_child_rss_mb() -> float:
    # ru_maxrss of terminated children is in KiB on Linux; the kernel is our child.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def execute(path: Path, *, inplace: bool, timeout: int) -> dict:
    # the notebook runner comes with the [book] extra; imported here so --help needs no extra
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except Exception as exc:  # a failing chapter is recorded (and not written back), not fatal
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # tracebacks carry terminal colours
        first = (text.strip().splitlines() or [type(exc).__name__])[-1]
        return {"chapter": path.name, "wall_time_s": round(time.perf_counter() - start, 2),
                "error": f"{type(exc).__name__}: {first[:300]}"}
    wall = time.perf_counter() - start
    if inplace:
        tmp = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written chapter
        # the machine whose numbers the chapters now print: their claim checks assert there
        # (experiments.check_claims) and only report elsewhere
        from fairprune_lite.experiments import kernel_fingerprint

        (path.parent / "FINGERPRINT.json").write_text(json.dumps(kernel_fingerprint(), indent=1) + "\n")
    return {"chapter": path.name, "wall_time_s": round(wall, 2)}


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
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "book_cost.json")
    ap.add_argument("--tests", action="store_true", help="also time the unit-test suite")
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
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, args.out)
        return 0
    chapters = args.chapters or sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    rows = []
    for ch in chapters:
        before = _peak_child_rss_mb()
        row = execute(ch, inplace=args.inplace, timeout=args.timeout)
        row["peak_rss_mb_upper_bound"] = round(max(before, _peak_child_rss_mb()), 1)
        rows.append(row)
        print(f"{row['chapter']:<40} {row['wall_time_s']:8.1f} s" + (f"  FAILED {row['error']}" if "error" in row else ""),
              flush=True)
    total = sum(r["wall_time_s"] for r in rows)
    print(f"{'total':<40} {total:8.1f} s")
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    record = {"profile": args.profile, "chapters": rows, "total_wall_time_s": round(total, 2),
              "failed_chapters": [r["chapter"] for r in rows if "error" in r],
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version(), "torch": torch_version},
              "commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "load_average_1_5_15": list(os.getloadavg())}
    if args.tests:
        record["test_suite"] = run_tests(args.timeout)
        print(f"{'unit tests':<40} {record['test_suite']['wall_time_s']:8.1f} s  {record['test_suite']['summary']}")
    if not args.chapters:  # only a whole-book run replaces the stored record
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, args.out)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
