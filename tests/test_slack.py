"""Approve and deny from Slack, and every surface in step: the fake Slack (tests/slack_fake.py)
is a real local server that slack-sdk talks to; the interactions come back signed, exactly as
Slack sends them, to the real app."""

from __future__ import annotations

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
)
from web_support import TestClient

APPROVE, DENY = "signoff_approve", "signoff_deny"
ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"
API_TOKEN = "t-carol"


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
        api_tokens={API_TOKEN: "carol"},
        slack_signing_secret=SECRET,
        slack_team_id=TEAM,
        slack_app_id=APP,
    )
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def send(client: TestClient, payload: dict[str, Any], **sign: Any) -> Any:
    body = form(payload)
    response = client.post("/slack/interactions", content=body, headers=signed(body, **sign))
    client.app.state.signoff.slack.idle()  # type: ignore[attr-defined]
    return response


def the_message(slack: FakeSlack) -> Message:
    (message,) = slack.posted()
    return message


# --- the stories ------------------------------------------------------------------------------


def test_approve_from_slack(engine: Engine, client: TestClient, slack: FakeSlack) -> None:
    iid = engine.start(Expense, id="exp-1")
    message = the_message(slack)
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
    assert set(message.buttons()) == {APPROVE, DENY}
    wait = engine.get(iid).thread("main").waits[0]
    assert wait.stored == {
        "slack_messages": [{"channel": "C0APPROVALS", "ts": message.ts}],
        "deadline": "2026-01-05T10:00:00+00:00",
    }

    response = send(client, click(message, APPROVE, ALICE))
    assert response.status_code == 200
    got = engine.get(iid)
    assert (got.status, got.result) == ("completed", "approved by alice via slack")
    assert f"*Approved* by <@{ALICE}> at <!date^" in message.words()
    assert message.buttons() == {}
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via) == ("alice", "slack")
