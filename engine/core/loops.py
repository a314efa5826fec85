"""`For(name, cond, ...)` with `Break()` and `Continue()`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from signoff.engine.core.tree import (
    BREAK,
    CONTINUE,
    Condition,
    Cursor,
    LoopSignal,
    Section,
    Signal,
    Statement,
    enters,
    evaluate,
    old_names,
)


@dataclass(slots=True)
class For(Statement):
    """Runs its body while `cond` holds. A bool condition is the one the latest rebuild saw,
    so a loop over data advances only when a step changes that data."""

    name: str
    cond: Condition
    body: Section
    renamed_from: tuple[str, ...]

    def __init__(
        self, name: str, cond: Condition, *body: Statement, renamed_from: Iterable[str] = ()
    ) -> None:
        self.name = name
        self.cond = cond
        self.body = Section(*body)
        self.renamed_from = old_names(renamed_from)

    def resume(self, cur: Cursor) -> Signal | None:
        if cur.seeking:
            inside, signal = enters(cur, self.body)
            if not inside:
                return None
            if signal is BREAK:
                return None
            if signal is not None and signal is not CONTINUE:
                return signal
        else:
            cur.tick()
        while evaluate(self.cond):
            cur.tick()
            signal = self.body.resume(cur)
            if signal is BREAK:
                return None
            if signal is not None and signal is not CONTINUE:
                return signal
        return None

    def children(self) -> Iterator[Statement]:
        yield self.body


@dataclass(slots=True)
class Break(Statement):
    """Leaves the innermost For; nothing after it in the iteration runs."""

    def resume(self, cur: Cursor) -> LoopSignal | None:
        if cur.seeking:
            return None
        cur.tick()
        return BREAK


@dataclass(slots=True)
class Continue(Statement):
    """Starts the innermost For's next iteration; nothing after it in this one runs."""

    def resume(self, cur: Cursor) -> LoopSignal | None:
        if cur.seeking:
            return None
        cur.tick()
        return CONTINUE
