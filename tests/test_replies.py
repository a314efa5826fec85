"""A handler's reply reaches its sender (the seed's HandleCallback returns the handler's output):
an Approval callback's or an Input apply's JSON return value is `send`'s `reply`, the JSON
API's "reply", the command line's "reply:" line and the dashboard's flash, and the history
keeps it. A reply that cannot be stored as JSON is refused, and nothing changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from signoff.engine import AsyncEngine, Engine, InvalidData
from signoff.web.cli import main
from web_support import HX, ORIGIN, TOKENS, TestClient, make_app, sign_in

from tests.conftest import Clock
from tests.reply_workflows import Quote

TICKET = {"ticket": "T-3", "note": "ok ✓ 🎉"}


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Iterator[Engine]:
    made = Engine(sqlite_url, [Quote], clock=clock, operators=["alice"])
    yield made
    made.close()


def test_send_returns_what_the_callback_and_the_apply_answered_and_the_history_keeps_it(
    engine: Engine,
) -> None:
    iid = engine.start(Quote, {"amount": 120})
    approved = engine.send(iid, "decision", {"approved": True}, actor="alice")
    assert approved.reply == {"ticket": "Q-120", "by": "alice"}
    assert approved.status == "waiting"
    assert engine.get(iid).reply is None  # an answer to the sender, not part of the instance

    filled = engine.send(iid, "details", {"n": 3})
    assert filled.reply == TICKET
    assert filled.result == {"approved": True, "picked": 3}

    kept = {h.kind: (h.detail or {}).get("reply") for h in engine.history(iid)}
    assert kept["decision"] == {"ticket": "Q-120", "by": "alice"}
    assert kept["event"] == TICKET


def test_no_answer_is_no_reply(engine: Engine) -> None:
    iid = engine.start(Quote)
    denied = engine.send(iid, "decision", {"approved": False, "reason": "no"}, actor="alice")
    assert denied.reply is None
    assert "reply" not in (next(h for h in engine.history(iid) if h.kind == "decision").detail)
    assert engine.send(iid, "details", {"n": 1, "answer": "none"}).reply is None


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("nan", "not a finite number in field 'ratio'"),
        ("set", "is not JSON"),
        ("nul", "NUL character"),
        ("big", "larger than 256 KiB"),
    ],
)
def test_a_reply_that_cannot_be_stored_as_json_is_refused_and_nothing_changes(
    engine: Engine, kind: str, problem: str
) -> None:
    iid = engine.start(Quote)
    engine.send(iid, "decision", {"approved": True}, actor="alice")
    before = engine.get(iid)
    entries = len(engine.history(iid))
    with pytest.raises(
        InvalidData, match=f"the reply of the input handler of 'details'.*{problem}"
    ):
        engine.send(iid, "details", {"n": 5, "answer": kind})
    after = engine.get(iid)
    assert (after.version, after.data, after.status) == (before.version, before.data, "waiting")
    assert len(engine.history(iid)) == entries
    assert engine.send(iid, "details", {"n": 2, "answer": "list"}).reply == [2, "n", None, True]


def test_the_async_engine_returns_the_reply_too(sqlite_url: str, clock: Clock) -> None:
    async def run() -> None:
        engine = AsyncEngine(sqlite_url, [Quote], clock=clock)
        try:
            iid = await engine.start(Quote, {"amount": 7})
            view = await engine.send(iid, "decision", {"approved": True}, actor="alice")
            assert view.reply == {"ticket": "Q-7", "by": "alice"}
            assert (await engine.send(iid, "details", {"n": 3})).reply == TICKET
        finally:
            await engine.close()

    asyncio.run(run())


# --- the surfaces --------------------------------------------------------------------------


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as c:
        yield c


def test_the_json_api_answers_with_the_reply(client: TestClient, engine: Engine) -> None:
    token = next(t for t, who in TOKENS.items() if who == "alice")
    headers = {"Authorization": f"Bearer {token}"}
    iid = engine.start(Quote, {"amount": 9})
    url = f"/api/instances/{iid}/events"
    answer = client.post(f"{url}/decision", json={"payload": {"approved": True}}, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["reply"] == {"ticket": "Q-9", "by": "alice"}
    assert client.get(f"/api/instances/{iid}", headers=headers).json()["reply"] is None
    refused = client.post(
        f"{url}/details", json={"payload": {"n": 1, "answer": "nan"}}, headers=headers
    )
    assert refused.status_code == 422 and refused.json()["type"] == "InvalidData"
    assert (
        client.post(f"{url}/details", json={"payload": {"n": 3}}, headers=headers).json()["reply"]
        == TICKET
    )


def test_the_dashboard_shows_the_reply_in_the_flash_after_the_decision(
    client: TestClient, engine: Engine
) -> None:
    client.headers["X-CSRF-Token"] = sign_in(client, "alice")
    client.headers["Origin"] = ORIGIN
    iid = engine.start(Quote, {"amount": 4})
    inbox = client.post(
        "/approvals/decide",
        data={"instance": iid, "thread": "main", "event": "decision", "decision": "approve"},
        headers=HX,
    )
    assert inbox.status_code == 200
    assert 'Reply: {"ticket": "Q-4", "by": "alice"}' in inbox.text.replace("&#34;", '"')

    page = client.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "details", "mode": "input", "thread": "main", "f.n": "3"},
    )
    assert page.status_code == 200
    flash = page.context["page"].flash
    assert flash.kind == "ok"
    assert flash.message.endswith('Reply: {"ticket": "T-3", "note": "ok ✓ 🎉"}')


def test_the_command_line_prints_the_reply(
    sqlite_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    iid = engine.start(Quote, {"amount": 5})
    flows = ["--db", sqlite_url, "--workflows", "tests.reply_workflows"]
    payload = '{"approved": true}'
    code = main(["send", iid, "decision", "--payload", payload, "--actor", "alice", *flows])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [f"{iid}: waiting", 'reply: {"ticket": "Q-5", "by": "alice"}']
