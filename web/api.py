"""The JSON API for programs: start, list, get, send, retry, cancel, goto; bearer tokens;
status codes that say what happened; an OpenAPI description at /api/openapi.json."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from signoff.engine import (
    MAX_JSON_DEPTH,
    InvalidData,
    SignoffError,
    UnknownWorkflow,
    finite_problem,
    json_problem,
)
from signoff.web.actions import hidden
from signoff.web.auth import TokenError, api_actor
from signoff.web.errors import retry_after, status_for
from signoff.web.instances import MAX_SEARCH, make_cursor, parse_cursor
from signoff.web.limits import loads
from signoff.web.render import STATUSES
from signoff.web.security import BodyTooLargeError, read_capped
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_LIMIT = 500


class ApiError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def error(status_code: int, message: str, kind: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if kind:
        body["type"] = kind
    headers = {"WWW-Authenticate": 'Bearer realm="signoff"'} if status_code == 401 else None
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object; refuses other media types, bad JSON, non-objects, big bodies."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        raw = await read_capped(request, dashboard(request).max_body)
    except BodyTooLargeError as exc:
        raise ApiError(413, str(exc)) from None
    if not raw.strip():
        return {}
    if kind != "application/json":
        raise ApiError(415, "send the body as application/json")
    try:
        value = loads(raw, MAX_JSON_DEPTH + 1)  # the payload or data sits one level down
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(422, "the body must be a JSON object")
    problem = finite_problem(value, "the body")  # Python's json reads NaN and Infinity
    if problem:
        raise InvalidData(problem)
    # the body's size was bounded as it arrived; depth and NUL are what is checked here
    problem = json_problem(
        value, "the body", max_depth=MAX_JSON_DEPTH + 1, max_bytes=4 * len(raw) + 1024
    )
    if problem:
        raise ApiError(422, problem)
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, f'"{key}" must be a string')
    return value


def endpoint(handler: Callable[[Request, str], Any]) -> Callable[[Request], Any]:
    """Authenticate, run the handler, and turn every refusal into a JSON error."""

    async def wrapped(request: Request) -> Response:
        actor: str | None = None
        try:
            actor = api_actor(request)
            result: Response = await handler(request, actor)
            return result
        except TokenError as exc:
            return error(401, str(exc))
        except ApiError as exc:
            return error(exc.status_code, exc.message)
        except SignoffError as exc:
            iid = request.path_params.get("instance_id")
            if iid is not None and actor is not None:  # a refusal reveals nothing to outsiders
                exc = await run_in_threadpool(hidden, exc, dashboard(request).engine, iid, actor)
            status = status_for(exc)
            response = error(status, str(exc), type(exc).__name__)
            if status == 503:
                response.headers["Retry-After"] = retry_after(exc)
            return response

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _instance_json(
    view: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(view.to_dict(), status_code=status_code, headers=headers)


async def create(request: Request, actor: str) -> Response:
    body = await _body(request)
    workflow = body.get("workflow")
    data = body.get("data", {})
    if not isinstance(workflow, str) or not workflow:
        raise ApiError(422, '"workflow" must name a registered workflow')
    if not isinstance(data, dict):
        raise ApiError(422, '"data" must be a JSON object')
    instance_id = _optional_str(body, "id")
    board = dashboard(request)

    def run() -> Any:
        iid = board.engine.start(workflow, data, instance_id, actor=actor, via="api")
        return board.engine.get(iid)

    try:
        view = await run_in_threadpool(run)
    except UnknownWorkflow as exc:
        raise ApiError(422, str(exc)) from None
    board.changed()
    root = root_of(request)
    location = f"{root}/api/instances/{quote(view.id, safe='')}"
    return _instance_json(view, 201, {"Location": location})


async def listing(request: Request, actor: str) -> Response:
    params = request.query_params
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(STATUSES)}")
    text = params.get("limit", "50")
    if not (text.isascii() and text.strip().isdigit() and len(text) < 10):
        raise ApiError(422, "limit must be a whole number")
    limit = max(1, min(int(text), MAX_LIMIT))
    before = None
    if params.get("before"):
        before = parse_cursor(params["before"])
        if before is None:
            raise ApiError(422, "before must be a cursor returned as 'next'")
    search = params.get("q") or None
    if search is not None and len(search) > MAX_SEARCH:
        raise ApiError(422, f"q is at most {MAX_SEARCH} characters")
    board = dashboard(request)
    pool = board.limits.searches if search else None
    call = partial(
        board.engine.list,
        status=status,
        workflow=params.get("workflow") or None,
        limit=limit + 1,
        search=search,
        before=before,
        actor=actor,
    )
    rows = await (pool.run(call) if pool else run_in_threadpool(call))
    more = len(rows) > limit
    rows = rows[:limit]
    return JSONResponse(
        {
            "instances": [r.to_dict() for r in rows],
            "next": make_cursor(rows[-1]) if more and rows else None,
        }
    )


async def show(request: Request, actor: str) -> Response:
    instance_id = request.path_params["instance_id"]
    view = await run_in_threadpool(dashboard(request).engine.get, instance_id, actor)
    return _instance_json(view)


async def history(request: Request, actor: str) -> Response:
    entries = await run_in_threadpool(
        dashboard(request).engine.history, request.path_params["instance_id"], actor
    )
    return JSONResponse({"history": [e.to_dict() for e in entries]})


async def send(request: Request, actor: str) -> Response:
    body = await _body(request)
    payload = body.get("payload", {})
    if payload is not None and not isinstance(payload, dict):
        raise ApiError(422, '"payload" must be a JSON object')
    thread = _optional_str(body, "thread")
    wait_key = _optional_str(body, "wait_key")
    board = dashboard(request)
    view = await run_in_threadpool(
        board.engine.send,
        request.path_params["instance_id"],
        request.path_params["event"],
        payload,
        actor=actor,
        thread=thread,
        via="api",
        wait_key=wait_key,
    )
    board.changed()
    return _instance_json(view)


async def _operate(request: Request, operation: str, actor: str, *args: str | None) -> Response:
    """Run an operator's action (retry, cancel, goto) on the path's instance, as `actor`."""
    board = dashboard(request)
    method = getattr(board.engine, operation)
    view = await run_in_threadpool(
        method, request.path_params["instance_id"], *args, actor=actor, via="api"
    )
    board.changed()
    return _instance_json(view)


async def retry(request: Request, actor: str) -> Response:
    body = await _body(request)
    return await _operate(request, "retry", actor, _optional_str(body, "thread"))


async def cancel(request: Request, actor: str) -> Response:
    body = await _body(request)
    return await _operate(request, "cancel", actor, _optional_str(body, "reason"))


async def goto(request: Request, actor: str) -> Response:
    body = await _body(request)
    thread, step = _optional_str(body, "thread"), _optional_str(body, "step")
    if not thread or not step:
        raise ApiError(422, 'goto needs "thread" and "step"')
    return await _operate(request, "goto", actor, thread, step)


async def reassign(request: Request, actor: str) -> Response:
    """Hand a part of the instance's open approval to someone else (`Engine.reassign`)."""
    body = await _body(request)
    to = _optional_str(body, "to") or ""  # the engine says what is missing, after who sees
    board = dashboard(request)
    view = await run_in_threadpool(
        lambda: board.engine.reassign(
            request.path_params["instance_id"],
            to,
            actor=actor,
            reason=_optional_str(body, "reason"),
            thread=_optional_str(body, "thread"),
            event=_optional_str(body, "event"),
            of=_optional_str(body, "of"),
            wait_key=_optional_str(body, "wait_key"),
            via="api",
        )
    )
    board.changed()
    return _instance_json(view)


