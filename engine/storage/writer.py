"""The load and the commit of an instance, spoken straight to the DB-API driver (`RawWriter`).

Building and compiling SQLAlchemy statements costs more than SQLite takes to run them, and a
transition commits after every step. So the load of an instance and the statements of a commit
(guarded update, wait rows, history, outbox and participants rows) are written once here as SQL
text in the driver's parameter style, and run on connections the hot path keeps for itself
(`hotconnections.py`). On PostgreSQL a load and a commit are one statement and one round trip
each (the commit: `pgcommit.py`). MariaDB/MySQL take the SQLite path's statements (in the
driver's "%(name)s" style) in a transaction of their own. The instances list is read by
`pager.py`, due claims made by `claims.py`; everything else stays on SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from signoff.engine.core.records import Record, Stored, WaitRecord
from signoff.engine.errors import DataNotStorable
from signoff.engine.storage.claims import DueClaims
from signoff.engine.storage.columns import (
    CHANGING_COLUMNS,
    HISTORY_COLUMNS,
    INSTANCE_COLUMNS,
    OUTBOX_COLUMNS,
    PROGRESS_COLUMNS,
    WAIT_COLUMNS,
    stored,
    when,
)
from signoff.engine.storage.commitrows import commit_participants, detail_text, iso_text
from signoff.engine.storage.drivers import (
    MYSQL_RETRY,
    mysql_code,
    said,
)
from signoff.engine.storage.pgcommit import PLAIN_HISTORY, PLAIN_HISTORY_KEYS, PgCommit
from signoff.engine.storage.visibility import ACTED

# rows of one table a commit adds in one multi-row INSERT (SQLite, MariaDB/MySQL), at most:
# within SQLite's oldest limit of 999 parameters; more go one INSERT run each
MULTI_ROW = 16


class RawWriter(DueClaims):
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
        instances, waits, history, outbox, people = (
            f"{prefix}signoff_{t}"
            for t in ("instances", "waits", "history", "outbox", "participants")
        )
        super().__init__(db, sqlite, lock, own)

        self.select = f"SELECT id, {', '.join(INSTANCE_COLUMNS)} FROM {instances} WHERE id = " + (
            ":id" if sqlite else "%(id)s"
        )
        # SQLite, MariaDB/MySQL: every statement by position (no dict per statement or row),
        # the rows a commit adds as one multi-row INSERT per table (`_add_rows`)
        mark = "?" if sqlite else "%s"
        self.mark = mark
        cols = ("id", *INSTANCE_COLUMNS)
        self.insert = (
            f"INSERT INTO {instances} ({', '.join(cols)}) VALUES ({', '.join(mark for _ in cols)})"
        )
        self.update = (
            f"UPDATE {instances} SET {', '.join(f'{c} = {mark}' for c in CHANGING_COLUMNS)} "
            f"WHERE id = {mark} AND version = {mark}"
        )
        self.progress = (
            f"UPDATE {instances} SET {', '.join(f'{c} = {mark}' for c in PROGRESS_COLUMNS)} "
            f"WHERE id = {mark} AND version = {mark}"
        )
        self.delete_waits = f"DELETE FROM {waits} WHERE instance_id = {mark}"
        self.insert_wait = f"INSERT INTO {waits} ({', '.join(WAIT_COLUMNS)}) VALUES "
        self.insert_history = f"INSERT INTO {history} ({', '.join(HISTORY_COLUMNS)}) VALUES "
        # an outbox row already there (the same message queued again) is kept as it is
        self.insert_outbox = (
            f"INSERT {'IGNORE ' if self.mysql else ''}INTO {outbox} ({', '.join(OUTBOX_COLUMNS)}) "
            f"VALUES ({', '.join(f'%({c})s' if not sqlite else f':{c}' for c in OUTBOX_COLUMNS)})"
            + ("" if self.mysql else " ON CONFLICT (id) DO NOTHING")
        )
        # a participant already there (acted again, still named) is kept as it is
        self.delete_deciders = (
            f"DELETE FROM {people} WHERE instance_id = {mark} AND role <> '{ACTED}'"
        )
        self.insert_participant = (
            f"INSERT {'IGNORE' if self.mysql else 'OR IGNORE'} INTO {people} "
            "(instance_id, role, person) VALUES "
        )
        self.multi_row: dict[tuple[str, int, int], str] = {}  # (head, width, rows) -> SQL
        self.begin = "BEGIN IMMEDIATE" if sqlite else "BEGIN"
        self.instances = instances
        if not sqlite and not self.mysql:
            self.pg = PgCommit(instances, waits, history, outbox, people)
            # imported here: psycopg is imported only where it is used (on SQLite its modules
            # would cost startup, and every full garbage collection would walk their objects)
            from signoff.engine.storage.pgsend import PreparedSender

            self.sender = PreparedSender()

    def row_params(self, row: Stored, written: str) -> dict[str, Any]:
        """The row's values for an "insert", an "update" (what may change) or a "progress"
        write (data, state and version)."""
        if written == "progress":
            return {"data": row.data, "state": row.state, "version": row.version}
        when = self.when
        params = {
            "id": row.id,
            "status": row.status,
            "data": row.data,
            "state": row.state,
            "result": row.result,
            "error": row.error,
            "version": row.version,
            "due_at": when(row.due_at),
            "lease_owner": row.lease_owner,
            "lease_until": when(row.lease_until),
            "updated_at": when(row.updated_at),
        }
        if written == "insert":
            params["workflow"], params["created_at"] = row.workflow, when(row.created_at)
        return params

    def load(self, instance_id: str) -> Stored | None:
        """One instance row: a single SELECT, one round trip. A connection that turns out to
        be dead (the server restarted) is replaced once, which is why no pre-ping is needed."""
        for attempt in (1, 2):
            try:
                with self.connection() as conn:
                    cur = self._cursor(conn)
                    cur.execute(self.select, {"id": instance_id})
                    found = cur.fetchone()
                break
            except self.lost:
                if attempt == 2:
                    raise
        return None if found is None else stored(found)

    def write(
        self,
        row: Stored,
        expected_version: int | None,
        waits: Sequence[WaitRecord] | None,
        history: Sequence[Record],
        progress: bool = False,
        outbox: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Insert (`expected_version` None) or guarded-update one instance with its rows, in
        one transaction. False when the version check failed; nothing is written then.
        `progress`: of the row, only data, state and version are written (the other columns
        are as last committed), so no index on them is touched. `outbox`: messages to send
        after this commit (rows of `OUTBOX_COLUMNS`; one already there is kept as it is)."""
        progress = progress and expected_version is not None
        if not self.sqlite and not self.mysql:
            written = "insert" if expected_version is None else "progress" if progress else "update"
            params = self.row_params(row, written)
            return self._write_pg(row, params, expected_version, waits, history, progress, outbox)
        # SQLite, MariaDB/MySQL: the statements in one transaction (on SQLite BEGIN IMMEDIATE
        # takes the write lock up front). A deadlock or a lock wait that timed out rolled the
        # whole transaction back (MariaDB): it runs again, twice at most.
        rid = row.id
        head, values = self._row_statement(row, expected_version, progress)
        # a step's commit has one history row and nothing else: no comprehension runs for none
        wait_rows = [self._wait_values(rid, row.workflow, w) for w in waits] if waits else []
        history_rows = [self._history_values(rid, h) for h in history]
        outbox_rows = [self._outbox(o) for o in outbox] if outbox else []
        named = commit_participants(history, waits)
        people = [(rid, role, person) for role, person in named] if named else []
        for attempt in (1, 2, 3):
            try:
                with self.lock, self.connection() as conn:
                    cur = self._cursor(conn)
                    cur.execute(self.begin)
                    try:
                        cur.execute(head, values)
                        if expected_version is not None:
                            if cur.rowcount != 1:
                                conn.rollback()
                                return False
                            if waits is not None:
                                by_id = (rid,)
                                cur.execute(self.delete_waits, by_id)
                                cur.execute(self.delete_deciders, by_id)
                        if wait_rows:
                            self._add_rows(cur, self.insert_wait, wait_rows)
                        if history_rows:
                            self._add_rows(cur, self.insert_history, history_rows)
                        if people:
                            self._add_rows(cur, self.insert_participant, people)
                        if outbox_rows:
                            cur.executemany(self.insert_outbox, outbox_rows)
                        if self.sqlite:  # a statement the connection's cache keeps: its
                            cur.execute("COMMIT")  # `commit()` prepares one every time
                        else:
                            conn.commit()
                        return True
                    except BaseException:
                        conn.rollback()
                        raise
            except self.refused as exc:  # text the database cannot keep, too long, ...
                raise DataNotStorable(f"the database refused the data: {said(exc)}") from exc
            except self.lost as exc:
                if mysql_code(exc) not in MYSQL_RETRY or attempt == 3:
                    raise
        raise AssertionError("unreachable")

    def _row_statement(
        self, row: Stored, expected_version: int | None, progress: bool
    ) -> tuple[str, tuple[Any, ...]]:
        """The statement that writes the row (SQLite, MariaDB/MySQL), and its values."""
        if expected_version is not None and progress:
            return self.progress, (row.data, row.state, row.version, row.id, expected_version)
        sqlite = self.sqlite
        changing = (
            row.status,
            row.data,
            row.state,
            row.result,
            row.error,
            row.version,
            when(row.due_at, sqlite),
            row.lease_owner,
            when(row.lease_until, sqlite),
        )
        updated = when(row.updated_at, sqlite)
        if expected_version is None:
            created = when(row.created_at, sqlite)
            return self.insert, (row.id, row.workflow, *changing, created, updated)
        return self.update, (*changing, updated, row.id, expected_version)

    def _add_rows(self, cur: Any, head: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert `rows` (SQLite, MariaDB/MySQL): one multi-row INSERT, in order (so their ids
        ascend in it); past `MULTI_ROW` rows, one INSERT run for each."""
        count = len(rows)
        width = len(rows[0])
        if count > MULTI_ROW:
            cur.executemany(self._multi_row(head, width, 1), rows)
        elif count == 1:
            cur.execute(self._multi_row(head, width, 1), rows[0])
        else:
            cur.execute(self._multi_row(head, width, count), [v for r in rows for v in r])

    def _multi_row(self, head: str, width: int, count: int) -> str:
        key = (head, width, count)
        found = self.multi_row.get(key)
        if found is None:
            one = f"({', '.join(self.mark for _ in range(width))})"
            found = self.multi_row[key] = head + ", ".join(one for _ in range(count))
        return found

    def _write_pg(
        self,
        row: Stored,
        params: dict[str, Any],
        expected_version: int | None,
        waits: Sequence[WaitRecord] | None,
        history: Sequence[Record],
        progress: bool,
        outbox: Sequence[dict[str, Any]] = (),
    ) -> bool:
        # datetimes go as ISO text (naive UTC), which the recordset's timestamp columns read
        rows = [self._wait(row.id, row.workflow, w) for w in waits or ()]
        entries = [self._history_values(row.id, h) for h in history]
        plain = len(entries) <= PLAIN_HISTORY
        # text that goes inside JSON is looked at for NUL here: psycopg says this of a NUL in
        # a text parameter (as the plain history values are), while inside JSON it would reach
        # the server and come back as an obscure "unsupported Unicode escape sequence"
        if any("\x00" in v for r in rows for v in r.values() if isinstance(v, str)) or (
            not plain and any("\x00" in v for e in entries for v in e if isinstance(v, str))
        ):
            raise DataNotStorable(
                "the database refused the data: PostgreSQL text fields cannot contain NUL "
                "(0x00) bytes"
            )
        if rows:
            params["w_rows"] = json.dumps(rows, default=iso_text)
        if plain:
            for keys, entry in zip(PLAIN_HISTORY_KEYS, entries, strict=False):
                params.update(zip(keys, entry, strict=True))
            history_shape = len(entries)
        else:
            params["h_rows"] = json.dumps(
                [dict(zip(HISTORY_COLUMNS, e, strict=True)) for e in entries], default=iso_text
            )
            history_shape = -1
        # an instance left due with nobody driving it: a scheduler in any process arms it
        due = row.due_at if row.lease_owner is None else None
        if due is not None:
            params["notify"] = f"{row.id} {due.astimezone(UTC).isoformat()}"
        if expected_version is None:
            shape = "insert"
        else:
            params["b_id"], params["b_expected"] = row.id, expected_version
            shape = "progress" if progress else "update"
        if rows:
            waits_shape = "replace"
        else:  # a new row has no wait rows to clear
            waits_shape = "keep" if waits is None or shape == "insert" else "clear"
        if outbox:
            params["o_rows"] = json.dumps([self._outbox(o) for o in outbox], default=iso_text)
        people = commit_participants(history, waits)
        if people:
            params["p_rows"] = json.dumps([{"role": r, "person": p} for r, p in people])
        # the open waits' participants follow the waits: those no longer named go
        deciders = waits is not None and shape != "insert"
        sql = self.pg.sql(
            shape, waits_shape, due is not None, history_shape, bool(outbox),
            (bool(people), deciders),
        )  # fmt: skip
        try:
            with self.connection() as conn:
                # a kept connection is psycopg's own; a pooled one, SQLAlchemy's wrapper of it
                driver = conn if self.lending is not None else conn.driver_connection
                if self.sender.usable(driver):
                    return self.sender.first_value(driver, sql, params) == b"1"
                cur = self._cursor(conn)
                cur.execute(sql, params)
                found = cur.fetchone()
        except self.refused as exc:  # text the database cannot keep (NUL), ...
            raise DataNotStorable(f"the database refused the data: {exc}") from exc
        return bool(found and found[0] == 1)

    def _drop(self, conn: Any) -> None:
        if not self.sqlite and not self.mysql:
            self.sender.forget(conn)
        super()._drop(conn)

    def _wait(self, instance_id: str, workflow: str, w: WaitRecord) -> dict[str, Any]:
        """A wait row by column name (PostgreSQL, whose commit sends the rows as JSON)."""
        return dict(zip(WAIT_COLUMNS, self._wait_values(instance_id, workflow, w), strict=True))

    def _wait_values(self, instance_id: str, workflow: str, w: WaitRecord) -> tuple[Any, ...]:
        """A wait row's values in `WAIT_COLUMNS` order (SQLite, MariaDB/MySQL)."""
        sqlite = self.sqlite
        return (
            instance_id,
            w.thread,
            w.wait,
            w.event,
            w.kind,
            when(w.began_at, sqlite),
            when(w.due_at, sqlite),
            json.dumps(w.approvers) if w.approvers is not None else None,
            w.title,
            w.wait_key,
            workflow,
        )

    def _outbox(self, o: dict[str, Any]) -> dict[str, Any]:
        return {
            c: self.when(o[c]) if c in ("next_at", "created_at") else o[c] for c in OUTBOX_COLUMNS
        }

    def _history_values(self, instance_id: str, h: Record) -> tuple[Any, ...]:
        """A history row's values in `HISTORY_COLUMNS` order."""
        return (
            instance_id,
            when(h.at, self.sqlite),
            str(h.kind),
            h.thread,
            h.name,
            h.actor,
            h.via,
            h.message,
            detail_text(h) if h.detail is not None else None,
        )
