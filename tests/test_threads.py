"""Go starts parallel threads; Return ends a thread, or on the main thread the instance; when
main returns, the other threads stop and their waits are torn down."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from signoff.engine import Engine, Go, Handler, Input, On, Return, S, Step, Wait, WaitInfo, Workflow

TORN: list[str] = []


class Recorder(Handler):
    def __init__(self, label: str) -> None:
        self.label = label

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        TORN.append(f"{wait.thread}/{wait.wait}/{wait.event} handled={handled}")


class Note(BaseModel):
    text: str = ""


@pytest.fixture(autouse=True)
def _fresh() -> None:
    TORN.clear()


class Team(Workflow):
    log: str = ""

    def definition(self) -> S:
        return S(
            Step("l1", self.w("l")),
            Go(
                "helper",
                S(
                    Step("h1", self.w("h")),
                    Wait("helper waits", On("poke", Input(Note, self.got("a")))),
                    Step("h2", self.w("h")),
                ),
                id="g1",
            ),
            Go("other", S(Step("o1", self.w("o")))),
            Step("l2", self.w("l")),
            Wait("main waits", On("finish", Input(Note, self.got("f")))),
            Step("l3", self.w("l")),
        )

    def w(self, letter: str):  # type: ignore[no-untyped-def]
        def act() -> None:
            self.log += letter

        return act

    def got(self, letter: str):  # type: ignore[no-untyped-def]
        def act(note: Note) -> None:
            self.log += letter + note.text

        return act


def test_go_threads_run_in_parallel_and_are_known_by_id_or_name(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Team])
    iid = engine.start(Team)
    got = engine.get(iid)
    # main runs until it blocks, then the threads it started
    assert got.data["log"] == "llho"
    assert {t.id: (t.name, t.status, t.step) for t in got.threads} == {
        "main": ("main", "waiting", "main waits"),
        "g1": ("helper", "waiting", "helper waits"),
        "other": ("other", "completed", "o1"),
    }

    got = engine.send(iid, "poke", {"text": "!"})
    assert got.data["log"] == "llhoa!h"
    assert got.thread("g1").status == "completed"
    assert got.status == "waiting"

    got = engine.send(iid, "finish", {})
    assert got.data["log"] == "llhoa!hfl"
    assert got.status == "completed"
    started = [(h.thread, h.name) for h in engine.history(iid) if h.kind == "thread started"]
    assert started == [("g1", "helper"), ("other", "other")]


def test_when_main_returns_the_other_threads_stop_and_their_waits_are_torn_down(
    sqlite_url: str,
) -> None:
    class Early(Workflow):
        log: str = ""

        def definition(self) -> S:
            return S(
                Go(
                    "reminders",
                    S(Wait("remind", On("tick", Recorder("tick")), On("tock", Recorder("tock")))),
                ),
                Go(
                    "audit",
                    S(Wait("audit wait", On("done", Recorder("done"))), Step("never", self.never)),
                ),
                Wait("approve", On("ok", Recorder("ok"))),
                Return("finished"),
            )

        def never(self) -> None:
            self.log += "never"

    engine = Engine(sqlite_url, [Early])
    iid = engine.start(Early)
    assert len(engine.get(iid).waits) == 4
    got = engine.send(iid, "ok", {})
    assert (got.status, got.result) == ("completed", "finished")
    assert {t.id: t.status for t in got.threads} == {
        "main": "completed",
        "reminders": "stopped",
        "audit": "stopped",
    }
    assert got.waits == []
    assert sorted(TORN) == [
        "audit/audit wait/done handled=False",
        "main/approve/ok handled=True",
        "reminders/remind/tick handled=False",
        "reminders/remind/tock handled=False",
    ]
    assert got.data["log"] == ""
    assert engine.list(status="waiting") == []


@pytest.mark.parametrize(
    ("ret", "result", "error"),
    [
        (Return(), None, None),
        (Return(42), 42, None),
        (Return({"total": 3, "items": ["a"]}), {"total": 3, "items": ["a"]}, None),
        (Return(error="not approved: over budget"), None, "not approved: over budget"),
        (Return(PermissionError("over budget")), None, "PermissionError: over budget"),
    ],
)
def test_return_ends_the_instance_completed_with_a_result_or_an_error(
    sqlite_url: str, ret: Return, result: Any, error: str | None
) -> None:
    class Ends(Workflow):
        log: str = ""

        def definition(self) -> S:
            return S(ret, Step("after", self.after))

        def after(self) -> None:
            self.log += "after"

    engine = Engine(sqlite_url, [Ends])
    got = engine.get(engine.start(Ends))
    assert (got.status, got.result, got.error, got.data) == (
        "completed",
        result,
        error,
        {"log": ""},
    )


def test_running_off_the_end_of_main_completes_with_no_result(sqlite_url: str) -> None:
    class Plain(Workflow):
        def definition(self) -> S:
            return S(Step("only", lambda: None))

    engine = Engine(sqlite_url, [Plain])
    got = engine.get(engine.start(Plain))
    assert (got.status, got.result, got.error) == ("completed", None, None)


def test_return_in_a_go_thread_ends_only_that_thread(sqlite_url: str) -> None:
    class Side(Workflow):
        log: str = ""

        def definition(self) -> S:
            return S(
                Go(
                    "side",
                    S(
                        Step("s1", self.w("s")),
                        Return(error="side gave up"),
                        Step("s2", self.w("X")),
                    ),
                ),
                Wait("w", On("go", Input(Note, lambda n: None))),
                Step("m", self.w("m")),
                Return(self.log),
            )

        def w(self, letter: str):  # type: ignore[no-untyped-def]
            def act() -> None:
                self.log += letter

            return act

    engine = Engine(sqlite_url, [Side])
    iid = engine.start(Side)
    got = engine.get(iid)
    assert (got.status, got.thread("side").status) == ("waiting", "completed")
    got = engine.send(iid, "go", {})
    assert (got.status, got.result, got.error) == ("completed", "sm", None)


def test_a_result_that_cannot_be_stored_fails_the_instance_with_a_message(sqlite_url: str) -> None:
    class Bad(Workflow):
        def definition(self) -> S:
            return S(Return(object()))

    engine = Engine(sqlite_url, [Bad])
    got = engine.get(engine.start(Bad))
    assert got.status == "failed"
    assert got.error is not None and "cannot be stored as JSON" in got.error
