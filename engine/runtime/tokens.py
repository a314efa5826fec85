"""What the dashboard and its surfaces remember in the database, so that every process serving
it agrees: sign-in sessions, single-use keys that were spent (approval links), and keys seen
before (the replays the Slack endpoint refuses)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from signoff.engine.runtime.arguments import check_text
from signoff.engine.storage.once import Once
from signoff.engine.storage.seen import Seen
from signoff.engine.storage.sessions import Sessions


class Tokens:
    def __init__(
        self, sessions: Sessions, once: Once, seen: Seen, now: Callable[[], datetime]
    ) -> None:
        self.sessions = sessions
        self.once = once
        self.seen = seen
        self._now = now

    def open_session(self, user: str, lifetime: timedelta) -> str:
        check_text(user=user)
        now = self._now()
        return self.sessions.open(user, now, now + lifetime)

    def session_user(self, token: str) -> str | None:
        if not isinstance(token, str) or not token or "\x00" in token:
            return None
        return self.sessions.user(token, self._now())

    def end_session(self, token: str) -> None:
        if isinstance(token, str) and token and "\x00" not in token:
            self.sessions.end(token)

    def end_sessions(self, user: str) -> int:
        check_text(user=user)
        return self.sessions.end_all(user)

    def spend_once(self, key: str, expires_at: datetime) -> bool:
        check_text(key=key)
        return self.once.spend(key, self._now(), expires_at)

    def refund_once(self, key: str) -> None:
        check_text(key=key)
        self.once.refund(key)

    def spent_at(self, key: str) -> datetime | None:
        check_text(key=key)
        return self.once.spent_at(key)

    def seen_before(self, key: str, keep_for: timedelta) -> bool:
        check_text(key=key)
        return self.seen.add(key, self._now(), keep_for)
