"""create_app (web/app.py): assembly, health, mounting, layering; the example workflows."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from signoff.engine import Engine
from signoff.web import create_app
from signoff.web.examples import UPSTREAM, WORKFLOWS
from starlette.applications import Starlette
from starlette.routing import Mount
from web_support import ORIGIN, TestClient, csrf_of, make_app, sign_in

pytest_plugins = ["web_fixtures"]
ROOT = Path(__file__).resolve().parent.parent


def test_engine_never_imports_the_web_layer() -> None:
    for path in (ROOT / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("web", "starlette", "jinja2"), (path, name)


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["ok"] is True


def test_unknown_page(alice: TestClient) -> None:
    response = alice.get("/nope")
    assert response.status_code == 404 and response.template.name == "pages/error.html"


def test_apps_share_nothing(engine: Engine) -> None:
    one, two = make_app(engine), make_app(engine, open_access=True)
    assert one.state.signoff is not two.state.signoff
    with TestClient(two, base_url=ORIGIN) as c:
        assert c.get("/").status_code == 200
    with TestClient(one, base_url=ORIGIN, follow_redirects=False) as c:
        assert c.get("/").status_code == 303


def test_without_a_secret_key_a_random_one_is_used(engine: Engine) -> None:
    app = create_app(engine, open_access=True)
    with TestClient(app, base_url="http://localhost") as c:  # open access: loopback names
        assert c.get("/").status_code == 200


def test_mounted_inside_another_app(engine: Engine) -> None:
    outer = Starlette(routes=[Mount("/ops", app=make_app(engine))])
    iid = engine.start("Trip", {})
    with TestClient(outer, base_url=ORIGIN, follow_redirects=False) as c:
        assert c.get("/ops/").headers["location"] == "/ops/login?next=%2Fops%2F"
        token = csrf_of(c.get("/ops/login").text)
        done = c.post(
            "/ops/login",
            data={
                "username": "alice",
                "password": "correct horse",
                "csrf_token": token,
                "next": "/ops/",
            },
            headers={"Origin": ORIGIN},
        )
        assert done.headers["location"] == "/ops/"
        page = c.get(f"/ops/instances/{iid}")
        assert page.status_code == 200
        assert f'hx-get="/ops/instances/{iid}?since=' in page.text
        assert 'href="/ops/static/app.css?v=' in page.text
        assert c.get("/ops/static/app.css").status_code == 200
        api = c.post(
            "/ops/api/instances",
            json={"workflow": "Trip", "id": "m1"},
            headers={"Authorization": "Bearer token-alice-0123456789"},
        )
        assert api.status_code == 201 and api.headers["location"] == "/ops/api/instances/m1"


def test_static_assets_are_versioned(alice: TestClient) -> None:
    chrome = alice.get("/").context["chrome"]
    assert chrome.css.startswith("/static/app.css?v=")
    assert chrome.htmx.startswith("/static/htmx-4.0.1.min.js?v=")
    assert alice.get(chrome.htmx).status_code == 200


def test_examples_show_every_part(tmp_path: Any, clock: Any) -> None:
    engine = Engine(
        f"sqlite:///{tmp_path}/ex.db", workflows=WORKFLOWS, clock=clock, operators=["it"]
    )
    expense = engine.start("Expense", {"amount": 40, "employee": "erin"})
    clock.advance(hours=4, minutes=1)
    engine.run_due()
    assert engine.get(expense).waits[0].stored["reminders"] == 1
    engine.send(expense, "decision", {"approved": True}, actor="alice")
    assert engine.get(expense).result == {"paid": 40, "to": "erin"}
    onboarding = engine.start("Onboarding", {"person": "dana"})
    engine.send(onboarding, "equipment", {"laptop": "Framework 13", "monitors": 2}, actor="bob")
    engine.send(onboarding, "training done", {}, actor="it")
    assert engine.get(onboarding).result == {"person": "dana", "laptop": "Framework 13"}
    UPSTREAM.fail_next, rate = 2, UPSTREAM.failure_rate
    UPSTREAM.failure_rate = 0
    try:
        report = engine.start("NightlyReport", {})
        assert engine.get(report).threads[0].status == "retrying"
        engine.run_due(datetime.now(UTC) + timedelta(days=1000))
        assert engine.get(report).status == "failed"
        engine.retry(report)
        assert engine.get(report).status == "waiting"
    finally:
        UPSTREAM.failure_rate = rate
    engine.close()


def test_open_access_demo_can_act_as_an_approver(engine: Engine) -> None:
    app = make_app(engine, open_access=True)
    iid = engine.start("Expense", {"amount": 9})
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        page = c.get(f"/instances/{iid}")
        assert "Act as alice" in page.text
        sign_in(c, "alice", password="")
        assert c.get(f"/instances/{iid}").context["page"].threads[0].waits[0].may_decide


def test_open_access_changes_nothing_for_another_app_on_the_same_engine(tmp_path: Path) -> None:
    """A demo app made every visitor an operator of the whole engine: bob's token then moved a
    thread through a second, normal app. Open access now covers its own requests only."""
    engine = Engine(f"sqlite:///{tmp_path}/two.db", workflows=[*WORKFLOWS], operators=["carol"])
    demo, normal = make_app(engine, open_access=True), make_app(engine)
    bob = {"Authorization": "Bearer token-bob-0123456789"}
    iid = engine.start("Expense", {"amount": 120})
    with TestClient(demo, base_url=ORIGIN) as visitor:
        assert visitor.get("/api/instances").status_code == 200
    with TestClient(normal, base_url=ORIGIN) as c:
        refused = c.post(f"/api/instances/{iid}/cancel", json={}, headers=bob)
        assert refused.status_code == 404  # bob takes no part: not even told it exists
    assert not engine.is_operator("bob") and not engine.is_operator("admin")
    assert engine.get(iid).status == "waiting"
    with TestClient(demo, base_url=ORIGIN) as visitor:  # the demo's own visitors still operate
        assert visitor.post(f"/api/instances/{iid}/cancel", json={}).status_code == 200
    engine.close()


def test_open_access_never_answers_every_host(engine: Engine) -> None:
    with pytest.raises(ValueError, match="never to '\\*'"):
        create_app(engine, open_access=True, allowed_hosts=["*"])


@pytest.mark.parametrize(
    "options",
    [
        {"users": {"group:ops": "scrypt$x"}},
        {"users": {"": "scrypt$x"}},
        {"api_tokens": {"token-0123456789abcdef": "group:finance"}},
        {"api_tokens": {"token-0123456789abcdef": "eve\x1b[2J"}},
    ],
)
def test_a_user_or_token_named_as_a_group_or_with_control_characters_is_refused(
    engine: Engine, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="cannot be named"):
        create_app(engine, secret_key="k" * 40, **options)
