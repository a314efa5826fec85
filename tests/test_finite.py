"""Only finite numbers. JSON has no NaN and no Infinity, yet Python's `json` reads and writes
them, pydantic turns the text "nan" into a float, and pydantic writes such a float as null.
So one that slipped in was either stored as a literal that made the history unreadable, or as
a null the workflow's own model then refused at its next event.

The story: a parcel is weighed (`Scale`, tests/finite_workflows.py). NaN and ±Infinity are
refused wherever they could come in — start data, payloads, the JSON API, the dashboard's
forms, the command line, Slack — with `InvalidData` naming the field, and each refusal
changes nothing. A step or a callback that makes one itself fails there, naming the field,
with the data as it was before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Clock
from signoff.engine import Engine, InvalidData
from signoff.engine.runtime.slack_client import make_client
from signoff.web.cli import main
from slack_fake import APP, SECRET, TEAM, TOKEN, FakeSlack, click, form, signed
from web_support import HX, ORIGIN, TOKENS, TestClient, make_app, sign_in

from tests.finite_workflows import Crate, Scale, Tally

NAN, INF = math.nan, math.inf
ALICE_TOKEN = next(t for t, who in TOKENS.items() if who == "alice")
ALICE_SLACK = "U0ALICE"


def snapshot(engine: Engine, iid: str) -> tuple[Any, Any]:
    """All there is to see of an instance: its view and its history."""
    return engine.get(iid), engine.history(iid)


def weighed(engine: Engine, value: float = 10.0, factor: float = 1.0) -> str:
    """A Scale instance whose reading was taken and converted: it waits for alice."""
    iid = engine.start(Scale, {"factor": factor})
    engine.send(iid, "reading", {"value": value})
    return iid


# --- the engine: start data and payloads, on a SQLite file and on PostgreSQL -----------------


@pytest.mark.parametrize(
    ("data", "field", "shown"),
    [
        ({"weight": NAN}, "weight", "nan"),
        ({"factor": INF}, "factor", "inf"),
        ({"readings": [1.0, -INF]}, "readings[1]", "-inf"),
        ({"weight": "NaN"}, "weight", "nan"),  # text a float field makes a number of
        ({"factor": "-Infinity"}, "factor", "-inf"),
    ],
)
def test_start_data_that_is_not_finite_is_refused_and_nothing_is_stored(
    any_url: str, data: dict[str, Any], field: str, shown: str
) -> None:
    engine = Engine(any_url, [Scale])
    with pytest.raises(InvalidData) as refused:
        engine.start(Scale, data)
    assert str(refused.value) == (
        f"the data has a value that is not a finite number in field '{field}' ({shown})"
    )
    assert engine.list() == []
    engine.close()


def test_a_payload_that_is_not_finite_is_refused_and_changes_nothing(any_url: str) -> None:
    engine = Engine(any_url, [Scale])
    iid = engine.start(Scale)
    before = snapshot(engine, iid)
    refusals = [
        ("reading", {"value": NAN}, "the payload has a value that is not a finite number in "),
        ("reading", {"value": "inf"}, "the payload has a value that is not a finite number in "),
        ("reading", {"value": 1.0, "notes": {"tare": [-INF]}}, "the payload has a value "),
    ]
    for event, payload, message in refusals:
        with pytest.raises(InvalidData, match=message):
            engine.check_event(iid, event, payload)
        with pytest.raises(InvalidData, match=message):
            engine.send(iid, event, payload)
    with pytest.raises(InvalidData, match=r"in field 'notes\.tare\[0\]' \(-inf\)"):
        engine.send(iid, "reading", {"value": 1.0, "notes": {"tare": [-INF]}})
    with pytest.raises(InvalidData, match=r"in field 'value' \(inf\)"):
        engine.send(iid, "reading", {"value": "Infinity"})  # the Input's model made it a float
    assert snapshot(engine, iid) == before

    engine.send(iid, "reading", {"value": 10.0})
    before = snapshot(engine, iid)
    with pytest.raises(InvalidData, match=r"in field 'x' \(nan\)"):
        engine.send(iid, "decision", {"approved": True, "x": NAN}, actor="alice")
    assert snapshot(engine, iid) == before
    done = engine.send(iid, "decision", {"approved": True}, actor="alice")
    assert (done.status, done.result) == ("completed", {"weight": 10.0})
    assert engine.get(iid).data["trace"] == ["read 10.0", "converted", "approved by alice"]
    engine.close()


# --- what the workflow's own code does ----------------------------------------------------------


def test_a_step_that_overflows_to_infinity_fails_there_naming_the_field(any_url: str) -> None:
    engine = Engine(any_url, [Scale])
    iid = weighed(engine, value=10.0, factor=1e308)
    got = engine.get(iid)
    assert got.status == "failed"
    assert got.error == (
        "step 'convert' failed after 1 attempt(s): step 'convert' left a value that is not a "
        "finite number in field 'weight' (inf)"
    )
    # the data as the reading left it: nothing stored as null in the number's place
    assert got.data == {"weight": 10.0, "factor": 1e308, "readings": [10.0], "trace": ["read 10.0"]}
    again = Engine(any_url, [Scale])  # and it reads back, history and all, in a fresh process
    assert again.get(iid).data == got.data
    assert [h.kind for h in again.history(iid)][-2:] == ["step failed", "failed"]
    engine.close()
    again.close()


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        ("box", "step 'fill' left a value that is not a finite number in field 'box.weight' (inf)"),
        ("totals", "step 'fill' left a value that is not a finite number in field 'totals.kg' "),
        ("undeclared", "step 'fill' left a value that is not a finite number in field 'spare' "),
        ("result", "the workflow returned a value that is not a finite number in field 'weight' "),
    ],
)
def test_nested_models_dicts_undeclared_fields_and_the_result_are_looked_at_too(
    sqlite_url: str, spoil: str, error: str
) -> None:
    engine = Engine(sqlite_url, [Crate])
    got = engine.get(engine.start(Crate, {"spoil": spoil}))
    assert got.status == "failed"
    assert got.error is not None and error in got.error
    assert got.data["label"] == "NaN-proof, to Infinity"  # text that reads so is no number
    assert got.data["box"]["weight"] in (0.0, 10.0)  # never null
    assert "spare" not in got.data and got.data["totals"] == {}
    engine.close()


def test_a_callback_that_leaves_nan_refuses_the_event_and_changes_nothing(
    sqlite_url: str,
) -> None:
    engine = Engine(sqlite_url, [Tally])
    iid = engine.start(Tally)
    before = snapshot(engine, iid)
    with pytest.raises(InvalidData) as refused:
        engine.send(iid, "decision", {"approved": True})
    assert str(refused.value) == (
        "the approval handler of 'decision' left a value that is not a finite number in field "
        "'average' (nan)"
    )
    assert snapshot(engine, iid) == before
    engine.close()


# --- the surfaces: JSON API, dashboard forms, command line, Slack ------------------------------


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Iterator[Engine]:
    eng = Engine(sqlite_url, [Scale], clock=clock)
    yield eng
    eng.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as c:
        yield c


def api(client: TestClient, path: str, body: str) -> Any:
    """POST a raw JSON body as alice's token: the literals are what a client could send."""
    return client.post(
        f"/api{path}",
        content=body,
        headers={"Authorization": f"Bearer {ALICE_TOKEN}", "Content-Type": "application/json"},
    )


