"""Approve and deny from Slack, and every surface in step: the fake Slack (tests/slack_fake.py)
is a real local server that slack-sdk talks to; the interactions come back signed, exactly as
Slack sends them, to the real app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import Clock
from signoff.engine import Approval, Engine, On, Return, S, Step, Timeout, Wait, Workflow
from signoff.engine.runtime.slack_client import make_client
from signoff.web import create_app
from slack_fake import (
    APP,
    SECRET,
    TEAM,
    TOKEN,
    FakeSlack,
    Message,
    click,
    form,
    signed,
    submission,
)
from web_support import ORIGIN, TestClient, make_app, sign_in

APPROVE, DENY, REASSIGN = "signoff_approve", "signoff_deny", "signoff_reassign"
ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"
API_TOKEN = "t-carol-0123456789"
BOB_TOKEN = "t-bob-0123456789"


class Expense(Workflow):
    amount: int = 120
    purpose: str = "team lunch"
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        approve=self.approved,
                        deny=self.denied,
                        title="Expense",
                        text="Please approve this expense",
                        approvers=["alice", "bob"],
                        slack_channel="C0APPROVALS",
                        allow_self=False,
                    ),
                ),
                On("timeout", Timeout(after=timedelta(hours=1)), Step("late", self.late)),
            ),
            Return("+".join(self.trace)),
        )

    def approved(self, decision: Any) -> None:
        self.trace.append(f"approved by {decision.actor} via {decision.via}")

    def denied(self, decision: Any) -> None:
        self.trace.append(f"denied by {decision.actor}: {decision.reason}")

    def late(self) -> None:
        self.trace.append("timed out")


class Quorum(Workflow):
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Wait(
                "sign-off",
                On(
                    "decision",
                    Approval(
                        approve=lambda d: self.trace.append("approved"),
                        title="Two signatures",
                        approvers=["alice", "bob"],
                        required=2,
                    ),
                ),
            ),
            Return("+".join(self.trace)),
        )


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def engine(sqlite_url: str, clock: Clock, slack: FakeSlack) -> Iterator[Engine]:
    engine = Engine(
        sqlite_url,
        [Expense, Quorum],
        clock=clock,
        slack=make_client(TOKEN, slack.url),
        slack_users={"alice": ALICE, "bob": BOB},
        operators=["carol"],
        base_url="https://signoff.example.com",
    )
    yield engine
    engine.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    app = create_app(
        engine,
        secret_key="s" * 32,
        api_tokens={API_TOKEN: "carol", BOB_TOKEN: "bob"},
        slack_signing_secret=SECRET,
        slack_team_id=TEAM,
        slack_app_id=APP,
    )
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def send(client: TestClient, payload: dict[str, Any], **sign: Any) -> Any:
    """Send an interaction, let the app apply it, then deliver what it queued (the edits)."""
    body = form(payload)
    response = client.post("/slack/interactions", content=body, headers=signed(body, **sign))
    client.app.state.signoff.slack.idle()  # type: ignore[attr-defined]
    client.app.state.signoff.engine.deliver_notices()  # type: ignore[attr-defined]
    return response


def the_message(slack: FakeSlack, engine: Engine) -> Message:
    """The one message posted, once the outbox delivered what the commits queued."""
    engine.deliver_notices()
    (message,) = slack.posted()
    return message


# --- the stories ------------------------------------------------------------------------------


def test_approve_from_slack(engine: Engine, client: TestClient, slack: FakeSlack) -> None:
    iid = engine.start(Expense, id="exp-1")
    message = the_message(slack, engine)
    words = message.words()
    for shown in (
        "Expense",
        "Please approve this expense",
        "*amount*\n120",
        "*purpose*\nteam lunch",
        f"<@{ALICE}>, <@{BOB}>",
        "Deadline:",
        "<https://signoff.example.com/instances/exp-1|Expense exp-1>",
    ):
        assert shown in words
    assert set(message.buttons()) == {APPROVE, DENY, REASSIGN}
    wait = engine.get(iid).thread("main").waits[0]
    [notice] = wait.stored["slack_notices"]
    assert wait.stored == {
        "slack_notices": [
            {
                "key": notice["key"],
                "to": "C0APPROVALS",
                "person": "C0APPROVALS",
                "wait_key": "main:1",
            }
        ],
        "slack_shown": [0, False],
        "deadline": "2026-01-05T10:00:00+00:00",
    }
    # where it went is kept with its outbox row, and carries the row's key in its metadata
    assert engine.announcements(iid, "main:1") == [{"channel": "C0APPROVALS", "ts": message.ts}]
    assert message.metadata == {
        "event_type": "signoff_notice",
        "event_payload": {"key": notice["key"]},
    }

    response = send(client, click(message, APPROVE, ALICE))
    assert response.status_code == 200
    got = engine.get(iid)
    assert (got.status, got.result) == ("completed", "approved by alice via slack")
    assert f"*Approved* by <@{ALICE}> at <!date^" in message.words()
    assert message.buttons() == {}
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via) == ("alice", "slack")


def test_deny_with_a_reason_through_the_form(
    engine: Engine, client: TestClient, slack: FakeSlack
) -> None:
    iid = engine.start(Expense)
    message = the_message(slack, engine)
    payload = click(message, DENY, BOB)
    assert send(client, payload).status_code == 200
    (opened,) = slack.called("views.open")
    assert opened["trigger_id"] == payload["trigger_id"]
    (view,) = slack.opened_views()
    assert engine.get(iid).status == "waiting"  # opening the form decides nothing

    refused = send(client, submission(view, BOB, "   "))  # the engine wants a reason
    assert refused.status_code == 200
    assert refused.json() == {
        "response_action": "errors",
        "errors": {"reason": "A reason is required to deny: say why."},
    }
    assert engine.get(iid).status == "waiting"

    assert send(client, submission(view, BOB, "too expensive")).status_code == 200
    got = engine.get(iid)
    assert (got.status, got.result) == ("completed", "denied by bob: too expensive")
    assert f"*Denied* by <@{BOB}> at <!date^" in message.words()
    assert message.words().endswith(": too expensive")
    assert message.buttons() == {}


def test_a_decision_on_the_web_edits_the_message(
    engine: Engine, client: TestClient, slack: FakeSlack
) -> None:
    iid = engine.start(Expense)
    message = the_message(slack, engine)
    stale = click(message, APPROVE, ALICE)  # alice's Slack still shows the buttons
    response = client.post(
        f"/api/instances/{iid}/events/decision",
        json={"payload": {"approved": True}},
        headers={"Authorization": f"Bearer {BOB_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    assert engine.get(iid).result == "approved by bob via api"
    engine.deliver_notices()  # the edit goes after the decision's commit
    assert f"*Approved* by <@{BOB}> at <!date^" in message.words()
    assert "(via api)" in message.words()
    assert message.buttons() == {}

    # the old button, clicked now, is refused in plain words and changes nothing
    late = send(client, stale)
    assert late.status_code == 409
    assert slack.ephemerals(ALICE) == [
        "'approval' was already decided: approved by bob at 2026-01-05 09:00:00 UTC."
    ]
    assert engine.get(iid).result == "approved by bob via api"


def test_a_timeout_edits_the_message(
    engine: Engine, client: TestClient, slack: FakeSlack, clock: Clock
) -> None:
    iid = engine.start(Expense)
    message = the_message(slack, engine)
    engine.run_due(clock.advance(hours=1))
    assert engine.get(iid).result == "timed out"
    assert "*Timed out* at <!date^" in message.words()
    assert message.buttons() == {}


def test_cancel_and_goto_say_so(engine: Engine, client: TestClient, slack: FakeSlack) -> None:
    first = engine.start(Expense)
    engine.deliver_notices()
    engine.cancel(first, "duplicate request", actor="carol")
    second = engine.start(Expense)
    engine.deliver_notices()
    engine.goto(second, "main", "late", actor="carol")
    engine.deliver_notices()
    cancelled, moved = slack.posted()
    assert "*Cancelled* by carol at <!date^" in cancelled.words()
    assert cancelled.words().endswith(": duplicate request")
    assert "*Moved on by an operator* (carol) at" in moved.words()
    assert cancelled.buttons() == moved.buttons() == {}
    assert engine.get(second).result == "timed out"


def test_each_vote_of_a_quorum_updates_the_messages(
    engine: Engine, client: TestClient, slack: FakeSlack
) -> None:
    iid = engine.start(Quorum)
    engine.deliver_notices()
    to_alice, to_bob = slack.posted()  # no channel: a direct message to each approver
    assert (to_alice.channel, to_bob.channel) == ("D0ALICE", "D0BOB")
    assert "*0 of 2 approvals*" in to_alice.words()

    assert send(client, click(to_alice, APPROVE, ALICE)).status_code == 200
    for message in (to_alice, to_bob):
        assert f"*1 of 2 approvals*: <@{ALICE}>" in message.words()
        assert set(message.buttons()) == {APPROVE, DENY, REASSIGN}
    vote = next(h for h in engine.history(iid) if h.kind == "vote")
    assert (vote.actor, vote.via, vote.message) == ("alice", "slack", "approved (1 of 2)")

    # a second click of the same person: refused, in words, and counted once
    assert send(client, click(to_alice, APPROVE, ALICE)).status_code == 200
    assert slack.ephemerals(ALICE) == ["Alice has already voted on this; each approver votes once."]

    assert send(client, click(to_bob, APPROVE, BOB)).status_code == 200
    assert engine.get(iid).result == "approved"
    for message in (to_alice, to_bob):
        assert f"*Approved* by <@{ALICE}> and <@{BOB}> at" in message.words()
        assert message.buttons() == {}


@pytest.mark.parametrize(
    ("user", "refusal"),
    [
        (MALLORY, "U0MALLORY may not decide this: only alice, bob may."),
        ("U0CAROL", "U0CAROL may not decide this: only alice, bob may."),  # an operator, unmapped
    ],
)
def test_someone_else_is_refused_with_an_ephemeral_message(
    engine: Engine, client: TestClient, slack: FakeSlack, user: str, refusal: str
) -> None:
    iid = engine.start(Expense)
    message = the_message(slack, engine)
    before, history = engine.get(iid), engine.history(iid)
    for action in (APPROVE, DENY):
        assert send(client, click(message, action, user)).status_code == 200
    assert slack.ephemerals(user) == [refusal, refusal]
    assert slack.called("views.open") == []
    assert (engine.get(iid), engine.history(iid)) == (before, history)
    assert message.edits == 0


def test_the_starter_is_refused_when_the_approval_wants_another_person(
    engine: Engine, client: TestClient, slack: FakeSlack
) -> None:
    iid = engine.start(Expense, actor="alice")
    assert send(client, click(the_message(slack, engine), APPROVE, ALICE)).status_code == 200
    assert slack.ephemerals(ALICE) == [
        "Alice started this instance and may not decide it (separation of duties)."
    ]
    assert engine.get(iid).status == "waiting"


def test_forged_expired_and_replayed_requests_are_refused(
    engine: Engine, client: TestClient, slack: FakeSlack
) -> None:
    import time

    iid = engine.start(Expense)
    message = the_message(slack, engine)
    before = engine.get(iid)
    forged = send(client, click(message, APPROVE, ALICE), secret="not-the-secret")
    assert (forged.status_code, forged.text) == (
        401,
        "the signature does not match: not from Slack, or a wrong secret",
    )
    expired = send(client, click(message, APPROVE, ALICE), timestamp=int(time.time()) - 301)
    assert expired.status_code == 401
    assert "more than five minutes old" in expired.text
    body = form(click(message, DENY, BOB))
    unsigned = client.post("/slack/interactions", content=body)
    assert (unsigned.status_code, unsigned.text) == (
        401,
        "the request is not signed (X-Slack-Signature is missing)",
    )
    assert engine.get(iid) == before and slack.calls[1:] == []

    headers = signed(body)
    assert client.post("/slack/interactions", content=body, headers=headers).status_code == 200
    client.app.state.signoff.slack.idle()  # type: ignore[attr-defined]
    replayed = client.post("/slack/interactions", content=body, headers=headers)
    assert (replayed.status_code, replayed.text) == (
        409,
        "this interaction was received before; it is applied only once",
    )
    client.app.state.signoff.slack.idle()  # type: ignore[attr-defined]
    assert len(slack.called("views.open")) == 1  # the form opened once
    assert engine.get(iid) == before


def test_slack_answers_429_then_500_then_recovers(
    engine: Engine, client: TestClient, slack: FakeSlack, clock: Clock
) -> None:
    """Slack is down when the wait begins: the wait is set up at once (its announcement waits
    in the outbox), each failed attempt is in the history with its retry delay and on the
    wait's card, and the message is posted once when Slack is back; so is the edit."""
    slack.fail_next(1, 429, retry_after=30)
    iid = engine.start(Expense)
    assert engine.get(iid).thread("main").waits[0].setup == "done"
    assert engine.deliver_notices() == 0
    assert slack.posted() == []
    refused = (
        "Slack message to C0APPROVALS failed: Slack refused chat.postMessage: ratelimited "
        "(HTTP 429); it asks us to wait 30 s"
    )
    [row] = engine.deliveries(iid, "bob")
    assert row["words"] == f"{refused}, retrying in 30 s"
    assert "address" not in row and engine.deliveries(iid, "carol")[0]["address"] == "C0APPROVALS"
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as web:
        sign_in(web, "bob")
        card = web.get(f"/instances/{iid}").text
        assert f"{refused}, retrying in 30 s" in card and "(C0APPROVALS)" not in card

    engine.run_due(clock.advance(seconds=29))  # not before Slack said
    assert len(slack.calls) == 1
    # a 429 posted nothing, so the retry posts without looking; it gets a 500, which may
    # have posted: the next attempt looks for its key first, finds nothing, and posts
    slack.fail_next(1, 500)
    engine.run_due(clock.advance(seconds=1))
    assert slack.called("conversations.history") == []
    slack.fail_next(1, 500)  # the look itself fails: that attempt fails, it never posts blind
    engine.run_due(clock.advance(seconds=2))
    assert len(slack.called("chat.postMessage")) == 2
    engine.run_due(clock.advance(seconds=4))
    look = {"channel": "C0APPROVALS", "limit": "100", "include_all_metadata": "1"}
    assert slack.called("conversations.history") == [look, look]
    message = the_message(slack, engine)  # posted once
    assert len(slack.called("chat.postMessage")) == 3
    told = [h.message for h in engine.history(iid) if h.kind.startswith("notice")]
    assert told == [
        f"{refused}, retrying in 30 s",
        "Slack message to C0APPROVALS failed: Slack refused chat.postMessage: internal_error "
        "(HTTP 500), retrying in 2 s",
        "Slack message to C0APPROVALS failed: could not check whether an earlier attempt "
        "posted it: Slack refused conversations.history: internal_error (HTTP 500), "
        "retrying in 4 s",
        f"sent a Slack message to C0APPROVALS {clock.now:%H:%M}",
    ]
    [row] = engine.deliveries(iid, "bob")
    assert row["words"] == f"sent a Slack message to C0APPROVALS {clock.now:%H:%M}"

    # Slack is down when bob approves on the web: the workflow goes on at once ...
    slack.fail_next(1, 500)
    client.post(
        f"/api/instances/{iid}/events/decision",
        json={"payload": {"approved": True}},
        headers={"Authorization": f"Bearer {BOB_TOKEN}"},
    )
    got = engine.get(iid)
    assert (got.status, got.result, got.pending_teardowns) == (
        "completed",
        "approved by bob via api",
        0,
    )
    assert engine.deliver_notices() == 0
    assert set(message.buttons()) == {APPROVE, DENY, REASSIGN}
    # ... and the message catches up once Slack is back
    engine.run_due(clock.advance(seconds=1))
    assert f"*Approved* by <@{BOB}>" in message.words() and message.buttons() == {}
    assert len(slack.posted()) == 1 and message.edits == 1
    kinds = [h.kind for h in engine.history(iid) if "failed" in h.kind]
    assert kinds == ["notice failed"] * 4  # three attempts at the post, one at the edit


