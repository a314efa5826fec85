"""`Wait(name, On(event, handler, ...), ...)` and `WaitFor(name, cond, then=None)`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from signoff.engine.core.handlers import Handler
from signoff.engine.core.steps import Retry, RunStep, Step
from signoff.engine.core.tree import (
    Condition,
    Cursor,
    Entry,
    Section,
    Signal,
    Statement,
    enters,
    evaluate,
    old_names,
)
from signoff.engine.errors import StatementMissing


@dataclass(slots=True)
class On(Statement):
    """One case of a Wait: `event` accepted by `handler`, then `body` runs. `renamed_from`
    lists the event's earlier names: open waits for them move to this case."""

    event: str
    handler: Handler
    body: Section
    renamed_from: tuple[str, ...]

    def __init__(
        self,
        event: str,
        handler: Handler,
        *body: Statement,
        renamed_from: Iterable[str] = (),
    ) -> None:
        self.event = event
        self.handler = handler
        self.body = Section(*body)
        self.renamed_from = old_names(renamed_from)

    def resume(self, cur: Cursor) -> Signal | None:
        raise TypeError(f"On({self.event!r}) must be placed inside a Wait")

    def children(self) -> Iterator[Statement]:
        yield self.body


@dataclass(slots=True)
class Wait(Statement):
    """Blocks the thread until one of its cases' events arrives; the first one wins."""

    name: str
    cases: tuple[On, ...]
    renamed_from: tuple[str, ...]

    def __init__(self, name: str, *cases: On, renamed_from: Iterable[str] = ()) -> None:
        self.name = name
        self.cases = cases
        self.renamed_from = old_names(renamed_from)

    def case(self, event: str) -> On | None:
        for case in self.cases:
            if case.event == event:
                return case
        return None

    def resume(self, cur: Cursor) -> Signal | None:
        if not cur.seeking:
            cur.tick()
            return Block(self)
        if cur.target == self.name:
            cur.found()
            if cur.entry is Entry.AFTER:
                return None
            if cur.entry is Entry.EVENT:
                case = self.case(cur.event or "")
                if case is None:
                    raise StatementMissing(f"event '{cur.event}' of wait '{self.name}'")
                return case.body.resume(cur)
            return Block(self)
        for case in self.cases:
            inside, signal = enters(cur, case.body)
            if inside:
                return signal
        return None

    def children(self) -> Iterator[Statement]:
        return iter(self.cases)


@dataclass(slots=True)
class WaitFor(Statement):
    """Blocks the thread until `cond` holds, made true by another thread.

    `then` (a callable, sync or async, the seed's WaitFor handler) runs once, in the
    transition that finds `cond` true, before the thread moves on. It is run as a step named
    after the WaitFor: committed once, and when it raises it is retried by `retry` (a step's
    policy) and then fails the thread. A retry runs `then` again without asking `cond`: the
    condition held when it was found true."""

    name: str
    cond: Condition
    then: Callable[[], Any] | None
    renamed_from: tuple[str, ...]
    step: Step | None  # `then` as the step it runs as

    def __init__(
        self,
        name: str,
        cond: Condition,
        then: Callable[[], Any] | None = None,
        *,
        retry: Retry | int | None = None,
        renamed_from: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.cond = cond
        self.then = then
        self.renamed_from = old_names(renamed_from)
        self.step = None if then is None else Step(name, then, retry=retry)

    def resume(self, cur: Cursor) -> Signal | None:
        if cur.seeking:
            if cur.target != self.name:
                return None
            cur.found()
            if cur.entry is Entry.AFTER:
                return None
            if cur.entry is Entry.EVENT:  # found true before; `then` has yet to succeed
                return None if self.step is None else RunStep(self.step, Entry.EVENT)
        else:
            cur.tick()
        if not evaluate(self.cond):
            return BlockUntil(self)
        return None if self.step is None else RunStep(self.step, Entry.EVENT)


@dataclass(slots=True, init=False)
class Block(Signal):
    wait: Wait

    def __init__(self, wait: Wait) -> None:
        self.wait = wait


@dataclass(slots=True, init=False)
class BlockUntil(Signal):
    wait_for: WaitFor

    def __init__(self, wait_for: WaitFor) -> None:
        self.wait_for = wait_for
