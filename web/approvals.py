"""The approvals inbox: every open Approval the signed-in person is asked to decide, over all
its pages, oldest first, with a true count; filtered by workflow and searched. Each row reads
as the request itself (title, text, the workflow's summary fields, the deadline, the votes
still needed), and is decided right there: Approve, or a reason and Deny (Enter in the reason
denies). Several rows are decided at once with the bulk bar (one reason for all denials).

Deciding takes one click (Approve) or a reason and Enter (Deny), and asks nothing more: no
dialog. The decided row turns at once into one line ("Approved by you") in its place, and the
live refresh (static/app.js) keeps it there until the page is loaded again, so nothing moves
under the pointer. There is no Undo: a decision is applied when the server accepts it (the
instance moves on, its steps may run at once), so nothing is held back that could honestly be
taken back; an operator's repair tools (retry, goto) are the way back.

The engine says who may decide what (`Engine.inbox`); this page only shows its answers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

from signoff.engine import SignoffError
from signoff.web.actions import Outcome, answered, attempt, plain, refusal
from signoff.web.auth import checked_form, chrome, remember_flash, require_user
from signoff.web.bulk import BulkResult, summary, try_row
from signoff.web.errors import status_for
from signoff.web.render import Flash, render, template, wants_fragment
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

# Each request is a whole card to read and decide (a screen of its own on a phone): 25 a page
# keeps a page quick to read and to render (bench/web.py: p50 < 5 ms at 100k instances).
PAGE_SIZE = 25
DASH = "\u2013"  # 1\u201350 of N
MAX_SEARCH = 200
MAX_BULK = 250  # rows one bulk request may decide: a bigger selection is refused whole
MAX_OFFSET = 1_000_000


@dataclass(frozen=True)
class ApprovalItem:
    instance_id: str
    workflow: str
    thread: str
    wait: str
    event: str
    title: str | None
    began_at: datetime
    due_at: datetime | None  # the case's own next timer (a reminder, an escalation)
    approvers: list[str] | None
    may_decide: bool
    refusal: str | None = None  # why the signed-in person may not decide it
    required: int = 1  # approvals needed from different approvers
    votes: int = 0  # approvals given so far
    require_reason: bool = True  # denying needs a reason
    key: str = ""  # the wait's key: a second click, or one on a later round, is refused
    cursor: int = 0
    text: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    deadline: datetime | None = None  # when a timeout decides it
    needed: int = 1  # approvals still needed
    outcome: Flash | None = None
    decided: bool = False
    instance_title: str = ""  # what people call the instance (`InstanceView.title`)

    @property
    def row_id(self) -> str:
        return row_id(self.instance_id, self.thread, self.event)

    @property
    def pick(self) -> str:
        """The value of this row's checkbox in the bulk form."""
        return "\x1f".join((self.instance_id, self.thread, self.event, self.key))

    @property
    def heading(self) -> str:
        return self.instance_title or self.title or self.wait or self.instance_id

    @property
    def request(self) -> str | None:
        """The approval's own title, when it says more than the instance's."""
        return self.title if self.title and self.title != self.heading else None


def row_id(instance_id: str, thread: str, event: str) -> str:
    key = f"{instance_id}\x00{thread}\x00{event}".encode()
    return "ap-" + hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True)
class ApprovalsPage:
    mine: list[ApprovalItem]
    total: int
    start: int  # rows before this page
    user: str
    workflow: str
    q: str
    workflows: list[str]
    self_query: str  # what the live refresh asks for
    prev_query: str | None
    next_query: str | None
    demo_names: list[str] = field(default_factory=list)  # open access: approvers to act as
    report: list[BulkResult] = field(default_factory=list)
    report_title: str = ""

    @property
    def shown(self) -> str:
        """`1-50 of 95`."""
        if not self.mine:
            return f"0 of {self.total}"
        return f"{self.start + 1}{DASH}{self.start + len(self.mine)} of {self.total}"

    def query(self, **changes: Any) -> str:
        values = {"workflow": self.workflow, "q": self.q, "start": str(self.start)}
        values.update({k: str(v) for k, v in changes.items()})
        kept = {k: v for k, v in values.items() if v and v != "0"}
        return ("?" + urlencode(kept)) if kept else ""


def items(rows: list[dict[str, Any]]) -> list[ApprovalItem]:
    """Rows of `Engine.inbox(...)`: the engine has said who may decide."""
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
            text=r.get("text"),
            summary=dict(r.get("summary") or {}),
            deadline=r.get("deadline"),
            needed=int(r.get("needed", 1)),
            instance_title=r.get("instance_title") or "",
        )
        for r in rows
    ]


def _filters(request: Request) -> tuple[str, str, int]:
    params = request.query_params
    workflow = params.get("workflow", "")[:200]
    board = dashboard(request)
    if workflow not in board.engine.workflows:
        workflow = ""
    q = params.get("q", "").strip()[:MAX_SEARCH]
    start = params.get("start", "")
    offset = int(start) if start.isascii() and start.isdigit() and len(start) < 9 else 0
    return workflow, q, min(offset, MAX_OFFSET)


