"""A worker's death noticed by PostgreSQL itself, not by its leases running out.

A process whose scheduler runs holds a session-level advisory lock, `(LOCK_SPACE, key)`, on a
connection of its own for as long as it lives, and its engine's lease tokens then name `key`
("w" and 8 hex digits, `commits.LeaseTokens`). When the process dies, however it dies (SIGKILL,
a crash, the machine's power), the server closes its session and the lock is free at once.

Every such process probes, a few times a second, for live leases whose lock nobody holds
(`pg_locks`): one statement that expires those leases, makes the instances due now and
NOTIFYs them, so every scheduler arms them and the usual claim (`FOR UPDATE SKIP LOCKED`, the
version check) hands each to exactly one survivor. Nothing else changes: what the dead process
committed stays committed, and the step it had not committed runs again, as after a lease ran
out. The lease stays the fallback for a process that hangs but lives (its lock is held), and
for every lease with a plain token (a process without a scheduler, SQLite, MariaDB/MySQL).

A process alive whose lock connection broke looks dead to the others until it locks again: its
instances are taken over as if its lease had run out, and its next commit on them fails the
version check (`LostLease`), so no commit is ever made twice.
"""

from __future__ import annotations

import secrets
import threading
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from signoff.engine.storage.columns import when
from signoff.engine.storage.pgcommit import DUE_CHANNEL
from signoff.engine.storage.store import Store

# the first half of every liveness lock's key: keeps them apart from an application's own
# advisory locks (which use the one-bigint form, or other first halves)
LOCK_SPACE = 0x516E0FF
# a lease is judged by its lock only when it runs out within this window (leases longer than
# that are left to run out): the probe reads due_at's index over (now, now + window] only
WINDOW = timedelta(minutes=2)


def takeover_sql(instances: str) -> str:
    """Expire every live lease whose token names a liveness lock that nobody holds; the
    instances fall due now and are NOTIFYed. Returns the ids taken over."""
    return (
        "WITH held AS (SELECT objid::bigint AS k FROM pg_locks "
        f"WHERE locktype = 'advisory' AND classid = {LOCK_SPACE} AND objsubid = 2 AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())), "
        f"gone AS (UPDATE {instances} AS i SET lease_until = %(now)s, due_at = %(now)s, "
        "version = i.version + 1 "
        "WHERE i.due_at > %(now)s AND i.due_at <= %(until)s AND i.lease_until > %(now)s "
        "AND i.lease_owner LIKE 'w%%' AND i.lease_owner ~ '^w[0-9a-f]{8}' "
        "AND ('x' || substr(i.lease_owner, 2, 8))::bit(32)::bigint NOT IN (SELECT k FROM held) "
        "RETURNING i.id) "
        f"SELECT id, pg_notify('{DUE_CHANNEL}', id || ' ' || %(iso)s) FROM gone"
    )


class Liveness:
    """This process's liveness lock on a connection of its own (PostgreSQL only), and the
    probe for the locks of others."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sql = takeover_sql(store.raw.instances)
        self.conn: Any = None
        self.key: int | None = None
        self.ended = False  # `close(for_good=True)`: never held again
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self.conn is not None

    def hold(self) -> int | None:
        """Take a lock (the key held before, when it is still free) on a new connection;
        returns its key (None once closed for good)."""
        with self._lock:
            if self.ended:
                return None
            self._close()
            return self._hold()

    def _hold(self) -> int:
        fairy = self.store.db.raw_connection()
        fairy.detach()  # ours for the process's life: never back into the pool
        conn: Any = fairy.dbapi_connection
        conn.autocommit = True
        key = self.key
        for _ in range(100):
            if key is None:
                key = secrets.randbits(31)
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_SPACE, key))
            if got.fetchone()[0]:
                self.conn, self.key = conn, key
                return key
            key = None  # held by another process: draw another
        conn.close()
        raise RuntimeError("no free liveness lock found")  # pragma: no cover

    def take_over(self, now: datetime) -> list[str]:
        """Instances whose holder's lock is free, now due (see `takeover_sql`); raises when the
        lock's connection broke (call `hold` again)."""
        params = {
            "now": when(now, False),
            "until": when(now + WINDOW, False),
            "iso": now.isoformat(),
        }
        with self._lock:
            if self.conn is None:
                raise ConnectionError("the liveness lock is not held")
            found = self.conn.execute(self.sql, params).fetchall()
        for instance_id, _ in found:
            self.store.recent.drop(instance_id)
        return [instance_id for instance_id, _ in found]

    def close(self, for_good: bool = False) -> None:
        """Let the lock go (closing its connection); `for_good`: the engine is closing."""
        with self._lock:
            self.ended = self.ended or for_good
            self._close()

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with suppress(Exception):  # the server may have closed it already
                conn.close()
