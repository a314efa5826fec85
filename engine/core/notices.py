"""What an approval tells the people who may decide it outside the dashboard (a Slack message),
and the small interface the engine reaches that surface through.

Pure: an `Approval` builds an `ApprovalNotice` (plain data) and has the `Notifier` the engine
lends it on `Services` render it (`Renderer`: Block Kit, made by `engine/runtime/slack.py`);
the rendered messages are queued in the outbox with the commit that made them due, and the
outbox's sender calls Slack after it. Without a notifier (no Slack token), nothing is announced.

The `Notifier` methods that call Slack at once (`announce`, `update`, `reply`) are there for
handlers of your own: such calls run inside a transition and are at least once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from signoff.engine.core.state import Ending

if TYPE_CHECKING:
    from signoff.engine.core.authority import Authority

# Slack user ids: U... for users, W... for Enterprise Grid users
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
MAX_DIRECT_MESSAGES = 20  # beyond this many approvers, name a slack_channel instead

Message = dict[str, str]  # {"channel": ..., "ts": ...}: one posted message


@dataclass(frozen=True)
class Vote:
    """One approver's vote on an approval that needs several."""

    actor: str | None
    approved: bool
    reason: str
    via: str | None
    at: datetime


@dataclass(frozen=True)
class ApprovalNotice:
    """Everything a message about one approval shows, open or ended."""

    instance_id: str
    workflow: str
    thread: str
    wait: str
    event: str
    key: str | None  # the wait key the buttons carry, so a stale button decides nothing
    title: str
    text: str | None
    data: Mapping[str, Any]
    deciders: list[str] | None  # who may decide now; None: anyone
    required: int
    votes: tuple[Vote, ...]
    require_reason: bool
    began_at: datetime
    deadline: datetime | None
    escalated: bool = False
    ending: Ending | None = None  # None while the wait is open
    # a gated call whose arguments the approver may change: the arguments proposed (an
    # "Edit and approve" button offers them); None for every other approval
    edit_arguments: Mapping[str, Any] | None = None

    @property
    def approvals(self) -> int:
        return sum(1 for v in self.votes if v.approved)


class Notifier(Protocol):
    """Where approvals are announced and kept up to date. Every method raises
    `signoff.engine.errors.Unavailable` when the service fails; the engine then tries again
    later through the handler's retry path, and the workflow never waits for it."""

    def announce(self, notice: ApprovalNotice, targets: Sequence[str]) -> list[Message]:
        """Post the open approval to each target (a channel, or a user id for a direct
        message); returns the messages posted."""
        ...

    def update(self, messages: Sequence[Message], notice: ApprovalNotice) -> None:
        """Edit the messages to show the notice as it is now: votes so far, or how it ended."""
        ...

    def reply(
        self,
        messages: Sequence[Message],
        notice: ApprovalNotice,
        what: Literal["reminder", "escalated"],
    ) -> None:
        """Post a reminder or an escalation in each message's thread."""
        ...


@runtime_checkable
class Renderer(Protocol):
    """What a `Notifier` also does for the built-in `Approval`: the messages, made but not sent
    (the outbox sends them after the commit)."""

    def render(self, notice: ApprovalNotice) -> dict[str, Any]:
        """The announcement as it shows the notice now: {"text": ..., "blocks": [...]}."""
        ...

    def reply_text(self, notice: ApprovalNotice, what: Literal["reminder", "escalated"]) -> str:
        """The text of a reminder or an escalation posted in the announcement's thread."""
        ...


def slack_targets(
    channel: str | None, approvers: Sequence[str] | None, authority: Authority
) -> list[str]:
    """Where an approval is announced: its `slack_channel` when it names one; otherwise a
    direct message to each approver who has a Slack id (mapped in `slack_users`, or written as
    one; groups count by their members); nowhere when neither applies."""
    return [target for target, _ in slack_recipients(channel, approvers, authority)]


def slack_recipients(
    channel: str | None, approvers: Sequence[str] | None, authority: Authority
) -> list[tuple[str, str]]:
    """`slack_targets`, each with whom it reaches: (target, the channel or the person's user
    name)."""
    if channel:
        return [(channel, channel)]
    found: dict[str, str] = {}
    for name in approvers or ():
        members: Sequence[str] = [name]
        if name.startswith("group:"):
            members = sorted(authority.groups.get(name.removeprefix("group:"), ()))
        for member in members:
            slack_id = authority.slack_users.get(member) or (
                member if SLACK_USER_ID.fullmatch(member) else None
            )
            if slack_id and slack_id not in found:
                found[slack_id] = member
    return list(found.items())[:MAX_DIRECT_MESSAGES]