def test_the_api_refuses_nan_and_infinity_literals_naming_the_field(
    client: TestClient, engine: Engine
) -> None:
    started = api(client, "/instances", '{"workflow": "Scale", "data": {"weight": NaN}}')
    assert started.status_code == 422
    assert started.json() == {
        "error": "the body has a value that is not a finite number in field 'data.weight' (nan)",
        "type": "InvalidData",
    }
    assert engine.list() == []

    iid = engine.start(Scale)
    before = snapshot(engine, iid)
    for body, field in [
        ('{"payload": {"value": Infinity}}', "payload.value' (inf)"),
        ('{"payload": {"value": 1, "tare": [-Infinity]}}', "payload.tare[0]' (-inf)"),
    ]:
        refused = api(client, f"/instances/{iid}/events/reading", body)
        assert refused.status_code == 422
        assert refused.json()["error"].endswith(field)
    as_text = api(client, f"/instances/{iid}/events/reading", '{"payload": {"value": "nan"}}')
    assert as_text.status_code == 422 and "field 'value' (nan)" in as_text.json()["error"]
    assert snapshot(engine, iid) == before

    api(client, f"/instances/{iid}/events/reading", '{"payload": {"value": 10}}')
    decision = '{"payload": {"approved": true, "x": NaN}}'
    assert api(client, f"/instances/{iid}/events/decision", decision).status_code == 422
    history = client.get(
        f"/api/instances/{iid}/history", headers={"Authorization": f"Bearer {ALICE_TOKEN}"}
    )
    assert history.status_code == 200  # readable, and no decision in it
    assert [e["kind"] for e in history.json()["history"]][-1] == "waiting"
    assert engine.get(iid).status == "waiting"


