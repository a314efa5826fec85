"""The instances page: every instance, filtered by status, workflow and when it started (the
last 24 h, 7 or 30 days, or between two days), searched by id prefix, `field:value` or text in
the data, sorted, in keyset pages ("1-50 of N"); counts per status under the same filters; the
workflow's summary fields as columns and each instance's outcome; refreshed when the server
says something changed. Operators select rows to retry or cancel them together."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from urllib.parse import quote, urlencode

from signoff.engine import Counts, InstanceSummary, InvalidData, SignoffError
from signoff.web.auth import checked_form, chrome, require_user
from signoff.web.bulk import BulkResult, summary, try_row
from signoff.web.render import STATUSES, render, template, wants_fragment
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

PAGE_SIZE = 50
DASH = "\u2013"  # 1\u201350 of N
MAX_SEARCH = 200


SORTS = {"recent": "Recently changed", "oldest": "Least recently changed", "id": "Id"}
# started in the last ...: the choices of the list's date filter, besides "between dates"
PERIODS = {
    "24h": ("Started in the last 24 h", timedelta(hours=24)),
    "7d": ("Started in the last 7 days", timedelta(days=7)),
    "30d": ("Started in the last 30 days", timedelta(days=30)),
}
DATES = "dates"  # started between two days (`started_from`, `started_to`, both included)
DAY_HINT = "write a day as 2026-12-01 (days are UTC days)"
MAX_BULK = 250


@dataclass(frozen=True)
class Filters:
    status: str = ""
    workflow: str = ""
    q: str = ""
    sort: str = ""  # "" is "recent"
    before: str = ""  # keyset cursor: "<updated_at ISO>~<id>"
    start: str = ""  # how many rows come before this page (for "51-100 of N")
    mine: str = ""  # "1": only instances with an approval the signed-in person may decide
    overdue: str = ""  # "1": only instances with a wait past its deadline
    started: str = ""  # a key of PERIODS, or DATES
    started_from: str = ""  # with DATES: the first day (YYYY-MM-DD, UTC), as written
    started_to: str = ""  # with DATES: the last day, included

    @classmethod
    def of(cls, request: Request) -> Filters:
        params = request.query_params
        status = params.get("status", "")
        sort = params.get("sort", "")
        start = params.get("start", "")
        started = params.get("started", "")
        first, last = params.get("started_from", "").strip(), params.get("started_to", "").strip()
        if not started and (first or last):  # a saved view of days alone
            started = DATES
        if started not in PERIODS and started != DATES:
            started = ""
        if started != DATES:
            first = last = ""
        return cls(
            status=status if status in STATUSES else "",
            workflow=params.get("workflow", "")[:200],
            q=params.get("q", "").strip()[:MAX_SEARCH],
            sort=sort if sort in SORTS and sort != "recent" else "",
            before=params.get("before", "")[:200],
            start=start if start.isascii() and start.isdigit() and len(start) < 9 else "",
            mine="1" if params.get("mine") == "1" else "",
            overdue="1" if params.get("overdue") == "1" else "",
            started=started,
            started_from=first[:40],
            started_to=last[:40],
        )

    @property
    def order(self) -> str:
        return self.sort or "recent"

    @property
    def offset(self) -> int:
        return int(self.start) if self.start and self.before else 0

    def query(self, **changes: str) -> str:
        """The query string of these filters, with `changes` applied; empty values dropped."""
        values = {k: v for k, v in vars(replace(self, **changes)).items() if v}
        return ("?" + urlencode(values)) if values else ""

    @property
    def cursor(self) -> tuple[datetime, str] | None:
        return parse_cursor(self.before)

    def started_between(self, now: datetime) -> tuple[datetime | None, datetime | None, str]:
        """(from, before, problem): the start times the date filter keeps, at `now`; a problem
        (in words, with how to write it) when a day cannot be read or the days are reversed."""
        if self.started in PERIODS:  # to the minute: a minute's refreshes share their counts
            since = now - PERIODS[self.started][1]
            return since.replace(second=0, microsecond=0), None, ""
        if self.started != DATES:
            return None, None, ""
        first, last = _day(self.started_from), _day(self.started_to)
        for text, day in ((self.started_from, first), (self.started_to, last)):
            if text and day is None:
                return None, None, f"'{text}' is not a day: {DAY_HINT}."
        before = last + timedelta(days=1) if last is not None else None
        if first is not None and before is not None and before <= first:
            return (
                None,
                None,
                (
                    f"The days are the wrong way round: {self.started_to} comes before "
                    f"{self.started_from}."
                ),
            )
        return first, before, ""


def _day(text: str) -> datetime | None:
    """`2026-12-01` as the start of that day in UTC; None for anything else."""
    if len(text) != 10:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


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
    counts: dict[str, int]  # per status, under the workflow and search filters
    total: int  # of every status, under the same filters
    workflows: list[str]
    statuses: tuple[str, ...]
    next_query: str | None  # query string of the next page
    self_query: str  # what the live refresh asks for
    deep: bool  # not on the first page
    summary_fields: list[str]  # the filtered workflow's (columns), else none
    sorts: dict[str, str]
    operator: bool
    periods: dict[str, str]  # the date filter's choices: key -> words
    report: list[BulkResult] = field(default_factory=list)
    report_title: str = ""
    counts_known: bool = True  # False: the search was too slow to count
    problem: str = ""  # a search that cannot be read, and how to write it
    more_than: int = 0  # the search matches more than this many: the counts stopped there

    @property
    def matching(self) -> int:
        """How many instances the filters match, over all pages."""
        return self.counts.get(self.filters.status, 0) if self.filters.status else self.total

    @property
    def shown(self) -> str:
        """`1-50 of 170`; `1-50 of more than 1000` when the search matched more than it counts."""
        first = self.filters.offset
        matching = max(self.matching, first + len(self.rows))
        if self.more_than and self.rows:
            of = "many" if self.filters.status else f"more than {self.more_than}"
            return f"{first + 1}{DASH}{first + len(self.rows)} of {of}"
        if not self.counts_known:
            return f"{first + 1}{DASH}{first + len(self.rows)} of many" if self.rows else "none"
        if not self.rows:
            return f"0 of {matching}"
        return f"{first + 1}{DASH}{first + len(self.rows)} of {matching}"


async def build(
    request: Request, report: list[BulkResult] | None = None, report_title: str = ""
) -> InstancesPage:
    user = require_user(request)
    board = dashboard(request)
    filters = Filters.of(request)
    started_from, started_before, problem = filters.started_between(board.engine.clock())
    call = partial(
        board.engine.list,
        status=filters.status or None,
        workflow=filters.workflow or None,
        limit=PAGE_SIZE + 1,
        search=filters.q or None,
        before=filters.cursor,
        order=filters.order,
        actor=user,
        decider=user if filters.mine else None,
        overdue=bool(filters.overdue),
        started_from=started_from,
        started_before=started_before,
    )
    rows: list[InstanceSummary] = []
    try:  # a search reads the data of every instance: a few at a time, on a pool of their own
        if not problem:
            runs = board.limits.searches.run(call) if filters.q else run_in_threadpool(call)
            rows = await runs
    except InvalidData as exc:  # `amount>lots`: say how to write it, not "nothing found"
        rows, problem = [], str(exc)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    counts_known = True
    counts: dict[str, int]
    everything = board.engine.sees_all(user)
    narrowed = filters.mine or filters.overdue or filters.started
    if problem:
        counts, counts_known = {}, False
    elif filters.workflow or filters.q or narrowed or not everything:
        viewer = "" if everything else user
        key = (
            viewer,
            filters.workflow,
            filters.q,
            user if filters.mine else "",
            filters.overdue,
            started_from.isoformat() if started_from else "",
            started_before.isoformat() if started_before else "",
            str(board.count_at_most),
        )
        try:  # a search's counts read instances' data, under the search time limit
            counts = await board.filtered_counts.get(key)
        except SignoffError:
            counts, counts_known = {}, False
    else:
        counts = await board.counts.get()
    cls = board.engine.workflows.get(filters.workflow)
    next_start = str(filters.offset + len(rows))
    return InstancesPage(
        filters=filters,
        rows=rows,
        counts=counts,
        total=sum(counts.values()),
        workflows=sorted(board.engine.workflows),
        statuses=STATUSES,
        next_query=filters.query(before=make_cursor(rows[-1]), start=next_start)
        if more and rows
        else None,
        self_query=filters.query(),
        deep=bool(filters.before),
        summary_fields=list(cls.summary_fields) if cls is not None else [],
        sorts=SORTS,
        operator=board.engine.is_operator(user),
        periods={k: label for k, (label, _) in PERIODS.items()},
        report=report or [],
        report_title=report_title,
        counts_known=counts_known,
        problem=problem,
        more_than=board.count_at_most if isinstance(counts, Counts) and not counts.complete else 0,
    )


async def page(request: Request) -> Response:
    context = await build(request)
    return render(
        request,
        "pages/instances.html",
        "partials/instances.html",
        context,
        chrome(request, "instances"),
    )


async def bulk(request: Request) -> Response:
    """Retry or cancel every selected instance, each on its own: one refusal does not stop the
    rest, and the report says what happened to each. Operators only, as the engine decides."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    action = form.get("action")
    raw_reason = form.get("reason")
    reason = raw_reason.strip()[:2000] if isinstance(raw_reason, str) else ""
    ids = [i[:100] for i in form.getlist("pick") if isinstance(i, str) and i]
    root = root_of(request)
    report: list[BulkResult] = []
    status = 200
    if action not in ("retry", "cancel"):
        status, title = 400, "Choose Retry selected or Cancel selected."
    elif not ids:
        status, title = 422, "Select the instances first."
    elif len(ids) > MAX_BULK:
        status, title = 413, f"{len(ids)} instances selected: act on at most {MAX_BULK} at once."
    else:

        def run() -> list[BulkResult]:
            done = []
            for iid in ids:
                link = f"{root}/instances/{quote(iid, safe='')}"
                if action == "retry":
                    act = partial(board.engine.retry, iid, actor=user, via="web")
                else:
                    act = partial(board.engine.cancel, iid, reason or None, actor=user, via="web")
                verb = "retried" if action == "retry" else "cancelled"
                done.append(try_row(iid, link, verb, act, (board.engine, iid, user)))
            return done

        report = await run_in_threadpool(run)
        board.changed()
        title, status = summary("Retried" if action == "retry" else "Cancelled", report)
    context = await build(request, report, title)
    name = "partials/instances.html" if wants_fragment(request) else "pages/instances.html"
    return template(request, name, context, chrome(request, "instances"), status_code=status)
