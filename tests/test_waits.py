"""Waits: the first event wins and every case is torn down; setup and teardown are recorded,
stored and retried; WaitFor; timeouts on an injected clock; late, unknown and rejected events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from signoff.engine import (
    AlreadyDecided,
    Approval,
    Decision,
    DefinitionError,
    Engine,
    EventRejected,
    Go,
    Handler,
    NotWaiting,
    On,
    Retry,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    WaitFor,
    WaitInfo,
    Workflow,
)

from tests.conftest import Clock

CALLS: list[str] = []  # what the probe handlers were asked to do, in order
BREAK: dict[str, int] = {}  # "setup b" -> how many more times that call raises


class Probe(Handler):
    """A handler that logs its lifecycle and can be told to fail."""

    kind = "probe"

    def __init__(self, label: str) -> None:
        self.label = label

    def _maybe_fail(self, what: str) -> None:
        key = f"{what} {self.label}"
        if BREAK.get(key, 0) > 0:
            BREAK[key] -= 1
            raise OSError(f"{key} is broken")

    def setup(self, wait: WaitInfo) -> dict[str, Any] | None:
        self._maybe_fail("setup")
        CALLS.append(f"setup {self.label}")
        return {
            "ticket": f"T-{self.label}",
            "wait": wait.wait,
            "thread": wait.thread,
            "began": wait.began_at.isoformat(),
            "instance": wait.instance_id,
            "workflow": wait.workflow,
        }

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        if payload.get("bad"):
            CALLS.append(f"reject {self.label}")
            raise EventRejected("bad payload")
        CALLS.append(f"handle {self.label} {wait.stored and wait.stored['ticket']} by {actor}")

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        self._maybe_fail("teardown")
        CALLS.append(f"teardown {self.label} {handled} {wait.stored and wait.stored['ticket']}")


@pytest.fixture(autouse=True)
def _fresh_probes() -> None:
    CALLS.clear()
    BREAK.clear()


class Race(Workflow):
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Step("ask", self.mark("ask")),
            Wait(
                "answer",
                On("a", Probe("a"), Step("after a", self.mark("A"))),
                On("b", Probe("b"), Step("after b", self.mark("B"))),
                On("c", Probe("c"), Step("after c", self.mark("C"))),
            ),
            Step("done", self.mark(".")),
        )

    def mark(self, what: str):  # type: ignore[no-untyped-def]
        return lambda: self.trace.append(what)


def test_the_first_event_wins_and_every_case_is_torn_down(sqlite_url: str, clock: Clock) -> None:
    engine = Engine(sqlite_url, [Race], clock=clock, operators=["bob"])
    iid = engine.start(Race, id="race-1")
    assert CALLS == ["setup a", "setup b", "setup c"]

    got = engine.get(iid)
    assert got.status == "waiting"
    assert [(w.wait, w.event, w.kind, w.setup) for w in got.thread("main").waits] == [
        ("answer", "a", "probe", "done"),
        ("answer", "b", "probe", "done"),
        ("answer", "c", "probe", "done"),
    ]
    # setup ran once the wait had begun, and what it returned is stored with the wait
    assert got.thread("main").waits[1].stored == {
        "ticket": "T-b",
        "wait": "answer",
        "thread": "main",
        "instance": "race-1",
        "workflow": "Race",
        "began": clock.now.isoformat(),
    }

    got = engine.send(iid, "b", {}, actor="bob")
    assert got.status == "completed"
    assert got.data == {"trace": ["ask", "B", "."]}
    assert CALLS == [
        "setup a",
        "setup b",
        "setup c",
        "handle b T-b by bob",
        "teardown a False T-a",
        "teardown b True T-b",
        "teardown c False T-c",
    ]
    assert got.pending_teardowns == 0


def test_setup_comes_after_the_wait_began(sqlite_url: str) -> None:
    seen: list[str] = []

    class Peek(Handler):
        def setup(self, wait: WaitInfo) -> None:
            view = engine.get(wait.instance_id)
            seen.append(view.status)
            seen.extend(h.kind for h in engine.history(wait.instance_id))

    class Peeking(Workflow):
        def definition(self) -> S:
            return S(Wait("w", On("e", Peek())))

    engine = Engine(sqlite_url, [Peeking])
    engine.start(Peeking)
    assert seen == ["waiting", "started", "waiting"]


def test_an_answer_that_comes_while_setup_is_still_running_is_not_dropped(sqlite_url: str) -> None:
    """Setup posts the Slack buttons; someone clicks before setup has even returned."""

    class FastClick(Handler):
        def setup(self, wait: WaitInfo) -> dict[str, Any]:
            engine.send(wait.instance_id, wait.event, {}, actor="quick")  # an operator
            CALLS.append("posted")
            return {"ts": "1.0"}

        def teardown(self, wait: WaitInfo, handled: bool) -> None:
            CALLS.append(f"teardown {handled}")

    class Quick(Workflow):
        trace: list[str] = []

        def definition(self) -> S:
            return S(
                Wait("w", On("click", FastClick(), Step("clicked", self.clicked))),
                Return("+".join(self.trace)),
            )

        def clicked(self) -> None:
            self.trace.append("clicked")

    engine = Engine(sqlite_url, [Quick], operators=["quick"])
    iid = engine.start(Quick)
    got = engine.get(iid)
    assert (got.status, got.result) == ("completed", "clicked")
    assert CALLS == ["posted", "teardown True"]
    decision = next(h for h in engine.history(iid) if h.kind == "event")
    assert (decision.name, decision.actor) == ("click", "quick")


def test_a_failing_setup_is_recorded_on_the_wait_retried_later_and_blocks_no_other_thread(
    sqlite_url: str, clock: Clock
) -> None:
    class Parallel(Workflow):
        trace: list[str] = []

        def definition(self) -> S:
            return S(
                Go("worker", S(Step("work", lambda: self.trace.append("work")))),
                Wait("w", On("a", Probe("a")), On("b", Probe("b"))),
                Step("after", lambda: self.trace.append("after")),
            )

    BREAK["setup b"] = 2
    engine = Engine(sqlite_url, [Parallel], clock=clock)
    iid = engine.start(Parallel)

    got = engine.get(iid)
    assert got.data == {"trace": ["work"]}  # the other thread ran to its end
    assert got.thread("worker").status == "completed"
    a, b = got.thread("main").waits
    assert (a.setup, a.error, a.stored is not None) == ("done", None, True)
    assert (b.setup, b.error, b.attempts, b.stored) == (
        "failed",
        "OSError: setup b is broken",
        1,
        None,
    )
    assert got.due_at == clock.now + timedelta(seconds=1)
    failures = [(h.kind, h.name, h.message) for h in engine.history(iid) if "setup" in h.kind]
    assert failures == [("setup failed", "b", "OSError: setup b is broken")]

    engine.run_due(clock.advance(seconds=1))
    b = engine.get(iid).thread("main").waits[1]
    assert (b.setup, b.attempts) == ("failed", 2)
    engine.run_due(clock.advance(seconds=2))
    b = engine.get(iid).thread("main").waits[1]
    assert (b.setup, b.error, b.stored and b.stored["ticket"]) == ("done", None, "T-b")
    assert CALLS == ["setup a", "setup b"]

    # while a setup is still failing, the other case may win: the wait works regardless
    got = engine.send(iid, "a", {})
    assert got.data == {"trace": ["work", "after"]}
    assert got.status == "completed"


def test_an_event_may_win_before_a_failed_setup_succeeded(sqlite_url: str, clock: Clock) -> None:
    BREAK["setup b"] = 99
    engine = Engine(sqlite_url, [Race], clock=clock, operators=["bob"])
    iid = engine.start(Race)
    got = engine.send(iid, "a", {})
    assert got.status == "completed"
    # b was never set up; it is still torn down (with nothing stored)
    assert CALLS == [
        "setup a",
        "setup c",
        "handle a T-a by None",
        "teardown a True T-a",
        "teardown b False None",
        "teardown c False T-c",
    ]


def test_a_failing_teardown_is_recorded_and_retried_by_run_due(
    sqlite_url: str, clock: Clock
) -> None:
    BREAK["teardown c"] = 1
    engine = Engine(sqlite_url, [Race], clock=clock, operators=["bob"])
    iid = engine.start(Race)
    got = engine.send(iid, "a", {})
    assert got.status == "completed"  # the instance moved on regardless
    assert got.data == {"trace": ["ask", "A", "."]}
    assert got.pending_teardowns == 1
    assert got.due_at == clock.now + timedelta(seconds=1)
    assert CALLS[-2:] == ["teardown a True T-a", "teardown b False T-b"]
    failed = [(h.kind, h.name, h.message) for h in engine.history(iid) if "teardown" in h.kind]
    assert failed == [("teardown failed", "c", "OSError: teardown c is broken")]

    assert engine.run_due(clock.advance(seconds=1)) == 1
    assert CALLS[-1] == "teardown c False T-c"
    got = engine.get(iid)
    assert (got.status, got.pending_teardowns, got.due_at) == ("completed", 0, None)


# --- WaitFor ---------------------------------------------------------------------------------


class Handoff(Workflow):
    ready: bool = False
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Go(
                "producer",
                S(
                    Wait("go ahead", On("go", Probe("go"))),
                    Step("produce", self.produce),
                ),
            ),
            Step("prepare", lambda: self.trace.append("prepare")),
            WaitFor("until ready", lambda: self.ready),
            Step("consume", lambda: self.trace.append("consume")),
            Return("+".join(self.trace)),
        )

    def produce(self) -> None:
        self.ready = True
        self.trace.append("produce")


def test_waitfor_is_unblocked_by_another_thread(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Handoff])
    iid = engine.start(Handoff)
    got = engine.get(iid)
    assert got.status == "waiting"
    assert {t.id: (t.status, t.step) for t in got.threads} == {
        "main": ("blocked", "until ready"),
        "producer": ("waiting", "go ahead"),
    }

    fresh = Engine(sqlite_url, [Handoff])  # across a reload too
    got = fresh.send(iid, "go", {})
    assert got.status == "completed"
    assert got.result == "prepare+produce+consume"


def test_waitfor_that_already_holds_does_not_block(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Handoff])
    got = engine.get(engine.start(Handoff, {"ready": True}))
    assert got.status == "completed"
    assert got.result == "prepare+consume"


class HandoffThen(Workflow):
    """WaitFor with `then`: it runs once, when the condition is found true, before the thread
    moves on; what it changes is what the next statement sees."""

    ready: bool = False
    handled: int = 0
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Go(
                "producer",
                S(Wait("go ahead", On("go", Probe("go"))), Step("produce", self.produce)),
            ),
            Step("prepare", lambda: self.trace.append("prepare")),
            WaitFor(
                "until ready",
                self.is_ready,
                then=self.on_ready,
                retry=Retry(attempts=2, backoff=timedelta(minutes=1)),
            ),
            Step("consume", lambda: self.trace.append(f"consume {self.handled}")),
            Return("+".join(self.trace)),
        )

    def is_ready(self) -> bool:
        CALLS.append("cond")
        return self.ready

    def produce(self) -> None:
        self.ready = True
        self.trace.append("produce")

    async def on_ready(self) -> None:  # async, on the sync engine too
        CALLS.append("then")
        if BREAK.get("then", 0) > 0:
            BREAK["then"] -= 1
            raise RuntimeError("then broke")
        self.handled += 1
        self.trace.append("then")


def test_waitfor_then_runs_once_when_the_condition_is_found_true_before_the_thread_moves_on(
    sqlite_url: str,
) -> None:
    engine = Engine(sqlite_url, [HandoffThen])
    iid = engine.start(HandoffThen)
    assert "then" not in CALLS  # blocked: the condition does not hold yet
    assert engine.get(iid).threads[0].status == "blocked"
    engine.close()

    fresh = Engine(sqlite_url, [HandoffThen])  # across a reload
    got = fresh.send(iid, "go", {})
    assert got.result == "prepare+produce+then+consume 1"
    assert CALLS.count("then") == 1
    assert [h.name for h in fresh.history(iid) if h.kind == "step"] == [
        "prepare",
        "produce",
        "until ready",
        "consume",
    ]
    got = fresh.get(fresh.start(HandoffThen, {"ready": True}))  # already true: no block
    assert got.result == "prepare+then+consume 1"
    fresh.close()


def test_a_failing_then_is_retried_by_its_policy_without_asking_again_then_fails_the_thread(
    sqlite_url: str, clock: Clock
) -> None:
    engine = Engine(sqlite_url, [HandoffThen], clock=clock)
    BREAK["then"] = 1
    iid = engine.start(HandoffThen, {"ready": True})
    got = engine.get(iid)
    main = next(t for t in got.threads if t.id == "main")
    assert (got.status, main.status, main.step, main.error) == (
        "running",
        "retrying",
        "until ready",
        "RuntimeError: then broke",
    )
    assert engine.check_deployment().ok  # standing in its `then` strands nothing
    asked = CALLS.count("cond")
    clock.advance(minutes=2)
    assert engine.run_due() == 1
    assert engine.get(iid).result == "prepare+then+consume 1"
    assert CALLS.count("cond") == asked  # the retry ran `then`, it did not ask again
    assert CALLS.count("then") == 2

    BREAK["then"] = 2  # both attempts fail: the thread fails, naming it; retry goes on
    other = engine.start(HandoffThen, {"ready": True})
    clock.advance(minutes=2)
    engine.run_due()
    got = engine.get(other)
    assert got.status == "failed"
    assert "'until ready' failed after 2 attempt(s): RuntimeError: then broke" in (
        next(t for t in got.threads if t.id == "main").error or ""
    )
    assert engine.retry(other).result == "prepare+then+consume 1"
    engine.close()


def test_a_then_that_is_not_callable_is_refused_at_registration(sqlite_url: str) -> None:
    class Broken(Workflow):
        def definition(self) -> S:
            return S(WaitFor("w", True, then="not callable"))  # type: ignore[arg-type]

    with pytest.raises(DefinitionError, match="the then of WaitFor 'w' must be callable"):
        Engine(sqlite_url, [Broken])


# --- timeouts and late events -----------------------------------------------------------------


class Expense(Workflow):
    approved: bool = False
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On("decide", Approval(approve=self.on_approve, deny=self.on_deny)),
                On(
                    "timeout",
                    Timeout(after=timedelta(minutes=10)),
                    Step("abort", lambda: self.trace.append("abort")),
                    Return(error="approval timed out"),
                ),
            ),
            Return("approved" if self.approved else "denied"),
        )

    def on_approve(self, decision: Decision) -> None:
        self.approved = True
        self.trace.append(f"approved by {decision.actor}")

    def on_deny(self, decision: Decision) -> None:
        self.trace.append(f"denied by {decision.actor}: {decision.reason}")


def test_a_timeout_fires_on_the_injected_clock(sqlite_url: str, clock: Clock) -> None:
    engine = Engine(sqlite_url, [Expense], clock=clock)
    iid = engine.start(Expense)
    timeout = engine.get(iid).thread("main").waits[1]
    assert (timeout.kind, timeout.due_at) == ("timeout", clock.now + timedelta(minutes=10))
    assert engine.get(iid).due_at == clock.now + timedelta(minutes=10)

    assert engine.run_due(clock.advance(minutes=9, seconds=59)) == 0
    assert engine.get(iid).status == "waiting"
    assert engine.run_due(clock.advance(seconds=1)) == 1
    got = engine.get(iid)
    assert (got.status, got.error, got.result) == ("completed", "approval timed out", None)
    assert got.data == {"approved": False, "trace": ["abort"]}
    event = next(h for h in engine.history(iid) if h.kind == "event")
    assert (event.name, event.via, event.actor) == ("timeout", "timer", None)


def test_a_late_event_is_told_who_decided_and_when(sqlite_url: str, clock: Clock) -> None:
    engine = Engine(sqlite_url, [Expense], clock=clock)
    iid = engine.start(Expense)
    clock.advance(minutes=3)
    decided_at = clock.now
    engine.send(iid, "decide", {"approved": True}, actor="alice")
    before = engine.get(iid)

    clock.advance(minutes=1)
    with pytest.raises(AlreadyDecided) as late:
        engine.send(iid, "decide", {"approved": False, "reason": "too late"}, actor="bob")
    assert "approved by alice" in str(late.value)
    assert f"{decided_at:%Y-%m-%d %H:%M:%S}" in str(late.value)
    # the timer of the same wait is late too, and says so
    with pytest.raises(AlreadyDecided, match="alice"):
        engine.send(iid, "timeout", {})
    assert engine.get(iid) == before


def test_after_a_timeout_a_late_approval_names_the_timer(sqlite_url: str, clock: Clock) -> None:
    engine = Engine(sqlite_url, [Expense], clock=clock)
    iid = engine.start(Expense)
    engine.run_due(clock.advance(minutes=10))
    with pytest.raises(AlreadyDecided, match="by the timer"):
        engine.send(iid, "decide", {"approved": True}, actor="alice")


class Lapsing(Workflow):
    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On("decide", Approval()),
                On(
                    "timeout",
                    Timeout(after=timedelta(minutes=10)),
                    Step("notify lapsed", self.notify_lapsed),
                    Return(error="lapsed"),
                ),
            ),
            Return("approved"),
        )

    def notify_lapsed(self) -> None:
        raise RuntimeError("mail server down")  # the thread stays at this step, retrying


def test_a_late_decision_is_refused_naming_the_wait_not_a_step_of_the_timeout_branch(
    sqlite_url: str, clock: Clock
) -> None:
    engine = Engine(sqlite_url, [Lapsing], clock=clock)
    iid = engine.start(Lapsing)
    clock.advance(minutes=11)  # the deadline passed; no timer has fired yet

    with pytest.raises(AlreadyDecided) as late:
        engine.send(iid, "decide", {"approved": True}, actor="alice")
    assert str(late.value).startswith("'approval' was already decided: timeout by the timer")
    assert engine.get(iid).thread("main").step == "notify lapsed"  # the late send fired it
    for refused in (engine.send, engine.check_event):
        with pytest.raises(AlreadyDecided, match=r"^'approval' was already decided: timeout"):
            refused(iid, "decide", {"approved": True}, actor="alice")


def test_an_unknown_event_is_refused_naming_what_the_instance_waits_for(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Expense])
    iid = engine.start(Expense)
    before = engine.get(iid)
    with pytest.raises(NotWaiting, match=r"not waiting for 'bogus'.*decide, timeout"):
        engine.send(iid, "bogus", {})
    assert engine.get(iid) == before


def test_a_rejected_event_changes_nothing(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Race], operators=["ops"])
    iid = engine.start(Race)
    before, history = engine.get(iid), engine.history(iid)
    with pytest.raises(EventRejected, match="bad payload"):
        engine.send(iid, "a", {"bad": True})
    assert engine.get(iid) == before
    assert engine.history(iid) == history
    assert CALLS == ["setup a", "setup b", "setup c", "reject a"]  # nothing torn down
    # the wait is still open and takes a good event
    assert engine.send(iid, "a", {}).data == {"trace": ["ask", "A", "."]}


def test_a_reminder_that_raises_is_recorded_and_retried_and_blocks_no_timer(
    sqlite_url: str, clock: Clock
) -> None:
    """Slack is down when the reminder falls due: the timeout of the same wait and the other
    thread's timer still fire, and the reminder is tried again later."""
    down = {"slack": True}

    @dataclass
    class SlackApproval(Approval):
        def notify(self, wait: WaitInfo, what: str, stored: dict[str, Any]) -> dict[str, Any]:
            if down["slack"]:
                raise ConnectionError("slack is down")
            CALLS.append(f"notified {what}")
            return {"ts": "2.0"}

    class Reminded(Workflow):
        trace: list[str] = []

        def definition(self) -> S:
            return S(
                Go(
                    "side",
                    S(
                        Wait("side timer", On("tick", Timeout(after=timedelta(hours=1)))),
                        Step("ticked", lambda: self.trace.append("side")),
                    ),
                ),
                Wait(
                    "approval",
                    On("decide", SlackApproval(remind_every=timedelta(hours=1))),
                    On("timeout", Timeout(after=timedelta(hours=3))),
                ),
                Return("+".join(self.trace)),
            )

    engine = Engine(sqlite_url, [Reminded], clock=clock)
    iid = engine.start(Reminded)
    engine.run_due(clock.advance(hours=1))
    got = engine.get(iid)
    assert got.data["trace"] == ["side"]  # the other thread's timer fired
    decide = got.thread("main").waits[0]
    assert decide.error == "ConnectionError: slack is down"
    assert decide.due_at is not None and clock.now < decide.due_at < clock.now + timedelta(hours=1)
    assert [h.kind for h in engine.history(iid) if "failed" in h.kind] == ["timer failed"]

    down["slack"] = False
    engine.run_due(decide.due_at)
    decide = engine.get(iid).thread("main").waits[0]
    assert CALLS == ["notified reminder"]
    assert decide.error is None and decide.stored is not None and decide.stored["ts"] == "2.0"

    down["slack"] = True
    got = engine.get(iid)
    engine.run_due(clock.advance(hours=2))  # the reminder fails again; the timeout still fires
    got = engine.get(iid)
    assert (got.status, got.result) == ("completed", "side")


