"""The Slack side of approvals: turns `ApprovalNotice`s into Block Kit and calls the Web API
(`chat.postMessage`, `chat.update`) through slack-sdk's `WebClient`.

The built-in `Approval` has the notifier render its messages (`render`, `reply_text`) and
queues them in the outbox; `engine/runtime/outbox.py` makes the calls after the commit. Every
failure (429 with Retry-After, a 5xx, a network error, Slack saying `ok: false`) is raised as
`Unavailable`: the outbox tries again later, the failure shows on the instance page, and the
workflow never waits for Slack. `announce`, `update` and `reply` call Slack at once, for
handlers of your own (at least once: they run inside a transition).

The buttons' values carry the instance id, the wait key and the event (`button_value`); the
interactivity endpoint (`signoff.web.slack`) reads them back with `read_button_value`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from signoff.engine.core.authority import GROUP_PREFIX, Authority
from signoff.engine.core.notices import SLACK_USER_ID, ApprovalNotice, Message
from signoff.engine.core.state import Ending
from signoff.engine.errors import Unavailable, brief

APPROVE_ACTION = "signoff_approve"
DENY_ACTION = "signoff_deny"
EDIT_ACTION = "signoff_edit"  # a gated call's "Edit and approve" (signoff.engine.agents)
REASSIGN_ACTION = "signoff_reassign"
ACTIONS_BLOCK = "signoff_decide"
MAX_FIELDS = 10  # Block Kit allows ten fields in a section
MAX_FIELD_TEXT = 300
MAX_TEXT = 2900  # a section's text is at most 3000 characters
MAX_TITLE = 150  # a header's text is at most 150 characters
MAX_BUTTON_VALUE = 2000


def button_value(notice: ApprovalNotice) -> str:
    """What an Approve / Deny button carries: enough to find the one wait it decides."""
    value = json.dumps(
        {"i": notice.instance_id, "k": notice.key, "e": notice.event, "t": notice.thread},
        separators=(",", ":"),
    )
    if len(value) > MAX_BUTTON_VALUE:  # ids and names are bounded well below this
        raise ValueError("a button value is longer than Slack allows")
    return value


def read_button_value(value: object) -> dict[str, str] | None:
    """The instance id, wait key, event and thread a button value names; None if it is not
    one of ours (malformed, truncated, wrong types)."""
    if not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return None
    if not isinstance(found, dict) or set(found) != {"i", "k", "e", "t"}:
        return None
    if not all(isinstance(v, str) and v for v in found.values()):
        return None
    return {"instance_id": found["i"], "key": found["k"], "event": found["e"], "thread": found["t"]}


def escape(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped; user text can then not mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def when(at: datetime) -> str:
    """A time every reader sees in their own time zone, with a UTC fallback."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"


