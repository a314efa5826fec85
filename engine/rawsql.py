"""The commit hot path, spoken straight to the DB-API driver.

Building and compiling SQLAlchemy statements costs more than SQLite takes to run them, and a
transition commits after every step. So the three statements of a commit (guarded update,
wait rows, history rows) are written once here as SQL text in the driver's parameter style, and
run on a pooled raw connection. Reads and everything else stay on SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from engine.records import Record, Stored, WaitRecord

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


class RawWriter:
    def __init__(self, db: Any, sqlite: bool) -> None:
        self.db = db
        self.sqlite = sqlite

        def p(name: str) -> str:
            return f":{name}" if sqlite else f"%({name})s"

        sets = ", ".join(f"{c} = {p(c)}" for c in _INSTANCE_COLUMNS)
        self.update = (
            f"UPDATE signoff_instances SET {sets} "
            f"WHERE id = {p('b_id')} AND version = {p('b_expected')}"
        )
        cols = ("id", *_INSTANCE_COLUMNS)
        self.insert = (
            f"INSERT INTO signoff_instances ({', '.join(cols)}) "
            f"VALUES ({', '.join(p(c) for c in cols)})"
        )
        self.delete_waits = f"DELETE FROM signoff_waits WHERE instance_id = {p('b_id')}"
        self.insert_wait = (
            f"INSERT INTO signoff_waits ({', '.join(_WAIT_COLUMNS)}) "
            f"VALUES ({', '.join(p(c) for c in _WAIT_COLUMNS)})"
        )
        self.insert_history = (
            f"INSERT INTO signoff_history ({', '.join(_HISTORY_COLUMNS)}) "
            f"VALUES ({', '.join(p(c) for c in _HISTORY_COLUMNS)})"
        )

    def when(self, value: datetime | None) -> Any:
        """Datetimes as SQLAlchemy's UTCDateTime column stores them: naive UTC."""
        if value is None:
            return None
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else naive

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
