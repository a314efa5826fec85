"""Who is asking: passwords (scrypt), sign-in sessions, CSRF tokens, API bearer tokens.

Password hashes are self-describing strings, `scrypt$n=32768:r=8:p=1$<salt>$<key>` (salt and
key base64url), so the cost can be raised later without breaking stored hashes. No commas, so
they sit unquoted in SIGNOFF_USERS="alice=<hash>,bob=<hash>"; the older comma form still verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from signoff.engine import text_problem
from signoff.web.limits import TooManyAttempts
from signoff.web.render import Chrome, Flash, template
from signoff.web.security import read_capped
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MAX_SCRYPT_N = 2**20
MAX_PASSWORD = 1024
OPEN_ACCESS_USER = "admin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELDS = 200
SESSION_LIFETIME = timedelta(hours=12)  # from sign-in, however busy the session is


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of `password`, in the self-describing format above."""
    if not isinstance(password, str) or not password:
        raise ValueError("a password must be a non-empty string")
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, n, r, p)
    return f"scrypt$n={n}:r={r}:p={p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`; False (never an exception) for malformed hashes."""
    try:
        scheme, params, salt_text, key_text = stored.split("$")
        if scheme != "scrypt":
            return False
        values = dict(part.split("=", 1) for part in params.replace(",", ":").split(":"))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        if not (1 < n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
            return False
        salt, key = _unb64(salt_text), _unb64(key_text)
        if len(salt) < 8 or not 16 <= len(key) <= 128:
            return False
    except (ValueError, KeyError, AttributeError, TypeError):
        return False
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(key)), key)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=length,
        maxmem=256 * n * r * p + 1024 * 1024,
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


# A hash to verify against when the user name is unknown, so both answers take as long.
_DUMMY = "scrypt$n=32768:r=8:p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


# --- sessions ----------------------------------------------------------------------------------


class NotSignedInError(Exception):
    """A page needs a signed-in user; the app answers with a redirect to /login."""


class CsrfError(Exception):
    """A state-changing request without the session's CSRF token."""


def _fingerprint(stored_hash: str) -> str:
    """Changes when the user's password changes, which ends their existing sessions."""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


USER_KEY = "signoff.user"
# No session lookup for these: they never show who is signed in (the API has bearer tokens).
UNSIGNED_PATHS = ("/static/", "/healthz", "/api/")


class SessionGate:
    """Pure ASGI, inside SessionMiddleware: finds who the request's session belongs to, once
    per request, off the event loop. A signed cookie is not enough: its session must still be
    recorded in the database (`Engine.session_user`), so signing out, or out everywhere, ends
    it in every process, and it ends at its fixed lifetime however often it is used."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root: str = scope.get("signoff.root", "")
            path: str = scope.get("path", "")
            if not path[len(root) :].startswith(UNSIGNED_PATHS):
                scope[USER_KEY] = await _session_user(scope)
        await self.app(scope, receive, send)


async def _session_user(scope: Scope) -> str | None:
    board = scope["app"].state.signoff
    session = scope.get("session") or {}
    name = session.get("user")
    if board.open_access:
        return name if isinstance(name, str) else OPEN_ACCESS_USER
    token, fingerprint = session.get("sid"), session.get("pw")
    stored = board.users.get(name) if isinstance(name, str) else None
    if not (isinstance(token, str) and isinstance(fingerprint, str) and stored is not None):
        return None
    if not hmac.compare_digest(fingerprint, _fingerprint(stored)):
        return None
    owner = await run_in_threadpool(board.engine.session_user, token)
    return name if owner == name else None


def current_user(request: Request) -> str | None:
    user = request.scope.get(USER_KEY)
    if isinstance(user, str):
        return user
    return OPEN_ACCESS_USER if dashboard(request).open_access else None


def require_user(request: Request) -> str:
    user = current_user(request)
    if user is None:
        raise NotSignedInError()
    return user


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token (header or field) matches the session's."""
    await read_capped(request, dashboard(request).max_body)
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    expected = request.session.get("csrf")
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not (
        isinstance(expected, str)
        and isinstance(given, str)
        and hmac.compare_digest(expected.encode(), given.encode())
    ):
        raise CsrfError()
    for key, value in form.multi_items():
        problem = text_problem(value, f"The field {key[:40]!r}") if isinstance(value, str) else None
        if problem:
            raise UnstorableText(problem + ".")
    return form


class UnstorableText(Exception):
    """A form field holds text no database keeps: 400."""


def chrome(request: Request, section: str, flash: Flash | None = None) -> Chrome:
    board = dashboard(request)
    if flash is None and "flash" in request.session:
        saved = request.session.pop("flash")
        if isinstance(saved, dict):
            flash = Flash(str(saved.get("kind", "ok")), str(saved.get("message", "")))
    root = root_of(request)
    return Chrome(
        user=current_user(request),
        csrf=csrf_token(request),
        root=root,
        open_access=board.open_access,
        section=section,
        now=board.engine.clock(),
        css=root + board.asset("app.css"),
        js=root + board.asset("app.js"),
        htmx=root + board.asset("htmx-4.0.1.min.js"),
        flash=flash,
    )