def test_cancel_tears_down_every_open_case_unhandled(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Race], operators=["ops"])
    iid = engine.start(Race)
    got = engine.cancel(iid, "no longer needed", actor="ops")
    assert (got.status, got.pending_teardowns) == ("cancelled", 0)
    assert CALLS == [
        "setup a",
        "setup b",
        "setup c",
        "teardown a False T-a",
        "teardown b False T-b",
        "teardown c False T-c",
    ]


class Handover(Workflow):
    """The first approver names who handles the next wait: its handler is built from data a
    handler of the first wait changed, in the same transition."""

    next_owner: str = "nobody"

    def definition(self) -> S:
        return S(
            Wait("first", On("decided", Approval(approvers=["alice"], approve=self.hand_over))),
            Wait("second", On("done", Probe(self.next_owner))),
            Return(self.next_owner),
        )

    def hand_over(self, decision: Decision) -> None:
        self.next_owner = "bob"


def test_a_wait_found_by_name_comes_from_the_tree_of_the_data_as_it_is_now(
    sqlite_url: str,
) -> None:
    """Handlers are looked up by their wait's name in an index kept per built tree. The
    decision changes the data mid-transition, so the next wait's setup must run the handler
    of the tree built from the new data, not one indexed before the change."""
    engine = Engine(sqlite_url, [Handover], operators=["it"])
    iid = engine.start(Handover)
    engine.send(iid, "decided", {"approved": True}, actor="alice")

    second = engine.get(iid).thread("main").waits[0]
    assert (second.wait, second.stored and second.stored["ticket"]) == ("second", "T-bob")
    assert CALLS[-1] == "setup bob"
    assert engine.send(iid, "done", {}, actor="it").status == "completed"
