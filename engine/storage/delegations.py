"""Delegations: who sends their new requests to whom, until when. Those given to the engine
(`Engine(delegates=...)`) and those users set on the dashboard (a table, so every process
agrees); a user's own setting wins over the configured one while it lasts.

Every approval that begins asks who of its approvers is away, so the table (one row per person
away: small) is read whole at most every `ttl` seconds per process, and at once after this
process changed it; a change made by another process applies within `ttl`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import DELEGATIONS
from sqlalchemy import delete, select

Delegate = tuple[str, datetime]  # (to whom, until when)


class Delegations:
    ttl = 5.0  # seconds a process answers from what it last read

    def __init__(self, store: Store, configured: Mapping[str, Delegate]) -> None:
        self.store = store  # the table is made by migration 0009
        self.configured = dict(configured)
        self._lock = threading.Lock()
        self._read: tuple[float, dict[str, Delegate]] | None = None

    def set(self, user: str, to: str, until: datetime, now: datetime) -> None:
        with self.store.write() as conn:
            conn.execute(delete(DELEGATIONS).where(DELEGATIONS.c.user == user))
            conn.execute(
                DELEGATIONS.insert().values(user=user, delegate=to, until=until, set_at=now)
            )
        self._read = None

    def clear(self, user: str) -> None:
        with self.store.write() as conn:
            conn.execute(delete(DELEGATIONS).where(DELEGATIONS.c.user == user))
        self._read = None

    def active(self, users: Iterable[str], now: datetime) -> dict[str, Delegate]:
        """user -> (delegate, until) for each of `users` away at `now`."""
        names = set(users)
        if not names:
            return {}
        found = {u: d for u, d in self.configured.items() if u in names and d[1] > now}
        found.update((u, d) for u, d in self._table(now).items() if u in names and d[1] > now)
        return found

    def of(self, user: str, now: datetime) -> Delegate | None:
        """The delegation in force for `user` now, if any."""
        return self.active([user], now).get(user)

    def _table(self, now: datetime) -> dict[str, Delegate]:
        with self._lock:
            read = self._read
            if read is not None and time.monotonic() - read[0] < self.ttl:
                return read[1]
            c = DELEGATIONS.c
            with self.store.db.connect() as conn:
                rows = conn.execute(select(c.user, c.delegate, c.until).where(c.until > now))
                found = {user: (to, until) for user, to, until in rows}
            self._read = (time.monotonic(), found)
            return found
