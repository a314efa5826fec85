"""If / ElseIf / Else: conditions are bools read when the definition is built, or callables asked
when the walk reaches them, and the definition is rebuilt from the data after every step and
every handler."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from signoff.engine import Engine, If, Input, On, Return, S, Step, Wait, Workflow


class Grade(Workflow):
    score: int = 0
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            If(self.score >= 90, Step("excellent", self.note("A")))
            .ElseIf(lambda: self.score >= 50, Step("passed", self.note("P")))
            .Else(Step("failed", self.note("F"))),
            Step("done", self.note(".")),
        )

    def note(self, mark: str):  # type: ignore[no-untyped-def]
        def act() -> None:
            self.trace.append(mark)

        return act


@pytest.mark.parametrize(
    ("score", "trace"), [(95, "A."), (90, "A."), (70, "P."), (50, "P."), (10, "F.")]
)
def test_the_first_branch_that_holds_runs_and_no_other(
    sqlite_url: str, score: int, trace: str
) -> None:
    engine = Engine(sqlite_url, [Grade])
    got = engine.get(engine.start(Grade, {"score": score}))
    assert got.status == "completed"
    assert "".join(got.data["trace"]) == trace


class Counter(Workflow):
    """If(self.big) must see the data an earlier step just changed, not the start data."""

    n: int = 0
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Step("grow", self.grow),
            If(self.n > 10, Step("big", self.mark("big"))).Else(Step("small", self.mark("small"))),
            Wait("input", On("set", Input(Amount, self.set_n))),
            If(self.n > 10, Return(f"big {self.n}")),
            Return(f"small {self.n}"),
        )

    def grow(self) -> None:
        self.n += 10
        self.trace.append("grow")

    def mark(self, what: str):  # type: ignore[no-untyped-def]
        return lambda: self.trace.append(what)

    def set_n(self, value: Amount) -> None:
        self.n = value.n
        self.trace.append(f"set {value.n}")


class Amount(BaseModel):
    n: int


def test_conditions_see_data_changed_by_an_earlier_step_and_by_a_handler(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Counter])
    iid = engine.start(Counter, {"n": 5})
    assert engine.get(iid).data == {"n": 15, "trace": ["grow", "big"]}

    got = engine.send(iid, "set", {"n": 3})
    assert got.status == "completed"
    assert got.result == "small 3"
    assert got.data == {"n": 3, "trace": ["grow", "big", "set 3"]}


def test_the_branch_taken_is_kept_when_the_condition_changes_while_inside_it(
    sqlite_url: str,
) -> None:
    class Inside(Workflow):
        go_left: bool = True
        trace: list[str] = []

        def definition(self) -> S:
            return S(
                If(
                    self.go_left,
                    Step("flip", self.flip),
                    Wait("hold", On("go", Input(Amount, self.got))),
                    Step("left end", lambda: self.trace.append("left end")),
                ).Else(Step("right", lambda: self.trace.append("right"))),
                Return("+".join(self.trace)),
            )

        def flip(self) -> None:
            self.go_left = False  # the branch it stands in no longer "holds"
            self.trace.append("flip")

        def got(self, value: Amount) -> None:
            self.trace.append(f"got {value.n}")

    engine = Engine(sqlite_url, [Inside])
    iid = engine.start(Inside)
    got = engine.send(iid, "go", {"n": 1})
    assert got.result == "flip+got 1+left end"


def test_nested_ifs_and_callable_conditions_asked_at_the_moment_the_walk_reaches_them(
    sqlite_url: str,
) -> None:
    asked: list[str] = []

    class Nested(Workflow):
        a: bool = True
        b: bool = False
        trace: list[str] = []

        def definition(self) -> S:
            def cond_b() -> bool:
                asked.append("b")
                return self.b

            return S(
                If(
                    lambda: self.a,
                    Step("set b", self.set_b),
                    If(cond_b, Step("b is set", lambda: self.trace.append("b"))).Else(
                        Step("b unset", lambda: self.trace.append("!b"))
                    ),
                ),
            )

        def set_b(self) -> None:
            self.b = True
            self.trace.append("set")

    engine = Engine(sqlite_url, [Nested])
    got = engine.get(engine.start(Nested))
    assert got.data["trace"] == ["set", "b"]
    assert asked == ["b"]  # asked once, after "set b" had run


def test_else_must_come_last() -> None:
    with pytest.raises(ValueError, match=r"nothing may follow \.Else"):
        If(True).Else().ElseIf(False)
