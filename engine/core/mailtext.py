"""What an approval email says: a subject, a plain-text part and an HTML part (pure).

The HTML is one table with inline styles and no images, scripts or outside assets, so it reads
the same in a mail client that blocks images and strips `<style>`; every value from the
workflow is escaped. The plain-text part says everything the HTML does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from html import escape
from typing import Any

from signoff.engine.core.notices import ApprovalNotice

MAX_SUBJECT = 180
MAX_FIELDS = 12
MAX_VALUE = 300
MAX_BODY_TEXT = 4000

_SUBJECTS = {
    "approval": "Approval needed: {title}",
    "reminder": "Reminder: {title} waits for your decision",
    "escalated": "Escalated: {title} waits for a decision",
    "link": "Your link to decide: {title}",
}
_OPENINGS = {
    "approval": "A request waits for your decision.",
    "reminder": "A reminder: this request still waits for your decision.",
    "escalated": "This request was escalated: you are among those who may decide it now.",
    "link": "{asked_by} asked signoff to send you your link to decide this request.",
}


def deadline_words(deadline: datetime, now: datetime) -> str:
    """ "by Tue 9 Dec, 17:00 UTC" (the year too when it is not this year's)."""
    year = f" {deadline.year}" if deadline.year != now.year else ""
    return f"by {deadline:%a} {deadline.day} {deadline:%b}{year}, {deadline:%H:%M} UTC"


def one_line(text: str, limit: int) -> str:
    """Text for a header: one line, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return one_line(text, MAX_VALUE) or "—"


def approval_email(
    notice: ApprovalNotice,
    *,
    title: str,
    what: str,
    summary: Mapping[str, Any],
    now: datetime,
    links: tuple[str, str] | None,
    request_url: str | None,
    asked_by: str | None = None,
) -> dict[str, str]:
    """The message for one approver: {"subject", "text", "html"}."""
    subject = one_line(_SUBJECTS.get(what, "{title}").format(title=title), MAX_SUBJECT)
    opening = _OPENINGS.get(what, "").format(asked_by=asked_by or "An operator")
    body = (notice.text or "")[:MAX_BODY_TEXT]
    fields = [(one_line(str(k), 60), shown(v)) for k, v in list(summary.items())[:MAX_FIELDS]]
    by = deadline_words(notice.deadline, now) if notice.deadline is not None else None
    quorum = (
        f"{notice.approvals} of {notice.required} approvals so far" if notice.required > 1 else None
    )
    where = f"{notice.workflow} · {notice.instance_id}"

    text = [title, "", opening]
    if body:
        text += ["", body]
    if fields:
        text += ["", *(f"{k}: {v}" for k, v in fields)]
    if by:
        text += ["", f"Please decide {by}."]
    if quorum:
        text += [quorum + "."]
    if links:
        text += [
            "",
            f"Approve: {links[0]}",
            f"Deny:    {links[1]}",
            "Each link opens a page where you confirm; it works once, and only for you.",
        ]
    if request_url:
        text += ["", f"See the request: {request_url}"]
    text += ["", "-- ", f"signoff · {where}"]

    cell = "padding:4px 12px 4px 0;vertical-align:top;"
    rows = "".join(
        f'<tr><td style="{cell}color:#555555;font-weight:bold;">{escape(k)}</td>'
        f'<td style="{cell}color:#111111;">{escape(v)}</td></tr>'
        for k, v in fields
    )
    button = (
        "display:inline-block;padding:10px 18px;margin:0 8px 8px 0;border-radius:4px;"
        "font-weight:bold;text-decoration:none;color:#ffffff;"
    )
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head>"
        '<body style="margin:0;padding:16px;background:#ffffff;color:#111111;'
        'font-family:Arial,Helvetica,sans-serif;font-size:15px;line-height:1.4;">',
        '<table role="presentation" style="max-width:600px;border-collapse:collapse;"><tr><td>',
        f'<h1 style="font-size:20px;margin:0 0 8px 0;color:#111111;">{escape(title)}</h1>',
        f'<p style="margin:0 0 12px 0;">{escape(opening)}</p>',
    ]
    if body:
        parts.append(f'<p style="margin:0 0 12px 0;white-space:pre-wrap;">{escape(body)}</p>')
    if rows:
        parts.append(
            f'<table role="presentation" style="border-collapse:collapse;margin:0 0 12px 0;">'
            f"{rows}</table>"
        )
    if by:
        parts.append(f'<p style="margin:0 0 12px 0;"><strong>Please decide {escape(by)}.</strong>')
        parts.append("</p>")
    if quorum:
        parts.append(f'<p style="margin:0 0 12px 0;">{escape(quorum)}.</p>')
    if links:
        parts.append(
            '<p style="margin:16px 0 4px 0;">'
            f'<a href="{escape(links[0])}" style="{button}background:#1a7f37;">Approve</a>'
            f'<a href="{escape(links[1])}" style="{button}background:#b42318;">Deny</a></p>'
            '<p style="margin:0 0 12px 0;color:#555555;font-size:13px;">Each link opens a '
            "page where you confirm; it works once, and only for you.</p>"
        )
    if request_url:
        parts.append(
            f'<p style="margin:0 0 12px 0;"><a href="{escape(request_url)}" '
            f'style="color:#0b57d0;">See the request</a></p>'
        )
    parts.append(
        f'<p style="margin:16px 0 0 0;color:#555555;font-size:12px;">signoff · '
        f"{escape(where)}</p></td></tr></table></body></html>"
    )
    return {"subject": subject, "text": "\n".join(text) + "\n", "html": "".join(parts)}


def link_chat(title: str, url: str, asked_by: str | None, by: str | None) -> str:
    """A Slack direct message carrying someone's link (Slack's mrkdwn)."""
    safe = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    who = (asked_by or "An operator").replace("<", "&lt;").replace(">", "&gt;")
    deadline = f" Please decide {by}." if by else ""
    return (
        f"{who} asked signoff to send you your link to decide *{safe}*.{deadline} <{url}|Open it>"
    )
