"""Behind an authenticating proxy (oauth2-proxy, a cloud load balancer's sign-in): the proxy
signs people in and names them in a header (`X-Forwarded-Email`), and their groups in another.

The header is believed only when the request comes straight from one of the trusted proxies
(`request.client`, or under `signoff serve` the address the connection really came from, which
`KeepPeer` records before uvicorn replaces it with X-Forwarded-For's). From anyone else it is
ignored, and logged (once a minute per address). A header sent twice is refused: a proxy that
adds its header beside the client's, rather than replacing it, would let the client's count.

Forms still need the session's CSRF token: a believed user gets the session cookie every
visitor gets (bound to their name, so it starts afresh when the name changes), and the forms
carry its token as they do for everyone.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import monotonic

from signoff.engine import name_problem
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("signoff.web")

PEER_KEY = "signoff.peer"
DEFAULT_PROXIES = ("127.0.0.1", "::1")
WARN_EVERY = 60.0  # seconds between two warnings about the same address
WARNED_ADDRESSES = 1024  # addresses remembered for that; the oldest is forgotten first
MAX_GROUPS = 200

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class KeepPeer:
    """Pure ASGI, outermost: records the address of the direct peer in the scope, before
    uvicorn's proxy-header handling replaces `client` with the one X-Forwarded-For names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            scope[PEER_KEY] = client[0] if client else None
        await self.app(scope, receive, send)


class ProxyHeaderRefused(Exception):
    """A trusted proxy sent a user or groups header that cannot be used: 400."""


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """IP addresses and CIDR ranges; ValueError naming an entry that is neither."""
    if isinstance(entries, str):
        entries = entries.split(",")
    found = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"trusted proxies: {entry!r} is not an IP address or a CIDR range "
                "(e.g. 10.0.0.5 or 10.0.0.0/24)"
            ) from None
    return tuple(found)


@dataclass
class TrustedProxy:
    """Which header names the user (and their groups), and which peers may set it."""

    user_header: str
    groups_header: str | None = None
    networks: tuple[Network, ...] = ()
    _warned: dict[str, float] = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls, user_header: str, groups_header: str | None, proxies: Sequence[str] | None
    ) -> TrustedProxy:
        if not user_header.strip():
            raise ValueError("the trusted user header is empty")
        networks = parse_networks(DEFAULT_PROXIES if proxies is None else proxies)
        if not networks:
            raise ValueError(
                "a trusted user header needs trusted proxies (SIGNOFF_TRUSTED_PROXIES): the "
                "addresses whose header is believed"
            )
        return cls(user_header.strip(), (groups_header or "").strip() or None, networks)

    def trusts(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def vouched(self, scope: Scope) -> tuple[str, list[str] | None] | None:
        """The user (and groups, None without a groups header) a trusted proxy names in this
        request; None when the request does not come from one, or names nobody."""
        if not _raw_values(scope, self.user_header):
            return None
        peer = scope.get(PEER_KEY) if PEER_KEY in scope else _client_host(scope)
        if not self.trusts(peer):
            self._warn(peer or "unknown")
            return None
        values = _header_values(scope, self.user_header)
        if len(values) > 1:
            raise ProxyHeaderRefused(
                f"The sign-in proxy sent {self.user_header} more than once; signoff believes "
                "one value only."
            )
        name = values[0].strip()
        problem = name_problem(name, f"The user name in {self.user_header}")
        if problem:
            raise ProxyHeaderRefused(problem + ".")
        if self.groups_header is None:
            return name, None
        sent = _header_values(scope, self.groups_header)
        if len(sent) > 1:
            raise ProxyHeaderRefused(
                f"The sign-in proxy sent {self.groups_header} more than once; signoff believes "
                "one value only."
            )
        groups = sorted({g.strip() for g in (sent[0] if sent else "").split(",") if g.strip()})
        if len(groups) > MAX_GROUPS:
            raise ProxyHeaderRefused(f"The sign-in proxy sent more than {MAX_GROUPS} groups.")
        for group in groups:
            problem = name_problem(group, f"The group {group[:60]!r} in {self.groups_header}")
            if problem:
                raise ProxyHeaderRefused(problem + ".")
        return name, groups

    def _warn(self, address: str) -> None:
        now = monotonic()
        last = self._warned.pop(address, None)
        if last is not None and now - last < WARN_EVERY:
            self._warned[address] = last  # keep the time it was said, now the newest entry
            return
        self._warned[address] = now
        while len(self._warned) > WARNED_ADDRESSES:
            del self._warned[next(iter(self._warned))]
        log.warning(
            "ignored %s from %s: only trusted proxies (SIGNOFF_TRUSTED_PROXIES) may name the "
            "user; is something reaching signoff around the proxy?",
            self.user_header,
            address[:64],
        )


def _raw_values(scope: Scope, name: str) -> list[bytes]:
    wanted = name.lower().encode("latin-1")
    return [value for key, value in scope.get("headers", []) if key.lower() == wanted]


def _header_values(scope: Scope, name: str) -> list[str]:
    try:
        return [value.decode() for value in _raw_values(scope, name)]
    except UnicodeDecodeError:
        raise ProxyHeaderRefused(
            f"The sign-in proxy sent {name} in another encoding than UTF-8."
        ) from None


def _client_host(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
