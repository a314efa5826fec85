"""What the app keeps between requests, on `app.state.signoff`: no module-level state."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from signoff.engine import Counts, Engine
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


EVERY = 1.0  # seconds between two reads of the change mark while pages listen (web/live.py)


class Changes:
    """The database's change mark, watched while anyone listens. `poke()` after an action of
    this app reads it again at once; `wait(seen)` returns the mark once it differs from
    `seen`, or after `timeout` seconds. `forget` runs when another process changed something
    (the app's cached counts are stale then)."""

    def __init__(self, read: Callable[[], str], forget: Callable[[], None], every: float = EVERY):
        self.read, self.forget, self.every = read, forget, every
        self.mark: str | None = None
        self.listeners = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moved = asyncio.Event()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # one app served by another loop (tests): start afresh
            self._loop, self._task = loop, None
            self._moved, self._poke = asyncio.Event(), asyncio.Event()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._watch())

    def poke(self) -> None:
        """Something changed here: read the mark now (call it on the event loop)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._loop:
            self._poke.set()

    async def _watch(self) -> None:
        while self.listeners > 0:
            mark: str | None
            try:
                mark = await run_in_threadpool(self.read)
            except Exception:  # the database is away: keep the pages as they are, try again
                log.warning("reading the change mark failed", exc_info=True)
                mark = self.mark
            if mark != self.mark:
                if self.mark is not None:
                    self.forget()
                self.mark = mark
                moved, self._moved = self._moved, asyncio.Event()
                moved.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.every)
            self._poke.clear()

    async def wait(self, seen: str | None, timeout: float) -> str | None:
        self._start()
        if self.mark is not None and self.mark != seen:
            return self.mark
        moved = self._moved
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(moved.wait(), timeout)
        return self.mark


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
    filtered_counts: KeyedCache[tuple[str, str, str, str, str, str, str, str], Counts]
    inbox_counts: KeyedCache[tuple[str, str, str], int]
    gauges: Cached[dict[str, Any]]
    limits: Limits = field(default_factory=Limits)
    dummy_hash: str = ""
    secret_key: str = ""  # signs the session cookie and approval links
    assets: dict[str, str] = field(default_factory=dict)
    slack: SlackApp | None = None  # the Slack endpoint's secret, workers and client
    oidc: OIDCClient | None = None  # sign-in with the organisation's identity provider
    proxy: TrustedProxy | None = None  # an authenticating proxy's user header
    live: Changes | None = None  # what tells open pages that something changed (web/live.py)
    # a search's matches are counted this far; more, and the instances page says "more than
    # 1000" (a common term among a million instances is counted in milliseconds, not seconds)
    count_at_most: int = 1000

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
        """An action changed instances: recount at the next read, and tell the open pages."""
        self.forget()
        if self.live is not None:
            self.live.poke()

    def forget(self) -> None:
        """Instances changed, maybe in another process: recount at the next read."""
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
