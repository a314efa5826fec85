"""Due claims (a timer's fire starts with one): the statements of a claim and of the test
whether one is due, as SQL text built once per shape (one instance or a batch, of any or some
workflows; SQLite, PostgreSQL, and MariaDB/MySQL, which has no UPDATE ... RETURNING), and their
run on the hot path's connections (`DueClaims`)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from functools import cache
from typing import Any

from signoff.engine.core.records import Stored
from signoff.engine.storage.columns import INSTANCE_COLUMNS, stored
from signoff.engine.storage.drivers import MYSQL_RETRY, mysql_code
from signoff.engine.storage.hotconnections import HotConnections


def _param(sqlite: bool, name: str) -> str:
    return f":{name}" if sqlite else f"%({name})s"


def _due(sqlite: bool, one: bool, some: bool, alias: str = "", mysql: bool = False) -> str:
    """What makes an instance claimable now: due, and no live lease."""
    now, t = _param(sqlite, "now"), alias
    found = (
        f"{t}due_at <= {now} AND ({t}lease_owner IS NULL "
        f"OR {t}lease_until IS NULL OR {t}lease_until <= {now})"
    )
    if one:
        found += f" AND {t}id = {_param(sqlite, 'id')}"
    if some and sqlite:
        found += f" AND +{t}workflow IN (SELECT value FROM json_each(:workflows))"
    elif some and mysql:
        found += f" AND {t}workflow IN %(workflows)s"
    elif some:
        found += f" AND {t}workflow = ANY(%(workflows)s::text[])"
    return found


@cache
def claim_statements(table: str, sqlite: bool, one: bool, some: bool) -> tuple[str, str]:
    """(is one due?, the claim) for one instance (`one`) or a batch, of some workflows or any:
    SQL text built once per shape, as a timer's fire starts with a claim and building the
    statement with SQLAlchemy cost more than running it.

    The test reads due_at's index in order, so even a generic plan does not read every row.
    On SQLite the workflows are a JSON array (one text for any number of them), and "+" makes
    the workflow a filter, not an index to search by: SQLite would otherwise walk every
    instance of those workflows, finished ones included.

    On PostgreSQL the pick is a CTE, which runs once (a CTE that locks rows is never folded
    into the query). As `WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` the planner
    may run the subquery again for each row it scans, and every run skips the rows the last
    one locked: one claim could take many more rows than `limit`. On SQLite the write lock
    (BEGIN IMMEDIATE) makes the pick and the update one step."""
    found = _due(sqlite, one, some)
    test = f"SELECT 1 FROM {table} WHERE {found} ORDER BY due_at LIMIT 1"
    owner, until = _param(sqlite, "owner"), _param(sqlite, "until")
    lease = f"lease_owner = {owner}, lease_until = {until}, due_at = {until}"
    if sqlite:
        return test, (
            f"UPDATE {table} SET {lease}, version = version + 1 WHERE id IN (SELECT id FROM "
            f"{table} WHERE {found} ORDER BY due_at LIMIT :limit) AND {found} "
            f"RETURNING id, {', '.join(INSTANCE_COLUMNS)}"
        )
    return test, (
        f"WITH picked AS (SELECT id FROM {table} WHERE {found} "
        "ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        f"UPDATE {table} AS i SET {lease}, version = i.version + 1 "
        f"FROM picked WHERE i.id = picked.id AND {_due(sqlite, one, some, 'i.')} "
        f"RETURNING i.id, {', '.join('i.' + c for c in INSTANCE_COLUMNS)}"
    )


@cache
def mysql_claim_statements(table: str, one: bool, some: bool) -> tuple[str, str, str, str]:
    """`claim_statements` for MariaDB/MySQL: (is one due?, pick and lock, lease, read back).
    The pick locks the earliest due rows that nobody else has locked (SKIP LOCKED, MariaDB
    10.6 and MySQL 8); the lease re-checks them, and the read back takes the rows it leased."""
    found = _due(False, one, some, mysql=True)
    test = f"SELECT 1 FROM {table} WHERE {found} ORDER BY due_at LIMIT 1"
    pick = (
        f"SELECT id FROM {table} WHERE {found} ORDER BY due_at LIMIT %(limit)s "
        "FOR UPDATE SKIP LOCKED"
    )
    lease = (
        f"UPDATE {table} SET lease_owner = %(owner)s, lease_until = %(until)s, "
        f"due_at = %(until)s, version = version + 1 WHERE id IN %(ids)s AND {found}"
    )
    claimed = (
        f"SELECT id, {', '.join(INSTANCE_COLUMNS)} FROM {table} "
        "WHERE id IN %(ids)s AND lease_owner = %(owner)s AND lease_until = %(until)s"
    )
    return test, pick, lease, claimed


class DueClaims(HotConnections):
    """`Store.claim_due` and `Store.any_due` on the hot path's connections, with the
    statements above."""

    instances: str  # the instances table, with its schema when it has one

    def _claim_mysql(self, params: dict[str, Any], one: bool, some: bool) -> list[Stored]:
        """`claim_due` on MariaDB/MySQL, in one transaction: lock what is due and free (SKIP
        LOCKED: concurrent claimers take disjoint rows without waiting), lease it, read it
        back (there is no UPDATE ... RETURNING)."""
        _, pick, lease, claimed = mysql_claim_statements(self.instances, one, some)
        for attempt in (1, 2, 3):
            try:
                with self.connection() as conn:
                    cur = self._cursor(conn)
                    conn.begin()
                    try:
                        cur.execute(pick, params)
                        ids = [r[0] for r in cur.fetchall()]
                        if not ids:
                            conn.rollback()
                            return []
                        params["ids"] = ids
                        cur.execute(lease, params)
                        cur.execute(claimed, params)
                        found = cur.fetchall()
                        conn.commit()
                    except BaseException:
                        conn.rollback()
                        raise
                return [stored(r) for r in found]
            except self.lost as exc:
                if mysql_code(exc) not in MYSQL_RETRY or attempt == 3:
                    raise
        raise AssertionError("unreachable")

    def claim_due(
        self,
        now: datetime,
        owner: str,
        until: datetime,
        limit: int,
        instance_id: str | None,
        workflows: Collection[str] | None,
    ) -> list[Stored]:
        """`Store.claim_due`, as SQL text built once per shape (one instance or a batch, any or
        some workflows): a timer's fire starts with it, and building the statement with
        SQLAlchemy cost more than running it.

        On PostgreSQL: the pick (FOR UPDATE SKIP LOCKED) and the lease in one autocommit
        statement that returns the claimed rows. On SQLite: a read first, so the write lock is
        taken only when something is due; then, under the lock (BEGIN IMMEDIATE), the pick and
        the lease in one UPDATE ... RETURNING."""
        params = {
            "now": self.when(now),
            "owner": owner,
            "until": self.when(until),
            "limit": limit,
            "id": instance_id,
            "workflows": self._workflows(workflows),
        }
        if self.mysql:
            if workflows is not None and not workflows:
                return []  # of no workflow: nothing (and "IN ()" is no SQL)
            return self._claim_mysql(params, instance_id is not None, workflows is not None)
        found, claim = claim_statements(
            self.instances, self.sqlite, instance_id is not None, workflows is not None
        )
        if not self.sqlite:
            with self.connection() as conn:
                cur = self._cursor(conn)
                cur.execute(claim, params)
                return [stored(r) for r in cur.fetchall()]
        with self.connection() as conn:
            if not conn.execute(found, params).fetchall():
                return []
        with self.lock, self.connection() as conn:
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                claimed = cur.execute(claim, params).fetchall()
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return [stored(r) for r in claimed]

    def any_due(self, now: datetime, workflows: Collection[str] | None) -> bool:
        """`Store.any_due`: whether an instance is due at `now` and free, a plain read."""
        if self.mysql:
            if workflows is not None and not workflows:
                return False
            found = mysql_claim_statements(self.instances, False, workflows is not None)[0]
        else:
            found = claim_statements(self.instances, self.sqlite, False, workflows is not None)[0]
        params = {"now": self.when(now), "workflows": self._workflows(workflows)}
        with self.connection() as conn:
            cur = self._cursor(conn)
            cur.execute(found, params)
            return bool(cur.fetchall())

    def _workflows(self, workflows: Collection[str] | None) -> Any:
        """Workflow names as a parameter: a JSON array on SQLite, an array on PostgreSQL, a
        list (which the driver writes as `('a', 'b')`) on MariaDB/MySQL."""
        names = list(workflows or ())
        return json.dumps(names) if self.sqlite else names
