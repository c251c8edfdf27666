"""The image installs only pyproject's [project] dependencies (no dev extras), so every third-party
module that src/ imports must come from one of them or from their own requirements. A module present in
the development .venv for another reason (a dev extra, a manual install) would pass every other test
and crash the container at start-up."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"activity_service"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions(requirements: list[str]) -> set[str]:
    """The declared requirements and, recursively, what they require (with the extras asked for)."""
    found: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = _normalize(requirement.name)
        environment = {"extra": ""}
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        if name in found:
            continue
        found.add(name)
        for line in importlib.metadata.requires(requirement.name) or []:
            child = Requirement(line)
            if child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in ["", *requirement.extras]
            ):
                pending.append(Requirement(str(child).split(";")[0]))
    return found


def imported_modules(root: Path) -> dict[str, set[str]]:
    """Top-level module -> files importing it, outside `if TYPE_CHECKING:` blocks."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        type_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for statement in block.body
            for node in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(root)))
    return found


def undeclared(modules: dict[str, set[str]], allowed: set[str]) -> dict[str, set[str]]:
    """Third-party modules whose distribution is not among `allowed` (or not installed at all)."""
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in modules.items():
        if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
            continue
        if not {_normalize(d) for d in providers.get(module, [])} & allowed:
            missing[module] = files
    return missing


def test_every_module_the_service_imports_is_installed_in_the_image() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    missing = undeclared(imported_modules(ROOT / "src"), runtime_distributions(dependencies))
    assert missing == {}, f"imported by src/ but not in [project] dependencies: {missing}"


def test_an_import_from_a_dev_only_package_is_reported(tmp_path: Path) -> None:
    source = "from typing import TYPE_CHECKING\nimport pytest\nimport fastapi\n"
    (tmp_path / "module.py").write_text(source + "if TYPE_CHECKING:\n    import mypy\n")
    modules = imported_modules(tmp_path)
    assert set(modules) == {"typing", "pytest", "fastapi"}
    assert set(undeclared(modules, runtime_distributions(["fastapi>=0.115"]))) == {"pytest"}


def test_extras_bring_their_requirements() -> None:
    assert "uvloop" in runtime_distributions(["uvicorn[standard]"])
    assert "uvloop" not in runtime_distributions(["uvicorn"])
