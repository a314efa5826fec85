"""The instances page: every instance, filtered by status and workflow, searched by id or data,
newest change first, in keyset pages; counts per status; refreshed live by htmx."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlencode

from signoff.engine import InstanceSummary
from signoff.web.auth import chrome, require_user
from signoff.web.render import STATUSES, render
from signoff.web.state import dashboard
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

PAGE_SIZE = 50
MAX_SEARCH = 200


@dataclass(frozen=True)
class Filters:
    status: str = ""
    workflow: str = ""
    q: str = ""
    before: str = ""  # keyset cursor: "<updated_at ISO>~<id>"

    @classmethod
    def of(cls, request: Request) -> Filters:
        params = request.query_params
        status = params.get("status", "")
        return cls(
            status=status if status in STATUSES else "",
            workflow=params.get("workflow", "")[:200],
            q=params.get("q", "").strip()[:MAX_SEARCH],
            before=params.get("before", "")[:200],
        )

    def query(self, **changes: str) -> str:
        """The query string of these filters, with `changes` applied; empty values dropped."""
        values = {k: v for k, v in vars(replace(self, **changes)).items() if v}
        return ("?" + urlencode(values)) if values else ""

    @property
    def cursor(self) -> tuple[datetime, str] | None:
        return parse_cursor(self.before)


def parse_cursor(text: str) -> tuple[datetime, str] | None:
    """`<updated_at ISO>~<id>` as `make_cursor` spells it; None when malformed, including
    times at the ends of the calendar that cannot be turned to UTC."""
    at, sep, last_id = text.partition("~")
    if not sep or not last_id or len(last_id) > 100:
        return None
    try:
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            return None
        when = when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return when, last_id


def make_cursor(row: InstanceSummary) -> str:
    """URL-safe as it is: no "+" (a space in a query string), nothing to escape."""
    return f"{row.updated_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}~{row.id}"


@dataclass(frozen=True)
class InstancesPage:
    filters: Filters
    rows: list[InstanceSummary]
    counts: dict[str, int]
    total: int
    workflows: list[str]
    statuses: tuple[str, ...]
    next_query: str | None  # query string of the next (older) page
    self_query: str  # what the live refresh asks for
    deep: bool  # not on the first page


async def page(request: Request) -> Response:
    require_user(request)
    board = dashboard(request)
    filters = Filters.of(request)
    call = partial(
        board.engine.list,
        status=filters.status or None,
        workflow=filters.workflow or None,
        limit=PAGE_SIZE + 1,
        search=filters.q or None,
        before=filters.cursor,
    )
    # a search reads the data of every instance: a few at a time, on a pool of their own
    rows = await (board.limits.searches.run(call) if filters.q else run_in_threadpool(call))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    counts = await board.counts.get()
    context = InstancesPage(
        filters=filters,
        rows=rows,
        counts=counts,
        total=sum(counts.values()),
        workflows=sorted(board.engine.workflows),
        statuses=STATUSES,
        next_query=filters.query(before=make_cursor(rows[-1])) if more and rows else None,
        self_query=filters.query(),
        deep=bool(filters.before),
    )
    return render(
        request,
        "pages/instances.html",
        "partials/instances.html",
        context,
        chrome(request, "instances"),
    )
