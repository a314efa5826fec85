"""Durable storage through SQLModel: instances, their open waits, and the history.

The only module of the engine that speaks SQL. Every write is one transaction guarded by the
instance's version; on SQLite the transaction takes the write lock up front (BEGIN IMMEDIATE),
so a read-modify-write never deadlocks on a lock upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from signoff.engine.core.records import Record, Stored, WaitRecord
from signoff.engine.errors import Conflict
from signoff.engine.storage.rawsql import RawPager, RawWriter
from signoff.engine.views import HistoryEntry
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("signoff stores aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _when(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class InstanceRow(SQLModel, table=True):
    __tablename__ = "signoff_instances"
    __table_args__ = (
        Index("ix_signoff_instances_recent", "updated_at", "id"),
        Index("ix_signoff_instances_status_recent", "status", "updated_at", "id"),
        Index("ix_signoff_instances_workflow_recent", "workflow", "updated_at", "id"),
    )

    id: str = Field(sa_column=Column(String(100), primary_key=True))
    workflow: str = Field(sa_column=Column(String(200), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    data: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(Text, nullable=False))
    result: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    due_at: datetime | None = _when(index=True)
    lease_owner: str | None = Field(default=None, sa_column=Column(String(64)))
    lease_until: datetime | None = _when()
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)


class WaitRow(SQLModel, table=True):
    """One open case of one wait: what waits for which event, and when its timer falls due."""

    __tablename__ = "signoff_waits"
    __table_args__ = (
        Index("ix_signoff_waits_event", "instance_id", "event"),
        Index("ix_signoff_waits_kind", "kind", "began_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    instance_id: str = Field(sa_column=Column(String(100), nullable=False))
    thread: str = Field(sa_column=Column(String(200), nullable=False))
    wait: str = Field(sa_column=Column(String(200), nullable=False))
    event: str = Field(sa_column=Column(String(200), nullable=False))
    kind: str = Field(sa_column=Column(String(50), nullable=False))
    began_at: datetime = _when(nullable=False)
    due_at: datetime | None = _when(index=True)
    approvers: str | None = Field(default=None, sa_column=Column(Text))  # JSON list or null
    title: str | None = Field(default=None, sa_column=Column(Text))
    wait_key: str | None = Field(default=None, sa_column=Column(String(250)))  # ThreadState's


class HistoryRow(SQLModel, table=True):
    """The append-only audit trail."""

    __tablename__ = "signoff_history"
    __table_args__ = (Index("ix_signoff_history_instance", "instance_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    instance_id: str = Field(sa_column=Column(String(100), nullable=False))
    at: datetime = _when(nullable=False)
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    thread: str | None = Field(default=None, sa_column=Column(String(200)))
    name: str | None = Field(default=None, sa_column=Column(String(200)))
    actor: str | None = Field(default=None, sa_column=Column(String(200)))
    via: str | None = Field(default=None, sa_column=Column(String(20)))
    message: str | None = Field(default=None, sa_column=Column(Text))
    detail: str | None = Field(default=None, sa_column=Column(Text))


INSTANCES = InstanceRow.__table__  # type: ignore[attr-defined]
WAITS = WaitRow.__table__  # type: ignore[attr-defined]
HISTORY = HistoryRow.__table__  # type: ignore[attr-defined]
# PostgreSQL only: its primary key index follows the database's collation, which LIKE cannot use
ID_PREFIX = Index(
    "ix_signoff_instances_id_prefix", INSTANCES.c.id, postgresql_ops={"id": "text_pattern_ops"}
)
ID_PREFIX.ddl_if(dialect="postgresql")
# Per-status counts of one workflow (the instances list filtered by workflow), read from the
# index alone. Created when missing, so databases made by earlier releases get it too.
WORKFLOW_STATUS = Index(
    "ix_signoff_instances_workflow_status", INSTANCES.c.workflow, INSTANCES.c.status
)


def normalise_url(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg 3, the driver signoff installs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Store:
    def __init__(self, url: str, *, synchronous: str = "FULL", pool_size: int = 8) -> None:
        url = normalise_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
                raise ValueError(f"unknown SQLite synchronous level {synchronous!r}")
            # one shared connection, or every new one would be a new, empty database
            memory = url in ("sqlite://", "sqlite:///:memory:")
            self.db = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                **({"poolclass": StaticPool} if memory else {"pool_size": pool_size}),
            )
            _configure_sqlite(self.db, synchronous.upper())
        else:
            self.db = create_engine(url, pool_size=pool_size, pool_pre_ping=True)
        SQLModel.metadata.create_all(self.db, tables=[INSTANCES, WAITS, HISTORY])
        if not self.is_sqlite:  # an id prefix search is a LIKE 'prefix%' through this index
            ID_PREFIX.create(self.db, checkfirst=True)
        WORKFLOW_STATUS.create(self.db, checkfirst=True)
        self.raw = RawWriter(self.db, self.is_sqlite)
        self.pager = RawPager(self.db, self.is_sqlite)

    def close(self) -> None:
        self.db.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (on SQLite it takes the write lock up front)."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.db.connect().execution_options(signoff_write=True) as conn, conn.begin():
            yield conn

    # --- instances -------------------------------------------------------------------------

    def insert(self, row: Stored, waits: Sequence[WaitRecord], history: Sequence[Record]) -> None:
        duplicate: type[Exception] = getattr(self.db.dialect.dbapi, "IntegrityError", Exception)
        try:
            self.raw.write(row, None, waits, history)
        except duplicate:
            raise Conflict(f"an instance with id '{row.id}' already exists") from None

    def load(self, instance_id: str) -> Stored | None:
        with self.db.connect() as conn:
            found = (
                conn.execute(select(INSTANCES).where(INSTANCES.c.id == instance_id))
                .mappings()
                .first()
            )
        return Stored(**found) if found else None

    def save(
        self,
        row: Stored,
        expected_version: int,
        waits: Sequence[WaitRecord] | None,
        history: Sequence[Record],
    ) -> bool:
        """Write `row` if nobody changed it since `expected_version`; False when someone did."""
        return self.raw.write(row, expected_version, waits, history)

    def renew_lease(self, instance_id: str, owner: str, until: datetime) -> bool:
        """Extend a driver's lease. The version moves too, so a writer that loaded the row
        before cannot put the old expiry back; the driver merges that at its next commit."""
        with self._write() as conn:
            done = conn.execute(
                update(INSTANCES)
                .where(INSTANCES.c.id == instance_id, INSTANCES.c.lease_owner == owner)
                .values(lease_until=until, due_at=until, version=INSTANCES.c.version + 1)
            )
            return done.rowcount == 1

    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of instances with something due at or before `now`, earliest first."""
        with self.db.connect() as conn:
            return list(
                conn.execute(
                    select(INSTANCES.c.id)
                    .where(INSTANCES.c.due_at <= now)
                    .order_by(INSTANCES.c.due_at)
                    .limit(limit)
                ).scalars()
            )

    def claim_due(
        self,
        now: datetime,
        owner: str,
        until: datetime,
        *,
        limit: int = 100,
        instance_id: str | None = None,
        workflows: Collection[str] | None = None,
    ) -> list[str]:
        """Take the lease on instances with something due at `now` that nobody drives; returns
        their ids (the earliest due are picked first). This is what makes a timer fire once
        across processes.

        One statement both picks and leases (lease_owner, lease_until and due_at := `until`,
        version + 1, as `Runner.save` would write it): on PostgreSQL the pick is `FOR UPDATE SKIP
        LOCKED`, so concurrent claimers take disjoint rows without waiting, and the outer WHERE
        is re-checked on the row's latest version; on SQLite the write transaction (BEGIN
        IMMEDIATE) makes the pick and the update one atomic step. An instance claimed here is
        due again at `until` if its claimer dies, like any other lease.
        """
        cols = INSTANCES.c
        free = and_(
            cols.due_at <= now,
            or_(cols.lease_owner.is_(None), cols.lease_until.is_(None), cols.lease_until <= now),
        )
        if instance_id is not None:
            free = and_(free, cols.id == instance_id)
        if workflows is not None:  # never lease what this process cannot run
            free = and_(free, cols.workflow.in_(list(workflows)))
        if self.is_sqlite:
            # A read first: the write lock is taken only when something is due.
            with self.db.connect() as conn:
                if conn.execute(select(cols.id).where(free).limit(1)).first() is None:
                    return []
        pick = select(cols.id).where(free).order_by(cols.due_at).limit(limit)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        with self._write() as conn:
            claimed = (
                conn.execute(
                    update(INSTANCES)
                    .where(cols.id.in_(pick.scalar_subquery()), free)
                    .values(
                        lease_owner=owner, lease_until=until, due_at=until, version=cols.version + 1
                    )
                    .returning(cols.id)
                )
                .scalars()
                .all()
            )
        return list(claimed)

    def upcoming(
        self, after: datetime, until: datetime, limit: int = 10_000
    ) -> list[tuple[str, datetime]]:
        """(id, due_at) of instances due in (`after`, `until`], earliest first: what a
        scheduler arms ahead of time."""
        cols = INSTANCES.c
        with self.db.connect() as conn:
            return [
                (iid, due)
                for iid, due in conn.execute(
                    select(cols.id, cols.due_at)
                    .where(cols.due_at > after, cols.due_at <= until)
                    .order_by(cols.due_at)
                    .limit(limit)
                )
            ]

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.db.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def next_due(self) -> datetime | None:
        with self.db.connect() as conn:
            value: datetime | None = conn.execute(select(func.min(INSTANCES.c.due_at))).scalar()
        return value

    # --- listing -----------------------------------------------------------------------------

    def page(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        search: str | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
        order: str = "recent",
    ) -> list[dict[str, Any]]:
        """Instances in `order` (rawsql.ORDERS: most recently changed first by default), after
        the keyset cursor `before`: dicts of id, workflow, status, error, created_at,
        updated_at, waiting_for (events), and data and state as stored (JSON text)."""
        return self.pager.page(status, workflow, search, limit, before, order)

    def counts(self, workflow: str | None = None, search: str | None = None) -> dict[str, int]:
        """Instances per status, of `workflow` and matching `search` when given."""
        if workflow or search:
            return self.pager.counts(workflow, search)
        with self.db.connect() as conn:
            return {
                status: n
                for status, n in conn.execute(
                    select(INSTANCES.c.status, func.count()).group_by(INSTANCES.c.status)
                )
            }

    def open_waits(self, kind: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        query = select(WAITS).order_by(WAITS.c.began_at, WAITS.c.id).limit(limit)
        if kind:
            query = query.where(WAITS.c.kind == kind)
        with self.db.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for r in rows:
            r["approvers"] = json.loads(r["approvers"]) if r["approvers"] else None
        return rows

    # --- history -----------------------------------------------------------------------------

    def history(self, instance_id: str) -> list[HistoryEntry]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(HISTORY).where(HISTORY.c.instance_id == instance_id).order_by(HISTORY.c.id)
            ).mappings()
            return [
                HistoryEntry(**{**r, "detail": json.loads(r["detail"]) if r["detail"] else None})
                for r in rows
            ]

    # --- helpers -----------------------------------------------------------------------------


def _configure_sqlite(db: Any, synchronous: str) -> None:
    @event.listens_for(db, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(db, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("signoff_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
