"""The instance rows this process committed last, so the transition that follows its own commit
(an approval decided right after the wait began, an event a step's service answers at once)
starts without reading the row back.

A copy may be stale: another process may have committed since. That is safe because every write
to an instance row, in every process, moves its version and is made only if the version is still
the one the writer started from (`Store.save`, `renew_lease`, `claim_due`). A transition begun
from a stale copy fails its write and starts again from the database, as one that lost a race
does: the handler's callback ran on the copy for nothing (callbacks change data only, see
docs/concepts.md). A refusal made on a copy stands only once the database shows the same version,
and a passed deadline is fired only from the row as read (`Engine.send`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from signoff.engine.core.records import Stored

KEPT_ROWS = 1_000  # rows kept at most, the oldest written dropped first
KEPT_ROW_CHARS = 16_384  # a row with more data and state than this is not kept


class Recent:
    """Rows as this process last wrote them, by instance id: a bounded, thread-safe map whose
    copies are handed out once (`take`), so no two transitions share one."""

    def __init__(self, size: int = KEPT_ROWS, row_chars: int = KEPT_ROW_CHARS) -> None:
        self._rows: dict[str, Stored] = {}
        self._lock = threading.Lock()
        self.size = size
        self.row_chars = row_chars

    def keep(self, row: Stored) -> None:
        """Remember `row` as just committed (a copy: the caller's working copy moves on)."""
        if len(row.data) + len(row.state) > self.row_chars:
            self.drop(row.id)
            return
        copy = Stored(
            row.id,
            row.workflow,
            row.status,
            row.data,
            row.state,
            row.result,
            row.error,
            row.version,
            _utc(row.due_at),
            row.lease_owner,
            _utc(row.lease_until),
            _utc_at(row.created_at),
            _utc_at(row.updated_at),
        )
        with self._lock:
            rows = self._rows
            rows.pop(row.id, None)  # to the end: the newest written is dropped last
            rows[row.id] = copy
            if len(rows) > self.size:
                del rows[next(iter(rows))]

    def take(self, instance_id: str) -> Stored | None:
        """The row as this process last committed it, if kept; it is no longer kept then."""
        with self._lock:
            return self._rows.pop(instance_id, None)

    def drop(self, instance_id: str) -> None:
        """Forget the row: its copy is known to be stale. Asked after every step's commit, when
        nearly always nothing is kept: then the lock is not taken (a `keep` racing with this
        ends as if it came after it, an order the lock allows too)."""
        if instance_id in self._rows:
            with self._lock:
                self._rows.pop(instance_id, None)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._rows


def _utc(value: datetime | None) -> datetime | None:
    """As a read gives it back: aware, in UTC's own tzinfo (a clock may use another zone)."""
    return None if value is None else _utc_at(value)


def _utc_at(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)