def test_check_event_says_what_send_would_and_changes_nothing(engine: Engine) -> None:
    from signoff.engine import AlreadyDecided, EventRejected, NotAllowed

    iid = engine.start(Expense)
    before, history = engine.get(iid), engine.history(iid)
    wait = engine.check_event(iid, "decision", {"approved": True}, actor="alice", via="slack")
    assert (wait.key, wait.event) == ("main:1", "decision")
    with pytest.raises(NotAllowed, match="U0MALLORY may not decide this"):
        engine.check_event(iid, "decision", {"approved": True}, actor=engine.slack_actor(MALLORY))
    with pytest.raises(EventRejected, match="a reason is required"):
        engine.check_event(iid, "decision", {"approved": False}, actor="bob")
    with pytest.raises(AlreadyDecided, match="no longer open"):
        engine.check_event(iid, "decision", {"approved": True}, actor="bob", wait_key="main:0")
    assert (engine.get(iid), engine.history(iid)) == (before, history)
    assert engine.slack_actor(ALICE) == "alice" and engine.slack_actor(MALLORY) == MALLORY


class Reminded(Workflow):
    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        title="Server purchase",
                        approvers=["alice"],
                        slack_channel="C0APPROVALS",
                        remind_every=timedelta(hours=1),
                        escalate_after=timedelta(hours=2),
                        escalate_to=["bob"],
                    ),
                ),
            ),
            Return("done"),
        )


