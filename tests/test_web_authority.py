"""Who may do what, on every surface: the dashboard's forms (plain and htmx), the inbox, the JSON
API and the command line, each tried by the approver (alice), the starter (bob), an operator
(carol) and somebody else (eve). The engine decides; a refused attempt changes nothing (the
instance, its data and its history are compared before and after) and says why in plain words
to those who take part in the instance; on the dashboard and the API, to anyone else (eve;
alice on an instance with no approval of hers) it says the instance does not exist, so a
refusal reveals nothing."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from signoff.engine import Engine
from signoff.web.auth import hash_password
from signoff.web.cli import main

from tests import authority_workflows
from tests.web_support import HX, ORIGIN, csrf_of, make_app, parse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PEOPLE = {"alice": "approver", "bob": "starter", "carol": "operator", "eve": "other"}
PASSWORD = "a long enough password"
TOKENS = {f"token-{name}-0123456789": name for name in PEOPLE}
FLOWS = ["--workflows", "tests.authority_workflows"]
ACTIONS = ("decide", "retry", "cancel", "goto", "note")
SURFACES = ("form", "htmx", "inbox", "api", "cli")
ALLOWED = {"decide": {"alice"}, "retry": {"carol"}, "cancel": {"carol"}, "goto": {"carol"}}


@functools.cache
def hashes() -> dict[str, str]:
    return {name: hash_password(PASSWORD, n=2**10) for name in PEOPLE}


@pytest.fixture
def engine(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("SIGNOFF_OPERATORS", "group:ops")  # what the command line reads
    monkeypatch.setenv("SIGNOFF_GROUPS", "ops=carol,dave")
    eng = Engine(
        sqlite_url,
        authority_workflows.WORKFLOWS,
        operators=["group:ops"],
        groups={"ops": ["carol", "dave"]},
    )
    yield eng
    eng.close()


@pytest.fixture
def app(engine: Engine) -> Any:
    return make_app(engine, users=hashes(), api_tokens=TOKENS)


def signed_in(app: Any, name: str) -> TestClient:
    client = TestClient(app, base_url=ORIGIN, follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf_token": token, "next": "/"},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 303
    client.headers["X-CSRF-Token"] = csrf_of(client.get("/").text)
    client.headers["Origin"] = ORIGIN
    return client


def snapshot(engine: Engine, iid: str) -> tuple[dict[str, Any], list[Any]]:
    return engine.get(iid).to_dict(), engine.history(iid)


def subject(engine: Engine, action: str) -> str:
    if action == "retry":
        return engine.start("Broken", actor="bob")  # failed at once
    return engine.start("Spend", {"amount": 5}, actor="bob")


def attempt(
    surface: str,
    action: str,
    who: str,
    iid: str,
    app: Any,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
) -> tuple[bool, str]:
    """Try `action` as `who` on `surface`; returns (accepted, what the person was told)."""
    if surface == "cli":
        args = {
            "decide": ["send", iid, "decision", "--payload", '{"approved": true}'],
            "retry": ["retry", iid],
            "cancel": ["cancel", iid, "--reason", "dup"],
            "goto": ["goto", iid, "main", "pay"],
            "note": ["send", iid, "note"],
        }[action]
        code = main([*args, "--as", who, "--db", sqlite_url, *FLOWS])
        out, err = capsys.readouterr()
        return code == 0, out + err
    if surface == "api":
        with TestClient(app, base_url=ORIGIN) as client:
            headers = {"Authorization": f"Bearer token-{who}-0123456789"}
            path, body = {
                "decide": ("events/decision", {"payload": {"approved": True}}),
                "retry": ("retry", {}),
                "cancel": ("cancel", {"reason": "dup"}),
                "goto": ("goto", {"thread": "main", "step": "pay"}),
                "note": ("events/note", {}),
            }[action]
            response = client.post(f"/api/instances/{iid}/{path}", json=body, headers=headers)
        if response.status_code != 200:
            assert response.status_code in (403, 404), response.text
        return response.status_code == 200, response.text
    client = signed_in(app, who)
    headers = HX if surface in ("htmx", "inbox") else {}
    if surface == "inbox":
        response = client.post(
            "/approvals/decide",
            data={"instance": iid, "thread": "main", "event": "decision", "decision": "approve"},
            headers=headers,
        )
    else:
        path, data = {
            "decide": ("send", {"event": "decision", "thread": "main", "mode": "approve"}),
            "retry": ("retry", {"thread": "main"}),
            "cancel": ("cancel", {"reason": "dup"}),
            "goto": ("goto", {"thread": "main", "step": "pay"}),
            "note": ("send", {"event": "note", "thread": "main", "mode": "json"}),
        }[action]
        response = client.post(f"/instances/{iid}/{path}", data=data, headers=headers)
    if surface == "form":  # a plain form lands on the page again, which shows the outcome
        assert response.status_code == 303
        shown = parse(client.get(response.headers["location"]).text)
        (flash,) = [
            n
            for n in shown.iter()
            if {"flash-ok", "flash-error"} & set((n.attrs.get("class") or "").split())
        ]
        return "flash-ok" in (flash.attrs.get("class") or ""), flash.text
    if response.status_code != 200:
        assert response.status_code in (403, 404), response.text
    return response.status_code == 200, response.text


def outsider(surface: str, who: str, action: str) -> bool:
    """Takes no part in the instance the action is tried on (Broken asks nobody to decide), and
    tries it where others' instances are hidden (the command line reads the database itself)."""
    return surface != "cli" and (who == "eve" or (who == "alice" and action == "retry"))


