"""Headers every response carries (a strict Content-Security-Policy) and the checks every
state-changing request passes before any handler runs: same Origin, a body of sane size."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No 'unsafe-inline', no 'unsafe-eval': htmx attributes that would need eval (hx-on, js:
# prefixes, event filters) stay inert, and so would any injected inline script or style.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Slack posts from its own servers and is verified by signature in its own route; that one
# exact path, nothing beside or below it, skips the Origin check.
ORIGIN_EXEMPT = frozenset({"/slack/interactions"})


NO_STORE = (b"cache-control", b"no-store")
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
NUL_REFUSED = "the address contains a NUL character (%00), which cannot be stored or searched for"


class BodyTooLargeError(Exception):
    pass


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


def _is_static(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    root: str = scope.get("signoff.root", "")
    return path.startswith(root + "/static/")


def _secure_cookie(header: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    name, value = header
    if name.lower() == b"set-cookie" and b"secure" not in value.lower():
        return name, value + b"; Secure"
    return header


class SecurityMiddleware:
    """Pure ASGI: adds the security headers; refuses cross-origin writes and huge bodies."""

    def __init__(self, app: ASGIApp, max_body: int = 1024 * 1024) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("signoff.root", scope.get("root_path", ""))
        headers = Headers(scope=scope)
        if _has_nul(scope):
            await _plain(send, 400, NUL_REFUSED, api=_is_api(scope))
            return
        if scope["method"] not in SAFE_METHODS:
            problem = self._refusal(scope, headers)
            if problem is not None:
                status, message = problem
                await _plain(send, status, message, api=_is_api(scope))
                return

        # the scheme is https on a TLS connection, or behind a trusted proxy that says so
        # (uvicorn's proxy headers, `--forwarded-allow-ips`): then the cookie is Secure
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                raw.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                if b"cache-control" not in present and not _is_static(scope):
                    raw.append(NO_STORE)  # pages and API answers hold what the user may see
                if https:
                    raw = [_secure_cookie(h) for h in raw]
                    raw.append(HSTS)
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        local = path[len(root) :] if root and path.startswith(root) else path
        if local not in ORIGIN_EXEMPT and not same_origin(scope, headers):
            return 403, "cross-origin request refused"
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                return 400, "bad Content-Length"
            if too_big:
                return 413, f"request body larger than {self.max_body // 1024} KiB"
        return None


def same_origin(scope: Scope, headers: Headers) -> bool:
    """A browser's write must come from a page of this site. Programs send no Origin."""
    if headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        if referer is None:
            return True
        origin = "/".join(referer.split("/", 3)[:3])
    host = headers.get("host")
    if not host:
        return False
    scheme = scope.get("scheme", "http")
    return origin in (f"{scheme}://{host}", f"http://{host}", f"https://{host}")


def _is_api(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return "/api/" in path


async def _plain(send: Send, status: int, message: str, *, api: bool) -> None:
    if api:
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        body, kind = message.encode(), b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes even without a Content-Length."""
    if hasattr(request, "_body"):
        body: bytes = request._body
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body larger than {limit // 1024} KiB")
        chunks.append(chunk)
    request._body = b"".join(chunks)
    return request._body
