"""Security headers, Origin checks, CSRF on every state-changing request, body limits
(web/security.py and the CSRF half of web/auth.py). Every refusal changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from signoff.engine import Engine
from web_support import (
    HX,
    ORIGIN,
    TestClient,
    parse,
)

pytest_plugins = ["web_fixtures"]


def _actions(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    """One state-changing request per kind of action, on instances that would accept it."""
    trip = engine.start("Trip", {"who": "bob"}, id="trip-1")
    failing = engine.start("Trip", {"who": "eve", "fail_booking": True}, id="trip-2")
    engine.send(failing, "decision", {"approved": True}, actor="alice")
    return [
        (f"/instances/{trip}/send", {"event": "decision", "mode": "approve", "thread": "main"}),
        (f"/instances/{trip}/send", {"event": "note", "mode": "json", "payload": "{}"}),
        (f"/instances/{failing}/retry", {"thread": "main"}),
        (f"/instances/{trip}/cancel", {"reason": "no"}),
        (f"/instances/{trip}/goto", {"thread": "main", "step": "book"}),
        (
            "/approvals/decide",
            {"instance": trip, "thread": "main", "event": "decision", "decision": "approve"},
        ),
        ("/workflows/Trip/start", {"f.who": "zed", "instance_id": "new-1"}),
    ]


def _snapshot(engine: Engine) -> list[tuple[str, str, int]]:
    return [(s.id, s.status, engine.get(s.id).version) for s in engine.list(limit=500)]


def test_every_response_carries_a_strict_csp(alice: TestClient) -> None:
    for path in (
        "/",
        "/login",
        "/approvals",
        "/workflows",
        "/static/app.css",
        "/nope",
        "/api/openapi.json",
    ):
        response = alice.get(path)
        csp = response.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


def test_pages_have_no_inline_script_or_style(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    for path in ("/", f"/instances/{iid}", "/approvals", "/workflows", "/login"):
        doc = parse(alice.get(path).text)
        for script in doc.find_all("script"):
            assert script.attrs.get("src", "").startswith("/static/") and not script.text.strip()
        assert not doc.find_all("style")
        assert not [n for n in doc.iter() if "style" in n.attrs]
        assert not [n for n in doc.iter() if any(a.startswith("on") for a in n.attrs)]


def test_csrf_token_is_sent_by_htmx_from_body(alice: TestClient) -> None:
    doc = parse(alice.get("/").text)
    body = doc.find_all("body")[0]
    token = alice.headers["X-CSRF-Token"]
    assert json.loads(body.attrs["hx-headers:inherited"] or "") == {"X-CSRF-Token": token}


@pytest.mark.parametrize("case", ["missing", "wrong", "other session"])
def test_actions_without_the_right_csrf_token_change_nothing(
    alice: TestClient, engine: Engine, case: str, app: Any
) -> None:
    actions = _actions(engine)
    before = _snapshot(engine)
    token = alice.headers.pop("X-CSRF-Token")
    if case == "wrong":
        alice.headers["X-CSRF-Token"] = token[:-4] + "AAAA"
    elif case == "other session":
        with TestClient(app, base_url=ORIGIN, follow_redirects=False) as other:
            from web_support import sign_in

            alice.headers["X-CSRF-Token"] = sign_in(other, "alice")
    for path, form in actions:
        response = alice.post(path, data=form)
        assert response.status_code == 403, path
        assert "expired or did not come from this site" in response.text
    assert _snapshot(engine) == before
    assert engine.history("trip-1")[-1].kind == "waiting"


def test_csrf_token_in_the_form_works_without_htmx(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    token = alice.headers.pop("X-CSRF-Token")
    response = alice.post(f"/instances/{iid}/cancel", data={"csrf_token": token})
    assert response.status_code == 303
    assert engine.get(iid).status == "cancelled"


def test_htmx_csrf_refusal_lands_in_the_flash_area(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    alice.headers.pop("X-CSRF-Token")
    response = alice.post(f"/instances/{iid}/cancel", data={}, headers=HX)
    assert response.status_code == 403
    assert response.headers["HX-Retarget"] == "#flash"
    assert response.headers["HX-Reswap"] == "outerHTML"
    assert parse(response.text).by_id("flash") is not None
    assert engine.get(iid).status == "waiting"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example/page"},
    ],
)
def test_foreign_origin_is_refused_before_anything_runs(
    alice: TestClient, engine: Engine, headers: dict[str, str]
) -> None:
    actions = _actions(engine)
    before = _snapshot(engine)
    del alice.headers["Origin"]
    for path, form in actions:
        response = alice.post(path, data=form, headers=headers)
        assert response.status_code == 403
        assert response.text == "cross-origin request refused"
    response = alice.post(
        "/api/instances",
        json={"workflow": "Trip"},
        headers={**headers, "Authorization": "Bearer token-alice-0123456789"},
    )
    assert response.status_code == 403
    assert _snapshot(engine) == before


def test_same_origin_and_no_origin_pass(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    del alice.headers["Origin"]
    assert (
        alice.post(
            f"/instances/{iid}/send",
            data={"event": "note", "mode": "json"},
            headers={"Referer": ORIGIN + "/instances/x", **HX},
        ).status_code
        == 200
    )
    assert TestClient  # programs (no Origin, no Referer) are judged by token or CSRF alone


def test_oversized_bodies_are_refused(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    before = _snapshot(engine)
    huge = "x" * (1024 * 1024 + 10)
    response = alice.post(
        f"/instances/{iid}/send", data={"event": "note", "mode": "json", "payload": huge}
    )
    assert response.status_code == 413
    api = alice.post(
        "/api/instances",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={
            "Authorization": "Bearer token-alice-0123456789",
            "Content-Type": "application/json",
        },
    )
    assert api.status_code == 413
    assert _snapshot(engine) == before


def test_oversized_chunked_body_is_refused(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})

    def chunks() -> Any:
        for _ in range(40):
            yield b"payload=" + b"x" * 50_000

    response = alice.post(
        f"/instances/{iid}/send",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert engine.get(iid).status == "waiting"


def test_too_many_form_fields_are_refused(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    data = {f"f{i}": "x" for i in range(500)}
    response = alice.post(f"/instances/{iid}/cancel", data=data)
    assert response.status_code == 400
    assert engine.get(iid).status == "waiting"