async def approvals(request: Request, actor: str) -> Response:
    """What the caller may be asked to decide, oldest first, over all pages (`total`)."""
    params = request.query_params
    limit = _whole(params.get("limit", "50"), "limit")
    offset = _whole(params.get("offset", "0"), "offset")
    search = params.get("q") or None
    if search is not None and len(search) > MAX_SEARCH:
        raise ApiError(422, f"q is at most {MAX_SEARCH} characters")
    workflow = params.get("workflow") or None
    board = dashboard(request)

    def run() -> tuple[list[dict[str, Any]], int]:
        rows = board.engine.inbox(
            actor,
            workflow=workflow,
            search=search,
            limit=max(1, min(limit, MAX_LIMIT)),
            offset=min(offset, 10_000_000),
        )
        return rows, board.engine.inbox_count(actor, workflow=workflow, search=search)

    rows, total = await (board.limits.searches.run(run) if search else run_in_threadpool(run))
    keep = (
        "instance_id", "workflow", "thread", "wait", "event", "title", "text", "summary",
        "began_at", "deadline", "approvers", "required", "votes", "needed", "require_reason",
        "key", "may_decide", "refusal",
    )  # fmt: skip
    items = [{k: _plain(r.get(k)) for k in keep} for r in rows]
    return JSONResponse({"approvals": items, "total": total, "offset": offset})


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _whole(text: str, name: str) -> int:
    if not (text.isascii() and text.strip().isdigit() and len(text) < 10):
        raise ApiError(422, f"{name} must be a whole number")
    return int(text)


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


async def not_found(request: Request) -> Response:
    return error(404, "no such API endpoint")


