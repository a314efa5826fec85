"""The statement tree's shared vocabulary: the base class, sections, the walk cursor and signals.

A thread's position is the *name* of a statement plus how to enter it, never an index into the
code. Resuming walks the freshly built tree looking for that name ("seeking"); once found, the
walk switches to running and every statement after it executes normally. That is what lets a
definition change while instances run, as in the Go seed's `stmt.go`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from types import FunctionType
from typing import Any, Final, Protocol

from signoff.engine.errors import RunawayLoop

MAX_STATEMENTS_PER_TRANSITION = 10_000

Condition = bool | Callable[[], Any]


def old_names(renamed_from: str | Iterable[str]) -> tuple[str, ...]:
    """`renamed_from` as a tuple; a lone string is one old name, not a sequence of letters."""
    if isinstance(renamed_from, str):
        return (renamed_from,)
    return tuple(renamed_from)


# Whether this module, and the statements and interpreter with it, run compiled (mypyc; see
# setup.py) or as pure Python: a compiled function is no Python function.
COMPILED: Final = not isinstance(old_names, FunctionType)


def evaluate(cond: Condition) -> bool:
    """A condition is a bool captured when the tree was built, or a callable asked now."""
    return bool(cond()) if callable(cond) else bool(cond)


class Entry(Enum):
    """How a thread re-enters the statement it is positioned at."""

    START = "start"  # from the beginning of the thread's body
    AT = "at"  # re-enter the statement itself: run the step, set the wait up again
    AFTER = "after"  # the statement finished: continue with what follows it
    EVENT = "event"  # a Wait's event arrived: run that case's body


# --- what a walk can stop with -------------------------------------------------------------


class Signal:
    """What a walk stops with. Each kind lives beside the statement that gives it (`RunStep`
    in steps, `Block` and `BlockUntil` in waits), so this module needs none of them.

    Signals are never changed after construction, but the ones made at every step are not
    frozen dataclasses and write their `__init__` out: a generated one runs as Python even
    in the compiled core (setup.py), and a frozen one costs twice as much."""

    __slots__ = ()


@dataclass(slots=True, init=False)
class Returned(Signal):
    value: Any
    error: str | None

    def __init__(self, value: Any = None, error: str | None = None) -> None:
        self.value = value
        self.error = error


@dataclass(frozen=True, slots=True)
class LoopSignal(Signal):
    """Break or Continue travelling up to the nearest For."""

    is_break: bool


BREAK = LoopSignal(is_break=True)
CONTINUE = LoopSignal(is_break=False)


class Spawn(Protocol):
    """What a walk records of a statement that starts a thread (`Go`)."""

    @property
    def name(self) -> str: ...

    @property
    def thread_id(self) -> str: ...


@dataclass(slots=True, init=False)
class Cursor:
    """The state of one walk over the tree."""

    target: str | None
    entry: Entry
    event: str | None
    spawned: list[Spawn]
    visited: int
    seeking: bool  # a plain attribute: every statement reads it

    def __init__(self, target: str | None, entry: Entry, event: str | None = None) -> None:
        # written out: one walk per step, and a generated __init__ with a default factory
        # and __post_init__ costs twice as much
        self.target, self.entry, self.event = target, entry, event
        self.spawned = []
        self.visited = 0
        self.seeking = target is not None

    def found(self) -> None:
        self.target = None
        self.seeking = False

    def tick(self) -> None:
        """Count a statement executed; an accidental infinite loop must not hang the process."""
        self.visited += 1
        if self.visited > MAX_STATEMENTS_PER_TRANSITION:
            raise RunawayLoop(runaway_message())


def runaway_message() -> str:
    return (
        f"ran {MAX_STATEMENTS_PER_TRANSITION:,} statements without blocking: "
        "is a For loop missing a wait, a Break or a change to its condition?"
    )


class Statement:
    """Every statement resumes from a cursor and lists its children; nothing more.

    Statements are never changed after construction, but they are not frozen dataclasses:
    the whole tree is rebuilt after every step, and freezing doubles what building it costs.
    """

    __slots__ = ()

    def resume(self, cur: Cursor) -> Signal | None:
        raise NotImplementedError

    def children(self) -> Iterator[Statement]:
        return iter(())


@dataclass(slots=True, init=False)
class Section(Statement):
    """`S(...)`: statements run one after another."""

    body: tuple[Statement, ...]

    def __init__(self, *body: Statement) -> None:
        self.body = body

    def resume(self, cur: Cursor) -> Signal | None:
        for stmt in self.body:
            signal = stmt.resume(cur)
            if signal is not None:
                return signal
        return None

    def children(self) -> Iterator[Statement]:
        return iter(self.body)


S = Section


def walk(stmt: Statement) -> Iterator[Statement]:
    """Every statement below `stmt`, depth first, including `stmt` itself."""
    yield stmt
    for child in stmt.children():
        yield from walk(child)


def enters(cur: Cursor, body: Statement) -> tuple[bool, Signal | None]:
    """Resume `body`; report whether the seek target lay inside it (or the walk was running)."""
    was_seeking = cur.seeking
    signal = body.resume(cur)
    if was_seeking and cur.seeking:
        return False, None
    return True, signal
