"""Log lines under `signoff.*`: a failing step and its retries, a decision, a timer that fires,
each naming the instance, workflow and thread in the text and as LogRecord attributes; the
command line turns APScheduler and Alembic down to warnings, and importing signoff configures
no logging at all."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta

import pytest
from signoff.engine import (
    Approval,
    Decision,
    Engine,
    On,
    Retry,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    Workflow,
)
from signoff.web.cli import main

from tests.conftest import Clock

RUNTIME = "signoff.engine.runtime"


class Upstream:
    """Down for the first `outage` calls."""

    outage = 0
    calls = 0


class Sync(Workflow):
    approved: bool = False

    def definition(self) -> S:
        return S(
            Step("fetch", self.fetch, retry=Retry(attempts=3, backoff=timedelta(seconds=10))),
            Wait(
                "sign-off",
                On("approval", Approval(approve=self.approve, deny=self.deny)),
                On("timeout", Timeout(after=timedelta(hours=1)), Return(error="nobody answered")),
            ),
            Return(),
        )

    def fetch(self) -> None:
        Upstream.calls += 1
        if Upstream.calls <= Upstream.outage:
            raise ConnectionError("upstream down")

    def approve(self, decision: Decision) -> None:
        self.approved = True

    def deny(self, decision: Decision) -> None:
        self.approved = False


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Engine:
    Upstream.calls = 0
    return Engine(sqlite_url, [Sync], clock=clock)


def told(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str | None, str]]:
    """(level, instance id, thread, text after the prefix) of the runtime's lines."""
    lines = []
    for r in caplog.records:
        if r.name != RUNTIME:
            continue
        where = vars(r)  # the `extra` attributes
        assert where["workflow"] == "Sync"
        prefix = f"Sync {where['instance_id']}" + (
            f" thread {where['workflow_thread']}" if where["workflow_thread"] else ""
        )
        message = r.getMessage()
        assert message.startswith(prefix + ": ")
        lines.append(
            (
                r.levelname,
                where["instance_id"],
                where["workflow_thread"],
                message[len(prefix) + 2 :],
            )
        )
    return lines


def test_step_failures_retries_and_the_decision_are_logged_with_where_they_happened(
    engine: Engine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    Upstream.outage = 2
    caplog.set_level(logging.INFO, logger="signoff")
    iid = engine.start(Sync, id="s1")
    engine.run_due(clock.advance(seconds=10))
    engine.run_due(clock.advance(seconds=20))
    engine.send(iid, "approval", {"approved": True}, actor="alice")
    assert engine.get(iid).status == "completed"
    assert told(caplog) == [
        ("INFO", "s1", None, "started via api"),
        (
            "WARNING",
            "s1",
            "main",
            "step 'fetch' failed (attempt 1 of 3), retrying in 10s: ConnectionError: upstream down",
        ),
        (
            "WARNING",
            "s1",
            "main",
            "step 'fetch' failed (attempt 2 of 3), retrying in 20s: ConnectionError: upstream down",
        ),
        ("INFO", "s1", "main", "decision on 'approval' by alice via api: approved"),
        ("INFO", "s1", "main", "completed"),
    ]


def test_a_step_out_of_attempts_fails_the_instance_at_error_level(
    engine: Engine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    Upstream.outage = 3
    caplog.set_level(logging.WARNING, logger="signoff")
    engine.start(Sync, id="s2")
    engine.run_due(clock.advance(seconds=10))
    engine.run_due(clock.advance(seconds=20))
    assert [(level, text) for level, _, _, text in told(caplog)][-2:] == [
        (
            "WARNING",
            "step 'fetch' failed (attempt 3 of 3), no attempts left: "
            "ConnectionError: upstream down",
        ),
        (
            "ERROR",
            "failed at 'fetch': step 'fetch' failed after 3 attempt(s): "
            "ConnectionError: upstream down",
        ),
    ]


def test_a_timer_that_fires_is_logged_and_healthy_steps_only_at_debug(
    engine: Engine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    Upstream.outage = 0
    caplog.set_level(logging.DEBUG, logger="signoff")
    engine.start(Sync, id="s3")
    engine.run_due(clock.advance(hours=1))
    lines = [(level, text) for level, _, _, text in told(caplog)]
    assert ("DEBUG", "step 'fetch' succeeded") in lines
    assert ("DEBUG", "waiting in 'sign-off'") in lines
    assert ("INFO", "timer fired: event 'timeout' of wait 'sign-off'") in lines
    assert lines[-1] == ("INFO", "completed with error: nobody answered")


def test_the_command_line_turns_third_party_chatter_down(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("apscheduler", "alembic"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    assert main(["db", "upgrade", "--db", sqlite_url]) == 0
    assert logging.getLogger("apscheduler").level == logging.WARNING
    assert logging.getLogger("alembic").level == logging.WARNING


def test_importing_signoff_configures_no_logging() -> None:
    probe = (
        "import logging, signoff.engine, signoff.web, signoff.web.cli; "
        "print(logging.getLogger().handlers, logging.getLogger('apscheduler').level, "
        "logging.getLogger('signoff').handlers)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] 0 []"
