"""The project's set-up files agree with each other (pyproject, environment.yml, README, CI)."""
from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("fairprune-lite")]
    out: dict[str, str] = {}
    for r in reqs:
        name, spec = _norm(r)
        assert out.get(name, spec) == spec, f"{name} pinned two ways in pyproject.toml"
        out[name] = spec
    return out


def _conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(_norm(r) for r in pip if not r.startswith("-e"))


def test_environment_yml_mirrors_pyproject():
    assert _conda_requirements() == _pyproject_requirements()


def test_pinned_torch_satisfies_pyproject():
    from packaging.specifiers import SpecifierSet

    reqs = _pyproject_requirements()
    make = (ROOT / "Makefile").read_text()
    for pkg in ("torch", "torchvision"):
        pinned = re.search(rf"\b{pkg}==([0-9.]+)", make)
        assert pinned, f"Makefile does not pin {pkg}"
        assert pinned.group(1) in SpecifierSet(reqs[pkg]), f"{pkg} pin violates pyproject"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call `make test`"
    assert "make test" in readme and "make book" in readme


def test_toc_lists_existing_chapters():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    for f in files:
        assert any((ROOT / (f + ext)).exists() for ext in (".ipynb", ".md")), f"{f} missing"


def test_every_subpackage_is_packaged():
    """Every package folder under fairprune_lite/ is listed, so a wheel carries all the code."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "fairprune_lite").rglob("__init__.py")}
    assert on_disk and on_disk <= listed, on_disk - listed


def test_wheel_carries_the_measured_tolerances():
    """verify needs TOLERANCES.json from an installed wheel too (.ci/check_wheel.sh runs it there)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"]["fairprune_lite.experiments.shipped"] == "book/results"
    assert "fairprune_lite.experiments.shipped" in cfg["packages"]
    files = cfg["package-data"]["fairprune_lite.experiments.shipped"]
    assert "TOLERANCES.json" in files
    for f in files:
        assert (ROOT / "book" / "results" / f).is_file(), f


@pytest.mark.parametrize("name", ["fairprune_lite", "fairprune_lite.data", "fairprune_lite.experiments"])
def test_all_lists_exactly_what_the_package_exports(name):
    mod = importlib.import_module(name)
    assert len(set(mod.__all__)) == len(mod.__all__), "a name listed twice"
    assert [n for n in mod.__all__ if not hasattr(mod, n)] == []
    tree = ast.parse(Path(mod.__file__).read_text())
    imported = {a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom) and node.level > 0
                for a in node.names}
    public = {n for n in imported if not n.startswith("_")}
    assert sorted(public - set(mod.__all__)) == [], "imported for export but missing from __all__"


def test_requires_python_matches_what_ci_tests():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python>=3.11" in env["dependencies"]
    wf = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert 'python-version: "3.11"' in wf and "bash .ci/run" in wf


def test_constraints_pin_every_declared_requirement():
    """make install installs with constraints.txt: each requirement of pyproject is pinned there,
    to a version its specifier allows."""
    from packaging.specifiers import SpecifierSet

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pkg, ver = line.split("==")
            pins[pkg.lower().replace("_", "-")] = ver.strip()
    for pkg, spec in _pyproject_requirements().items():
        assert pkg in pins, f"{pkg} is not pinned in constraints.txt"
        assert pins[pkg] in SpecifierSet(spec), f"constraints.txt pins {pkg}=={pins[pkg]}, outside {spec}"
    assert "-c $(CONSTRAINTS)" in (ROOT / "Makefile").read_text()


def test_citation_and_changelog_follow_the_version():
    """The release steps (CONTRIBUTING.md) bump these together."""
    import fairprune_lite

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == fairprune_lite.__version__
    assert any("2312.10181" in str(r.get("identifiers", "")) for r in cff["references"])
    log = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in log and f"## [{fairprune_lite.__version__}]" in log
