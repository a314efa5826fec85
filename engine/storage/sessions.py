"""Sign-in sessions kept in the database, so that signing out ends a session in every process
that serves the dashboard, and a session ends at a fixed time however busy it is.

The browser holds a random token; the table holds only its SHA-256, so whoever reads the
table (a backup, a replica) cannot sign in with what they read.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import SESSIONS
from sqlalchemy import delete, select


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db  # the table comes with the schema (migration 0004)

    def open(self, user: str, now: datetime, expires_at: datetime) -> str:
        token = secrets.token_urlsafe(32)
        with self.store.write() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= now))
            conn.execute(
                SESSIONS.insert().values(
                    id=_key(token), user=user, created_at=now, expires_at=expires_at
                )
            )
        return token

    def user(self, token: str, now: datetime) -> str | None:
        with self.db.connect() as conn:
            found = conn.execute(
                select(SESSIONS.c.user).where(
                    SESSIONS.c.id == _key(token), SESSIONS.c.expires_at > now
                )
            ).scalar()
        return found if isinstance(found, str) else None

    def end(self, token: str) -> None:
        with self.store.write() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.id == _key(token)))

    def end_all(self, user: str) -> int:
        with self.store.write() as conn:
            done = conn.execute(delete(SESSIONS).where(SESSIONS.c.user == user))
        return int(done.rowcount)
