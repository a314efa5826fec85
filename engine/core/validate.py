"""Checks a definition before it runs: the mistakes a workflow author makes, named plainly."""

from __future__ import annotations

from collections.abc import Iterator
from types import MethodType
from typing import Final

from signoff.engine.core.branches import Case, If, Switch
from signoff.engine.core.handlers import Handler
from signoff.engine.core.loops import Break, Continue, For
from signoff.engine.core.steps import Step
from signoff.engine.core.threads import Go
from signoff.engine.core.tree import Section, Statement, walk
from signoff.engine.core.waits import On, Wait, WaitFor
from signoff.engine.errors import DefinitionError

NAMED = (Step, Wait, Go, WaitFor, For)
# `callable`, held where compiled code finds it at once (it looks a builtin up by name)
_CALLABLE: Final = callable
# what a step's action nearly always is (`self.notify`): callable by its type alone, asked
# without a call (a step's check runs for every step of the tree after every step)
_METHOD: Final = MethodType


# Shapes (see `_shape`) already found valid, by workflow. The definition is rebuilt and checked
# again whenever the data changes, which after a step is nearly always; most rebuilds have a
# shape seen before, and recognising it costs a fraction of checking it.
_VALID: set[tuple[str, tuple[object, ...]]] = set()
MAX_SHAPES = 4096
# The shape each workflow's last valid tree had: the next rebuild nearly always has it too, and
# comparing a tree with it as it is walked makes nothing (`_matches`).
_LAST: dict[str, tuple[object, ...]] = {}
# Deeper than this, a definition is refused: the walks recurse, and compiled they would
# overflow the C stack instead of raising RecursionError. No one writes a tree this deep.
MAX_DEPTH = 200


def validate(definition: object, workflow: str) -> None:
    """Raise DefinitionError naming the first problem found in `definition`."""
    last = _LAST.get(workflow)
    if last is not None and _matches(definition, last, 0, 0) == len(last):
        return
    shape = _shape(definition)
    if shape is not None and (workflow, shape) in _VALID:
        _LAST[workflow] = shape
        return
    _validate(definition, workflow)
    if shape is not None:
        if len(_VALID) >= MAX_SHAPES:
            _VALID.clear()
        _VALID.add((workflow, shape))
        _LAST[workflow] = shape


def _shape(root: object) -> tuple[object, ...] | None:
    """Everything `_validate` looks at, as one flat hashable tuple: for each statement, in
    order, depth first, its type, name, renamed_from, what is particular to it (a step's
    action being callable, a Go's thread id, a case's event and handler) and how many children
    it has, which makes the flat list stand for exactly one tree. The commonest statement, a
    step with a text name, a callable action and no old names, stands as its bare name: nothing
    else makes a bare string. None when that cannot be had (a list where a tuple belongs,
    something that is no statement, a tree too deep): then it is simply checked.

    It runs after nearly every step, so a section's steps are taken in its own loop."""
    out: list[object] = []
    try:
        if not _flatten(root, out, 0):
            return None
        shape = tuple(out)
        hash(shape)
        return shape
    except Exception:  # unhashable or malformed: _validate says what is wrong, if anything
        return None


def _entry(stmt: object) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """A statement's entry in the shape (for any statement but a section or a plain step),
    and its children. Raises when `stmt` is no statement."""
    extra: object = None
    if isinstance(stmt, Step):
        extra = callable(stmt.action)
    elif isinstance(stmt, Go):
        extra = stmt.thread_id
    elif isinstance(stmt, On):
        extra = (stmt.event, isinstance(stmt.handler, Handler))
    elif isinstance(stmt, WaitFor):
        extra = stmt.then is None or callable(stmt.then)
    if not isinstance(stmt, Statement):
        raise TypeError(f"{stmt!r} is not a statement")
    children: tuple[object, ...] = tuple(stmt.children())
    kind: object = type(stmt)
    entry = (
        kind,
        getattr(stmt, "name", None),
        getattr(stmt, "renamed_from", None),
        extra,
        len(children),
    )
    return entry, children