routes = [
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/approvals", endpoint(approvals), methods=["GET"]),
    Route("/instances", endpoint(create), methods=["POST"]),
    Route("/instances", endpoint(listing), methods=["GET"]),
    Route("/instances/{instance_id}", endpoint(show), methods=["GET"]),
    Route("/instances/{instance_id}/history", endpoint(history), methods=["GET"]),
    Route("/instances/{instance_id}/events/{event:path}", endpoint(send), methods=["POST"]),
    Route("/instances/{instance_id}/retry", endpoint(retry), methods=["POST"]),
    Route("/instances/{instance_id}/cancel", endpoint(cancel), methods=["POST"]),
    Route("/instances/{instance_id}/goto", endpoint(goto), methods=["POST"]),
    Route("/instances/{instance_id}/reassign", endpoint(reassign), methods=["POST"]),
    Route("/{rest:path}", not_found),
]


# --- the OpenAPI description -------------------------------------------------------------------


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _instance_ok(description: str = "The instance as it is now") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Instance"}}},
    }


_ID = {"name": "instance_id", "in": "path", "required": True, "schema": {"type": "string"}}
_COMMON = {"401": _err("No or bad bearer token"), "404": _err("No such instance")}


def _op(
    summary: str,
    body: dict[str, Any] | None,
    responses: dict[str, Any],
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_COMMON}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


