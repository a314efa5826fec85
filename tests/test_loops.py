"""For loops with Break and Continue, loops that wait for events, and the runaway-loop guard."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from signoff.engine import (
    Break,
    Continue,
    Engine,
    For,
    If,
    Input,
    On,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    Workflow,
)

from tests.conftest import Clock


class Count(Workflow):
    """i runs 1..7: 3 is skipped (Continue), at 6 the loop breaks; nothing after them runs."""

    i: int = 0
    log: str = ""

    def definition(self) -> S:
        return S(
            For(
                "count",
                self.i < 100,
                Step("inc", self.inc),
                If(self.i == 3, Continue()),
                If(self.i == 6, Break()),
                Step("log", self.write),
            ),
            Step("end", self.end),
        )

    def inc(self) -> None:
        self.i += 1

    def write(self) -> None:
        self.log += str(self.i)

    def end(self) -> None:
        self.log += "!"


def test_break_and_continue_skip_the_rest_of_the_iteration(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Count])
    got = engine.get(engine.start(Count))
    assert got.status == "completed"
    assert got.data == {"i": 6, "log": "1245!"}


def test_a_loop_whose_condition_is_false_never_runs_its_body(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Count])
    got = engine.get(engine.start(Count, {"i": 100}))
    assert got.data == {"i": 100, "log": "!"}


class Approvals(Workflow):
    """Collect answers until "stop" is sent or three arrived; the seed's "lllllhaha" style."""

    answers: list[str] = []
    log: str = ""

    def definition(self) -> S:
        return S(
            For(
                "collect",
                lambda: len(self.answers) < 3,
                Step("prompt", self.prompt),
                Wait(
                    "answer",
                    On("say", Input(Say, self.say)),
                    On("stop", Input(Say, self.say), Break()),
                    On("skip", Input(Say, self.say), Continue(), Step("never", self.never)),
                    On("idle", Timeout(after=timedelta(hours=1)), Step("nudge", self.nudge)),
                ),
                Step("ack", self.ack),
            ),
            Return(self.log),
        )

    def prompt(self) -> None:
        self.log += "p"

    def say(self, value: Say) -> None:
        self.answers.append(value.text)
        self.log += value.text

    def ack(self) -> None:
        self.log += "k"

    def nudge(self) -> None:
        self.log += "z"

    def never(self) -> None:
        self.log += "NEVER"


class Say(BaseModel):
    text: str


def test_a_loop_with_a_wait_inside_carries_on_across_events_and_reloads(
    sqlite_url: str, clock: Clock
) -> None:
    engine = Engine(sqlite_url, [Approvals], clock=clock)
    iid = engine.start(Approvals)
    assert engine.get(iid).data["log"] == "p"
    engine.send(iid, "say", {"text": "a"})
    assert engine.get(iid).data["log"] == "pakp"

    engine.run_due(clock.advance(hours=1))  # the idle timer: nudge, ack, and round again
    assert engine.get(iid).data["log"] == "pakpzkp"

    fresh = Engine(sqlite_url, [Approvals], clock=clock)  # a restart between two events
    fresh.send(iid, "skip", {"text": "s"})
    assert fresh.get(iid).data["log"] == "pakpzkpsp"
    got = fresh.send(iid, "stop", {"text": "x"})
    assert got.status == "completed"
    assert got.result == "pakpzkpspx"
    assert got.data["answers"] == ["a", "s", "x"]


def test_the_loop_ends_when_its_callable_condition_turns_false(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Approvals])
    iid = engine.start(Approvals)
    for word in "abc":
        engine.send(iid, "say", {"text": word})
    got = engine.get(iid)
    assert got.status == "completed"
    assert got.result == "pakpbkpck"


def test_nested_loops_break_only_the_innermost(sqlite_url: str) -> None:
    class Grid(Workflow):
        row: int = 0
        col: int = 0
        log: str = ""

        def definition(self) -> S:
            return S(
                For(
                    "rows",
                    self.row < 3,
                    Step("next row", self.next_row),
                    For(
                        "cols",
                        True,
                        Step("next col", self.next_col),
                        If(self.col >= self.row, Break()),
                    ),
                    Step("newline", self.newline),
                ),
            )

        def next_row(self) -> None:
            self.row, self.col = self.row + 1, 0

        def next_col(self) -> None:
            self.col += 1
            self.log += f"{self.row}{self.col} "

        def newline(self) -> None:
            self.log += "| "

    engine = Engine(sqlite_url, [Grid])
    got = engine.get(engine.start(Grid))
    assert got.data["log"] == "11 | 21 22 | 31 32 33 | "


class Runaway(Workflow):
    """A loop whose body never blocks and never changes its condition."""

    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Step("before", lambda: self.trace.append("before")),
            For("forever", True, If(True, Continue())),
            Step("after", lambda: self.trace.append("after")),
        )


class OtherRunsOn(Workflow):
    def definition(self) -> S:
        return S(Return("fine"))


def test_a_runaway_loop_fails_the_instance_with_a_message_instead_of_hanging(
    sqlite_url: str,
) -> None:
    engine = Engine(sqlite_url, [Runaway, OtherRunsOn])
    iid = engine.start(Runaway)
    got = engine.get(iid)
    assert got.status == "failed"
    assert got.error is not None
    assert "10,000 statements without blocking" in got.error
    assert got.data == {"trace": ["before"]}
    # the engine is fine afterwards
    assert engine.get(engine.start(OtherRunsOn)).result == "fine"


def test_many_loop_iterations_with_steps_are_not_a_runaway(sqlite_url: str) -> None:
    class Long(Workflow):
        i: int = 0

        def definition(self) -> S:
            return S(For("many", self.i < 300, Step("inc", self.inc)), Return(self.i))

        def inc(self) -> None:
            self.i += 1

    engine = Engine(sqlite_url, [Long], synchronous="OFF")
    got = engine.get(engine.start(Long))
    assert (got.status, got.result) == ("completed", 300)


def test_an_endless_loop_of_steps_fails_too_instead_of_hanging_the_caller(sqlite_url: str) -> None:
    """Every step commits, but the call that started the transition must still return."""

    class Ticker(Workflow):
        ticks: int = 0

        def definition(self) -> S:
            return S(For("forever", True, Step("tick", self.tick)))

        def tick(self) -> None:
            self.ticks += 1

    engine = Engine(sqlite_url, [Ticker], synchronous="OFF")
    got = engine.get(engine.start(Ticker))
    assert got.status == "failed"
    assert got.error is not None and "10,000 statements without blocking" in got.error
    assert 1000 < got.data["ticks"] < 10_000
