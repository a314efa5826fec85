"""Every page and API route, walked as a signed-in user who takes no part in an instance: each
route that names it answers 404 (as for an id that does not exist), and no list, count, search or
inbox shows it. The instance's own people still see it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from signoff.engine import Engine
from starlette.routing import Mount, Route
from web_support import HX, ORIGIN, TOKENS, WORKFLOWS, TestClient, make_app, sign_in

CAROL = {"Authorization": "Bearer token-carol-0123456789"}


@pytest.fixture
def engine(tmp_path: Any, clock: Any) -> Iterator[Engine]:
    eng = Engine(
        f"sqlite:///{tmp_path}/web.db", workflows=WORKFLOWS, clock=clock, operators=["ops"]
    )
    yield eng
    eng.close()


@pytest.fixture
def app(engine: Engine) -> Any:
    return make_app(engine, api_tokens={**TOKENS, "token-carol-0123456789": "carol"})


def _routes_naming_an_instance(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        inner = route.routes if isinstance(route, Mount) else [route]
        prefix = route.path if isinstance(route, Mount) else ""
        for r in inner:
            if isinstance(r, Route) and "{instance_id}" in r.path:
                for method in sorted(r.methods or ()):
                    if method != "HEAD":
                        path = (prefix + r.path).replace("{event:path}", "decision")
                        found.append((method, path))
    return found


def test_an_outsider_finds_the_instance_nowhere(app: Any, engine: Engine) -> None:
    iid = engine.start("Trip", {"who": "bob", "days": 3}, actor="bob")  # alice approves
    before = engine.history(iid)
    routes = _routes_naming_an_instance(app)
    assert len(routes) >= 12, routes  # the pages' and the API's: none forgotten below

    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as carol:
        carol.headers["X-CSRF-Token"] = sign_in(carol, "carol")
        carol.headers["Origin"] = ORIGIN
        for method, path in routes:
            url = path.replace("{instance_id}", iid)
            api = url.startswith("/api/")
            body: dict[str, Any] = {}
            if method == "POST":
                body = (
                    {"json": {"payload": {"approved": True}, "thread": "main", "step": "book"}}
                    if api
                    else {
                        "data": {
                            "event": "decision",
                            "mode": "approve",
                            "thread": "main",
                            "step": "book",
                            "approver": "alice",
                        }
                    }
                )
            for headers in [CAROL] if api else [{}, HX]:
                answer = carol.request(method, url, headers=headers, **body)
                if answer.status_code == 303:  # a form without htmx: sent back to the page
                    answer = carol.get(answer.headers["location"])
                assert answer.status_code == 404, (method, url, headers, answer.text[:300])
        pages = [
            carol.get("/").text,
            carol.get(f"/?q={iid[:8]}").text,
            carol.get("/?q=bob").text,
            carol.get("/approvals").text,
            carol.get("/api/instances", headers=CAROL).text,
            carol.get(f"/api/instances?q={iid[:8]}", headers=CAROL).text,
            carol.get("/api/approvals", headers=CAROL).text,
        ]
        for page in pages:
            assert iid not in page
        assert "0 of 0" in carol.get("/").text or "No instances" in carol.get("/").text
        assert engine.get(iid).status == "waiting" and engine.history(iid) == before

    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as bob:  # the starter
        sign_in(bob, "bob")
        assert bob.get(f"/instances/{iid}").status_code == 200
        assert iid in bob.get("/").text
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as alice:  # the approver
        sign_in(alice, "alice")
        assert alice.get(f"/instances/{iid}").status_code == 200
