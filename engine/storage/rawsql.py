"""The hot paths, spoken straight to the DB-API driver: loads, commits, and the instances list.

Building and compiling SQLAlchemy statements costs more than SQLite takes to run them, and a
transition commits after every step. So the load of an instance and the statements of a commit
(guarded update, wait rows, history rows) are written once here as SQL text in the driver's
parameter style, and run on connections the hot path keeps for itself (`RawWriter`); so is the
dashboard's most frequent read, one keyset page of instances (`RawPager`). Everything else
stays on SQLAlchemy. On PostgreSQL a load and a commit are one statement and one round trip
each (see `RawWriter`).

Datetimes are kept the way SQLAlchemy's `UTCDateTime` column keeps them: naive UTC, as text
"%Y-%m-%d %H:%M:%S.%f" on SQLite and as `timestamp without time zone` on PostgreSQL.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime
from time import monotonic
from typing import Any

from signoff.engine.core.records import Record, Stored, WaitRecord
from signoff.engine.errors import Busy, DataNotStorable

_INSTANCE_COLUMNS = (
    "workflow",
    "status",
    "data",
    "state",
    "result",
    "error",
    "version",
    "due_at",
    "lease_owner",
    "lease_until",
    "created_at",
    "updated_at",
)
_WAIT_COLUMNS = (
    "instance_id",
    "thread",
    "wait",
    "event",
    "kind",
    "began_at",
    "due_at",
    "approvers",
    "title",
    "wait_key",
)
_HISTORY_COLUMNS = (
    "instance_id",
    "at",
    "kind",
    "thread",
    "name",
    "actor",
    "via",
    "message",
    "detail",
)


def when(value: datetime | None, sqlite: bool) -> Any:
    """A datetime as SQLAlchemy's UTCDateTime column stores it: naive UTC."""
    if value is None:
        return None
    naive = (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)
    return naive.isoformat(" ", "microseconds") if sqlite else naive


