"""The layering the README's architecture section draws, checked on the imports themselves."""

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

WEB_MODULES = {"fastapi", "starlette", "uvicorn", "http", "httptools", "h11"}
TRAINING_ONLY = {"torchvision", "training"}


def imported_modules(where: Path) -> dict[str, set[str]]:
    """Each module file at or under `where` -> the modules it imports."""
    found = {}
    for path in sorted(where.rglob("*.py")) if where.is_dir() else [where]:
        modules = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
        found[str(path.relative_to(REPO_ROOT))] = modules
    return found


def imported_roots(where: Path) -> dict[str, set[str]]:
    """Each module file at or under `where` -> the top-level packages it imports from."""
    return {name: {module.split(".")[0] for module in modules} for name, modules in imported_modules(where).items()}


@pytest.mark.parametrize("core", ["app/inference", "app/repository", "app/errors.py"])
def test_the_inference_core_knows_nothing_of_http(core):
    modules = imported_roots(REPO_ROOT / core)
    assert {name: roots & WEB_MODULES for name, roots in modules.items() if roots & WEB_MODULES} == {}


@pytest.mark.parametrize("serving", ["app", "mnist_core"])
def test_serving_code_needs_neither_torchvision_nor_the_training_package(serving):
    modules = imported_roots(REPO_ROOT / serving)
    assert {name: roots & TRAINING_ONLY for name, roots in modules.items() if roots & TRAINING_ONLY} == {}


def test_the_protocol_doors_reach_the_models_through_the_core_only():
    doors = imported_modules(REPO_ROOT / "app" / "protocols")
    assert {
        name: modules for name, modules in doors.items() if any(m.startswith("app.repository") for m in modules)
    } == {}
