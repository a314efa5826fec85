"""`create_app(engine, ...)`: the dashboard and JSON API as one Starlette app.

Everything the app keeps lives on `app.state.signoff` (see `web.state`); nothing is global, so
several apps (one per test, or one mounted in a larger ASGI app) never share anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from signoff.engine import (
    AsyncEngine,
    Engine,
    SignoffError,
    actor_problem,
    everyone_operates,
    signed_link_maker,
)
from signoff.web import (
    api,
    apidocs,
    approvals,
    auth,
    instance,
    instances,
    links,
    live,
    metrics,
    reassign,
    slack,
    workflows,
)
from signoff.web import oidc as oidc_routes
from signoff.web.durations import duration, relative
from signoff.web.errors import retry_after, status_for
from signoff.web.limits import Limits, RequestLimits
from signoff.web.oidc import OIDC, OIDCClient
from signoff.web.proxy import TrustedProxy
from signoff.web.render import Flash, template, wants_fragment
from signoff.web.security import BodyTooLargeError, SecurityMiddleware
from signoff.web.state import Cached, Changes, Dashboard, KeyedCache, dashboard, root_of
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("signoff.web")

HERE = Path(__file__).resolve().parent
COUNTS_TTL = 2.0
GAUGES_TTL = 5.0  # seconds a /metrics scrape may be served database figures that old
PLACEMENT_TTL = 10.0
SESSION_MAX_AGE = int(auth.SESSION_LIFETIME.total_seconds())
# what a browser on this machine calls it (TrustedHostMiddleware ignores the port)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _resource(name: str) -> Path:
    """templates/ and static/ sit beside web/ in the signoff package, checkout and wheel alike."""
    return HERE.parent / name


class EveryoneOperates:
    """Open access: each request of this app runs with every visitor an operator, and nothing
    outside it (another app on the same engine, the engine's own scheduler) is changed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with everyone_operates():
            await self.app(scope, receive, send)


def create_app(
    engine: Engine | AsyncEngine,
    *,
    secret_key: str | None = None,
    users: Mapping[str, str] | None = None,
    api_tokens: Mapping[str, str] | None = None,
    open_access: bool = False,
    slack_signing_secret: str | None = None,
    limits: Limits | None = None,
    allowed_hosts: Sequence[str] | None = None,
    slack_team_id: str | None = None,
    slack_app_id: str | None = None,
    oidc: OIDC | None = None,
    trusted_user_header: str | None = None,
    trusted_groups_header: str | None = None,
    trusted_proxies: Sequence[str] | None = None,
) -> Starlette:
    """The dashboard for `engine`.

    `users` maps user names to password hashes (`web.auth.hash_password`), `api_tokens` maps
    bearer tokens to the actor they act as. `open_access=True` (demos only) lets anyone in as an
    administrator: every visitor is an operator of this app's requests (the engine's own
    operators stay as they are, for every other app or program on it).
    Without `secret_key` a random one is made: sessions end at restart.

    `limits` bounds what one client may cost (sign-in attempts, body size, request time, ...).
    `allowed_hosts` are the Host names the app answers to; with open access it defaults to the
    loopback names, so a page elsewhere cannot reach it through DNS rebinding.

    `slack_signing_secret` (default: SLACK_SIGNING_SECRET) turns on `POST /slack/interactions`;
    Slack's Web API client is the engine's (`Engine(slack=...)`, or SLACK_BOT_TOKEN).
    `slack_team_id` / `slack_app_id` (default: SLACK_TEAM_ID / SLACK_APP_ID), when set, refuse
    interactions from any other workspace or app.

    `oidc=OIDC(issuer, client_id, client_secret, ...)` signs people in with the organisation's
    OpenID Connect provider (`/login/oidc`; see `web.oidc`). Behind an authenticating proxy,
    `trusted_user_header` (e.g. "X-Forwarded-Email") names the signed-in user and
    `trusted_groups_header` their groups (comma separated), believed only from
    `trusted_proxies` (IP addresses or CIDR ranges; default: this machine's loopback).
    """
    if isinstance(engine, AsyncEngine):
        engine = engine.engine  # the dashboard calls the sync engine from worker threads
    if open_access and allowed_hosts is not None and "*" in allowed_hosts:
        raise ValueError(
            "open access makes every visitor an administrator: it answers only to the host "
            "names you list, never to '*'"
        )
    for name in [*(users or {}), *(api_tokens or {}).values()]:
        problem = actor_problem(name) if isinstance(name, str) else "is not text"
        if problem:
            raise ValueError(f"a user or API token actor cannot be named {name!r}: {problem}")
    if secret_key is None:
        secret_key = secrets.token_urlsafe(32)
        if not open_access:  # a demo has no sessions worth keeping
            log.warning("no secret key given: sessions will not survive a restart")
    static_dir = _resource("static")
    if slack_signing_secret is None:
        slack_signing_secret = os.environ.get("SLACK_SIGNING_SECRET") or None
    slack_app = (
        slack.SlackApp(
            slack_signing_secret,
            team_id=slack_team_id or os.environ.get("SLACK_TEAM_ID") or None,
            app_id=slack_app_id or os.environ.get("SLACK_APP_ID") or None,
            client=engine.slack,
        )
        if slack_signing_secret
        else None
    )
    board = Dashboard(
        engine=engine,
        templates=Jinja2Templates(env=_environment(_resource("templates"))),
        users=dict(users or {}),
        api_tokens=dict(api_tokens or {}),
        open_access=open_access,
        slack_signing_secret=slack_signing_secret,
        static_dir=static_dir,
        counts=Cached(engine.counts, COUNTS_TTL),
        gauges=Cached(engine.gauges, GAUGES_TTL),
        placement=Cached(engine.statement_counts, PLACEMENT_TTL),
        # (the viewer, "" when they see all; workflow; search; "waits for" whom; overdue;
        # started from, before; how far a search is counted)
        filtered_counts=KeyedCache(
            lambda key: engine.counts(
                workflow=key[1] or None,
                search=key[2] or None,
                actor=key[0] or None,
                decider=key[3] or None,
                overdue=bool(key[4]),
                started_from=datetime.fromisoformat(key[5]) if key[5] else None,
                started_before=datetime.fromisoformat(key[6]) if key[6] else None,
                at_most=int(key[7]),
            ),
            COUNTS_TTL,
        ),
        inbox_counts=KeyedCache(
            lambda key: engine.inbox_count(key[0], workflow=key[1] or None, search=key[2] or None),
            COUNTS_TTL,
        ),
        limits=limits or Limits(),
        dummy_hash=auth.dummy_hash(users or {}),
        secret_key=secret_key,
        slack=slack_app,
        oidc=OIDCClient(oidc, engine.clock) if oidc is not None else None,
        proxy=(
            TrustedProxy.of(trusted_user_header, trusted_groups_header, trusted_proxies)
            if trusted_user_header
            else None
        ),
    )
    if engine.base_url:  # emails carry links this app checks, signed with its key
        engine.set_link_maker(signed_link_maker(secret_key, engine.base_url))
    board.live = Changes(engine.change_mark, board.forget)
    if allowed_hosts is None and open_access:
        allowed_hosts = LOOPBACK_HOSTS
    routes = [
        Route("/", instances.page, methods=["GET"]),
        Route("/instances/{instance_id}", instance.page, methods=["GET"]),
        Route("/instances/{instance_id}/send", instance.send, methods=["POST"]),
        Route("/instances/{instance_id}/retry", instance.retry, methods=["POST"]),
        Route("/instances/{instance_id}/cancel", instance.cancel, methods=["POST"]),
        Route("/instances/{instance_id}/goto", instance.goto, methods=["POST"]),
        Route("/instances/{instance_id}/link", instance.make_link, methods=["POST"]),
        Route("/instances/{instance_id}/reassign", reassign.on_instance, methods=["POST"]),
        Route("/approvals/reassign", reassign.in_inbox, methods=["POST"]),
        Route("/away", reassign.away, methods=["GET"]),
        Route("/away", reassign.set_away, methods=["POST"]),
        Route("/link/{token}", links.page, methods=["GET"]),
        Route("/link/{token}", links.decide, methods=["POST"]),
        Route("/approvals", approvals.page, methods=["GET"]),
        Route("/approvals/decide", approvals.decide, methods=["POST"]),
        Route("/approvals/bulk", approvals.bulk, methods=["POST"]),
        Route("/live", live.stream, methods=["GET"]),
        Route("/live/count", live.count, methods=["GET"]),
        Route("/instances-bulk", instances.bulk, methods=["POST"]),
        Route("/workflows", workflows.page, methods=["GET"]),
        Route("/workflows/{workflow}/start", workflows.start, methods=["POST"]),
        Route("/login", auth.login_page, methods=["GET"]),
        Route("/login", auth.login_submit, methods=["POST"]),
        Route("/login/oidc", oidc_routes.start, methods=["GET"]),
        Route("/login/oidc/callback", oidc_routes.callback, methods=["GET"]),
        Route("/logout", auth.logout, methods=["POST"]),
        Route("/logout/everywhere", auth.logout_everywhere, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/docs", apidocs.page, methods=["GET"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        Route("/slack/interactions", slack.interactions, methods=["POST"]),
        Mount("/api", routes=api.routes),
        Mount("/static", StaticFiles(directory=static_dir), name="static"),
    ]
    served = engine

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        served.use_loop(asyncio.get_running_loop())  # async steps run on the server's loop
        try:
            yield
        finally:
            if slack_app is not None:  # decisions already acknowledged to Slack are applied
                await asyncio.get_running_loop().run_in_executor(None, slack_app.close)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            *(
                [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))]
                if allowed_hosts is not None
                else []
            ),
            Middleware(SecurityMiddleware, max_body=board.max_body),
            Middleware(
                RequestLimits,
                max_body=board.max_body,
                timeout=board.limits.request_timeout,
                max_header_bytes=board.limits.max_header_bytes,
            ),
            Middleware(
                SessionMiddleware,
                secret_key=secret_key,
                session_cookie="signoff_session",
                max_age=SESSION_MAX_AGE,
                same_site="lax",
            ),
            Middleware(auth.SessionGate),
            *([Middleware(EveryoneOperates)] if open_access else []),
        ],
        exception_handlers={
            auth.NotSignedInError: _sign_in,
            auth.CsrfError: _csrf_refused,
            auth.UnstorableText: _unstorable,
            BodyTooLargeError: _too_large,
            SignoffError: _signoff_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.signoff = board
    return app


def settle_heap() -> None:
    """Call once the app is built, before serving: what startup made (modules, workflow classes,
    compiled templates, SQLAlchemy's tables) lives as long as the process, so move it out of
    the collector's sight. Otherwise each full collection walks all of it again, a pause of
    tens of milliseconds that lands on whichever request happens to be running."""
    gc.collect()
    gc.freeze()


def _environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates change with a deploy, not while serving: no stat() of every template file
        # on every render (an inbox of a hundred rows would stat its row template a hundred
        # times).
        auto_reload=False,
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["minute"] = _minute
    env.filters["brief"] = _brief
    env.filters["pretty"] = lambda value: json.dumps(
        value, indent=2, ensure_ascii=False, default=str
    )
    env.filters["short"] = _short
    env.filters["duration"] = duration
    return env


def _when(value: datetime | None) -> str:
    """`2026-01-05 09:00:00 UTC`. Through isoformat: strftime costs several times more, and a
    page of instances shows a hundred of these."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "seconds") + " UTC"


def _minute(value: datetime | None) -> str:
    """`2026-01-05 09:00 UTC`: the absolute time shown beside a relative one."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "minutes") + " UTC"


def _ago(value: datetime | None, now: datetime) -> str:
    """`3m ago`, `in 2h`, `in 2d 5h`: short relative times that round to the nearest unit
    below the largest (a 3-day timeout armed a second ago is `in 3d`, not `in 2d`)."""
    if value is None:
        return ""
    seconds = (now - value).total_seconds()
    future = seconds < 0
    text = relative(abs(seconds))
    if text == "0s":
        return "now"
    return f"in {text}" if future else f"{text} ago"


def _brief(value: Any) -> str:
    """A data value for a table cell: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _short(value: Any, limit: int = 120) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def healthz(request: Request) -> Response:
    board = dashboard(request)
    try:  # on threads of its own: busy pages never make the health check wait
        await board.limits.health.run(board.engine.ping)
    except Exception as exc:  # the one thing a health check must not do is crash
        return JSONResponse({"ok": False, "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"ok": True, "workflows": sorted(board.engine.workflows)})


# --- errors: plain words, meant for where they land --------------------------------------------


def _is_api(request: Request) -> bool:
    root = root_of(request)
    return request.url.path.startswith(root + "/api/")


def _error_page(request: Request, status_code: int, message: str) -> Response:
    """A full error page, or for htmx a message in the page's flash area (not the target)."""
    if _is_api(request):
        return JSONResponse({"error": message}, status_code=status_code)
    flash = Flash("error", message)
    if wants_fragment(request):
        return template(
            request,
            "partials/flash.html",
            flash,
            auth.chrome(request, "error", flash),
            status_code=status_code,
            headers={"HX-Retarget": "#flash", "HX-Reswap": "outerHTML"},
        )
    # the page says it once, in its body (the flash area above it stays empty)
    return template(
        request, "pages/error.html", flash, auth.chrome(request, "error"), status_code=status_code
    )


async def _sign_in(request: Request, exc: Exception) -> Response:
    return auth.login_redirect(request)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return _error_page(
        request,
        403,
        "This form has expired or did not come from this site. Reload the page and try again.",
    )


async def _too_large(request: Request, exc: Exception) -> Response:
    return _error_page(request, 413, str(exc).capitalize() + ".")


async def _unstorable(request: Request, exc: Exception) -> Response:
    return _error_page(request, 400, str(exc))


async def _signoff_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignoffError)
    status = status_for(exc)
    response = _error_page(request, status, str(exc))
    if status == 503:
        response.headers["Retry-After"] = retry_after(exc)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_page(request, 404, "There is no such page.")
    if exc.status_code == 405:
        return PlainTextResponse("Method not allowed", status_code=405)
    return _error_page(request, exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "Something went wrong on our side; it has been logged.")
