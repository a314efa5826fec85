"""What one client may cost the dashboard: sign-in attempts per address and per user, password
hashing in a small pool of its own, searches in flight, the size and time of a request.

Nothing here is global: each app keeps its own `Limits` on `app.state.signoff`.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from signoff.engine import MAX_JSON_DEPTH, Busy, raw_json_depth
from signoff.web.security import BodyTooLargeError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


class TooManyAttempts(Exception):
    """Sign-in refused before checking the password: 429 with Retry-After."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class Window:
    """How many events each key had in the last `seconds`; at most `keys` keys are kept (the
    oldest are forgotten first), so a flood of made-up names cannot grow it without end."""

    def __init__(self, limit: int, seconds: float, keys: int = 10_000) -> None:
        self.limit, self.seconds, self.keys = limit, seconds, keys
        self.events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self.events.get(key)
        if found is None:
            return deque()
        while found and found[0] <= now - self.seconds:
            found.popleft()
        if not found:
            del self.events[key]
        return found

    def retry_after(self, key: str, now: float | None = None) -> float | None:
        """Seconds until `key` may try again, or None when it may now."""
        now = monotonic() if now is None else now
        recent = self._recent(key, now)
        if len(recent) < self.limit:
            return None
        return recent[-self.limit] + self.seconds - now

    def add(self, key: str, now: float | None = None) -> None:
        now = monotonic() if now is None else now
        recent = self._recent(key, now)
        if not recent:
            if len(self.events) >= self.keys:
                del self.events[next(iter(self.events))]
            self.events[key] = recent
        recent.append(now)

    def clear(self, key: str) -> None:
        self.events.pop(key, None)


@dataclass
class SignInLimits:
    """Two windows of failed sign-ins.

    Per client address: a flood from one address is stopped there, before it costs a hash.
    Per user name, from any address, with a higher bound: a guessing campaign spread over
    many addresses still gets few tries at one account. While a user is over its bound even
    the right password is refused (429), or the campaign could tell the right one by the
    answer. A single address reaches its own bound long before the user's, so one flooding
    client cannot lock the real user out; it takes several addresses to do that, for
    `user_window` seconds at a time.
    """

    per_address: int = 10
    address_window: float = 300.0
    per_user: int = 30
    user_window: float = 900.0
    addresses: Window = field(init=False)
    users: Window = field(init=False)

    def __post_init__(self) -> None:
        self.addresses = Window(self.per_address, self.address_window)
        self.users = Window(self.per_user, self.user_window)

    def check(self, address: str, user: str) -> None:
        wait = self.addresses.retry_after(address)
        if wait is not None:
            raise TooManyAttempts(
                "Too many failed sign-ins from your address; try again later.", wait
            )
        wait = self.users.retry_after(user)
        if wait is not None:
            raise TooManyAttempts("Too many failed sign-ins for this user; try again later.", wait)

    def failed(self, address: str, user: str) -> None:
        self.addresses.add(address)
        self.users.add(user)


class Pool:
    """A bounded pool for one kind of blocking work (password hashing, searches): at most
    `workers` run at once, at most `queue` more wait; past that the caller is told to come
    back later (Busy) instead of queueing without end."""

    def __init__(self, name: str, workers: int, queue: int) -> None:
        self.name = name
        self.limiter = anyio.CapacityLimiter(workers)
        self.queue = queue
        self.waiting = 0

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        if self.waiting >= self.limiter.total_tokens + self.queue:
            raise Busy(f"too many {self.name} at once; try again in a moment")
        self.waiting += 1
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)
        finally:
            self.waiting -= 1


@dataclass
class Limits:
    """Everything one app bounds, with the defaults `signoff serve` uses."""

    sign_in: SignInLimits = field(default_factory=SignInLimits)
    # password hashing (scrypt, tens of milliseconds of CPU each): never on the event loop,
    # and with tokens of its own, so a sign-in flood cannot take the threads pages need
    hasher: Pool = field(default_factory=lambda: Pool("sign-ins", 2, 8))
    searches: Pool = field(default_factory=lambda: Pool("searches", 2, 64))
    health: Pool = field(default_factory=lambda: Pool("health checks", 2, 64))
    max_body: int = 1024 * 1024
    max_header_bytes: int = 32 * 1024
    request_timeout: float = 30.0


def loads(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, but text nested deeper than `max_depth` is refused before it is parsed
    (it would exhaust the parser's recursion, or worse, every later read of it)."""
    if raw_json_depth(text) > max_depth:
        raise json.JSONDecodeError(f"nested deeper than {max_depth} levels", "", 0)
    return json.loads(text)


class RequestLimits:
    """Pure ASGI: a request body larger than `max_body` is refused even when it comes without a
    Content-Length (chunked), and no request may take longer than `timeout` seconds: a client
    that dribbles its body, or a handler stuck on a slow database, gets 503 instead of holding
    a connection and a worker forever."""

    def __init__(
        self, app: ASGIApp, max_body: int, timeout: float, max_header_bytes: int = 32 * 1024
    ) -> None:
        self.app, self.max_body, self.timeout = app, max_body, timeout
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # h11 bounds a head that arrives in pieces; one that arrives whole is measured here
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
        head += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
        if head > self.max_header_bytes:
            await _refuse(send, 431, b"the request's headers are too large")
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLargeError(f"request body larger than {self.max_body // 1024} KiB")
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        with anyio.move_on_after(self.timeout) as scope_timer:
            await self.app(scope, counted, watched)
        if scope_timer.cancelled_caught and not started:
            await _refuse(send, 503, b"the request took too long and was stopped")


async def _refuse(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
