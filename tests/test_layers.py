"""Layering, checked by parsing the modules: the engine never reaches into the web layer, and its
pure core speaks neither SQL, nor scheduling, nor Slack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"

PURE_CORE = [
    "tree",
    "steps",
    "branches",
    "loops",
    "waits",
    "threads",
    "interpreter",
    "validate",
    "state",
    "handlers",
    "working",
    "records",
    "views",
    "workflow",
]
NOT_IN_ENGINE = {"web", "starlette", "jinja2"}
NOT_IN_CORE = NOT_IN_ENGINE | {
    "sqlalchemy",
    "sqlmodel",
    "apscheduler",
    "slack_sdk",
    "psycopg",
    "sqlite3",
}


def imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value).split(".")[0])
    return found


def engine_imports(module: str) -> set[str]:
    """What `engine.<module>` imports, following the engine modules it imports in turn."""
    seen: set[str] = set()
    todo, outside = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ENGINE / f"{name}.py"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("engine."):
                todo.append(module.split(".")[1])
        outside |= {m for m in imports(path) if m != "engine"}
    return outside


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_the_engine_never_imports_the_web_layer(path: Path) -> None:
    assert imports(path) & NOT_IN_ENGINE == set()


@pytest.mark.parametrize("module", PURE_CORE)
def test_the_pure_core_uses_only_the_standard_library_and_pydantic(module: str) -> None:
    assert (ENGINE / f"{module}.py").exists(), f"engine/{module}.py is gone: update this list"
    reached = engine_imports(module)
    assert reached & NOT_IN_CORE == set(), (
        f"engine.{module} reaches {sorted(reached & NOT_IN_CORE)} (directly or through the "
        "engine modules it imports)"
    )


def test_the_check_sees_imports_inside_functions_too(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n\ndef later():\n    from sqlalchemy import select\n    import web.app\n"
    )
    assert imports(sample) == {"os", "sqlalchemy", "web"}