async def build(
    request: Request,
    user: str,
    report: list[BulkResult] | None = None,
    report_title: str = "",
) -> ApprovalsPage:
    board = dashboard(request)
    workflow, q, start = _filters(request)

    def rows() -> list[dict[str, Any]]:
        return board.engine.inbox(
            user, workflow=workflow or None, search=q or None, limit=PAGE_SIZE, offset=start
        )

    found = await (board.limits.searches.run(rows) if q else run_in_threadpool(rows))
    total = await board.inbox_counts.get((user, workflow, q))
    if found and start + len(found) > total:  # a count kept a moment ago: never contradict
        total = start + len(found)
    demo: list[str] = []
    if board.open_access and not found and not q and not workflow:
        others = await run_in_threadpool(board.engine.inbox, None, limit=20)
        demo = sorted({n for r in others for n in (r["approvers"] or []) if n != user})[:6]
    page = ApprovalsPage(
        mine=items(found),
        total=total,
        start=start,
        user=user,
        workflow=workflow,
        q=q,
        workflows=sorted(board.engine.workflows),
        self_query="",
        prev_query=None,
        next_query=None,
        demo_names=demo,
        report=report or [],
        report_title=report_title,
    )
    more = start + len(found) < total
    return ApprovalsPage(
        **{
            **vars(page),
            "self_query": page.query(),
            "prev_query": page.query(start=max(0, start - PAGE_SIZE)) if start else None,
            "next_query": page.query(start=start + PAGE_SIZE) if more else None,
        }
    )


async def page(request: Request) -> Response:
    user = require_user(request)
    context = await build(request, user)
    return render(
        request,
        "pages/approvals.html",
        "partials/approvals.html",
        context,
        chrome(request, "approvals"),
    )


def _field(form: Any, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def decide(request: Request) -> Response:
    """Approve or deny one row; answers with that row, decided or with the refusal in it."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    instance_id, thread, event = (_field(form, k) for k in ("instance", "thread", "event"))
    decision = _field(form, "decision")
    raw_reason = form.get("reason")
    reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
    wait_key = _field(form, "key") or None
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
            seen_by=(board.engine, instance_id, user),
        )
        board.changed()
        if outcome.ok:
            verb = "Approved" if decision == "approve" else "Denied"
            outcome.flash = Flash(
                "ok", f"{verb} by you · now {outcome.value.status}" + answered(outcome.value)
            )
    if not wants_fragment(request):
        if outcome.flash is not None:
            remember_flash(request, outcome.flash)
        return RedirectResponse(f"{root_of(request)}/approvals", status_code=303)
    rows = (
        await run_in_threadpool(board.engine.inbox, user, search=instance_id, limit=PAGE_SIZE)
        if instance_id
        else []
    )
    current = next(
        (
            i
            for i in items(rows)
            if (i.instance_id, i.thread, i.event) == (instance_id, thread, event)
        ),
        None,
    )
    if current is not None and outcome.ok and current.key == wait_key and current.votes:
        more = current.needed
        outcome.flash = Flash("ok", f"Your approval is counted · {more} more needed")
    if current is None or outcome.ok:  # decided: one line, in the row's place
        title = _field(form, "title", 300) or None
        item = ApprovalItem(
            instance_id=instance_id,
            workflow="",
            thread=thread,
            wait="",
            event=event,
            title=current.title if current else title,
            instance_title=current.instance_title if current else title or "",
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
        headers=outcome.headers,
    )


async def bulk(request: Request) -> Response:
    """Approve or deny every selected row (one reason for all denials), each on its own: one
    refusal does not stop the rest, and the report says what happened to each."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    action = _field(form, "action")
    raw_reason = form.get("reason")
    reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
    picks = [p for p in form.getlist("pick") if isinstance(p, str)]
    root = root_of(request)
    report: list[BulkResult] = []
    title = ""
    status = 200
    if action not in ("approve", "deny"):
        status, title = 400, "Choose Approve selected or Deny selected."
    elif not picks:
        status, title = 422, "Select the requests to decide first."
    elif len(picks) > MAX_BULK:
        status = 413
        title = f"{len(picks)} requests selected: decide at most {MAX_BULK} at once."
    elif action == "deny" and not reason:
        status, title = 422, "Say why you deny them: the reason is kept with every denial."
    else:
        payload = {"approved": action == "approve", "reason": reason}

        def run() -> list[BulkResult]:
            done = []
            for pick in picks:
                parts = pick[:700].split("\x1f")
                if len(parts) != 4 or not all(parts[:3]):
                    done.append(BulkResult(pick[:40], False, "not a request of this page", ""))
                    continue
                iid, thread, event, key = parts
                link = f"{root}/instances/{iid}"
                send = partial(
                    board.engine.send,
                    iid,
                    event,
                    payload,
                    actor=user,
                    thread=thread,
                    via="web",
                    wait_key=key or None,
                )
                verb = "approved" if action == "approve" else "denied"
                done.append(try_row(iid, link, verb, send, (board.engine, iid, user)))
            return done

        report = await run_in_threadpool(run)
        board.changed()
        title, status = summary("Approved" if action == "approve" else "Denied", report)
    if status >= 400 and not report:
        report = []
    context = await build(request, user, report, title)
    if not wants_fragment(request):
        return template(
            request,
            "pages/approvals.html",
            context,
            chrome(request, "approvals"),
            status_code=status,
        )
    return template(
        request,
        "partials/approvals.html",
        context,
        chrome(request, "approvals"),
        status_code=status,
    )


def refused(exc: SignoffError) -> tuple[int, str]:
    return status_for(exc), plain(exc)
