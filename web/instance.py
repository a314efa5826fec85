"""The instance page: first what it asks of the reader (each open approval: its title, who may
decide, the deadline, Approve and Deny; each form), how it ended or stands, its decisions, a
timeline of what happened with how long each part took, its data. Operators also get the
engine's side (threads with their waits' handlers and setup, the definition as a tree with
each thread's position marked, the raw history) and every repair (send any event, retry,
cancel, move a thread); for anyone else that section is absent, and a failed instance says
what failed and who may retry it. Every action updates the page in place."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    signed_link_maker,
    statement_names,
)
from signoff.web.actions import Outcome, answered, attempt, plain, refusal
from signoff.web.auth import checked_form, chrome, remember_flash, require_user
from signoff.web.errors import status_for
from signoff.web.forms import FormField, fields_from_schema, parse_submission
from signoff.web.limits import loads
from signoff.web.render import Flash, render, template, wants_fragment
from signoff.web.state import dashboard, root_of
from signoff.web.timeline import Moment, timeline
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
    # how its messages fared, the latest per person and channel (`Engine.deliveries`)
    deliveries: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ThreadPanel:
    view: ThreadView
    waits: list[WaitPanel]
    events: list[str]
    goto_targets: list[str]
    missing: bool
    retryable: bool
    deadline: datetime | None = None  # when a timeout of its wait decides it

    @property
    def asks(self) -> list[WaitPanel]:
        """What it asks of people: its approvals, and its forms."""
        return [w for w in self.waits if w.view.kind == "approval" or w.fields]

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
    waited: list[float | None]  # per decision: seconds its wait had been open (None: unknown)
    operators: list[str]  # who may retry, cancel, move threads: told to those who may not
    internals: bool  # sees the engine's side: operators, and viewers (who see everything)
    timeline: list[Moment]  # what happened, with durations, oldest first (web/timeline.py)

    @property
    def failed_threads(self) -> list[ThreadView]:
        return [t.view for t in self.threads if t.view.status == "failed"]

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
    deliveries: dict[str | None, list[dict[str, Any]]] = {}
    for sent in engine.deliveries(instance_id, user):
        deliveries.setdefault(sent["wait_key"], []).append(sent)
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
                    _wait_panel(
                        w, refusals.get((thread.id, w.event), ""), deliveries.get(w.key, [])
                    )
                    for w in thread.waits
                ],
                events=[w.event for w in thread.waits],
                goto_targets=goto_targets(definition, root) if definition is not None else [],
                missing=gone,
                retryable=thread.status in ("failed", "retrying") and view.status not in TERMINAL,
                deadline=min(
                    (w.due_at for w in thread.waits if w.kind == "timeout" and w.due_at),
                    default=None,
                ),
            )
        )
    live = view.status not in TERMINAL
    outcome = engine.outcome(instance_id, history)
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
        outcome=outcome,
        summary=cls.summarize(view.data) if cls is not None else {},
        waited=waited(outcome, history),
        operators=sorted(engine.authority.operators),
        internals=engine.is_operator(user) or engine.sees_all(user),
        timeline=timeline(history, engine.clock(), ended=view.status in TERMINAL),
    )


def waited(outcome: OutcomeView, history: list[HistoryEntry]) -> list[float | None]:
    """How long each decision's wait had been open when it was taken, in seconds: since the
    latest "waiting" entry of its thread and wait before it (None when the history lacks it)."""
    began: list[HistoryEntry] = [h for h in history if h.kind == "waiting"]
    found: list[float | None] = []
    for d in outcome.decisions:
        start = max(
            (h.at for h in began if h.thread == d.thread and h.name == d.wait and h.at <= d.at),
            default=None,
        )
        found.append((d.at - start).total_seconds() if start is not None else None)
    return found


def _wait_panel(
    wait: WaitView, refusal: str | None, deliveries: list[dict[str, Any]] | None = None
) -> WaitPanel:
    """`refusal`: the engine's answer for this wait (None: may decide; "": not an approval
    the engine knows in the definition deployed now)."""
    info = wait.info or {}
    stored = wait.stored or {}
    escalated = bool(stored.get("escalated"))
    approvers = info.get("deciders", info.get("approvers"))
    may_decide = wait.kind == "approval" and refusal is None
    schema = info.get("schema")
    fields = fields_from_schema(schema) if wait.kind == "input" and isinstance(schema, dict) else []
    if wait.kind == "approval":  # a gated call whose arguments the approver may edit
        fields = fields_from_schema(_arguments_schema(info) or {})
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
        deliveries=(deliveries or []) if wait.kind == "approval" else [],
    )


def _arguments_schema(info: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a gated call's editable arguments (see `signoff.engine.agents`)."""
    tool = info.get("tool")
    if isinstance(tool, dict) and tool.get("editable") and isinstance(tool.get("schema"), dict):
        return dict(tool["schema"])
    return None


def _open_wait(view: InstanceView, event: str, thread: str | None) -> WaitView | None:
    return next(
        (
            w
            for t in view.threads
            for w in t.waits
            if w.event == event and (thread is None or t.id == thread)
        ),
        None,
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
        headers=outcome.headers,
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
        if mode == "approve" and any(str(k).startswith("f.") for k in form):
            view = await run_in_threadpool(board.engine.get, instance_id, user)
            wait = _open_wait(view, event, thread)
            schema = _arguments_schema(wait.info or {}) if wait is not None else None
            if schema is not None:  # the approver's edits of a gated call's arguments
                payload["arguments"], errors = parse_submission(fields_from_schema(schema), form)
                if errors:
                    outcome = refusal(
                        "Invalid arguments: " + "; ".join(f"{k}: {v}" for k, v in errors.items())
                    )
    elif mode == "input":
        view = await run_in_threadpool(board.engine.get, instance_id, user)
        wait = _open_wait(view, event, thread)
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
    sent_to: str | None  # where the link went ("dave by email (dave@example.com)")
    approver: str
    problem: str | None


async def make_link(request: Request) -> Response:
    """An operator has an approver's link sent to that approver (email, or a Slack direct
    message). The link is never shown here: a link shown to one person would let them decide
    as another. The history records who asked, for whom and where it went."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    instance_id = request.path_params["instance_id"]
    approver = _text(form, "approver")
    thread, event = _text(form, "thread") or None, _text(form, "event") or None
    status, made = 200, LinkMade(None, approver, None)
    if not board.engine.is_operator(user):
        # an outsider is told what `get` tells them: no such instance
        await run_in_threadpool(board.engine.get, instance_id, user)
        status = 403
        made = LinkMade(None, approver, f"Only operators send approval links; {user} is not one.")
    elif not approver:
        status, made = 422, LinkMade(None, approver, "Name the approver the link is for.")
    else:
        # links point at the dashboard's address (SIGNOFF_BASE_URL), else at this request's
        maker = None
        if not board.engine.base_url:
            base = f"{request.url.scheme}://{request.url.netloc}{root_of(request)}"
            maker = signed_link_maker(board.secret_key, base)
        try:
            sent_to = await run_in_threadpool(
                lambda: board.engine.send_link(
                    instance_id, approver, actor=user, event=event, thread=thread, links=maker
                )
            )
            made = LinkMade(sent_to, approver, None)
        except SignoffError as exc:
            status, made = status_for(exc), LinkMade(None, approver, plain(exc))
    return template(
        request, "partials/link_made.html", made, chrome(request, "instances"), status_code=status
    )
