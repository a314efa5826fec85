"""Approval links: a signed, expiring, single-use link for one approver and one wait, to send by
e-mail or chat.

The link names its approver, the instance, thread, event and the wait's key (so it dies with
that round of the wait), a random id and when it expires; it is signed with the app's secret
key (itsdangerous), so nobody can make or alter one without it. Opening it (GET) only shows the
request and a form: a mail scanner that follows every link decides nothing. The decision is a
POST from that form, made as the approver named in the link (the engine checks that they may
decide, as for any other surface), recorded `via="link"`, and spends the link's id in the
database, so it works once, in every process. It works without signing in (a session may have
expired since the mail was sent), and only for its approver: a browser signed in as someone
else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from signoff.engine import (
    Engine,
    InstanceView,
    LinkClaim,
    NotAllowed,
    NotWaiting,
    SignoffError,
    WaitView,
    make_link_token,
    read_link_token,
)
from signoff.web.actions import plain
from signoff.web.auth import checked_form, chrome, current_user
from signoff.web.errors import status_for
from signoff.web.render import Flash, template
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

SALT = "signoff.approval-link"
DEFAULT_LIFETIME = timedelta(days=3)
MAX_LIFETIME = timedelta(days=30)
MAX_TOKEN = 2000


# the token is made and read in one place, which the engine's emails use too
make_token = make_link_token
read_token = read_link_token


def approval_link(
    engine: Engine,
    secret_key: str,
    instance_id: str,
    approver: str,
    *,
    event: str | None = None,
    thread: str | None = None,
    lifetime: timedelta = DEFAULT_LIFETIME,
    base_url: str = "",
) -> str:
    """A link with which `approver` decides the instance's open approval (the one of `event`
    and `thread`, when it has several), valid for `lifetime` and once. Raises `SignoffError`
    when the instance waits for no such approval, or the approver may not decide it."""
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"a link lives between a second and {MAX_LIFETIME.days} days")
    view = engine.get(instance_id)
    thread_id, wait = _find(view, thread, event, None)
    if wait is None or thread_id is None:
        raise NotWaitingForThat(
            f"instance {instance_id} waits for no approval"
            + (f" '{event}'" if event else "")
            + (f" on thread {thread}" if thread else "")
        )
    refusal = engine.decision_refusals(instance_id, approver).get((thread_id, wait.event))
    if refusal:
        raise LinkRefused(refusal)
    token = make_token(
        secret_key,
        instance_id=instance_id,
        thread=thread_id,
        event=wait.event,
        wait_key=wait.key,
        approver=approver,
        expires_at=engine.clock() + lifetime,
    )
    return f"{base_url.rstrip('/')}/link/{quote(token, safe='')}"


class NotWaitingForThat(NotWaiting):
    """The instance has no open approval the link could be for."""


class LinkRefused(NotAllowed):
    """The approver may not decide the approval the link would be for."""


def _find(
    view: InstanceView, thread: str | None, event: str | None, key: str | None
) -> tuple[str | None, WaitView | None]:
    for t in view.threads:
        if thread is not None and t.id != thread:
            continue
        for w in t.waits:
            if w.kind != "approval" or (event is not None and w.event != event):
                continue
            if key is not None and w.key != key:
                continue
            return t.id, w
    return None, None


# --- the pages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkPage:
    claim: LinkClaim | None
    view: InstanceView | None
    wait: WaitView | None
    problem: str | None  # why the link cannot be used (now), in a sentence
    summary: dict[str, Any]
    deadline: datetime | None
    token: str
    done: Flash | None = None

    @property
    def title(self) -> str:
        info = (self.wait.info if self.wait else None) or {}
        return str(info.get("title") or (self.wait.event if self.wait else "Request"))

    @property
    def text(self) -> str | None:
        info = (self.wait.info if self.wait else None) or {}
        text = info.get("text")
        return text if isinstance(text, str) else None

    @property
    def require_reason(self) -> bool:
        info = (self.wait.info if self.wait else None) or {}
        return bool(info.get("require_reason", True))


def _problem_status(problem: str | None, claim: LinkClaim | None) -> int:
    if problem is None:
        return 200
    if claim is None:
        return 404
    return 410 if "expired" in problem or "used" in problem or "decided" in problem else 403


def _check(request: Request, token: str) -> tuple[LinkClaim | None, str | None]:
    """The link's claim, and why it cannot be used now (None: it can)."""
    board = dashboard(request)
    claim = read_token(board.secret_key, token)
    if claim is None:
        return None, "This link is not valid: it may have been cut short or changed."
    now = board.engine.clock()
    if now >= claim.expires_at:
        when = claim.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        return claim, f"This link expired at {when}. Ask for a new one, or sign in to decide."
    user = current_user(request)
    if user is not None and user != claim.approver and not board.open_access:
        return claim, (
            f"This link is for {claim.approver}, and this browser is signed in as {user}. "
            "A link decides only as the person it was made for."
        )
    return claim, None


