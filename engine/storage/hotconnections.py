"""The hot path's own DB-API connections (`HotConnections`): a load, a commit or a claim takes
one, on PostgreSQL and MariaDB/MySQL in autocommit mode. When signoff made the engine, a few are
kept out of the pool for good (`Lending`), so a use costs a list pop and append, not a pool
checkout and a reset; a connection the server dropped is thrown away, never reused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import datetime
from typing import Any

from signoff.engine.storage.columns import when
from signoff.engine.storage.drivers import Never, is_mysql, set_autocommit
from signoff.engine.storage.lending import Lending

CHECKOUT_TIMEOUT = 30.0  # seconds to wait for a hot-path connection, as SQLAlchemy's pool does


class HotConnections:
    """Connections for the hot path's loads, commits and claims (`RawWriter`), and the driver's
    errors they may raise."""

    def __init__(self, db: Any, sqlite: bool, lock: Any = None, own: bool = False) -> None:
        """`lock` is held around each write (the store's in-process writer lock on SQLite);
        `own`: signoff made `db` (from a URL), so it may keep connections of its own."""
        self.db = db
        self.sqlite = sqlite
        self.mysql = is_mysql(db)
        self.lock = lock if lock is not None else nullcontext()
        # the driver's error for data it cannot store: never worth retrying as it is
        self.refused: type[Exception] = getattr(db.dialect.dbapi, "DataError", Never)
        self.lost: type[Exception] = getattr(db.dialect.dbapi, "OperationalError", Never)
        # connections of our own, when the engine is ours and has a real pool (an in-memory
        # SQLite database is one shared connection, which must stay the pool's)
        memory = sqlite and db.url.database in (None, "", ":memory:")
        self._cursors: dict[int, Any] = {}  # id of a kept PostgreSQL connection -> its cursor
        # as many at once as the pool would have allowed (its size and overflow)
        pool = db.pool
        size = pool.size() if hasattr(pool, "size") else 1  # a StaticPool has one
        most = size + max(getattr(pool, "_max_overflow", 0), 0)
        self.lending: Lending | None = (
            Lending(self._detached, self._drop, most) if own and not memory else None
        )

    def when(self, value: datetime | None) -> Any:
        return when(value, self.sqlite)

    def connection(self) -> AbstractContextManager[Any]:
        """A DB-API connection for one load or commit; on PostgreSQL and MariaDB/MySQL in
        autocommit mode (a write there begins its own transaction).

        When signoff made the engine, the hot path keeps a few connections of its own (taken
        out of the pool once, `detach`ed), so a load or commit costs a list pop and append,
        not a pool checkout and a reset. With the application's engine, connections come from
        its pool and go back as it expects them (autocommit off). Either way a connection the
        server dropped is thrown away, not reused."""
        if self.lending is not None:
            return _Borrowed(self, self.lending)
        return self._pooled()

    @contextmanager
    def _pooled(self) -> Iterator[Any]:
        conn = self.db.raw_connection()
        driver = conn.driver_connection
        try:
            if not self.sqlite:
                set_autocommit(driver, True)
            yield conn
            if not self.sqlite:
                set_autocommit(driver, False)
        except self.lost:
            conn.invalidate()
            raise
        except BaseException:
            if not self.sqlite:
                if not self._idle(driver):
                    conn.invalidate()
                    raise
                set_autocommit(driver, False)
            raise
        finally:
            conn.close()

    def _cursor(self, conn: Any) -> Any:
        """A cursor on `conn`. A PostgreSQL connection kept for the hot path keeps one cursor
        for good (psycopg reads every result in full, so a cursor holds nothing on the server
        between uses). SQLite's cursors are never kept: one left at an unfinished SELECT would
        hold its read snapshot open and stop checkpoints."""
        if self.sqlite or self.lending is None:
            return conn.cursor()
        cur = self._cursors.get(id(conn))
        if cur is None or cur.connection is not conn:  # an id reused by a new connection
            cur = self._cursors[id(conn)] = conn.cursor()
        return cur

    def _drop(self, conn: Any) -> None:
        """Close a kept connection for good, with the cursor kept for it."""
        self._cursors.pop(id(conn), None)
        with suppress(Exception):  # closing what the server dropped already
            conn.close()

    def _detached(self) -> Any:
        fairy = self.db.raw_connection()
        fairy.detach()  # ours now: the pool neither counts it nor resets it
        conn = fairy.dbapi_connection
        if not self.sqlite:
            set_autocommit(conn, True)
        return conn

    def _idle(self, conn: Any) -> bool:
        """Whether a PostgreSQL or MariaDB/MySQL connection is outside any transaction (always
        so on SQLite: the caller rolls back there)."""
        if self.sqlite:
            return True
        if self.mysql:  # SERVER_STATUS_IN_TRANS, as the server last reported it
            return not (conn.server_status & 1)
        return bool(conn.info.transaction_status == 0)

    def close(self) -> None:
        """Close the connections kept for the hot path (one in use when it comes back)."""
        if self.lending is not None:
            self.lending.close()


class _Borrowed:
    """One use of a kept connection (`HotConnections.connection`): a class, not a generator, as
    it runs at every load and commit. A connection that failed mid-use goes back only when
    it is still usable."""

    __slots__ = ("conn", "lending", "writer")

    def __init__(self, writer: HotConnections, lending: Lending) -> None:
        self.writer, self.lending = writer, lending

    def __enter__(self) -> Any:
        self.conn = self.lending.take(CHECKOUT_TIMEOUT)
        return self.conn

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        conn, writer = self.conn, self.writer
        if exc is not None:
            if isinstance(exc, writer.lost) or not writer._idle(conn):
                self.lending.drop(conn)
                return
            if writer.sqlite or writer.mysql:
                try:
                    if writer.mysql or conn.in_transaction:
                        conn.rollback()
                except BaseException:
                    self.lending.drop(conn)  # unusable; the first failure is what propagates
                    return
        self.lending.give(conn)
