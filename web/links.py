"""Approval links: a signed, expiring, single-use link for one approver and one wait, to send by
e-mail or chat.

The link names its addressee, the instance, thread, event and the wait's key (so it dies with
that opening of the wait), a random id and when it expires (7 days at most); it is signed with
the app's secret key (itsdangerous), so nobody can make or alter one without it.

- Opening it (GET, HEAD) only shows the request and a confirm form, and changes nothing: mail
  scanners and chat previews fetch every link they see.
- Only the POST of that form decides. Its CSRF token is derived from the link itself (an HMAC
  of the link's id with the secret key, bound to this page), so a visitor who is not signed in,
  or whose browser keeps no cookie, can use it; the security middleware refuses a write from
  another site (Origin, Sec-Fetch-Site) before it gets here.
- It decides as its addressee and nobody else, through the engine like any surface (who may
  decide, quorum by distinct people, `allow_self=False`, hand-overs), recorded as
  `decision <addressee> via link` with the link's id in the history; its id is spent in the
  database, so it works once, in every process.
- A browser signed in as someone else is refused, and decides nothing. Signed out, the link
  acts as its addressee: a link is a credential of the person it is addressed to, like their
  password, and is delivered to them alone.

Every bad link (forged, altered, expired, used, for an earlier opening of the wait, for someone
else) gets a page that says why, with a 4xx status, and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
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
    text_problem,
)
from signoff.web.actions import plain
from signoff.web.auth import UnstorableText, chrome, current_user
from signoff.web.errors import status_for
from signoff.web.render import Flash, template
from signoff.web.security import read_capped
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

SALT = "signoff.approval-link"
DEFAULT_LIFETIME = timedelta(days=3)
MAX_LIFETIME = timedelta(days=7)
MAX_TOKEN = 2000
FORM_FIELD = "link_form"  # the link-bound CSRF token of the confirm form
MAX_FORM_FIELDS = 8


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


def form_token(secret_key: str, claim: LinkClaim) -> str:
    """The confirm form's CSRF token: bound to this one link (its id, instance and wait)."""
    message = f"{SALT}.form:{claim.nonce}:{claim.instance_id}:{claim.wait_key}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Problem:
    """Why a link cannot be used now: the page's sentence and its status."""

    status: int
    text: str


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
    asked_by: str | None = None  # who started the instance (None: a program)
    form: str = ""  # the confirm form's link-bound token

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


STRAY_FORM = "This form did not come from this link's page: open the link and confirm there."
INVALID = Problem(404, "This link is not valid: it may have been cut short or changed.")


def _check(request: Request, token: str) -> tuple[LinkClaim | None, Problem | None]:
    """The link's claim, and why it cannot be used now (None: it can, as far as the link and
    the browser go; `_build` asks the engine about the wait)."""
    board = dashboard(request)
    claim = read_token(board.secret_key, token)
    if claim is None:
        return None, INVALID
    now = board.engine.clock()
    if now >= claim.expires_at:
        when = claim.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        return claim, Problem(
            410, f"This link expired at {when}. Ask for a new one, or sign in to decide."
        )
    user = current_user(request)
    if user is not None and user != claim.approver and not board.open_access:
        return claim, Problem(
            403,
            f"This link is for {claim.approver}; you are signed in as {user}. A link decides "
            "only as the person it was made for: nothing was decided.",
        )
    return claim, None


def _build(
    engine: Engine, secret_key: str, claim: LinkClaim, token: str, problem: Problem | None
) -> tuple[LinkPage, Problem | None]:
    try:
        view = engine.get(claim.instance_id)
    except SignoffError as exc:
        return LinkPage(claim, None, None, plain(exc), {}, None, token), Problem(
            status_for(exc), plain(exc)
        )
    spent = engine.spent_at(claim.nonce)
    if problem is None and spent is not None:
        when = spent.strftime("%Y-%m-%d %H:%M UTC")
        problem = Problem(410, f"This link was already used, at {when}.")
    _, wait = _find(view, claim.thread, claim.event, claim.wait_key)
    if problem is None and wait is None:
        _, later = _find(view, claim.thread, claim.event, None)
        if later is not None:
            problem = Problem(
                410,
                "This link is for an earlier round of this request, which is over; "
                "the request open now has links of its own.",
            )
        else:
            outcome = engine.outcome(claim.instance_id)
            problem = Problem(
                410, f"This request has already been decided: the instance is {outcome.label}."
            )
    if problem is None:
        refusal = engine.decision_refusals(claim.instance_id, claim.approver).get(
            (claim.thread, claim.event)
        )
        if refusal:
            problem = Problem(403, refusal[:1].upper() + refusal[1:] + ".")
    cls = engine.workflows.get(view.workflow)
    summary = cls.summarize(view.data) if cls is not None else {}
    deadline = None
    for t in view.threads:
        if t.id == claim.thread:
            for w in t.waits:
                if w.kind == "timeout" and w.due_at and (deadline is None or w.due_at < deadline):
                    deadline = w.due_at
    started = next((h for h in engine.history(claim.instance_id) if h.kind == "started"), None)
    page = LinkPage(
        claim,
        view,
        wait,
        problem.text if problem else None,
        summary,
        deadline,
        token,
        asked_by=started.actor if started else None,
        form=form_token(secret_key, claim),
    )
    return page, problem


