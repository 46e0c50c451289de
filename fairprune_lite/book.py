"""The few pieces the book's chapters share, so that a chapter shows only the lines that teach.

* **Where the book runs**: :data:`REPOSITORY` and :data:`BRANCH` are the one place that says
  which repository and branch the book's Colab launch links (``_config.yml``), every chapter's
  install cell (:func:`install_cell_source`) and so the installed library come from;
  ``tests/test_book.py`` checks that they agree and ``.ci/check_colab.sh`` runs the install cell.
* **A chapter's setup**: :func:`setup` takes the runtime the chapter needs (``"cpu"`` or
  ``"gpu"``), sets the profile from it, fixes threads and seed, and makes figures readable on a
  phone (:data:`FIGURE_STYLE`).
* **Toy problems and dense models**: :func:`unfair_problem` (the synthetic problem of the
  exercises), :func:`ex_pretrain` (its dense MLP), :func:`pretrain_cnn` (the Fashion CNN of
  chapters 2 and 5), :func:`pretrain` (a dense model trained by the runner's own
  :func:`fairprune_lite.experiments.run.pretrain`, with :func:`runner_splits` its data).
* **Bookkeeping**: :func:`glue` (myst-nb's glue, or a no-op where myst-nb is missing, e.g. on
  Colab), :func:`exercises` (the exercise directives of the chapters, for ch. 11's index).

Nothing here is used by the library itself; it sits on top of every layer (DESIGN.md).
"""
from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib
import torch
import torch.nn as nn

from . import __version__
from . import train as _train
from .data import from_tensors
from .models import make_model

with warnings.catch_warnings():
    # experiments.sweep imports tqdm.auto at module level, which in a notebook without ipywidgets
    # warns "IProgress not found" (with the machine's site-packages path) although the book never
    # draws a bar. The fix belongs in sweep.py (import tqdm where the bar is drawn, as train.py
    # does); until then only this one import is silenced, nothing else.
    warnings.filterwarnings("ignore", message="IProgress not found")
    from . import experiments
    from .experiments.run import load_splits as _load_splits
    from .experiments.run import pretrain as _runner_pretrain

__all__ = ["REPOSITORY", "BRANCH", "RUNTIMES", "install_cell_source", "write_install_cell", "setup", "fit_legends",
           "FIGURE_STYLE", "PHONE_COLUMN_PX", "min_text_px", "glue", "unfair_problem", "ex_pretrain", "pretrain",
           "exercises", "chapter_paths", "runner_splits", "pretrain_cnn", "INSTALL_TAG", "prose_numbers", "unbacked_numbers",
           "swapped_feature_problem", "pretrain_mlp", "use_book_style", "CHAPTER_NAME", "stored_runs"]

# ---------------------------------------------------------------------------------------------
# Colab: one place for the repository and branch the book's launch links and install cells use
# ---------------------------------------------------------------------------------------------
#: the public repository; ``_config.yml``'s ``repository.url`` must be the same (tested)
REPOSITORY = "https://github.com/fairprune-lite/fairprune-lite"
#: the branch the launch links open and the install cell installs; ``_config.yml``'s
#: ``repository.branch`` must be the same (tested), so a chapter opened on Colab runs the
#: library of the same commit it was read from
BRANCH = "main"
#: the tag that marks a chapter's install cell (hidden from readers, found by the checks)
INSTALL_TAG = "colab-install"

_INSTALL_CELL = '''\
# Colab: clone fairprune-lite at the branch this page was opened from and install it (a no-op
# elsewhere: run the book from a checkout). FAIRPRUNE_REPO / FAIRPRUNE_COLAB let CI run this cell
# against a local clone (.ci/check_colab.sh). Written by fairprune_lite.book.install_cell_source.
import os, subprocess, sys
if "google.colab" in sys.modules or os.environ.get("FAIRPRUNE_COLAB"):
    _repo = os.environ.get("FAIRPRUNE_REPO", "{repository}")
    _dest = os.environ.get("FAIRPRUNE_COLAB_DIR", "/content/fairprune-lite")
    if not os.path.isdir(_dest):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", "{branch}", _repo, _dest],
                       check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _dest], check=True)
    os.chdir(os.path.join(_dest, "book"))'''


