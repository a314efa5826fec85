"""How `signoff serve` runs the app: uvicorn with every limit on.

- h11, not httptools: h11 refuses a request head larger than `max_header_bytes` (431/400), where
  httptools keeps reading an endless header. uvloop may stay: it is only the event loop.
- A request head must arrive whole within `header_timeout` seconds of the connection opening
  (or of the previous response): a client dribbling a header a byte at a time, or holding a
  connection open without a word, is cut off. uvicorn's own keep-alive timer does not do this,
  as any byte received disarms it.
- At most `max_connections` connections at once (uvicorn answers 503 past it), and at most
  `max_connections_per_client` from one address, so one client cannot take them all. Trusted
  proxies are exempt: they carry everybody's requests.
Body size and request time are bounded inside the app (`web.limits.RequestLimits`).

X-Forwarded-For and -Proto from trusted proxies are applied by uvicorn's own middleware, wrapped
here rather than switched on in uvicorn, so that `web.proxy.KeepPeer` can record the address
the connection really came from first: only that address may vouch for a signed-in user.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import h11
from signoff.web.proxy import KeepPeer
from starlette.types import ASGIApp
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    keep_alive: int = 5
    max_connections: int = 1000
    max_connections_per_client: int = 100
    backlog: int = 2048


def _trusts(trusted: Sequence[str], address: str) -> bool:
    if "*" in trusted:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address in trusted
    for entry in trusted:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def guarded_protocol(limits: ServerLimits, trusted: Sequence[str]) -> type[H11Protocol]:
    """An h11 protocol class with a header timeout and a per-address connection bound; each
    server gets its own class, so the count of connections per address is that server's."""
    per_client: Counter[str] = Counter()

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _peer: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peer = self.client[0] if self.client else None
            if peer is not None and not _trusts(trusted, peer):
                if per_client[peer] >= limits.max_connections_per_client:
                    transport.close()  # connection_lost still runs, and counts nothing
                    return
                per_client[peer] += 1
                self._peer = peer
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._peer is not None:
                per_client[self._peer] -= 1
                if per_client[self._peer] <= 0:
                    del per_client[self._peer]
                self._peer = None
            self._disarm_header_timer()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # a whole request head has arrived
                self._disarm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_header_timer()  # the next request's head has the same time

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(limits.header_timeout, self._too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def server_config(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    forwarded_allow_ips: Sequence[str] = ("127.0.0.1",),
    log_level: str = "info",
) -> Config:
    """The uvicorn configuration `signoff serve` runs `app` with."""
    limits = limits or ServerLimits()
    trusted = list(forwarded_allow_ips)
    return Config(
        KeepPeer(cast(ASGIApp, ProxyHeadersMiddleware(app, trusted_hosts=trusted))),
        host=host,
        port=port,
        http=guarded_protocol(limits, trusted),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive,
        backlog=limits.backlog,
        proxy_headers=False,  # applied above, inside KeepPeer
        forwarded_allow_ips=trusted,
        log_level=log_level,
        server_header=False,
    )