def _build(engine: Engine, claim: LinkClaim, token: str, problem: str | None) -> LinkPage:
    try:
        view = engine.get(claim.instance_id)
    except SignoffError as exc:
        return LinkPage(claim, None, None, plain(exc), {}, None, token)
    spent = engine.spent_at(claim.nonce)
    if problem is None and spent is not None:
        problem = f"This link was already used, at {spent.strftime('%Y-%m-%d %H:%M UTC')}."
    _, wait = _find(view, claim.thread, claim.event, claim.wait_key)
    if problem is None and wait is None:
        outcome = engine.outcome(claim.instance_id)
        problem = f"This request has already been decided: the instance is {outcome.label}."
    if problem is None:
        refusal = engine.decision_refusals(claim.instance_id, claim.approver).get(
            (claim.thread, claim.event)
        )
        problem = refusal or None
    cls = engine.workflows.get(view.workflow)
    summary = cls.summarize(view.data) if cls is not None else {}
    deadline = None
    for t in view.threads:
        if t.id == claim.thread:
            for w in t.waits:
                if w.kind == "timeout" and w.due_at and (deadline is None or w.due_at < deadline):
                    deadline = w.due_at
    return LinkPage(claim, view, wait, problem, summary, deadline, token)


async def page(request: Request) -> Response:
    """GET: the request and the form; deciding needs the POST (a link scanner only GETs)."""
    token = request.path_params["token"]
    board = dashboard(request)
    claim, problem = _check(request, token)
    if claim is None:
        context = LinkPage(None, None, None, problem, {}, None, "")
    else:
        context = await run_in_threadpool(_build, board.engine, claim, token, problem)
    response = template(
        request,
        "pages/link.html",
        context,
        chrome(request, "link"),
        status_code=_problem_status(context.problem, claim),
    )
    # the token is a credential: Referrer-Policy stays same-origin (never sent to other
    # sites; "no-referrer" would make the browser send `Origin: null`, and the form be refused)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


async def decide(request: Request) -> Response:
    """POST: decide as the link's approver, once."""
    token = request.path_params["token"]
    form = await checked_form(request)
    board = dashboard(request)
    claim, problem = _check(request, token)
    decision = form.get("decision")
    raw = form.get("reason")
    reason = raw.strip()[:2000] if isinstance(raw, str) else ""
    if claim is None:
        context = LinkPage(None, None, None, problem, {}, None, "")
        return template(
            request, "pages/link.html", context, chrome(request, "link"), status_code=404
        )
    status = 200
    done: Flash | None = None
    if problem is None and decision not in ("approve", "deny"):
        problem, status = "Choose Approve or Deny.", 400
    if problem is None:

        def run() -> tuple[int, Flash | None, str | None]:
            engine = board.engine
            if not engine.spend_once(claim.nonce, claim.expires_at + timedelta(days=1)):
                spent = engine.spent_at(claim.nonce)
                when = spent.strftime("%Y-%m-%d %H:%M UTC") if spent else "before"
                return 410, None, f"This link was already used, at {when}."
            try:
                view = engine.send(
                    claim.instance_id,
                    claim.event,
                    {"approved": decision == "approve", "reason": reason},
                    actor=claim.approver,
                    thread=claim.thread,
                    via="link",
                    wait_key=claim.wait_key,
                )
            except SignoffError as exc:
                engine.refund_once(claim.nonce)  # nothing happened: the link may try again
                return status_for(exc), None, plain(exc)
            verb = "Approved" if decision == "approve" else "Denied"
            return (
                200,
                Flash(
                    "ok",
                    f"{verb} as {claim.approver}. The instance is now "
                    f"{view.status}. This link cannot be used again.",
                ),
                None,
            )

        status, done, problem = await run_in_threadpool(run)
        board.changed()
    else:
        status = _problem_status(problem, claim) if status == 200 else status
    context = await run_in_threadpool(_build, board.engine, claim, token, None if done else problem)
    if done is not None:
        context = LinkPage(**{**vars(context), "problem": None, "done": done})
    elif problem is not None and context.problem is None:
        context = LinkPage(**{**vars(context), "problem": problem})
    response = template(
        request, "pages/link.html", context, chrome(request, "link"), status_code=status
    )
    return response


def link_url(request: Request, token_path: str) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{root_of(request)}{token_path}"
