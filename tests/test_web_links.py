"""Approval links (web/links.py): signed, expiring, single-use, for one approver and one wait.
The whole life of a link: a mail scanner opens it (GET: nothing happens), its approver uses it
once, it is replayed, it expires, someone else tries it, it is forged or cut short."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from signoff.engine import Approval, Engine, On, Return, S, Wait, Workflow
from signoff.web.links import approval_link, make_token, read_token
from web_support import ORIGIN, Rounds, TestClient, csrf_of, make_app, sign_in

pytest_plugins = ["web_fixtures"]

SECRET = "test-secret-key"  # web_support.make_app's


def _link(engine: Engine, iid: str, approver: str = "alice", **kw: Any) -> str:
    return approval_link(engine, SECRET, iid, approver, **kw)


def _form_token(html: str) -> str:
    found = re.search(r'name="link_form" value="([^"]+)"', html)
    assert found, "no confirm form on the page"
    return found.group(1)


def _post(client: TestClient, path: str, decision: str, reason: str = "") -> Any:
    page = client.get(path)
    token = _form_token(page.text) if page.status_code == 200 else "none"
    return client.post(
        path,
        data={"link_form": token, "decision": decision, "reason": reason},
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


# --- addressed links (issue 23) ---------------------------------------------------------------


class Purchase(Workflow):
    """Two of carol, dave and erin approve; never the one who asked."""

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        title="A new laptop",
                        approvers=["carol", "dave", "erin"],
                        required=2,
                        allow_self=False,
                    ),
                ),
            ),
            Return("bought"),
        )


@pytest.fixture
def shop(tmp_path: Any, clock: Any) -> Iterator[tuple[Engine, TestClient]]:
    """carol is an operator and one of the approvers of a 2-of-3 purchase."""
    engine = Engine(
        f"sqlite:///{tmp_path}/shop.db", workflows=[Purchase], clock=clock, operators=["carol"]
    )
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as client:
        yield engine, client
    engine.close()


def _unchanged(engine: Engine, iid: str) -> tuple[int, int]:
    return engine.get(iid).version, len(engine.history(iid))


def _nonce(path: str) -> str:
    claim = read_token(SECRET, unquote(path.rsplit("/", 1)[1]))
    assert claim is not None
    return claim.nonce


SCANNERS = [
    {},
    {"Origin": ORIGIN, "HX-Request": "true", "X-CSRF-Token": "anything"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Purpose": "prefetch", "Purpose": "prefetch"},
    {"User-Agent": "Mozilla/5.0 (compatible; SafeLinks scanner)", "Accept": "*/*"},
]


def test_a_get_with_any_headers_changes_nothing(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {"who": "erin"})
    path = _link(engine, iid)
    before = _unchanged(engine, iid)
    form = _form_token(client.get(path).text)
    for headers in SCANNERS:
        assert client.get(path, headers=headers).status_code == 200
        query = f"?decision=approve&link_form={form}&reason=x"
        assert client.get(path + query, headers=headers).status_code == 200
        assert client.head(path, headers=headers).status_code in (200, 405)
    assert _unchanged(engine, iid) == before
    assert engine.spent_at(_nonce(path)) is None
    assert engine.get(iid).status == "waiting"


def test_the_page_shows_the_request_and_who_asks(shop: Any) -> None:
    engine, client = shop
    iid = engine.start(Purchase, actor="bob")
    page = client.get(_link(engine, iid, approver="dave"))
    assert page.status_code == 200
    text = page.text
    assert "A new laptop" in text and "Approval request for <b>dave</b>" in text
    assert "Asked by</dt><dd>bob" in text and "decides as dave, once" in text
    assert 'name="csrf_token"' not in text.split("decide-forms")[1]  # bound to the link instead


def test_only_the_confirm_form_of_that_link_decides(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    path = _link(engine, iid)
    other = _link(engine, engine.start("Trip", {}))
    before = _unchanged(engine, iid)
    session_csrf = csrf_of(client.get(path).text)
    for data in [
        {"decision": "approve"},  # no token
        {"decision": "approve", "csrf_token": session_csrf},  # the session's: not this link's
        {"decision": "approve", "link_form": _form_token(client.get(other).text)},
        {"decision": "approve", "link_form": "0" * 64},
    ]:
        refused = client.post(path, data=data, headers={"Origin": ORIGIN})
        assert refused.status_code == 403 and "did not come from this link" in refused.text
    token = _form_token(client.get(path).text)
    for headers in [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}]:
        sent = client.post(path, data={"decision": "approve", "link_form": token}, headers=headers)
        assert sent.status_code == 403
    assert (
        client.post(path, data={"link_form": token}, headers={"Origin": ORIGIN}).status_code == 400
    )
    assert _unchanged(engine, iid) == before
    assert engine.spent_at(_nonce(path)) is None


def test_a_link_for_an_earlier_round_decides_nothing(client: TestClient, engine: Engine) -> None:
    engine.register(Rounds)
    iid = engine.start(Rounds)
    path = _link(engine, iid)
    engine.send(iid, "decision", {"approved": False, "reason": "again"}, actor="carol")
    before = _unchanged(engine, iid)
    page = client.get(path)
    assert page.status_code == 410 and "earlier round" in page.text
    refused = client.post(
        path, data={"decision": "approve", "link_form": "x"}, headers={"Origin": ORIGIN}
    )
    assert refused.status_code == 410 and "earlier round" in refused.text
    assert _unchanged(engine, iid) == before
    # the round open now takes a link of its own
    assert _post(client, _link(engine, iid), "approve").status_code == 200


def test_a_link_lives_seven_days_at_most(client: TestClient, engine: Engine, clock: Any) -> None:
    iid = engine.start("Trip", {})
    with pytest.raises(ValueError, match="7 days"):
        _link(engine, iid, lifetime=timedelta(days=7, seconds=1))
    path = _link(engine, iid, lifetime=timedelta(days=7))
    clock.advance(days=7)
    assert client.get(path).status_code == 410
    assert engine.get(iid).status == "waiting"


def test_one_decision_per_person_and_the_history_names_the_link(shop: Any) -> None:
    engine, client = shop
    iid = engine.start(Purchase, actor="bob")
    first, second = _link(engine, iid, approver="dave"), _link(engine, iid, approver="dave")
    assert _post(client, first, "approve").status_code == 200
    (vote,) = [h for h in engine.history(iid) if h.kind == "vote"]
    assert (vote.actor, vote.via) == ("dave", "link")
    # a second link for the same person: dave has voted, it refuses and spends nothing
    again = _post(client, second, "approve")
    assert again.status_code == 403 and "Dave has already voted on this" in again.text
    assert engine.spent_at(_nonce(second)) is None
    last = _link(engine, iid, approver="erin")
    assert _post(client, last, "approve").status_code == 200
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via) == ("erin", "link")
    assert decision.detail is not None and decision.detail["link"] == _nonce(last)
    assert vote.detail is not None and vote.detail["link"] == _nonce(first)


def test_carol_cannot_complete_a_quorum_with_daves_link(shop: Any) -> None:
    """carol (an operator) votes on a 2-of-3 purchase, then opens dave's link: signed in, it is
    refused and decides nothing; signed out, the link acts as dave, and only as dave (a link
    is its addressee's credential, delivered to them alone)."""
    engine, client = shop
    iid = engine.start(Purchase, actor="bob")
    engine.send(iid, "decision", {"approved": True}, actor="carol", via="web")
    daves = _link(engine, iid, approver="dave")
    sign_in(client, "carol")
    before = _unchanged(engine, iid)
    page = client.get(daves)
    assert page.status_code == 403
    assert "This link is for dave; you are signed in as carol" in page.text
    refused = client.post(
        daves, data={"decision": "approve", "link_form": "x"}, headers={"Origin": ORIGIN}
    )
    assert refused.status_code == 403 and "This link is for dave" in refused.text
    assert _unchanged(engine, iid) == before and engine.get(iid).status == "waiting"
    # a link for carol herself would be her second vote: none is made
    with pytest.raises(Exception, match="carol has already voted"):
        _link(engine, iid, approver="carol")
    with TestClient(client.app, base_url=ORIGIN) as signed_out:
        done = _post(signed_out, daves, "approve")
    assert done.status_code == 200 and "Approved as dave" in done.text
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via) == ("dave", "link")
    assert engine.outcome(iid).decisions[-1].votes == ["carol", "dave"]


def test_allow_self_holds_through_links(shop: Any) -> None:
    engine, client = shop
    iid = engine.start(Purchase, actor="carol")  # carol asks: she may not decide it
    with pytest.raises(Exception, match="carol started this instance"):
        _link(engine, iid, approver="carol")
    daves = _link(engine, iid, approver="dave")
    sign_in(client, "carol")
    assert client.get(daves).status_code == 403
    assert [h for h in engine.history(iid) if h.kind in ("vote", "decision")] == []


def test_a_link_whose_addressee_handed_over_their_part(client: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    path = _link(engine, iid)
    engine.reassign(iid, to="bob", actor="alice", reason="on leave")
    before = _unchanged(engine, iid)
    page = client.get(path)
    assert page.status_code == 403 and "Alice may not decide this: only bob may." in page.text
    assert _post(client, path, "approve").status_code == 403
    assert _unchanged(engine, iid) == before
