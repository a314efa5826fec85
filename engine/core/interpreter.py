"""Resumes one thread from its named position in a freshly built tree.

Pure: it walks statements and reports what the thread must do next; running steps, storing
state and calling handlers belong to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, cast

from signoff.engine.core.steps import RunStep
from signoff.engine.core.threads import Go
from signoff.engine.core.tree import Cursor, Entry, LoopSignal, Returned, Spawn, Statement, walk
from signoff.engine.core.waits import Block, BlockUntil
from signoff.engine.errors import StatementMissing

Next = RunStep | Block | BlockUntil | Returned | None  # None: the body ran to its end


class Position(NamedTuple):
    """Where a thread stands: a statement's name and how to enter it. Immutable, and a tuple
    because one is made for every step (a frozen dataclass costs four times as much)."""

    at: str | None = None
    entry: Entry = Entry.START
    event: str | None = None


@dataclass(slots=True)
class Advance:
    next: Next
    spawned: list[Spawn] = field(default_factory=list)
    statements: int = 0


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
    at, entry, event = position
    cur = Cursor(at if entry is not Entry.START else None, entry, event)
    signal = body.resume(cur)
    if cur.seeking:
        raise StatementMissing(f"statement '{at}' no longer exists")
    if isinstance(signal, LoopSignal):  # validation rejects this; guard against unvalidated trees
        raise StatementMissing("Break or Continue outside a For")
    # what else a walk stops with: RunStep, Block, BlockUntil, Returned
    return Advance(cast(Next, signal), cur.spawned, cur.visited)
