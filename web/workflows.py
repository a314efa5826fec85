"""The workflows page: every registered workflow, its definition tree with how many instances
stand on each statement, the instances parked on statements the running code no longer has
(what a deployment stranded), and a form to start a new instance, generated from its fields."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from signoff.engine import (
    Engine,
    Node,
    Workflow,
    declared_renames,
    outline,
    statement_names,
)
from signoff.web.actions import attempt
from signoff.web.auth import checked_form, chrome, require_user
from signoff.web.forms import FormField, fields_from_schema, parse_submission
from signoff.web.render import render, template, wants_fragment
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response


@dataclass(frozen=True)
class StartForm:
    workflow: str
    slug: str
    fields: list[FormField]
    instance_id: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None


PARKED_EXAMPLES = 10


@dataclass(frozen=True)
class Parked:
    """Instances standing on a name the running definition does not have."""

    statement: str
    count: int
    renamed_to: str | None  # declared with renamed_from: they move there at their next step
    examples: list[str]  # ids of some of them (none when they are carried over)


@dataclass(frozen=True)
class WorkflowCard:
    name: str
    doc: str
    tree: Node | None
    problem: str | None
    counts: dict[str, int]
    form: StartForm
    parked: list[Parked] = field(default_factory=list)


@dataclass(frozen=True)
class Orphans:
    """Instances of a workflow this process does not register."""

    workflow: str
    count: int


@dataclass(frozen=True)
class WorkflowsPage:
    cards: list[WorkflowCard]
    orphans: list[Orphans] = field(default_factory=list)


def slug(name: str) -> str:
    return "wf-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def start_form(cls: type[Workflow]) -> StartForm:
    name = cls.registered_name()
    fields = fields_from_schema(cls.model_json_schema())
    return StartForm(workflow=name, slug=slug(name), fields=fields)


def card(engine: Engine, name: str, cls: type[Workflow], counts: dict[str, int]) -> WorkflowCard:
    """One workflow's card; asks the database for examples of parked instances, so call it
    in the thread pool."""
    tree, problem = None, None
    parked: list[Parked] = []
    try:
        definition = cls.model_construct().definition()
        tree = outline(definition)
        parked = parked_instances(engine, name, definition, counts)
    except Exception as exc:
        problem = f"building the definition from its defaults failed: {exc}"
    return WorkflowCard(
        name=name,
        doc=inspect.cleandoc(cls.__doc__ or ""),
        tree=tree,
        problem=problem,
        counts=counts,
        form=start_form(cls),
        parked=parked,
    )


def parked_instances(
    engine: Engine, workflow: str, definition: Any, counts: dict[str, int]
) -> list[Parked]:
    """Statements instances stand on that the definition (built from the defaults) lacks."""
    names = statement_names(definition)
    renamed = declared_renames(definition).statements
    return [
        Parked(
            statement=statement,
            count=n,
            renamed_to=renamed.get(statement),
            examples=[]
            if statement in renamed
            else engine.parked_on(workflow, statement, PARKED_EXAMPLES),
        )
        for statement, n in sorted(counts.items())
        if statement not in names
    ]


def build(engine: Engine, placement: dict[str, dict[str, int]]) -> WorkflowsPage:
    cards = [
        card(engine, name, cls, placement.get(name, {}))
        for name, cls in sorted(engine.workflows.items())
    ]
    orphans = [
        Orphans(workflow, sum(counts.values()))
        for workflow, counts in sorted(placement.items())
        if workflow not in engine.workflows
    ]
    return WorkflowsPage(cards, orphans)


async def page(request: Request) -> Response:
    require_user(request)
    board = dashboard(request)
    placement = await board.placement.get()
    return render(
        request,
        "pages/workflows.html",
        "partials/workflows.html",
        await run_in_threadpool(build, board.engine, placement),
        chrome(request, "workflows"),
    )


def _refill(form: StartForm, submitted: FormData) -> list[FormField]:
    refilled = []
    for f in form.fields:
        raw: Any = submitted.get(f.input_name)
        text = raw[:10_000] if isinstance(raw, str) else ""
        refilled.append(replace(f, value=text, checked=f.kind == "checkbox" and raw is not None))
    return refilled


async def start(request: Request) -> Response:
    user = require_user(request)
    submitted = await checked_form(request)
    board = dashboard(request)
    name = request.path_params["workflow"]
    cls = board.engine.workflows.get(name)
    if cls is None:
        return Response(f"no workflow named {name!r}", status_code=404, media_type="text/plain")
    form = start_form(cls)
    data, errors = parse_submission(form.fields, submitted)
    raw_id = submitted.get("instance_id")
    instance_id = raw_id.strip()[:200] if isinstance(raw_id, str) else ""
    message = None
    status = 422
    if not errors:
        outcome = await attempt(
            board.engine.start, name, data, instance_id or None, actor=user, via="web"
        )
        if outcome.ok:
            board.changed()
            root = root_of(request)
            target = f"{root}/instances/{quote(str(outcome.value), safe='')}"
            if wants_fragment(request):
                return Response(status_code=200, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        message = outcome.flash.message if outcome.flash else "Could not start it."
        status = outcome.status_code
    else:
        message = "Some fields need another look."
    again = replace(
        form,
        fields=_refill(form, submitted),
        instance_id=instance_id,
        errors=errors,
        message=message,
    )
    if not wants_fragment(request):  # a plain form post: the whole page, this form filled in
        placement = await board.placement.get()
        whole = await run_in_threadpool(build, board.engine, placement)
        cards = [replace(c, form=again) if c.name == name else c for c in whole.cards]
        return template(
            request,
            "pages/workflows.html",
            replace(whole, cards=cards),
            chrome(request, "workflows"),
            status_code=status,
        )
    return template(
        request, "partials/start_form.html", again, chrome(request, "workflows"), status_code=status
    )
