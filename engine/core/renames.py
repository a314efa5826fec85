"""Declared renames: moving an instance parked on an old name to the statement that now has it.

A thread's position is a statement's name, so renaming a statement would strand every instance
standing on it. `renamed_from=["old", ...]` on a statement (or on an `On` case, for event names)
declares the move; `carry_over` applies it to an instance's state when the instance is loaded
for a transition, and the history says so. Pure: it rewrites plain state, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from signoff.engine.core.enums import HistoryKind, ThreadStatus
from signoff.engine.core.loops import For
from signoff.engine.core.records import Record
from signoff.engine.core.state import InstanceState, ThreadState
from signoff.engine.core.steps import Step
from signoff.engine.core.threads import Go
from signoff.engine.core.tree import Statement, walk
from signoff.engine.core.waits import Wait, WaitFor
from signoff.engine.core.working import Working

NAMED = (Step, Wait, Go, WaitFor, For)
# threads whose position still matters: live ones, and failed ones an operator may retry
PARKED = (
    ThreadStatus.RUNNING,
    ThreadStatus.WAITING,
    ThreadStatus.BLOCKED,
    ThreadStatus.RETRYING,
    ThreadStatus.FAILED,
)


@dataclass(frozen=True, slots=True)
class Renames:
    """What a definition declares: old statement name -> current one, and per current wait,
    old event name -> current one. Old names that are still in use, or that lead to two
    places, are left out (validation refuses such a definition anyway)."""

    statements: dict[str, str] = field(default_factory=dict)
    events: dict[str, dict[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.statements or self.events)

    def statement(self, name: str | None) -> str | None:
        """The current name for `name`, when `name` is an old one."""
        return self.statements.get(name) if name is not None else None

    def event(self, wait: str | None, event: str) -> str | None:
        """The current name of `event` in the wait now called `wait`, when `event` is old."""
        return self.events.get(wait or "", {}).get(event)


def declared_renames(definition: Statement) -> Renames:
    """Collect every `renamed_from` in the definition."""
    return renames_among(walk(definition))


def renames_among(found: Iterable[Statement]) -> Renames:
    """`declared_renames` of the statements of a definition, walked already (in `walk`'s
    order)."""
    current: set[str] = set()
    statements: dict[str, str] = {}
    ambiguous: set[str] = set()
    events: dict[str, dict[str, str]] = {}
    for stmt in found:
        if not isinstance(stmt, NAMED):
            continue
        current.add(stmt.name)
        for old in stmt.renamed_from:
            if old in statements:
                ambiguous.add(old)
            statements[old] = stmt.name
        if isinstance(stmt, Wait):
            names = {case.event for case in stmt.cases}
            moved: dict[str, str] = {}
            for case in stmt.cases:
                for old in case.renamed_from:
                    if old not in names and old not in moved:
                        moved[old] = case.event
            if moved:
                events[stmt.name] = moved
    for old in ambiguous | (current & set(statements)):
        del statements[old]
    return Renames(statements, events)


@dataclass(frozen=True, slots=True)
class Move:
    """One name of one thread moved: its position, its Go statement, or an open case's event."""

    thread: str
    what: str  # "statement", "thread" (the Go it runs) or "event"
    old: str
    new: str

    @property
    def message(self) -> str:
        return f"moved from '{self.old}' to '{self.new}' by a deployment"


def moves(state: InstanceState, renames: Renames) -> list[Move]:
    """Rewrite the old names in `state` to current ones, in place; returns what moved.

    Covers each parked thread's position (`at`), the Go statement it runs (`root`), the event
    it resumes after (`event`) and its open cases' events; owed teardowns, kept events and the
    record of decided waits follow, so they still find their handler."""
    if not renames:
        return []
    done: list[Move] = []
    for thread in state.threads.values():
        if thread.status in PARKED:
            done.extend(_move_thread(thread, renames))
    for teardown in state.teardowns:
        new_wait = renames.statement(teardown.wait) or teardown.wait
        teardown.wait = new_wait
        teardown.event = renames.event(new_wait, teardown.event) or teardown.event
    for decided in state.decided:
        new_wait = renames.statement(decided.wait) or decided.wait
        decided.wait = new_wait
        decided.event = renames.event(new_wait, decided.event) or decided.event
        decided.events = [renames.event(new_wait, e) or e for e in decided.events]
    anywhere = _events_anywhere(renames)
    for pending in state.inbox:
        pending.event = anywhere.get(pending.event, pending.event)
    return done


def _move_thread(thread: ThreadState, renames: Renames) -> list[Move]:
    done: list[Move] = []
    root = renames.statement(thread.root)
    if thread.root is not None and root is not None:
        done.append(Move(thread.id, "thread", thread.root, root))
        if thread.name == thread.root:
            thread.name = root
        thread.root = root
    at = renames.statement(thread.at)
    if thread.at is not None and at is not None:
        done.append(Move(thread.id, "statement", thread.at, at))
        thread.at = at
    if thread.event is not None:
        event = renames.event(thread.at, thread.event)
        if event is not None:
            done.append(Move(thread.id, "event", thread.event, event))
            thread.event = event
    for case in thread.cases:
        event = renames.event(thread.at, case.event)
        if event is not None:
            done.append(Move(thread.id, "event", case.event, event))
            case.event = event
    return done


def _events_anywhere(renames: Renames) -> dict[str, str]:
    """Old event -> new event, where every wait that renames it agrees (for kept events,
    which know their event but not their wait)."""
    found: dict[str, str] = {}
    clash: set[str] = set()
    for moved in renames.events.values():
        for old, new in moved.items():
            if found.setdefault(old, new) != new:
                clash.add(old)
    return {old: new for old, new in found.items() if old not in clash}


def names_in(state: InstanceState) -> bool:
    """Whether the state holds any name a rename could concern (a fresh instance holds none)."""
    return bool(
        state.teardowns
        or state.inbox
        or any(t.at or t.root for t in state.threads.values() if t.status in PARKED)
    )


def carry_over(work: Working, now: datetime) -> list[Move]:
    """Move an instance loaded for a transition onto the names its definition declares, and
    note each move in its history (committed with the transition). An instance whose
    definition cannot be built is left as it is: its transition reports that properly."""
    if work.cls is None or work.terminal or not names_in(work.state):
        return []
    try:
        renames = renames_among(work.statements())  # the walk the transition reads again
    except Exception:  # the data no longer fits the model, or definition() raised
        return []
    done = moves(work.state, renames)
    for move in done:
        work.note(
            Record(
                now,
                HistoryKind.MOVED,
                thread=move.thread,
                name=move.new,
                message=move.message,
                detail={"from": move.old, "to": move.new, "what": move.what},
            )
        )
    if done:
        work.waits_dirty = True
    return done