def install_cell_source(repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The exact source of every chapter's first code cell (tagged :data:`INSTALL_TAG` and
    ``remove-cell``): on Colab it clones ``repository`` at ``branch``, installs it with pip and
    moves into its ``book/`` folder (the chapters read stored results relative to it)."""
    for name, value in (("repository", repository), ("branch", branch)):
        if not isinstance(value, str) or not value or any(c in value for c in "\"'\n"):
            raise ValueError(f"{name} must be a non-empty string without quotes or newlines, got {value!r}")
    return _INSTALL_CELL.format(repository=repository, branch=branch)


def _install_cell_index(nb: Mapping[str, Any]) -> int | None:
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and INSTALL_TAG in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def write_install_cell(path: str | os.PathLike) -> bool:
    """Put :func:`install_cell_source` into the notebook at ``path``: replace the cell tagged
    :data:`INSTALL_TAG`, else the old clone cell (the first code cell mentioning
    ``google.colab``), else insert it after the first markdown cell. Returns whether the file
    changed. The lead runs it over chapters edited elsewhere after a merge."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"notebook {p} does not exist")
    nb = json.loads(p.read_text())
    src = install_cell_source()
    cell = {"cell_type": "code", "execution_count": None, "id": "colab-install",
            "metadata": {"tags": ["remove-cell", INSTALL_TAG]}, "outputs": [],
            "source": src.splitlines(keepends=True)}
    i = _install_cell_index(nb)
    if i is None:
        i = next((j for j, c in enumerate(nb["cells"])
                  if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])), None)
    if i is None:
        first_md = next((j for j, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"), -1)
        nb["cells"].insert(first_md + 1, cell)
    else:
        old = nb["cells"][i]
        if "".join(old["source"]) == src and INSTALL_TAG in old.get("metadata", {}).get("tags", []):
            return False
        cell["id"] = old.get("id", cell["id"])
        nb["cells"][i] = cell
    p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


# ---------------------------------------------------------------------------------------------
# a chapter's setup
# ---------------------------------------------------------------------------------------------
#: runtime a chapter needs -> (the profile it sets, how to select that runtime on Colab)
RUNTIMES = {
    "cpu": ("cpu", "the default CPU runtime is enough"),
    "gpu": ("gpu", "Runtime > Change runtime type > a GPU (T4 or better)"),
}

#: the width, in CSS pixels, of a figure on a 390 px page, measured in the built book: book.css
#: lets figures use the page's side gutters at phone widths (382 px), less the 15 px of a vertical
#: scrollbar where the browser draws one (the narrower case, so the one checked)
PHONE_COLUMN_PX = 367.0

#: matplotlib settings of the book's figures: drawn at most 5.2 inches (520 px) wide, so that in a
#: phone's 367 px they shrink to no less than 0.71 and 11-13 pt text (15-18 px) stays at 10 px or
#: more; see :func:`min_text_px`.
FIGURE_STYLE: dict[str, Any] = {
    "figure.dpi": 100, "figure.figsize": (5.2, 3.4), "font.size": 13, "axes.titlesize": 13,
    "axes.labelsize": 13, "xtick.labelsize": 12, "ytick.labelsize": 12, "legend.fontsize": 11,
    "legend.framealpha": 0.85, "figure.titlesize": 13,
}


def _record(chapter: str | None, root: Path) -> str:
    path = root / "benchmarks" / "results" / "book_cost.json"
    if chapter is None or not path.is_file():
        return "run time not recorded here"
    try:
        rec = json.loads(path.read_text())
        row = next(r for r in rec["chapters"] if r["chapter"].removesuffix(".ipynb") == chapter)
        t = float(row["wall_time_s"])
        date = row.get("date", rec["date"])  # each row has its own date since runs of some chapters
        return (f"measured run time {t:.0f} s" if t < 90 else f"measured run time {t / 60:.1f} min") + (f" on {rec['machine']['cpus']} CPU cores "
                f"(profile {rec['profile']}, {date[:10]}, benchmarks/results/book_cost.json)")
    except (StopIteration, KeyError, TypeError, ValueError):
        return "run time not recorded for this chapter"


def setup(runtime: str = "cpu", *, chapter: str | None = None, seed: int = 0, quiet: bool = False) -> Any:
    """Prepare a chapter: the profile follows the ``runtime`` it needs (``"cpu"``: profile
    ``cpu``; ``"gpu"``: profile ``gpu``) unless ``FAIRPRUNE_PROFILE`` is already set (the test
    suite and the command line choose it that way); one CPU thread on a CPU runtime (small models
    run fastest on one thread and give the same bits on any core count); seeds; the book's
    figure style. Prints one line naming the runtime, the profile and, for ``chapter`` (its file
    name without ``.ipynb``), the run time recorded in ``benchmarks/results/book_cost.json``.
    Returns the profile."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}")
    profile_name, how = RUNTIMES[runtime]
    os.environ.setdefault("FAIRPRUNE_PROFILE", profile_name)
    profile = experiments.get_profile()
    if runtime == "cpu":
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print(f"NOTE: this chapter wants a GPU runtime ({how}); none is available, so it runs its "
              f"CPU fallback.")
    _train.set_seed(seed)
    matplotlib.rcParams.update(FIGURE_STYLE)  # type: ignore[arg-type]
    root = Path.cwd().parent if Path.cwd().name == "book" else Path.cwd()
    if not quiet:
        print(f"runtime: {runtime} ({how}) | profile: {profile.name} | "
              f"fairprune-lite {__version__} | {_record(chapter, root)}")
    return profile


def min_text_px(fig: Any, *, column_px: float = PHONE_COLUMN_PX) -> float:
    """The smallest text height, in CSS pixels, of ``fig`` shown in a column ``column_px`` wide
    (a 390 px phone): font size in points times dpi/72, times the shrink factor
    ``min(1, column_px / image width in pixels)``. The image is what a notebook shows: the inline
    backend saves the tight bounding box, so a legend or title wider than the figure widens the
    image and shrinks all of its text on a phone. The book asks for 9 px or more."""
    if column_px <= 0:
        raise ValueError(f"column_px must be positive, got {column_px!r}")
    fig.canvas.draw()  # tick labels exist only once drawn
    tight_in = fig.get_tightbbox(fig.canvas.get_renderer()).width
    width_px = max(fig.get_figwidth(), tight_in) * fig.dpi
    scale = min(1.0, column_px / width_px)
    sizes = [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
             if t.get_text().strip() and t.get_visible()]
    if not sizes:
        return float("inf")
    return min(sizes) * fig.dpi / 72.0 * scale


def fit_legends(fig: Any) -> int:
    """Redraw every figure legend of ``fig`` that is wider than the figure with the most columns
    with which it fits (one at least), above the axes ("outside upper center" under a constrained
    layout, where the figure kinds of :mod:`fairprune_lite.experiments` put their legends): the
    inline image is the tight bounding box, so a legend that sticks out widens it and shrinks
    every text of the figure on a phone. Returns how many legends were redrawn."""
    changed = 0
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    loc = "outside upper center" if type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine" else "upper center"
    for leg in list(fig.legends):
        if leg.get_window_extent(renderer).width <= fig.bbox.width or len(leg.get_texts()) < 2:
            continue
        handles, labels = list(leg.legend_handles), [t.get_text() for t in leg.get_texts()]
        title = leg.get_title()
        style = {"frameon": leg.get_frame_on(), "fontsize": leg.get_texts()[0].get_fontsize(),
                 "title": title.get_text() or None, "title_fontsize": title.get_fontsize()}
        leg.remove()
        for ncols in range(len(labels) - 1, 0, -1):
            new = fig.legend(handles, labels, loc=loc, ncols=ncols, **style)
            fig.canvas.draw()
            if new.get_window_extent(renderer).width <= fig.bbox.width or ncols == 1:
                break
            new.remove()
        changed += 1
    return changed


def glue(name: str, value: Any, display: bool = False) -> None:
    """myst-nb's ``glue`` (the built book pastes ``value`` into the text where ``{glue:text}`name```
    stands), hidden by default; where myst-nb is missing (Colab) only a shown value is displayed."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - Colab
        if display:
            from IPython.display import display as _display

            _display(value)
        return
    _glue(name, value, display=display)


# ---------------------------------------------------------------------------------------------
# toy problems and dense models
# ---------------------------------------------------------------------------------------------
def unfair_problem(n: int = 4000, seed: int = 0) -> Any:
    """The small synthetic problem of the coding exercises (chapters 5, 6, 8 and 9): nine
    features, the last one the group ``s`` (25% have ``s = 1``); the majority's label depends on
    features 0 and 3, the minority's on features 1 and 2, so one model serves the two groups with
    different weights. Split 60/20/20 into train / val / test by :func:`from_tensors`."""
    if int(n) != n or n < 50:
        raise ValueError(f"n must be an integer >= 50, got {n!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(int(n), 8, generator=gen)
    s = (torch.rand(int(n), generator=gen) < 0.25).long()
    z = torch.where(s == 1, x[:, 1] - x[:, 2], x[:, 0] + 0.5 * x[:, 3]) + 0.3 * torch.randn(int(n), generator=gen)
    return from_tensors(torch.cat([x, s[:, None].float()], 1), (z > 0).long(), s, seed=seed, name="unfair")


def ex_pretrain(splits: Any, seed: int = 0, width: int = 32, epochs: int = 8) -> nn.Module:
    """The exercises' dense model: an MLP with two hidden layers of ``width`` units trained on
    ``splits.train`` (SGD with momentum, learning rate 0.05, ``epochs`` epochs), in eval mode
    (:func:`pretrain_mlp` with its default learning rate)."""
    return pretrain_mlp(splits, seed, width=width, epochs=epochs)


def pretrain_cnn(splits: Any, seed: int = 0, *, epochs: int = 2, width: int = 16) -> nn.Module:
    """The dense CNN of chapters 2 and 5 (and 8): the small CNN of ``width`` trained on
    ``splits.train`` with Adam for ``epochs`` epochs, learning rate 1e-3 on a cosine schedule (one
    value per epoch), batches of 128 with loader seed ``1000 * seed + epoch``; in eval mode.

    It is :func:`fairprune_lite.train.pretrain` with the chapters' settings, not the runner's
    (:func:`pretrain`): with the runner's SGD pretraining on the ``cpu`` profile's caps the chapter-2 experiment changes qualitatively
    (measured while writing this: at sparsity 0.95 seed 0 collapses to a constant prediction and
    the minority no longer loses more than the majority), so the chapters keep theirs, set
    once here."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    _train.set_seed(seed)
    model = make_model("cnn", in_shape=splits.input_shape, width=width, seed=seed)
    _train.pretrain(model, splits.train, epochs=epochs, lr=1e-3, optimizer="adam", seed=1000 * seed,
                    schedule="cosine")
    return model.eval()


def runner_splits(dataset: str = "fashion", *, profile: str | None = None) -> Any:
    """The train / val / test splits the runner uses for ``dataset`` under ``profile`` (default:
    the current one): :func:`~fairprune_lite.experiments.run.load_splits`, i.e. the dataset with
    the profile's split seed and its stratified caps."""
    prof = experiments.get_profile(profile)
    return _load_splits(experiments.RunSpec(method="omp", dataset=dataset, sparsity=0.5, profile=prof.name), prof)


def pretrain(dataset: str = "fashion", seed: int = 0, *, profile: str | None = None,
             cache_dir: str | os.PathLike | None = None) -> tuple[nn.Module, Any]:
    """The dense model the runner prunes for ``dataset`` and ``seed``: the runner's own
    :func:`~fairprune_lite.experiments.run.load_splits` and
    :func:`~fairprune_lite.experiments.run.pretrain` (profile's caps, model, epochs, learning
    rate schedule), so a chapter's dense model is the one ``fairprune run`` starts from.
    Returns ``(model, splits)``."""
    prof = experiments.get_profile(profile)
    spec = experiments.RunSpec(method="omp", dataset=dataset, sparsity=0.5, seed=seed, profile=prof.name)
    splits = _load_splits(spec, prof)
    model, _cost = _runner_pretrain(spec, prof, splits, cache_dir=cache_dir)
    return model, splits


# ---------------------------------------------------------------------------------------------
# the book's chapters and their exercises
# ---------------------------------------------------------------------------------------------
_EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise\}\s*(?P<title>[^\n]*)\n(?P<body>.*?)^\1\s*$",
                       re.MULTILINE | re.DOTALL)