def test_reminders_and_escalations_go_in_the_messages_thread(
    sqlite_url: str, clock: Clock, slack: FakeSlack
) -> None:
    engine = Engine(
        sqlite_url,
        [Reminded],
        clock=clock,
        slack=make_client(TOKEN, slack.url),
        slack_users={"alice": ALICE, "bob": BOB},
    )
    iid = engine.start(Reminded)
    message = the_message(slack, engine)
    assert f"*Who may decide:* <@{ALICE}>" in message.words()
    engine.run_due(clock.advance(hours=1))
    engine.run_due(clock.advance(hours=1))
    replies = [m.text for m in slack.replies(message)]
    assert replies == [
        f":bell: Reminder: this still waits for a decision from <@{ALICE}> (Server purchase).",
        f":arrow_up: Escalated: <@{ALICE}>, <@{BOB}> may decide this now (Server purchase).",
        f":bell: Reminder: this still waits for a decision from <@{ALICE}>, <@{BOB}> "
        "(Server purchase).",
    ]
    assert f"*Who may decide:* <@{ALICE}>, <@{BOB}> (escalated)" in message.words()
    assert set(message.buttons()) == {APPROVE, DENY, REASSIGN}
    engine.send(iid, "decision", {"approved": True}, actor="bob", via="slack")
    engine.deliver_notices()
    assert f"*Approved* by <@{BOB}> at" in message.words()
    engine.close()


