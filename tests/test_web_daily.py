"""The smaller rows of issue 12: times that round the right way, outcomes in words, the demo's
first run (example instances, a quiet access log, a busy port said before "serving on"), and
the engine's inbox and counts under filters."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta
from typing import Any

import pytest
from signoff.engine import Engine, outcome_of
from signoff.web.app import relative
from signoff.web.auth import hash_password, hash_problem
from signoff.web.cli import ConfigError, _ActionsOnly, listen
from signoff.web.examples import UPSTREAM, WORKFLOWS, seed


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (3 * 86400 - 5, "3d"),  # a 3-day timeout armed a moment ago
        (4 * 3600 - 2, "4h"),
        (2 * 86400 + 5 * 3600, "2d 5h"),
        (90 * 60, "1h 30m"),
        (12 * 60 + 20, "12m"),
        (40, "40s"),
    ],
)
def test_relative_times_round_to_the_nearest(seconds: float, shown: str) -> None:
    assert relative(seconds) == shown


def test_outcomes_say_what_happened() -> None:
    denied = [{"approved": False, "actor": "alice", "via": "web"}]
    assert outcome_of("completed", "denied: no", denied) == ("denied", "denied by alice")
    timer = [{"approved": None, "actor": None, "via": "timer"}]
    assert outcome_of("completed", "no decision", timer) == ("timed out", "timed out")
    approved = [{"approved": True, "actor": "bob", "via": "api"}]
    assert outcome_of("completed", None, approved) == ("approved", "approved by bob")
    assert outcome_of("failed", "boom", [], ["fetch"]) == ("failed", "failed at 'fetch'")
    assert outcome_of("cancelled", None) == ("cancelled", "cancelled")
    assert outcome_of("completed", "oops") == ("ended with an error", "ended with an error")
    assert outcome_of("waiting", None) == ("waiting", "waiting")


def test_the_demo_starts_on_instances_in_every_interesting_state(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, workflows=WORKFLOWS)
    try:
        assert len(seed(engine)) == 8
        assert seed(engine) == []  # never twice
        outcomes = sorted(s.outcome for s in engine.list())
        assert outcomes == sorted(["waiting"] * 4 + ["failed", "approved", "denied", "timed out"])
        [refund] = engine.inbox("alice", workflow="ToolCall")  # the agent's proposed refund
        assert refund["title"].startswith('issue_refund(order="A-1042", amount=380')
        [purchase] = engine.inbox("alice", workflow="Purchase")
        assert (purchase["votes"], purchase["needed"]) == (1, 1)  # a quorum half-voted
        assert engine.counts(workflow="Expense") == {"completed": 3, "waiting": 1}
        assert engine.counts(search="employee:frank") == {"completed": 1}
    finally:
        engine.close()


def test_the_inbox_counts_over_all_pages_for_one_person(
    sqlite_url: str, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(UPSTREAM, "failure_rate", 0.0)  # the report reaches its review
    engine = Engine(sqlite_url, workflows=WORKFLOWS, clock=clock)
    try:
        for n in range(120):
            engine.start("Expense", {"employee": f"p{n}", "amount": n})
            clock.advance(seconds=1)
        engine.start("NightlyReport", {})  # anyone may publish it
        assert engine.inbox_count("alice") == 121
        assert engine.inbox_count("bob") == 1
        assert engine.inbox_count("alice", workflow="Expense") == 120
        assert engine.inbox_count("alice", search="employee:p7") == 11  # p7, p70..p79
        page3 = engine.inbox("alice", limit=50, offset=100)
        assert len(page3) == 21 and page3[0]["summary"] == {"amount": 100, "employee": "p100"}
        assert page3[0]["deadline"] == page3[0]["began_at"] + timedelta(days=3)
        assert page3[0]["due_at"] < page3[0]["deadline"]  # the reminder comes first
    finally:
        engine.close()


def test_a_busy_port_is_an_error_before_serving(capsys: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)


def test_the_access_log_keeps_actions_and_errors_not_every_refresh() -> None:
    keep = _ActionsOnly()

    def record(method: str, status: int) -> logging.LogRecord:
        args = ("127.0.0.1:5000", method, "/approvals", "1.1", status)
        return logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "%s", args, None)

    assert not keep.filter(record("GET", 200))
    assert not keep.filter(record("GET", 204))
    assert keep.filter(record("POST", 200))
    assert keep.filter(record("GET", 500))


def test_a_mangled_password_hash_is_named() -> None:
    assert hash_problem(hash_password("pw", n=2**4)) is None
    assert "single quotes" in (hash_problem("alice=scrypt:r=8:p=1") or "")
