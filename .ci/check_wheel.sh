#!/usr/bin/env bash
# CI: the installed package runs on its own. Builds the wheel, installs it with torch from pip into
# a fresh virtual environment outside the repository, and runs the smoke profile on Adult from a
# folder without a checkout (no data/ next to the package, FAIRPRUNE_DATA and PYTHONPATH unset),
# so the shipped data must come from inside the wheel; provenance's REPO / BOOK_RESULTS must stay
# inside the installed package (never the site-packages folder around it), verify must find the
# shipped TOLERANCES.json, and `fairprune verify` must recompute the smoke run.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.14.1 torchvision==0.29.1}"
WORK="$(mktemp -d)"
# torch's CUDA wheels make the venv several GB; deleting it takes a minute or two on a slow disk, so
# it runs in the background after the check has reported
trap 'rm -rf "$WORK" >/dev/null 2>&1 &' EXIT
t0=$(date +%s)
phase() { echo "check_wheel: $1 done at $(( $(date +%s) - t0 )) s"; }
unset FAIRPRUNE_DATA PYTHONPATH VIRTUAL_ENV

"$PY" -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
"$BIN/python" -m pip install --quiet $TORCH
phase "venv with $TORCH"
"$BIN/python" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$REPO"
phase "wheel build"
"$BIN/python" -m pip install --quiet "$WORK"/dist/fairprune_lite-*.whl
phase "wheel install (with its dependencies)"

cd "$WORK"
"$BIN/python" - <<'PY'
import importlib, pathlib, fairprune_lite
from fairprune_lite import experiments as ex
from fairprune_lite.data import data_dir
pkg = pathlib.Path(fairprune_lite.__file__).parent
assert "site-packages" in str(pkg), f"imported {pkg}, not the installed wheel"
assert data_dir() == pkg / "data" / "shipped", data_dir()
prov = importlib.import_module("fairprune_lite.experiments.provenance")
ver = importlib.import_module("fairprune_lite.experiments.verify")
assert not prov.IN_CHECKOUT, "the installed package thinks it runs from a checkout"
for name in ("REPO", "BOOK_RESULTS"):
    assert getattr(prov, name).is_relative_to(pkg), f"provenance.{name} = {getattr(prov, name)} is outside {pkg}"
assert ver.TOLERANCES_FILE.is_file() and ver.TOLERANCES_FILE.is_relative_to(pkg), ver.TOLERANCES_FILE
assert ex.load_tolerances() is not None, "verify finds no TOLERANCES.json"
print(f"installed package at {pkg}; shipped data at {data_dir()}; tolerances at {ver.TOLERANCES_FILE}")
PY
"$BIN/fairprune" run --dataset adult --profile smoke --method omp --sparsity 0.5 --out "$WORK/out" --quiet
ls "$WORK"/out/*.json >/dev/null
"$BIN/fairprune" verify "$WORK/out" -n 1
echo "check_wheel: ok in $(( $(date +%s) - t0 )) s"