CASES = [
    (surface, action, who)
    for surface in SURFACES
    for action in ACTIONS
    for who in PEOPLE
    if surface != "inbox" or action == "decide"
]


@pytest.mark.parametrize(("surface", "action", "who"), CASES)
def test_every_surface_every_action_every_person(
    surface: str,
    action: str,
    who: str,
    engine: Engine,
    app: Any,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    iid = subject(engine, action)
    before = snapshot(engine, iid)
    accepted, told = attempt(surface, action, who, iid, app, sqlite_url, capsys)
    allowed = who in ALLOWED.get(action, {"carol"})
    assert accepted == allowed, told
    if allowed:
        assert snapshot(engine, iid) != before
        assert next(h for h in reversed(engine.history(iid)) if h.actor).actor == who
        return
    assert snapshot(engine, iid) == before
    if outsider(surface, who, action):
        assert (
            f"no instance with id &#39;{iid}&#39;" in told or f"no instance with id '{iid}'" in told
        )
        return
    reasons = {
        "bob": "bob started this instance and may not decide it",
        "carol": "carol may not decide this: only alice, bob may",
        "eve": "eve may not decide this: only alice, bob may",
    }
    expected = reasons[who] if action == "decide" else f"{who} may not"
    assert expected in told
    if action != "decide":
        assert "only operators may" in told


@pytest.mark.parametrize("who", PEOPLE)
def test_operator_controls_are_shown_to_operators_only(engine: Engine, app: Any, who: str) -> None:
    iid = engine.start("Spend", actor="bob")
    answer = signed_in(app, who).get(f"/instances/{iid}")
    if who == "eve":
        assert answer.status_code == 404
        return
    page = answer.text
    forms = {f.attrs.get("action", "") for f in parse(page).find_all("form")}
    operator_forms = {f"/instances/{iid}/{a}" for a in ("cancel", "goto")}
    assert (operator_forms <= forms) == (who == "carol")
    assert ('name="mode" value="json"' in page) == (who == "carol")
    assert ('value="approve"' in page) == (who == "alice")
    ask = next(n for n in parse(page).find_all("section") if "ask" in (n.attrs.get("class") or ""))
    assert "Who may decidealice, bob" in " ".join(ask.text.split())
    assert ("Threads" in page and "Definition" in page) == (who == "carol")  # engine internals
    if who == "bob":
        assert "bob started this instance and may not decide it" in page


def test_the_inbox_shows_votes_and_why_not(engine: Engine, app: Any) -> None:
    iid = engine.start("Spend", actor="bob")
    page = signed_in(app, "bob").get("/approvals")
    assert page.status_code == 200
    assert "bob started this instance and may not decide it" in page.text
    alice = signed_in(app, "alice")
    assert iid in alice.get("/approvals").text


def test_open_access_makes_the_visitor_an_operator(engine: Engine) -> None:
    app = make_app(engine, open_access=True)
    iid = engine.start("Spend", actor="bob")
    with TestClient(app, base_url=ORIGIN) as client:
        response = client.post(f"/api/instances/{iid}/cancel", json={"reason": "demo"})
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_start_data_may_not_set_read_only_fields_through_the_api(
    engine: Engine, app: Any, sqlite_url: str
) -> None:
    from signoff.web.examples import Expense

    engine.register(Expense)
    with TestClient(app, base_url=ORIGIN) as client:
        response = client.post(
            "/api/instances",
            json={"workflow": "Expense", "data": {"amount": 200, "approved": True}},
            headers={"Authorization": "Bearer token-bob-0123456789"},
        )
    assert response.status_code == 422
    assert "approved is read-only" in response.json()["error"]
    assert engine.list() == []


def test_the_command_line_reads_operators_and_groups(
    engine: Engine, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iid = engine.start("Spend")
    assert main(["cancel", iid, "--as", "dave", "--db", sqlite_url, *FLOWS]) == 0
    assert capsys.readouterr().out == f"{iid}: cancelled (cancelled)\n"
    assert [h.actor for h in engine.history(iid) if h.kind == "cancelled"] == ["dave"]
