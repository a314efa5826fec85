"""The hot paths, spoken straight to the DB-API driver: commits, and the instances list.

Building and compiling SQLAlchemy statements costs more than SQLite takes to run them, and a
transition commits after every step. So the three statements of a commit (guarded update,
wait rows, history rows) are written once here as SQL text in the driver's parameter style, and
run on a pooled raw connection; so is the dashboard's most frequent read, one keyset page of
instances (`RawPager`). Everything else stays on SQLAlchemy.

Datetimes are kept the way SQLAlchemy's `UTCDateTime` column keeps them: naive UTC, as text
"%Y-%m-%d %H:%M:%S.%f" on SQLite and as `timestamp without time zone` on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
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
    "workflow",
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
    naive = value.astimezone(UTC).replace(tzinfo=None)
    return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else naive


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


_ID_CHARS = re.compile(r"[A-Za-z0-9._:-]+")  # what an instance id may hold
# `field:value` searches the data: `amount:120`, `employee:bob`
_FIELD_SEARCH = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,99}):\s*(.+)", re.DOTALL)

# How a page may be ordered: the SQL, and the keyset condition that continues after a row.
ORDERS = {
    "recent": (
        "updated_at DESC, id DESC",
        "(updated_at < {m} OR (updated_at = {m} AND id < {m}))",
    ),
    "oldest": (
        "updated_at ASC, id ASC",
        "(updated_at > {m} OR (updated_at = {m} AND id > {m}))",
    ),
    "id": ("id ASC", "id > {m}"),
}


def _like(text: str) -> str:
    """`text` with LIKE's wildcards taken literally (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_terms(search: str, sqlite: bool) -> list[tuple[str, list[str]]]:
    """The ways `search` may match an instance, each (kind, parameters): an id prefix ("id":
    a range of the primary key on SQLite, a LIKE 'prefix%' on PostgreSQL), `field:value` in the
    data ("field": the stored JSON has the field with that value, or a string value starting
    with it), or else the text anywhere in the data ("data")."""
    terms: list[tuple[str, list[str]]] = []
    if _ID_CHARS.fullmatch(search):
        terms.append(("id", [search, search + "\x7f"] if sqlite else [_like(search) + "%"]))
    field = _FIELD_SEARCH.fullmatch(search)
    if field:
        name, value = field.group(1), field.group(2).strip()
        key = _like(json.dumps(name)) + ":"
        text = _like(json.dumps(value, ensure_ascii=False)[:-1])  # an open string: a prefix
        try:
            literal = json.loads(value)
        except ValueError:
            literal = None
        patterns = [f"%{key}{text}%"]
        if isinstance(literal, int | float | bool) or value == "null":
            exact = _like(json.dumps(literal))
            patterns += [f"%{key}{exact},%", f"%{key}{exact}}}%"]
        else:
            patterns += ["", ""]  # the same shape of query whatever the value
        terms.append(("field", patterns))
    else:
        terms.append(("data", [f"%{_like(search)}%"]))
    return terms


