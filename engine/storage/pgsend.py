"""A commit's one statement sent to PostgreSQL as a named prepared statement straight through
libpq (`PreparedSender`), not through a psycopg cursor.

A cursor's execute and fetch cost more client CPU than the statement's own round trip: it
converts the query again, keeps its prepared-statement cache, makes a row loader for every
result. A commit needs none of that: its statement is one of a few fixed shapes (`PgCommit`),
its parameters are dumped by psycopg's own `Transformer` as a cursor dumps them, and it returns
one row whose first value tells whether the version check passed. What the server receives is
what a cursor would send it once psycopg prepared the statement: the same text, parameters,
types and formats.

Each shape is prepared once per connection and per parameter types (as psycopg keys its own
prepared statements); a statement the server no longer knows (a DEALLOCATE ALL, a DISCARD) is
prepared again and the commit sent once more (the failed send wrote nothing). A connection on
which the application turned psycopg's prepared statements off (`prepare_threshold` None, as
for a transaction-pooling PgBouncer) is left to the cursor.
"""

from __future__ import annotations

from typing import Any

try:  # psycopg's parts that a cursor runs on; without them, commits go through the cursor
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import pq
    from psycopg._queries import PostgresQuery
    from psycopg.adapt import Transformer
    from psycopg.generators import execute as pg_execute

    # private parts, so a psycopg that no longer has them leaves commits to the cursor
    AVAILABLE = all(hasattr(PostgresQuery, part) for part in ("convert", "dump")) and hasattr(
        psycopg.Connection, "wait"
    )
except ImportError:  # pragma: no cover - psycopg is the `postgres` extra
    AVAILABLE = False

# a prepared statement the server does not know (dropped by DEALLOCATE ALL, DISCARD ALL, ...)
_UNKNOWN_STATEMENT = "26000"


class _Connection:
    """What one connection keeps: its transformer, each shape's query, and the prepared
    statements made on it."""

    __slots__ = ("conn", "names", "queries", "tx")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.tx = Transformer(conn)
        self.queries: dict[str | bytes, Any] = {}  # the commit's SQL -> its PostgresQuery
        self.names: dict[tuple[str | bytes, tuple[int, ...]], bytes] = {}  # (SQL, types) ->


class PreparedSender:
    """Sends a commit's statement on psycopg connections as prepared statements of their own
    (named `signoff_<n>`, which psycopg's own `_pg3_<n>` never are)."""

    def __init__(self) -> None:
        self._kept: dict[int, _Connection] = {}  # id of a connection -> what is kept for it
        self._count = 0

    @staticmethod
    def usable(conn: Any) -> bool:
        """Whether commits may go as prepared statements on `conn`."""
        return (
            AVAILABLE
            and getattr(conn, "prepare_threshold", None) is not None
            and hasattr(conn, "pgconn")
            and hasattr(conn, "lock")
        )

    def forget(self, conn: Any) -> None:
        """Drop what is kept for a connection closed for good."""
        self._kept.pop(id(conn), None)

    def first_value(self, conn: Any, sql: str | bytes, params: dict[str, Any]) -> bytes | None:
        """Run `sql` with `params` on `conn` (in autocommit mode) and return the first value of
        its one row, as text (None when it gives no row or a NULL)."""
        kept = self._kept.get(id(conn))
        if kept is None or kept.conn is not conn:  # a connection not seen before
            # a connection closed since (dropped after a failure, a store closed) is let go
            for key in [k for k, c in self._kept.items() if c.conn.closed]:
                del self._kept[key]
            kept = self._kept[id(conn)] = _Connection(conn)
        query = kept.queries.get(sql)
        if query is None:
            query = PostgresQuery(kept.tx)
            query.convert(sql, params)  # parses the placeholders once, and dumps
            kept.queries[sql] = query
        else:
            query.dump(params)  # the values in the placeholders' order, as a cursor dumps them
        types = tuple(query.types)
        with conn.lock:
            for attempt in (1, 2):
                name = kept.names.get((sql, types))
                if name is None:
                    name = self._prepare(conn, kept, query, sql, types)
                pgconn = conn.pgconn
                pgconn.send_query_prepared(name, query.params, param_formats=query.formats)
                results = conn.wait(pg_execute(pgconn))
                result = results[-1]
                if result.status == pq.ExecStatus.TUPLES_OK:
                    if result.ntuples < 1:
                        return None
                    found: bytes | None = result.get_value(0, 0)
                    return found
                error = self._error(conn, result)
                if attempt == 1 and getattr(error, "sqlstate", None) == _UNKNOWN_STATEMENT:
                    kept.names.clear()  # the server forgot them all: make them again
                    continue
                raise error
        raise AssertionError("unreachable")

    def _prepare(
        self, conn: Any, kept: _Connection, query: Any, sql: str | bytes, types: tuple[int, ...]
    ) -> bytes:
        self._count += 1
        name = f"signoff_{self._count}".encode()
        pgconn = conn.pgconn
        pgconn.send_prepare(name, query.query, param_types=types)
        result = conn.wait(pg_execute(pgconn))[-1]
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise self._error(conn, result)
        kept.names[sql, types] = name
        return name

    @staticmethod
    def _error(conn: Any, result: Any) -> Exception:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            error: Exception = pg_errors.error_from_result(result, encoding=conn.info.encoding)
            return error
        return pg_errors.InterfaceError(f"unexpected result {pq.ExecStatus(result.status).name}")
