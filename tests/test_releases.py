"""Rolling deploys and rollbacks: two releases of one workflow on one database never fail an
instance. Release 2 renames the approval wait (declared) and adds a "legal review" wait
(tests/release_workflows.py); each release runs in an engine of its own, as its processes
would. What one release cannot reach is left to the newer one (refused with `NewerRelease`,
its timers skipped) and nothing is failed, lost or noted; on a rollback, the newer release's
renames are followed back; a removal the newest release made still fails clearly."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from signoff.engine import (
    AlreadyDecided,
    Engine,
    NewerRelease,
    StatementMissing,
    Unavailable,
    Workflow,
)
from signoff.engine.runtime.slack_client import make_client
from signoff.web import create_app
from signoff.web.cli import main
from slack_fake import APP, SECRET, TEAM, TOKEN, FakeSlack, click, form, signed
from web_support import TestClient

from tests.conftest import Clock
from tests.release_workflows import ShopV1, ShopV2, ShopV3
from tests.test_scheduler import ready, stop

ROOT = Path(__file__).resolve().parent.parent

Deploy = Callable[[str, type[Workflow]], Engine]
YES = {"approved": True}
LAPSE_GONE = "wait 'legal review' (or its event 'lapse') no longer exists in workflow Shop"


@pytest.fixture
def deploy(clock: Clock) -> Iterator[Deploy]:
    """`deploy(url, release)`: an engine running that release on that database (a process)."""
    made: list[Engine] = []

    def make(url: str, release: type[Workflow]) -> Engine:
        made.append(Engine(url, [release], clock=clock))
        return made[-1]

    yield make
    for engine in made:
        engine.close()


def snapshot(engine: Engine, iid: str) -> tuple[Any, ...]:
    view = engine.get(iid)
    return (view.status, view.version, view.data, engine.history(iid))


def refusals(engine: Engine) -> float:
    series = engine.metrics.snapshot().counters["signoff_newer_release_refusals"]
    return series.get((("workflow", "Shop"),), 0.0)


def kinds(engine: Engine, iid: str) -> list[str]:
    return [h.kind for h in engine.history(iid)]


def test_the_old_release_leaves_to_the_new_one_what_it_moved(
    any_url: str, clock: Clock, deploy: Deploy
) -> None:
    v1 = deploy(any_url, ShopV1)
    old = v1.start("Shop", id="old")  # started before the deploy: at "approval"
    v2 = deploy(any_url, ShopV2)  # the deploy begins: both releases run
    new = v2.start("Shop", id="new")  # at "manager approval"
    v2.start("Shop", id="review")
    v2.send("review", "sign", YES, actor="alice")  # at "legal review", which v1 lacks
    before = {iid: snapshot(v1, iid) for iid in (new, "review")}

    # a decision sent to the old release for what the new one moved: refused, nothing changed
    with pytest.raises(NewerRelease) as refused:
        v1.send(new, "approve", YES, actor="alice")
    assert isinstance(refused.value, Unavailable) and refused.value.retry_after == 2.0
    assert str(refused.value) == (
        "a newer release of Shop handles this instance; try again in a moment"
    )
    with pytest.raises(NewerRelease):
        v1.send("review", "cleared", {"note": "ok"})
    with pytest.raises(NewerRelease):
        v1.check_event("review", "cleared", {"note": "ok"})
    assert {iid: snapshot(v1, iid) for iid in (new, "review")} == before
    assert refusals(v1) == 3

    # retried on the new release, each is applied; the new release decides old instances too
    assert v2.send(new, "approve", YES, actor="alice").thread("main").step == "legal review"
    assert v2.send(old, "approve", YES, actor="alice").thread("main").step == "legal review"
    assert v2.send("review", "cleared", {"note": "ok"}).result == "acs"
    assert [h.message for h in v2.history(old) if h.kind == "moved"] == [
        "moved from 'approval' to 'manager approval' by a deployment",
        "moved from 'approve' to 'sign' by a deployment",
    ]

    # deadlines: the old release's scheduler skips what it cannot reach, without a trace
    clock.advance(hours=1)
    v2.heartbeat()  # the new release's processes run on
    before = {iid: snapshot(v1, iid) for iid in (old, new)}
    assert v1.run_due() == 0
    after = {iid: snapshot(v1, iid) for iid in (old, new)}
    assert {i: (s[0], s[2], s[3]) for i, s in after.items()} == {
        i: (s[0], s[2], s[3]) for i, s in before.items()
    }  # the claim came and went: only the version moved
    assert refusals(v1) == 5
    assert v1.run_due() == 0  # given back a little later, not claimed again at once
    # the new release's workers fire them
    assert v2.run_due(clock.advance(seconds=2)) == 2
    for iid in (old, new):
        got = v2.get(iid)
        assert (got.status, got.result) == ("completed", "als"), iid
        assert "failed" not in kinds(v2, iid)
    assert v1.get(old).data["log"] == "als"


def test_a_rollback_follows_the_new_release_s_renames_back(
    any_url: str, clock: Clock, deploy: Deploy
) -> None:
    v1 = deploy(any_url, ShopV1)
    v2 = deploy(any_url, ShopV2)
    for iid in ("n1", "n2", "r1"):
        v2.start("Shop", id=iid)  # at "manager approval"
    v2.send("r1", "sign", YES, actor="alice")  # at "legal review"
    v2.close()  # the rollback: release 2's processes stop ...
    clock.advance(minutes=5)  # ... and are no longer seen
    v1 = deploy(any_url, ShopV1)

    # the check of the old code says what it carries back and what it strands
    found = v1.check_deployment().as_json()
    assert not found["ok"]
    assert (found["stranded"], found["held_instances"]) == ([], 1)
    assert [(h["name"], h["examples"]) for h in found["held"]] == [("legal review", ["r1"])]
    assert [(c["from"], c["to"], c["count"]) for c in found["carried"]] == [
        ("manager approval", "approval", 2)
    ]

    got = v1.send("n1", "approve", YES, actor="alice")  # the name release 1 has
    assert (got.status, got.result) == ("completed", "as")
    assert [h.message for h in v1.history("n1") if h.kind == "moved"] == [
        "moved from 'manager approval' to 'approval' by a rollback",
        "moved from 'sign' to 'approve' by a rollback",
    ]
    # a deadline armed by release 2 fires under release 1
    assert v1.run_due(clock.advance(hours=1)) == 1
    assert (v1.get("n2").status, v1.get("n2").result) == ("completed", "xs")
    assert "moved" in kinds(v1, "n2")

    # what release 1 lacks altogether waits for release 2, untouched
    before = snapshot(v1, "r1")
    with pytest.raises(NewerRelease):
        v1.send("r1", "cleared", {})
    assert snapshot(v1, "r1") == before and v1.get("r1").status == "waiting"

    # retiring release 2 makes it a removal: the instance then fails with today's message
    assert [r.seq for r in v1.retire_releases(unused=True)] == [2]
    assert v1.run_due(clock.advance(seconds=2)) == 1  # its lapse, due since the hour passed
    got = v1.get("r1")
    assert got.status == "failed"
    assert (
        got.error == "wait 'legal review' (or its event 'lapse') no longer exists in workflow Shop"
    )


def test_a_removal_the_newest_release_made_still_fails_clearly(
    any_url: str, clock: Clock, deploy: Deploy
) -> None:
    v1 = deploy(any_url, ShopV1)
    v2 = deploy(any_url, ShopV2)
    for iid in ("r1", "r2"):
        v2.start("Shop", id=iid)
        v2.send(iid, "sign", YES, actor="alice")  # at "legal review"
    v3 = deploy(any_url, ShopV3)  # the newest release drops "legal review"
    with pytest.raises(StatementMissing) as missing:
        v1.send("r1", "cleared", {})
    assert str(missing.value) == (
        "wait 'legal review' (or its event 'cleared') no longer exists in workflow Shop; "
        "instance r1 is now failed: deploy a fix, then retry it or move the thread with goto"
    )
    v3.run_due(clock.advance(hours=1))
    got = v3.get("r2")
    assert got.status == "failed"
    assert (
        got.error == "wait 'legal review' (or its event 'lapse') no longer exists in workflow Shop"
    )
    assert refusals(v1) == refusals(v3) == 0


def test_releases_are_recorded_once_each_in_order_and_bumped(
    any_url: str, clock: Clock, deploy: Deploy
) -> None:
    deploy(any_url, ShopV1)
    deploy(any_url, ShopV2)
    clock.advance(minutes=1)
    again = deploy(any_url, ShopV1)  # another process of release 1
    found = again.releases_recorded("Shop")
    assert [(r.seq, r.statements) for r in found] == [
        (1, frozenset({"approval", "expired", "ship"})),
        (2, frozenset({"manager approval", "legal review", "expired", "lapsed", "ship"})),
    ]
    assert found[0].last_seen == clock.now and found[1].last_seen == found[1].first_seen
    assert found[1].renames == {"manager approval": ("approval",)}
    assert found[1].events == {"manager approval": {"sign": ("approve",)}}
    assert found[0].fingerprint != found[1].fingerprint and len(found[0].fingerprint) == 16
    iid = again.start("Shop")
    assert again.get(iid).status == "waiting"


# --- every surface says "try again in a moment" ------------------------------------------------


def test_every_surface_answers_a_refusal_for_a_newer_release_as_temporary(
    sqlite_url: str,
    clock: Clock,
    deploy: Deploy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slack = FakeSlack().start()
    try:
        v1 = Engine(
            sqlite_url,
            [ShopV1],
            clock=clock,
            slack=make_client(TOKEN, slack.url),
            slack_users={"alice": "U0ALICE"},
        )
        v2 = Engine(
            sqlite_url,
            [ShopV2],
            clock=clock,
            slack=make_client(TOKEN, slack.url),
            slack_users={"alice": "U0ALICE"},
        )
        iid = v2.start("Shop", id="s1")  # its approval goes to Slack after the commit
        v2.deliver_notices()
        v2.start("Shop", id="s2")
        v2.send("s2", "sign", YES, actor="alice")  # at "legal review"
        before = snapshot(v1, iid)
        app = create_app(
            v1,
            secret_key="s" * 32,
            api_tokens={"token-alice-0123456789": "alice"},
            slack_signing_secret=SECRET,
            slack_team_id=TEAM,
            slack_app_id=APP,
        )
        with TestClient(app, base_url="http://127.0.0.1") as client:
            # the JSON API: 503 with Retry-After
            answer = client.post(
                f"/api/instances/{iid}/events/sign",
                json={"payload": YES},
                headers={"Authorization": "Bearer token-alice-0123456789"},
            )
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "2"
            assert answer.json()["type"] == "NewerRelease"
            assert "try again in a moment" in answer.json()["error"]
            # Slack: the click is answered, and the person told in an ephemeral message
            message = slack.posted()[0]  # s1's
            body = form(click(message, "signoff_approve", "U0ALICE"))
            response = client.post("/slack/interactions", content=body, headers=signed(body))
            client.app.state.signoff.slack.idle()  # type: ignore[attr-defined]
            assert response.status_code == 200
            assert slack.ephemerals("U0ALICE") == [
                "A newer release of Shop handles this instance; try again in a moment."
            ]
        assert snapshot(v1, iid) == before
        v1.close()
        v2.close()
    finally:
        slack.stop()

    # the command line: exit 75 (EX_TEMPFAIL), the instance untouched
    flows = ("--db", sqlite_url, "--workflows", "tests.release_workflows")
    capsys.readouterr()
    assert main(["send", "s2", "cleared", "--payload", "{}", *flows]) == 75
    assert capsys.readouterr().err == (
        "signoff: a newer release of Shop handles this instance; try again in a moment\n"
    )
    assert deploy(sqlite_url, ShopV2).get("s2").status == "waiting"


def test_signoff_releases_lists_and_retires(
    sqlite_url: str, deploy: Deploy, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = deploy(sqlite_url, ShopV1), deploy(sqlite_url, ShopV2)
    one, two = (e.releases.fingerprint("Shop") for e in (first, second))
    capsys.readouterr()
    assert main(["releases", "--db", sqlite_url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Shop",
        f"  #1  {one}  first seen 2026-01-05 09:00:00  last seen 2026-01-05 09:00:00 UTC  "
        "no process seen running it",
        f"  #2  {two}  first seen 2026-01-05 09:00:00  last seen 2026-01-05 09:00:00 UTC  "
        "no process seen running it",
    ]  # (the command runs on the real clock: the test's processes are long gone)
    assert main(["releases", "--db", sqlite_url, "--retire", "abc"]) == 1
    assert "six or more characters" in capsys.readouterr().out
    assert main(["releases", "--db", sqlite_url, "--retire", two[:8], "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["retired"] == [two] and found["problems"] == []
    assert [(r["seq"], r["running"], r["retired_at"] is not None) for r in found["releases"]] == [
        (1, False, False),
        (2, False, True),
    ]
    assert found["releases"][1]["renames"] == {"manager approval": ["approval"]}
    assert main(["releases", "--db", sqlite_url, "--retire-unused"]) == 0
    assert capsys.readouterr().out.startswith(f"retired Shop {one}\n")
    # a process that runs a retired release again brings it back
    deploy(sqlite_url, ShopV2)
    assert [r.retired for r in second.releases_recorded()] == [True, False]


# --- processes of their own, on PostgreSQL -------------------------------------------------------


def release_worker(url: str, release: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`signoff worker` running release `release` of Shop, sweeping often."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIGNOFF_TEST_RELEASE": release}
    log_path = tmp_path / f"worker-{release}-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "signoff.web.cli", "worker", "--db", url]
    command += ["--workflows", "tests.release_workflows", "--sweep-every", "0.25"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    return process, log_path


def until(check: Callable[[], bool], seconds: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "\n".join(p.read_text()[-1500:] for p in logs)
        time.sleep(0.1)


def decide(v1: Engine, v2: Engine, iid: str, event_v1: str, event_v2: str, **kw: Any) -> str:
    """Send to release 1 first, as a load balancer might; on NewerRelease, to release 2."""
    try:
        v1.send(iid, event_v1, **kw)
        return "1"
    except NewerRelease:
        v2.send(iid, event_v2, **kw)
        return "2"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_two_processes_of_two_releases_share_the_work(pg_url: str, tmp_path: Path) -> None:
    v1 = Engine(pg_url, [ShopV1])  # this process runs both releases, each in its engine
    v2 = Engine(pg_url, [ShopV2])
    workers = [release_worker(pg_url, r, tmp_path) for r in ("1", "2")]
    logs = [log for _, log in workers]
    try:
        for _, log in workers:
            ready(log, timeout=30)
        fast = {"approve_after": 0.5, "lapse_after": 0.5}
        for iid in ("d1", "d2"):
            v2.start("Shop", fast, id=iid)  # its deadlines fall due at once
        v2.start("Shop", id="e1")
        assert decide(v1, v2, "e1", "approve", "sign", payload=YES, actor="alice") == "2"
        assert decide(v1, v2, "e1", "cleared", "cleared", payload={}) == "2"
        assert v2.get("e1").result == "acs"
        # release 1's worker leaves the deadlines to release 2's, which fires them
        until(lambda: v2.counts().get("completed", 0) == 3, 30, logs)
        for iid in ("d1", "d2"):
            assert (v2.get(iid).result, "failed" in kinds(v2, iid)) == ("xls", False)
    finally:
        for process, _ in workers:
            stop(process)
        v1.close()
        v2.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_four_workers_of_two_releases_mixed_fail_and_lose_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    v1 = Engine(pg_url, [ShopV1])
    v2 = Engine(pg_url, [ShopV2])
    workers = [release_worker(pg_url, r, tmp_path) for r in ("1", "2", "1", "2")]
    logs = [log for _, log in workers]
    count = 40
    try:
        for _, log in workers:
            ready(log, timeout=30)
        fast = {"approve_after": 1.0, "lapse_after": 1.0}
        for i in range(count):
            (v1 if i % 2 else v2).start("Shop", fast, id=f"i{i}")
        # decisions for a quarter of them, sent as a load balancer would, while timers fire
        for i in range(0, count, 4):
            with contextlib.suppress(AlreadyDecided):
                decide(v1, v2, f"i{i}", "approve", "sign", payload=YES, actor="alice")
        until(lambda: v1.counts().get("completed", 0) == count, 60, logs)
    finally:
        for process, _ in workers:
            stop(process)
    try:
        assert v1.counts() == {"completed": count}  # 0 failed, 0 lost
        for i in range(count):
            history = v1.history(f"i{i}")
            assert "failed" not in [h.kind for h in history]
            log = v1.get(f"i{i}").result
            assert log.count("s") == 1 and log.endswith("s"), (i, log)  # shipped once
            decided = [h for h in history if h.kind in ("event", "decision")]
            assert len({h.name for h in decided if h.name in ("approve", "sign", "expire")}) == 1
    finally:
        v1.close()
        v2.close()
