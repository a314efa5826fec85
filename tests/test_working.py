"""Writers that meet on one instance: the driver running a step, and an event, a retry or a
click that arrives meanwhile. Each story pins a rule of `signoff.engine.core.working.rebase` or
of `send`: nothing acknowledged is lost, and nothing is decided twice."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from signoff.engine import (
    AlreadyDecided,
    Approval,
    Decision,
    Engine,
    For,
    Go,
    Handler,
    Input,
    NotAllowed,
    NotWaiting,
    On,
    Return,
    S,
    StatementMissing,
    Step,
    Timeout,
    Wait,
    WaitInfo,
    Workflow,
)

from tests.conftest import Clock


class Who(BaseModel):
    who: str


STEP_MAY_GO = threading.Event()
STEP_RUNNING = threading.Event()


class SharedField(Workflow):
    """A side thread's step and the main thread's event both append to `log`."""

    log: list[str] = []

    def definition(self) -> S:
        return S(
            Go("worker", S(Step("slow", self.slow))),
            Wait("w", On("ev", Input(Who, self.apply))),
            Wait("done", On("finish", Input(Who, self.apply))),
            Return(self.log),
        )

    def slow(self) -> None:
        STEP_RUNNING.set()
        STEP_MAY_GO.wait(10)
        self.log = [*self.log, "step"]

    def apply(self, value: Who) -> None:
        self.log = [*self.log, f"event:{value.who}"]


def test_an_event_and_a_concurrent_step_changing_the_same_field_both_count(
    sqlite_url: str,
) -> None:
    STEP_MAY_GO.clear()
    STEP_RUNNING.clear()
    driver = Engine(sqlite_url, [SharedField])
    started = threading.Thread(target=lambda: driver.start(SharedField, id="x1"))
    started.start()
    assert STEP_RUNNING.wait(10)

    acknowledged = Engine(sqlite_url, [SharedField]).send("x1", "ev", {"who": "alice"})
    assert acknowledged.data["log"] == ["event:alice"]
    STEP_MAY_GO.set()
    started.join(10)

    # the event stood; the step lost the race and ran again on the data as it now was
    assert driver.get("x1").data["log"] == ["event:alice", "step"]
    steps = [h for h in driver.history("x1") if h.kind == "step"]
    assert [h.name for h in steps] == ["slow"]  # committed exactly once


SETUP_MAY_GO = threading.Event()
SETUP_RUNNING = threading.Event()
TORN_DOWN: list[Any] = []


class SlackLike(Handler):
    kind = "approval"

    def setup(self, wait: WaitInfo) -> dict[str, Any]:
        SETUP_RUNNING.set()
        SETUP_MAY_GO.wait(10)
        return {"ts": "42"}

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        TORN_DOWN.append((handled, wait.stored))


class Announced(Workflow):
    def definition(self) -> S:
        return S(Wait("w", On("decided", SlackLike())), Return("ok"))


def test_teardown_sees_what_setup_stored_even_when_the_answer_beat_it(sqlite_url: str) -> None:
    SETUP_MAY_GO.clear()
    SETUP_RUNNING.clear()
    TORN_DOWN.clear()
    driver = Engine(sqlite_url, [Announced])
    started = threading.Thread(target=lambda: driver.start(Announced, id="s1"))
    started.start()
    assert SETUP_RUNNING.wait(10)

    Engine(sqlite_url, [Announced]).send("s1", "decided", {})
    SETUP_MAY_GO.set()
    started.join(10)

    assert driver.get("s1").status == "completed"
    assert TORN_DOWN == [(True, {"ts": "42"})]  # the posted message can still be edited


class Review(Workflow):
    """Rounds of review until approved: every round opens a wait with the same name."""

    approved: bool = False
    rounds: int = 0

    def definition(self) -> S:
        return S(
            For(
                "rounds",
                lambda: not self.approved,
                Wait("review", On("decision", Approval(approve=self.ok, deny=self.no))),
                Step("revise", self.revise),
            ),
            Return(self.rounds),
        )

    def ok(self, decision: Decision) -> None:
        self.approved = True

    def no(self, decision: Decision) -> None:
        pass

    def revise(self) -> None:
        self.rounds += 1


def test_a_second_click_on_an_old_round_is_refused_not_applied_to_the_next(
    sqlite_url: str,
) -> None:
    engine = Engine(sqlite_url, [Review])
    iid = engine.start(Review)
    key = engine.get(iid).waits[0].key
    deny = {"approved": False, "reason": "typo"}

    engine.send(iid, "decision", deny, actor="alice", via="slack", wait_key=key)
    with pytest.raises(AlreadyDecided, match="denied by alice"):
        engine.send(iid, "decision", deny, actor="alice", via="slack", wait_key=key)

    after = engine.get(iid)
    assert after.data["rounds"] == 1
    assert after.waits[0].key != key  # round two has a wait of its own
    done = engine.send(
        iid, "decision", {"approved": True}, actor="bob", wait_key=after.waits[0].key
    )
    assert (done.status, done.result) == ("completed", 2)  # each round ends with a revise


class Ping(Handler):
    """An operator's plain event (not a decision): it may be kept for a wait not begun."""


class Busy(Workflow):
    approved: bool = False
    pinged: bool = False

    def definition(self) -> S:
        return S(
            Step("prepare", self.prepare),
            Wait("approval", On("decided", Approval(approve=self.ok))),
            Wait("ping", On("pinged", Ping())),
            Return(self.approved),
        )

    def prepare(self) -> None:
        STEP_RUNNING.set()
        STEP_MAY_GO.wait(10)

    def ok(self, decision: Decision) -> None:
        self.approved = True


