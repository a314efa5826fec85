"""`If(cond, ...).ElseIf(cond, ...).Else(...)`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from signoff.engine.core.tree import Condition, Cursor, Section, Signal, Statement, enters, evaluate


@dataclass(slots=True)
class If(Statement):
    """Runs the body of the first branch whose condition holds.

    When resuming, every branch is searched for the position, whatever the conditions say now:
    the thread took its branch when the data was as it was then.
    """

    branches: tuple[tuple[Condition, Section], ...]

    def __init__(self, cond: Condition, *body: Statement) -> None:
        self.branches = ((cond, Section(*body)),)

    def _extended(self, cond: Condition, body: tuple[Statement, ...]) -> If:
        if self.branches and self.branches[-1][0] is _ELSE:
            raise ValueError("If: nothing may follow .Else()")
        clone = object.__new__(If)
        object.__setattr__(clone, "branches", (*self.branches, (cond, Section(*body))))
        return clone

    def ElseIf(self, cond: Condition, *body: Statement) -> If:  # noqa: N802 - the DSL's name
        return self._extended(cond, body)

    def Else(self, *body: Statement) -> If:  # noqa: N802 - the DSL's name
        return self._extended(_ELSE, body)

    def resume(self, cur: Cursor) -> Signal | None:
        if cur.seeking:
            for _, body in self.branches:
                inside, signal = enters(cur, body)
                if inside:
                    return signal
            return None
        cur.tick()
        for cond, body in self.branches:
            if evaluate(cond):
                return body.resume(cur)
        return None

    def children(self) -> Iterator[Statement]:
        return (body for _, body in self.branches)


class _Else:
    """Marks the Else branch; always true."""

    def __call__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "Else"


_ELSE = _Else()
