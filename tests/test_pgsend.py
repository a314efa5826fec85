"""PostgreSQL commits sent as prepared statements of signoff's own (`storage/pgsend.py`): a
statement the server forgot is made again, a stale version still writes nothing, and on an
application's engine whose connections turn psycopg's prepared statements off, commits go
through the cursor as before."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from signoff.engine.core.records import Record, Stored, WaitRecord
from signoff.engine.errors import DataNotStorable
from signoff.engine.storage.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def first(iid: str) -> Stored:
    return Stored(
        id=iid,
        workflow="Expense",
        status="running",
        data="{}",
        state="{}",
        result=None,
        error=None,
        version=1,
        due_at=None,
        lease_owner=None,
        lease_until=None,
        created_at=T0,
        updated_at=T0,
    )


def approval() -> WaitRecord:
    return WaitRecord(
        thread="main",
        wait="approval",
        event="decided",
        kind="approval",
        began_at=T0,
        due_at=T0 + timedelta(days=1),
        approvers=["alice"],
        title=None,
        wait_key="main/approval",
    )


def step(at: datetime, **kw: object) -> Record:
    return Record(at=at, kind="step", thread="main", name="notify", **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    yield store
    store.close()


def statements(store: Store) -> set[str]:
    with store.raw.connection() as conn:
        found = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
    return {name for (name,) in found}


def test_commits_go_as_signoff_s_prepared_statements_and_keep_the_version_check(
    store: Store,
) -> None:
    row = first("a")
    store.insert(row, [], [Record(at=T0, kind="started")])
    for version in range(1, 4):
        saved = store.save(replace(row, version=version + 1), version, [approval()], [step(T0)])
        assert saved
    assert not store.save(replace(row, version=9), 2, None, [step(T0)])  # stale: nothing written
    loaded = store.load("a")
    assert loaded is not None and loaded.version == 4
    assert [h.kind for h in store.history("a")] == ["started", "step", "step", "step"]
    assert any(name.startswith("signoff_") for name in statements(store))


def test_a_statement_the_server_forgot_is_prepared_again(store: Store) -> None:
    row = first("b")
    store.insert(row, [], [Record(at=T0, kind="started")])
    assert store.save(replace(row, version=2), 1, [approval()], [step(T0)])
    with store.raw.connection() as conn:
        conn.execute("DEALLOCATE ALL")
    assert store.save(replace(row, version=3), 2, [approval()], [step(T0)])
    loaded = store.load("b")
    assert loaded is not None and loaded.version == 3
    assert len(store.history("b")) == 3


def test_refused_data_is_told_as_before(store: Store) -> None:
    row = first("c")
    store.insert(row, [], [Record(at=T0, kind="started")])
    with pytest.raises(DataNotStorable, match="cannot contain NUL"):
        store.save(replace(row, version=2), 1, None, [step(T0, message="a\x00b")])
    with pytest.raises(DataNotStorable, match="value too long"):
        store.save(replace(row, version=2), 1, None, [step(T0, actor="x" * 300)])
    assert store.save(replace(row, version=2), 1, None, [step(T0)])  # the connection still works


def test_an_engine_without_prepared_statements_commits_through_the_cursor(pg_url: str) -> None:
    db = sqlalchemy.create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://", 1),
        connect_args={"prepare_threshold": None},
    )
    store = Store(db)
    try:
        row = first("d")
        store.insert(row, [], [Record(at=T0, kind="started")])
        for version in range(1, 8):
            assert store.save(replace(row, version=version + 1), version, None, [step(T0)])
        assert not store.save(replace(row, version=20), 3, None, [step(T0)])
        assert not store.raw.sender._kept  # no connection was given prepared statements
        assert len(store.history("d")) == 8
    finally:
        store.close()
        db.dispose()


@pytest.mark.parametrize("opened", ["from a URL", "from the application's engine"])
def test_connections_the_server_dropped_are_let_go(pg_url: str, opened: str) -> None:
    db = None
    if opened == "from a URL":
        store = Store(pg_url)
    else:  # SQLAlchemy's pool drops a dead connection itself, unseen by the writer
        db = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
        store = Store(db)
    try:
        _dropped_and_let_go(pg_url, store)
    finally:
        store.close()
        if db is not None:
            db.dispose()


def _dropped_and_let_go(pg_url: str, store: Store) -> None:
    import psycopg

    row = first("e")
    store.insert(row, [], [Record(at=T0, kind="started")])
    assert store.save(replace(row, version=2), 1, None, [step(T0)])
    kept_before = set(store.raw.sender._kept)
    assert kept_before  # the commit went as a prepared statement
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as admin:  # the server ends every session
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    version, committed = 2, False
    for _ in range(3):  # the first try may meet a dead connection and write nothing
        try:
            committed = store.save(replace(row, version=version + 1), version, None, [step(T0)])
            break
        except Exception:
            continue
    assert committed
    live = store.raw.sender._kept
    assert live and all(not kept.conn.closed for kept in live.values())
    assert len(store.history("e")) == 3
