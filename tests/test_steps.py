"""Steps: sync and async actions, retries with backoff, and data that only changes when a step
succeeds."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from signoff.engine import Engine, Retry, Return, S, Step, Workflow

from tests.conftest import Clock


class Sequence(Workflow):
    """Three steps, one of them async: the trace shows they ran in order, once each."""

    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Step("first", self.first),
            Step("second", self.second),
            Step("third", self.third),
            Return("+".join(self.trace)),
        )

    def first(self) -> None:
        self.trace.append("1")

    async def second(self) -> None:
        await asyncio.sleep(0)
        self.trace.append("2")

    def third(self) -> None:
        self.trace.append("3")


def test_sync_and_async_steps_run_in_order_and_the_main_return_completes(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Sequence])
    iid = engine.start(Sequence)

    got = engine.get(iid)
    assert got.status == "completed"
    assert got.data == {"trace": ["1", "2", "3"]}
    assert got.result == "1+2+3"
    assert got.error is None
    assert [(h.kind, h.name) for h in engine.history(iid)] == [
        ("started", "Sequence"),
        ("step", "first"),
        ("step", "second"),
        ("step", "third"),
        ("completed", None),
    ]


def test_an_async_step_runs_even_when_the_caller_is_inside_an_event_loop(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Sequence])

    async def from_async_code() -> str:
        return engine.start(Sequence)

    iid = asyncio.run(from_async_code())
    assert engine.get(iid).data == {"trace": ["1", "2", "3"]}


# --- failures and retries ---------------------------------------------------------------------

FAILURES: dict[str, int] = {}  # how many more times each instance's flaky step fails
ATTEMPTS: list[str] = []  # every call of the flaky step, across engines


class Flaky(Workflow):
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Step("before", self.before),
            Step(
                "flaky",
                self.flaky,
                retry=Retry(attempts=3, backoff=timedelta(seconds=10), factor=3),
            ),
            Step("after", self.after),
        )

    def before(self) -> None:
        self.trace.append("before")

    def flaky(self) -> None:
        ATTEMPTS.append("flaky")
        self.trace.append("flaky")  # must vanish when the step raises
        if FAILURES.get("left", 0) > 0:
            FAILURES["left"] -= 1
            raise ConnectionError(f"remote down ({FAILURES['left']} more)")

    def after(self) -> None:
        self.trace.append("after")


@pytest.fixture
def flaky(sqlite_url: str, clock: Clock) -> Engine:
    FAILURES.clear()
    ATTEMPTS.clear()
    return Engine(sqlite_url, [Flaky], clock=clock, operators=["ops"])


def test_a_failing_step_is_retried_with_backoff_and_then_succeeds(
    flaky: Engine, clock: Clock
) -> None:
    FAILURES["left"] = 2
    iid = flaky.start(Flaky)

    got = flaky.get(iid)
    main = got.thread("main")
    assert (got.status, main.status, main.step) == ("running", "retrying", "flaky")
    assert main.attempts == 1
    assert main.retry_at == clock.now + timedelta(seconds=10)
    assert got.data == {"trace": ["before"]}  # the failed attempt changed nothing

    assert flaky.run_due(clock.advance(seconds=9)) == 0  # not yet
    assert ATTEMPTS == ["flaky"]
    assert flaky.run_due(clock.advance(seconds=1)) == 1
    assert ATTEMPTS == ["flaky", "flaky"]
    assert flaky.get(iid).thread("main").retry_at == clock.now + timedelta(seconds=30)  # 10 * 3

    assert flaky.run_due(clock.advance(seconds=29)) == 0
    assert flaky.run_due(clock.advance(seconds=1)) == 1

    got = flaky.get(iid)
    assert got.status == "completed"
    assert got.data == {"trace": ["before", "flaky", "after"]}
    assert ATTEMPTS == ["flaky", "flaky", "flaky"]
    failed = [h for h in flaky.history(iid) if h.kind == "step failed"]
    assert [(h.name, h.message, h.detail and h.detail["attempt"]) for h in failed] == [
        ("flaky", "ConnectionError: remote down (1 more)", 1),
        ("flaky", "ConnectionError: remote down (0 more)", 2),
    ]
    for h in failed:
        assert h.detail is not None
        assert "Traceback (most recent call last)" in h.detail["traceback"]
        assert "in flaky" in h.detail["traceback"]
        assert "ConnectionError" in h.detail["traceback"]
    steps = [
        (h.name, h.detail and h.detail["attempt"]) for h in flaky.history(iid) if h.kind == "step"
    ]
    assert steps == [("before", 1), ("flaky", 3), ("after", 1)]


def test_after_the_last_attempt_the_instance_fails_and_retry_reruns_just_that_step(
    flaky: Engine, clock: Clock
) -> None:
    FAILURES["left"] = 3
    iid = flaky.start(Flaky)
    flaky.run_due(clock.advance(seconds=10))
    flaky.run_due(clock.advance(seconds=30))

    got = flaky.get(iid)
    main = got.thread("main")
    assert got.status == "failed"
    assert main.status == "failed"
    assert main.step == "flaky"
    assert (
        got.error
        == main.error
        == ("step 'flaky' failed after 3 attempt(s): ConnectionError: remote down (0 more)")
    )
    assert main.traceback is not None and "ConnectionError" in main.traceback
    assert got.due_at is None  # nothing more happens on its own
    assert flaky.run_due(clock.advance(days=1)) == 0
    assert ATTEMPTS == ["flaky"] * 3
    assert got.data == {"trace": ["before"]}

    # the operator fixed the remote side
    got = flaky.retry(iid, actor="ops")
    assert got.status == "completed"
    assert got.data == {"trace": ["before", "flaky", "after"]}  # "before" did not run again
    assert ATTEMPTS == ["flaky"] * 4
    kinds = [(h.kind, h.name, h.actor) for h in flaky.history(iid) if h.kind in ("failed", "retry")]
    assert kinds == [("failed", "flaky", None), ("retry", "flaky", "ops")]


def test_a_step_without_retries_fails_at_once(sqlite_url: str) -> None:
    class Once(Workflow):
        def definition(self) -> S:
            return S(Step("boom", self.boom, retry=1))

        def boom(self) -> None:
            raise ValueError("no")

    engine = Engine(sqlite_url, [Once])
    got = engine.get(engine.start(Once))
    assert got.status == "failed"
    assert got.error == "step 'boom' failed after 1 attempt(s): ValueError: no"


def test_retry_policy_delays_are_capped() -> None:
    policy = Retry(
        attempts=6, backoff=timedelta(seconds=1), factor=10, max_backoff=timedelta(seconds=500)
    )
    delays = [policy.delay_after(n) for n in range(1, 7)]
    assert delays == [
        timedelta(seconds=1),
        timedelta(seconds=10),
        timedelta(seconds=100),
        timedelta(seconds=500),
        timedelta(seconds=500),
        None,
    ]
    with pytest.raises(ValueError, match="at least 1"):
        Retry(attempts=0)


# --- data that a step leaves behind -------------------------------------------------------------


class Partial(Workflow):
    total: int = 0
    trace: list[str] = []

    def definition(self) -> S:
        return S(Step("add", self.add), Step("half-done", self.half_done, retry=1))

    def add(self) -> None:
        self.total += 5
        self.trace.append("add")

    def half_done(self) -> None:
        self.total += 100
        self.trace.append("half")
        raise RuntimeError("crashed mid-way")


def test_a_step_that_raises_leaves_the_data_as_it_was_before_the_step(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Partial])
    got = engine.get(engine.start(Partial))
    assert got.status == "failed"
    assert got.data == {"total": 5, "trace": ["add"]}


class Unstorable(Workflow):
    stuff: Any = None
    trace: list[str] = []

    def definition(self) -> S:
        return S(Step("ok", self.ok), Step("poison", self.poison, retry=1), Step("never", self.ok))

    def ok(self) -> None:
        self.trace.append("ok")

    def poison(self) -> None:
        self.trace.append("poison")
        self.stuff = {"handle": object()}


def test_a_step_that_makes_data_unstorable_fails_with_a_clear_message(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Unstorable])
    iid = engine.start(Unstorable)
    got = engine.get(iid)
    assert got.status == "failed"
    assert got.error is not None
    assert "step 'poison'" in got.error
    assert "cannot be stored as JSON" in got.error
    assert got.data == {"stuff": None, "trace": ["ok"]}  # nothing stored is corrupted
    # and the instance still loads on a fresh engine
    again = Engine(sqlite_url, [Unstorable])
    assert again.get(iid).data == {"stuff": None, "trace": ["ok"]}


def test_a_step_that_stores_the_wrong_type_fails_right_there(sqlite_url: str) -> None:
    class Typed(Workflow):
        amount: int = 0

        def definition(self) -> S:
            return S(Step("bad", self.bad, retry=1))

        def bad(self) -> None:
            self.amount = "lots"  # type: ignore[assignment]

    engine = Engine(sqlite_url, [Typed])
    got = engine.get(engine.start(Typed))
    assert got.status == "failed"
    assert got.error is not None and "amount" in got.error
    assert got.data == {"amount": 0}
