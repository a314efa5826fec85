"""Delegations: who sends their new requests to whom, until when. Those given to the engine
(`Engine(delegates=...)`) and those users set on the dashboard (a table, so every process
agrees); a user's own setting wins over the configured one while it lasts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import DELEGATIONS
from sqlalchemy import delete, select

Delegate = tuple[str, datetime]  # (to whom, until when)


class Delegations:
    def __init__(self, store: Store, configured: Mapping[str, Delegate]) -> None:
        self.store = store  # the table is made by migration 0009
        self.configured = dict(configured)

    def set(self, user: str, to: str, until: datetime, now: datetime) -> None:
        with self.store.write() as conn:
            conn.execute(delete(DELEGATIONS).where(DELEGATIONS.c.user == user))
            conn.execute(
                DELEGATIONS.insert().values(user=user, delegate=to, until=until, set_at=now)
            )

    def clear(self, user: str) -> None:
        with self.store.write() as conn:
            conn.execute(delete(DELEGATIONS).where(DELEGATIONS.c.user == user))

    def active(self, users: Iterable[str], now: datetime) -> dict[str, Delegate]:
        """user -> (delegate, until) for each of `users` away at `now`."""
        names = sorted(set(users))
        if not names:
            return {}
        found = {u: d for u, d in self.configured.items() if u in names and d[1] > now}
        c = DELEGATIONS.c
        query = select(c.user, c.delegate, c.until).where(c.user.in_(names), c.until > now)
        with self.store.db.connect() as conn:
            for user, to, until in conn.execute(query):
                found[user] = (to, until)
        return found

    def of(self, user: str, now: datetime) -> Delegate | None:
        """The delegation in force for `user` now, if any."""
        return self.active([user], now).get(user)
