"""`If(cond, ...).ElseIf(cond, ...).Else(...)` and `Switch(Case(cond, ...), ..., Default(...))`."""

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
        clone = If(cond, *body)  # the new branch, then the branches before it put first
        clone.branches = (*self.branches, *clone.branches)
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
        return iter([body for _, body in self.branches])


@dataclass(slots=True)
class Case(Statement):
    """One case of a Switch: `body` runs when `cond` holds and no case before it did."""

    cond: Condition
    body: Section

    def __init__(self, cond: Condition, *body: Statement) -> None:
        self.cond = cond
        self.body = Section(*body)

    def resume(self, cur: Cursor) -> Signal | None:
        raise TypeError("Case(...) must be placed inside a Switch")

    def children(self) -> Iterator[Statement]:
        yield self.body


@dataclass(slots=True, init=False)
class Default(Case):
    """The Switch's last case, taken when no Case before it holds."""

    def __init__(self, *body: Statement) -> None:
        self.cond = True
        self.body = Section(*body)

    def resume(self, cur: Cursor) -> Signal | None:
        raise TypeError("Default(...) must be placed inside a Switch")


@dataclass(slots=True)
class Switch(Statement):
    """`Switch(Case(cond, ...), ..., Default(...))`: runs the body of the first case whose
    condition holds (the seed's `Switch`). As with If, resuming searches every case for the
    position whatever the conditions say now: the thread took its case when the data was as it
    was then. Conditions are asked in order and only until one holds."""

    cases: tuple[Case, ...]

    def __init__(self, *cases: Case) -> None:
        given: tuple[object, ...] = cases  # each is checked here, whatever it is
        for index, case in enumerate(given):
            if not isinstance(case, Case):
                raise TypeError(
                    f"Switch takes Case(...) and Default(...), not {type(case).__name__}"
                )
            if isinstance(case, Default) and index != len(cases) - 1:
                raise ValueError("Switch: Default(...) must be the last case")
        self.cases = cases

    def resume(self, cur: Cursor) -> Signal | None:
        if cur.seeking:
            for case in self.cases:
                inside, signal = enters(cur, case.body)
                if inside:
                    return signal
            return None
        cur.tick()
        for case in self.cases:
            if evaluate(case.cond):
                return case.body.resume(cur)
        return None

    def children(self) -> Iterator[Statement]:
        return iter(self.cases)


class _Else:
    """Marks the Else branch; always true."""

    def __call__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "Else"


_ELSE = _Else()