def _respond(request: Request, context: LinkPage, status: int) -> Response:
    response = template(
        request, "pages/link.html", context, chrome(request, "link"), status_code=status
    )
    # the token is a credential: Referrer-Policy stays same-origin (never sent to other
    # sites; "no-referrer" would make the browser send `Origin: null`, and the form be refused)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


async def page(request: Request) -> Response:
    """GET: the request and the confirm form. It never decides: a link scanner only GETs."""
    token = request.path_params["token"]
    board = dashboard(request)
    claim, problem = _check(request, token)
    if claim is None:
        return _respond(request, LinkPage(None, None, None, INVALID.text, {}, None, ""), 404)
    context, problem = await run_in_threadpool(
        _build, board.engine, board.secret_key, claim, token, problem
    )
    return _respond(request, context, problem.status if problem else 200)


async def _link_form(request: Request, secret_key: str, claim: LinkClaim) -> FormData | None:
    """The posted confirm form, when it carries this link's token (else None)."""
    await read_capped(request, dashboard(request).max_body)
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    given = form.get(FORM_FIELD)
    expected = form_token(secret_key, claim)
    if not (isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())):
        return None
    for key, value in form.multi_items():
        problem = text_problem(value, f"The field {key[:40]!r}") if isinstance(value, str) else None
        if problem:
            raise UnstorableText(problem + ".")
    return form


async def decide(request: Request) -> Response:
    """POST from the confirm form: decide as the link's addressee, once."""
    token = request.path_params["token"]
    board = dashboard(request)
    claim, problem = _check(request, token)
    if claim is None:
        return _respond(request, LinkPage(None, None, None, INVALID.text, {}, None, ""), 404)
    form = await _link_form(request, board.secret_key, claim)
    # a form from elsewhere: refused, but a link that cannot be used says why first
    stray = None if form is not None else Problem(403, STRAY_FORM)
    decision = form.get("decision") if form is not None else None
    raw = form.get("reason") if form is not None else None
    reason = raw.strip()[:2000] if isinstance(raw, str) else ""
    if problem is None and stray is None and decision not in ("approve", "deny"):
        problem = Problem(400, "Choose Approve or Deny.")
    done: Flash | None = None
    if problem is None and stray is None:

        def run() -> tuple[Flash | None, Problem | None]:
            engine = board.engine
            if not engine.spend_once(claim.nonce, claim.expires_at + timedelta(days=1)):
                spent = engine.spent_at(claim.nonce)
                when = spent.strftime("%Y-%m-%d %H:%M UTC") if spent else "before"
                return None, Problem(410, f"This link was already used, at {when}.")
            try:
                view = engine.send(
                    claim.instance_id,
                    claim.event,
                    {"approved": decision == "approve", "reason": reason},
                    actor=claim.approver,
                    thread=claim.thread,
                    via="link",
                    wait_key=claim.wait_key,
                    link=claim.nonce,
                )
            except SignoffError as exc:
                engine.refund_once(claim.nonce)  # nothing happened: the link may try again
                return None, Problem(status_for(exc), plain(exc))
            verb = "Approved" if decision == "approve" else "Denied"
            return Flash(
                "ok",
                f"{verb} as {claim.approver}. The instance is now "
                f"{view.status}. This link cannot be used again.",
            ), None

        done, problem = await run_in_threadpool(run)
        board.changed()
    context, found = await run_in_threadpool(
        _build, board.engine, board.secret_key, claim, token, None if done else problem
    )
    if done is not None:
        return _respond(request, replace(context, problem=None, done=done), 200)
    problem = found or stray
    if problem is not None and context.problem is None:
        context = replace(context, problem=problem.text)
    return _respond(request, context, problem.status if problem else 200)


def link_url(request: Request, token_path: str) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{root_of(request)}{token_path}"
