"""The project's set-up files agree with each other (pyproject, environment.yml, README, CI)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