class SlackNotifier:
    """Announces approvals in Slack and keeps the messages in step with the engine."""

    def __init__(self, client: Any, authority: Authority, base_url: str | None = None) -> None:
        self.client = client
        self.authority = authority
        self.base_url = base_url.rstrip("/") if base_url else None

    # --- the Notifier interface ----------------------------------------------------------------

    def announce(self, notice: ApprovalNotice, targets: Sequence[str]) -> list[Message]:
        posted = []
        for target in targets:
            answer = self._call(
                "chat.postMessage",
                channel=target,
                text=self.summary(notice),
                blocks=self.blocks(notice),
                unfurl_links=False,
            )
            posted.append({"channel": str(answer["channel"]), "ts": str(answer["ts"])})
        return posted

    def update(self, messages: Sequence[Message], notice: ApprovalNotice) -> None:
        for message in messages:
            self._call(
                "chat.update",
                channel=message["channel"],
                ts=message["ts"],
                text=self.summary(notice),
                blocks=self.blocks(notice),
            )

    def reply(
        self,
        messages: Sequence[Message],
        notice: ApprovalNotice,
        what: Literal["reminder", "escalated"],
    ) -> None:
        text = self.reply_text(notice, what)
        for message in messages:
            self._call(
                "chat.postMessage",
                channel=message["channel"],
                thread_ts=message["ts"],
                text=text,
                unfurl_links=False,
            )

    # --- the Renderer interface: the messages the outbox sends ---------------------------------

    def render(self, notice: ApprovalNotice) -> dict[str, Any]:
        return {"text": self.summary(notice), "blocks": self.blocks(notice)}

    def reply_text(self, notice: ApprovalNotice, what: Literal["reminder", "escalated"]) -> str:
        if what == "escalated":
            return (
                f":arrow_up: Escalated: {self.who(notice.deciders)} may decide this now "
                f"({escape(notice.title)})."
            )
        return (
            f":bell: Reminder: this still waits for a decision from "
            f"{self.who(notice.deciders)} ({escape(notice.title)})."
        )

    # --- what the message says -----------------------------------------------------------------

    def blocks(self, notice: ApprovalNotice) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _cut(notice.title, MAX_TITLE)},
            }
        ]
        if notice.text:
            blocks.append(_section(escape(_cut(notice.text, MAX_TEXT))))
        fields = [
            {
                "type": "mrkdwn",
                "text": f"*{escape(_cut(str(k), 50))}*\n{escape(_cut(_shown(v), MAX_FIELD_TEXT))}",
            }
            for k, v in list(notice.data.items())[:MAX_FIELDS]
        ]
        if fields:
            blocks.append({"type": "section", "fields": fields})
        blocks.append({"type": "context", "elements": self._context(notice)})
        if notice.ending is None:
            value = button_value(notice)
            blocks.append(
                {
                    "type": "actions",
                    "block_id": ACTIONS_BLOCK,
                    "elements": [
                        {
                            "type": "button",
                            "action_id": APPROVE_ACTION,
                            "text": {"type": "plain_text", "text": "Approve"},
                            "style": "primary",
                            "value": value,
                        },
                        {
                            "type": "button",
                            "action_id": DENY_ACTION,
                            "text": {"type": "plain_text", "text": "Deny"},
                            "style": "danger",
                            "value": value,
                        },
                        *(
                            (
                                [
                                    {
                                        "type": "button",
                                        "action_id": EDIT_ACTION,
                                        "text": {"type": "plain_text", "text": "Edit and approve"},
                                        "value": value,
                                    }
                                ]
                                if notice.edit_arguments is not None
                                else []
                            )
                            + (
                                []
                                if notice.deciders is None  # anyone decides: no part to hand on
                                else [
                                    {
                                        "type": "button",
                                        "action_id": REASSIGN_ACTION,
                                        "text": {"type": "plain_text", "text": "Reassign"},
                                        "value": value,
                                    }
                                ]
                            )
                        ),
                    ],
                }
            )
        else:
            blocks.append(_section(self.outcome(notice, notice.ending)))
        return blocks

    def summary(self, notice: ApprovalNotice) -> str:
        """The plain text of the message: what notifications and screen readers show."""
        if notice.ending is not None:
            return f"{notice.title}: {self.outcome(notice, notice.ending)}"
        return f"Approval needed: {notice.title}"

    def outcome(self, notice: ApprovalNotice, ending: Ending) -> str:
        """How it ended, in a line: "Approved by <@U123> at 14:02", "Timed out", ..."""
        at = when(ending.at)
        by = self.mention(ending.actor) if ending.actor else None
        via = f" (via {ending.via})" if ending.via and ending.via not in ("slack", "timer") else ""
        reason = f": {escape(ending.reason)}" if ending.reason else ""
        if ending.how == "event" and ending.kind == "approval":
            if ending.approved:
                # the votes before the deciding one, then the deciding one
                voters = [self.mention(v.actor) for v in notice.votes if v.approved and v.actor]
                if by and by not in voters:
                    voters.append(by)
                who = _and(voters) if voters else "the program"
                return f":white_check_mark: *Approved* by {who} at {at}{via}"
            return f":x: *Denied* by {by or 'the program'} at {at}{via}{reason}"
        if ending.how == "event" and ending.kind == "timeout":
            return f":alarm_clock: *Timed out* at {at}: no decision was made in time"
        if ending.how == "event":
            who = f" from {by}" if by else ""
            return f"*Closed* at {at}: '{escape(ending.event or '')}' arrived{who}{via}"
        if ending.how == "cancelled":
            return f":no_entry_sign: *Cancelled* by {by or 'the program'} at {at}{via}{reason}"
        if ending.how == "moved":
            who = f" ({by})" if by else ""
            return f":leftwards_arrow_with_hook: *Moved on by an operator*{who} at {at}{via}"
        if ending.how == "retried":
            who = f" ({by})" if by else ""
            return f":repeat: *Set up again by an operator*{who} at {at}: see the new message"
        return f"*Closed* at {at}: the instance finished without this decision"

    def _context(self, notice: ApprovalNotice) -> list[dict[str, Any]]:
        parts = [f"*Who may decide:* {self.who(notice.deciders)}"]
        if notice.escalated:
            parts[0] += " (escalated)"
        if notice.required > 1:
            voters = [self.mention(v.actor) for v in notice.votes if v.approved and v.actor]
            parts.append(
                f"*{notice.approvals} of {notice.required} approvals*"
                + (f": {', '.join(voters)}" if voters else "")
            )
        if notice.deadline is not None and notice.ending is None:
            parts.append(f"*Deadline:* {when(notice.deadline)}")
        link = escape(f"{notice.workflow} {notice.instance_id}")
        if self.base_url:
            link = f"<{self.base_url}/instances/{notice.instance_id}|{link}>"
        parts.append(link)
        return [{"type": "mrkdwn", "text": _cut(p, MAX_TEXT)} for p in parts]

    def mention(self, actor: str | None) -> str:
        """`<@U123>` for someone Slack knows, their name otherwise."""
        if actor is None:
            return "the program"
        slack_id = self.authority.slack_users.get(actor)
        if slack_id is None and SLACK_USER_ID.fullmatch(actor):
            slack_id = actor
        return f"<@{slack_id}>" if slack_id else escape(actor)

    def who(self, deciders: Sequence[str] | None) -> str:
        if deciders is None:
            return "anyone"
        if not deciders:
            return "nobody"
        return ", ".join(
            f"{escape(d.removeprefix(GROUP_PREFIX))} (group)"
            if d.startswith(GROUP_PREFIX)
            else self.mention(d)
            for d in deciders
        )

    # --- calling Slack --------------------------------------------------------------------------

    def _call(self, method: str, **args: Any) -> Mapping[str, Any]:
        return call_slack(self.client, method, **args)