#: a chapter's file name: two digits, an optional letter for a chapter inserted between two
#: others without renumbering the rest (``09b_unseen_data`` sorts after ``09_experiments``), ``_name``
CHAPTER_NAME = re.compile(r"\d\d[a-z]?_\w+")


def chapter_paths(book_dir: str | os.PathLike = ".") -> list[Path]:
    """The chapters (``NN_name.ipynb`` or ``NNx_name.ipynb``, :data:`CHAPTER_NAME`) in
    ``book_dir``, in reading order."""
    d = Path(book_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"book folder {d} does not exist")
    return sorted(p for p in d.glob("*.ipynb") if CHAPTER_NAME.fullmatch(p.stem))


def stored_runs(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The provenance lines and the run records of a benchmark's JSON-lines file (the format of
    ``benchmarks/solver_v3.py`` and ``benchmarks/frontier.py``: a ``# {...}`` provenance line
    before each block of runs, then one JSON object per run), each in file order."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"stored results {p} do not exist")
    provenance: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        text = line[1:] if line.startswith("#") else line
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p.name}, line {i}: not a JSON object ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{p.name}, line {i}: not a JSON object")
        (provenance if line.startswith("#") else runs).append(obj)
    return provenance, runs


def exercises(paths: Iterable[str | os.PathLike]) -> list[dict[str, str]]:
    """The exercise directives of the given notebooks, in order: one dict per exercise with
    ``chapter`` (file stem), ``label`` and ``title``. Ch. 11 builds its index from this."""
    out = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"notebook {p} does not exist")
        nb = json.loads(p.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for m in _EXERCISE.finditer("".join(cell["source"])):
                label = re.search(r"^:label:\s*(\S+)", m.group("body"), re.MULTILINE)
                if label is None:
                    raise ValueError(f"{p.name}: exercise {m.group('title')!r} has no :label:")
                out.append({"chapter": p.stem, "label": label.group(1), "title": m.group("title").strip()})
    return out


# ---------------------------------------------------------------------------------------------
# the prose rule: every number in a chapter's text comes from that chapter's outputs
# ---------------------------------------------------------------------------------------------
#: stripped from markdown before numbers are read: fenced blocks (code, and directive headers such
#: as ```{exercise} are kept apart below), display and inline math, inline code, roles
#: ({doc}`...`, {cite:p}`...`, {glue:text}`...`), link targets, HTML comments, directive options
_STRIP = [
    re.compile(r"^(`{3,})(?!\{)[^\n]*\n.*?^\1\s*$", re.M | re.S),   # fenced code (not directives)
    re.compile(r"\$\$.*?\$\$", re.S),                               # display math
    re.compile(r"(?<!\\)\$[^$\n]+?\$"),                                # inline math
    re.compile(r"\{[\w:-]+\}`[^`]*`"),                                # roles, glue included
    re.compile(r"``[^`]+``|`[^`\n]+`"),                                # inline code
    re.compile(r"\]\([^)]*\)"),                                      # link targets
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"^:[\w-]+:.*$", re.M),                                 # directive options
    re.compile(r"^(`{3,}|:{3,})\{[^}]*\}", re.M),                       # directive names
]
_NUMBER = re.compile(r"(?<![\w.\-/])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(%?)(?![\w\-])")
#: words after which a number is a name, not a result: "Fig. 7", "Definition 2", "chapter 9",
#: "Eq. 3", "Section 4", "lecture 5", "item 4"
_REFERENCE = re.compile(r"(Fig\.|Figs\.|Figure|Figures|Definitions?|Defs?\.|Eqs?\.|Equation|Sections?|"
                        r"Table|[Cc]hapters?|[Cc]h\.|[Ll]ectures?|Algorithm|Theorem|Lemma|[Ii]tems?|and|or|,)\s*$")


