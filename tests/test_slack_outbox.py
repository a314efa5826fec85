"""Slack notices through the outbox, against the fake Slack (tests/slack_fake.py): a process
killed between the commit and the post, or after Slack took the post but before it was marked
sent, posts each announcement once; an edit waits for its announcement, goes with it, and an
older edit never overwrites a newer one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock
from mail_workflows import Announced
from signoff.engine import Engine
from signoff.engine.runtime.slack_client import make_client
from slack_fake import TOKEN, FakeSlack

TESTS = Path(__file__).resolve().parent
USERS = {"alice": "U0ALICE", "bob": "U0BOB"}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def make_engine(url: str, clock: Clock, slack: FakeSlack) -> Engine:
    return Engine(
        url,
        [Announced],
        clock=clock,
        slack=make_client(TOKEN, slack.url),
        slack_users=USERS,
        operators=["carol"],
    )


KILLED = """
import sys
sys.path.insert(0, {tests!r})
from mail_workflows import Announced
from signoff.engine import Engine
from signoff.engine.runtime.slack_client import make_client

engine = Engine({url!r}, [Announced], slack=make_client({token!r}, {slack!r}),
                slack_users={users!r})
first, second = engine.start(Announced), engine.start(Announced)
print(first, second, flush=True)
engine.outbox.deliver(engine.notices(first)[0]["id"])  # Slack keeps the answer: killed here
"""


def test_a_process_killed_after_the_commit_or_after_the_post_posts_once(
    pg_url: str, slack: FakeSlack
) -> None:
    """The child commits two waits with their announcements, posts the first (Slack records it
    and keeps the answer) and is killed: the first was posted but not marked sent (its claim
    stays until the lease runs out), the second was committed but never sent. Another process
    posts the second once and finds the first by its metadata key instead of posting it again."""
    script = KILLED.format(tests=str(TESTS), url=pg_url, token=TOKEN, slack=slack.url, users=USERS)
    slack.hold_next_post()
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        try:
            assert slack.held.wait(60), "the child never posted"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            out, err = child.communicate(timeout=10)
            slack.release()
    assert child.returncode == -signal.SIGKILL, err
    first, second = out.split()
    [posted] = slack.posted()
    clock = Clock(datetime.now(UTC))
    engine = make_engine(pg_url, clock, slack)
    try:
        assert engine.deliver_notices() == 1  # the second; the first is still claimed
        assert len(slack.posted()) == 2
        clock.advance(minutes=2)  # the dead sender's lease has run out
        assert engine.deliver_notices() == 1
        assert engine.deliver_notices() == 0
        assert len(slack.posted()) == 2 and len(slack.called("chat.postMessage")) == 2
        assert engine.announcements(first, "main:1") == [
            {"channel": "C0APPROVALS", "ts": posted.ts}
        ]
        [found] = [h.message for h in engine.history(first) if h.kind == "notice sent"]
        assert found == (
            f"sent a Slack message to C0APPROVALS {clock.now:%H:%M} "
            "(an earlier attempt had posted it: not posted again)"
        )
        assert [h.kind for h in engine.history(second)].count("notice sent") == 1
        # the found message is the one the buttons of the first wait live in: it decides
        engine.send(first, "decision", {"approved": True}, actor="alice", via="slack")
        engine.run_due()  # the message catches up with the vote
        assert "*1 of 2 approvals*" in posted.words() and posted.edits == 1
    finally:
        engine.close()


def test_a_lost_answer_is_not_posted_again(sqlite_url: str, clock: Clock, slack: FakeSlack) -> None:
    """Slack posted the message but the answer never came back (a 500 after the post): the
    next attempt finds the post by its key and records it."""
    engine = make_engine(sqlite_url, clock, slack)
    try:
        iid = engine.start(Announced)
        original = slack.answer

        def lost(method: str, args: dict[str, Any], token: str) -> Any:
            found = original(method, args, token)  # Slack takes the post, then answers 500
            if method == "chat.postMessage":
                return 500, {}, {"ok": False, "error": "internal_error"}
            return found

        slack.answer = lost  # type: ignore[method-assign]
        assert engine.deliver_notices() == 0
        slack.answer = original  # type: ignore[method-assign]
        [message] = slack.posted()
        engine.run_due(clock.advance(seconds=1))
        assert len(slack.posted()) == 1
        assert engine.announcements(iid, "main:1") == [{"channel": "C0APPROVALS", "ts": message.ts}]
        told = [h.message for h in engine.history(iid) if h.kind.startswith("notice")]
        assert told[0].endswith("internal_error (HTTP 500), retrying in 1 s")
        assert told[1].endswith("(an earlier attempt had posted it: not posted again)")
    finally:
        engine.close()


def test_edits_wait_for_their_announcement_and_go_with_it(
    sqlite_url: str, clock: Clock, slack: FakeSlack
) -> None:
    engine = make_engine(sqlite_url, clock, slack)
    try:
        # Slack is down for the announcement; a vote's edit queued meanwhile waits for it
        slack.fail_next(1, 500)
        iid = engine.start(Announced)
        assert engine.deliver_notices() == 0
        engine.send(iid, "decision", {"approved": True}, actor="alice")
        engine.wake(iid)  # the announcement catches up with the vote: an edit is queued
        assert engine.deliver_notices() == 0 and slack.posted() == []
        clock.advance(seconds=1)
        assert engine.deliver_notices() == 2  # the announcement first, then its edit
        [message] = slack.posted()
        assert "*1 of 2 approvals*: <@U0ALICE>" in message.words() and message.edits == 1

        # two edits queued before either went: only the newer is sent (the older says less)
        engine.send(iid, "decision", {"approved": False, "reason": "no"}, actor="bob")
        engine.deliver_notices()
        assert "*Denied* by <@U0BOB>" in message.words() and message.buttons() == {}
        assert message.edits == 2
        edits = [n["status"] for n in engine.notices(iid) if n["what"] == "edit"]
        assert edits == ["sent", "sent"]
        [row] = engine.deliveries(iid, "alice")
        assert row["words"] == f"updated the Slack message to C0APPROVALS {clock.now:%H:%M}"

        second = engine.start(Announced)
        engine.deliver_notices()
        engine.send(second, "decision", {"approved": True}, actor="alice")
        engine.wake(second)  # edit 1: a vote
        engine.send(second, "decision", {"approved": True}, actor="bob")  # edit 2: approved
        assert engine.deliver_notices() == 1
        latest = slack.posted()[-1]
        assert "*Approved* by <@U0ALICE> and <@U0BOB>" in latest.words()
        assert latest.edits == 1
        edits = sorted(n["status"] for n in engine.notices(second) if n["what"] == "edit")
        assert edits == ["dropped", "sent"]

        # decided before its announcement went: neither it nor its edit is sent
        later = engine.start(Announced)
        engine.cancel(later, "not needed", actor="carol")
        engine.deliver_notices()
        assert len(slack.posted()) == 2
        assert {n["status"] for n in engine.notices(later)} == {"dropped"}
        told = [h.message for h in engine.history(later) if h.kind == "notice dropped"]
        assert told == [
            "Slack message to C0APPROVALS not sent: the wait ended first",
            "Slack message to C0APPROVALS not sent: its announcement was not sent (dropped)",
        ]
        [row] = engine.deliveries(later, "carol")
        assert row["words"].startswith("Slack message to C0APPROVALS not sent:")
    finally:
        engine.close()
