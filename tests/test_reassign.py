"""Reassign and delegate (engine/runtime/handovers.py, core/handover.py): an approver hands
their part of an open approval to someone else, an operator does it for them, or a delegation
does it for the waits that begin while they are away. Quorum counts distinct people after
every hand-over, the starter of an `allow_self=False` approval never decides, every refusal
changes nothing, and every hand-over is in the history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import Clock
from signoff.engine import (
    Approval,
    AsyncEngine,
    Decision,
    Engine,
    InstanceNotFound,
    InvalidData,
    NotAllowed,
    NotWaiting,
    On,
    Return,
    S,
    Step,
    Wait,
    Workflow,
)
from signoff.engine.runtime.slack_client import make_client
from signoff.web import create_app
from slack_fake import SECRET, TOKEN, FakeSlack, click, form, signed, submission
from web_support import HX, ORIGIN, TestClient, form_data, make_app, parse, sign_in


class Purchase(Workflow):
    """Two of alice, bob and carol approve; never the one who asked. Steps append to trace."""

    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Step("ask", lambda: self.trace.append("ask")),
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        approve=self.yes,
                        title="A new laptop",
                        approvers=["alice", "bob", "carol"],
                        required=2,
                        allow_self=False,
                    ),
                ),
            ),
            Step("buy", lambda: self.trace.append("buy")),
            Return("+".join(self.trace)),
        )

    def yes(self, decision: Decision) -> None:
        self.trace.append("approved by " + ",".join(str(v.actor) for v in decision.votes))


class Budget(Workflow):
    """Anyone in finance approves."""

    def definition(self) -> S:
        return S(
            Wait("approval", On("decision", Approval(approvers=["group:finance"]))),
            Return("ok"),
        )


class Open(Workflow):
    """Anyone approves: there is no part to hand over."""

    def definition(self) -> S:
        return S(Wait("approval", On("decision", Approval())), Return("ok"))


WORKFLOWS = [Purchase, Budget, Open]
YES = {"approved": True}


@pytest.fixture
def engine(any_url: str, clock: Clock) -> Iterator[Engine]:
    eng = Engine(
        any_url,
        WORKFLOWS,
        clock=clock,
        operators=["olga"],
        groups={"finance": ["alice", "bob"]},
    )
    yield eng
    eng.close()


def _handovers(engine: Engine, iid: str) -> list[Any]:
    return [h for h in engine.history(iid) if h.kind == "reassigned"]


def _state(engine: Engine, iid: str) -> tuple[int, int]:
    return engine.get(iid).version, len(engine.history(iid))


def test_a_part_handed_over_moves_to_the_new_person(engine: Engine) -> None:
    iid = engine.start(Purchase, actor="dave")
    view = engine.reassign(iid, to="erin", actor="alice", reason="on leave")
    (wait,) = view.threads[0].waits
    assert wait.info["deciders"] == ["bob", "carol", "erin"]
    (entry,) = _handovers(engine, iid)
    assert (entry.actor, entry.message) == ("alice", "alice handed their part to erin: on leave")
    assert entry.detail["from"] == "alice" and entry.detail["to"] == "erin"
    # the old one can no longer decide; the new one can, and sees it in their inbox
    with pytest.raises(NotAllowed, match="alice may not decide"):
        engine.send(iid, "decision", YES, actor="alice")
    assert [r["instance_id"] for r in engine.inbox("erin")] == [iid]
    assert engine.inbox("alice") == [] and engine.inbox_count("alice") == 0
    assert engine.open_approvals()[0]["approvers"] == ["bob", "carol", "erin"]
    assert engine.get(iid, actor="erin").id == iid  # who sees what follows
    engine.send(iid, "decision", YES, actor="erin")
    engine.send(iid, "decision", YES, actor="bob")
    assert engine.get(iid).result == "ask+approved by erin,bob+buy"
    # once it is over, erin still sees the request she was handed
    assert engine.get(iid, actor="erin").status == "completed"


def test_quorum_counts_distinct_people_after_every_handover(engine: Engine) -> None:
    iid = engine.start(Purchase, actor="dave")
    engine.send(iid, "decision", YES, actor="alice")
    before = _state(engine, iid)
    # a part voted with is spent: neither alice nor an operator hands it on
    with pytest.raises(NotAllowed, match="already voted"):
        engine.reassign(iid, to="erin", actor="alice")
    with pytest.raises(NotAllowed, match="alice has already voted on this: their part is spent"):
        engine.reassign(iid, to="erin", actor="olga", of="alice")
    # nor is a part handed to someone who voted already: alice would count twice
    with pytest.raises(NotAllowed, match="alice has already voted"):
        engine.reassign(iid, to="alice", actor="bob")
    assert _state(engine, iid) == before
    # bob -> erin -> frank: one part, one vote, whoever holds it last
    engine.reassign(iid, to="erin", actor="bob")
    engine.reassign(iid, to="frank", actor="erin", reason="not my area")
    with pytest.raises(NotAllowed):
        engine.send(iid, "decision", YES, actor="erin")
    with pytest.raises(NotAllowed):
        engine.send(iid, "decision", YES, actor="bob")
    assert engine.get(iid).status == "waiting"
    engine.send(iid, "decision", YES, actor="frank")
    assert engine.get(iid).result == "ask+approved by alice,frank+buy"
    assert [h.message for h in _handovers(engine, iid)] == [
        "bob handed their part to erin",
        "erin handed their part to frank: not my area",
    ]


def test_allow_self_still_refuses_the_starter(engine: Engine) -> None:
    iid = engine.start(Purchase, actor="carol")  # carol asks; she is also named an approver
    before = _state(engine, iid)
    with pytest.raises(NotAllowed, match="carol started this instance"):
        engine.reassign(iid, to="carol", actor="olga", of="alice")
    with pytest.raises(NotAllowed, match="carol started this instance"):
        engine.reassign(iid, to="carol", actor="alice")
    # carol may not decide, so she has no part to hand on herself, to a friend either
    with pytest.raises(NotAllowed, match="carol started this instance"):
        engine.reassign(iid, to="mallory", actor="carol")
    assert _state(engine, iid) == before
    # an operator may move carol's part to someone who may decide it
    engine.reassign(iid, to="erin", actor="olga", of="carol", reason="separation of duties")
    assert _handovers(engine, iid)[0].message == (
        "olga handed carol's part to erin: separation of duties"
    )
    engine.send(iid, "decision", YES, actor="erin")
    engine.send(iid, "decision", YES, actor="alice")
    assert engine.get(iid).status == "completed"


@pytest.mark.parametrize(
    ("to", "actor", "of", "error", "match"),
    [
        ("group:finance", "alice", None, InvalidData, "a group is never an actor"),
        ("GROUP:x", "alice", None, InvalidData, "a group is never an actor"),
        ("alice", "alice", None, InvalidData, "cannot hand a part to themselves"),
        ("olga", "olga", "alice", InvalidData, "cannot hand a part to themselves"),
        ("bob", "alice", None, InvalidData, "bob may already decide this"),
        ("erin", "mallory", None, NotAllowed, "mallory may not decide this"),
        ("erin", "mallory", "alice", NotAllowed, "only alice or an operator may"),
        ("erin", "olga", "mallory", NotAllowed, "mallory may not decide this, so has no part"),
        ("erin", "olga", None, NotAllowed, "olga may not decide this, so has no part"),
        ("erin", None, None, InvalidData, "say whose part"),
        ("", "alice", None, InvalidData, "must be non-empty"),
        ("er\nin", "alice", None, InvalidData, "control character"),
        ("x" * 201, "alice", None, InvalidData, "longer than 200"),
    ],
)
def test_refused_reassignments_change_nothing(
    engine: Engine, to: str, actor: str | None, of: str | None, error: type, match: str
) -> None:
    iid = engine.start(Purchase, actor="dave")
    before = _state(engine, iid)
    with pytest.raises(error, match=match):
        engine.reassign(iid, to=to, actor=actor, of=of)
    assert _state(engine, iid) == before
    assert engine.get(iid).threads[0].waits[0].info["deciders"] == ["alice", "bob", "carol"]


def test_nothing_to_hand_over(engine: Engine) -> None:
    with pytest.raises(InstanceNotFound):
        engine.reassign("nope", to="erin", actor="alice")
    iid = engine.start(Open)
    with pytest.raises(InvalidData, match="anyone may decide this"):
        engine.reassign(iid, to="erin", actor="olga", of="alice")
    engine.send(iid, "decision", YES)
    with pytest.raises(Exception, match="already completed"):
        engine.reassign(iid, to="erin", actor="olga", of="alice")
    iid = engine.start(Purchase, actor="dave")
    with pytest.raises(NotWaiting, match="no approval 'other'"):
        engine.reassign(iid, to="erin", actor="alice", event="other")
    with pytest.raises(Exception, match="reason is longer"):
        engine.reassign(iid, to="erin", actor="alice", reason="x" * 2001)


def test_a_group_member_hands_on_their_own_part_only(engine: Engine) -> None:
    iid = engine.start(Budget)
    engine.reassign(iid, to="erin", actor="alice")
    with pytest.raises(NotAllowed, match="alice handed their part of this to someone else"):
        engine.send(iid, "decision", YES, actor="alice")
    assert engine.decision_refusals(iid, "bob") == {("main", "decision"): None}
    assert engine.get(iid).threads[0].waits[0].info["deciders"] == ["group:finance", "erin"]
    engine.send(iid, "decision", YES, actor="erin")
    assert engine.get(iid).status == "completed"


def test_delegates_route_new_requests_while_away(any_url: str, clock: Clock) -> None:
    back = clock() + timedelta(days=1)
    engine = Engine(any_url, WORKFLOWS, clock=clock, delegates={"alice": ("erin", back)})
    try:
        first = engine.start(Purchase, actor="dave")
        (entry,) = _handovers(engine, first)
        assert entry.actor is None and entry.via == "delegation"
        assert entry.message == f"alice's part went to erin: away until {back:%Y-%m-%d %H:%M} UTC"
        assert engine.get(first).threads[0].waits[0].info["deciders"] == ["bob", "carol", "erin"]
        with pytest.raises(NotAllowed):
            engine.send(first, "decision", YES, actor="alice")
        # a delegation set by bob on the dashboard (kept in the database)
        engine.set_delegate("bob", "frank", clock() + timedelta(hours=2))
        assert engine.delegate_of("bob") == ("frank", clock() + timedelta(hours=2))
        second = engine.start(Purchase, actor="dave")
        assert engine.get(second).threads[0].waits[0].info["deciders"] == [
            "carol",
            "erin",
            "frank",
        ]
        engine.clear_delegate("bob")
        assert engine.delegate_of("bob") is None
        clock.advance(days=2)  # alice is back: her new requests are hers again
        third = engine.start(Purchase, actor="dave")
        assert _handovers(engine, third) == []
        engine.send(third, "decision", YES, actor="alice")
        # what began while she was away stays with erin
        with pytest.raises(NotAllowed):
            engine.send(first, "decision", YES, actor="alice")
        # a delegation to the starter of an allow_self=False approval is not made
        engine.set_delegate("carol", "dave", clock() + timedelta(hours=1))
        fourth = engine.start(Purchase, actor="dave")
        assert _handovers(engine, fourth) == []
    finally:
        engine.close()


def test_bad_delegations_are_refused(engine: Engine, clock: Clock, any_url: str) -> None:
    soon = clock() + timedelta(hours=1)
    for to, until, match in [
        ("alice", soon, "themselves"),
        ("group:x", soon, "a group is never"),
        ("erin", clock() - timedelta(seconds=1), "in the future"),
        ("erin", soon.replace(tzinfo=None), "aware"),
        ("erin", clock() + timedelta(days=400), "at most"),
    ]:
        with pytest.raises(InvalidData, match=match):
            engine.set_delegate("alice", to, until)
    assert engine.delegate_of("alice") is None
    with pytest.raises(InvalidData, match="themselves"):
        Engine(any_url, WORKFLOWS, clock=clock, delegates={"alice": ("alice", soon)})


def test_the_new_person_is_told_in_slack(sqlite_url: str, clock: Clock) -> None:
    slack = FakeSlack().start()
    engine = Engine(
        sqlite_url,
        WORKFLOWS,
        clock=clock,
        slack=make_client(TOKEN, slack.url),
        slack_users={"alice": "U0ALICE", "erin": "U0ERIN"},
    )
    try:
        iid = engine.start(Purchase, actor="dave")
        engine.deliver_notices()  # Slack messages go after the commit that made them due
        assert [m.channel for m in slack.posted()] == ["D0ALICE"]
        engine.reassign(iid, to="erin", actor="alice", reason="on leave")
        engine.deliver_notices()
        told = [m for m in slack.posted() if m.channel == "D0ERIN"]
        assert len(told) == 1 and "Approve" in told[0].words()
        assert "<@U0ERIN>" in told[0].words()  # who may decide now
        # alice's message is edited to show it; nobody is told twice
        alice_message = next(m for m in slack.posted() if m.channel == "D0ALICE")
        assert alice_message.edits >= 1 and "<@U0ALICE>" not in alice_message.words()
        engine.run_due(clock() + timedelta(minutes=1))
        assert len([m for m in slack.posted() if m.channel == "D0ERIN"]) == 1
        assert {"channel": "D0ERIN", "ts": told[0].ts} in engine.announcements(iid, "main:1")
    finally:
        engine.close()
        slack.stop()


def test_async_engine_reassigns(sqlite_url: str, clock: Clock) -> None:
    async def main() -> list[str] | None:
        engine = AsyncEngine(sqlite_url, WORKFLOWS, clock=clock)
        try:
            iid = await engine.start(Purchase, actor="dave")
            view = await engine.reassign(iid, to="erin", actor="alice")
            deciders: list[str] | None = view.threads[0].waits[0].info["deciders"]
            return deciders
        finally:
            await engine.close()

    assert asyncio.run(main()) == ["bob", "carol", "erin"]


# --- the surfaces: the instance page, the inbox, the API, the away page, Slack -------------------


@pytest.fixture
def site(sqlite_url: str, clock: Clock) -> Iterator[tuple[Engine, TestClient]]:
    """alice, bob and carol sign in with passwords (web_support); carol operates."""
    engine = Engine(sqlite_url, WORKFLOWS, clock=clock, operators=["carol"])
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as client:
        yield engine, client
    engine.close()


def _signed_in(client: TestClient, name: str) -> TestClient:
    client.headers["X-CSRF-Token"] = sign_in(client, name)
    client.headers["Origin"] = ORIGIN
    return client


def _deciders(engine: Engine, iid: str) -> list[str]:
    found: list[str] = engine.get(iid).threads[0].waits[0].info["deciders"]
    return found


def test_reassign_on_the_instance_page(site: Any) -> None:
    engine, client = site
    iid = engine.start(Purchase, actor="dave")
    alice = _signed_in(client, "alice")
    page = alice.get(f"/instances/{iid}")
    (form,) = [
        f for f in parse(page.text).find_all("form") if "reassign" in (f.attrs["action"] or "")
    ]
    data = form_data(form)
    assert data["wait_key"] == engine.get(iid).threads[0].waits[0].key and "of" not in data
    before = _state(engine, iid)
    refused = alice.post(f"/instances/{iid}/reassign", data={**data, "to": "group:x"}, headers=HX)
    assert refused.status_code == 422 and "a group is never an actor" in refused.text
    assert _state(engine, iid) == before
    done = alice.post(
        f"/instances/{iid}/reassign", data={**data, "to": "erin", "why": "on leave"}, headers=HX
    )
    assert done.status_code == 200 and "Handed over to erin" in done.text
    assert "bob, carol, erin" in done.text  # who may decide now
    assert "alice handed their part to erin: on leave" in done.text  # the history, on the page
    assert (_handovers(engine, iid)[0].actor, _handovers(engine, iid)[0].via) == ("alice", "web")
    # a stale form (the wait key of an opening that is over) hands nothing over
    engine.send(iid, "decision", YES, actor="bob")
    engine.send(iid, "decision", YES, actor="erin")
    stale = alice.post(f"/instances/{iid}/reassign", data={**data, "to": "frank"}, headers=HX)
    assert stale.status_code == 409


def test_an_operator_reassigns_someones_part_on_the_page(site: Any) -> None:
    engine, client = site
    iid = engine.start(Purchase, actor="carol")  # carol may not decide her own request
    carol = _signed_in(client, "carol")
    page = carol.get(f"/instances/{iid}")
    (form,) = [
        f for f in parse(page.text).find_all("form") if "reassign" in (f.attrs["action"] or "")
    ]
    data = {**form_data(form), "of": "carol", "to": "erin"}
    assert carol.post(f"/instances/{iid}/reassign", data=data, headers=HX).status_code == 200
    assert _deciders(engine, iid) == ["alice", "bob", "erin"]


def test_reassign_from_the_inbox(site: Any) -> None:
    engine, client = site
    iid = engine.start(Purchase, actor="dave")
    alice = _signed_in(client, "alice")
    inbox = alice.get("/approvals")
    (form,) = [
        f
        for f in parse(inbox.text).find_all("form")
        if f.attrs.get("action") == "/approvals/reassign"
    ]
    sent = alice.post("/approvals/reassign", data={**form_data(form), "to": "erin"})
    assert sent.status_code == 303 and sent.headers["location"] == "/approvals"
    after = alice.get("/approvals")
    assert "Handed over to erin" in after.text and iid[:12] not in after.text
    assert [r["instance_id"] for r in engine.inbox("erin")] == [iid]
    # refused: told on the inbox, nothing changes
    before = _state(engine, iid)
    _signed_in(client, "bob")
    client.post("/approvals/reassign", data=form_data(form) | {"to": "carol"})
    assert "carol may already decide this" in client.get("/approvals").text
    assert _state(engine, iid) == before


def test_reassign_through_the_api(site: Any) -> None:
    engine, client = site
    iid = engine.start(Purchase, actor="dave")
    alice = {"Authorization": "Bearer token-alice-0123456789"}
    bob = {"Authorization": "Bearer token-bob-0123456789"}
    before = _state(engine, iid)
    for body, headers, status in [
        ({}, alice, 422),
        ({"to": 5}, alice, 422),
        ({"to": "bob"}, alice, 422),
        ({"to": "group:finance"}, alice, 422),
        ({"to": "erin", "of": "alice"}, bob, 403),
        ({"to": "erin", "event": "nope"}, alice, 409),
    ]:
        answer = client.post(f"/api/instances/{iid}/reassign", json=body, headers=headers)
        assert answer.status_code == status, (body, answer.text)
        assert "error" in answer.json()
    assert _state(engine, iid) == before
    assert (
        client.post("/api/instances/nope/reassign", json={"to": "erin"}, headers=alice).status_code
        == 404
    )
    done = client.post(
        f"/api/instances/{iid}/reassign", json={"to": "erin", "reason": "on leave"}, headers=alice
    )
    assert done.status_code == 200
    assert done.json()["threads"][0]["waits"][0]["info"]["deciders"] == ["bob", "carol", "erin"]
    assert _handovers(engine, iid)[0].via == "api"
    assert (
        "/api/instances/{instance_id}/reassign" in client.get("/api/openapi.json").json()["paths"]
    )


def test_the_away_page_sets_a_delegation(site: Any, clock: Clock) -> None:
    engine, client = site
    alice = _signed_in(client, "alice")
    assert "Your new requests come to you" in alice.get("/away").text
    until = (clock() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    for bad in [
        {"to": "alice", "until": until},
        {"to": "erin", "until": "garbage"},
        {"to": "erin"},
    ]:
        assert alice.post("/away", data=bad).status_code == 422
    assert engine.delegate_of("alice") is None
    saved = alice.post("/away", data={"to": "erin", "until": until})
    assert saved.status_code == 200 and "your new requests go to erin" in saved.text
    iid = engine.start(Purchase, actor="dave")
    assert _deciders(engine, iid) == ["bob", "carol", "erin"]
    back = alice.post("/away", data={"back": "1"})
    assert back.status_code == 200 and "Welcome back" in back.text
    assert engine.delegate_of("alice") is None
    assert _deciders(engine, engine.start(Purchase, actor="dave")) == ["alice", "bob", "carol"]


def test_reassign_in_slack(sqlite_url: str, clock: Clock) -> None:
    slack = FakeSlack().start()
    engine = Engine(
        sqlite_url,
        WORKFLOWS,
        clock=clock,
        slack=make_client(TOKEN, slack.url),
        slack_users={"alice": "U0ALICE", "erin": "U0ERIN", "bob": "U0BOB"},
    )
    app = create_app(engine, secret_key="s" * 32, slack_signing_secret=SECRET)
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:

            def interact(payload: dict[str, Any]) -> Any:
                body = form(payload)
                answer = client.post("/slack/interactions", content=body, headers=signed(body))
                app.state.signoff.slack.idle()
                engine.deliver_notices()  # what the interaction queued, after its commit
                return answer

            iid = engine.start(Purchase, actor="dave")
            engine.deliver_notices()
            mine = next(m for m in slack.posted() if m.channel == "D0ALICE")
            assert "signoff_reassign" in mine.buttons()
            assert interact(click(mine, "signoff_reassign", "U0ALICE")).status_code == 200
            (view,) = slack.opened_views()
            assert view["callback_id"] == "signoff_reassign"
            assert view["blocks"][0]["element"]["type"] == "users_select"
            # nobody chosen: the form stays open and says so
            empty = interact(_picked(view, "U0ALICE", None))
            assert empty.json()["response_action"] == "errors"
            before = _state(engine, iid)
            # erin is chosen: the form closes, erin is told, alice may no longer decide
            done = interact(_picked(view, "U0ALICE", "U0ERIN", "on leave"))
            assert done.status_code == 200 and done.text == ""
            assert _state(engine, iid) != before
            assert _deciders(engine, iid) == ["bob", "carol", "erin"]
            entry = _handovers(engine, iid)[0]
            assert (entry.actor, entry.via, entry.message) == (
                "alice",
                "slack",
                "alice handed their part to erin: on leave",
            )
            assert [m.channel for m in slack.posted()].count("D0ERIN") == 1
            # a second hand-over of the same part, from the old message: refused to alice
            again = interact(_picked(view, "U0ALICE", "U0BOB"))
            assert again.json()["response_action"] == "errors"
            assert _deciders(engine, iid) == ["bob", "carol", "erin"]
    finally:
        engine.close()
        slack.stop()


def _picked(view: dict[str, Any], user: str, chosen: str | None, reason: str = "") -> Any:
    payload = submission(view, user, reason)
    values = payload["view"]["state"]["values"]
    values["to"] = {"to": {"type": "users_select", "selected_user": chosen}}
    values["reason"] = {"reason": {"type": "plain_text_input", "value": reason}}
    return payload
