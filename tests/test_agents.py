"""Gating an agent's actions: `@gate` on a function makes each call a `ToolCall` approval, on a
real SQLite file (and PostgreSQL for a restarted agent)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from signoff.engine import (
    AsyncEngine,
    Engine,
    EventRejected,
    InvalidData,
    NotAllowed,
    Retry,
)
from signoff.engine.agents import REDACTED, Denied, TimedOut, ToolCall, ToolFailed, gate

from tests.conftest import Clock

POLL = 0.02


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Iterator[Engine]:
    made = Engine(sqlite_url, clock=clock, synchronous="OFF")
    yield made
    made.close()


def iid_of(function: Callable[..., Any], call_id: str) -> str:
    return str(function.signoff_gate.instance_id(call_id))  # type: ignore[attr-defined]


def ask(function: Callable[..., Any], *args: Any, call_id: str, **kwargs: Any) -> str:
    """Make the request for a call without waiting for it: what a call does first."""
    door = function.signoff_gate  # type: ignore[attr-defined]
    return str(door.request(args, kwargs, call_id))


def waiting(engine: Engine, iid: str) -> bool:
    """Whether the request is there and open (a person decides only what they can see)."""
    return engine.store.load(iid) is not None and engine.get(iid).status == "waiting"


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> None:
    """For tests about threads: wait (with generous bounds) until `check()` holds."""
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "gave up waiting"
        time.sleep(0.01)


# --- approve, deny, time out --------------------------------------------------------------------


def test_an_approved_call_runs_once_and_returns_the_result(engine: Engine) -> None:
    trace: list[str] = []

    @gate(engine, approvers=["alice"], poll=POLL)
    def refund(order: str, amount: int, note: str = "") -> dict[str, Any]:
        trace.append(f"refund {order} {amount}")
        return {"refunded": amount}

    iid = ask(refund, "A-1", 30, call_id="t1")
    view = engine.get(iid)
    assert (view.workflow, view.status) == ("ToolCall", "waiting")
    (wait,) = view.threads[0].waits
    assert wait.kind == "approval" and wait.info["approvers"] == ["alice"]
    assert wait.info["title"] == 'refund(order="A-1", amount=30, note="")'
    assert json.loads(wait.info["text"].split("\n", 1)[1]) == {
        "order": "A-1",
        "amount": 30,
        "note": "",
    }
    with pytest.raises(NotAllowed):
        engine.send(iid, "approval", {"approved": True}, actor="mallory")
    assert trace == []
    engine.send(iid, "approval", {"approved": True}, actor="alice")
    assert trace == ["refund A-1 30"]
    # the agent (retried, or the same call) attaches: the stored result, no second run
    assert refund("A-1", 30, call_id="t1") == {"refunded": 30}
    assert refund("A-1", amount=30, call_id="t1") == {"refunded": 30}
    assert trace == ["refund A-1 30"]
    assert [(h.kind, h.name, h.actor) for h in engine.history(iid)] == [
        ("started", "ToolCall", None),
        ("waiting", "approval", None),
        ("decision", "approval", "alice"),
        ("step", "run", None),
        ("completed", None, None),
    ]
    assert engine.get(iid).result == {"refunded": 30}


def test_a_denied_call_raises_denied_with_the_reason_and_never_runs(engine: Engine) -> None:
    trace: list[str] = []

    @gate(engine, approvers=["alice"], poll=POLL)
    def delete_table(name: str) -> None:
        trace.append(name)

    iid = ask(delete_table, "users", call_id="t1")
    engine.send(iid, "approval", {"approved": False, "reason": "not in production"}, actor="alice")
    with pytest.raises(Denied) as denied:
        delete_table("users", call_id="t1")
    assert (denied.value.reason, denied.value.actor) == ("not in production", "alice")
    assert denied.value.instance_id == iid
    assert trace == []
    assert engine.get(iid).status == "completed"


def test_an_undecided_call_times_out_at_its_deadline(engine: Engine, clock: Clock) -> None:
    trace: list[str] = []

    @gate(engine, approvers=["alice"], timeout=timedelta(minutes=30), poll=POLL)
    def send_mail(to: str) -> None:
        trace.append(to)

    iid = ask(send_mail, "bob@example.com", call_id="t1")
    clock.advance(minutes=29)
    engine.run_due()
    assert engine.get(iid).status == "waiting"
    clock.advance(minutes=2)
    engine.run_due()
    with pytest.raises(TimedOut, match="nobody decided send_mail in time"):
        send_mail("bob@example.com", call_id="t1")
    assert trace == []


def test_a_sync_call_blocks_until_someone_decides_in_another_thread(engine: Engine) -> None:
    @gate(engine, approvers=["alice"], poll=POLL)
    def pay(amount: int) -> int:
        return amount * 2

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(pay, 21, call_id="x")
        eventually(lambda: waiting(engine, iid_of(pay, "x")))
        assert not future.done()
        engine.send(iid_of(pay, "x"), "approval", {"approved": True}, actor="alice")
        assert future.result(timeout=20) == 42


# --- editing the arguments ----------------------------------------------------------------------


def test_the_approver_edits_the_arguments_and_the_function_runs_with_them(engine: Engine) -> None:
    ran: list[tuple[str, int]] = []

    @gate(engine, approvers=["alice"], poll=POLL)
    def refund(order: str, amount: int) -> int:
        ran.append((order, amount))
        return amount

    iid = ask(refund, "A-1", 300, call_id="t1")
    schema = engine.get(iid).threads[0].waits[0].info["tool"]["schema"]
    assert schema["properties"]["amount"]["default"] == 300
    engine.send(iid, "approval", {"approved": True, "arguments": {"amount": "30"}}, actor="alice")
    assert ran == [("A-1", 30)]  # validated as the signature says: "30" became 30
    assert refund("A-1", 300, call_id="t1") == 30
    data = engine.get(iid).data
    assert data["arguments"] == {"order": "A-1", "amount": 300}  # proposed
    assert data["approved_arguments"] == {"order": "A-1", "amount": 30}  # approved
    assert data["edited"] is True
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert decision.detail is not None
    assert decision.detail["payload"]["arguments"] == {"amount": "30"}


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"approved": True, "arguments": {"amount": "lots"}}, "amount: Input should be"),
        ({"approved": True, "arguments": {"amount": 10, "to": "mallory"}}, "no argument"),
        ({"approved": True, "arguments": ["A-1", 10]}, "must be a JSON object"),
        ({"approved": False, "reason": "no", "arguments": {"amount": 1}}, "only with an approval"),
        ({"approved": True, "arguments": {"token": "mine"}}, "redacted arguments cannot"),
    ],
)
def test_a_bad_edit_is_refused_and_the_request_stays_open(
    engine: Engine, payload: dict[str, Any], problem: str
) -> None:
    ran: list[int] = []

    @gate(engine, approvers=["alice"], redact=["token"], poll=POLL)
    def refund(order: str, amount: int, token: str = "") -> int:
        ran.append(amount)
        return amount

    iid = ask(refund, "A-1", 300, token="s3cret", call_id="t1")
    before = len(engine.history(iid))
    with pytest.raises(EventRejected, match=problem):
        engine.send(iid, "approval", payload, actor="alice")
    view = engine.get(iid)
    assert view.status == "waiting" and len(engine.history(iid)) == before and ran == []
    engine.send(iid, "approval", {"approved": True, "arguments": {"amount": 5}}, actor="alice")
    assert ran == [5]


def test_editable_false_refuses_any_edit(engine: Engine) -> None:
    @gate(engine, editable=False, poll=POLL)
    def wipe(disk: str) -> None:
        pass

    iid = ask(wipe, "sda", call_id="t1")
    assert engine.get(iid).threads[0].waits[0].info["tool"] == {
        "function": f"{__name__}:test_editable_false_refuses_any_edit.<locals>.wipe",
        "editable": False,
    }
    with pytest.raises(EventRejected, match="editable=False"):
        engine.send(iid, "approval", {"approved": True, "arguments": {"disk": "sdb"}})
    assert engine.get(iid).status == "waiting"


# --- secrets --------------------------------------------------------------------------------------


def test_redacted_arguments_are_never_shown_but_reach_the_function(engine: Engine) -> None:
    seen: list[str] = []

    @gate(engine, approvers=["alice"], redact=["api_key"], poll=POLL)
    def charge(customer: str, api_key: str) -> str:
        seen.append(api_key)
        return "charged"

    iid = ask(charge, "c-9", "sk_live_SECRET", call_id="t1")
    view = engine.get(iid)
    shown = json.dumps([view.data, view.threads[0].waits[0].info], default=str)
    assert "SECRET" not in shown and REDACTED in shown
    assert "sealed" not in view.data
    # an edit that sends the placeholder back (a form does) leaves the real value in place
    engine.send(
        iid,
        "approval",
        {"approved": True, "arguments": {"customer": "c-10", "api_key": REDACTED}},
        actor="alice",
    )
    assert seen == ["sk_live_SECRET"]
    assert charge("c-9", "sk_live_SECRET", call_id="t1") == "charged"
    everything = json.dumps(
        [engine.get(iid).data, [h.detail for h in engine.history(iid)]], default=str
    )
    assert "SECRET" not in everything
    # the same call id with another secret is another call
    with pytest.raises(InvalidData, match="differ in: api_key"):
        charge("c-9", "sk_live_OTHER", call_id="t1")


# --- a function that fails -------------------------------------------------------------------


def test_a_failing_function_is_retried_then_the_caller_gets_the_error(
    engine: Engine, clock: Clock
) -> None:
    attempts: list[int] = []

    @gate(engine, retry=Retry(attempts=2, backoff=timedelta(seconds=5)), poll=POLL)
    def flaky(n: int) -> int:
        attempts.append(n)
        raise ConnectionError(f"payment service down (try {len(attempts)})")

    iid = ask(flaky, 1, call_id="t1")
    engine.send(iid, "approval", {"approved": True})
    assert attempts == [1] and engine.get(iid).status != "failed"
    clock.advance(seconds=6)
    engine.run_due()
    assert attempts == [1, 1]
    assert engine.get(iid).status == "failed"
    with pytest.raises(ToolFailed, match=r"flaky failed: .*payment service down \(try 2\)"):
        flaky(1, call_id="t1")
    assert attempts == [1, 1]  # attaching to a failed call does not run it again


def test_a_retry_that_succeeds_returns_the_result(engine: Engine, clock: Clock) -> None:
    attempts: list[int] = []

    @gate(engine, retry=Retry(attempts=3, backoff=timedelta(seconds=1)), poll=POLL)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise TimeoutError("slow")
        return "done"

    iid = ask(flaky, call_id="t1")
    engine.send(iid, "approval", {"approved": True})
    clock.advance(seconds=2)
    engine.run_due()
    assert flaky(call_id="t1") == "done" and len(attempts) == 2


# --- bad calls: refused before anything is stored ------------------------------------------------


def test_bad_calls_are_refused_before_anything_is_stored(engine: Engine) -> None:
    @gate(engine, poll=POLL)
    def tool(amount: int, payload: Any = None) -> None:
        pass

    cases: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        ((object(),), {}, "amount"),  # not a number
        ((1, object()), {}, "not JSON"),
        ((1, {"x": float("nan")}), {}, "not a finite number"),
        ((1, 2, 3), {}, "too many positional"),
        ((), {"amount": 1, "other": 2}, "unexpected keyword"),
        ((1,), {"call_id": ""}, "call_id must be"),
    ]
    for args, kwargs, problem in cases:
        with pytest.raises(InvalidData, match=problem):
            tool(*args, **kwargs)
    assert engine.list(workflow="ToolCall") == []


def test_a_call_id_reused_with_other_arguments_is_refused(engine: Engine) -> None:
    @gate(engine, poll=POLL)
    def refund(order: str, amount: int) -> int:
        return amount

    iid = ask(refund, "A-1", 30, call_id="t1")
    with pytest.raises(InvalidData, match=r"call_id 't1' was already used .* differ in: amount"):
        refund("A-1", 31, call_id="t1")
    assert [s.id for s in engine.list(workflow="ToolCall")] == [iid]
    assert engine.get(iid).status == "waiting"


def test_gating_what_cannot_be_gated_is_refused_at_once(engine: Engine) -> None:
    with pytest.raises(TypeError, match=r"\*args"):

        @gate(engine)
        def loose(*args: int) -> None:
            pass

    with pytest.raises(TypeError, match="no argument"):

        @gate(engine, redact=["pasword"])
        def login(password: str) -> None:
            pass

    with pytest.raises(TypeError, match="call_id"):

        @gate(engine)
        def own(call_id: str) -> None:
            pass


def test_nobody_starts_a_tool_call_by_hand(engine: Engine) -> None:
    @gate(engine, poll=POLL)
    def tool() -> None:
        pass

    with pytest.raises(NotAllowed):
        engine.start(ToolCall, {"function": "os:system"}, actor="mallory")


# --- async: a thousand pending calls, one watcher ------------------------------------------------


def test_a_thousand_pending_async_calls_hold_no_thread_each(engine: Engine) -> None:
    ran: list[int] = []

    @gate(engine, approvers=["alice"], poll=0.2)
    async def act(n: int) -> int:
        ran.append(n)
        return n * 10

    async def main() -> None:
        threads_before = threading.active_count()
        calls = [asyncio.ensure_future(act(n, call_id=f"c{n}")) for n in range(1000)]
        ids = [iid_of(act, f"c{n}") for n in range(1000)]

        def parked() -> int:
            rows = [engine.store.load(i) for i in ids]
            return sum(1 for r in rows if r is not None and r.status == "waiting")

        while await asyncio.to_thread(parked) < 1000:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # every call is now parked on the watcher
        assert threading.active_count() - threads_before <= 20
        assert not any(c.done() for c in calls)
        for n in (3, 500, 999):
            await asyncio.to_thread(
                engine.send, iid_of(act, f"c{n}"), "approval", {"approved": True}, "alice"
            )
        assert await asyncio.wait_for(calls[3], 20) == 30
        assert await asyncio.wait_for(calls[999], 20) == 9990
        assert await asyncio.wait_for(calls[500], 20) == 5000
        assert sorted(ran) == [3, 500, 999]
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    asyncio.run(main())


def test_an_async_engine_gates_an_async_function(sqlite_url: str) -> None:
    aengine = AsyncEngine(sqlite_url, synchronous="OFF")
    loops: list[asyncio.AbstractEventLoop] = []

    @gate(aengine, approvers=["alice"], poll=POLL)
    async def notify(to: str) -> str:
        loops.append(asyncio.get_running_loop())
        return f"sent to {to}"

    async def main() -> None:
        call = asyncio.ensure_future(notify("bob", call_id="n1"))
        iid = iid_of(notify, "n1")
        while not await aengine.run(lambda: waiting(aengine.engine, iid)):
            await asyncio.sleep(0.01)
        await aengine.send(iid, "approval", {"approved": False, "reason": "spam"}, "alice")
        with pytest.raises(Denied, match="spam"):
            await call
        assert loops == []
        second = asyncio.ensure_future(notify("carol", call_id="n2"))
        iid2 = iid_of(notify, "n2")
        while not await aengine.run(lambda: waiting(aengine.engine, iid2)):
            await asyncio.sleep(0.01)
        await aengine.send(iid2, "approval", {"approved": True}, "alice")
        assert await second == "sent to carol"
        assert loops == [asyncio.get_running_loop()]  # ran on the agent's own loop

    asyncio.run(main())
    aengine.engine.close()


# --- a restarted agent, two processes' engines on PostgreSQL --------------------------------------


def test_a_restarted_agent_attaches_to_its_request_on_postgres(pg_url: str) -> None:
    ran: list[int] = []
    first = Engine(pg_url)

    @gate(first, approvers=["alice"], poll=POLL)
    def transfer(amount: int) -> str:
        ran.append(amount)
        return f"moved {amount}"

    iid = ask(transfer, 70, call_id="call_abc")  # then the agent's process dies
    first.close()

    second = Engine(pg_url)  # the agent, restarted
    restarted = gate(second, approvers=["alice"], poll=POLL)(transfer.__wrapped__)  # type: ignore[attr-defined]
    assert iid_of(restarted, "call_abc") == iid
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(restarted, 70, call_id="call_abc")
        eventually(lambda: waiting(second, iid))
        decider = Engine(pg_url, workflows=[ToolCall])  # e.g. the dashboard's process
        decider.send(iid, "approval", {"approved": True}, actor="alice")
        assert future.result(timeout=20) == "moved 70"
    assert restarted(70, call_id="call_abc") == "moved 70"
    assert ran == [70]
    assert len(second.list(workflow="ToolCall")) == 1
    decider.close()
    second.close()


# --- the dashboard and the JSON API ------------------------------------------------------------


def test_the_dashboard_offers_the_arguments_as_a_form_and_the_api_takes_them(
    engine: Engine,
) -> None:
    from web_support import HX, ORIGIN, TOKENS, TestClient, make_app, parse, sign_in

    ran: list[tuple[str, int]] = []

    @gate(engine, approvers=["alice"], redact=["token"], poll=POLL)
    def refund(order: str, amount: int, token: str = "") -> int:
        ran.append((order, amount))
        return amount

    iid = ask(refund, "A-1", 300, token="s3cret", call_id="web")
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as client:
        client.headers["X-CSRF-Token"] = sign_in(client, "alice")
        client.headers["Origin"] = ORIGIN
        page = client.get(f"/instances/{iid}")
        assert page.status_code == 200 and "s3cret" not in page.text
        (form,) = [
            f
            for f in parse(page.text).find_all("form")
            if any(i.attrs.get("value") == "approve" for i in f.find_all("input"))
        ]
        fields = {
            i.attrs["name"]: i.attrs.get("value")
            for i in form.find_all("input")
            if (i.attrs.get("name") or "").startswith("f.")
        }
        assert fields == {"f.order": "A-1", "f.amount": "300"}  # the secret is not offered
        posted = {
            i.attrs["name"] or "": i.attrs.get("value") or ""
            for i in form.find_all("input")
            if i.attrs.get("name")
        }
        for amount, problem in (("-x", "must be a whole number"), ("1e99", "whole number")):
            refused = client.post(
                f"/instances/{iid}/send", data={**posted, "f.amount": amount}, headers=HX
            )
            assert refused.status_code == 422 and problem in refused.text
        edited = {**posted, "f.amount": "5", "f.nope": "1"}  # a field the form never had
        assert client.post(f"/instances/{iid}/send", data=edited, headers=HX).status_code == 200
        assert ran == [("A-1", 5)]
        iid = ask(refund, "A-1", 300, token="s3cret", call_id="web2")
        posted["wait_key"] = engine.get(iid).threads[0].waits[0].key
        done = client.post(f"/instances/{iid}/send", data={**posted, "f.amount": "25"})
        assert done.status_code == 303
    assert ran == [("A-1", 5), ("A-1", 25)]
    assert refund("A-1", 300, token="s3cret", call_id="web2") == 25

    # the JSON API: "arguments" in the decision's payload
    iid = ask(refund, "B-2", 90, call_id="api")
    with TestClient(make_app(engine), base_url=ORIGIN) as client:
        token = next(t for t, who in TOKENS.items() if who == "alice")
        auth = {"Authorization": f"Bearer {token}"}
        bad = client.post(
            f"/api/instances/{iid}/events/approval",
            json={"payload": {"approved": True, "arguments": {"amount": 9, "extra": 1}}},
            headers=auth,
        )
        assert bad.status_code == 422 and "no argument(s) 'extra'" in bad.text
        good = client.post(
            f"/api/instances/{iid}/events/approval",
            json={"payload": {"approved": True, "arguments": {"amount": 9}}},
            headers=auth,
        )
        assert good.status_code == 200, good.text
    assert ran[-1] == ("B-2", 9)


# --- Slack: "Edit and approve" ------------------------------------------------------------------


def test_slack_edit_and_approve_opens_a_form_of_the_arguments(
    sqlite_url: str, clock: Clock
) -> None:
    from signoff.engine.runtime.slack_client import make_client
    from signoff.web import create_app
    from slack_fake import APP, SECRET, TEAM, TOKEN, FakeSlack, click, form, signed, submission
    from web_support import TestClient

    alice = "U0ALICE"
    fake = FakeSlack().start()
    engine = Engine(
        sqlite_url, clock=clock, slack=make_client(TOKEN, fake.url), slack_users={"alice": alice}
    )
    ran: list[tuple[str, int]] = []

    @gate(engine, approvers=["alice"], redact=["token"], poll=POLL)
    def refund(order: str, amount: int, token: str = "") -> int:
        ran.append((order, amount))
        return amount

    app = create_app(
        engine, secret_key="s" * 32, slack_signing_secret=SECRET, slack_team_id=TEAM,
        slack_app_id=APP,
    )  # fmt: skip
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:

            def post(payload: dict[str, Any]) -> Any:
                body = form(payload)
                answer = client.post("/slack/interactions", content=body, headers=signed(body))
                app.state.signoff.slack.idle()
                engine.deliver_notices()  # what the interaction queued, after its commit
                return answer

            iid = ask(refund, "A-1", 300, token="s3cret", call_id="slack")
            engine.deliver_notices()  # the announcement goes after the commit
            (message,) = fake.posted()
            assert "s3cret" not in message.words() and REDACTED in message.words()
            assert set(message.buttons()) == {
                "signoff_approve",
                "signoff_deny",
                "signoff_edit",
                "signoff_reassign",
            }
            assert post(click(message, "signoff_edit", alice)).status_code == 200
            (view,) = fake.opened_views()
            (field,) = view["blocks"]
            assert json.loads(field["element"]["initial_value"]) == {"order": "A-1", "amount": 300}
            for text, problem in (
                ('{"amount": "lots"}', "amount: Input should be"),
                ('{"amount": 3, "to": "me"}', "no argument(s) 'to'"),
                ("[1, 2]", "JSON object"),
                ("{nope", "Not JSON"),
            ):
                refused = post(submission(view, alice, text)).json()
                assert refused["response_action"] == "errors"
                assert problem in refused["errors"]["arguments"]
                assert engine.get(iid).status == "waiting"
            assert post(submission(view, alice, '{"amount": 30}')).status_code == 200
            assert ran == [("A-1", 30)]
            assert message.buttons() == {}
    finally:
        engine.close()
        fake.stop()


# --- a real agent framework, offline: Pydantic AI -----------------------------------------------


def test_a_pydantic_ai_agent_whose_tool_is_gated_uses_the_approved_arguments(
    engine: Engine,
) -> None:
    ran: list[tuple[str, int]] = []

    @gate(engine, approvers=["alice"], poll=POLL)
    async def refund(order: str, amount: int) -> str:
        ran.append((order, amount))
        return f"refunded {amount} EUR on {order}"

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        """The "LLM": asks for a refund of 300, then reports what the tool said."""
        returned = [
            part
            for message in messages
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        if returned:
            return ModelResponse(parts=[TextPart(f"Done: {returned[-1].content}")])
        call = ToolCallPart("refund_order", {"order": "A-1", "amount": 300}, tool_call_id="tc_1")
        return ModelResponse(parts=[call])

    agent = Agent(FunctionModel(model))

    @agent.tool
    async def refund_order(ctx: RunContext[None], order: str, amount: int) -> str:
        """Refund an order."""
        return str(await refund(order, amount, call_id=ctx.tool_call_id))

    iid = iid_of(refund, "tc_1")

    def approver() -> None:  # a person, deciding in another thread, lowers the amount
        eventually(lambda: waiting(engine, iid))
        edit = {"approved": True, "arguments": {"amount": 30}}
        engine.send(iid, "approval", edit, actor="alice", via="web")

    with ThreadPoolExecutor(1) as pool:
        decided = pool.submit(approver)
        result = agent.run_sync("Refund order A-1, it arrived broken.")
        decided.result(timeout=20)
    assert result.output == "Done: refunded 30 EUR on A-1"
    assert ran == [("A-1", 30)]
    data = engine.get(iid).data
    assert (data["arguments"]["amount"], data["approved_arguments"]["amount"]) == (300, 30)
