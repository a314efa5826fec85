"""The JSON API (web/api.py): every operation, its status codes, tokens, the OpenAPI text."""

from __future__ import annotations

from typing import Any

import pytest
from signoff.engine import Engine
from web_support import (
    TRACE,
    TestClient,
)

pytest_plugins = ["web_fixtures"]

ALICE = {"Authorization": "Bearer token-alice-0123456789"}
BOB = {"Authorization": "Bearer token-bob-0123456789"}


def test_start_get_list(client: TestClient, engine: Engine) -> None:
    created = client.post(
        "/api/instances",
        json={"workflow": "Trip", "data": {"who": "zoe"}, "id": "api-1"},
        headers=ALICE,
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["id"], body["status"], body["data"]["who"]) == ("api-1", "waiting", "zoe")
    assert created.headers["location"] == "/api/instances/api-1"
    assert body["threads"][0]["waits"][0]["event"] == "decision"
    assert engine.history("api-1")[0].actor == "alice"
    got = client.get("/api/instances/api-1", headers=BOB)
    assert got.status_code == 200 and got.json() == engine.get("api-1").to_dict()
    listing = client.get("/api/instances?status=waiting&limit=10", headers=ALICE).json()
    assert [i["id"] for i in listing["instances"]] == ["api-1"] and listing["next"] is None
    history = client.get("/api/instances/api-1/history", headers=ALICE).json()["history"]
    assert [h["kind"] for h in history] == ["started", "step", "waiting"]


def test_list_pages_with_cursor(client: TestClient, engine: Engine, clock: Any) -> None:
    for i in range(5):
        clock.advance(seconds=1)
        engine.start("Trip", {}, id=f"t{i}")
    first = client.get("/api/instances?limit=2", headers=ALICE).json()
    assert [i["id"] for i in first["instances"]] == ["t4", "t3"]
    second = client.get(f"/api/instances?limit=2&before={first['next']}", headers=ALICE).json()
    assert [i["id"] for i in second["instances"]] == ["t2", "t1"]
    assert client.get("/api/instances?before=junk", headers=ALICE).status_code == 422
    assert client.get("/api/instances?status=nope", headers=ALICE).status_code == 422
    assert client.get("/api/instances?limit=x", headers=ALICE).status_code == 422


def test_send_approval_and_the_codes_of_refusal(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    url = f"/api/instances/{iid}/events/decision"
    forbidden = client.post(url, json={"payload": {"approved": True}}, headers=BOB)
    assert forbidden.status_code == 403 and forbidden.json()["type"] == "NotAllowed"
    rejected = client.post(url, json={"payload": {"approved": "yes"}}, headers=ALICE)
    assert rejected.status_code == 422 and rejected.json()["type"] == "EventRejected"
    ok = client.post(url, json={"payload": {"approved": True}, "thread": "main"}, headers=ALICE)
    assert ok.status_code == 200 and ok.json()["status"] == "completed"
    stale = client.post(url, json={"payload": {"approved": False, "reason": "x"}}, headers=ALICE)
    assert stale.status_code == 409
    assert "already decided: approved by alice" in stale.json()["error"]
    assert (
        client.post("/api/instances/nope/events/decision", json={}, headers=ALICE).status_code
        == 404
    )
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via) == ("alice", "api")


def test_event_names_with_spaces(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Onboarding", {})
    response = client.post(f"/api/instances/{iid}/events/training%20done", json={}, headers=BOB)
    assert response.status_code == 200
    assert engine.get(iid).data["trained"] is True


def test_retry_cancel_goto(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {"fail_booking": True})
    engine.send(iid, "decision", {"approved": True}, actor="alice")
    retried = client.post(f"/api/instances/{iid}/retry", json={"thread": "main"}, headers=ALICE)
    assert retried.status_code == 200 and TRACE.count("book") == 2
    moved = client.post(
        f"/api/instances/{iid}/goto", json={"thread": "main", "step": "approval"}, headers=ALICE
    )
    assert moved.status_code == 200 and moved.json()["status"] == "waiting"
    assert (
        client.post(
            f"/api/instances/{iid}/goto", json={"thread": "main"}, headers=ALICE
        ).status_code
        == 422
    )
    cancelled = client.post(f"/api/instances/{iid}/cancel", json={"reason": "dup"}, headers=ALICE)
    assert cancelled.status_code == 200 and cancelled.json()["error"] == "dup"
    assert client.post(f"/api/instances/{iid}/cancel", headers=ALICE).status_code == 409
    assert client.post(f"/api/instances/{iid}/retry", headers=ALICE).status_code == 409


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dG9rZW4="},
        {"Authorization": "Bearer "},
        {"Authorization": "token-alice-0123456789"},
    ],
)
def test_no_or_bad_token_is_401_and_changes_nothing(
    client: TestClient, engine: Engine, headers: dict[str, str]
) -> None:
    iid = engine.start("Trip", {})
    for method, path, body in (
        ("POST", "/api/instances", {"workflow": "Trip"}),
        ("GET", "/api/instances", None),
        ("GET", f"/api/instances/{iid}", None),
        ("POST", f"/api/instances/{iid}/events/decision", {"payload": {"approved": True}}),
        ("POST", f"/api/instances/{iid}/cancel", {}),
    ):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert [s.id for s in engine.list()] == [iid] and engine.get(iid).status == "waiting"


