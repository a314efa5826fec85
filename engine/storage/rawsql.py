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
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from signoff.engine.core.records import Record, Stored, WaitRecord

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
    naive = value.astimezone(UTC).replace(tzinfo=None)
    return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else naive


def aware(value: Any) -> datetime:
    """A stored datetime read back: aware UTC (SQLite gives text, PostgreSQL naive datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


class RawPager:
    """`Store.page`: one keyset page of instances, most recently changed first, with the
    events each waits for. The SQL of each shape of filter is built once and kept."""

    def __init__(self, db: Any, sqlite: bool, prefix: str = "") -> None:
        self.db = db
        self.sqlite = sqlite
        self.prefix = prefix  # the quoted schema and a dot, when the tables have one
        self.mark = "?" if sqlite else "%s"
        self.queries: dict[tuple[bool, bool, bool, bool], str] = {}

    def sql(self, status: bool, workflow: bool, search: bool, before: bool) -> str:
        shape = (status, workflow, search, before)
        found = self.queries.get(shape)
        if found is None:
            m = self.mark
            where = []
            if status:
                where.append(f"status = {m}")
            if workflow:
                where.append(f"workflow = {m}")
            if search:
                where.append(f"(id = {m} OR data LIKE {m} ESCAPE '\\')")
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
        params: list[Any] = []
        if status:
            params.append(status)
        if workflow:
            params.append(workflow)
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [search, f"%{escaped}%"]
        if before is not None:
            at = when(before[0], self.sqlite)
            params += [at, at, before[1]]
        params.append(limit)
        query = self.sql(bool(status), bool(workflow), bool(search), before is not None)
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            if self.sqlite:
                cur.execute("BEGIN")  # both reads see one snapshot
            cur.execute(query, params)
            rows = [
                {
                    "id": iid,
                    "workflow": wf,
                    "status": st,
                    "error": error,
                    "created_at": aware(created),
                    "updated_at": aware(updated),
                    "waiting_for": [],
                }
                for iid, wf, st, error, created, updated in cur.fetchall()
            ]
            if rows:
                by_id = {r["id"]: r["waiting_for"] for r in rows}
                marks = ", ".join([self.mark] * len(by_id))
                cur.execute(
                    f"SELECT instance_id, event FROM {self.prefix}signoff_waits "
                    f"WHERE instance_id IN ({marks})",
                    list(by_id),
                )
                for iid, event in cur.fetchall():
                    by_id[iid].append(event)
            conn.rollback()
            return rows
        finally:
            conn.close()


class RawWriter:
    def __init__(self, db: Any, sqlite: bool, prefix: str = "") -> None:
        """`prefix` is the quoted schema and a dot, when the tables have one."""
        self.db = db
        self.sqlite = sqlite
        instances, waits, history = (
            f"{prefix}signoff_{t}" for t in ("instances", "waits", "history")
        )

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
                cur.executemany(self.insert_wait, [self._wait(row.id, w) for w in waits])
            if history:
                cur.executemany(self.insert_history, [self._history(row.id, h) for h in history])
            conn.commit()
            return True
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

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