def _flatten(stmt: object, out: list[object], depth: int) -> bool:
    """Append the shape of `stmt` to `out`; False when the tree is too deep to have one."""
    if depth > MAX_DEPTH:
        return False
    if type(stmt) is Section:
        body: tuple[object, ...] = stmt.body
        out.append((Section, None, None, None, len(body)))
        for child in body:
            if type(child) is Step:  # a plain step: a text name, an action, no old names
                name, action = child.name, child.action
                if (
                    type(name) is str
                    and not child.renamed_from
                    and (type(action) is _METHOD or _CALLABLE(action))
                ):
                    out.append(name)  # only a plain step's entry is a bare string
                    continue
            if not _flatten(child, out, depth + 1):
                return False
        return True
    entry, children = _entry(stmt)
    out.append(entry)
    return all(_flatten(child, out, depth + 1) for child in children)


def _matches(stmt: object, shape: tuple[object, ...], at: int, depth: int) -> int:
    """Whether `stmt` has the shape of `shape` from index `at` on, as `_flatten` would write
    it, compared as the tree is walked: the index after it when it does, else -1."""
    if depth > MAX_DEPTH or at >= len(shape):
        return -1
    if type(stmt) is Section:
        body: tuple[object, ...] = stmt.body
        if shape[at] != (Section, None, None, None, len(body)):
            return -1
        at += 1
        for child in body:
            if type(child) is Step:  # as in `_flatten`
                name, action = child.name, child.action
                if (
                    type(name) is str
                    and not child.renamed_from
                    and (type(action) is _METHOD or _CALLABLE(action))
                ):
                    if at >= len(shape):
                        return -1
                    entry = shape[at]  # no str there: not equal either
                    if entry is not name and entry != name:  # mostly the very same text
                        return -1
                    at += 1
                    continue
            at = _matches(child, shape, at, depth + 1)
            if at < 0:
                return -1
        return at
    try:
        entry, children = _entry(stmt)
    except Exception:  # malformed: not the shape of a valid tree
        return -1
    if shape[at] != entry:
        return -1
    at += 1
    for child in children:
        at = _matches(child, shape, at, depth + 1)
        if at < 0:
            return -1
    return at


def _validate(definition: object, workflow: str) -> None:
    if not isinstance(definition, Statement):
        raise DefinitionError(
            f"{workflow}.definition() must return a statement such as S(...), "
            f"not {type(definition).__name__}"
        )
    names: dict[str, str] = {}
    threads: set[str] = {"main"}
    _check(definition, workflow, names, threads, in_loop=False, in_wait=False)
    _check_renames(definition, f"workflow {workflow}", names)


def _check_renames(definition: Statement, where: str, names: dict[str, str]) -> None:
    """An old name must lead to one statement only: never a current name, never two
    statements' (or two cases') old name, so a parked instance has exactly one place to go."""
    olds: dict[str, str] = {}
    for stmt in walk(definition):
        if isinstance(stmt, NAMED):
            for old in _old_names(
                stmt.renamed_from, f"{where}: {type(stmt).__name__} '{stmt.name}'"
            ):
                if old in names:
                    raise DefinitionError(
                        f"{where}: '{stmt.name}' is renamed_from '{old}', but '{old}' is still "
                        f"the name of a {names[old]}; an old name must not be in use"
                    )
                if old in olds:
                    raise DefinitionError(
                        f"{where}: '{old}' is in the renamed_from of both '{olds[old]}' and "
                        f"'{stmt.name}'; an old name may lead to one statement only"
                    )
                olds[old] = stmt.name
        if isinstance(stmt, Wait):
            events = {case.event for case in stmt.cases}
            old_events: dict[str, str] = {}
            for case in stmt.cases:
                what = f"{where}: event '{case.event}' of wait '{stmt.name}'"
                for old in _old_names(case.renamed_from, what):
                    if old in events:
                        raise DefinitionError(
                            f"{what} is renamed_from '{old}', which is still an event of that "
                            "wait; an old name must not be in use"
                        )
                    if old in old_events:
                        raise DefinitionError(
                            f"{where}: '{old}' is in the renamed_from of both events "
                            f"'{old_events[old]}' and '{case.event}' of wait '{stmt.name}'"
                        )
                    old_events[old] = case.event


def _old_names(renamed_from: object, what: str) -> tuple[str, ...]:
    if not isinstance(renamed_from, tuple) or not all(
        isinstance(old, str) and old.strip() for old in renamed_from
    ):
        raise DefinitionError(f"{what}: renamed_from must be a list of non-empty names")
    return renamed_from


