"""The instance page: data, result or error, threads and their open waits, the definition as
a tree with each thread's position marked, the history; and every operator action on it
(approve, deny, send an event, retry, cancel, move a thread), each updating the page in place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from signoff.engine import (
    Engine,
    HistoryEntry,
    InstanceView,
    Node,
    OutcomeView,
    SignoffError,
    ThreadView,
    WaitView,
    declared_renames,
    goto_targets,
    outline,
    statement_names,
)
from signoff.web import links
from signoff.web.actions import Outcome, answered, attempt, plain, refusal
from signoff.web.auth import checked_form, chrome, remember_flash, require_user
from signoff.web.errors import status_for
from signoff.web.forms import FormField, fields_from_schema, parse_submission
from signoff.web.limits import loads
from signoff.web.render import Flash, render, template, wants_fragment
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

HISTORY_SHOWN = 500
MAX_REASON = 2000
TERMINAL = ("completed", "cancelled")
LIVE_OR_FAILED = ("running", "waiting", "blocked", "retrying", "failed")


@dataclass(frozen=True)
class WaitPanel:
    view: WaitView
    title: str | None
    text: str | None
    approvers: list[str] | None  # who may decide now (None: anyone), as deployed now
    may_decide: bool
    refusal: str | None  # why the signed-in person may not decide it, in a sentence
    required: int  # approvals needed from different approvers
    votes: int  # approvals given so far
    require_reason: bool
    fields: list[FormField]
    escalated: bool
    reminders: int


@dataclass(frozen=True)
class ThreadPanel:
    view: ThreadView
    waits: list[WaitPanel]
    events: list[str]
    goto_targets: list[str]
    missing: bool
    retryable: bool

    @property
    def wait_key(self) -> str:
        """The key of the wait the thread is in (its waits share it): for the JSON send form."""
        return self.waits[0].view.key if self.waits else ""


@dataclass(frozen=True)
class InstancePage:
    view: InstanceView
    data_json: str
    result_json: str | None
    threads: list[ThreadPanel]
    tree: Node | None
    tree_problem: str | None
    marks: dict[str, list[str]]  # statement name -> "thread (status)" standing there
    go_marks: dict[str, list[str]]  # Go name -> threads it started
    missing: list[tuple[str, str]]  # (thread, statement) absent from the definition
    moving: list[tuple[str, str, str]]  # (thread, old, new): renamed_from carries it over
    history: list[HistoryEntry]
    history_total: int
    dropped: list[HistoryEntry]  # kept events whose wait never began: never silent
    live: bool
    poll_query: str
    flash: Flash | None
    user: str
    operator: bool  # may retry, cancel, move threads and send any event
    outcome: OutcomeView  # how it ended or stands, and every decision taken on it
    summary: dict[str, Any]  # the workflow's summary fields of the data

    @property
    def terminal(self) -> bool:
        return self.view.status in TERMINAL


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def build(engine: Engine, instance_id: str, user: str, flash: Flash | None = None) -> InstancePage:
    """Everything the page shows, read in one go (call it in the thread pool)."""
    view = engine.get(instance_id, user)
    history = engine.history(instance_id, user)
    tree: Node | None = None
    problem: str | None = None
    names: set[str] | None = None
    renamed: dict[str, str] = {}
    definition = None
    cls = engine.workflows.get(view.workflow)
    if cls is None:
        problem = f"workflow '{view.workflow}' is not registered in this process"
    else:
        try:
            definition = cls.model_validate(view.data).definition()
            tree = outline(definition)
            names = statement_names(definition)
            renamed = declared_renames(definition).statements
        except Exception as exc:  # the workflow's own code: show, don't crash the page
            problem = f"building the definition from this instance's data failed: {exc}"
    refusals = engine.decision_refusals(instance_id, user)
    marks: dict[str, list[str]] = {}
    go_marks: dict[str, list[str]] = {}
    missing: list[tuple[str, str]] = []
    moving: list[tuple[str, str, str]] = []
    panels: list[ThreadPanel] = []
    for thread in view.threads:
        here = thread.status in LIVE_OR_FAILED and thread.step is not None
        absent = bool(here and names is not None and thread.step not in names)
        gone = absent and thread.step not in renamed
        if here and thread.step is not None:
            marks.setdefault(thread.step, []).append(f"{thread.id} ({thread.status})")
            if gone:
                missing.append((thread.id, thread.step))
            elif absent:
                moving.append((thread.id, thread.step, renamed[thread.step]))
        if thread.id != "main":
            go_marks.setdefault(thread.name, []).append(f"{thread.id} ({thread.status})")
        root = None if thread.id == "main" else thread.name
        panels.append(
            ThreadPanel(
                view=thread,
                waits=[
                    _wait_panel(w, refusals.get((thread.id, w.event), "")) for w in thread.waits
                ],
                events=[w.event for w in thread.waits],
                goto_targets=goto_targets(definition, root) if definition is not None else [],
                missing=gone,
                retryable=thread.status in ("failed", "retrying") and view.status not in TERMINAL,
            )
        )
    live = view.status not in TERMINAL
    return InstancePage(
        view=view,
        data_json=_pretty(view.data),
        result_json=None if view.result is None else _pretty(view.result),
        threads=panels,
        tree=tree,
        tree_problem=problem,
        marks=marks,
        go_marks=go_marks,
        missing=missing,
        moving=moving,
        history=list(reversed(history[-HISTORY_SHOWN:])),
        history_total=len(history),
        dropped=[h for h in history if h.kind == "event dropped"],
        live=live,
        poll_query=f"?since={view.version}",
        flash=flash,
        user=user,
        operator=engine.is_operator(user),
        outcome=engine.outcome(instance_id, history),
        summary=cls.summarize(view.data) if cls is not None else {},
    )


def _wait_panel(wait: WaitView, refusal: str | None) -> WaitPanel:
    """`refusal`: the engine's answer for this wait (None: may decide; "": not an approval
    the engine knows in the definition deployed now)."""
    info = wait.info or {}
    stored = wait.stored or {}
    escalated = bool(stored.get("escalated"))
    approvers = info.get("deciders", info.get("approvers"))
    may_decide = wait.kind == "approval" and refusal is None
    schema = info.get("schema")
    fields = fields_from_schema(schema) if wait.kind == "input" and isinstance(schema, dict) else []
    return WaitPanel(
        view=wait,
        title=info.get("title"),
        text=info.get("text"),
        approvers=approvers,
        may_decide=may_decide,
        refusal=refusal or None,
        required=int(info.get("required", 1) or 1),
        votes=len(info.get("votes") or []),
        require_reason=bool(info.get("require_reason", True)),
        fields=fields,
        escalated=escalated,
        reminders=int(stored.get("reminders", 0) or 0),
    )


def _path(request: Request, instance_id: str) -> str:
    return f"{root_of(request)}/instances/{quote(instance_id, safe='')}"


async def page(request: Request) -> Response:
    user = require_user(request)
    board = dashboard(request)
    instance_id = request.path_params["instance_id"]
    since = request.query_params.get("since")
    if since is not None and wants_fragment(request):
        view = await run_in_threadpool(board.engine.get, instance_id, user)
        if str(view.version) == since:
            return Response(status_code=204, headers={"Vary": "HX-Request"})
    context = await run_in_threadpool(build, board.engine, instance_id, user)
    return render(
        request,
        "pages/instance.html",
        "partials/instance.html",
        context,
        chrome(request, "instances"),
    )


async def _respond(request: Request, instance_id: str, user: str, outcome: Outcome) -> Response:
    """After an action: the refreshed instance with the outcome, in place (htmx) or by redirect."""
    board = dashboard(request)
    board.changed()
    if not wants_fragment(request):
        if outcome.flash is not None:
            remember_flash(request, outcome.flash)
        return RedirectResponse(_path(request, instance_id), status_code=303)
    context = await run_in_threadpool(build, board.engine, instance_id, user, outcome.flash)
    return template(
        request,
        "partials/instance.html",
        context,
        chrome(request, "instances"),
        status_code=outcome.status_code,
    )


def _text(form: FormData, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def send(request: Request) -> Response:
    """Approve, deny, an Input form, or any event with a JSON payload."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    instance_id = request.path_params["instance_id"]
    event = _text(form, "event")
    thread = _text(form, "thread") or None
    wait_key = _text(form, "wait_key") or None
    mode = _text(form, "mode")
    payload: dict[str, Any] | None = None
    outcome: Outcome | None = None
    if not event:
        outcome = refusal("Choose the event to send.")
    elif mode in ("approve", "deny"):
        reason = form.get("reason")  # what a reason must be is the engine's to say
        payload = {
            "approved": mode == "approve",
            "reason": reason if isinstance(reason, str) else "",
        }
    elif mode == "input":
        view = await run_in_threadpool(board.engine.get, instance_id, user)
        wait = next(
            (
                w
                for t in view.threads
                for w in t.waits
                if w.event == event and (thread is None or t.id == thread)
            ),
            None,
        )
        schema = (wait.info or {}).get("schema") if wait is not None else None
        if not isinstance(schema, dict):
            payload = {}
        else:
            payload, errors = parse_submission(fields_from_schema(schema), form)
            if errors:
                outcome = refusal(
                    "Invalid input: " + "; ".join(f"{k}: {v}" for k, v in errors.items())
                )
    else:
        raw = form.get("payload")
        text = raw if isinstance(raw, str) else ""
        try:
            parsed = loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            outcome = refusal(
                f"The payload is not valid JSON: {exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}."
            )
        else:
            if isinstance(parsed, dict):
                payload = parsed
            else:
                outcome = refusal('The payload must be a JSON object, like {"key": "value"}.')
    if outcome is None:
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
        if outcome.ok:
            done = {"approve": "Approved", "deny": "Denied"}.get(mode, f"Sent '{event}'")
            if outcome.value.kept:
                done += "; its wait has not begun, so it is kept and delivered when it begins"
            outcome.flash = Flash(
                "ok",
                f"{done}. The instance is now {outcome.value.status}." + answered(outcome.value),
            )
    return await _respond(request, instance_id, user, outcome)


