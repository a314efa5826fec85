"""Layering, checked by parsing the modules: the engine never reaches into the web layer, its pure
core speaks neither SQL, nor scheduling, nor Slack, and the web layer enters the engine only by its
one door, `signoff.engine`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"
WEB = ROOT / "web"
CORE = ENGINE / "core"

NOT_IN_ENGINE = {"signoff.web", "starlette", "jinja2"}
NOT_IN_CORE = NOT_IN_ENGINE | {
    "sqlalchemy",
    "sqlmodel",
    "apscheduler",
    "slack_sdk",
    "psycopg",
    "sqlite3",
    "signoff.engine.runtime",
    "signoff.engine.storage",
}


PUBLIC_SUBPACKAGES = {"signoff.engine.agents"}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, wherever the import statement is, as its full dotted name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def reaches(name: str, forbidden: set[str]) -> bool:
    """Whether the module `name` is one of `forbidden` or lies inside one of them."""
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def module_path(module: str) -> Path | None:
    """Where `signoff.<...>` lives in the checkout (the project root is the signoff package)."""
    parts = module.split(".")[1:]
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def transitive_imports(path: Path) -> set[str]:
    """What a module imports, following the signoff modules it imports in turn."""
    seen: set[Path] = set()
    todo, outside = [path], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imports(current):
            outside.add(name)
            if name.startswith("signoff.") and (found := module_path(name)) is not None:
                todo.append(found)
    return outside


def import_circles(directory: Path, package: str) -> list[list[str]]:
    """The import circles among the modules of `directory` (the package `package`), each as
    its modules' sorted names. Every import counts, also those inside functions or under
    `TYPE_CHECKING`: a circle the type checker needs is a circle in the design."""
    modules = {p.stem: p for p in directory.glob("*.py") if p.stem != "__init__"}
    prefix = package + "."
    edges = {
        name: {m[len(prefix) :] for m in imports(path) if m.startswith(prefix)} & set(modules)
        for name, path in modules.items()
    }

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(edges[current])
        return seen

    reach = {name: reachable(name) for name in modules}
    circles = {
        tuple(sorted(n for n in reach[name] if name in reach[n]))
        for name in modules
        if name in reach[name]
    }
    return sorted(list(c) for c in circles)


def test_the_pure_core_has_no_import_circles() -> None:
    assert import_circles(CORE, "signoff.engine.core") == []


def test_storage_has_no_import_circles() -> None:
    assert import_circles(ENGINE / "storage", "signoff.engine.storage") == []


def test_the_circle_check_finds_a_circle_through_type_checking_imports(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from pkg.b import thing\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.c import other\n"
    )
    (tmp_path / "c.py").write_text("def later():\n    import pkg.a\n")
    (tmp_path / "d.py").write_text("import pkg.a\n")  # imports into the circle, not part of it
    assert import_circles(tmp_path, "pkg") == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "path", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_engine_never_imports_the_web_layer(path: Path) -> None:
    assert {n for n in imports(path) if reaches(n, NOT_IN_ENGINE)} == set()


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_the_pure_core_uses_only_the_standard_library_and_pydantic(path: Path) -> None:
    reached = {n for n in transitive_imports(path) if reaches(n, NOT_IN_CORE)}
    assert reached == set(), (
        f"{path.relative_to(ROOT)} reaches {sorted(reached)} (directly or through the signoff "
        "modules it imports)"
    )


@pytest.mark.parametrize("path", sorted(WEB.rglob("*.py")), ids=lambda p: p.name)
def test_the_web_layer_uses_only_the_engines_public_door(path: Path) -> None:
    # signoff.engine.agents is a door of its own (the contract names it): gating agents' calls
    inside = {n for n in imports(path) if n.startswith("signoff.engine.")} - PUBLIC_SUBPACKAGES
    assert inside == set(), f"web/{path.name} reaches into {sorted(inside)}: use signoff.engine"


def test_the_check_sees_imports_inside_functions_too(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n\ndef later():\n    from sqlalchemy import select\n    import signoff.web.app\n"
    )
    assert imports(sample) == {"os", "sqlalchemy", "signoff.web.app"}
