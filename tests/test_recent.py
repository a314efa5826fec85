"""Rows kept as this process last committed them (`Recent`): an event that follows our own commit
starts without reading the row back, and a copy that another process has made stale never
decides anything: its write fails the version check, and its refusals are decided again from the
database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from signoff.engine import (
    AlreadyDecided,
    Approval,
    Engine,
    EventRejected,
    Handler,
    InvalidData,
    NotAllowed,
    NotWaiting,
    On,
    S,
    Timeout,
    Wait,
    WaitInfo,
    Workflow,
)
from signoff.engine.core.records import Stored
from signoff.engine.storage.recent import Recent
from sqlalchemy import create_engine, event

from tests.conftest import Clock


class TwoSignatures(Workflow):
    """A manager signs, then finance signs or escalates."""

    amount: int = 0

    def definition(self) -> S:
        return S(
            Wait("manager", On("decided", Approval(approvers=["alice", "bob"]))),
            Wait(
                "finance",
                On("decided", Approval(approvers=["alice", "bob"])),
                On("escalate", Approval(approvers=["alice", "bob"])),
            ),
        )


HANDLED: list[str] = []  # what the handlers below were given, in order


class Refusing(Handler):
    """Takes any payload but {"no": true}, noting every call."""

    kind = "refusing"

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        HANDLED.append(f"{wait.wait} {payload}")
        if payload.get("no"):
            raise EventRejected("not this one")


class NotedTimeout(Timeout):
    """A Timeout that notes each time it fires."""

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        HANDLED.append(f"{wait.wait} timed out")
        super().handle(wait, payload, actor)


class Deadline(Workflow):
    """Signed within the hour, or it lapses; a question may be asked meanwhile."""

    def definition(self) -> S:
        return S(
            Wait(
                "sign",
                On("decided", Approval()),
                On("lapsed", NotedTimeout(after=timedelta(hours=1))),
                On("question", Refusing()),
            )
        )


@pytest.fixture(autouse=True)
def forget_calls() -> None:
    HANDLED.clear()


@pytest.fixture
def two_processes(any_url: str, clock: Clock) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one database (a SQLite file, a PostgreSQL database), each with its own
    connections and its own kept rows, as two processes would be."""
    ours = Engine(any_url, workflows=[TwoSignatures, Deadline], clock=clock)
    theirs = Engine(any_url, workflows=[TwoSignatures, Deadline], clock=clock)
    yield ours, theirs
    ours.close()
    theirs.close()


def decisions(engine: Engine, iid: str) -> list[tuple[str | None, str | None, str | None]]:
    """(wait, event, actor) of each decision in the audit trail."""
    return [
        ((h.detail or {}).get("wait"), h.name, h.actor)
        for h in engine.history(iid)
        if h.kind == "decision"
    ]


def test_a_kept_row_is_exactly_the_row_a_read_gives_back(sqlite_url: str) -> None:
    # a clock in another zone: a read gives UTC datetimes, and so must a kept copy
    east = timezone(timedelta(hours=5, minutes=30))
    clock = Clock(datetime(2026, 4, 1, 9, 0, tzinfo=east))
    engine = Engine(sqlite_url, workflows=[Deadline], clock=clock)
    iid = engine.start(Deadline)

    kept = engine.store.recent.take(iid)
    read = engine.store.load(iid)

    assert kept is not None and read is not None
    assert kept == read
    assert kept.due_at == clock() + timedelta(hours=1)  # the deadline's timer
    assert {kept.due_at.tzinfo, kept.created_at.tzinfo, kept.updated_at.tzinfo} == {UTC}
    assert engine.store.recent.take(iid) is None  # handed out once
    engine.close()


