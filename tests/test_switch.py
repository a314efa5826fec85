"""Switch(Case(cond, ...), ..., Default(...)): the first case whose condition holds runs; a
position inside any case resumes by name; the instance page's tree, `check` and `renamed_from`
know it, and a malformed Switch is refused when the workflow is registered."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from signoff.engine import (
    Case,
    Default,
    DefinitionError,
    Engine,
    Input,
    On,
    Return,
    S,
    Step,
    Switch,
    Wait,
    Workflow,
    outline,
)

from tests.conftest import Clock


class Grade(Workflow):
    score: int = 0
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Switch(
                Case(self.score >= 90, Step("excellent", self.note("A"))),
                Case(lambda: self.score >= 50, Step("passed", self.note("P"))),
                Default(Step("failed", self.note("F"))),
            ),
            Step("done", self.note(".")),
        )

    def note(self, mark: str):  # type: ignore[no-untyped-def]
        def act() -> None:
            self.trace.append(mark)

        return act


@pytest.mark.parametrize(
    ("score", "trace"), [(95, "A."), (90, "A."), (70, "P."), (50, "P."), (10, "F.")]
)
def test_the_first_case_that_holds_runs_and_no_other(
    sqlite_url: str, score: int, trace: str
) -> None:
    engine = Engine(sqlite_url, [Grade])
    got = engine.get(engine.start(Grade, {"score": score}))
    assert got.status == "completed"
    assert "".join(got.data["trace"]) == trace


def test_without_default_no_case_holding_runs_nothing_and_conditions_are_asked_in_order(
    sqlite_url: str,
) -> None:
    asked: list[str] = []

    class Pick(Workflow):
        n: int = 0
        trace: list[str] = []

        def definition(self) -> S:
            def cond(name: str, holds: bool):  # type: ignore[no-untyped-def]
                def ask() -> bool:
                    asked.append(name)
                    return holds

                return ask

            return S(
                Switch(
                    Case(cond("one", self.n == 1), Step("one", lambda: self.trace.append("1"))),
                    Case(cond("two", self.n == 2), Step("two", lambda: self.trace.append("2"))),
                    Case(cond("three", self.n == 3), Step("three", lambda: self.trace.append("3"))),
                ),
                Return("+".join(self.trace)),
            )

    engine = Engine(sqlite_url, [Pick])
    assert engine.get(engine.start(Pick, {"n": 7})).result == ""
    assert asked == ["one", "two", "three"]
    asked.clear()
    assert engine.get(engine.start(Pick, {"n": 2})).result == "2"
    assert asked == ["one", "two"]  # asked until one holds, not beyond


class Amount(BaseModel):
    n: int


class Inside(Workflow):
    """The case taken is kept while the thread stands inside it, whatever the data says now."""

    route: str = "left"
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Switch(
                Case(
                    self.route == "left",
                    Step("flip", self.flip),
                    Wait("hold", On("go", Input(Amount, self.got))),
                    Step("left end", lambda: self.trace.append("left end")),
                ),
                Case(self.route == "right", Step("right", lambda: self.trace.append("right"))),
                Default(
                    Wait("other hold", On("go", Input(Amount, self.got))),
                    Step("other end", lambda: self.trace.append("other end")),
                ),
            ),
            Return("+".join(self.trace)),
        )

    def flip(self) -> None:
        self.route = "right"  # the case it stands in no longer holds
        self.trace.append("flip")

    def got(self, value: Amount) -> None:
        self.trace.append(f"got {value.n}")


def test_the_case_taken_is_kept_when_its_condition_changes_while_inside_it(
    any_url: str, clock: Clock
) -> None:
    engine = Engine(any_url, [Inside], clock=clock)
    iid = engine.start(Inside)
    engine.close()
    engine = Engine(any_url, [Inside], clock=clock)  # a fresh process finds it by name
    assert engine.get(iid).threads[0].step == "hold"
    got = engine.send(iid, "go", {"n": 1})
    assert got.result == "flip+got 1+left end"

    other = engine.start(Inside, {"route": "up"})
    assert engine.get(other).threads[0].step == "other hold"
    assert engine.send(other, "go", {"n": 2}).result == "got 2+other end"
    engine.close()


def test_the_instance_page_tree_draws_the_switch_and_its_cases() -> None:
    tree = outline(Inside.model_construct().definition())
    switch = tree["children"][0]
    assert switch["kind"] == "Switch"
    assert [c["kind"] for c in switch["children"]] == ["Case", "Case", "Default"]
    assert [n["name"] for n in switch["children"][0]["children"]] == ["flip", "hold", "left end"]
    assert [n["name"] for n in switch["children"][2]["children"]] == ["other hold", "other end"]


def nothing(_: Any = None) -> None:
    pass


def made(*stmts: Any) -> type[Workflow]:
    class Made(Workflow):
        def definition(self) -> Any:
            return S(*stmts)

    return Made


@pytest.mark.parametrize(
    ("stmts", "message"),
    [
        ((Case(True, Step("a", nothing)),), r"Case\(\.\.\.\) must be placed inside a Switch"),
        ((Default(Step("a", nothing)),), r"Default\(\.\.\.\) must be placed inside a Switch"),
        ((Switch(),), "a Switch needs at least one Case"),
        (
            (Switch(Case(True, Step("a", nothing)), Default(Step("a", nothing))),),
            "the name 'a' is used twice",
        ),
        (
            (Step("a", nothing), Switch(Case(True, Step("b", nothing, renamed_from=["a"])))),
            "'b' is renamed_from 'a', but 'a' is still the name of a Step",
        ),
    ],
)
def test_a_malformed_switch_is_refused_at_registration(
    sqlite_url: str, stmts: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        Engine(sqlite_url, [made(*stmts)])


def test_a_switch_is_built_only_from_cases_with_default_last() -> None:
    with pytest.raises(ValueError, match=r"Default.*must be the last case"):
        Switch(Default(), Case(True))
    with pytest.raises(TypeError, match="Switch takes Case"):
        Switch(Step("a", nothing))  # type: ignore[arg-type]


class Routed(Workflow):
    kind: str = "big"
    log: str = ""

    def definition(self) -> Any:
        return S(
            Switch(
                Case(self.kind == "big", Wait("board", On("ok", Input(Amount, self.ok)))),
                Default(Wait("manager", On("ok", Input(Amount, self.ok)))),
            ),
            Return(self.log),
        )

    def ok(self, value: Amount) -> None:
        self.log += f"ok{value.n}"


class RoutedRenamed(Routed):
    workflow_name = "Routed"

    def definition(self) -> Any:
        return S(
            Switch(
                Case(
                    self.kind == "big",
                    Wait("board review", On("ok", Input(Amount, self.ok)), renamed_from=["board"]),
                ),
                Default(Wait("manager", On("ok", Input(Amount, self.ok)))),
            ),
            Return(self.log),
        )


class RoutedCareless(Routed):
    workflow_name = "Routed"

    def definition(self) -> Any:
        return S(
            Switch(
                Case(self.kind == "big", Wait("board review", On("ok", Input(Amount, self.ok)))),
                Default(Wait("manager", On("ok", Input(Amount, self.ok)))),
            ),
            Return(self.log),
        )


def test_check_and_renamed_from_see_positions_inside_a_case(any_url: str, clock: Clock) -> None:
    old = Engine(any_url, [Routed], clock=clock)
    old.start(Routed, id="big")
    old.start(Routed, {"kind": "small"}, id="small")
    old.close()

    careless_engine = Engine(any_url, [RoutedCareless], clock=clock)
    careless = careless_engine.check_deployment().as_json()
    careless_engine.close()
    assert not careless["ok"]
    assert [(s["kind"], s["name"], s["examples"]) for s in careless["stranded"]] == [
        ("statement", "board", ["big"])
    ]

    engine = Engine(any_url, [RoutedRenamed], clock=clock)
    report = engine.check_deployment().as_json()
    assert report["ok"]
    assert report["carried_instances"] == 1
    got = engine.send("big", "ok", {"n": 1})
    assert (got.status, got.result) == ("completed", "ok1")
    assert [h.message for h in engine.history("big") if h.kind == "moved"] == [
        "moved from 'board' to 'board review' by a deployment"
    ]
    assert engine.send("small", "ok", {"n": 2}).result == "ok2"
    engine.close()
