#!/usr/bin/env bash
# CI: every chapter's Colab install cell works. The cell is taken out of each notebook as it is
# (the cell tagged colab-install, the same code Colab runs when a reader opens the chapter from the
# book's launch button) and run in a fresh virtual environment against a local clone of this commit
# instead of the public repository; then the installed library is imported from that environment.
#
# Why this is faithful to Colab and still cheap and offline:
# * The cell itself is not edited. It reads FAIRPRUNE_COLAB (run as on Colab), FAIRPRUNE_REPO (the
#   repository to clone: here a file:// clone of this commit, whose branch named in the cell points
#   at HEAD) and FAIRPRUNE_COLAB_DIR (where to clone, /content/fairprune-lite on Colab); everything
#   else (git clone --branch, pip install of the clone, chdir into its book/) runs as on Colab.
# * Colab ships torch, torchvision, numpy, scipy, matplotlib, pandas, scikit-learn, tqdm and
#   pyyaml, so there the cell's pip install fetches only what is missing. Here the fresh
#   environment sees the packages already installed in $VENV (made by `make test` from PyPI) through
#   one .pth line pointing at a folder of links to them, with fairprune-lite itself and every
#   .pth / editable hook left out, so the only fairprune_lite it can import is the one the cell
#   installs. pip runs with PIP_NO_INDEX=1: a declared dependency that is not installed fails the
#   check instead of being downloaded (no network at all), and build isolation is off so the wheel
#   is built with the setuptools already there.
# * The chapters' install cells are identical when the book is consistent (tests/test_book.py
#   checks that against fairprune_lite.book.install_cell_source); each distinct cell runs once in its
#   own fresh environment and clone, so a chapter whose cell differs is still run as written.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s)
unset PYTHONPATH VIRTUAL_ENV FAIRPRUNE_DATA
test -x "$PY" || { echo "check_colab: no $PY (run make install first)" >&2; exit 1; }

# the packages a Colab runtime would already have: links to everything in $VENV but our own package
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir "$WORK/preinstalled"
for entry in "$SITE"/*; do
  name="$(basename "$entry")"
  case "$name" in
    fairprune_lite*|__editable__*|*.pth|__pycache__) continue ;;
  esac
  ln -s "$entry" "$WORK/preinstalled/$name"
done

# the cells, one file per distinct source, with the chapters that carry it
"$PY" - "$REPO" "$WORK/cells" <<'PY'
import hashlib, json, sys
from pathlib import Path
repo, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir()
chapters = sorted((repo / "book").glob("[0-9][0-9]*_*.ipynb"))  # NN_name and NNx_name (book.chapter_paths)
seen = {}
for p in chapters:
    cells = [c for c in json.loads(p.read_text())["cells"]
             if c["cell_type"] == "code" and "colab-install" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        sys.exit(f"check_colab: {p.name} has {len(cells)} cells tagged colab-install (expected 1)")
    src = "".join(cells[0]["source"])
    h = hashlib.sha256(src.encode()).hexdigest()[:12]
    seen.setdefault(h, []).append(p.stem)
    (out / f"{h}.py").write_text(src)
for h, names in seen.items():
    (out / f"{h}.chapters").write_text(" ".join(names))
print(f"check_colab: {len(chapters)} chapters, {len(seen)} distinct install cell(s)")
PY

# a local "public repository": a clone of this commit, with the cell's branch pointing at HEAD
HEAD="$(git -C "$REPO" rev-parse HEAD)"
git clone --quiet --bare --no-local "$REPO" "$WORK/origin.git"

status=0
for cell in "$WORK"/cells/*.py; do
  h="$(basename "$cell" .py)"
  chapters="$(cat "$WORK/cells/$h.chapters")"
  branch="$(grep -o '"--branch", "[^"]*"' "$cell" | head -1 | sed 's/.*", "//; s/"$//')"
  test -n "$branch" || { echo "check_colab: cell $h names no --branch (chapters: $chapters)" >&2; status=1; continue; }
  git -C "$WORK/origin.git" update-ref "refs/heads/$branch" "$HEAD"
  env_dir="$WORK/venv-$h"
  "$("$PY" -c "import sys; print(sys._base_executable)")" -m venv "$env_dir"
  purelib="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$WORK/preinstalled" > "$purelib/colab_preinstalled.pth"
  # the setuptools that venv seeds (65.x on Python 3.11) would shadow the preinstalled one, which
  # torch's metadata requires (>= 77); Colab's is current
  "$env_dir/bin/python" -m pip uninstall --quiet --yes setuptools >/dev/null 2>&1 || true
  mkdir "$WORK/run-$h"
  if (cd "$WORK/run-$h" && FAIRPRUNE_COLAB=1 FAIRPRUNE_REPO="file://$WORK/origin.git" \
        FAIRPRUNE_COLAB_DIR="$WORK/content-$h/fairprune-lite" PIP_NO_INDEX=1 PIP_NO_BUILD_ISOLATION=0 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg \
        "$env_dir/bin/python" - "$cell" "$WORK/content-$h/fairprune-lite" "$HEAD" <<'PY'
import os, subprocess, sys
cell, dest, head = sys.argv[1], sys.argv[2], sys.argv[3]
exec(compile(open(cell).read(), cell, "exec"))          # the cell, as Colab runs it
import fairprune_lite
from fairprune_lite import book
from fairprune_lite.data import data_dir
where = os.path.realpath(fairprune_lite.__file__)
assert where.startswith(os.path.realpath(sys.prefix)), f"imported {where}, not the package the cell installed"
assert os.path.realpath(os.getcwd()) == os.path.realpath(os.path.join(dest, "book")), os.getcwd()
got = subprocess.run(["git", "-C", dest, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
assert got == head, f"the cell cloned {got}, not {head}"
assert (data_dir() / "adult.data.gz").is_file(), data_dir()
assert os.path.isdir(os.path.join(dest, "book", "results")), "no stored results next to the chapters"
book.setup("cpu")
print(f"  fairprune-lite {fairprune_lite.__version__} installed from commit {got[:10]} at {where}")
PY
  ); then
    echo "check_colab: ok for $chapters"
  else
    echo "check_colab: FAILED for $chapters" >&2
    status=1
  fi
done
echo "check_colab: done in $(( $(date +%s) - t0 )) s"
exit $status
