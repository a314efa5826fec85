"""The instance page's timeline (web/timeline.py): a pure function from an instance's history to
what people read, with durations. Histories written by hand for the corners, and one made by
the real engine under an injected clock for the whole story of an expense."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from signoff.engine import Engine, HistoryEntry
from signoff.web.examples import WORKFLOWS
from signoff.web.timeline import Moment, timeline

T0 = datetime(2026, 12, 9, 8, 0, tzinfo=UTC)


def entry(minutes: float, kind: str, **fields: Any) -> HistoryEntry:
    values: dict[str, Any] = {"thread": "main", "name": None, "actor": None, "via": None}
    values |= {"message": None, "detail": None} | fields
    return HistoryEntry(
        id=int(minutes * 60), instance_id="i", at=T0 + timedelta(minutes=minutes), kind=kind,
        **values,
    )  # fmt: skip


def texts(moments: list[Moment]) -> list[str]:
    return [m.text for m in moments]


def test_a_wait_says_how_long_and_for_whom_and_the_decision_after_how_long() -> None:
    history = [
        entry(0, "started", thread=None, name="Expense", actor="bob", via="web"),
        entry(0, "step", name="record claim", detail={"attempt": 1, "ms": 0.03}),
        entry(0, "waiting", name="manager approval",
              detail={"events": ["decision", "timeout"], "asked": ["alice", "carol"],
                      "approvers": ["alice"]}),
        entry(192, "decision", name="decision", actor="alice", via="slack",
              message="denied: not this month",
              detail={"wait": "manager approval", "payload": {"approved": False,
                                                              "reason": "not this month"}}),
        entry(192.5, "completed", message="denied by alice: not this month"),
    ]  # fmt: skip
    moments = timeline(history, T0 + timedelta(days=9), ended=True)
    assert texts(moments) == [
        "Started by bob",
        "Step 'record claim' ran under 1 ms",
        "'manager approval' waited 3 h 12 min for alice",
        "Denied by alice after 3 h 12 min",
        "Ended 3 h 12 min after it started",
    ]
    wait, decision = moments[2], moments[3]
    assert (wait.kind, wait.took, wait.current) == ("wait", 192 * 60, False)
    assert (decision.actor, decision.via, decision.reason) == ("alice", "slack", "not this month")
    assert moments[4].reason == "denied by alice: not this month"
    assert [m.tone for m in moments] == ["", "", "", "bad", ""]


def test_what_happens_inside_a_wait_and_an_open_wait_so_far() -> None:
    history = [
        entry(0, "started", thread=None),
        entry(0, "waiting", name="sign-off", detail={"events": ["decision"],
                                                     "approvers": ["alice", "bob"]}),
        entry(1, "notice failed", name="decision", detail={"key": "k1", "attempt": 1},
              message="email to bob failed: 451 try later, retrying in 1 s"),
        entry(1, "notice sent", name="decision", message="emailed alice (alice@example.com)"),
        entry(2, "notice failed", name="decision", detail={"key": "k1", "attempt": 2},
              message="email to bob failed: 451 try later, retrying in 2 s"),
        entry(240, "reminder", name="decision", via="timer", detail={"count": 1}),
        entry(1440, "escalated", name="decision", via="timer", detail={"approvers": ["carol"]}),
        entry(1500, "vote", name="decision", actor="bob", via="web"),
        entry(1510, "reassigned", name="decision", actor="alice",
              message="alice handed their part to dave"),
    ]  # fmt: skip
    moments = timeline(history, T0 + timedelta(hours=26), ended=False)
    assert texts(moments) == [
        "Started",
        "'sign-off' waiting 1 d 2 h so far for alice or bob, then carol too",
    ]
    wait = moments[1]
    assert wait.current and wait.took == 26 * 3600
    assert [(n.kind, n.text) for n in wait.notes] == [
        ("notice sent", "emailed alice (alice@example.com) after 1 min"),
        # a message tried again is one line, its latest attempt
        (
            "notice failed",
            "email to bob failed: 451 try later, retrying in 2 s after 2 min (attempt 2)",
        ),
        ("reminder", "Reminder 1 sent after 4 h"),
        ("escalated", "Escalated to carol after 1 d"),
        ("vote", "bob approved after 1 d 1 h: one vote of those needed"),
        ("reassigned", "alice handed their part to dave after 1 d 1 h"),
    ]


def test_forms_events_timers_retries_moves_and_cancelling() -> None:
    history = [
        entry(0, "started", thread=None, actor="dana"),
        entry(0, "thread started", thread="it", name="accounts"),  # plumbing: left out
        entry(0, "waiting", name="equipment", detail={"events": ["equipment"]}),
        entry(0, "waiting", thread="it", name="training", detail={"events": ["training done"]}),
        entry(30, "event", name="equipment", actor="erin", via="web"),
        entry(31, "step failed", name="order laptop", message="shop down",
              detail={"attempt": 1, "of": 3, "retry_in_seconds": 300}),
        entry(91, "step", name="order laptop", detail={"attempt": 2, "ms": 2500}),
        entry(100, "waiting", name="approval", detail={"events": ["decision", "timeout"],
                                                       "approvers": None}),
        entry(4420, "event", name="timeout", via="timer"),
        entry(4421, "goto", thread="it", name="welcome", actor="carol", via="web"),
        entry(4422, "retry", thread="it", name="welcome", actor="carol", via="cli"),
        entry(4423, "waiting", thread="it", name="badge", detail={"events": ["badge"]}),
        entry(4424, "cancelled", thread=None, actor="carol", via="web", message="left the company"),
    ]  # fmt: skip
    moments = timeline(history, T0 + timedelta(days=30), ended=True)
    assert texts(moments) == [
        "Started by dana",
        "'equipment' waited 30 min for 'equipment'",
        "'training' waited 3 d 2 h for 'training done', until it was moved",
        "'equipment' sent by erin after 30 min",
        "Step 'order laptop' failed (try 1 of 3): shop down; tries again in 5 min",
        "Step 'order laptop' done at try 2, 1 h after the first (ran 2 s)",
        "'approval' waited 3 d for anyone to decide",
        "No answer in time: 'timeout' came from the timer after 3 d",
        "Moved to 'welcome' by carol",
        "Retried 'welcome' by carol",
        "'badge' waited 1 min for 'badge', until it was cancelled",
        "Cancelled by carol",
    ]
    assert moments[-1].reason == "left the company"
    assert moments[5].took == 60 * 60


def test_a_history_it_does_not_know_is_told_as_it_is() -> None:
    history = [
        entry(0, "something new", message="a thing happened", actor="zoe"),
        entry(1, "reminder", detail={"count": 2}),  # no wait to put it in
        entry(2, "failed", message="step 'x' failed after 3 attempt(s): boom"),
    ]
    moments = timeline(history, T0, ended=False)
    assert texts(moments) == [
        "a thing happened",
        "Reminder 2 sent",
        "Failed: step 'x' failed after 3 attempt(s): boom",
    ]
    assert timeline([], T0, ended=False) == []


def test_an_expense_as_the_engine_records_it(tmp_path: Path) -> None:
    """Reminders every 4 h, an escalation to carol after a day, carol approves: the engine's
    own history, read at the times an injected clock gives."""
    now = [T0]
    engine = Engine(f"sqlite:///{tmp_path}/t.db", workflows=WORKFLOWS, clock=lambda: now[0])
    try:
        iid = engine.start("Expense", {"employee": "bob", "amount": 300}, actor="bob")
        now[0] = T0 + timedelta(hours=2)
        waiting = timeline(engine.history(iid), now[0], ended=False)
        assert waiting[-1].text == "'manager approval' waiting 2 h so far for alice"
        assert waiting[-1].current
        for hours in (4, 8, 12, 16, 20, 24):
            now[0] = T0 + timedelta(hours=hours)
            engine.run_due(now[0])
        now[0] = T0 + timedelta(hours=25, minutes=30)
        engine.send(iid, "decision", {"approved": True}, actor="carol", via="web")
        moments = timeline(engine.history(iid), now[0], ended=True)
    finally:
        engine.close()
    assert texts(moments) == [
        "Started by bob",
        "Step 'record claim' ran under 1 ms",
        "'manager approval' waited 1 d 2 h for alice, then carol too",
        "Approved by carol after 1 d 2 h",
        "Step 'pay out' ran under 1 ms",
        "Completed 1 d 2 h after it started",
    ]
    notes = [n.text for n in moments[2].notes]
    assert notes[0] == "Reminder 1 sent after 4 h" and "Escalated to carol after 1 d" in notes
    assert not moments[2].current
    assert (moments[3].tone, moments[5].tone) == ("ok", "ok")