class SlackRefused(Unavailable):
    """Slack answered the call with a refusal (429, or `ok: false`): it did nothing, so a
    message it refused was certainly not posted."""


def call_slack(client: Any, method: str, *, read: bool = False, **args: Any) -> Mapping[str, Any]:
    """Call one Web API method (`read`: one that takes its arguments in the query, such as
    `conversations.history`); every failure is raised as `Unavailable`."""
    from slack_sdk.errors import SlackApiError, SlackClientError

    try:
        if read:
            answer = client.api_call(method, http_verb="GET", params=args)
        else:
            answer = client.api_call(method, json=args)
    except SlackApiError as exc:
        status = exc.response.status_code
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        retry_after = _seconds(exc.response.headers.get("Retry-After"))
        wait = f"; it asks us to wait {retry_after:g} s" if retry_after else ""
        refused = status == 429 or (status < 500 and error is not None)
        raise (SlackRefused if refused else Unavailable)(
            f"Slack refused {method}: {error or 'no reason given'} (HTTP {status}){wait}",
            retry_after,
        ) from exc
    except (SlackClientError, OSError, ValueError) as exc:
        raise Unavailable(f"Slack could not be reached for {method}: {brief(exc)}") from exc
    data = answer.data if hasattr(answer, "data") else answer
    if not isinstance(data, Mapping):
        raise Unavailable(f"Slack answered {method} with something that is not JSON")
    return data


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _shown(value: object) -> str:
    if isinstance(value, str):
        return value or "—"
    return json.dumps(value, ensure_ascii=False, default=str)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _seconds(value: object) -> float | None:
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return seconds if seconds > 0 else None