def test_session_cookie_is_not_an_api_credential(client: TestClient, engine: Engine) -> None:
    from web_support import sign_in

    sign_in(client, "alice")
    assert client.get("/api/instances").status_code == 401


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'{"workflow": 5}', "application/json", 422),
        (b'{"workflow": "Trip", "data": []}', "application/json", 422),
        (b'{"workflow": "Nope"}', "application/json", 422),
        (b'{"workflow": "Trip", "data": {"days": "many"}}', "application/json", 422),
        (b'{"workflow": "Trip", "data": {"unknown": 1}}', "application/json", 422),
        (b'{"workflow": "Trip", "id": "../x"}', "application/json", 422),
        (b'{"workflow": "Trip", "id": 7}', "application/json", 422),
        (b'{"workflow": "Trip"}', "text/plain", 415),
        (b"\xff\xfe\x00", "application/json", 400),
    ],
)
def test_malformed_start_requests(
    client: TestClient, engine: Engine, body: bytes, content_type: str, status: int
) -> None:
    response = client.post(
        "/api/instances", content=body, headers={**ALICE, "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert engine.list() == []


def test_malformed_event_payloads(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Form", {})
    url = f"/api/instances/{iid}/events/details"
    assert client.post(url, json={"payload": [1]}, headers=ALICE).status_code == 422
    assert client.post(url, json={"payload": {"size": 0}}, headers=ALICE).status_code == 422
    assert client.post(url, json={"thread": 5}, headers=ALICE).status_code == 422
    big = {"payload": {"blob": "x" * 300_000}}
    assert client.post(url, json=big, headers=ALICE).status_code == 422  # over the engine's cap
    assert engine.get(iid).status == "waiting"
    assert client.post(url, json={"payload": {"size": 2}}, headers=ALICE).status_code == 200


def test_duplicate_id_is_a_conflict(client: TestClient) -> None:
    assert (
        client.post(
            "/api/instances", json={"workflow": "Trip", "id": "x"}, headers=ALICE
        ).status_code
        == 201
    )
    again = client.post("/api/instances", json={"workflow": "Trip", "id": "x"}, headers=ALICE)
    assert again.status_code == 409 and "already exists" in again.json()["error"]


def test_openapi_description(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/api/approvals",
        "/api/instances",
        "/api/instances/{instance_id}",
        "/api/instances/{instance_id}/history",
        "/api/instances/{instance_id}/events/{event}",
        "/api/instances/{instance_id}/retry",
        "/api/instances/{instance_id}/cancel",
        "/api/instances/{instance_id}/goto",
        "/api/instances/{instance_id}/reassign",
    }
    send = spec["paths"]["/api/instances/{instance_id}/events/{event}"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(send)


def test_unknown_api_path_is_json_404(client: TestClient) -> None:
    response = client.get("/api/nothing", headers=ALICE)
    assert response.status_code == 404 and response.json() == {"error": "no such API endpoint"}


def test_open_access_api_acts_as_admin(engine: Engine) -> None:
    from web_support import ORIGIN, make_app

    app = make_app(engine, open_access=True)
    with TestClient(app, base_url=ORIGIN) as c:
        created = c.post("/api/instances", json={"workflow": "NightlyReport"})
        assert created.status_code in (201,)
        assert engine.history(created.json()["id"])[0].actor == "admin"
        assert c.get("/api/instances", headers={"Authorization": "Bearer bad"}).status_code == 401


def test_send_with_the_wait_key_refuses_a_repeat(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    wait = client.get(f"/api/instances/{iid}", headers=ALICE).json()["threads"][0]["waits"][0]
    url = f"/api/instances/{iid}/events/decision"
    body = {"payload": {"approved": True}, "wait_key": wait["key"]}
    first = client.post(url, json=body, headers=ALICE)
    assert first.status_code == 200 and first.json()["status"] == "completed"
    again = client.post(url, json=body, headers=ALICE)
    assert again.status_code == 409 and again.json()["type"] == "AlreadyDecided"
    assert "already decided: approved by alice" in again.json()["error"]
    assert [h.kind for h in engine.history(iid)].count("decision") == 1
    assert TRACE.count("approved by alice via api") == 1
    bad = client.post(url, json={"payload": {"approved": True}, "wait_key": 7}, headers=ALICE)
    assert bad.status_code == 422
