"""Resumes one thread from its named position in a freshly built tree.

Pure: it walks statements and reports what the thread must do next; running steps, storing
state and calling handlers belong to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from signoff.engine.core.steps import RunStep
from signoff.engine.core.threads import Go
from signoff.engine.core.tree import Cursor, Entry, LoopSignal, Returned, Spawn, Statement, walk
from signoff.engine.core.waits import Block, BlockUntil
from signoff.engine.errors import StatementMissing

Next = RunStep | Block | BlockUntil | Returned | None  # None: the body ran to its end


@dataclass(slots=True, init=False)
class Position:
    """Where a thread stands: a statement's name and how to enter it. Never changed after
    construction; one is made for every step, so not frozen, and its `__init__` written out
    (a NamedTuple's or a frozen dataclass's costs two to four times as much, and a compiled
    class is cheapest to make)."""

    at: str | None
    entry: Entry
    event: str | None

    def __init__(
        self, at: str | None = None, entry: Entry = Entry.START, event: str | None = None
    ) -> None:
        self.at = at
        self.entry = entry
        self.event = event


@dataclass(slots=True, init=False)
class Advance:
    """What walking a thread found: what it must do next, the threads it started on the way
    and how many statements it ran."""

    next: Next
    spawned: list[Spawn]
    statements: int

    def __init__(self, next: Next, spawned: list[Spawn], statements: int) -> None:
        self.next = next
        self.spawned = spawned
        self.statements = statements


def thread_body(definition: Statement, root: str | None) -> Statement:
    """The body a thread runs: the whole definition for main, a Go's body otherwise."""
    if root is None:
        return definition
    for stmt in walk(definition):
        if isinstance(stmt, Go) and stmt.name == root:
            return stmt.body
    raise StatementMissing(f"the thread's Go statement '{root}' no longer exists")


def advance(body: Statement, position: Position) -> Advance:
    """Walk `body` from `position` until the thread must do something or has ended."""
    at, entry = position.at, position.entry
    cur = Cursor(at if entry is not Entry.START else None, entry, position.event)
    signal = body.resume(cur)
    if cur.seeking:
        raise StatementMissing(f"statement '{at}' no longer exists")
    if isinstance(signal, LoopSignal):  # validation rejects this; guard against unvalidated trees
        raise StatementMissing("Break or Continue outside a For")
    # what else a walk stops with: RunStep, Block, BlockUntil, Returned
    return Advance(cast(Next, signal), cur.spawned, cur.visited)
