"""The instances page: filters, search, keyset pages, counts, live refresh (web/instances.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from signoff.engine import Engine
from signoff.web.instances import InstancesPage, make_cursor, parse_cursor
from web_support import (
    HX,
    TestClient,
    parse,
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
