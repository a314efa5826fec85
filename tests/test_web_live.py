"""Live pages (web/live.py): the polling fallback's answer, and who may ask."""

from __future__ import annotations

from signoff.engine import Engine
from web_support import TestClient

pytest_plugins = ["web_fixtures"]


def test_the_count_and_the_change_mark(alice: TestClient, engine: Engine) -> None:
    first = alice.get("/live/count")
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    assert first.json()["count"] == 0
    iid = engine.start("Trip", {})  # alice approves trips
    second = alice.get("/live/count").json()
    assert second["mark"] != first.json()["mark"] and second["count"] == 1
    # a decision made by the program (another process would do the same): the count follows
    engine.send(iid, "decision", {"approved": True})
    third = alice.get("/live/count").json()
    assert third["count"] == 0 and third["mark"] != second["mark"]


def test_only_for_the_signed_in(client: TestClient, engine: Engine) -> None:
    for path in ("/live", "/live/count"):
        response = client.get(path)
        assert response.status_code in (302, 303) and "/login" in response.headers["location"]


def test_a_change_mark_from_another_engine(engine: Engine, tmp_path: object) -> None:
    other = Engine(engine.database_url, workflows=list(engine.workflows.values()))
    try:
        before = engine.change_mark()
        other.start("Trip", {})
        assert engine.change_mark() != before
    finally:
        other.close()
