"""Keys seen recently, kept in the database so that every process serving it agrees: a
delivery (a Slack interaction) that comes a second time is recognised wherever it lands.

Only a hash of each key is stored. Rows expire; expired ones are swept now and then.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import SEEN
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

SWEEP_EVERY = 200  # additions between sweeps of expired rows


class Seen:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._added = 0

    def add(self, key: str, now: datetime, keep_for: timedelta) -> bool:
        """Record `key` until `now + keep_for`; True when it was recorded already."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        self._added += 1
        sweep = self._added % SWEEP_EVERY == 1
        try:
            with self.store.write() as conn:
                if sweep:
                    conn.execute(delete(SEEN).where(SEEN.c.expires_at <= now))
                else:  # this key's own expired row, if any, so it may be recorded afresh
                    conn.execute(delete(SEEN).where(SEEN.c.id == digest, SEEN.c.expires_at <= now))
                conn.execute(SEEN.insert().values(id=digest, expires_at=now + keep_for))
        except IntegrityError:
            return True
        return False
