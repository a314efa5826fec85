"""One helper decides between the full page and the htmx fragment, from `HX-Request`.

A page template includes its partials, so the same markup serves both; the response always
says `Vary: HX-Request` so no cache hands a fragment to a full-page load or the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signoff.web.state import dashboard
from starlette.requests import Request
from starlette.responses import Response

STATUSES = ("running", "waiting", "failed", "completed", "cancelled")


@dataclass(frozen=True)
class Flash:
    """A message shown once, after an action: kind is "ok" or "error"."""

    kind: str
    message: str


@dataclass(frozen=True)
class Chrome:
    """What base.html needs on every page: who is signed in, the CSRF token, where we are."""

    user: str | None
    csrf: str
    root: str
    open_access: bool
    section: str
    now: datetime
    css: str
    js: str
    htmx: str
    flash: Flash | None = None


def wants_fragment(request: Request) -> bool:
    """An htmx request for a part of the page (not a boosted or history-restoring full load)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-request-type", "partial") != "full"
        and "hx-history-restore-request" not in headers
        and "hx-boosted" not in headers
    )


def render(
    request: Request,
    page_template: str,
    fragment_template: str,
    page: Any,
    chrome: Chrome,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    name = fragment_template if wants_fragment(request) else page_template
    return template(request, name, page, chrome, status_code=status_code, headers=headers)


def template(
    request: Request,
    name: str,
    page: Any,
    chrome: Chrome,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Render one template (page or fragment) with the page's context dataclass."""
    response = dashboard(request).templates.TemplateResponse(
        request,
        name,
        {"page": page, "chrome": chrome},
        status_code=status_code,
        headers=dict(headers or {}),
    )
    response.headers.append("Vary", "HX-Request")
    response.headers.setdefault("Cache-Control", "no-store")
    return response