_DT = {"type": "string", "format": "date-time"}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "signoff",
        "version": "1",
        "description": "Durable workflows with humans in the loop. Every request needs "
        "`Authorization: Bearer <token>`; the token names the actor.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "type": {"type": "string"}},
            },
            "Wait": {
                "type": "object",
                "properties": {
                    "wait": {"type": "string"},
                    "event": {"type": "string"},
                    "kind": {"type": "string"},
                    "began_at": _DT,
                    "due_at": {"anyOf": [_DT, {"type": "null"}]},
                    "setup": {"type": "string", "enum": ["pending", "done", "failed"]},
                    "error": {"type": ["string", "null"]},
                    "attempts": {"type": "integer"},
                    "info": {"type": "object"},
                    "stored": {"type": ["object", "null"]},
                },
            },
            "Thread": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "status": {"type": "string"},
                    "step": {"type": ["string", "null"]},
                    "waits": {"type": "array", "items": {"$ref": "#/components/schemas/Wait"}},
                    "error": {"type": ["string", "null"]},
                    "traceback": {"type": ["string", "null"]},
                    "attempts": {"type": "integer"},
                    "retry_at": {"anyOf": [_DT, {"type": "null"}]},
                },
            },
            "Instance": {
                "type": "object",
                "required": ["id", "workflow", "status", "data"],
                "properties": {
                    "id": {"type": "string"},
                    "workflow": {"type": "string"},
                    "status": {"type": "string", "enum": list(STATUSES)},
                    "data": {"type": "object"},
                    "result": {},
                    "error": {"type": ["string", "null"]},
                    "created_at": _DT,
                    "updated_at": _DT,
                    "threads": {"type": "array", "items": {"$ref": "#/components/schemas/Thread"}},
                    "version": {"type": "integer"},
                    "due_at": {"anyOf": [_DT, {"type": "null"}]},
                    "pending_teardowns": {"type": "integer"},
                    "title": {"type": "string", "description": "what people call it"},
                },
            },
            "Summary": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "workflow": {"type": "string"},
                    "status": {"type": "string"},
                    "waiting_for": {"type": "array", "items": {"type": "string"}},
                    "error": {"type": ["string", "null"]},
                    "created_at": _DT,
                    "updated_at": _DT,
                    "summary": {
                        "type": "object",
                        "description": "the data fields the workflow names in summary_fields",
                    },
                    "outcome": {
                        "type": "string",
                        "description": "approved, denied, timed out, cancelled, failed, "
                        "completed, ended with an error; running or waiting while it runs",
                    },
                    "outcome_label": {"type": "string"},
                    "title": {"type": "string", "description": "what people call it"},
                    "waiting": {
                        "type": "array",
                        "description": "what it waits for: kind, title, approvers, since, "
                        "deadline (null: none)",
                        "items": {"type": "object"},
                    },
                },
            },
            "Approval": {
                "type": "object",
                "properties": {
                    "instance_id": {"type": "string"},
                    "workflow": {"type": "string"},
                    "thread": {"type": "string"},
                    "wait": {"type": "string"},
                    "event": {"type": "string"},
                    "title": {"type": ["string", "null"]},
                    "text": {"type": ["string", "null"]},
                    "summary": {"type": "object"},
                    "began_at": _DT,
                    "deadline": {"anyOf": [_DT, {"type": "null"}]},
                    "approvers": {"type": ["array", "null"], "items": {"type": "string"}},
                    "required": {"type": "integer"},
                    "votes": {"type": "integer"},
                    "needed": {"type": "integer"},
                    "require_reason": {"type": "boolean"},
                    "key": {"type": "string", "description": "pass as wait_key when deciding"},
                    "may_decide": {"type": "boolean"},
                    "refusal": {"type": ["string", "null"]},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/approvals": {
            "get": {
                "summary": "The open approvals the caller is asked to decide, oldest first",
                "parameters": [
                    {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "q",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 200},
                        "description": "an id prefix, field:value, or text in the data or title",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 500},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 100000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A page of approvals and how many there are in all",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "approvals": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Approval"},
                                        },
                                        "total": {"type": "integer"},
                                        "offset": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    "401": _err("No or bad bearer token"),
                    "422": _err("A bad parameter"),
                },
            }
        },
        "/api/instances": {
            "post": _op(
                "Start an instance",
                {
                    "type": "object",
                    "required": ["workflow"],
                    "properties": {
                        "workflow": {"type": "string"},
                        "data": {"type": "object"},
                        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"},
                    },
                },
                {
                    "201": _instance_ok("Started; it ran until every thread blocked"),
                    "409": _err("An instance with that id exists"),
                    "422": _err("Unknown workflow or invalid data"),
                },
            ),
            "get": _op(
                "List instances, most recently changed first",
                None,
                {
                    "200": {
                        "description": "A page of instances and the cursor of the next",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "instances": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Summary"},
                                        },
                                        "next": {"type": ["string", "null"]},
                                    },
                                }
                            }
                        },
                    }
                },
                [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(STATUSES)},
                    },
                    {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "q",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "an instance id, or text in its data",
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}},
                    {
                        "name": "before",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "the `next` cursor of the previous page",
                    },
                ],
            ),
        },
        "/api/instances/{instance_id}": {
            "get": _op(
                "An instance: data, status, threads and their waits",
                None,
                {"200": _instance_ok()},
                [_ID],
            )
        },
        "/api/instances/{instance_id}/history": {
            "get": _op(
                "The audit trail of an instance",
                None,
                {"200": {"description": "Every step, event, decision, error and retry"}},
                [_ID],
            )
        },
        "/api/instances/{instance_id}/events/{event}": {
            "post": _op(
                'Send an event (an approval: payload {"approved": true} or '
                '{"approved": false, "reason": "..."})',
                {
                    "type": "object",
                    "properties": {
                        "payload": {"type": "object"},
                        "thread": {"type": "string"},
                        "wait_key": {
                            "type": "string",
                            "description": "the `key` of the wait as you saw it (from "
                            "GET); if that wait has ended, the event is refused (409) "
                            "instead of going to a later wait of the same name",
                        },
                    },
                },
                {
                    "200": _instance_ok("Applied"),
                    "403": _err("The actor may not decide this approval"),
                    "409": _err(
                        "Stale: already decided, not waiting for it, or ended; or its "
                        "stored state cannot be read"
                    ),
                    "422": _err("The handler rejected the payload"),
                },
                [
                    _ID,
                    {"name": "event", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
            )
        },
        "/api/instances/{instance_id}/retry": {
            "post": _op(
                "Re-enter the statement a failed thread stopped at",
                {"type": "object", "properties": {"thread": {"type": "string"}}},
                {
                    "200": _instance_ok(),
                    "409": _err("Nothing failed to retry, or its stored state cannot be read"),
                },
                [_ID],
            )
        },
        "/api/instances/{instance_id}/cancel": {
            "post": _op(
                "Cancel the instance",
                {"type": "object", "properties": {"reason": {"type": "string"}}},
                {"200": _instance_ok(), "409": _err("Already ended")},
                [_ID],
            )
        },
        "/api/instances/{instance_id}/goto": {
            "post": _op(
                "Move a thread to a named step or wait",
                {
                    "type": "object",
                    "required": ["thread", "step"],
                    "properties": {"thread": {"type": "string"}, "step": {"type": "string"}},
                },
                {
                    "200": _instance_ok(),
                    "409": _err("No such thread or step, or its stored state cannot be read"),
                    "422": _err("thread and step are required"),
                },
                [_ID],
            )
        },
        "/api/instances/{instance_id}/reassign": {
            "post": _op(
                "Hand a part of the open approval to someone else (the actor's own part, or, "
                "for an operator, the part of `of`)",
                {
                    "type": "object",
                    "required": ["to"],
                    "properties": {
                        "to": {"type": "string"},
                        "of": {"type": "string"},
                        "reason": {"type": "string"},
                        "thread": {"type": "string"},
                        "event": {"type": "string"},
                        "wait_key": {"type": "string"},
                    },
                },
                {
                    "200": _instance_ok("Handed over"),
                    "403": _err("The actor may not hand this part over, or not to that person"),
                    "409": _err("No open approval, or several (name thread and event)"),
                    "422": _err("A group, oneself, or someone who decides it already"),
                },
                [_ID],
            )
        },
    },
}