async def retry(request: Request) -> Response:
    user = require_user(request)
    form = await checked_form(request)
    instance_id = request.path_params["instance_id"]
    thread = _text(form, "thread") or None
    outcome = await attempt(
        dashboard(request).engine.retry,
        instance_id,
        thread,
        actor=user,
        via="web",
        seen_by=(dashboard(request).engine, instance_id, user),
    )
    if outcome.ok:
        which = f"thread {thread}" if thread else "the failed threads"
        outcome.flash = Flash("ok", f"Retried {which}. The instance is now {outcome.value.status}.")
    return await _respond(request, instance_id, user, outcome)


async def cancel(request: Request) -> Response:
    user = require_user(request)
    form = await checked_form(request)
    instance_id = request.path_params["instance_id"]
    reason = _text(form, "reason", MAX_REASON) or None
    outcome = await attempt(
        dashboard(request).engine.cancel,
        instance_id,
        reason,
        actor=user,
        via="web",
        seen_by=(dashboard(request).engine, instance_id, user),
    )
    if outcome.ok:
        outcome.flash = Flash("ok", "Cancelled.")
    return await _respond(request, instance_id, user, outcome)


async def goto(request: Request) -> Response:
    user = require_user(request)
    form = await checked_form(request)
    instance_id = request.path_params["instance_id"]
    thread, step = _text(form, "thread"), _text(form, "step")
    if not thread or not step:
        outcome = refusal("Choose a thread and the step to move it to.")
    else:
        outcome = await attempt(
            dashboard(request).engine.goto,
            instance_id,
            thread,
            step,
            actor=user,
            via="web",
            seen_by=(dashboard(request).engine, instance_id, user),
        )
        if outcome.ok:
            outcome.flash = Flash(
                "ok",
                f"Moved thread {thread} to '{step}'. The instance is now {outcome.value.status}.",
            )
    return await _respond(request, instance_id, user, outcome)