def test_dashboard_forms_refuse_nan_and_inf(client: TestClient, engine: Engine) -> None:
    client.headers["X-CSRF-Token"] = sign_in(client, "alice")
    client.headers["Origin"] = ORIGIN
    for text in ("nan", "inf", "-Infinity"):
        started = client.post("/workflows/Scale/start", headers=HX, data={"f.factor": text})
        assert started.status_code == 422
        assert started.context["page"].errors == {"factor": "must be a finite number"}
    as_json = client.post("/workflows/Scale/start", headers=HX, data={"f.readings": "[NaN]"})
    assert as_json.status_code == 422
    assert "not a finite number in field 'readings[0]'" in as_json.context["page"].message
    assert engine.list() == []

    iid = engine.start(Scale)
    before = snapshot(engine, iid)
    for text in ("nan", "inf"):
        sent = client.post(
            f"/instances/{iid}/send",
            headers=HX,
            data={"event": "reading", "mode": "input", "f.value": text},
        )
        assert sent.status_code == 422
        assert sent.context["page"].flash.message == "Invalid input: value: must be a finite number"
    raw = client.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "reading", "mode": "json", "payload": '{"value": NaN}'},
    )
    assert raw.status_code == 422
    assert "not a finite number in field 'value' (nan)" in raw.context["page"].flash.message
    assert snapshot(engine, iid) == before
    assert client.get(f"/instances/{iid}").status_code == 200


def test_the_command_line_refuses_them_with_exit_code_1(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def cli(*args: str) -> tuple[int, str]:
        code = main([*args, "--db", sqlite_url, "--workflows", "tests.finite_workflows"])
        return code, capsys.readouterr().err

    assert cli("start", "Scale", "--data", '{"factor": Infinity}') == (
        1,
        "signoff: --data has a value that is not a finite number in field 'factor' (inf)\n",
    )
    assert cli("start", "Scale", "--data", '{"factor": "nan"}') == (
        1,
        "signoff: the data has a value that is not a finite number in field 'factor' (nan)\n",
    )
    assert cli("start", "Scale", "--id", "s1") == (0, "")
    before = Engine(sqlite_url, [Scale]).get("s1")
    assert cli("send", "s1", "reading", "--payload", '{"value": NaN}') == (
        1,
        "signoff: --payload has a value that is not a finite number in field 'value' (nan)\n",
    )
    assert cli("send", "s1", "reading", "--payload", '{"value": "-inf"}') == (
        1,
        "signoff: the payload has a value that is not a finite number in field 'value' (-inf)\n",
    )
    assert Engine(sqlite_url, [Scale]).get("s1") == before


def test_a_slack_interaction_holding_nan_is_refused(sqlite_url: str, clock: Clock) -> None:
    slack = FakeSlack().start()
    engine = Engine(
        sqlite_url,
        [Scale],
        clock=clock,
        slack=make_client(TOKEN, slack.url),
        slack_users={"alice": ALICE_SLACK},
    )
    app = make_app(engine, slack_signing_secret=SECRET, slack_team_id=TEAM, slack_app_id=APP)
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            iid = weighed(engine)
            engine.deliver_notices()  # the announcement goes after the commit
            (message,) = slack.posted()
            before = snapshot(engine, iid)

            def interact(payload: dict[str, Any]) -> Any:
                body = form(payload)  # Python's json writes the float as a bare NaN
                response = client.post("/slack/interactions", content=body, headers=signed(body))
                app.state.signoff.slack.idle()
                return response

            forged = click(message, "signoff_approve", ALICE_SLACK)
            forged["actions"][0]["action_ts"] = NAN  # Slack sends text there, and never NaN
            refused = interact(forged)
            assert (refused.status_code, refused.text) == (
                400,
                "the payload is not JSON: NaN is not a JSON number",
            )
            assert snapshot(engine, iid) == before

            assert interact(click(message, "signoff_approve", ALICE_SLACK)).status_code == 200
            assert engine.get(iid).result == {"weight": 10.0}
    finally:
        engine.close()
        slack.stop()
