"""The Engine API: start, send, get, list, history, cancel, goto, retry, their errors, and an
instance carried on by a fresh Engine on the same database file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from signoff.engine import (
    Approval,
    Conflict,
    Decision,
    Engine,
    Go,
    Input,
    InstanceNotFound,
    InvalidData,
    NotWaiting,
    On,
    Return,
    S,
    Step,
    Timeout,
    UnknownWorkflow,
    Wait,
    Workflow,
)

from tests.conftest import Clock

RUNS: list[str] = []


class Note(BaseModel):
    text: str


class Trip(Workflow):
    """book -> wait for approval (or a day) -> pay -> wait for feedback -> done."""

    traveller: str = ""
    nights: int = 1
    log: list[str] = []

    def definition(self) -> S:
        return S(
            Step("book", self.w("book")),
            Wait(
                "approval",
                On("approval", Approval(approve=self.approved, deny=self.denied)),
                On("expired", Timeout(after=timedelta(days=1)), Return(error="expired")),
            ),
            Step("pay", self.w("pay")),
            Wait("feedback", On("feedback", Input(Note, self.feedback))),
            Step("thank", self.w("thank")),
            Return(f"{self.traveller}: {', '.join(self.log)}"),
        )

    def w(self, what: str):  # type: ignore[no-untyped-def]
        def act() -> None:
            RUNS.append(what)
            self.log.append(what)

        return act

    def approved(self, decision: Decision) -> None:
        self.log.append(f"approved by {decision.actor}")

    def denied(self, decision: Decision) -> None:
        raise AssertionError("not in these tests")

    def feedback(self, note: Note) -> None:
        self.log.append(f"said {note.text}")


class Other(Workflow):
    workflow_name = "other-one"

    def definition(self) -> S:
        return S(Wait("w", On("go", Input(Note, lambda _: None))))


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Engine:
    RUNS.clear()
    return Engine(sqlite_url, [Trip, Other], clock=clock, operators=["ops", "ann"])


def test_a_fresh_engine_on_the_same_file_continues_an_instance_mid_way(
    engine: Engine, sqlite_url: str, clock: Clock
) -> None:
    iid = engine.start(Trip, {"traveller": "ann", "nights": 2}, id="trip-1")
    assert iid == "trip-1"
    engine.close()

    second = Engine(sqlite_url, [Trip], clock=clock)
    second.send(iid, "approval", {"approved": True}, actor="boss")
    second.close()

    third = Engine(sqlite_url, [Trip], clock=clock)
    got = third.send(iid, "feedback", {"text": "great"}, actor="ann")
    assert got.status == "completed"
    assert got.result == "ann: book, approved by boss, pay, said great, thank"
    assert RUNS == ["book", "pay", "thank"]  # each step ran exactly once across the engines
    kinds = [(h.kind, h.name, h.actor) for h in third.history(iid)]
    assert kinds == [
        ("started", "Trip", None),
        ("step", "book", None),
        ("waiting", "approval", None),
        ("decision", "approval", "boss"),
        ("step", "pay", None),
        ("waiting", "feedback", None),
        ("event", "feedback", "ann"),
        ("step", "thank", None),
        ("completed", None, None),
    ]


def test_get_returns_a_snapshot_readable_as_attributes_mapping_and_json(
    engine: Engine, clock: Clock
) -> None:
    iid = engine.start("Trip", {"traveller": "bo"})
    got = engine.get(iid)
    assert (got.id, got.workflow, got.status, got["status"]) == (iid, "Trip", "waiting", "waiting")
    assert got.data == {"traveller": "bo", "nights": 1, "log": ["book"]}
    assert (got.result, got.error, got.created_at) == (None, None, clock.now)
    main = got.thread("main")
    assert (main.id, main.name, main.status, main.step, main.error, main.attempts) == (
        "main",
        "main",
        "waiting",
        "approval",
        None,
        0,
    )
    assert [(w.event, w.kind, w.due_at) for w in main.waits] == [
        ("approval", "approval", None),
        ("expired", "timeout", clock.now + timedelta(days=1)),
    ]
    as_json = json.loads(json.dumps(got.to_dict()))
    assert as_json["id"] == iid
    due = (clock.now + timedelta(days=1)).isoformat()
    assert as_json["threads"][0]["waits"][1]["due_at"] == due
    with pytest.raises(KeyError):
        got["_private"]


def test_unknown_instances_are_reported_by_every_call(engine: Engine) -> None:
    calls = {
        "get": lambda: engine.get("nope"),
        "history": lambda: engine.history("nope"),
        "send": lambda: engine.send("nope", "approval", {"approved": True}),
        "retry": lambda: engine.retry("nope"),
        "cancel": lambda: engine.cancel("nope"),
        "goto": lambda: engine.goto("nope", "main", "pay"),
    }
    for call in calls.values():
        with pytest.raises(InstanceNotFound, match="no instance with id 'nope'"):
            call()


def test_start_refuses_unknown_workflows_bad_data_and_bad_ids(engine: Engine) -> None:
    with pytest.raises(
        UnknownWorkflow, match=r"no workflow named 'Cruise'.*known: Trip, other-one"
    ):
        engine.start("Cruise")
    with pytest.raises(InvalidData, match=r"Trip has no field.*: colour"):
        engine.start(Trip, {"colour": "red"})
    with pytest.raises(
        InvalidData, match="invalid data for Trip: nights: Input should be a valid integer"
    ):
        engine.start(Trip, {"nights": "many"})
    for bad in ("", "has space", "-dash-first", "x" * 101, "a/b"):
        with pytest.raises(InvalidData, match="an instance id is"):
            engine.start(Trip, id=bad)
    engine.start(Trip, id="dup")
    with pytest.raises(Conflict, match="an instance with id 'dup' already exists"):
        engine.start(Trip, id="dup")
    assert [s.id for s in engine.list()] == ["dup"]  # nothing else was stored


def test_an_instance_of_a_workflow_not_registered_here_is_readable_but_not_drivable(
    engine: Engine, sqlite_url: str
) -> None:
    iid = engine.start(Trip)
    elsewhere = Engine(sqlite_url, [Other])
    assert elsewhere.get(iid).status == "waiting"
    with pytest.raises(UnknownWorkflow, match="runs workflow 'Trip', which is not registered"):
        elsewhere.send(iid, "approval", {"approved": True})


def test_cancel_stops_the_instance_and_tears_its_waits_down(engine: Engine, clock: Clock) -> None:
    iid = engine.start(Trip)
    got = engine.cancel(iid, "trip called off", actor="ann")
    assert (got.status, got.error) == ("cancelled", "trip called off")
    assert got.thread("main").status == "stopped"
    assert got.waits == [] and got.due_at is None
    assert engine.open_approvals(instance_id=iid) == []
    entry = engine.history(iid)[-1]
    assert (entry.kind, entry.actor, entry.message) == ("cancelled", "ann", "trip called off")

    with pytest.raises(Conflict, match="is already cancelled"):
        engine.cancel(iid)
    with pytest.raises(Conflict, match="is cancelled"):
        engine.send(iid, "approval", {"approved": True}, actor="boss")
    assert engine.run_due(clock.advance(days=2)) == 0  # the timeout died with it
    assert engine.get(iid).status == "cancelled"


def test_a_finished_instance_cannot_be_cancelled_retried_or_moved(engine: Engine) -> None:
    iid = engine.start(Trip)
    engine.send(iid, "approval", {"approved": True})
    engine.send(iid, "feedback", {"text": "ok"})
    for call in (
        lambda: engine.cancel(iid),
        lambda: engine.retry(iid),
        lambda: engine.goto(iid, "main", "pay"),
    ):
        with pytest.raises(Conflict, match="is already completed"):
            call()


def test_retry_needs_a_failed_thread(engine: Engine) -> None:
    iid = engine.start(Trip)
    with pytest.raises(Conflict, match=r"has no failed thread to retry.*status: waiting"):
        engine.retry(iid)


def test_goto_continues_a_thread_at_a_named_step_and_refuses_unknown_names(engine: Engine) -> None:
    iid = engine.start(Trip)
    with pytest.raises(Conflict, match="has no thread 'ghost'"):
        engine.goto(iid, "ghost", "pay")
    with pytest.raises(Conflict, match="thread 'main' has no step or wait named 'fly'"):
        engine.goto(iid, "main", "fly")
    got = engine.goto(iid, "main", "pay", actor="ops")  # skip the approval
    assert (got.status, got.thread("main").step) == ("waiting", "feedback")
    assert got.data["log"] == ["book", "pay"]
    # the approval wait it left was torn down; its timer no longer counts
    assert [w.event for w in got.waits] == ["feedback"]
    # goto to a wait sets it up again
    got = engine.goto(iid, "main", "approval")
    assert [w.event for w in got.waits] == ["approval", "expired"]


def test_send_needs_thread_when_several_threads_wait_for_the_same_event(sqlite_url: str) -> None:
    class Pair(Workflow):
        log: str = ""

        def definition(self) -> S:
            return S(
                Go("left", S(Wait("left wait", On("ping", Input(Note, self.got("L")))))),
                Go("right", S(Wait("right wait", On("ping", Input(Note, self.got("R")))))),
                Wait("main wait", On("end", Input(Note, self.got("E")))),
            )

        def got(self, side: str):  # type: ignore[no-untyped-def]
            def act(note: Note) -> None:
                self.log += side + note.text

            return act

    engine = Engine(sqlite_url, [Pair])
    iid = engine.start(Pair)
    with pytest.raises(Conflict, match=r"several threads of .* wait for 'ping' \(left, right\)"):
        engine.send(iid, "ping", {"text": "1"})
    engine.send(iid, "ping", {"text": "2"}, thread="right")
    with pytest.raises(NotWaiting):
        engine.send(iid, "ping", {"text": "3"}, thread="nobody")
    got = engine.send(iid, "ping", {"text": "4"})  # only one waits now
    assert got.data["log"] == "R2L4"


def test_list_filters_searches_and_pages_most_recent_first(engine: Engine, clock: Clock) -> None:
    ids = []
    for n in range(5):
        clock.advance(minutes=1)
        ids.append(engine.start(Trip, {"traveller": f"person-{n}"}, id=f"t{n}"))
    clock.advance(minutes=1)
    engine.start(Other, id="o1")
    clock.advance(minutes=1)
    engine.cancel("t1")

    assert [s.id for s in engine.list()] == ["t1", "o1", "t4", "t3", "t2", "t0"]
    waiting_trips = engine.list(status="waiting", workflow="Trip")
    assert [s.id for s in waiting_trips] == ["t4", "t3", "t2", "t0"]
    assert [s.id for s in engine.list(workflow="other-one")] == ["o1"]
    assert [s.id for s in engine.list(status="cancelled")] == ["t1"]
    assert [s.id for s in engine.list(search="person-3")] == ["t3"]
    assert [s.id for s in engine.list(search="t2")] == ["t2"]
    first = engine.list(limit=2)
    assert [s.id for s in first] == ["t1", "o1"]
    last = first[-1]
    after = engine.list(limit=3, before=(last.updated_at, last.id))
    assert [s.id for s in after] == ["t4", "t3", "t2"]
    summary = engine.list(workflow="Trip", status="waiting", limit=1)[0]
    assert (summary.status, summary.waiting_for) == ("waiting", ["approval", "expired"])
    assert engine.counts() == {"waiting": 5, "cancelled": 1}


def test_the_clock_must_be_aware(sqlite_url: str) -> None:
    naive = Engine(sqlite_url, [Trip], clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="aware UTC"):
        naive.start(Trip)


def test_run_due_without_a_time_uses_the_engine_clock(engine: Engine, clock: Clock) -> None:
    iid = engine.start(Trip)
    clock.advance(days=1)
    assert engine.run_due() == 1
    got = engine.get(iid)
    assert (got.status, got.error) == ("completed", "expired")


def _all(view: Any) -> dict[str, Any]:
    return dict(view.to_dict())


def test_history_is_the_audit_trail_of_who_did_what_via_what_and_when(
    engine: Engine, clock: Clock
) -> None:
    iid = engine.start(Trip, actor="ann", via="web")
    clock.advance(minutes=2)
    engine.send(iid, "approval", {"approved": True, "reason": "ok"}, actor="boss", via="slack")
    started, *_, decision = [h for h in engine.history(iid) if h.kind in ("started", "decision")]
    assert (started.actor, started.via) == ("ann", "web")
    assert _all(decision) | {"id": 0} == {
        "id": 0,
        "instance_id": iid,
        "at": clock.now.isoformat(),
        "kind": "decision",
        "thread": "main",
        "name": "approval",
        "actor": "boss",
        "via": "slack",
        "message": "approved: ok",
        "detail": {"wait": "approval", "payload": {"approved": True, "reason": "ok"}},
    }
    assert datetime.fromisoformat(_all(decision)["at"]).tzinfo == UTC
