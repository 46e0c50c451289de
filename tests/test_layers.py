"""The layering in CONTRIBUTING.md holds: imports of our own modules point down the layer list.

Every ``import`` / ``from ... import`` of ``fairprune_lite`` in the library (module level,
function-local and under ``TYPE_CHECKING`` alike) is read with ``ast``; a module may import
only layers strictly below its own, its own package (``data.*``, ``experiments.*``), and the
version string. Known exceptions are listed below with the issue that removes them; an exception
that no longer occurs fails too, so the list only shrinks.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fairprune_lite"

#: CONTRIBUTING.md's table, bottom up; modules on one layer are peers and import none of each other
LAYERS: dict[str, int] = {
    "_optional": 0, "atomic": 0, "accel": 0,
    "fairness": 1, "masks": 1, "data": 1, "models": 1, "loading": 1, "progress": 1, "result": 1,
    "train": 2, "export": 2,
    "constraints": 3,
    "certify": 4,
    "bilevel": 5,
    "pruners": 6,
    "experiments": 7,
    "__main__": 8, "__init__": 8, "book": 8,  # the command line, the public API and the book's helpers on top
}

#: (importer, imported) pairs that break the layering today, with what removes them
EXCEPTIONS: dict[tuple[str, str], str] = {}  # none today


def _layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[tuple[str, int]]:
    """``{(top-level module of ours, line)}`` imported by the file at ``path``."""
    rel = path.relative_to(PKG)
    pkg_parts = ["fairprune_lite", *rel.parts[:-1]]
    out: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[list[str]] = []
        if isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names if a.name.split(".")[0] == "fairprune_lite"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)]
            elif node.module and node.module.split(".")[0] == "fairprune_lite":
                base = []
            else:
                continue
            mod = base + (node.module.split(".") if node.module else [])
            targets = [mod + [a.name] for a in node.names] if len(mod) == 1 else [mod]
        for t in targets:
            if len(t) >= 2:
                out.add((t[1], node.lineno))
    return out


def _edges() -> list[tuple[str, str, str]]:
    edges = []
    for path in sorted(PKG.rglob("*.py")):
        me = _layer_of(path)
        for target, line in sorted(_imports(path)):
            if target == me or target == "__version__":
                continue  # within its own package; the version string (defined before any import)
            edges.append((me, target, f"{path.relative_to(PKG.parent)}:{line}"))
    return edges


def test_every_module_has_a_layer():
    mods = {_layer_of(p) for p in PKG.rglob("*.py")}
    assert sorted(mods - set(LAYERS)) == [], "add the new module to CONTRIBUTING.md's table and LAYERS"


def test_imports_point_down_the_layers():
    bad = [f"{where}: {me} (layer {LAYERS[me]}) imports {target} (layer {LAYERS[target]})"
           for me, target, where in _edges()
           if LAYERS[target] >= LAYERS[me] and (me, target) not in EXCEPTIONS]
    assert bad == []


@pytest.mark.parametrize("pair", sorted(EXCEPTIONS))
def test_each_listed_exception_still_occurs(pair):
    """Remove an exception from EXCEPTIONS (and CONTRIBUTING.md) once its import is gone."""
    assert pair in {(me, target) for me, target, _ in _edges()}, f"{pair} no longer occurs: delete it"


def test_the_reader_sees_imports():
    """The parser itself: a relative, an absolute and a function-local import are all found."""
    found = {t for t, _ in _imports(PKG / "experiments" / "run.py")}
    assert {"data", "models", "pruners", "train", "masks"} <= found


def _table() -> dict[str, set[str]]:
    """CONTRIBUTING.md's layer table: ``{module: the modules of ours it says it imports}``."""
    text = (PKG.parent / "CONTRIBUTING.md").read_text()
    rows: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.match(r"\| `([\w_]+)(?:\.py|/)` \|.*\| ([^|]*) \|$", line)
        if m:
            said = {re.match(r"[\w_]+", p.strip(" `")).group(0) for p in m.group(2).split(",")}
            rows[m.group(1)] = said - {"none"}
    return rows


def test_contributing_table_says_what_is_imported():
    """Every module has a row in CONTRIBUTING.md's table, and its column "imports of ours" is what
    the code imports (the exceptions above included)."""
    table = _table()
    assert sorted(set(LAYERS) - set(table)) == [] and sorted(set(table) - set(LAYERS)) == []
    actual: dict[str, set[str]] = {m: set() for m in LAYERS}
    for me, target, _ in _edges():
        actual[me].add(target)
    assert {m: sorted(t) for m, t in table.items() if t != actual[m]} == \
        {m: sorted(actual[m]) for m, t in table.items() if t != actual[m]}
