"""Keys that may be used once, across every process sharing the database: what makes an
approval link single-use. A key is the primary key of a row; inserting it twice fails, so of
two processes spending the same key at the same moment exactly one succeeds. Rows are kept
until they expire (after which the link they guard is refused by its own expiry anyway)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import SPENT
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError


def _id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Once:
    def __init__(self, store: Store) -> None:
        self.store = store  # the table is made by migration 0005

    def spend(self, key: str, now: datetime, expires_at: datetime) -> bool:
        """Record `key` as used; False if it was used before."""
        try:
            with self.store.write() as conn:
                conn.execute(delete(SPENT).where(SPENT.c.expires_at <= now))
                conn.execute(
                    SPENT.insert().values(id=_id(key), spent_at=now, expires_at=expires_at)
                )
        except IntegrityError:
            return False
        return True

    def refund(self, key: str) -> None:
        """Forget that `key` was used (what it was spent on did not happen)."""
        with self.store.write() as conn:
            conn.execute(delete(SPENT).where(SPENT.c.id == _id(key)))

    def spent_at(self, key: str) -> datetime | None:
        with self.store.db.connect() as conn:
            found: datetime | None = conn.execute(
                select(SPENT.c.spent_at).where(SPENT.c.id == _id(key))
            ).scalar()
        return found