#: constants that are conventions, not results: a confidence level, a Python version
_ALLOWED = re.compile(r"\b95%\s+(?:confidence|interval|CI|t-interval)|Python\s+\d+\.\d+\+?")


def prose_numbers(markdown: str) -> list[str]:
    """The numbers a reader sees in ``markdown`` outside math, code, roles and references, as
    written ("0.893", "23,248", "10%"). The allow-list (not returned): integers up to 12 (counts
    such as "5 seeds", list and lecture numbers), years 1900-2099 (citations), numbers right after
    a reference word ("Fig. 7", "Definition 2", "chapter 9", and their lists), the confidence
    level "95% interval" and a Python version. Anything else must come from the chapter."""
    text = _ALLOWED.sub(" ", markdown)
    for pat in _STRIP:
        text = pat.sub(" ", text)
    out = []
    for m in _NUMBER.finditer(text):
        whole, frac, pct = m.group(1), m.group(2) or "", m.group(3)
        if not frac and not pct:
            v = int(whole.replace(",", ""))
            if v <= 12 or (1900 <= v <= 2099 and "," not in whole):
                continue
        before = text[max(0, m.start() - 40):m.start()]
        if _REFERENCE.search(before) and not frac and not pct:
            # a chain "Figs. 3, 4 and 5" keeps its reference word
            chain = re.search(r"(Fig\.|Figs\.|Figure|Figures|Definitions?|Defs?\.|Eqs?\.|Equation|Sections?|Table|"
                              r"[Cc]hapters?|[Cc]h\.|[Ll]ectures?|Algorithm|Theorem|Lemma|[Ii]tems?)[\s\d,and or-]*$", before)
            if chain:
                continue
        out.append(whole + frac + pct)
    return out


