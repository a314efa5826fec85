"""The instances page: filters, search, keyset pages, counts, live refresh (web/instances.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from signoff.engine import Engine
from signoff.web.instances import DASH, InstancesPage, make_cursor, parse_cursor
from web_support import (
    HX,
    TestClient,
    parse,
    sign_in,
)

pytest_plugins = ["web_fixtures"]


def _fill(engine: Engine, clock: Any, n: int) -> list[str]:
    ids = []
    for i in range(n):
        clock.advance(seconds=1)
        ids.append(engine.start("Trip", {"who": f"person{i:03d}"}, id=f"trip-{i:03d}"))
    return ids


def test_full_page_and_fragment(alice: TestClient, engine: Engine) -> None:
    engine.start("Trip", {}, id="t1")
    full = alice.get("/")
    assert full.template.name == "pages/instances.html"
    assert "HX-Request" in full.headers["vary"]
    page: InstancesPage = full.context["page"]
    assert [r.id for r in page.rows] == ["t1"]
    assert sorted(page.rows[0].waiting_for) == ["decision", "note", "timeout"]
    doc = parse(full.text)
    assert doc.find_all("form", **{"class": "filters"})
    part = alice.get("/", headers=HX)
    assert part.template.name == "partials/instances.html"
    roots = [n for n in parse(part.text).children if not isinstance(n, str)]
    assert [r.attrs["id"] for r in roots] == ["instances"]
    assert roots[0].attrs["hx-trigger"] == "signoff:changed from:body"  # pushed, not polled


def test_boosted_or_history_restore_requests_get_the_full_page(alice: TestClient) -> None:
    for headers in (
        {"HX-Request": "true", "HX-Boosted": "true"},
        {"HX-Request": "true", "HX-History-Restore-Request": "true"},
        {"HX-Request": "true", "HX-Request-Type": "full"},
    ):
        assert alice.get("/", headers=headers).template.name == "pages/instances.html"


def test_keyset_pages_cover_everything_once(alice: TestClient, engine: Engine, clock: Any) -> None:
    ids = _fill(engine, clock, 120)
    seen: list[str] = []
    url = "/"
    pages = 0
    while url:
        page: InstancesPage = alice.get(url, headers=HX).context["page"]
        seen.extend(r.id for r in page.rows)
        url = ("/" + page.next_query) if page.next_query else ""
        pages += 1
    assert pages == 3
    assert seen == list(reversed(ids))


def test_filters_and_counts(alice: TestClient, engine: Engine, clock: Any) -> None:
    ids = _fill(engine, clock, 5)
    engine.cancel(ids[0])
    engine.start("Form", {}, id="form-1")
    page = alice.get("/?status=cancelled").context["page"]
    assert [r.id for r in page.rows] == [ids[0]]
    assert page.counts == {"waiting": 5, "cancelled": 1} and page.total == 6
    form_only = alice.get("/?workflow=Form").context["page"]
    assert [r.id for r in form_only.rows] == ["form-1"]
    both = alice.get("/?workflow=Trip&status=waiting").context["page"]
    assert len(both.rows) == 4
    doc = parse(alice.get("/?workflow=Trip&status=waiting").text)
    live = doc.by_id("instances")
    assert live is not None
    assert parse_qs(urlsplit(live.attrs["hx-get"] or "").query) == {
        "status": ["waiting"],
        "workflow": ["Trip"],
    }


def test_search_by_id_and_by_data(alice: TestClient, engine: Engine, clock: Any) -> None:
    _fill(engine, clock, 5)
    assert [r.id for r in alice.get("/?q=trip-003").context["page"].rows] == ["trip-003"]
    assert [r.id for r in alice.get("/?q=person004").context["page"].rows] == ["trip-004"]
    assert alice.get("/?q=%25").context["page"].rows == []  # LIKE wildcards are literal
    assert alice.get("/?q=nobody").context["page"].rows == []


def test_a_search_that_matches_more_than_it_counts_says_so(
    alice: TestClient, app: Any, engine: Engine, clock: Any
) -> None:
    """A search's matches are counted up to the app's `count_at_most` (1000): past it the
    chips say "3+" and "?", and the pager "more than 3", never a number that looks exact."""
    app.state.signoff.count_at_most = 3
    _fill(engine, clock, 6)
    page: InstancesPage = alice.get("/?q=person").context["page"]
    assert (len(page.rows), page.more_than, page.shown) == (6, 3, f"1{DASH}6 of more than 3")
    doc = parse(alice.get("/?q=person", headers=HX).text)
    [nav] = doc.find_all("nav", aria_label="Counts per status")
    chips = [a.text.split() for a in nav.find_all("a")]
    assert chips[0] == ["all", "3+"]
    assert {chip[1] for chip in chips[1:]} == {"?"}
    waiting: InstancesPage = alice.get("/?q=person&status=waiting").context["page"]
    assert waiting.shown == f"1{DASH}6 of many"  # how many of them wait is not known
    rare: InstancesPage = alice.get("/?q=person004").context["page"]
    assert (rare.more_than, rare.counts, rare.shown) == (0, {"waiting": 1}, f"1{DASH}1 of 1")


def test_bad_filters_are_ignored_not_errors(alice: TestClient, engine: Engine) -> None:
    engine.start("Trip", {}, id="t1")
    for query in (
        "?status=bogus",
        "?before=garbage",
        "?before=2026-01-01T00:00:00~",
        "?before=notadate~x",
        "?before=2026-01-01T00:00:00~x",
        "?q=" + "x" * 5000,
    ):
        response = alice.get("/" + query)
        assert response.status_code == 200, query


def test_cursor_round_trip(engine: Engine) -> None:
    engine.start("Trip", {}, id="a:b.c-d")
    row = engine.list()[0]
    assert parse_cursor(make_cursor(row)) == (row.updated_at, row.id)


def test_counts_are_cached_briefly(alice: TestClient, engine: Engine, app: Any) -> None:
    app.state.signoff.counts.ttl = 60
    app.state.signoff.changed()
    engine.start("Trip", {})
    assert alice.get("/").context["page"].total == 1
    engine.start("Trip", {})  # behind the dashboard's back: the cached count stays a moment
    assert alice.get("/").context["page"].total == 1
    app.state.signoff.changed()
    assert alice.get("/").context["page"].total == 2


def test_empty_states(alice: TestClient) -> None:
    assert "No instances." in alice.get("/").text
    assert "No instances match these filters." in alice.get("/?status=failed").text


def test_when_it_started_in_the_url(alice: TestClient, engine: Engine, clock: Any) -> None:
    """The date filter: the last 24 h / 7 / 30 days at the engine's time, or between two UTC
    days (both included); it is part of the URL, composes with a `started<` search, and a day
    that cannot be read is said, with how to write it, and searches nothing."""
    old = engine.start("Trip", {"who": "old"}, id="t-old")  # 2026-01-05 09:00
    clock.advance(days=3)
    mid = engine.start("Trip", {"who": "mid"}, id="t-mid")  # 2026-01-08 09:00
    clock.advance(days=5, hours=12)
    new = engine.start("Trip", {"who": "new"}, id="t-new")  # 2026-01-13 21:00
    clock.advance(hours=1)
    alice.headers["X-CSRF-Token"] = sign_in(alice, "alice")  # the first session has lapsed

    def shown(query: str) -> tuple[list[str], int, str]:
        response = alice.get("/" + query, headers=HX)
        assert response.status_code == 200, response.text
        page: InstancesPage = response.context["page"]
        return sorted(r.id for r in page.rows), page.total, page.problem

    assert shown("?started=24h") == ([new], 1, "")
    assert shown("?started=7d") == ([mid, new], 2, "")
    assert shown("?started=30d") == ([mid, new, old], 3, "")
    days = "?started=dates&started_from=2026-01-05&started_to=2026-01-08"
    assert shown(days) == ([mid, old], 2, "")
    assert shown("?started_from=2026-01-06") == ([mid, new], 2, "")  # days alone: a saved view
    assert shown("?started_to=2026-01-07") == ([old], 1, "")
    # with a search term on the start, both hold
    assert shown("?started=7d&q=started%3C2026-01-10") == ([mid], 1, "")
    # the days are kept in the links the page makes (saved views, the next page, the refresh)
    page: InstancesPage = alice.get("/" + days, headers=HX).context["page"]
    assert parse_qs(page.self_query[1:]) == {
        "started": ["dates"], "started_from": ["2026-01-05"], "started_to": ["2026-01-08"],
    }  # fmt: skip
    # a period chosen drops days that came with it; an unknown period is no filter
    assert shown("?started=24h&started_from=2026-01-05") == ([new], 1, "")
    assert shown("?started=1y") == ([mid, new, old], 3, "")
    # days that cannot be read, or the wrong way round: said, and nothing searched
    rows, _, problem = shown("?started_from=2026-13-45")
    assert rows == [] and "'2026-13-45' is not a day" in problem and "2026-12-01" in problem
    rows, _, problem = shown("?started_from=2026-01-09&started_to=2026-01-08")
    assert rows == [] and "wrong way round" in problem
    html = alice.get("/?started_from=yesterday").text
    hint = parse(html).find_all("p", **{"data-testid": "search-hint"})
    assert hint and "'yesterday' is not a day" in hint[0].text
    assert 'value="yesterday"' in html  # kept as written, to be corrected