def remember_flash(request: Request, flash: Flash) -> None:
    """For a form posted without htmx: shown by the page the redirect lands on."""
    request.session["flash"] = {"kind": flash.kind, "message": flash.message[:500]}


def local_path(target: Any, root: str = "") -> str:
    """`target` if it is a path on this site, else the instances page (no open redirects)."""
    if (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and len(target) < 2000
    ):
        return target
    return root + "/"


def login_redirect(request: Request) -> Response:
    root = root_of(request)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = f"{root}/login?next={quote(path, safe='')}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


# --- the sign-in page ----------------------------------------------------------------------------


class LoginPage:
    """Template context of the sign-in page."""

    def __init__(
        self, next_path: str, name: str = "", error: str | None = None, open_access: bool = False
    ) -> None:
        self.next_path = next_path
        self.name = name
        self.error = error
        self.open_access = open_access


async def login_page(request: Request) -> Response:
    board = dashboard(request)
    root = root_of(request)
    page = LoginPage(
        local_path(request.query_params.get("next"), root), open_access=board.open_access
    )
    return template(request, "pages/login.html", page, chrome(request, "login"))


async def login_submit(request: Request) -> Response:
    board = dashboard(request)
    root = root_of(request)
    form = await checked_form(request)
    name = str(form.get("username") or "").strip()[:200]
    password = str(form.get("password") or "")
    next_path = local_path(form.get("next"), root)
    if board.open_access and name:
        return _signed_in(request, name, "", "", next_path)
    address = request.client.host if request.client else "unknown"
    limits = board.limits.sign_in
    try:
        limits.check(address, name)
    except TooManyAttempts as exc:
        return _login_refused(request, next_path, name, str(exc), 429, exc.retry_after)
    stored = board.users.get(name)
    # the same work whether or not the user exists, so the answer's timing tells nothing
    ok = await board.limits.hasher.run(verify_password, password, stored or board.dummy_hash)
    if stored is None or not ok:
        limits.failed(address, name)
        return _login_refused(request, next_path, name, "Wrong user name or password.", 401)
    token = await run_in_threadpool(board.engine.open_session, name, SESSION_LIFETIME)
    return _signed_in(request, name, stored, token, next_path)


def _login_refused(
    request: Request,
    next_path: str,
    name: str,
    message: str,
    status: int,
    retry_after: int | None = None,
) -> Response:
    page = LoginPage(next_path, name, message, dashboard(request).open_access)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return template(
        request,
        "pages/login.html",
        page,
        chrome(request, "login"),
        status_code=status,
        headers=headers,
    )


def _signed_in(request: Request, name: str, stored: str, token: str, next_path: str) -> Response:
    request.session.clear()
    request.session.update(
        {
            "user": name,
            "sid": token,
            "pw": _fingerprint(stored) if stored else "",
            "csrf": secrets.token_urlsafe(32),
        }
    )
    return RedirectResponse(next_path, status_code=303)


async def logout(request: Request) -> Response:
    await checked_form(request)
    token = request.session.get("sid")
    if isinstance(token, str):
        await run_in_threadpool(dashboard(request).engine.end_session, token)
    request.session.clear()
    root = root_of(request)
    return RedirectResponse(f"{root}/login", status_code=303)


async def logout_everywhere(request: Request) -> Response:
    """End every session of the signed-in user, in every browser and process."""
    await checked_form(request)
    user = require_user(request)
    if not dashboard(request).open_access:
        await run_in_threadpool(dashboard(request).engine.end_sessions, user)
    request.session.clear()
    root = root_of(request)
    return RedirectResponse(f"{root}/login", status_code=303)


def dummy_hash(users: Mapping[str, str]) -> str:
    """A hash of a random password with the cost of the users' own, verified when a name is
    unknown so that the answer takes as long as for a known one."""
    for stored in users.values():
        try:
            params = dict(part.split("=", 1) for part in stored.split("$")[1].split(":"))
            return hash_password(
                secrets.token_urlsafe(16),
                n=int(params["n"]),
                r=int(params["r"]),
                p=int(params["p"]),
            )
        except (IndexError, KeyError, ValueError):
            continue
    return _DUMMY


# --- the API's bearer tokens ---------------------------------------------------------------------


class TokenError(Exception):
    """No valid bearer token on an API request: 401."""


def api_actor(request: Request) -> str:
    """The actor an API request acts as, from `Authorization: Bearer <token>`."""
    board = dashboard(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        found = None
        for known, actor in board.api_tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = actor
        if found is not None:
            return found
        raise TokenError("the bearer token is not valid")
    if board.open_access and not header:
        return OPEN_ACCESS_USER
    raise TokenError("an API request needs an 'Authorization: Bearer <token>' header")
