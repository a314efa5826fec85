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
from signoff.web.proxy import ProxyHeaderRefused
from signoff.web.render import Chrome, Flash, template
from signoff.web.security import read_capped
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MAX_SCRYPT_N = 2**20
MAX_PASSWORD = 1024
OPEN_ACCESS_USER = "admin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELDS = 300  # a bulk action posts one field per selected row (at most 250)
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


def hash_problem(stored: str) -> str | None:
    """Why `stored` cannot be a hash `hash_password` made (None: it can): what a shell does to
    an unquoted or double-quoted `scrypt$n=...$...$...` (it expands each `$...`)."""
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) != 4 or parts[0] != "scrypt" or not parts[1].startswith("n="):
        return (
            "is not a hash from `signoff hash-password` (expected scrypt$n=...:r=...:p=...$salt$key"
            "; in a shell, quote it with single quotes, or each $ is expanded)"
        )
    return None


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
END_SESSION_KEY = "oidc_end_session"
# No session lookup for these: they never show who is signed in (the API has bearer tokens).
UNSIGNED_PATHS = ("/static/", "/healthz", "/api/")


class SessionGate:
    """Pure ASGI, inside SessionMiddleware: finds who the request's session belongs to, once
    per request, off the event loop. A signed cookie is not enough: its session must still be
    recorded in the database (`Engine.session_user`), so signing out, or out everywhere, ends
    it in every process, and it ends at its fixed lifetime however often it is used.

    Behind an authenticating proxy (`create_app(trusted_user_header=...)`), the user a trusted
    proxy names is signed in for the request instead (see `web.proxy`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root: str = scope.get("signoff.root", "")
            path: str = scope.get("path", "")
            local = path[len(root) :]
            if not local.startswith(UNSIGNED_PATHS) or local == "/api/docs":
                try:
                    scope[USER_KEY] = _proxy_user(scope) or await _session_user(scope)
                except ProxyHeaderRefused as exc:
                    await PlainTextResponse(str(exc), status_code=400)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _proxy_user(scope: Scope) -> str | None:
    """The user a trusted proxy names, with their groups remembered; their session (for the
    CSRF token) starts afresh when the name changes."""
    board = scope["app"].state.signoff
    if board.proxy is None or board.open_access:
        return None
    vouched = board.proxy.vouched(scope)
    if vouched is None:
        return None
    name, groups = vouched
    if groups is not None:
        board.engine.remember_groups(name, groups)
    session = scope.get("session")
    if isinstance(session, dict) and session.get("proxy_user") != name:
        session.clear()
        session.update({"proxy_user": name, "csrf": secrets.token_urlsafe(32)})
    user: str = name
    return user


async def _session_user(scope: Scope) -> str | None:
    board = scope["app"].state.signoff
    session = scope.get("session") or {}
    name = session.get("user")
    if board.open_access:
        return name if isinstance(name, str) else OPEN_ACCESS_USER
    token, fingerprint = session.get("sid"), session.get("pw")
    if session.get("via") == "oidc":
        return await _oidc_user(board, session, name, token)
    stored = board.users.get(name) if isinstance(name, str) else None
    if not (isinstance(token, str) and isinstance(fingerprint, str) and stored is not None):
        return None
    if not hmac.compare_digest(fingerprint, _fingerprint(stored)):
        return None
    owner = await run_in_threadpool(board.engine.session_user, token)
    return name if owner == name else None


async def _oidc_user(board: Any, session: Mapping[str, Any], name: Any, token: Any) -> str | None:
    """The user of a session begun with the identity provider, while OIDC is configured and
    the session is recorded; their groups (signed into the cookie at sign-in) are remembered
    in this process too, so every process serving the dashboard knows them."""
    if board.oidc is None or not isinstance(name, str) or not isinstance(token, str):
        return None
    owner = await run_in_threadpool(board.engine.session_user, token)
    if owner != name:
        return None
    groups = session.get("groups")
    if isinstance(groups, list) and all(isinstance(g, str) for g in groups):
        board.engine.remember_groups(name, groups)
    return name


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
    """Template context of the sign-in page: the provider's button, the password form when
    there are password users, and how to let someone in when there is no way in at all."""

    def __init__(
        self,
        next_path: str,
        name: str = "",
        error: str | None = None,
        open_access: bool = False,
        *,
        provider: str | None = None,
        passwords: bool = True,
        no_way_in: str | None = None,
        end_session: str | None = None,
    ) -> None:
        self.next_path = next_path
        self.name = name
        self.error = error
        self.open_access = open_access
        self.provider = provider  # "Sign in with <provider>"
        self.passwords = passwords or open_access
        self.no_way_in = no_way_in  # how to let someone in, when nobody can sign in
        self.end_session = end_session  # the provider's sign-out, after signing out here


NO_WAY_IN = (
    "Nobody can sign in to this server yet. To let people in, set one of: SIGNOFF_USERS "
    "(password users: `signoff hash-password` makes each hash), SIGNOFF_OIDC_ISSUER with "
    "SIGNOFF_OIDC_CLIENT_ID and SIGNOFF_OIDC_CLIENT_SECRET (your identity provider), or "
    "SIGNOFF_TRUSTED_USER_HEADER with SIGNOFF_TRUSTED_PROXIES (an authenticating proxy in "
    "front). See docs/identity.md."
)


def _login_context(
    request: Request, next_path: str, name: str = "", error: str | None = None
) -> LoginPage:
    board = dashboard(request)
    end_session = request.session.pop(END_SESSION_KEY, None)
    return LoginPage(
        next_path,
        name,
        error,
        board.open_access,
        provider=board.oidc.config.provider_name if board.oidc is not None else None,
        passwords=bool(board.users),
        no_way_in=NO_WAY_IN if board.no_way_in else None,
        end_session=end_session if isinstance(end_session, str) else None,
    )


async def login_page(request: Request) -> Response:
    root = root_of(request)
    page = _login_context(request, local_path(request.query_params.get("next"), root))
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
    page = _login_context(request, next_path, name, message)
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
    """End this session; after an identity provider's sign-in, the sign-in page it lands on
    offers the provider's own sign-out (a form may not lead to another site: the CSP says
    `form-action 'self'`)."""
    await checked_form(request)
    board = dashboard(request)
    token = request.session.get("sid")
    if isinstance(token, str):
        await run_in_threadpool(board.engine.end_session, token)
    root = root_of(request)
    end_session = None
    if request.session.get("via") == "oidc" and board.oidc is not None:
        id_token = request.session.get("idt")
        base = f"{request.url.scheme}://{request.url.netloc}{root}"
        end_session = await board.oidc.end_session_url(
            id_token if isinstance(id_token, str) else None, f"{base}/login"
        )
    request.session.clear()
    if end_session:
        request.session[END_SESSION_KEY] = end_session
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