def aware(value: Any) -> datetime:
    """A stored datetime read back: aware UTC (SQLite gives text, PostgreSQL naive datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


SEARCH_TIMEOUT = 2.0  # seconds one search may read for


def _too_slow(seconds: float) -> Busy:
    return Busy(
        f"the search took longer than {seconds:g} s and was stopped: search for an id, or for "
        "longer, rarer text"
    )


CHECKOUT_TIMEOUT = 30.0  # seconds to wait for a hot-path connection, as SQLAlchemy's pool does
DUE_CHANNEL = "signoff_due"  # PostgreSQL NOTIFY channel: "<instance id> <due at, ISO 8601>"

_ID_CHARS = re.compile(r"[A-Za-z0-9._:-]+")  # what an instance id may hold


class RawPager:
    """`Store.page`: one keyset page of instances, most recently changed first, with the
    events each waits for. The SQL of each shape of filter is built once and kept."""

    def __init__(
        self, db: Any, sqlite: bool, prefix: str = "", search_timeout: float = SEARCH_TIMEOUT
    ) -> None:
        self.db = db
        self.sqlite = sqlite
        self.prefix = prefix  # the quoted schema and a dot, when the tables have one
        self.mark = "?" if sqlite else "%s"
        self.queries: dict[tuple[bool, bool, str, bool], str] = {}
        self.search_timeout = search_timeout

    @contextmanager
    def time_limit(self, conn: Any, cur: Any) -> Iterator[None]:
        """A search through the data reads every row: stop it after `search_timeout` seconds
        (PostgreSQL's statement_timeout; on SQLite a progress handler that interrupts it)."""
        if not self.sqlite:
            cur.execute(f"SET LOCAL statement_timeout = {int(self.search_timeout * 1000)}")
            try:
                yield
            except self.db.dialect.dbapi.OperationalError as exc:  # QueryCanceled is one
                raise _too_slow(self.search_timeout) from exc
            return  # SET LOCAL ends with the transaction, which the page rolls back
        driver = conn.driver_connection
        deadline = monotonic() + self.search_timeout
        driver.set_progress_handler(lambda: monotonic() > deadline, 100_000)
        try:
            yield
        except self.db.dialect.dbapi.OperationalError as exc:  # "interrupted"
            raise _too_slow(self.search_timeout) from exc
        finally:
            driver.set_progress_handler(None, 0)

    def sql(self, status: bool, workflow: bool, search: str, before: bool) -> str:
        """`search` is "" (none), "id" (an id prefix: a range of the primary key, or on
        PostgreSQL a LIKE 'prefix%' through a text_pattern_ops index) or "data" (anywhere in
        the data: reads rows, so it runs under a time limit)."""
        shape = (status, workflow, search, before)
        found = self.queries.get(shape)
        if found is None:
            m = self.mark
            where = []
            if status:
                where.append(f"status = {m}")
            if workflow:
                where.append(f"workflow = {m}")
            if search == "id":
                where.append(
                    f"id >= {m} AND id < {m}" if self.sqlite else f"id LIKE {m} ESCAPE '\\'"
                )
            elif search == "data":
                where.append(f"data LIKE {m} ESCAPE '\\'")
            if before:
                where.append(f"(updated_at < {m} OR (updated_at = {m} AND id < {m}))")
            found = self.queries[shape] = (
                "SELECT id, workflow, status, error, created_at, updated_at "
                f"FROM {self.prefix}signoff_instances"
                + (" WHERE " + " AND ".join(where) if where else "")
                + f" ORDER BY updated_at DESC, id DESC LIMIT {m}"
            )
        return found

    def page(
        self,
        status: str | None,
        workflow: str | None,
        search: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
    ) -> list[dict[str, Any]]:
        """Without `search`, one query. With it, two: instances whose id starts with it (an
        index range, when it could be an id at all) and instances with it in their data,
        merged in the page's order."""
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            if self.sqlite:
                cur.execute("BEGIN")  # every read sees one snapshot
            if not search:
                found = self._select(cur, status, workflow, "", [], limit, before)
            else:
                escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                found = []
                if _ID_CHARS.fullmatch(search):
                    prefix = [search, search + "\x7f"] if self.sqlite else [f"{escaped}%"]
                    found += self._select(cur, status, workflow, "id", prefix, limit, before)
                with self.time_limit(conn, cur):
                    found += self._select(
                        cur, status, workflow, "data", [f"%{escaped}%"], limit, before
                    )
            rows = {
                iid: {
                    "id": iid,
                    "workflow": wf,
                    "status": st,
                    "error": error,
                    "created_at": aware(created),
                    "updated_at": aware(updated),
                    "waiting_for": [],
                }
                for iid, wf, st, error, created, updated in found
            }
            page = sorted(rows.values(), key=lambda r: (r["updated_at"], r["id"]), reverse=True)
            page = page[:limit]
            if page:
                by_id = {r["id"]: r["waiting_for"] for r in page}
                marks = ", ".join([self.mark] * len(by_id))
                cur.execute(
                    f"SELECT instance_id, event FROM {self.prefix}signoff_waits "
                    f"WHERE instance_id IN ({marks})",
                    list(by_id),
                )
                for iid, event in cur.fetchall():
                    by_id[iid].append(event)
            conn.rollback()
            return page
        finally:
            conn.close()

    def _select(
        self,
        cur: Any,
        status: str | None,
        workflow: str | None,
        search: str,
        search_params: list[str],
        limit: int,
        before: tuple[datetime, str] | None,
    ) -> list[Any]:
        params: list[Any] = []
        if status:
            params.append(status)
        if workflow:
            params.append(workflow)
        params += search_params
        if before is not None:
            at = when(before[0], self.sqlite)
            params += [at, at, before[1]]
        params.append(limit)
        cur.execute(self.sql(bool(status), bool(workflow), search, before is not None), params)
        return list(cur.fetchall())


class RawWriter:
    """The commit and the load, in as few round trips as the database allows.

    On PostgreSQL each is ONE statement on a connection in autocommit mode: a read is a bare
    SELECT (no BEGIN/ROLLBACK around it), and a commit is a single statement whose CTEs do the
    guarded UPDATE, replace the wait rows and append the history rows (JSON recordsets,
    in order), so it is atomic without a transaction block. Nothing ever rolls back on these
    connections, so psycopg keeps its prepared statements (a ROLLBACK would DEALLOCATE ALL).
    On SQLite a commit is BEGIN IMMEDIATE, the statements, COMMIT: in-process, no round trips.
    """

    def __init__(
        self, db: Any, sqlite: bool, prefix: str = "", lock: Any = None, own: bool = False
    ) -> None:
        """`prefix` is the quoted schema and a dot, when the tables have one; `lock` is held
        around each write (the store's in-process writer lock on SQLite); `own`: signoff made
        `db` (from a URL), so it may keep connections of its own."""
        instances, waits, history = (
            f"{prefix}signoff_{t}" for t in ("instances", "waits", "history")
        )
        self.db = db
        self.sqlite = sqlite
        self.lock = lock if lock is not None else nullcontext()
        # the driver's error for data it cannot store: never worth retrying as it is
        self.refused: type[Exception] = getattr(db.dialect.dbapi, "DataError", _Never)
        self.lost: type[Exception] = getattr(db.dialect.dbapi, "OperationalError", _Never)

        def p(name: str) -> str:
            return f":{name}" if sqlite else f"%({name})s"

        self.select = (
            f"SELECT id, {', '.join(_INSTANCE_COLUMNS)} FROM {instances} WHERE id = {p('id')}"
        )
        sets = ", ".join(f"{c} = {p(c)}" for c in _INSTANCE_COLUMNS)
        self.update = (
            f"UPDATE {instances} SET {sets} WHERE id = {p('b_id')} AND version = {p('b_expected')}"
        )
        cols = ("id", *_INSTANCE_COLUMNS)
        self.insert = (
            f"INSERT INTO {instances} ({', '.join(cols)}) VALUES ({', '.join(p(c) for c in cols)})"
        )
        self.delete_waits = f"DELETE FROM {waits} WHERE instance_id = {p('b_id')}"
        self.insert_wait = (
            f"INSERT INTO {waits} ({', '.join(_WAIT_COLUMNS)}) "
            f"VALUES ({', '.join(p(c) for c in _WAIT_COLUMNS)})"
        )
        self.insert_history = (
            f"INSERT INTO {history} ({', '.join(_HISTORY_COLUMNS)}) "
            f"VALUES ({', '.join(p(c) for c in _HISTORY_COLUMNS)})"
        )
        if not sqlite:
            self.pg = _PgCommit(instances, waits, history)
        # connections of our own, when the engine is ours and has a real pool (an in-memory
        # SQLite database is one shared connection, which must stay the pool's)
        memory = sqlite and db.url.database in (None, "", ":memory:")
        self.kept: list[Any] | None = [] if own and not memory else None
        # as many at once as the pool would have allowed (its size and overflow)
        pool = db.pool
        size = pool.size() if hasattr(pool, "size") else 1  # a StaticPool has one
        most = size + max(getattr(pool, "_max_overflow", 0), 0)
        self.slots = threading.BoundedSemaphore(max(most, 1))

    def when(self, value: datetime | None) -> Any:
        return when(value, self.sqlite)

    def row_params(self, row: Stored) -> dict[str, Any]:
        params = {c: getattr(row, c) for c in _INSTANCE_COLUMNS}
        for c in ("due_at", "lease_until", "created_at", "updated_at"):
            params[c] = self.when(params[c])
        params["id"] = row.id
        return params

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A DB-API connection for one load or commit; on PostgreSQL in autocommit mode.

        When signoff made the engine, the hot path keeps a few connections of its own (taken
        out of the pool once, `detach`ed), so a load or commit costs a list pop and append,
        not a pool checkout and a reset. With the application's engine, connections come from
        its pool and go back as it expects them (autocommit off). Either way a connection the
        server dropped is thrown away, not reused."""
        kept = self.kept
        if kept is not None:
            if not self.slots.acquire(timeout=CHECKOUT_TIMEOUT):
                raise Busy("every database connection is busy; try again shortly")
            try:
                try:
                    conn = kept.pop()
                except IndexError:
                    conn = self._detached()
                try:
                    yield conn
                except BaseException as exc:
                    if isinstance(exc, self.lost) or not self._idle(conn):
                        conn.close()
                        raise
                    if self.sqlite and conn.in_transaction:
                        conn.rollback()
                    kept.append(conn)
                    raise
                kept.append(conn)
            finally:
                self.slots.release()
            return
        conn = self.db.raw_connection()
        driver = conn.driver_connection
        try:
            if not self.sqlite:
                driver.autocommit = True
            yield conn
            if not self.sqlite:
                driver.autocommit = False
        except self.lost:
            conn.invalidate()
            raise
        except BaseException:
            if not self.sqlite:
                if not self._idle(driver):
                    conn.invalidate()
                    raise
                driver.autocommit = False
            raise
        finally:
            conn.close()

    def _detached(self) -> Any:
        fairy = self.db.raw_connection()
        fairy.detach()  # ours now: the pool neither counts it nor resets it
        conn = fairy.dbapi_connection
        if not self.sqlite:
            conn.autocommit = True
        return conn

    def _idle(self, conn: Any) -> bool:
        """Whether a PostgreSQL connection is outside any transaction (always so on SQLite:
        the caller rolls back there)."""
        return self.sqlite or bool(conn.info.transaction_status == 0)

    def close(self) -> None:
        """Close the connections kept for the hot path."""
        kept, self.kept = self.kept, ([] if self.kept is not None else None)
        for conn in kept or ():
            with suppress(Exception):  # closing what the server dropped already
                conn.close()

    def load(self, instance_id: str) -> Stored | None:
        """One instance row: a single SELECT, one round trip. A connection that turns out to
        be dead (the server restarted) is replaced once, which is why no pre-ping is needed."""
        for attempt in (1, 2):
            try:
                with self.connection() as conn:
                    cur = conn.cursor()
                    cur.execute(self.select, {"id": instance_id})
                    found = cur.fetchone()
                break
            except self.lost:
                if attempt == 2:
                    raise
        if found is None:
            return None
        values = dict(zip(("id", *_INSTANCE_COLUMNS), found, strict=True))
        for c in ("due_at", "lease_until", "created_at", "updated_at"):
            if values[c] is not None:
                values[c] = aware(values[c])
        return Stored(**values)

    def write(
        self,
        row: Stored,
        expected_version: int | None,
        waits: Sequence[WaitRecord] | None,
        history: Sequence[Record],
    ) -> bool:
        """Insert (`expected_version` None) or guarded-update one instance with its rows, in
        one transaction. False when the version check failed; nothing is written then."""
        params = self.row_params(row)
        if not self.sqlite:
            return self._write_pg(row, params, expected_version, waits, history)
        with self.lock, self.connection() as conn:
            try:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                if expected_version is None:
                    cur.execute(self.insert, params)
                else:
                    params["b_id"], params["b_expected"] = row.id, expected_version
                    cur.execute(self.update, params)
                    if cur.rowcount != 1:
                        conn.rollback()
                        return False
                    if waits is not None:
                        cur.execute(self.delete_waits, {"b_id": row.id})
                if waits:
                    cur.executemany(self.insert_wait, [self._wait(row.id, w) for w in waits])
                if history:
                    cur.executemany(
                        self.insert_history, [self._history(row.id, h) for h in history]
                    )
                conn.commit()
                return True
            except self.refused as exc:  # text the database cannot keep, ...
                conn.rollback()
                raise DataNotStorable(f"the database refused the data: {exc}") from exc
            except BaseException:
                conn.rollback()
                raise

    def claim_due(
        self,
        now: datetime,
        owner: str,
        until: datetime,
        limit: int,
        instance_id: str | None,
        workflows: Collection[str] | None,
    ) -> list[str]:
        """`Store.claim_due` on PostgreSQL: the pick (FOR UPDATE SKIP LOCKED) and the lease in
        one autocommit statement, prepared once per shape (one instance or a batch, any or
        some workflows)."""
        one, some = instance_id is not None, workflows is not None
        sql = self.pg.claims.get((one, some))
        if sql is None:
            sql = self.pg.claims[one, some] = self.pg.claim(one, some)
        params = {
            "now": self.when(now),
            "owner": owner,
            "until": self.when(until),
            "limit": limit,
            "id": instance_id,
            "workflows": list(workflows or ()),
        }
        with self.connection() as conn:
            cur = conn.cursor()
            cur.execute(sql, params)
            return [r[0] for r in cur.fetchall()]

    def _write_pg(
        self,
        row: Stored,
        params: dict[str, Any],
        expected_version: int | None,
        waits: Sequence[WaitRecord] | None,
        history: Sequence[Record],
    ) -> bool:
        # datetimes go as ISO text (naive UTC), which the recordset's timestamp columns read
        rows = [self._wait(row.id, w) for w in waits or ()]
        entries = [self._history(row.id, h) for h in history]
        if any("\x00" in v for r in (*rows, *entries) for v in r.values() if isinstance(v, str)):
            # what psycopg says of a NUL in a text parameter; inside JSON it would reach the
            # server and come back as an obscure "unsupported Unicode escape sequence"
            raise DataNotStorable(
                "the database refused the data: PostgreSQL text fields cannot contain NUL "
                "(0x00) bytes"
            )
        params["w_rows"] = json.dumps(rows, default=_iso)
        params["h_rows"] = json.dumps(entries, default=_iso)
        # an instance left due with nobody driving it: a scheduler in any process arms it
        due = row.due_at if row.lease_owner is None else None
        if due is not None:
            params["notify"] = f"{row.id} {due.astimezone(UTC).isoformat()}"
        if expected_version is None:
            what = "insert"
        else:
            params["b_id"], params["b_expected"] = row.id, expected_version
            what = "update waits" if waits is not None else "update"
        sql = self.pg.sql[what, due is not None]
        try:
            with self.connection() as conn:
                cur = conn.cursor()
                cur.execute(sql, params)
                found = cur.fetchone()
        except self.refused as exc:  # text the database cannot keep (NUL), ...
            raise DataNotStorable(f"the database refused the data: {exc}") from exc
        return bool(found and found[0] == 1)

    def _wait(self, instance_id: str, w: WaitRecord) -> dict[str, Any]:
        return {
            "instance_id": instance_id,
            "thread": w.thread,
            "wait": w.wait,
            "event": w.event,
            "kind": w.kind,
            "began_at": self.when(w.began_at),
            "due_at": self.when(w.due_at),
            "approvers": json.dumps(w.approvers) if w.approvers is not None else None,
            "title": w.title,
            "wait_key": w.wait_key,
        }

    def _history(self, instance_id: str, h: Record) -> dict[str, Any]:
        return {
            "instance_id": instance_id,
            "at": self.when(h.at),
            "kind": h.kind,
            "thread": h.thread,
            "name": h.name,
            "actor": h.actor,
            "via": h.via,
            "message": h.message,
            "detail": json.dumps(h.detail, default=str) if h.detail is not None else None,
        }


_WAIT_TYPES = {"began_at": "timestamp", "due_at": "timestamp"}
_HISTORY_TYPES = {"at": "timestamp"}


class _PgCommit:
    """A commit on PostgreSQL as one statement. Its text is fixed whatever the number of rows
    (the wait and history rows go in as one JSON array each, which the server turns back into
    rows in order), so it is prepared once per connection and its parameters cost one
    json.dumps each to send."""

    def __init__(self, instances: str, waits: str, history: str) -> None:
        def rows(param: str, names: Sequence[str], types: dict[str, str]) -> str:
            typed = ", ".join(f"{n} {types.get(n, 'text')}" for n in names)
            return (
                f"ROWS FROM (json_to_recordset(%({param})s::json) AS ({typed})) "
                f"WITH ORDINALITY AS x({', '.join(names)}, n)"
            )

        w_cols, h_cols = _WAIT_COLUMNS[1:], _HISTORY_COLUMNS[1:]
        waits_in = (
            f"INSERT INTO {waits} ({', '.join(_WAIT_COLUMNS)}) "
            f"SELECT k.id, {', '.join('x.' + c for c in w_cols)} "
            f"FROM k, {rows('w_rows', w_cols, _WAIT_TYPES)} ORDER BY x.n"
        )
        history_in = (
            f"INSERT INTO {history} ({', '.join(_HISTORY_COLUMNS)}) "
            f"SELECT k.id, {', '.join('x.' + c for c in h_cols)} "
            f"FROM k, {rows('h_rows', h_cols, _HISTORY_TYPES)} ORDER BY x.n"
        )
        cols = ("id", *_INSTANCE_COLUMNS)
        sets = ", ".join(f"{c} = %({c})s" for c in _INSTANCE_COLUMNS)
        guarded = (
            f"UPDATE {instances} SET {sets} "
            "WHERE id = %(b_id)s AND version = %(b_expected)s RETURNING id"
        )

        # k holds the row's id when the write happened, no row when the version check failed:
        # every other part joins k, so a failed check writes nothing at all. With `notified`,
        # n tells the schedulers LISTENing on DUE_CHANNEL that the instance is due at a new
        # time (sent when the statement commits, and only if it wrote). A commit that leaves
        # nothing due uses the statement without it: the NOTIFY part costs a good part of a
        # commit even when it sends nothing.
        def statement(notified: bool, head: str, *parts: str) -> str:
            ctes = [head, *parts]
            done = "SELECT (SELECT count(*) FROM k)"
            if notified:
                ctes.append(f"n AS (SELECT pg_notify('{DUE_CHANNEL}', %(notify)s) FROM k)")
                done += ", (SELECT count(*) FROM n)"
            return f"WITH {', '.join(ctes)} {done}"

        inserted = (
            f"k AS (INSERT INTO {instances} ({', '.join(cols)}) "
            f"VALUES ({', '.join(f'%({c})s' for c in cols)}) RETURNING id)"
        )
        replaced = f"d AS (DELETE FROM {waits} WHERE instance_id IN (SELECT id FROM k))"
        self.instances = instances
        self.claims: dict[tuple[bool, bool], str] = {}
        # (what, notified) -> the statement
        self.sql = {
            **{
                ("insert", n): statement(n, inserted, f"w AS ({waits_in})", f"h AS ({history_in})")
                for n in (False, True)
            },
            **{
                ("update", n): statement(n, f"k AS ({guarded})", f"h AS ({history_in})")
                for n in (False, True)
            },
            **{
                ("update waits", n): statement(
                    n, f"k AS ({guarded})", replaced, f"w AS ({waits_in})", f"h AS ({history_in})"
                )
                for n in (False, True)
            },
        }

    def claim(self, one: bool, some: bool) -> str:
        """The claim statement for one instance (`one`) or a batch, of some workflows or any."""
        free = (
            "due_at <= %(now)s AND (lease_owner IS NULL OR lease_until IS NULL "
            "OR lease_until <= %(now)s)"
        )
        if one:
            free += " AND id = %(id)s"
        if some:
            free += " AND workflow = ANY(%(workflows)s::text[])"
        return (
            f"UPDATE {self.instances} SET lease_owner = %(owner)s, lease_until = %(until)s, "
            "due_at = %(until)s, version = version + 1 "
            f"WHERE id IN (SELECT id FROM {self.instances} WHERE {free} ORDER BY due_at "
            f"LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AND {free} RETURNING id"
        )


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _Never(Exception):
    """Stands for a driver error class the driver does not have."""