def test_an_event_right_after_our_own_commit_reads_nothing(tmp_path: Any, clock: Clock) -> None:
    statements: list[str] = []
    database = create_engine(f"sqlite:///{tmp_path}/traced.db")

    @event.listens_for(database, "connect")
    def trace(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.set_trace_callback(statements.append)

    engine = Engine(database, workflows=[TwoSignatures], clock=clock)
    iid = engine.start(TwoSignatures)
    statements.clear()

    view = engine.send(iid, "decided", {"approved": True}, actor="alice")

    assert view.threads[0].step == "finance"
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert reads == []
    engine.close()
    database.dispose()


def test_a_button_of_a_wait_decided_elsewhere_is_refused_though_our_copy_is_stale(
    two_processes: tuple[Engine, Engine],
) -> None:
    ours, theirs = two_processes
    iid = ours.start(TwoSignatures)  # our copy: waiting for the manager
    manager_key = ours.get(iid).threads[0].waits[0].key

    theirs.send(iid, "decided", {"approved": True}, actor="bob")  # another process decides
    assert iid in ours.store.recent  # and our copy is stale

    with pytest.raises(AlreadyDecided, match="approved by bob"):
        ours.send(iid, "decided", {"approved": True}, actor="alice", wait_key=manager_key)
    assert decisions(ours, iid) == [("manager", "decided", "bob")]


@pytest.mark.parametrize("event", ["decided", "escalate"])
def test_an_event_sent_on_a_stale_copy_goes_to_the_wait_open_now(
    two_processes: tuple[Engine, Engine], event: str
) -> None:
    """Our copy still has the manager's wait open: it would give "decided" to that wait (the
    write then fails the version check) and refuse "escalate" (no event of that wait). The
    database has finance waiting, and finance gets the event, once."""
    ours, theirs = two_processes
    iid = ours.start(TwoSignatures)
    theirs.send(iid, "decided", {"approved": True}, actor="bob")
    assert iid in ours.store.recent

    view = ours.send(iid, event, {"approved": True}, actor="alice")

    assert view.status == "completed"
    assert decisions(ours, iid) == [("manager", "decided", "bob"), ("finance", event, "alice")]


def test_a_refusal_on_a_current_copy_stands_without_a_second_try(
    two_processes: tuple[Engine, Engine],
) -> None:
    ours, _ = two_processes
    iid = ours.start(Deadline)
    version = ours.get(iid).version

    with pytest.raises(EventRejected, match="not this one"):
        ours.send(iid, "question", {"no": True})
    with pytest.raises(NotWaiting, match="waits for: decided, lapsed, question"):
        ours.send(iid, "escalate", {"approved": True}, actor="alice")

    assert HANDLED == ["sign {'no': True}"]  # asked once: the database agreed with our copy
    assert ours.get(iid).version == version


def test_forged_stale_and_garbage_events_on_a_kept_copy_change_nothing(
    two_processes: tuple[Engine, Engine],
) -> None:
    ours, _ = two_processes
    iid = ours.start(TwoSignatures)
    before, history = ours.get(iid), ours.history(iid)

    refused: list[tuple[type[Exception], dict[str, Any]]] = [
        (AlreadyDecided, {"event": "decided", "wait_key": "main:99"}),  # forged key
        (AlreadyDecided, {"event": "decided", "wait_key": "main:0"}),  # a round never open
        (NotWaiting, {"event": "no-such-event"}),
        (NotAllowed, {"event": "decided", "actor": "mallory"}),  # not an approver
        (EventRejected, {"event": "decided", "payload": {"note": "x" * 300_000}}),  # oversized
        (InvalidData, {"event": "decided\x00"}),  # a NUL byte
    ]
    for error, what in refused:
        ours.store.recent.keep(ours.store.load(iid))  # as after our own commit, each time
        with pytest.raises(error):
            ours.send(
                iid,
                what["event"],
                what.get("payload", {"approved": True}),
                actor=what.get("actor", "alice"),
                wait_key=what.get("wait_key"),
            )

    assert ours.get(iid) == before
    assert ours.history(iid) == history
    assert HANDLED == []


def test_a_deadline_another_process_has_fired_is_not_fired_again_from_our_copy(
    two_processes: tuple[Engine, Engine], clock: Clock
) -> None:
    ours, theirs = two_processes
    iid = ours.start(Deadline)  # our copy: signing, the hour not yet passed
    clock.advance(hours=2)
    assert theirs.run_due() == 1  # another process's scheduler: it lapsed
    assert HANDLED == ["sign timed out"]
    assert iid in ours.store.recent

    # our copy says the deadline passed and nobody fired it: fired from the database, it was
    with pytest.raises(AlreadyDecided, match="lapsed by the timer"):
        ours.send(iid, "decided", {"approved": True}, actor="alice")
    assert HANDLED == ["sign timed out"]
    assert ours.get(iid).status == "completed"


def test_a_deadline_passed_with_no_timer_fired_is_fired_by_the_late_event(
    two_processes: tuple[Engine, Engine], clock: Clock
) -> None:
    ours, _ = two_processes
    iid = ours.start(Deadline)
    clock.advance(hours=2)  # no scheduler ran

    with pytest.raises(AlreadyDecided, match="its deadline passed before this event"):
        ours.send(iid, "decided", {"approved": True}, actor="alice")
    assert HANDLED == ["sign timed out"]
    assert ours.get(iid).status == "completed"


def test_a_lease_renewed_or_a_claim_forgets_the_copy(sqlite_url: str, clock: Clock) -> None:
    engine = Engine(sqlite_url, workflows=[TwoSignatures], clock=clock)
    store = engine.store
    first, second = engine.start(TwoSignatures), engine.start(TwoSignatures)
    assert len(store.recent) == 2

    store.renew_lease(first, "someone", clock() + timedelta(seconds=10))  # renewed or not
    row = store.load(second)
    assert row is not None
    row.due_at, row.version = clock(), row.version + 1  # due now, with nobody driving it
    assert store.save(row, row.version - 1, None, [])
    assert store.claim_due(clock(), "worker", clock() + timedelta(seconds=10), instance_id=second)

    assert store.recent.take(first) is None
    assert store.recent.take(second) is None
    engine.close()


def stored(iid: str, data: str = "{}") -> Stored:
    at = datetime(2026, 4, 1, tzinfo=UTC)
    return Stored(iid, "W", "waiting", data, "{}", None, None, 1, None, None, None, at, at)


def test_the_kept_rows_are_bounded_in_number_and_size() -> None:
    recent = Recent(size=2, row_chars=100)
    for iid in ("a", "b", "c"):
        recent.keep(stored(iid))
    assert len(recent) == 2
    assert recent.take("a") is None  # the oldest written went first

    recent.keep(stored("b", data="x" * 200))  # too big to keep: its older copy goes too
    assert recent.take("b") is None
    assert recent.take("c") is not None


def test_a_kept_copy_does_not_move_with_the_working_copy() -> None:
    recent = Recent()
    row = stored("a")
    recent.keep(row)
    row.version, row.data = 2, '{"changed": true}'

    kept = recent.take("a")

    assert kept is not None and (kept.version, kept.data) == (1, "{}")