class RawPager:
    """`Store.page` and `Store.counts`: one keyset page of instances with the events each waits
    for, and how many instances each status has, under the same filters. The SQL of each
    shape of filter is built once and kept."""

    def __init__(
        self, db: Any, sqlite: bool, prefix: str = "", search_timeout: float = SEARCH_TIMEOUT
    ) -> None:
        self.db = db
        self.sqlite = sqlite
        self.prefix = prefix  # the quoted schema and a dot, when the tables have one
        self.mark = "?" if sqlite else "%s"
        self.queries: dict[tuple[Any, ...], str] = {}
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

    def _match(self, kind: str) -> str:
        m = self.mark
        if kind == "id":
            return f"id >= {m} AND id < {m}" if self.sqlite else f"id LIKE {m} ESCAPE '\\'"
        if kind == "field":
            return " OR ".join([f"data LIKE {m} ESCAPE '\\'"] * 3)
        return f"data LIKE {m} ESCAPE '\\'"

    def sql(self, status: bool, workflow: bool, search: str, before: bool, order: str) -> str:
        """`search` is "" (none), "id", "field" or "data" (see `search_terms`; the last two read
        rows, so they run under a time limit)."""
        shape = ("page", status, workflow, search, before, order)
        found = self.queries.get(shape)
        if found is None:
            m = self.mark
            where = []
            if status:
                where.append(f"status = {m}")
            if workflow:
                where.append(f"workflow = {m}")
            if search:
                where.append(f"({self._match(search)})")
            ordering, after = ORDERS[order]
            if before:
                where.append(after.format(m=m))
            # SQLite would count on the workflow/status index (made for the counts) and sort
            # every row of the workflow; walking an index in the page's order stops at the page
            hint = ""
            if self.sqlite and workflow and order != "id":
                index = "status_recent" if status else "workflow_recent"
                hint = f" INDEXED BY ix_signoff_instances_{index}"
            found = self.queries[shape] = (
                "SELECT id, workflow, status, error, created_at, updated_at, data, state "
                f"FROM {self.prefix}signoff_instances{hint}"
                + (" WHERE " + " AND ".join(where) if where else "")
                + f" ORDER BY {ordering} LIMIT {m}"
            )
        return found

    def page(
        self,
        status: str | None,
        workflow: str | None,
        search: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
        order: str = "recent",
    ) -> list[dict[str, Any]]:
        """Without `search`, one query. With it, one per way it may match (`search_terms`),
        merged in the page's order. Rows carry their data and state as stored (JSON text)."""
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            if self.sqlite:
                cur.execute("BEGIN")  # every read sees one snapshot
            if not search:
                found = self._select(cur, status, workflow, "", [], limit, before, order)
            else:
                found = []
                for kind, params in search_terms(search, self.sqlite):
                    if kind == "id":
                        found += self._select(
                            cur, status, workflow, kind, params, limit, before, order
                        )
                        continue
                    with self.time_limit(conn, cur):
                        found += self._select(
                            cur, status, workflow, kind, params, limit, before, order
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
                    "data": data,
                    "state": state,
                }
                for iid, wf, st, error, created, updated, data, state in found
            }
            if order == "id":
                page = sorted(rows.values(), key=lambda r: r["id"])
            else:
                page = sorted(
                    rows.values(),
                    key=lambda r: (r["updated_at"], r["id"]),
                    reverse=order == "recent",
                )
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

    def counts(self, workflow: str | None, search: str | None) -> dict[str, int]:
        """How many instances each status has, of `workflow` and matching `search` (as `page`
        matches it). A search reads every row, under the time limit."""
        m = self.mark
        where, params = [], []
        if workflow:
            where.append(f"workflow = {m}")
            params.append(workflow)
        if search:
            terms = search_terms(search, self.sqlite)
            where.append("(" + " OR ".join(f"({self._match(k)})" for k, _ in terms) + ")")
            params += [p for _, ps in terms for p in ps]
        sql = (
            f"SELECT status, count(*) FROM {self.prefix}signoff_instances"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY status"
        )
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            if search:
                with self.time_limit(conn, cur):
                    cur.execute(sql, params)
                    found = cur.fetchall()
            else:
                cur.execute(sql, params)
                found = cur.fetchall()
            conn.rollback()
            return {status: int(n) for status, n in found}
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
        order: str,
    ) -> list[Any]:
        params: list[Any] = []
        if status:
            params.append(status)
        if workflow:
            params.append(workflow)
        params += search_params
        if before is not None:
            if order == "id":
                params.append(before[1])
            else:
                at = when(before[0], self.sqlite)
                params += [at, at, before[1]]
        params.append(limit)
        sql = self.sql(bool(status), bool(workflow), search, before is not None, order)
        cur.execute(sql, params)
        return list(cur.fetchall())


class RawWriter:
    def __init__(self, db: Any, sqlite: bool, prefix: str = "", lock: Any = None) -> None:
        """`prefix` is the quoted schema and a dot, when the tables have one; `lock` is held
        around each write (the store's in-process writer lock on SQLite)."""
        instances, waits, history = (
            f"{prefix}signoff_{t}" for t in ("instances", "waits", "history")
        )
        self.db = db
        self.sqlite = sqlite
        self.lock = lock if lock is not None else nullcontext()
        # the driver's error for data it cannot store: never worth retrying as it is
        self.refused: type[Exception] = getattr(db.dialect.dbapi, "DataError", _Never)

        def p(name: str) -> str:
            return f":{name}" if sqlite else f"%({name})s"

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

    def when(self, value: datetime | None) -> Any:
        return when(value, self.sqlite)

    def row_params(self, row: Stored) -> dict[str, Any]:
        params = {c: getattr(row, c) for c in _INSTANCE_COLUMNS}
        for c in ("due_at", "lease_until", "created_at", "updated_at"):
            params[c] = self.when(params[c])
        params["id"] = row.id
        return params

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
        with self.lock:
            return self._write(row, params, expected_version, waits, history)

    def _write(
        self,
        row: Stored,
        params: dict[str, Any],
        expected_version: int | None,
        waits: Sequence[WaitRecord] | None,
        history: Sequence[Record],
    ) -> bool:
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            if self.sqlite:
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
                cur.executemany(
                    self.insert_wait, [self._wait(row.id, row.workflow, w) for w in waits]
                )
            if history:
                cur.executemany(self.insert_history, [self._history(row.id, h) for h in history])
            conn.commit()
            return True
        except self.refused as exc:  # text the database cannot keep (NUL on PostgreSQL), ...
            conn.rollback()
            raise DataNotStorable(f"the database refused the data: {exc}") from exc
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _wait(self, instance_id: str, workflow: str, w: WaitRecord) -> dict[str, Any]:
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
            "workflow": workflow,
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


class _Never(Exception):
    """Stands for a driver error class the driver does not have."""
