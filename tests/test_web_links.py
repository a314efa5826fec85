"""Approval links (web/links.py): signed, expiring, single-use, for one approver and one wait.
The whole life of a link: a mail scanner opens it (GET: nothing happens), its approver uses it
once, it is replayed, it expires, someone else tries it, it is forged or cut short."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from signoff.engine import Engine
from signoff.web.links import approval_link, make_token, read_token
from web_support import ORIGIN, TestClient, csrf_of, sign_in

pytest_plugins = ["web_fixtures"]

SECRET = "test-secret-key"  # web_support.make_app's


def _link(engine: Engine, iid: str, approver: str = "alice", **kw: Any) -> str:
    return approval_link(engine, SECRET, iid, approver, **kw)


def _post(client: TestClient, path: str, decision: str, reason: str = "") -> Any:
    page = client.get(path)
    token = csrf_of(page.text)
    return client.post(
        path,
        data={"csrf_token": token, "decision": decision, "reason": reason},
        headers={"Origin": ORIGIN},
    )


def test_a_scanner_that_opens_the_link_decides_nothing(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {"who": "erin"})
    path = _link(engine, iid)
    for _ in range(3):  # a mail scanner, a preview, the person
        page = client.get(path)
        assert page.status_code == 200
        assert "Trip for erin" in page.text and "Approval request for" in page.text
        assert page.headers["referrer-policy"] == "same-origin"  # never to another site
    assert engine.get(iid).status == "waiting"
    assert not [h for h in engine.history(iid) if h.kind == "decision"]


def test_used_once_by_its_approver_without_signing_in(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    path = _link(engine, iid)
    done = _post(client, path, "approve")
    assert done.status_code == 200 and "Approved as alice" in done.text
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via) == ("alice", "link")
    replay = _post(client, path, "approve")
    assert replay.status_code == 410 and "already" in replay.text
    assert [h.kind for h in engine.history(iid)].count("decision") == 1
    assert client.get(path).status_code == 410


def test_a_deny_needs_a_reason_and_does_not_spend_the_link(
    client: TestClient, engine: Engine
) -> None:
    iid = engine.start("Trip", {})
    path = _link(engine, iid)
    refused = _post(client, path, "deny")
    assert refused.status_code == 422 and "reason" in refused.text
    assert engine.get(iid).status == "waiting"
    ok = _post(client, path, "deny", "too far")
    assert ok.status_code == 200 and "Denied as alice" in ok.text
    assert engine.get(iid).data["note"] == "too far"


def test_an_expired_link_is_refused(client: TestClient, engine: Engine, clock: Any) -> None:
    iid = engine.start("Trip", {})
    path = _link(engine, iid, lifetime=timedelta(minutes=30))
    clock.advance(minutes=31)
    page = client.get(path)
    assert page.status_code == 410 and "expired" in page.text
    assert _post(client, path, "approve").status_code == 410
    assert engine.get(iid).status == "waiting"


def test_only_for_its_approver(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    path = _link(engine, iid)
    sign_in(client, "bob")
    page = client.get(path)
    assert page.status_code == 403 and "This link is for alice" in page.text
    assert _post(client, path, "approve").status_code == 403
    assert engine.get(iid).status == "waiting"
    # nobody can make a link for someone the approval does not name
    with pytest.raises(Exception, match="bob may not decide"):
        _link(engine, iid, approver="bob")


def test_forged_cut_or_stale_links(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    path = _link(engine, iid)
    token = path.rsplit("/", 1)[1]
    assert client.get(path[:-5]).status_code == 404
    # change a character inside the token (the last one may only carry base64 padding bits)
    mid = len(token) // 2
    tampered = token[:mid] + ("A" if token[mid] != "A" else "B") + token[mid + 1 :]
    assert client.get("/link/" + tampered).status_code == 404
    forged = make_token(
        "another-secret", instance_id=iid, thread="main", event="decision", wait_key="",
        approver="alice", expires_at=engine.clock() + timedelta(days=1),
    )  # fmt: skip
    assert read_token(SECRET, forged) is None
    assert client.get("/link/" + forged).status_code == 404
    assert client.get("/link/" + "x" * 5000).status_code == 404
    # the wait was decided another way: the link is for a round that is over
    engine.send(iid, "decision", {"approved": True}, actor="alice")
    page = client.get(path)
    assert page.status_code == 410 and "already been decided" in page.text


def test_an_operator_asking_for_a_link_is_never_shown_it(alice: TestClient, engine: Engine) -> None:
    """The link goes to its approver (tests/test_mail.py), never to the one who asks: with no
    mailer or Slack, it is refused, saying why, and no link is on the page."""
    iid = engine.start("Trip", {})
    page = alice.get(f"/instances/{iid}")
    assert "Send someone their approval link" in page.text
    made = alice.post(
        f"/instances/{iid}/link", data={"thread": "main", "event": "decision", "approver": "alice"}
    )
    assert made.status_code == 422 and "cannot be sent" in made.text
    assert "/link/" not in made.text
    wrong = alice.post(f"/instances/{iid}/link", data={"approver": "mallory"})
    assert wrong.status_code == 403 and "mallory may not decide" in wrong.text
