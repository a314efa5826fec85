"""The approvals inbox: every open Approval the signed-in person may decide, oldest first, with
approve and deny (deny asks for a reason) right in the list. Others' approvals are listed
below, read-only, so nobody wonders where a request went. Fifty open approvals a page, in
keyset pages ("More" continues after the last one shown)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from signoff.web.actions import Outcome, attempt, refusal
from signoff.web.auth import checked_form, chrome, remember_flash, require_user
from signoff.web.render import Flash, render, template, wants_fragment
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

PAGE_SIZE = 50


@dataclass(frozen=True)
class ApprovalItem:
    instance_id: str
    workflow: str
    thread: str
    wait: str
    event: str
    title: str | None
    began_at: datetime
    due_at: datetime | None
    approvers: list[str] | None
    may_decide: bool
    refusal: str | None = None  # why the signed-in person may not decide it
    required: int = 1  # approvals needed from different approvers
    votes: int = 0  # approvals given so far
    require_reason: bool = True  # denying needs a reason
    key: str = ""  # the wait's key: a second click, or one on a later round, is refused
    cursor: int = 0  # orders the approvals that began at the same moment
    outcome: Flash | None = None
    decided: bool = False

    @property
    def row_id(self) -> str:
        return row_id(self.instance_id, self.thread, self.event)


def row_id(instance_id: str, thread: str, event: str) -> str:
    key = f"{instance_id}\x00{thread}\x00{event}".encode()
    return "ap-" + hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True)
class ApprovalsPage:
    mine: list[ApprovalItem]
    others: list[ApprovalItem]
    user: str
    self_query: str  # what the live refresh asks for
    more_query: str | None  # query string of the next page (newer approvals)
    deep: bool  # not on the first page


def parse_cursor(text: str) -> tuple[datetime, int] | None:
    """`after=<began_at ISO>~<cursor>`, as `make_cursor` spells it; None when malformed."""
    at, sep, last = text.partition("~")
    if not (sep and last.isascii() and last.isdigit() and len(last) <= 18):
        return None  # a row id: no database keeps one past 2**63
    try:
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            return None
        return when.astimezone(UTC), int(last)
    except (ValueError, OverflowError):
        return None


def make_cursor(item: ApprovalItem) -> str:
    return f"{item.began_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}~{item.cursor}"


def _items(rows: list[dict[str, Any]]) -> list[ApprovalItem]:
    """Rows of `Engine.open_approvals(..., actor=user)`: the engine has said who may decide."""
    return [
        ApprovalItem(
            instance_id=r["instance_id"],
            workflow=r["workflow"],
            thread=r["thread"],
            wait=r["wait"],
            event=r["event"],
            title=r["title"],
            began_at=r["began_at"],
            due_at=r["due_at"],
            approvers=r["approvers"],
            key=r["key"],
            cursor=r["cursor"],
            may_decide=bool(r.get("may_decide")),
            refusal=r.get("refusal"),
            required=int(r.get("required", 1)),
            votes=int(r.get("votes", 0)),
            require_reason=bool(r.get("require_reason", True)),
        )
        for r in rows
    ]


async def page(request: Request) -> Response:
    user = require_user(request)
    board = dashboard(request)
    after = request.query_params.get("after", "")[:200]
    cursor = parse_cursor(after)
    rows = await run_in_threadpool(
        board.engine.open_approvals, PAGE_SIZE + 1, after=cursor, actor=user
    )
    items = _items(rows[:PAGE_SIZE])
    more = len(rows) > PAGE_SIZE
    context = ApprovalsPage(
        mine=[i for i in items if i.may_decide],
        others=[i for i in items if not i.may_decide],
        user=user,
        self_query=f"?{urlencode({'after': after})}" if cursor else "",
        more_query=f"?{urlencode({'after': make_cursor(items[-1])})}" if more else None,
        deep=cursor is not None,
    )
    return render(
        request,
        "pages/approvals.html",
        "partials/approvals.html",
        context,
        chrome(request, "approvals"),
    )


async def decide(request: Request) -> Response:
    """Approve or deny one row; answers with that row, decided or with the refusal in it."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    fields = {
        k: (form.get(k) if isinstance(form.get(k), str) else "")
        for k in ("instance", "thread", "event", "decision", "reason", "key")
    }
    instance_id, thread, event = (
        str(fields[k]).strip()[:200] for k in ("instance", "thread", "event")
    )
    decision, reason = str(fields["decision"]), str(fields["reason"]).strip()
    wait_key = str(fields["key"]).strip()[:200] or None
    outcome: Outcome
    if not (instance_id and thread and event) or decision not in ("approve", "deny"):
        outcome = refusal("The form is incomplete: reload the page and try again.", 400)
    else:  # who may decide, and what a reason must be, are the engine's to say
        payload = {"approved": decision == "approve", "reason": reason}
        outcome = await attempt(
            board.engine.send,
            instance_id,
            event,
            payload,
            actor=user,
            thread=thread,
            via="web",
            wait_key=wait_key,
        )
        board.changed()
        if outcome.ok:
            verb = "Approved" if decision == "approve" else "Denied"
            outcome.flash = Flash("ok", f"{verb}. The instance is now {outcome.value.status}.")
    if not wants_fragment(request):
        if outcome.flash is not None:
            remember_flash(request, outcome.flash)
        root = root_of(request)
        return RedirectResponse(f"{root}/approvals", status_code=303)
    rows = await run_in_threadpool(
        board.engine.open_approvals, PAGE_SIZE, instance_id=instance_id, actor=user
    )
    current = next((i for i in _items(rows) if (i.thread, i.event) == (thread, event)), None)
    if current is not None and outcome.ok and current.key == wait_key and current.votes:
        more = current.required - current.votes
        outcome.flash = Flash("ok", f"Approval counted: {more} more needed from other approvers.")
    if current is None or (outcome.ok and current.key != wait_key):
        item = ApprovalItem(
            instance_id=instance_id,
            workflow="",
            thread=thread,
            wait="",
            event=event,
            title=current.title if current else None,
            began_at=board.engine.clock(),
            due_at=None,
            approvers=None,
            may_decide=False,
            outcome=outcome.flash,
            decided=True,
        )
    else:
        item = ApprovalItem(**{**vars(current), "outcome": outcome.flash})
    return template(
        request,
        "partials/approval_row.html",
        item,
        chrome(request, "approvals"),
        status_code=outcome.status_code,
    )
