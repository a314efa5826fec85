"""The approvals inbox: every open Approval the signed-in person may decide, oldest first, with
approve and deny (deny asks for a reason) right in the list. Others' approvals are listed
below, read-only, so nobody wonders where a request went."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.placement import open_approvals
from web.actions import Outcome, attempt, refusal
from web.auth import checked_form, chrome, remember_flash, require_user
from web.render import Flash, render, template, wants_fragment
from web.state import dashboard, root_of

INBOX_LIMIT = 100
MAX_REASON = 2000


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
    key: str = ""  # the wait's key: a second click, or one on a later round, is refused
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
    limited: bool
    user: str


def _items(rows: list[dict[str, Any]], identities: set[str]) -> list[ApprovalItem]:
    return [
        ApprovalItem(
            instance_id=r["instance_id"], workflow=r["workflow"], thread=r["thread"],
            wait=r["wait"], event=r["event"], title=r["title"], began_at=r["began_at"],
            due_at=r["due_at"], approvers=r["approvers"], key=r["key"],
            may_decide=r["approvers"] is None or bool(identities & set(r["approvers"])),
        )
        for r in rows
    ]


async def _inbox(request: Request, user: str) -> ApprovalsPage:
    board = dashboard(request)
    rows = await run_in_threadpool(open_approvals, board.engine.store, INBOX_LIMIT)
    items = _items(rows, board.engine.services.identities(user))
    return ApprovalsPage(
        mine=[i for i in items if i.may_decide], others=[i for i in items if not i.may_decide],
        limited=len(rows) >= INBOX_LIMIT, user=user,
    )


async def page(request: Request) -> Response:
    user = require_user(request)
    context = await _inbox(request, user)
    return render(request, "pages/approvals.html", "partials/approvals.html", context,
                  chrome(request, "approvals"))


async def decide(request: Request) -> Response:
    """Approve or deny one row; answers with that row, decided or with the refusal in it."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    fields = {k: (form.get(k) if isinstance(form.get(k), str) else "") for k in
              ("instance", "thread", "event", "decision", "reason", "key")}
    instance_id, thread, event = (str(fields[k]).strip()[:200] for k in
                                  ("instance", "thread", "event"))
    decision, reason = str(fields["decision"]), str(fields["reason"]).strip()
    wait_key = str(fields["key"]).strip()[:200] or None
    outcome: Outcome
    if not (instance_id and thread and event) or decision not in ("approve", "deny"):
        outcome = refusal("The form is incomplete: reload the page and try again.", 400)
    elif len(reason) > MAX_REASON:
        outcome = refusal(f"The reason is longer than {MAX_REASON} characters.")
    elif decision == "deny" and not reason:
        outcome = refusal("Say why you deny it: a reason is required.")
    else:
        payload = {"approved": decision == "approve", "reason": reason}
        outcome = await attempt(board.engine.send, instance_id, event, payload, actor=user,
                                thread=thread, via="web", wait_key=wait_key)
        board.changed()
        if outcome.ok:
            verb = "Approved" if decision == "approve" else "Denied"
            outcome.flash = Flash("ok", f"{verb}. The instance is now {outcome.value.status}.")
    if not wants_fragment(request):
        if outcome.flash is not None:
            remember_flash(request, outcome.flash)
        root = root_of(request)
        return RedirectResponse(f"{root}/approvals", status_code=303)
    inbox = await _inbox(request, user)
    current = next((i for i in [*inbox.mine, *inbox.others]
                    if (i.instance_id, i.thread, i.event) == (instance_id, thread, event)), None)
    if current is None or outcome.ok:
        item = ApprovalItem(
            instance_id=instance_id, workflow="", thread=thread, wait="", event=event,
            title=current.title if current else None, began_at=board.engine.clock(),
            due_at=None, approvers=None, may_decide=False, outcome=outcome.flash, decided=True,
        )
    else:
        item = ApprovalItem(**{**vars(current), "outcome": outcome.flash})
    return template(request, "partials/approval_row.html", item, chrome(request, "approvals"),
                    status_code=outcome.status_code)
