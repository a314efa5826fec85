"""The outbox table: messages written with the commit that made them due, then claimed, sent
and marked by a sender (`engine/runtime/outbox.py`).

A row is claimed with a lease (`lease_owner`, `lease_until`) by a guarded UPDATE, so two
processes never hold the same message at once; a sender that dies holding one leaves it to be
claimed again when the lease runs out. Marking it sent (or failed) and appending the history
entry that says so are one transaction, guarded by the lease owner.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from signoff.engine.core.outbound import Outbound
from signoff.engine.core.records import Record
from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import HISTORY, OUTBOX
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection

PENDING, SENT, FAILED, DROPPED = "pending", "sent", "failed", "dropped"


def outbox_row(o: Outbound, now: datetime) -> dict[str, Any]:
    """An `Outbound` as its row, due at once (`now`)."""
    return {
        "id": o.key,
        "instance_id": o.instance_id,
        "thread": o.thread,
        "wait_key": o.wait_key,
        "channel": o.channel,
        "person": o.person[:200],
        "address": o.address,
        "what": o.what,
        "message": json.dumps(dict(o.message), ensure_ascii=True),
        "asked_by": o.asked_by[:200] if o.asked_by else None,
        "parent": o.parent,
        "status": PENDING,
        "attempts": 0,
        "next_at": now,
        "created_at": now,
    }


def _history(conn: Connection, instance_id: str, record: Record) -> None:
    conn.execute(
        insert(HISTORY).values(
            instance_id=instance_id,
            at=record.at,
            kind=str(record.kind),
            thread=record.thread,
            name=record.name,
            actor=record.actor,
            via=record.via,
            message=record.message,
            detail=json.dumps(record.detail, default=str) if record.detail is not None else None,
        )
    )


class OutboxTable:
    """The outbox rows of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def enqueue(self, rows: Sequence[dict[str, Any]], record: Record | None = None) -> None:
        """Write messages (and a history entry for their instance) outside an instance's
        commit: what an operator's "link for someone" queues."""
        with self.store.write() as conn:
            for row in rows:
                conn.execute(insert(OUTBOX).values(**row))
            if record is not None and rows:
                _history(conn, rows[0]["instance_id"], record)

    def due(self, now: datetime, limit: int) -> list[str]:
        """Ids of pending messages due at `now` whose lease (if any) has run out."""
        c = OUTBOX.c
        with self.store.db.connect() as conn:
            return list(
                conn.execute(
                    select(c.id)
                    .where(
                        c.status == PENDING,
                        c.next_at <= now,
                        or_(c.lease_until.is_(None), c.lease_until <= now),
                    )
                    # at the same time, announcements before the replies and edits that
                    # need them
                    .order_by(c.next_at, c.parent.is_not(None), c.created_at)
                    .limit(limit)
                ).scalars()
            )

    def next_at(self) -> datetime | None:
        """When the earliest pending message falls due (None: nothing is pending)."""
        c = OUTBOX.c
        with self.store.db.connect() as conn:
            found: datetime | None = conn.execute(
                select(func.min(c.next_at)).where(c.status == PENDING)
            ).scalar()
            return found

    def claim(self, key: str, owner: str, now: datetime, until: datetime) -> dict[str, Any] | None:
        """Take the lease on one due message; its row, or None when another sender has it
        (or it is no longer pending). The row's `taken_over` says whether an earlier sender
        had claimed it and let its lease run out without settling it: it may have died after
        the service took the message."""
        c = OUTBOX.c
        with self.store.write() as conn:
            before = conn.execute(select(c.lease_owner).where(c.id == key)).first()
            if before is None:
                return None
            earlier = before[0]
            done = conn.execute(
                update(OUTBOX)
                .where(
                    c.id == key,
                    c.status == PENDING,
                    c.next_at <= now,
                    or_(c.lease_until.is_(None), c.lease_until <= now),
                    c.lease_owner.is_(None) if earlier is None else c.lease_owner == earlier,
                )
                .values(lease_owner=owner, lease_until=until)
            )
            if done.rowcount != 1:
                return None
            row = dict(conn.execute(select(OUTBOX).where(c.id == key)).mappings().one())
            row["taken_over"] = earlier is not None
            return row

    def settle(
        self,
        key: str,
        owner: str,
        values: dict[str, Any],
        instance_id: str,
        record: Record | None,
    ) -> bool:
        """Mark a claimed message (sent, failed, dropped, or pending again later) and release
        it, with its history entry, in one transaction; False when the lease was lost."""
        c = OUTBOX.c
        with self.store.write() as conn:
            done = conn.execute(
                update(OUTBOX)
                .where(and_(c.id == key, c.lease_owner == owner))
                .values(lease_owner=None, lease_until=None, **values)
            )
            if done.rowcount != 1:
                return False
            if record is not None:
                _history(conn, instance_id, record)
            return True

    def of_instance(self, instance_id: str) -> list[dict[str, Any]]:
        """The messages queued for an instance, oldest first, without their text."""
        c = OUTBOX.c
        with self.store.db.connect() as conn:
            rows = conn.execute(
                select(
                    c.id,
                    c.thread,
                    c.wait_key,
                    c.channel,
                    c.person,
                    c.address,
                    c.what,
                    c.asked_by,
                    c.status,
                    c.attempts,
                    c.next_at,
                    c.created_at,
                    c.sent_at,
                    c.error,
                    c.parent,
                    c.result,
                )
                .where(c.instance_id == instance_id)
                .order_by(c.created_at, c.id)
            ).mappings()
            return [dict(r) for r in rows]

    def message(self, key: str) -> dict[str, Any] | None:
        """One message's row, text included."""
        with self.store.db.connect() as conn:
            row = conn.execute(select(OUTBOX).where(OUTBOX.c.id == key)).mappings().first()
            return dict(row) if row is not None else None

    def newer_edit(self, parent: str, seq: int) -> bool:
        """Whether an edit of the announcement `parent` newer than `seq` is pending or sent
        (an older edit then has nothing left to say)."""
        c = OUTBOX.c
        with self.store.db.connect() as conn:
            rows = conn.execute(
                select(c.message).where(
                    c.parent == parent, c.what == "edit", c.status.in_((PENDING, SENT))
                )
            ).scalars()
            return any(_seq(m) > seq for m in rows)


def _seq(message: str) -> int:
    try:
        found = json.loads(message).get("seq", 0)
    except (ValueError, AttributeError):
        return 0
    return found if isinstance(found, int) else 0
