"""Messages to people outside the dashboard, as the engine queues them: plain data.

A handler does no I/O for them. It hands each message (`Outbound`) to the wait it serves
(`WaitInfo.post`); the runtime writes it to the outbox in the same commit as the change that
made it due (the wait opening, a reminder, an escalation), and a sender delivers it after that
commit (`engine/runtime/outbox.py`). Each message has an idempotency key, made from what it is
about, so the same notice queued twice (a setup run again after a crash) is one row.

`Reach` is what the engine knows for that: people's addresses, how to make a person's Approve
and Deny links, where the dashboard is, and how a workflow summarises its data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from signoff.engine.core.addresses import checked_address, looks_like_address

Channel = Literal["email", "slack"]
EMAIL: Channel = "email"
SLACK: Channel = "slack"
# what a message is about: the wait began, a reminder, an escalation, someone's link, or (Slack)
# an edit of the announcement: the votes so far, who may decide now, how the wait ended
What = Literal["approval", "reminder", "escalated", "link", "edit"]
MAX_RECIPIENTS = 50  # beyond this many addressed approvers of one approval, the rest get none

# (instance id, approver, thread, event, wait key, expires at) -> (approve URL, deny URL)
LinkMaker = Callable[[str, str, str, str, str, datetime], tuple[str, str] | None]


@dataclass(frozen=True)
class Outbound:
    """One message to one person, queued in the outbox."""

    key: str  # the idempotency key (64 hex digits): the outbox row's id, the Message-ID's base
    channel: Channel
    person: str  # who it is for, as the engine names them (a user name, an address)
    address: str  # where it goes: an email address, or a Slack user id
    what: What
    instance_id: str
    thread: str | None
    wait_key: str | None
    # email: subject, text, html; Slack: text, and blocks (a post) or seq (an edit's order)
    message: Mapping[str, Any]
    asked_by: str | None = None  # "link for someone": who asked for it
    # a Slack reply or edit: the key of the announcement it answers or edits (the sender
    # finds where that went once it is sent)
    parent: str | None = None


def notice_key(*parts: object) -> str:
    """An idempotency key: the same parts make the same key, in every process."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


@dataclass
class Reach:
    """How the engine reaches people: their addresses (`emails`; a name written as an address
    is its own), the links of an approval (`link_maker`), the dashboard's address
    (`base_url`) and each workflow's summary of its data (`summarize`)."""

    emails: dict[str, str] = field(default_factory=dict)
    link_maker: LinkMaker | None = None
    base_url: str | None = None
    summarize: Callable[[str, dict[str, Any]], dict[str, Any]] = field(
        default=lambda workflow, data: {}
    )
    mail: bool = False  # whether a mailer is configured: without one, nothing goes by email

    def email_of(self, person: str) -> str | None:
        """`person`'s address: from `emails`, or the name itself when it is an address."""
        found = self.emails.get(person)
        if found is not None:
            return found
        if looks_like_address(person):
            return checked_address(person)
        return None

    def request_url(self, instance_id: str) -> str | None:
        if not self.base_url:
            return None
        return f"{self.base_url.rstrip('/')}/instances/{instance_id}"


def checked_emails(emails: Mapping[str, str] | None) -> dict[str, str]:
    """`emails=` as the engine keeps it, each address checked (ValueError names the first
    one that is not an address, and whose it is)."""
    found: dict[str, str] = {}
    for person, address in (emails or {}).items():
        if not isinstance(person, str) or not person.strip():
            raise ValueError(f"emails: {person!r} is not a user name")
        found[person] = checked_address(address, f"the email address of {person!r}")
    return found


def people(approvers: Sequence[str] | None, groups: Mapping[str, Any]) -> list[str]:
    """The people behind a list of approvers, groups (`group:NAME`) expanded, each once."""
    found: list[str] = []
    for name in approvers or ():
        members = (
            sorted(groups.get(name.removeprefix("group:"), ()))
            if name.startswith("group:")
            else [name]
        )
        for member in members:
            if member not in found:
                found.append(member)
    return found
