"""The signed token of an approval link (`/link/<token>`), made and read with the server's
secret key (itsdangerous), in one place that the dashboard (`web/links.py`) and the engine's
emails both use: a worker with no web app in its process (`signoff worker`) makes the same
links from SIGNOFF_BASE_URL and SIGNOFF_SECRET_KEY.

A token names its approver, the instance, thread, event and the wait's key (so it dies with
that opening of the wait), a random single-use id and when it expires. Nobody can make or
alter one without the key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer
from signoff.engine.core.outbound import LinkMaker

SALT = "signoff.approval-link"
MAX_TOKEN = 2000


@dataclass(frozen=True)
class LinkClaim:
    """What a link says: who decides which wait, until when, under which single-use id."""

    instance_id: str
    thread: str
    event: str
    wait_key: str
    approver: str
    nonce: str
    expires_at: datetime


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT)


def make_link_token(
    secret_key: str,
    *,
    instance_id: str,
    thread: str,
    event: str,
    wait_key: str,
    approver: str,
    expires_at: datetime,
) -> str:
    """The signed token of a link (its path is `/link/<token>`)."""
    claim = {
        "i": instance_id,
        "t": thread,
        "e": event,
        "k": wait_key,
        "a": approver,
        "n": secrets.token_urlsafe(12),
        "x": int(expires_at.timestamp()),
    }
    return str(_serializer(secret_key).dumps(claim))


def read_link_token(secret_key: str, token: str) -> LinkClaim | None:
    """The claim of a token signed with `secret_key`; None when forged, altered or malformed."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        return None
    try:
        raw: Any = _serializer(secret_key).loads(token)
    except BadSignature:
        return None
    if not isinstance(raw, dict):
        return None
    try:
        parts = [raw[k] for k in ("i", "t", "e", "k", "a", "n")]
        expires = int(raw["x"])
        if not all(isinstance(p, str) for p in parts):
            return None
        i, t, e, k, a, n = parts
        return LinkClaim(i, t, e, k, a, n, datetime.fromtimestamp(expires, UTC))
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


def signed_link_maker(secret_key: str, base_url: str) -> LinkMaker:
    """What the engine makes an approver's Approve / Deny links with: two URLs of one
    single-use link (`/link/<token>?decision=approve` and `...deny`; the page asks to
    confirm, and only its POST decides)."""
    root = base_url.rstrip("/")

    def make(
        instance_id: str,
        approver: str,
        thread: str,
        event: str,
        wait_key: str,
        expires_at: datetime,
    ) -> tuple[str, str]:
        token = make_link_token(
            secret_key,
            instance_id=instance_id,
            thread=thread,
            event=event,
            wait_key=wait_key,
            approver=approver,
            expires_at=expires_at,
        )
        url = f"{root}/link/{quote(token, safe='')}"
        return f"{url}?decision=approve", f"{url}?decision=deny"

    return make


def link_maker_from_environment(base_url: str | None) -> LinkMaker | None:
    """Links made the way the dashboard makes them, from its address (`base_url`, default
    SIGNOFF_BASE_URL) and SIGNOFF_SECRET_KEY, for a process with no dashboard in it (a
    worker); None when either is missing (emails then go without Approve / Deny links)."""
    import os

    secret = os.environ.get("SIGNOFF_SECRET_KEY")
    if not secret or not base_url:
        return None
    return signed_link_maker(secret, base_url)