def _output_numbers(nb: Mapping[str, Any]) -> list[float]:
    vals: list[float] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        texts = ["".join(cell.get("source", []))]
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                texts.append("".join(o.get("text", [])))
            for key in ("text/plain", "text/markdown", "text/html", "text/latex"):
                d = o.get("data", {}).get(key)
                if d:
                    texts.append("".join(d) if isinstance(d, list) else str(d))
        for t in texts:
            for m in re.finditer(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", t):
                try:
                    vals.append(float(m.group(0).replace(",", "")))
                except ValueError:
                    pass
    return vals


def unbacked_numbers(nb: Mapping[str, Any]) -> list[str]:
    """The numbers in the markdown of notebook ``nb`` (a parsed .ipynb) that no code cell of it
    produced: each :func:`prose_numbers` entry must equal, at its printed precision, a number in
    the chapter's code (a constant the chapter sets) or in an output (a printed result, a glued
    value, a checked claim); "12%" may also be backed by 0.12. Returns them as written, each with
    the first words around it."""
    backed = _output_numbers(nb)
    missing = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        text = "".join(cell.get("source", []))
        for tok in prose_numbers(text):
            digits = tok.rstrip("%").replace(",", "")
            v = float(digits)
            d = len(digits.split(".")[1]) if "." in digits else 0
            cands = [v] + ([v / 100] if tok.endswith("%") else [])
            ok = False
            for target in cands:
                dd = d + (2 if target is not v else 0)
                if any(abs(round(w, dd) - target) < 1e-9 for w in backed):
                    ok = True
                    break
            if not ok:
                i = text.find(tok)
                missing.append(f"{tok!r} in '...{' '.join(text[max(0, i - 50):i + 30].split())}...'")
    return missing


# ---------------------------------------------------------------------------------------------
# chapters 6-10 (book2): helpers of those chapters go below this line
# ---------------------------------------------------------------------------------------------


def swapped_feature_problem(n: int = 6000, seed: int = 0) -> Any:
    """Chapter 6's problem: 4 standard normal features plus the group indicator, ``s = 1`` with
    probability 0.25, label ``1(z > 0)`` with ``z = x1`` for ``s = 1`` and ``z = x0`` for
    ``s = 0``, plus noise of SD 0.3; split 60/20/20 by :func:`from_tensors`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 50:
        raise ValueError(f"n must be an int >= 50 (enough examples for three splits of two groups), got {n!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    s = (torch.rand(n, generator=gen) < 0.25).long()
    z = torch.where(s == 1, x[:, 1], x[:, 0]) + 0.3 * torch.randn(n, generator=gen)
    return from_tensors(torch.cat([x, s[:, None].float()], 1), (z > 0).long(), s, seed=seed, name="unfair")


def pretrain_mlp(splits: Any, seed: int = 0, *, width: int = 32, epochs: int = 8, lr: float = 0.05) -> nn.Module:
    """The exercises' dense MLP (:func:`ex_pretrain`, with the learning rate as an argument)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    _train.set_seed(seed)
    model = make_model("mlp", in_shape=splits.input_shape, width=width, seed=seed)
    _train.pretrain(model, splits.train, epochs=epochs, lr=lr, seed=seed)
    return model.eval()


def use_book_style() -> None:
    """Matplotlib settings for chapters 6-10's figures: type large enough to stay at or above
    9 px when a figure at most 5.2 inches wide is scaled to a 390 px phone column (11 pt at
    100 dpi is 15 px before scaling), legends without frames."""
    import matplotlib as mpl

    mpl.rcParams.update({"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 10,
                         "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.frameon": False,
                         "figure.dpi": 100})
