"""One bad row harms one instance.

An office runs three expenses: "bad" and "good" wait for alice's approval (each with a one-hour
timeout), "done" was approved. Then something writes garbage into bad's stored state (or its
data) behind signoff's back: a hand edit, a bad restore. From then on bad is shown as failed
with "stored state unreadable: ..." and refuses, with `CorruptState`, whatever needs its state;
everything else goes on: lists, the inbox, counts, the due timers of the others, the dashboard
and `signoff check`; and an operator can still cancel bad.

On a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from signoff.engine import Conflict, CorruptState, Engine, NotAllowed, SignoffError
from signoff.web.cli import main
from sqlalchemy import text
from web_support import ORIGIN, TestClient, make_app, sign_in

from tests.conftest import Clock
from tests.corrupt_workflows import Expense

# (column, what is written there, how the instance's error begins)
GARBAGE = [
    pytest.param("state", "[]", "stored state unreadable: Input should be an object", id="array"),
    pytest.param(
        "state",
        '{"threads": {"main": {"id": "main", "na',
        "stored state unreadable: Invalid JSON: EOF while parsing a string",
        id="truncated",
    ),
    pytest.param(
        "state",
        '{"threads": 5}',
        "stored state unreadable: threads: Input should be an object",
        id="threads-a-number",
    ),
    pytest.param(
        "data", '{"amount": 12', "stored data unreadable: not JSON (Expecting", id="data-cut"
    ),
    pytest.param("data", "[12]", "stored data unreadable: an array, not an object", id="data[]"),
]
STATE_AND_DATA = [GARBAGE[1], GARBAGE[3]]  # for the longer stories: one of each
ALICE = {"Authorization": "Bearer token-alice-0123456789"}


@pytest.fixture
def office(any_url: str, clock: Clock) -> Iterator[Engine]:
    engine = Engine(any_url, [Expense], clock=clock, operators=["ops", "alice"])
    engine.start(Expense, {"amount": 12}, id="bad", actor="bob")
    engine.start(Expense, {"amount": 30}, id="good", actor="bob")
    engine.start(Expense, {"amount": 5}, id="done", actor="bob")
    engine.send("done", "decision", {"approved": True}, actor="alice")
    yield engine
    engine.close()


def vandalise(engine: Engine, instance_id: str, column: str, value: str) -> None:
    """Write `value` into one column of one instance row with plain SQL, as a hand edit or a
    bad restore would. It moves the version, as every writer of the row must (a copy some
    process kept of the row is then known to be stale)."""
    assert column in ("state", "data")
    with engine.store.db.begin() as conn:
        conn.execute(
            text(
                f"UPDATE signoff_instances SET {column} = :value, version = version + 1 "
                "WHERE id = :id"
            ),
            {"value": value, "id": instance_id},
        )


def stored(engine: Engine, instance_id: str) -> dict[str, Any]:
    """The row as the database holds it, and how many wait rows it has."""
    with engine.store.db.connect() as conn:
        row = dict(
            conn.execute(
                text(
                    "SELECT status, error, state, data, due_at, lease_owner, version "
                    "FROM signoff_instances WHERE id = :id"
                ),
                {"id": instance_id},
            )
            .mappings()
            .one()
        )
        row["waits"] = conn.execute(
            text("SELECT count(*) FROM signoff_waits WHERE instance_id = :id"), {"id": instance_id}
        ).scalar()
    return row


@pytest.mark.parametrize(("column", "garbage", "problem"), GARBAGE)
def test_the_bad_instance_is_shown_failed_and_refuses_what_needs_its_state(
    office: Engine, column: str, garbage: str, problem: str
) -> None:
    engine = office
    vandalise(engine, "bad", column, garbage)
    before = stored(engine, "bad")

    view = engine.get("bad")
    assert view.status == "failed" and view.error is not None
    assert view.error.startswith(problem), view.error
    assert view.threads == [] and view.waits == []
    assert view.data == ({"amount": 12, "approved": False} if column == "state" else {})
    assert view.to_dict()["error"] == view.error  # what the API serves
    # the audit trail reads as before
    assert [h.kind for h in engine.history("bad")] == ["started", "waiting"]
    assert engine.outcome("bad").outcome == "failed"

    refusals = [
        lambda: engine.send("bad", "decision", {"approved": True}, actor="alice"),
        lambda: engine.check_event("bad", "decision", {"approved": True}, actor="alice"),
        lambda: engine.retry("bad", actor="ops"),
        lambda: engine.goto("bad", "main", "approval", actor="ops"),
    ]
    for refused in refusals:
        with pytest.raises(CorruptState) as caught:
            refused()
        assert isinstance(caught.value, SignoffError)
        assert caught.value.instance_id == "bad" and caught.value.problem == view.error
        assert str(caught.value).startswith(f"instance bad: {problem}")
    assert stored(engine, "bad") == before  # nothing was written

    # the others go on as if nothing happened
    assert engine.send("good", "decision", {"approved": True}, actor="alice").status == "completed"
    assert engine.get("done").status == "completed"


@pytest.mark.parametrize(("column", "garbage", "problem"), GARBAGE)
def test_lists_the_inbox_and_counts_go_on(
    office: Engine, column: str, garbage: str, problem: str
) -> None:
    engine = office
    vandalise(engine, "bad", column, garbage)

    listed = {s.id: s for s in engine.list()}
    assert sorted(listed) == ["bad", "done", "good"]
    assert (listed["good"].status, listed["good"].summary) == ("waiting", {"amount": 30})
    assert listed["done"].outcome == "approved"
    if column == "data":  # the list reads the data (for its summary): bad shows as failed
        assert listed["bad"].status == "failed" and listed["bad"].error == engine.get("bad").error
    else:  # a waiting row's state is not read for a list
        assert listed["bad"].status == "waiting"
    assert [s.id for s in engine.list(search="amount:30")] == ["good"]
    assert [s.id for s in engine.list(status="completed")] == ["done"]
    assert engine.counts() == {"waiting": 2, "completed": 1}
    assert engine.counts(search="amount:30") == {"waiting": 1}

    # the inbox lists bad, so the count and the page agree, but nobody may decide it
    inbox = {r["instance_id"]: r for r in engine.inbox("alice")}
    assert sorted(inbox) == ["bad", "good"] and engine.inbox_count("alice") == 2
    assert inbox["good"]["may_decide"] is True and inbox["good"]["summary"] == {"amount": 30}
    assert inbox["bad"]["may_decide"] is False
    assert inbox["bad"]["refusal"].startswith(problem)
    assert len(engine.inbox(None)) == 2
    approvals = {r["instance_id"]: r for r in engine.open_approvals(actor="alice")}
    assert approvals["good"]["may_decide"] is True
    assert approvals["bad"]["may_decide"] is False
    assert approvals["bad"]["refusal"].startswith(problem)
    assert engine.decision_refusals("good", "alice") == {("main", "decision"): None}
    assert engine.decision_refusals("bad", "alice") == {}
    assert engine.deny_needs_reason("bad", "main", "decision") is True
    assert engine.statement_counts() == {"Expense": {"approval": 2}}
    assert [h.kind for h in engine.history("good")] == ["started", "waiting"]


@pytest.mark.parametrize(("column", "garbage", "problem"), GARBAGE)
def test_an_operator_cancels_it_without_reading_it(
    office: Engine, column: str, garbage: str, problem: str
) -> None:
    engine = office
    vandalise(engine, "bad", column, garbage)
    with pytest.raises(NotAllowed):
        engine.cancel("bad", "bob would rather", actor="bob")

    view = engine.cancel("bad", "damaged by a restore", actor="ops")
    assert (view.status, view.error) == ("cancelled", "damaged by a restore")
    last = engine.history("bad")[-1]
    assert (last.kind, last.actor, last.message) == ("cancelled", "ops", "damaged by a restore")
    row = stored(engine, "bad")
    assert (row["status"], row["due_at"], row["lease_owner"], row["waits"]) == (
        "cancelled",
        None,
        None,
        0,
    )  # out of the inbox, its timer gone
    if column == "state":  # what could not be read is kept as it was, for whoever restores it
        assert row["state"] == garbage
    assert [r["instance_id"] for r in engine.inbox("alice")] == ["good"]
    assert engine.counts() == {"waiting": 1, "completed": 1, "cancelled": 1}
    assert engine.outcome("bad").outcome == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        engine.cancel("bad", actor="ops")


@pytest.mark.parametrize(("column", "garbage", "problem"), STATE_AND_DATA)
def test_due_timers_of_the_others_fire_and_the_bad_one_fails_once(
    office: Engine,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    column: str,
    garbage: str,
    problem: str,
) -> None:
    engine = office
    as_written = stored(engine, "bad")[column]
    vandalise(engine, "bad", column, garbage)
    clock.advance(hours=2)  # both timeouts are due

    with caplog.at_level(logging.WARNING):
        assert engine.run_due() == (1 if column == "state" else 2)  # and raises nothing
    told = [r.levelname for r in caplog.records if getattr(r, "instance_id", "") == "bad"]
    assert (engine.get("good").status, engine.get("good").error) == ("completed", "timed out")
    row = stored(engine, "bad")
    assert row["status"] == "failed" and row["due_at"] is None and row["waits"] == 0
    assert engine.get("bad").error.startswith(problem)
    assert engine.history("bad")[-1].kind == "failed"
    if column == "state":  # failed without being read: told once, in the log and the history
        assert told == ["WARNING", "ERROR"]  # read, then failed
        assert row["error"] == engine.get("bad").error == engine.history("bad")[-1].message
    else:  # its state can be read: the thread that needed the data failed, as it does when a
        # definition cannot be built from the data
        assert "stored data unreadable" in (engine.history("bad")[-1].message or "")

    # it is not due again: later drains find nothing, and nothing is told again
    caplog.clear()
    clock.advance(hours=1)
    assert engine.run_due() == 0 and engine.drain_due() == (0, True)
    assert not [r for r in caplog.records if getattr(r, "instance_id", "") == "bad"]
    # a failed instance's threads are counted from its state, when it can be read
    standing = {} if column == "state" else {"Expense": {"approval": 1}}
    with caplog.at_level(logging.WARNING):
        assert engine.statement_counts() == standing
    assert any("not counted" in r.getMessage() for r in caplog.records) == (column == "state")
    if column == "data":  # the operator cancels it
        assert engine.cancel("bad", actor="ops").status == "cancelled"
        return
    # or restores its row from a backup, and moves its thread back into the wait
    vandalise(engine, "bad", column, as_written)
    assert engine.get("bad").status == "failed"  # as the drain left it
    view = engine.goto("bad", "main", "approval", actor="ops")
    assert view.status == "waiting" and view.thread("main").step == "approval"
    assert engine.send("bad", "decision", {"approved": True}, actor="alice").status == "completed"


@pytest.mark.parametrize(("column", "garbage", "problem"), STATE_AND_DATA)
def test_the_dashboard_and_the_api_show_it_and_everything_else(
    office: Engine, column: str, garbage: str, problem: str
) -> None:
    engine = office
    vandalise(engine, "bad", column, garbage)
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as client:
        approvals = client.get("/api/approvals", headers=ALICE)
        assert approvals.status_code == 200
        rows = {r["instance_id"]: r for r in approvals.json()["approvals"]}
        assert rows["good"]["may_decide"] is True and rows["bad"]["may_decide"] is False

        shown = client.get("/api/instances/bad", headers=ALICE)
        assert shown.status_code == 200
        assert shown.json()["status"] == "failed" and shown.json()["error"].startswith(problem)
        refused = client.post(
            "/api/instances/bad/events/decision",
            json={"payload": {"approved": True}},
            headers=ALICE,
        )
        assert refused.status_code == 409 and problem in refused.text

        client.headers["X-CSRF-Token"] = sign_in(client, "alice")
        client.headers["Origin"] = ORIGIN
        for page in ("/", "/approvals", "/workflows", "/instances/good"):
            assert client.get(page).status_code == 200, page
        assert ">good<" in client.get("/approvals").text
        listing = client.get("/").text
        assert ">bad<" in listing and ">good<" in listing
        page = client.get("/instances/bad")
        assert page.status_code == 200 and problem in page.text
        assert 'action="/instances/bad/cancel"' in page.text  # the operator's way out

        cancelled = client.post("/instances/bad/cancel", data={"reason": "damaged"})
        assert cancelled.status_code == 303
        assert client.get("/api/instances/bad", headers=ALICE).json()["status"] == "cancelled"
        page = client.get("/instances/bad")
        assert page.status_code == 200 and "damaged" in page.text


@pytest.mark.parametrize(("column", "garbage", "problem"), STATE_AND_DATA)
def test_signoff_check_lists_it_as_unreadable(
    office: Engine,
    any_url: str,
    capsys: pytest.CaptureFixture[str],
    column: str,
    garbage: str,
    problem: str,
) -> None:
    vandalise(office, "bad", column, garbage)
    check = ["check", "--db", any_url, "--workflows", "tests.corrupt_workflows"]

    assert main(check) == 1  # an operator must see it
    out = capsys.readouterr().out
    assert "ok    deployment strands none of 2 unfinished instance(s)" in out
    assert "FAIL  1 unfinished instance(s) cannot be read" in out
    assert f"        Expense: 1 (bad); e.g. {problem}" in out

    assert main([*check, "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found["ok"] is False and found["problems"] == []
    deployment = found["deployment"]
    assert (deployment["checked"], deployment["unreadable_instances"]) == (2, 1)
    [row] = deployment["unreadable"]
    assert (row["workflow"], row["what"], row["examples"]) == ("Expense", column, ["bad"])
    assert row["detail"].startswith(problem)

    office.cancel("bad", actor="ops")  # what the operator does: then all is well
    assert main(check) == 0
