"""Durable storage: instances, their open waits, and the history, in the tables of
`tables.py`, which the migrations in `migrations/` make.

Every write is one transaction guarded by the instance's version; on SQLite the transaction
takes the write lock up front (BEGIN IMMEDIATE), so a read-modify-write never deadlocks on a
lock upgrade. The load and the commit go through `writer.py`, the instances list through
`pager.py`; dashboard reports through `placement.py`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from time import monotonic, sleep
from typing import Any

from signoff.engine.core.enums import Status
from signoff.engine.core.records import Record, Stored, WaitRecord
from signoff.engine.errors import Conflict
from signoff.engine.storage import migrate as migrations
from signoff.engine.storage.drivers import is_mysql
from signoff.engine.storage.failures import CommitCount, driver_error, refused
from signoff.engine.storage.narrowing import Narrowing
from signoff.engine.storage.pager import RawPager
from signoff.engine.storage.recent import Recent
from signoff.engine.storage.tables import HISTORY, INSTANCES
from signoff.engine.storage.writer import RawWriter
from signoff.engine.views import Counts, HistoryEntry
from sqlalchemy import (
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as Database
from sqlalchemy.pool import StaticPool


def normalise_url(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg 3, the driver of the `postgres` extra; plain
    `mysql://` and `mariadb://` ones PyMySQL, the driver of the `mysql` extra."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("mysql://") or url.startswith("mariadb://"):
        scheme, rest = url.split("://", 1)
        return f"{scheme}+pymysql://{rest}"
    return url


_ENDED = (Status.COMPLETED, Status.CANCELLED)


class Store:
    """signoff's tables in one database, reached through `db`, a SQLAlchemy engine.

    Given a URL, the store makes and owns its engine. Given the application's engine, its pool,
    connect arguments and schema stay the application's (`close` leaves it open); signoff's
    tables go where its unqualified tables go: the `schema_translate_map` entry for None, or
    the connection's search_path.
    """

    def __init__(
        self,
        database: str | Database,
        *,
        synchronous: str = "FULL",
        pool_size: int = 8,
        migrate: bool = True,
    ) -> None:
        self.db, self.owns_db = open_database(
            database, synchronous=synchronous, pool_size=pool_size
        )
        self.is_sqlite = self.db.dialect.name == "sqlite"
        self.is_mysql = is_mysql(self.db)  # MariaDB or MySQL
        # whether commits NOTIFY what falls due (PostgreSQL); elsewhere the sweep finds it
        self.notifies = self.db.dialect.name == "postgresql"
        self.url = self.db.url.render_as_string(hide_password=False)
        self.commits = CommitCount()  # commits made on each thread (see `failures.guard`)
        try:
            if migrate:
                migrations.upgrade(self.db)
            else:
                migrations.check(self.db)
        except BaseException as exc:
            self.close()
            if driver_error(exc) is not None:  # a database that cannot be opened or written
                raise refused(exc, self.db.url) from exc
            raise
        schema = migrations.schema_of(self.db)
        prefix = self.db.dialect.identifier_preparer.quote_schema(schema) + "." if schema else ""
        # SQLite has one writer at a time. Writers of this process queue on a lock, woken the
        # moment it is free; otherwise each would poll SQLite's busy handler, which sleeps up to
        # 100 ms between tries (a quick write behind a slow one waited hundreds of ms).
        # Other processes still wait on the database's own lock.
        self.write_lock: Any = threading.RLock() if self.is_sqlite else nullcontext()
        self.raw = RawWriter(self.db, self.is_sqlite, prefix, self.write_lock, own=self.owns_db)
        self.pager = RawPager(self.db, self.is_sqlite, prefix)
        self.prefix = prefix
        self.recent = Recent()  # rows as this process last committed them

    def close(self) -> None:
        raw = getattr(self, "raw", None)
        if raw is not None:
            raw.close()
        if self.owns_db:
            self.db.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (on SQLite it takes the write lock up front)."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with (
            self.write_lock,
            self.db.connect().execution_options(signoff_write=True) as conn,
            conn.begin(),
        ):
            yield conn
        self.commits.add()

    # --- instances -------------------------------------------------------------------------

    def insert(self, row: Stored, waits: Sequence[WaitRecord], history: Sequence[Record]) -> None:
        duplicate: type[Exception] = getattr(self.db.dialect.dbapi, "IntegrityError", Exception)
        try:
            self.raw.write(row, None, waits, history)
        except duplicate:
            raise Conflict(f"an instance with id '{row.id}' already exists") from None
        self.commits.add()

    def load(self, instance_id: str) -> Stored | None:
        return self.raw.load(instance_id)

    def save(
        self,
        row: Stored,
        expected_version: int,
        waits: Sequence[WaitRecord] | None,
        history: Sequence[Record],
        progress: bool = False,
        outbox: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Write `row` if nobody changed it since `expected_version`; False when someone did.
        `progress`: only its data, state and version changed, so only those are written.
        `outbox`: messages to send after this commit, written in the same transaction."""
        try:
            saved = self.raw.write(row, expected_version, waits, history, progress, outbox)
        except BaseException:
            self.recent.drop(row.id)
            raise
        if saved and row.lease_owner is None and row.status not in _ENDED:
            self.recent.keep(row)  # a drive ended here: an event may well come next
        else:
            self.recent.drop(row.id)
        if saved:
            self.commits.add()
        return saved

    def load_recent(self, instance_id: str) -> tuple[Stored | None, bool]:
        """The row as this process last committed it when it is kept (`Recent`), else as
        read; and whether it was read. A kept row may be stale: see `Recent`."""
        row = self.recent.take(instance_id)
        if row is not None:
            return row, False
        return self.raw.load(instance_id), True

    def renew_lease(self, instance_id: str, owner: str, until: datetime) -> bool:
        """Extend a driver's lease. The version moves too, so a writer that loaded the row
        before cannot put the old expiry back; the driver merges that at its next commit."""
        self.recent.drop(instance_id)
        with self._write() as conn:
            done = conn.execute(
                update(INSTANCES)
                .where(INSTANCES.c.id == instance_id, INSTANCES.c.lease_owner == owner)
                .values(lease_until=until, due_at=until, version=INSTANCES.c.version + 1)
            )
            return done.rowcount == 1

    def give_back(self, instance_id: str, owner: str, due_at: datetime) -> bool:
        """Release a lease taken by `claim_due` without any other change (nothing was done:
        a newer release handles the instance), due again at `due_at`."""
        self.recent.drop(instance_id)
        with self._write() as conn:
            done = conn.execute(
                update(INSTANCES)
                .where(INSTANCES.c.id == instance_id, INSTANCES.c.lease_owner == owner)
                .values(
                    lease_owner=None,
                    lease_until=None,
                    due_at=due_at,
                    version=INSTANCES.c.version + 1,
                )
            )
            return done.rowcount == 1

    def claim_due(
        self,
        now: datetime,
        owner: str,
        until: datetime,
        *,
        limit: int = 100,
        instance_id: str | None = None,
        workflows: Collection[str] | None = None,
    ) -> list[Stored]:
        """Take the lease on instances with something due at `now` that nobody drives; returns
        their rows as claimed (the earliest due are picked first), so the claimer needs no
        second read. This is what makes a timer fire once across processes.

        One statement both picks and leases (lease_owner, lease_until and due_at := `until`,
        version + 1, as `Runner.save` would write it): on PostgreSQL the pick is `FOR UPDATE SKIP
        LOCKED`, so concurrent claimers take disjoint rows without waiting, and the outer WHERE
        is re-checked on the row's latest version; on SQLite the write transaction (BEGIN
        IMMEDIATE) makes the pick and the update one atomic step. An instance claimed here is
        due again at `until` if its claimer dies, like any other lease.
        """
        claimed = self.raw.claim_due(now, owner, until, limit, instance_id, workflows)
        for row in claimed:
            self.recent.drop(row.id)
        return claimed

    def any_due(self, now: datetime, workflows: Collection[str] | None = None) -> bool:
        """Whether some instance is due at `now` and free to claim: a plain read, locking
        nothing. A claim can come back empty while one is (on PostgreSQL, the row it picked
        was claimed by another process in the same instant), so an empty claim alone does not
        prove that nothing is left."""
        return self.raw.any_due(now, workflows)

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
        viewer: Collection[str] | None = None,
        narrow: Narrowing | None = None,
    ) -> list[dict[str, Any]]:
        """Instances in `order` (narrowing.ORDERS: most recently changed first by default), after
        the keyset cursor `before`: dicts of id, workflow, status, error, created_at,
        updated_at, waiting_for (events), and data and state as stored (JSON text). `viewer`:
        only those these identities see (storage.visibility), None: all."""
        return self.pager.page(status, workflow, search, limit, before, order, viewer, narrow)

    def counts(
        self,
        workflow: str | None = None,
        search: str | None = None,
        viewer: Collection[str] | None = None,
        narrow: Narrowing | None = None,
        at_most: int | None = None,
    ) -> Counts:
        """Instances per status, of `workflow`, matching `search` and visible to `viewer` when
        given, narrowed by `narrow` (narrowing.Narrowing); a search's matches counted up to
        `at_most` when given (`Counts.complete`)."""
        if workflow or search or viewer is not None or narrow is not None:
            return Counts(*self.pager.counts(workflow, search, viewer, narrow, at_most))
        with self.db.connect() as conn:
            return Counts(
                {
                    status: n
                    for status, n in conn.execute(
                        select(INSTANCES.c.status, func.count()).group_by(INSTANCES.c.status)
                    )
                }
            )

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