# --- bad input: refused with a 4xx, and nothing changes ---------------------------------------


def _other_value(engine: Engine, slack: FakeSlack) -> tuple[Message, str]:
    """Message A, and the button value of instance B's message."""
    engine.start(Expense, id="a")
    engine.start(Expense, id="b")
    engine.deliver_notices()
    first, second = slack.posted()
    return first, second.buttons()[APPROVE]["value"]


def _stale_key(value: str) -> str:
    parsed = json.loads(value)
    return json.dumps({**parsed, "k": "main:0"})


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("oversized", 413, "the request body is larger than 128 KiB"),
        ("not a form", 400, "expected a form-encoded body (payload=...)"),
        ("no payload", 400, "the body must hold exactly one field, payload"),
        ("two payloads", 400, "the body must hold exactly one field, payload"),
        ("truncated", 400, "the payload is not JSON (truncated?)"),
        ("a list", 400, "the payload is not a JSON object"),
        ("deep", 400, "the payload is nested too deeply"),
        ("not utf-8", 401, "the signature does not match: not from Slack, or a wrong secret"),
        ("wrong team", 403, "this interaction comes from another Slack workspace"),
        ("wrong app", 403, "this interaction is meant for another Slack app"),
        ("no user", 400, "the payload names no Slack user"),
        ("unknown type", 400, "signoff does not handle Slack interactions of type 'shortcut'"),
        ("two actions", 400, "a click carries exactly one action"),
        ("other button", 400, "this is not one of signoff's buttons"),
        ("garbage value", 400, "the button's value is not one signoff wrote (malformed or cut)"),
        ("cut value", 400, "the button's value is not one signoff wrote (malformed or cut)"),
        ("no message", 400, "the click does not say which message it came from"),
        ("unknown instance", 404, "the button names an instance that does not exist"),
        ("another instance", 403, "the button does not belong to the message it was clicked in"),
        (
            "stale key",
            409,
            "The wait main:0 of instance a is no longer open (instance status: waiting).",
        ),
        ("bad timestamp", 401, "the request's timestamp is not a number of seconds"),
        ("form without metadata", 400, "the form does not say which approval it is about"),
        ("someone else's form", 400, "this is not one of signoff's forms"),
    ],
)
def test_bad_interactions_are_refused_and_change_nothing(
    engine: Engine, client: TestClient, slack: FakeSlack, case: str, status: int, words: str
) -> None:
    message, other = _other_value(engine, slack)
    payload = click(message, APPROVE, ALICE)
    body = form(payload)
    headers = signed(body)
    action = payload["actions"][0]
    if case == "oversized":
        body = form({**payload, "padding": "x" * 140_000})
    elif case == "not a form":
        body = json.dumps(payload).encode()
    elif case == "no payload":
        body = b"token=abc"
    elif case == "two payloads":
        body = body + b"&" + body
    elif case == "truncated":
        body = body[: len(body) // 2]
    elif case == "a list":
        body = b"payload=%5B1%2C2%5D"
    elif case == "deep":
        body = b"payload=" + b"%5B" * 200 + b"%5D" * 200
    elif case == "not utf-8":
        body = b"payload=\xff\xfe"
    elif case == "wrong team":
        body = form(click(message, APPROVE, ALICE, team="T0ELSEWHERE"))
    elif case == "wrong app":
        body = form(click(message, APPROVE, ALICE, app="A0ELSE"))
    elif case == "no user":
        body = form({**payload, "user": {"id": "<script>"}})
    elif case == "unknown type":
        body = form({**payload, "type": "shortcut"})
    elif case == "two actions":
        body = form({**payload, "actions": [action, action]})
    elif case == "other button":
        body = form({**payload, "actions": [{**action, "action_id": "delete_everything"}]})
    elif case == "garbage value":
        body = form(click(message, APPROVE, ALICE, value='{"i": 1}'))
    elif case == "cut value":
        body = form(click(message, APPROVE, ALICE, value=action["value"][:20]))
    elif case == "no message":
        body = form({k: v for k, v in payload.items() if k not in ("container", "channel")})
    elif case == "unknown instance":
        value = json.dumps({**json.loads(action["value"]), "i": "nope"})
        body = form(click(message, APPROVE, ALICE, value=value))
    elif case == "another instance":
        body = form(click(message, APPROVE, ALICE, value=other))
    elif case == "stale key":
        body = form(click(message, APPROVE, ALICE, value=_stale_key(action["value"])))
    elif case == "form without metadata":
        body = form({**payload, "type": "view_submission", "view": {"callback_id": DENY}})
    elif case == "someone else's form":
        body = form({**payload, "type": "view_submission", "view": {"callback_id": "x"}})
    if case == "not a form":
        headers = {**signed(body), "content-type": "application/json"}
    elif case == "bad timestamp":
        headers = {**headers, "x-slack-request-timestamp": "-1e9"}
    else:
        headers = {**signed(body), "content-type": headers["content-type"]}
    before = [engine.get("a"), engine.get("b"), engine.history("a")]
    posts = len(slack.calls)
    response = client.post("/slack/interactions", content=body, headers=headers)
    client.app.state.signoff.slack.idle()  # type: ignore[attr-defined]
    assert (response.status_code, response.text) == (status, words)
    assert [engine.get("a"), engine.get("b"), engine.history("a")] == before
    new = [name for name, _ in slack.calls[posts:]]
    assert new == (["chat.postEphemeral"] if case == "stale key" else [])


def test_only_the_exact_path_skips_the_origin_check(client: TestClient, engine: Engine) -> None:
    evil = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    for path in ("/slack/interactions/", "/slack/other", "/slack/interactions/../x"):
        response = client.post(path, content=b"payload=%7B%7D", headers=evil)
        assert (response.status_code, response.text) == (403, "cross-origin request refused")
    # Slack's own posts carry no browser headers; the route checks their signature instead
    response = client.post("/slack/interactions", content=b"payload=%7B%7D", headers=evil)
    assert response.status_code == 401


def test_without_a_signing_secret_the_endpoint_is_off(engine: Engine) -> None:
    with TestClient(create_app(engine, secret_key="s" * 32), base_url="http://127.0.0.1") as c:
        body = form({"type": "block_actions"})
        response = c.post("/slack/interactions", content=body, headers=signed(body))
    assert (response.status_code, response.text) == (
        404,
        "Slack interactivity is off here: no signing secret is configured",
    )


def test_without_a_token_nothing_is_posted(sqlite_url: str, slack: FakeSlack) -> None:
    engine = Engine(sqlite_url, [Expense], slack_users={"alice": ALICE})
    assert engine.slack is None
    iid = engine.start(Expense)
    assert engine.get(iid).thread("main").waits[0].stored is None
    assert slack.calls == []


# --- volume ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_thousand_signed_interactions_some_forged_or_replayed(sqlite_url: str) -> None:
    from slack_volume import run

    outcome = run(sqlite_url, interactions=1000, bad_share=0.10)
    print("\n" + outcome.summary())  # the figure; bench/slack.py prints it too
    assert outcome.engine is not None and outcome.fake is not None
    engine, fake = outcome.engine, outcome.fake
    assert len(outcome.sent) == 1000
    assert {s.status for s in outcome.sent if s.kind == "forged"} == {401}
    # a replay and its original: exactly one of the two is taken, whichever came first
    pairs: dict[int, list[int]] = {}
    for s in outcome.sent:
        if s.pair >= 0:
            pairs.setdefault(s.pair, []).append(s.status)
    for statuses in pairs.values():
        assert sorted(statuses) in ([200], [200, 409])
    assert outcome.count("replay") == 50
    assert sum(1 for statuses in pairs.values() if len(statuses) == 2) == 50
    # every valid click applied exactly once: one decision per instance, by its clicker
    for iid in outcome.instances:
        got = engine.get(iid)
        assert got.status == "completed", (iid, got.status)
        decisions = [h for h in engine.history(iid) if h.kind == "decision"]
        assert len(decisions) == 1 and decisions[0].via == "slack"
    assert len(fake.posted()) == 900
    assert all(m.edits == 1 and m.buttons() == {} for m in fake.posted())
    assert fake.ephemerals() == []
    engine.close()


# --- people known by email (signed in with the identity provider) ---------------------------------


class ByEmail(Workflow):
    def definition(self) -> S:
        return S(
            Wait("approval", On("decision", Approval(approvers=["erin@example.com"]))),
            Return("done"),
        )


def test_a_slack_user_is_matched_by_email_without_a_second_mapping(
    sqlite_url: str, clock: Clock, slack: FakeSlack
) -> None:
    """erin signs in with the identity provider as erin@example.com; slack_users does not name
    her. The request reaches her Slack id (users.lookupByEmail), and her click acts as her
    address (users.info), so the approver list needs no Slack ids."""
    slack.people.update({"U0ERIN": "Erin@Example.com", "U0MALLORY": "mallory@example.com"})
    engine = Engine(sqlite_url, [ByEmail], clock=clock, slack=make_client(TOKEN, slack.url))
    app = create_app(engine, secret_key="s" * 32, slack_signing_secret=SECRET)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        iid = engine.start(ByEmail)
        message = the_message(slack, engine)
        assert message.channel == "D0ERIN"  # a direct message to the id Slack has for her

        refused = send(web, click(message, APPROVE, MALLORY))
        assert refused.status_code == 200 and engine.get(iid).status == "waiting"
        assert any("mallory@example.com may not decide" in e.lower() for e in slack.ephemerals()), (
            slack.ephemerals()
        )

        assert send(web, click(message, APPROVE, "U0ERIN")).status_code == 200
        assert engine.get(iid).status == "completed"
        decision = next(h for h in engine.history(iid) if h.kind == "decision")
        assert (decision.actor, decision.via) == ("erin@example.com", "slack")
    engine.close()


def test_a_stranger_unknown_to_slack_acts_as_their_slack_id_and_costs_one_lookup(
    engine: Engine, client: TestClient, slack: FakeSlack
) -> None:
    engine.start(Expense, id="exp-1")
    message = the_message(slack, engine)
    for _ in range(3):
        send(client, click(message, APPROVE, "U0NOBODY"))
    assert len(slack.called("users.info")) == 1
    assert any("U0NOBODY may not decide" in e for e in slack.ephemerals())
