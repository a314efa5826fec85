"""Who a Slack user is, by email: a Slack click from someone `slack_users` does not name acts
as the email address Slack has for them (`users.info`), and an approver written as an address
is reached in Slack through the id Slack has for it (`users.lookupByEmail`). So people who sign
in with the organisation's identity provider (their name is their email) need no second
mapping. What Slack answers is remembered in the engine's `Authority.slack_users`, bounded;
a miss is remembered for a while too, so a stranger's clicks cost Slack one call an hour."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from signoff.engine.core.authority import Authority, name_problem
from signoff.engine.core.notices import SLACK_USER_ID

MOST_LEARNED = 10_000  # pairs learned from Slack at most (beyond: asked again each time)
MISS_SECONDS = 3600.0  # how long a name Slack does not know is not asked about again


def slack_actor(slack_user_id: str, directory: SlackDirectory | None, authority: Authority) -> str:
    """The actor a Slack user acts as: asked of the `directory` when Slack is on, else the
    name `slack_users` maps to their id, else the Slack id itself."""
    if directory is not None:
        return directory.actor_for(slack_user_id)
    return next(
        (name for name, sid in authority.slack_users.items() if sid == slack_user_id),
        slack_user_id,
    )


class SlackDirectory:
    def __init__(
        self,
        client: Any,
        authority: Authority,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.authority = authority
        self.clock = clock
        self.learned = 0
        self.missed: dict[str, float] = {}
        self.lock = threading.Lock()

    def actor_for(self, slack_id: str) -> str:
        """The actor a Slack user acts as: the name `slack_users` maps to them, else the email
        address Slack has for them, else their Slack id."""
        known = self._name_of(slack_id)
        if known is not None or self._missed(slack_id):
            return known or slack_id
        email = self._ask("users.info", {"user": slack_id}, ("user", "profile", "email"))
        if isinstance(email, str) and "@" in email and name_problem(email) is None:
            email = email.strip().lower()
            self._learn(email, slack_id)
            return email
        self._miss(slack_id)
        return slack_id

    def learn_addresses(self, names: Iterable[str]) -> None:
        """Find the Slack ids of the names that are email addresses and are not mapped yet (the
        members of `group:NAME`s included), so announcements reach them."""
        for name in names:
            members = [name]
            if name.startswith("group:"):
                members = sorted(self.authority.groups.get(name.removeprefix("group:"), ()))
            for member in members:
                if (
                    "@" not in member
                    or member in self.authority.slack_users
                    or self._missed(member)
                ):
                    continue
                slack_id = self._ask("users.lookupByEmail", {"email": member}, ("user", "id"))
                if isinstance(slack_id, str) and SLACK_USER_ID.fullmatch(slack_id):
                    self._learn(member, slack_id)
                else:
                    self._miss(member)

    # --- helpers -------------------------------------------------------------------------------

    def _name_of(self, slack_id: str) -> str | None:
        return next(
            (name for name, sid in self.authority.slack_users.items() if sid == slack_id), None
        )

    def _ask(self, method: str, args: Mapping[str, str], path: tuple[str, ...]) -> Any:
        """One Web API call; None when Slack cannot say (not found, no scope, down): the
        caller then goes on without the answer, as before there was a directory."""
        try:
            answer = self.client.api_call(method, params=dict(args))
            value: Any = answer.data if hasattr(answer, "data") else answer
        except Exception:  # slack_sdk's errors, the network: not worth failing a click for
            return None
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def _learn(self, name: str, slack_id: str) -> None:
        with self.lock:
            users = self.authority.slack_users
            if self.learned < MOST_LEARNED and isinstance(users, dict) and name not in users:
                users[name] = slack_id
                self.learned += 1

    def _missed(self, key: str) -> bool:
        until = self.missed.get(key)
        return until is not None and until > self.clock()

    def _miss(self, key: str) -> None:
        with self.lock:
            if len(self.missed) >= MOST_LEARNED:
                now = self.clock()
                self.missed = {k: t for k, t in self.missed.items() if t > now}
            if len(self.missed) < MOST_LEARNED:
                self.missed[key] = self.clock() + MISS_SECONDS
