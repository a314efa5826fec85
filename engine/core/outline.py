"""A definition as plain data, for pictures of it (the dashboard's tree, `signoff show`).

Pure and read-only: walks the statement tree through each statement's `children()` and gives
nested dicts of strings and lists that any template or JSON encoder can take.
"""

from __future__ import annotations

import json
from typing import Any

from signoff.engine.core.branches import Default, If, Switch
from signoff.engine.core.interpreter import thread_body
from signoff.engine.core.loops import For
from signoff.engine.core.steps import Step
from signoff.engine.core.threads import Go, Return
from signoff.engine.core.tree import Section, Statement, walk
from signoff.engine.core.waits import On, Wait, WaitFor

Node = dict[str, Any]
"""{"kind": "Step", "name": "notify" | None, "label": "...", "detail": "...", "children": [...]}"""

# Statements an operator can move a thread to, as `Runner.check_target` accepts them.
TARGETS = (Step, Wait, WaitFor)


def outline(stmt: Statement) -> Node:
    """The tree below `stmt`; sections are flattened into their parent's children."""
    node: Node = {
        "kind": type(stmt).__name__,
        "name": None,
        "label": "",
        "detail": "",
        "children": [],
    }
    match stmt:
        case Step(name=name, retry=retry):
            node["name"], node["label"] = name, name
            if retry.attempts != 3:
                node["detail"] = f"{retry.attempts} attempt(s)"
        case WaitFor(name=name, then=then):
            node["name"], node["label"] = name, name
            if then is not None:
                called = getattr(then, "__name__", "")
                node["detail"] = f"then {called}" if called.isidentifier() else "then"
        case Wait(name=name) | For(name=name):
            node["name"], node["label"] = name, name
        case Go(name=name):
            node["name"], node["label"] = name, name
            node["detail"] = f"thread {stmt.thread_id}"
        case On(event=event, handler=handler):
            node["label"], node["event"] = event, event
            node["detail"] = handler.kind
        case Return(value=value, error=error):
            if error is not None:
                node["detail"] = f"error: {error}"
            elif value is not None:
                node["detail"] = _short(value)
        case If():
            for index, (cond, body) in enumerate(stmt.branches):
                kind = "Else" if repr(cond) == "Else" else ("Then" if index == 0 else "ElseIf")
                branch: Node = {
                    "kind": kind,
                    "name": None,
                    "label": "",  # the kind says it: "Then", not "Then then"
                    "detail": "",
                    "children": _flat(body),
                }
                node["children"].append(branch)
            return node
        case Switch():
            for case in stmt.cases:
                node["children"].append(
                    {
                        "kind": "Default" if isinstance(case, Default) else "Case",
                        "name": None,
                        "label": "",
                        "detail": "",
                        "children": _flat(case.body),
                    }
                )
            return node
        case Section():
            node["label"] = "S"
        case _:
            node["label"] = type(stmt).__name__
    node["children"] = _flat(stmt)
    return node


def _flat(stmt: Statement) -> list[Node]:
    nodes: list[Node] = []
    for child in stmt.children():
        if isinstance(child, Section):
            nodes.extend(_flat(child))
        else:
            nodes.append(outline(child))
    return nodes


def _short(value: Any, limit: int = 60) -> str:
    """A value as a person reads it: JSON, not Python's repr."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def statement_names(definition: Statement) -> set[str]:
    """Every named statement (Step, Wait, WaitFor, For, Go) in the definition."""
    return {
        stmt.name for stmt in walk(definition) if isinstance(stmt, Step | Wait | WaitFor | For | Go)
    }


def goto_targets(definition: Statement, root: str | None) -> list[str]:
    """The steps and waits a thread started by Go `root` (None: main) may be moved to."""
    try:
        body = thread_body(definition, root)
    except Exception:  # the thread's Go no longer exists: nowhere to go
        return []
    return [stmt.name for stmt in walk(body) if isinstance(stmt, TARGETS)]