def open_database(
    database: str | Database, *, synchronous: str = "FULL", pool_size: int = 8
) -> tuple[Database, bool]:
    """The SQLAlchemy engine signoff works through, and whether signoff owns it (made it from
    a URL) and so disposes of it when done."""
    if isinstance(database, Database):
        # an engine of our own over the application's pool, so our listeners stay ours
        db = database.execution_options()
        if db.dialect.name == "sqlite":
            _begin_as_writer(db)
        return db, False
    return _create(normalise_url(database), synchronous, pool_size), True


def upgrade_database(database: str | Database) -> tuple[str | None, str]:
    """Take a database to the schema this version of signoff needs, under a database lock;
    harmless when it is there already. Returns the schema revisions before and after (before
    is None for a database that had no version of signoff's schema recorded)."""
    db, owned = open_database(database)
    try:
        return migrations.upgrade(db)
    except Exception as exc:
        if driver_error(exc) is None:
            raise
        raise refused(exc, db.url) from exc
    finally:
        if owned:
            db.dispose()


_DRIVERS = {
    "psycopg": "PostgreSQL needs the psycopg driver: pip install 'signoff[postgres]'",
    "pymysql": "MariaDB and MySQL need the PyMySQL driver: pip install 'signoff[mysql]'",
}


def _create(url: str, synchronous: str, pool_size: int) -> Database:
    if not url.startswith("sqlite"):
        try:
            if url.startswith(("mysql", "mariadb")):
                return _create_mysql(url, pool_size)
            return create_engine(url, pool_size=pool_size)
        except ModuleNotFoundError as exc:
            if exc.name not in _DRIVERS:
                raise
            raise ModuleNotFoundError(_DRIVERS[exc.name], name=exc.name) from exc
    if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
        raise ValueError(f"unknown SQLite synchronous level {synchronous!r}")
    # one shared connection, or every new one would be a new, empty database
    memory = url in ("sqlite://", "sqlite:///:memory:")
    db = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        **({"poolclass": StaticPool} if memory else {"pool_size": pool_size}),
    )

    @event.listens_for(db, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _write_ahead(cursor)
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    _begin_as_writer(db)
    return db


def _create_mysql(url: str, pool_size: int) -> Database:
    """MariaDB/MySQL: READ COMMITTED (a commit locks the rows it writes, no gaps between them,
    so commits of different instances never deadlock), utf8mb4 (emoji included), strict about
    what a column can take (an over-long name is refused, never cut short), and connections
    renewed before the server's idle timeout drops them."""
    db = create_engine(
        url,
        pool_size=pool_size,
        pool_recycle=3600,
        isolation_level="READ COMMITTED",
        connect_args={"charset": "utf8mb4"},
    )

    @event.listens_for(db, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("SELECT @@SESSION.sql_mode")
        modes = {m for m in str(cursor.fetchone()[0] or "").split(",") if m}
        modes.add("STRICT_ALL_TABLES")
        modes.discard("NO_BACKSLASH_ESCAPES")  # LIKE patterns escape with a backslash
        cursor.execute("SET SESSION sql_mode = %s", (",".join(sorted(modes)),))
        cursor.close()

    return db


WAL_PATIENCE = 30.0  # seconds a new connection waits for another to finish switching to WAL


def _write_ahead(cursor: Any) -> None:
    """Put the file in WAL mode (kept in the file: once is enough). Switching needs the file
    to itself, and SQLite answers "database is locked" at once, without waiting, while another
    connection holds it, as when several processes open a new file together. So look first,
    and retry a switch that found the file busy until another process has made it or the
    patience runs out."""
    deadline = monotonic() + WAL_PATIENCE
    pause = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or monotonic() > deadline:
                raise
        sleep(pause)
        pause = min(pause * 2, 0.1)


def _begin_as_writer(db: Database) -> None:
    """A write transaction on SQLite takes the write lock up front (BEGIN IMMEDIATE), so a
    read-modify-write never deadlocks on a lock upgrade."""

    @event.listens_for(db, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("signoff_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