@dataclass(frozen=True)
class LinkMade:
    url: str | None
    approver: str
    expires_at: datetime | None
    problem: str | None


async def make_link(request: Request) -> Response:
    """An operator makes an approval link for one approver of one of the instance's waits."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    instance_id = request.path_params["instance_id"]
    approver = _text(form, "approver")
    thread, event = _text(form, "thread") or None, _text(form, "event") or None
    status, made = 200, LinkMade(None, approver, None, None)
    if not board.engine.is_operator(user):
        # an outsider is told what `get` tells them: no such instance
        await run_in_threadpool(board.engine.get, instance_id, user)
        status = 403
        made = LinkMade(
            None, approver, None, f"Only operators make approval links; {user} is not one."
        )
    elif not approver:
        status, made = 422, LinkMade(None, approver, None, "Name the approver the link is for.")
    else:
        base = f"{request.url.scheme}://{request.url.netloc}{root_of(request)}"
        try:
            url = await run_in_threadpool(
                lambda: links.approval_link(
                    board.engine,
                    board.secret_key,
                    instance_id,
                    approver,
                    event=event,
                    thread=thread,
                    base_url=base,
                )
            )
            made = LinkMade(url, approver, board.engine.clock() + links.DEFAULT_LIFETIME, None)
        except SignoffError as exc:
            status, made = status_for(exc), LinkMade(None, approver, None, plain(exc))
    return template(
        request, "partials/link_made.html", made, chrome(request, "instances"), status_code=status
    )
