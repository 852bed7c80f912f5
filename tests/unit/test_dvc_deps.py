"""dvc.yaml's code deps are exactly each stage's import closure (issue 18).

A stage whose imported project file is missing from its deps does not re-run when that file
changes: `dvc repro` would keep a model built by old code. The closure follows every
import, including the ones inside functions, through the project's own modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT

SRC = PROJECT / "src"
STAGES = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (None for third-party modules)."""
    if name.split(".")[0] != "ferops":
        return None
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name path imports anywhere (top level, functions, branches)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)  # `from a import b` may import the module a.b, or a name in a
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(module: str) -> set[str]:
    """Project files (relative to the project) that running `python -m module` imports."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
            name = ".".join(parts[:i])
            path = module_file(name)
            if path is not None and name not in seen:
                seen[name] = path
                todo.extend(imported_names(path, name))
    return {str(p.relative_to(PROJECT)) for p in seen.values()}


def stage_module(cmd: str) -> str:
    match = re.fullmatch(r"python -m ([\w.]+)", cmd.strip())
    assert match, f"stage command {cmd!r} is not `python -m <module>`"
    return match.group(1)


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_project_file_is_a_dep_of_the_stage(stage: str):
    spec = STAGES[stage]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]]
    closure = import_closure(stage_module(spec["cmd"]))
    missing = sorted(p for p in closure if not covered(p, deps))
    assert not missing, f"stage {stage}: add to its deps in dvc.yaml: {missing}"
    code_deps = [d for d in deps if d.startswith("src/")]
    stale = sorted(d for d in code_deps if not any(covered(p, [d]) for p in closure))
    assert not stale, f"stage {stage}: deps it never imports (remove them): {stale}"


def test_the_closure_sees_imports_inside_functions_and_packages(tmp_path: Path):
    """The checker itself: a function-level import and a package's __init__ are found."""
    closure = import_closure("ferops.training.train")
    assert "src/ferops/training/lr.py" in closure  # imported inside _fit
    assert "src/ferops/training/__init__.py" in closure and "src/ferops/__init__.py" in closure
    assert "src/ferops/config.py" in closure
    assert not any("serving" in p or "registry" in p for p in closure)
    assert not covered("src/ferops/training/lr.py", ["src/ferops/train"])
    assert covered("src/ferops/training/lr.py", ["src/ferops/training"])
