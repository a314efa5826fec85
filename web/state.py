"""What the app keeps between requests, on `app.state.signoff`: no module-level state."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from engine import Engine

T = TypeVar("T")


class Cached(Generic[T]):
    """A value that is expensive to compute (a GROUP BY over every instance), kept `ttl` seconds.

    When it is stale, one request recomputes it while concurrent ones are served the stale
    value, so no burst of requests ever runs the query more than once.
    """

    def __init__(self, load: Callable[[], T], ttl: float) -> None:
        self.load = load
        self.ttl = ttl
        self._value: T | None = None
        self._at = float("-inf")
        self._busy = False

    async def get(self) -> T:
        if self._value is not None and (monotonic() - self._at <= self.ttl or self._busy):
            return self._value
        self._busy = True
        try:
            value = await run_in_threadpool(self.load)
        finally:
            self._busy = False
        self._value, self._at = value, monotonic()
        return value

    def invalidate(self) -> None:
        self._at = float("-inf")


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
    assets: dict[str, str] = field(default_factory=dict)
    max_body: int = 1024 * 1024

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


ROOT_KEY = "signoff.root"


def root_of(request: Request) -> str:
    """Where the app is mounted ("" at the top): set once, before Mounts extend root_path."""
    root: str = request.scope.get(ROOT_KEY, request.scope.get("root_path", ""))
    return root


def dashboard(request: Request) -> Dashboard:
    state: Any = request.app.state
    board: Dashboard = state.signoff
    return board
