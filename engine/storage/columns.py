"""The hot paths' rows: the columns a load reads and a commit writes, and datetimes as they are
stored.

Datetimes are kept the way SQLAlchemy's `UTCDateTime` column keeps them: naive UTC, as text
"%Y-%m-%d %H:%M:%S.%f" on SQLite, as `timestamp without time zone` on PostgreSQL and as
DATETIME(6) on MariaDB/MySQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from signoff.engine.core.records import Stored

INSTANCE_COLUMNS = (
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
# what a commit may change: all but the id, the workflow and the creation time
CHANGING_COLUMNS = tuple(c for c in INSTANCE_COLUMNS if c not in ("workflow", "created_at"))
# what a step's commit mid-drive changes (see `RawWriter.write`'s `progress`)
PROGRESS_COLUMNS = ("data", "state", "version")
WAIT_COLUMNS = (
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
# an outbox row as a commit writes it (`storage/outbox.py` holds the rest of its life)
OUTBOX_COLUMNS = (
    "id",
    "instance_id",
    "thread",
    "wait_key",
    "channel",
    "person",
    "address",
    "what",
    "message",
    "asked_by",
    "status",
    "attempts",
    "next_at",
    "created_at",
    "parent",
)
HISTORY_COLUMNS = (
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
    last = _LAST_SQLITE if sqlite else _LAST_NAIVE  # one read: another thread may set it
    if last[0] is value:
        return last[1]
    if value.tzinfo is None:  # as the UTCDateTime column type refuses it
        raise ValueError("signoff stores aware datetimes only")
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return _remember(value, utc, sqlite)


def _remember(value: datetime, utc: datetime, sqlite: bool) -> Any:
    global _LAST_SQLITE, _LAST_NAIVE
    if sqlite:
        # isoformat(" ", "microseconds") without its "+00:00", made as text at once (faster)
        text = "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
            utc.year,
            utc.month,
            utc.day,
            utc.hour,
            utc.minute,
            utc.second,
            utc.microsecond,
        )
        _LAST_SQLITE = (value, text)
        return text
    naive = datetime.combine(utc.date(), utc.time())  # as replace(tzinfo=None), a fifth the cost
    _LAST_NAIVE = (value, naive)
    return naive


# the last datetime written, and what was written for it (SQLite's text, elsewhere the naive
# datetime): a commit writes the same moment several times (when it was updated, its history
# rows, the lease's end and the next due time), and datetimes never change
_LAST_SQLITE: tuple[datetime | None, str] = (None, "")
_LAST_NAIVE: tuple[datetime | None, datetime | None] = (None, None)


def stored(found: Sequence[Any]) -> Stored:
    """An instance row as selected (id, then `INSTANCE_COLUMNS`), as the engine holds it."""
    values = dict(zip(("id", *INSTANCE_COLUMNS), found, strict=True))
    for c in ("due_at", "lease_until", "created_at", "updated_at"):
        if values[c] is not None:
            values[c] = aware(values[c])
    return Stored(**values)


def aware(value: Any) -> datetime:
    """A stored datetime read back: aware UTC (SQLite gives text, PostgreSQL naive datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
