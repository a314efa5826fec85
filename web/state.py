"""What the app keeps between requests, on `app.state.signoff`: no module-level state."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from signoff.engine import Engine
from signoff.web.limits import Limits
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.templating import Jinja2Templates

if TYPE_CHECKING:
    from signoff.web.oidc import OIDCClient
    from signoff.web.proxy import TrustedProxy
    from signoff.web.slack import SlackApp

T = TypeVar("T")
log = logging.getLogger("signoff.web")


class Cached(Generic[T]):
    """A value that is expensive to compute (a GROUP BY over every instance), kept `ttl` seconds.

    Once it is older than that, the next request starts a recount in the background and is
    served the value it has, as are the requests during the recount: no request ever waits
    for the query, and no burst runs it more than once. After `invalidate()` (an action
    changed instances) the next request waits for a fresh value, so the one who acted sees it;
    so does every request when `ttl` is 0 (no caching at all).
    """

    STUCK = 60.0  # a recount running this long is taken for lost (its event loop has gone)

    def __init__(self, load: Callable[[], T], ttl: float) -> None:
        self.load = load
        self.ttl = ttl
        self._value: T | None = None
        self._at = float("-inf")
        self._busy_since: float | None = None
        self._generation = 0
        self._task: asyncio.Task[None] | None = None

    async def get(self) -> T:
        now = monotonic()
        if self._value is None or self.ttl <= 0:
            return await self._reload()
        busy = self._busy_since is not None and now - self._busy_since < self.STUCK
        if now - self._at > self.ttl and not busy:
            self._busy_since = now
            self._task = asyncio.get_running_loop().create_task(self._refresh())
        return self._value

    async def _reload(self) -> T:
        generation = self._generation
        value = await run_in_threadpool(self.load)
        if generation == self._generation:
            self._value, self._at = value, monotonic()
        return value

    async def _refresh(self) -> None:
        try:
            await self._reload()
        except Exception:  # the next request tries again; it, not a background task, may fail
            log.exception("refreshing a cached value failed")
        finally:
            self._busy_since = None

    def invalidate(self) -> None:
        self._generation += 1
        self._value, self._at = None, float("-inf")


K = TypeVar("K")


class KeyedCache(Generic[K, T]):
    """A `Cached` value per key (a user's inbox count, the counts of one filter), for at most
    `size` keys: the least recently used goes first."""

    def __init__(self, load: Callable[[K], T], ttl: float, size: int = 256) -> None:
        self.load = load
        self.ttl = ttl
        self.size = size
        self._kept: dict[K, Cached[T]] = {}

    async def get(self, key: K) -> T:
        found = self._kept.pop(key, None)
        if found is None:
            found = Cached(lambda: self.load(key), self.ttl)
        self._kept[key] = found  # now the most recently used
        while len(self._kept) > self.size:
            del self._kept[next(iter(self._kept))]
        return await found.get()

    def invalidate(self) -> None:
        for cached in self._kept.values():
            cached.invalidate()


@dataclass
class Dashboard:
    engine: Engine
    templates: Jinja2Templates
    users: Mapping[str, str]
    api_tokens: Mapping[str, str]
    open_access: bool
    slack_signing_secret: str | None
    static_dir: Path
    counts: Cached[dict[str, int]]
    placement: Cached[dict[str, dict[str, int]]]
    filtered_counts: KeyedCache[tuple[str, str, str], dict[str, int]]
    inbox_counts: KeyedCache[tuple[str, str, str], int]
    gauges: Cached[dict[str, Any]]
    limits: Limits = field(default_factory=Limits)
    dummy_hash: str = ""
    secret_key: str = ""  # signs the session cookie and approval links
    assets: dict[str, str] = field(default_factory=dict)
    slack: SlackApp | None = None  # the Slack endpoint's secret, workers and client
    oidc: OIDCClient | None = None  # sign-in with the organisation's identity provider
    proxy: TrustedProxy | None = None  # an authenticating proxy's user header

    @property
    def no_way_in(self) -> bool:
        """Neither passwords, nor an identity provider, nor a proxy: nobody can sign in."""
        return not (self.open_access or self.users or self.oidc or self.proxy)

    @property
    def max_body(self) -> int:
        return self.limits.max_body

    def asset(self, name: str) -> str:
        """`/static/<name>?v=<content hash>` so a deploy never serves stale CSS from a cache."""
        if name not in self.assets:
            digest = hashlib.sha256((self.static_dir / name).read_bytes()).hexdigest()[:10]
            self.assets[name] = f"/static/{name}?v={digest}"
        return self.assets[name]

    def changed(self) -> None:
        """An action changed instances: recount at the next read."""
        self.counts.invalidate()
        self.placement.invalidate()
        self.filtered_counts.invalidate()
        self.inbox_counts.invalidate()


ROOT_KEY = "signoff.root"


def root_of(request: Request) -> str:
    """Where the app is mounted ("" at the top): set once, before Mounts extend root_path."""
    root: str = request.scope.get(ROOT_KEY, request.scope.get("root_path", ""))
    return root


def dashboard(request: Request) -> Dashboard:
    state: Any = request.app.state
    board: Dashboard = state.signoff
    return board
