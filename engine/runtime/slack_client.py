"""The Slack Web API client the engine lends handlers, made from the environment."""

from __future__ import annotations

import os
from typing import Any

# Never wait long for a Slack call (the outbox's sender, a handler's own call, the interactivity
# worker): a slow or failed call is retried later instead.
TIMEOUT_SECONDS = 10


def client_from_environment() -> Any:
    """A `slack_sdk.WebClient` from SLACK_BOT_TOKEN and SLACK_API_URL; None when no token."""
    token = os.environ.get("SLACK_BOT_TOKEN")
    if not token:
        return None
    return make_client(token, os.environ.get("SLACK_API_URL") or None)


def make_client(token: str, base_url: str | None = None) -> Any:
    """A `slack_sdk.WebClient` for `token`, calling `base_url` (Slack's own by default)."""
    from slack_sdk import WebClient

    base_url = base_url or WebClient.BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(token=token, base_url=base_url, timeout=TIMEOUT_SECONDS)


def base_url_from_environment() -> str | None:
    """Where the dashboard is served (SIGNOFF_BASE_URL), for links in Slack messages."""
    return (os.environ.get("SIGNOFF_BASE_URL") or "").rstrip("/") or None
