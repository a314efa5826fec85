"""What every database keeps exactly, and what each refuses plainly, on SQLite, PostgreSQL and
MariaDB alike: 4-byte characters (emoji) everywhere text goes, ids that differ only in case,
microseconds; NUL bytes, over-long ids and names and data over the size limit are refused with
a clear error and nothing stored (an over-long statement name, which only the workflow's code
can bring, fails the instance with the database's words, as on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel
from signoff.engine import (
    Approval,
    Decision,
    Engine,
    EventRejected,
    Input,
    InvalidData,
    On,
    Return,
    S,
    Step,
    Wait,
    Workflow,
)

from tests.conftest import Clock

EMOJI = "zoë 🎉 漢字 ✓"


class Note(BaseModel):
    text: str = ""


class Party(Workflow):
    """Names, titles, data and an approver all in 4-byte characters."""

    note: str = ""
    approved_by: str = ""

    def definition(self) -> S:
        return S(
            Step("prepare 🎈", lambda: None),
            Wait(
                "approve 🎉",
                On(
                    "decide 👍",
                    Approval(
                        approve=self.yes,
                        deny=self.no,
                        title=f"Party: {self.note}",
                        approvers=["zoë🎉"],
                    ),
                ),
                On("note 📝", Input(Note, self.take)),
            ),
            Return(f"{self.note} / {self.approved_by}"),
        )

    def yes(self, decision: Decision) -> None:
        self.approved_by = decision.actor or ""

    def no(self, decision: Decision) -> None:
        self.approved_by = ""

    def take(self, value: Note) -> None:
        self.note = value.text


class LongName(Workflow):
    def definition(self) -> S:
        return S(Step("x" * 300, lambda: None), Return(1))


@pytest.fixture
def engine(any_url: str) -> Iterator[Engine]:
    clock = Clock(datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC))
    made = Engine(any_url, [Party, LongName], clock=clock, operators=["ops"])
    yield made
    made.close()


def test_four_byte_characters_are_kept_wherever_text_goes(engine: Engine) -> None:
    iid = engine.start(Party, {"note": EMOJI}, id="party-1")
    view = engine.get(iid)
    assert view.data["note"] == EMOJI
    [wait] = [w for w in view.waits if w.kind == "approval"]
    assert (wait.wait, wait.event, wait.info["title"]) == (
        "approve 🎉",
        "decide 👍",
        f"Party: {EMOJI}",
    )
    [request] = engine.inbox("zoë🎉")
    assert request["title"] == f"Party: {EMOJI}"
    assert [r.id for r in engine.list(search="🎉")] == [iid]
    assert [r.id for r in engine.list(search=f"note:{EMOJI}")] == [iid]

    done = engine.send(iid, "decide 👍", {"approved": True}, actor="zoë🎉")
    assert done.result == f"{EMOJI} / zoë🎉"
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.name) == ("zoë🎉", "decide 👍")
    assert [h.name for h in engine.history(iid) if h.kind == "step"] == ["prepare 🎈"]


def test_ids_that_differ_only_in_case_are_two_instances(engine: Engine) -> None:
    engine.start(Party, {"note": "upper"}, id="Order-1")
    engine.start(Party, {"note": "lower"}, id="order-1")
    assert engine.get("Order-1").data["note"] == "upper"
    assert engine.get("order-1").data["note"] == "lower"
    assert sorted(r.id for r in engine.list(search="Order")) == ["Order-1"]


def test_times_keep_their_microseconds(engine: Engine) -> None:
    view = engine.get(engine.start(Party))
    assert view.created_at == datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    assert [h.at.microsecond for h in engine.history(view.id)] == [123456] * 3


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda e: e.start(Party, {"note": "a\x00b"}), InvalidData, "NUL"),
        (lambda e: e.start(Party, id="a\x00b"), InvalidData, "1-100 letters"),
        (lambda e: e.start(Party, id="x" * 101), InvalidData, "1-100 letters"),
        (lambda e: e.start(Party, {"note": "x" * (300 * 1024)}), InvalidData, "larger than"),
        (lambda e: e.start(Party, actor="x" * 201), InvalidData, "longer than 200"),
        (lambda e: e.start(Party, actor="a\x00"), InvalidData, "control character"),
    ],
)
def test_a_start_with_bad_input_is_refused_and_nothing_is_stored(
    engine: Engine, call: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        call(engine)
    assert engine.counts() == {}
    assert engine.list() == []


@pytest.mark.parametrize(
    ("event", "payload", "actor", "error", "words"),
    [
        ("note 📝", {"text": "a\x00b"}, None, EventRejected, "NUL"),
        ("note 📝", {"text": "x" * (300 * 1024)}, None, EventRejected, "larger than"),
        ("decide 👍", {"approved": True}, "x" * 201, InvalidData, "longer than 200"),
        ("decide 👍", {"approved": True}, "zoë\x00", InvalidData, "control character"),
        ("note\x00", {}, None, InvalidData, "NUL"),
    ],
)
def test_an_event_with_bad_input_is_refused_and_changes_nothing(
    engine: Engine,
    event: str,
    payload: dict[str, Any],
    actor: str | None,
    error: type[Exception],
    words: str,
) -> None:
    iid = engine.start(Party)
    before, entries = engine.get(iid), len(engine.history(iid))
    with pytest.raises(error, match=words):
        engine.send(iid, event, payload, actor=actor)
    after = engine.get(iid)
    assert (after.version, after.data, after.status) == (before.version, before.data, "waiting")
    assert len(engine.history(iid)) == entries


def test_a_name_too_long_for_its_column_fails_the_instance_with_the_database_s_words(
    engine: Engine, any_url: str
) -> None:
    if any_url.startswith("sqlite"):
        pytest.skip("SQLite keeps text of any length in any column")
    view = engine.get(engine.start(LongName))
    assert view.status == "failed"
    assert view.error is not None
    assert view.error.startswith("a commit was refused, so the instance stopped here: the database")
    assert "200" in view.error or "too long" in view.error
    assert engine.counts() == {"failed": 1}


def test_search_takes_wildcards_literally(engine: Engine) -> None:
    engine.start(Party, {"note": "50% off_now \\ back"}, id="literal")
    engine.start(Party, {"note": "500 offXnow"}, id="other")
    for text in ("50%", "off_now", "\\ back", "note:50% off"):
        assert [r.id for r in engine.list(search=text)] == ["literal"], text
    assert [r.id for r in engine.list(search="lit")] == ["literal"]  # an id prefix
    assert engine.list(search="l_teral") == []
    for text in ("50%", "off_now", "lit"):  # the inbox matches as the list does
        assert [r["instance_id"] for r in engine.inbox("zoë🎉", search=text)] == ["literal"]
        assert engine.inbox_count("zoë🎉", search=text) == 1
    assert engine.counts(search="off_now") == {"waiting": 1}


def test_the_applications_own_engine_is_used_as_it_is(server_url: str) -> None:
    """Given the application's SQLAlchemy engine, signoff borrows its connections and gives
    them back as the application expects them (not in autocommit mode)."""
    import sqlalchemy

    app = sqlalchemy.create_engine(server_url)
    engine = Engine(app, [Party])
    try:
        iid = engine.start(Party, {"note": EMOJI})
        assert engine.send(iid, "note 📝", {"text": "ok 🎉"}).data["note"] == "ok 🎉"
        assert engine.list(search="ok 🎉")[0].id == iid
        with app.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE notes (body VARCHAR(20))"))
        with app.connect() as conn:
            conn.execute(sqlalchemy.text("INSERT INTO notes VALUES ('draft')"))
            conn.rollback()  # the application's own transactions work as before
            count = sqlalchemy.text("SELECT count(*) FROM notes")
            assert conn.execute(count).scalar() == 0
    finally:
        engine.close()
        app.dispose()


def test_a_search_that_reads_too_long_is_stopped_and_the_connection_serves_on(
    server_url: str,
) -> None:
    """(PostgreSQL's statement_timeout, MariaDB's max_statement_time; SQLite's progress
    handler looks only every 100,000 instructions.)"""
    from signoff.engine.errors import Busy
    from signoff.engine.storage.store import Store
    from signoff.engine.storage.tables import INSTANCES

    store = Store(server_url)
    try:
        at = datetime(2026, 3, 1, tzinfo=UTC)
        rows = [
            {
                "id": f"i{n:05}",
                "workflow": "Party",
                "status": "waiting",
                "data": '{"note": "' + "abc " * 1000 + '"}',
                "state": "{}",
                "version": 1,
                "created_at": at,
                "updated_at": at,
            }
            for n in range(4000)
        ]
        with store.write() as conn:
            conn.execute(INSTANCES.insert(), rows)
        store.pager.search_timeout = 0.001
        with pytest.raises(Busy, match=r"took longer than 0\.001 s"):
            store.page(search="nowhere to be found")
        store.pager.search_timeout = 30.0
        assert store.page(search="nowhere to be found") == []  # the limit was lifted again
        assert len(store.page(limit=5)) == 5
    finally:
        store.close()
