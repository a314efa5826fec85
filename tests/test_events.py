"""An accepted decision is an applied decision. A decision (an approval, a form) sent while its
instance is still running the steps before its wait is refused with `NotWaiting` naming that
wait, on every surface; it is never kept and dropped behind its sender's back. Other events may
be kept for a wait that has not begun: `send` says so, and if the instance ends before that
wait begins, the drop is in the history, on the instance page and in `/metrics`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from signoff.engine import Engine, NotWaiting
from signoff.web.cli import main
from web_support import HX, ORIGIN, TOKENS, TestClient, make_app, sign_in

from tests.early_workflows import STEP_MAY_GO, STEP_RUNNING, Held

ALICE = {"Authorization": f"Bearer {next(t for t, a in TOKENS.items() if a == 'alice')}"}


@contextmanager
def running_first_step(
    driver: Engine, data: dict[str, Any] | None = None, iid: str = "h1"
) -> Iterator[None]:
    """`iid` started by `driver` in another thread, held inside its first step until the block
    ends; then the step returns and the instance goes on."""
    STEP_MAY_GO.clear()
    STEP_RUNNING.clear()
    started = threading.Thread(target=lambda: driver.start(Held, data=data, id=iid))
    started.start()
    try:
        assert STEP_RUNNING.wait(10)
        yield
    finally:
        STEP_MAY_GO.set()
        started.join(10)


def test_a_decision_before_its_wait_began_is_refused_and_leaves_no_trace(any_url: str) -> None:
    driver, other = Engine(any_url, [Held]), Engine(any_url, [Held])
    with running_first_step(driver):
        before = other.history("h1")
        for actor, payload in (
            ("alice", {"approved": True}),
            ("bob", {"approved": False, "reason": "over budget"}),
        ):
            with pytest.raises(NotWaiting, match="'approval' has not begun yet"):
                other.send("h1", "decided", payload, actor=actor)
        assert other.history("h1") == before

    assert driver.get("h1").waits[0].wait == "approval"
    applied = other.send("h1", "decided", {"approved": True}, actor="alice")
    assert not applied.kept and applied.waits[0].wait == "ping"
    decisions = [(h.kind, h.actor) for h in driver.history("h1") if h.kind.startswith("decision")]
    assert decisions == [("decision", "alice")]
    driver.close()
    other.close()


def test_every_surface_refuses_a_decision_before_its_wait_began(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = Engine(sqlite_url, [Held], operators=["bob"])
    with (
        TestClient(make_app(driver), base_url=ORIGIN, follow_redirects=False) as web,
        running_first_step(driver),
    ):
        api = web.post(
            "/api/instances/h1/events/decided", json={"payload": {"approved": True}}, headers=ALICE
        )
        assert api.status_code == 409
        assert "'approval' has not begun yet" in api.json()["error"]

        web.headers["X-CSRF-Token"] = sign_in(web, "alice")
        web.headers["Origin"] = ORIGIN
        form = web.post(
            "/instances/h1/send", data={"event": "decided", "mode": "approve"}, headers=HX
        )
        assert "&#39;approval&#39; has not begun yet" in form.text
        assert form.status_code == 409
        # without htmx, the page the browser is sent back to says it
        plain = web.post("/instances/h1/send", data={"event": "decided", "mode": "approve"})
        assert plain.status_code == 303
        shown = web.get(plain.headers["location"]).text
        assert "&#39;approval&#39; has not begun yet" in shown

        code = main(
            [
                "send",
                "h1",
                "decided",
                "--payload",
                '{"approved": true}',
                "--actor",
                "bob",
                "--db",
                sqlite_url,
                "--workflows",
                "tests.early_workflows",
            ]
        )
        assert code == 1
        assert "'approval' has not begun yet" in capsys.readouterr().err

    kinds = [h.kind for h in driver.history("h1")]
    assert "event kept" not in kinds and "decision" not in kinds
    assert driver.get("h1").status == "waiting"
    driver.close()


def test_a_kept_event_dropped_at_the_end_is_in_the_history_on_the_page_and_counted(
    sqlite_url: str,
) -> None:
    driver = Engine(sqlite_url, [Held], operators=["alice"])
    with running_first_step(driver, data={"skip": True}):
        kept = Engine(sqlite_url, [Held]).send("h1", "pinged", {"note": "hello"})
        assert (kept.status, kept.kept) == ("running", True)

    ended = driver.get("h1")
    assert (ended.status, ended.result) == ("completed", "skipped")
    dropped = [h for h in driver.history("h1") if h.kind == "event dropped"]
    assert [(h.name, h.message) for h in dropped] == [
        ("pinged", "the instance ended before a wait for this event began")
    ]
    counters = driver.metrics.snapshot().counters["signoff_events_dropped"]
    assert counters == {(("workflow", "Held"), ("event", "pinged")): 1.0}

    with TestClient(make_app(driver), base_url=ORIGIN, follow_redirects=False) as web:
        metrics = web.get("/metrics", headers=ALICE).text
        assert 'signoff_events_dropped_total{event="pinged",workflow="Held"} 1.0' in metrics
        sign_in(web, "alice")
        page = web.get("/instances/h1").text
        assert "1 event was dropped" in page and "<code>pinged</code>" in page
    driver.close()
