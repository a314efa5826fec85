"""The Slack Web API client the engine lends handlers (slack-sdk lives only here)."""

from __future__ import annotations

import os
from typing import Any


def client_from_environment() -> Any:
    """A `slack_sdk.WebClient` from SLACK_BOT_TOKEN and SLACK_API_URL; None when no token."""
    token = os.environ.get("SLACK_BOT_TOKEN")
    if not token:
        return None
    from slack_sdk import WebClient

    base_url = os.environ.get("SLACK_API_URL") or WebClient.BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(token=token, base_url=base_url)