def _start_busy(url: str) -> tuple[Engine, threading.Thread]:
    """Start `b1` in another thread and return once its first step is running."""
    STEP_MAY_GO.clear()
    STEP_RUNNING.clear()
    driver = Engine(url, [Busy])
    started = threading.Thread(target=lambda: driver.start(Busy, id="b1"))
    started.start()
    assert STEP_RUNNING.wait(10)
    return driver, started


def test_a_decision_sent_before_its_wait_began_is_refused_naming_the_wait(
    sqlite_url: str,
) -> None:
    """A person decides only what they could have seen: a decision for a wait that has not
    begun is refused (the seed refuses every event for a thread that is not waiting), never
    kept and later dropped behind the sender's back."""
    driver, started = _start_busy(sqlite_url)
    other = Engine(sqlite_url, [Busy])

    with pytest.raises(NotWaiting, match="'approval' has not begun yet"):
        other.send("b1", "decided", {"approved": True}, actor="alice")
    with pytest.raises(NotWaiting, match="'approval' has not begun yet"):
        other.send("b1", "decided", {"approved": False, "reason": "no"}, actor="bob")
    with pytest.raises(NotWaiting, match="'approval' has not begun yet"):
        other.check_event("b1", "decided", {"approved": True}, actor="alice")
    STEP_MAY_GO.set()
    started.join(10)

    view = driver.get("b1")
    assert view.status == "waiting" and view.waits[0].wait == "approval"
    kinds = [h.kind for h in driver.history("b1")]
    assert "event kept" not in kinds and "decision" not in kinds
    done = driver.send("b1", "decided", {"approved": True}, actor="alice")
    assert not done.kept
    assert driver.get("b1").waits[0].wait == "ping"


def test_an_event_that_is_no_decision_is_kept_and_says_so(sqlite_url: str) -> None:
    driver, started = _start_busy(sqlite_url)

    kept = Engine(sqlite_url, [Busy]).send("b1", "pinged", {})
    assert (kept.status, kept.kept) == ("running", True)
    STEP_MAY_GO.set()
    started.join(10)
    driver.send("b1", "decided", {"approved": True}, actor="alice")

    done = driver.get("b1")
    assert (done.status, done.result) == ("completed", True)
    kinds = [h.kind for h in driver.history("b1")]
    assert kinds.index("event kept") < kinds.index("decision") < kinds.index("event")


def test_an_event_for_no_wait_at_all_is_still_refused_when_idle(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Busy])
    STEP_MAY_GO.set()
    iid = engine.start(Busy)
    engine.send(iid, "decided", {"approved": True}, actor="alice")
    with pytest.raises(AlreadyDecided, match="approved by alice"):
        engine.send(iid, "decided", {"approved": True}, actor="bob")


class Guarded(Workflow):
    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On("decided", Approval(approvers=["alice"])),
                On(
                    "timeout",
                    Timeout(after=timedelta(hours=24)),
                    Return(error="approval timed out"),
                ),
            ),
            Return("approved"),
        )


def test_nobody_can_send_a_timeout_by_hand(sqlite_url: str, clock: Clock) -> None:
    engine = Engine(sqlite_url, [Guarded], clock=clock)
    iid = engine.start(Guarded)
    with pytest.raises(NotAllowed, match="cannot be sent"):
        engine.send(iid, "timeout", {}, actor="mallory")
    assert engine.get(iid).status == "waiting"
    engine.run_due(clock.advance(hours=25))
    assert engine.get(iid).error == "approval timed out"


class AmountAsText(Workflow):
    workflow_name = "Deploy"
    amount: str = ""

    def definition(self) -> S:
        return S(Wait("w", On("go", Approval())), Return(1))


class AmountAsNumber(Workflow):
    workflow_name = "Deploy"
    amount: int = 0

    def definition(self) -> S:
        return S(Wait("w", On("go", Approval())), Return(1))


def test_data_that_no_longer_fits_the_model_fails_the_instance_plainly(sqlite_url: str) -> None:
    iid = Engine(sqlite_url, [AmountAsText]).start("Deploy", {"amount": "12 EUR"})
    deployed = Engine(sqlite_url, [AmountAsNumber])
    with pytest.raises(StatementMissing, match="building the definition failed"):
        deployed.send(iid, "go", {"approved": True})
    failed = deployed.get(iid)
    assert failed.status == "failed" and "amount" in (failed.error or "")
    assert failed.waits == []


def test_an_in_memory_database_works() -> None:
    engine = Engine("sqlite://", [Guarded])
    iid = engine.start(Guarded)
    assert engine.send(iid, "decided", {"approved": True}, actor="alice").result == "approved"


class Reminded(Workflow):
    def definition(self) -> S:
        return S(Wait("w", On("decided", Approval(remind_every=timedelta(minutes=10)))), Return(1))


def test_run_due_at_a_given_moment_sends_the_reminders_due_then(
    sqlite_url: str, clock: Clock
) -> None:
    engine = Engine(sqlite_url, [Reminded], clock=clock)
    iid = engine.start(Reminded)
    engine.run_due(clock.now + timedelta(minutes=11))  # the clock itself has not moved
    assert [h.kind for h in engine.history(iid)].count("reminder") == 1
