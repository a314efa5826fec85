"""When the database refuses: a full disk, a read-only file, a file that cannot be opened, a
PostgreSQL server that is away or read-only. Every refusal reaches the caller as a
`StorageError` whose sentence says what happened and whether the change was committed; the
API answers 503, the page shows it, the command line prints it and exits 1.

The disk fills up for real: SQLite's `max_page_count`, capped at the file's current size on
every connection the application's engine hands out, makes the next write that needs a new
page fail with SQLITE_FULL, "database or disk is full". A read-only file is opened read-only
(`?mode=ro`): the tests run as root, which file permissions do not stop.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from pydantic import BaseModel
from signoff.engine import (
    Approval,
    AsyncEngine,
    Decision,
    Engine,
    Input,
    On,
    Return,
    S,
    SignoffError,
    Statement,
    Step,
    StorageError,
    Wait,
    Workflow,
    upgrade_database,
)
from signoff.engine.storage.failures import reason
from signoff.web.cli import main
from sqlalchemy import event
from web_support import ORIGIN, TOKENS, TestClient, make_app

from tests.conftest import Clock

TRACE: list[str] = []
ALICE = {"Authorization": f"Bearer {next(t for t, who in TOKENS.items() if who == 'alice')}"}


class Disk:
    """A SQLite file behind the application's own SQLAlchemy engine, whose disk can fill up:
    while `full`, every connection taken from the pool may not grow the file by a page."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.full = False
        self.db = sqlalchemy.create_engine(f"sqlite:///{path}")

        @event.listens_for(self.db, "checkout")
        def _cap(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            if self.full:
                pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
                dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")
            else:
                dbapi_conn.execute("PRAGMA max_page_count = 1073741823")

    def fill(self) -> None:
        self.full = True


DISK: Disk | None = None  # the disk of the test that runs now


class Payment(Workflow):
    """An approval, then a payment whose receipt is large (it needs new pages)."""

    approved: bool = False
    receipt: str = ""
    fill_disk_while_paying: bool = False

    def definition(self) -> Statement:
        return S(
            Wait("approval", On("approval", Approval(approve=self.yes, deny=self.no))),
            Step("pay", self.pay),
            Return(),
        )

    def yes(self, decision: Decision) -> None:
        self.approved = True
        TRACE.append(f"approved by {decision.actor}")

    def no(self, decision: Decision) -> None:
        TRACE.append("denied")

    def pay(self) -> None:
        TRACE.append("pay")
        if self.fill_disk_while_paying and DISK is not None and not TRACE.count("pay") > 1:
            DISK.fill()  # the disk fills up while the payment runs, once
        self.receipt = "receipt " * 8_000


class Note(BaseModel):
    text: str


class Notes(Workflow):
    """Takes one long note through a form."""

    note: str = ""

    def definition(self) -> Statement:
        return S(Wait("note", On("note", Input(Note, self.take))), Return())

    def take(self, note: Note) -> None:
        self.note = note.text


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    global DISK
    TRACE.clear()
    DISK = Disk(tmp_path / "signoff.db")
    yield DISK
    DISK = None
    TRACE.clear()


def on_disk(disk: Disk, clock: Clock) -> Engine:
    return Engine(disk.db, workflows=[Payment, Notes], clock=clock, lease=timedelta(seconds=10))


def test_a_full_disk_after_the_decision_says_it_was_committed_and_the_payment_runs_later(
    disk: Disk, clock: Clock
) -> None:
    engine = on_disk(disk, clock)
    iid = engine.start(Payment, {"fill_disk_while_paying": True})

    with pytest.raises(StorageError) as refused:
        engine.send(iid, "approval", {"approved": True}, actor="alice")
    assert str(refused.value) == "the decision was committed; the database then refused: disk full"
    assert refused.value.committed is True
    assert refused.value.reason == "disk full"

    # the decision stands; the payment's commit was refused, so the payment is not done
    view = engine.get(iid)
    assert (view.status, view.data["approved"], view.data["receipt"]) == ("running", True, "")
    assert [h.kind for h in engine.history(iid)].count("decision") == 1

    # space is made; once the lease of the refused drive runs out, the payment runs again
    disk.full = False
    clock.advance(seconds=11)
    assert engine.run_due() == 1
    view = engine.get(iid)
    assert view.status == "completed" and view.data["receipt"].startswith("receipt ")
    assert TRACE == ["approved by alice", "pay", "pay"]


def test_a_full_disk_refuses_a_form_and_nothing_is_committed(disk: Disk, clock: Clock) -> None:
    engine = on_disk(disk, clock)
    iid = engine.start(Notes)
    before = engine.get(iid)
    disk.fill()

    with pytest.raises(StorageError) as refused:
        engine.send(iid, "note", {"text": "a long note " * 5_000}, actor="alice")
    assert str(refused.value) == "nothing was committed: the database refused: disk full"
    assert refused.value.committed is False

    after = engine.get(iid)  # reads go on while the disk is full
    assert (after.status, after.version, after.data) == ("waiting", before.version, {"note": ""})
    assert [h.kind for h in engine.history(iid)] == ["started", "waiting"]

    disk.full = False
    assert engine.send(iid, "note", {"text": "short"}, actor="alice").status == "completed"


def test_a_full_disk_reaches_an_asyncio_application_the_same_way(disk: Disk, clock: Clock) -> None:
    import asyncio

    async def story() -> StorageError:
        engine = AsyncEngine(disk.db, workflows=[Notes], clock=clock)
        iid = await engine.start(Notes)
        disk.fill()
        try:
            await engine.send(iid, "note", {"text": "x" * 50_000})
        except StorageError as exc:
            return exc
        finally:
            await engine.close()
        raise AssertionError("the send was not refused")

    refused = asyncio.run(story())
    assert not refused.committed and "disk full" in str(refused)


def read_only_url(path: Path) -> str:
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_a_read_only_file_is_named_and_reads_still_work(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "signoff.db"
    writer = Engine(f"sqlite:///{path}", workflows=[Notes], clock=clock)
    iid = writer.start(Notes, id="n1")
    writer.close()

    engine = Engine(read_only_url(path), workflows=[Notes], clock=clock)
    sentence = f"nothing was committed: the database refused: the database file {path} is read-only"
    with pytest.raises(StorageError, match="^" + sentence.replace(".", r"\.") + "$"):
        engine.send(iid, "note", {"text": "hello"})
    with pytest.raises(StorageError) as refused:
        engine.start(Notes, id="n2")
    assert str(refused.value) == sentence and not refused.value.committed
    assert engine.get(iid).status == "waiting"
    assert [i.id for i in engine.list()] == ["n1"]
    engine.close()


def test_a_database_file_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder" / "signoff.db"
    for attempt in (
        lambda: Engine(f"sqlite:///{missing}"),
        lambda: upgrade_database(f"sqlite:///{missing}"),
    ):
        with pytest.raises(StorageError) as refused:
            attempt()
        assert str(refused.value) == (
            f"nothing was committed: the database refused: the database file {missing} cannot "
            f"be opened: its directory {missing.parent} does not exist"
        )
    assert not missing.parent.exists()  # nothing was made on the way


# --- PostgreSQL ------------------------------------------------------------------------------


def test_a_postgresql_server_that_refuses_connections_is_named() -> None:
    with pytest.raises(StorageError) as refused:
        Engine("postgresql://nobody@127.0.0.1:1/signoff")
    assert str(refused.value) == (
        "nothing was committed: the database refused: the database server at 127.0.0.1:1 "
        "refused the connection"
    )


def test_a_read_only_postgresql_database_refuses_and_nothing_is_committed(
    pg_url: str, clock: Clock
) -> None:
    writer = Engine(pg_url, workflows=[Notes], clock=clock)  # while it could be written
    iid = writer.start(Notes, id="n1")
    writer.close()
    db = sqlalchemy.create_engine(pg_url)

    @event.listens_for(db, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:  # a standby would answer the same
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SET default_transaction_read_only = on")
        dbapi_conn.autocommit = False

    engine = Engine(db, workflows=[Notes], clock=clock, migrate=False)
    with pytest.raises(StorageError) as refused:
        engine.send(iid, "note", {"text": "hello"})
    assert not refused.value.committed
    assert str(refused.value).startswith(
        "nothing was committed: the database refused: the database is read-only "
        "(a standby server, or a read-only transaction): cannot execute "
    )
    assert engine.get(iid).status == "waiting"
    engine.close()
    db.dispose()


def test_postgresql_disk_full_reads_as_such() -> None:
    from psycopg import errors

    refusal = errors.DiskFull('could not extend file "base/1/2": No space left on device')
    assert reason(refusal) == "disk full"
    assert reason(errors.ReadOnlySqlTransaction("cannot execute INSERT")).startswith(
        "the database is read-only"
    )


# --- the surfaces ----------------------------------------------------------------------------


class Trip(Workflow):
    approved: bool = False

    def definition(self) -> Statement:
        return S(
            Wait("approval", On("decision", Approval(approve=self.yes, deny=self.no))), Return()
        )

    def yes(self, decision: Decision) -> None:
        self.approved = True

    def no(self, decision: Decision) -> None:
        self.approved = False


@pytest.fixture
def read_only(tmp_path: Path, clock: Clock) -> Iterator[tuple[Engine, Path]]:
    """An instance waiting for a decision, in a file then opened read-only."""
    path = tmp_path / "signoff.db"
    writer = Engine(f"sqlite:///{path}", workflows=[Trip], clock=clock)
    writer.start(Trip, id="t1")
    writer.close()
    engine = Engine(read_only_url(path), workflows=[Trip], clock=clock)
    yield engine, path
    engine.close()


def test_the_api_answers_503_with_the_sentence(read_only: tuple[Engine, Path]) -> None:
    engine, path = read_only
    with TestClient(make_app(engine), base_url=ORIGIN) as client:
        answer = client.post(
            "/api/instances/t1/events/decision", json={"payload": {"approved": True}}, headers=ALICE
        )
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.json() == {
            "error": "nothing was committed: the database refused: the database file "
            f"{path} is read-only",
            "type": "StorageError",
        }
        assert client.get("/api/instances/t1", headers=ALICE).json()["status"] == "waiting"


def test_the_page_shows_the_sentence(read_only: tuple[Engine, Path]) -> None:
    engine, path = read_only
    from web_support import HX, csrf_of

    with TestClient(make_app(engine, open_access=True), base_url=ORIGIN) as client:
        token = csrf_of(client.get("/instances/t1").text)
        answer = client.post(
            "/instances/t1/send",
            headers={**HX, "X-CSRF-Token": token, "Origin": ORIGIN},
            data={"event": "decision", "mode": "approve", "thread": "main"},
        )
        assert answer.status_code == 503
        flash = answer.context["page"].flash
        assert flash.kind == "error"
        assert flash.message == (
            f"nothing was committed: the database refused: the database file {path} is read-only"
        )


def test_the_command_line_prints_the_sentence_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "signoff.db"
    flows = ["--workflows", "tests.cli_workflows"]
    assert main(["start", "Purchase", "--id", "p1", "--db", f"sqlite:///{path}", *flows]) == 0
    capsys.readouterr()
    args = ["send", "p1", "decision", "--payload", '{"approved": true}']
    assert main([*args, "--db", read_only_url(path), *flows], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err == (
        "signoff: nothing was committed: the database refused: the database file "
        f"{path} is read-only\n"
    )
    assert main(["list", "--db", f"sqlite:///{path.parent}/gone/x.db", *flows]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("signoff: nothing was committed")


def test_every_refusal_is_a_signoff_error() -> None:
    assert issubclass(StorageError, SignoffError)
    assert StorageError("x", committed=True).committed is True