def _check(
    stmt: object,
    workflow: str,
    names: dict[str, str],
    threads: set[str],
    *,
    in_loop: bool,
    in_wait: bool,
    depth: int = 0,
) -> None:
    where = f"workflow {workflow}"
    if not isinstance(stmt, Statement):
        raise DefinitionError(f"{where}: {stmt!r} is not a statement")
    if depth > MAX_DEPTH:
        raise DefinitionError(f"{where}: statements are nested more than {MAX_DEPTH} deep")
    inner = depth + 1
    if isinstance(stmt, NAMED):
        kind = type(stmt).__name__
        if not isinstance(stmt.name, str) or not stmt.name.strip():
            raise DefinitionError(f"{where}: a {kind} needs a non-empty name")
        if stmt.name in names:
            raise DefinitionError(
                f"{where}: the name '{stmt.name}' is used twice ({names[stmt.name]} and {kind}); "
                "statement names must be unique"
            )
        names[stmt.name] = kind
    match stmt:
        case Step(action=action) if not callable(action):
            raise DefinitionError(f"{where}: step '{stmt.name}' needs a callable action")
        case WaitFor(then=then) if then is not None and not callable(then):
            raise DefinitionError(f"{where}: the then of WaitFor '{stmt.name}' must be callable")
        case Go():
            if stmt.thread_id in threads:
                raise DefinitionError(f"{where}: thread id '{stmt.thread_id}' is used twice")
            threads.add(stmt.thread_id)
            _check(stmt.body, workflow, names, threads, in_loop=False, in_wait=False, depth=inner)
            return
        case Wait():
            _check_wait(stmt, where)
            for case in stmt.cases:
                _check(case, workflow, names, threads, in_loop=in_loop, in_wait=True, depth=inner)
            return
        case Switch():
            if not stmt.cases:
                raise DefinitionError(f"{where}: a Switch needs at least one Case(...)")
            options: tuple[object, ...] = stmt.cases  # whatever the author put there
            for option in options:
                if not isinstance(option, Case):
                    raise DefinitionError(
                        f"{where}: a Switch may hold only Case(...) and Default(...), "
                        f"not {type(option).__name__}"
                    )
                _check(
                    option.body,
                    workflow,
                    names,
                    threads,
                    in_loop=in_loop,
                    in_wait=False,
                    depth=inner,
                )
            return
        case Case():
            raise DefinitionError(
                f"{where}: {type(stmt).__name__}(...) must be placed inside a Switch"
            )
        case On() if not in_wait:
            raise DefinitionError(f"{where}: On('{stmt.event}') must be placed inside a Wait")
        case Break() | Continue() if not in_loop:
            raise DefinitionError(f"{where}: {type(stmt).__name__}() outside a For")
        case For():
            _check(stmt.body, workflow, names, threads, in_loop=True, in_wait=False, depth=inner)
            return
        case Section() | If() | On() | WaitFor() | Step() | Break() | Continue():
            pass
    children: Iterator[object] = stmt.children()  # whatever the author put there
    for child in children:
        _check(child, workflow, names, threads, in_loop=in_loop, in_wait=False, depth=inner)


def _check_wait(wait: Wait, where: str) -> None:
    if not wait.cases:
        raise DefinitionError(f"{where}: wait '{wait.name}' has no On(...) cases")
    events: set[str] = set()
    cases: tuple[object, ...] = wait.cases  # whatever the author put there
    for case in cases:
        if not isinstance(case, On):
            raise DefinitionError(f"{where}: wait '{wait.name}' may hold only On(...) cases")
        if not isinstance(case.event, str) or not case.event.strip():
            raise DefinitionError(f"{where}: wait '{wait.name}' has a case without an event name")
        if case.event in events:
            raise DefinitionError(
                f"{where}: event '{case.event}' appears twice in wait '{wait.name}'"
            )
        events.add(case.event)
        if not isinstance(case.handler, Handler):
            raise DefinitionError(
                f"{where}: event '{case.event}' of wait '{wait.name}' needs a Handler, "
                f"not {type(case.handler).__name__}"
            )
