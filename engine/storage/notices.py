"""PostgreSQL's LISTEN/NOTIFY for timers armed in other processes.

Every commit that leaves an instance due at a new time, with nobody driving it, NOTIFYs
`DUE_CHANNEL` in the same statement (`pgcommit.PgCommit`), so a web-only process that starts an
instance with a timer tells every worker at once, without waiting for their sweep. A worker
LISTENs on a connection of its own, kept out of the pool.

SQLite has no such channel: a scheduler in the same process is told directly (the engine's
`on_due`), and a scheduler in another process finds the timer at its next sweep.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from signoff.engine.storage.pgcommit import DUE_CHANNEL
from signoff.engine.storage.store import Store


class DueNotices:
    """A LISTENing connection: `wait(timeout)` yields (instance id, due at) as notices come."""

    def __init__(self, store: Store) -> None:
        fairy = store.db.raw_connection()
        fairy.detach()  # ours for as long as we listen: never back into the pool
        conn: Any = fairy.dbapi_connection
        conn.autocommit = True
        conn.execute(f"LISTEN {DUE_CHANNEL}")
        self.conn = conn

    def wait(self, timeout: float) -> Iterator[tuple[str, datetime]]:
        """Notices as they arrive, for up to `timeout` seconds; raises if the connection
        broke (the caller opens a new one)."""
        for notice in self.conn.notifies(timeout=timeout):
            found = parse(notice.payload)
            if found is not None:
                yield found

    def close(self) -> None:
        with suppress(Exception):  # the server may have closed it already
            self.conn.close()


def parse(payload: str) -> tuple[str, datetime] | None:
    instance_id, _, when = payload.partition(" ")
    try:
        due = datetime.fromisoformat(when)
    except ValueError:
        return None
    return instance_id, due if due.tzinfo else due.replace(tzinfo=UTC)
