"""Email and the outbox, against a real SMTP server on 127.0.0.1 (aiosmtpd) inside the tests:
the message and its parts, delivery once the server is back, a process killed between the
commit and the send, someone's link that only they receive, addresses that would inject
headers, and a slow server that never holds up a transition."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from aiosmtpd.controller import Controller
from conftest import Clock
from mail_workflows import WORKFLOWS, Purchase, TwoSteps
from signoff.engine import (
    Engine,
    InvalidData,
    Mailer,
    NotReachable,
    Scheduler,
    read_link_token,
    signed_link_maker,
)
from signoff.web.cli import ConfigError, mail_settings, main
from web_support import ORIGIN, TestClient, make_app, sign_in

SECRET = "test-secret-key"  # web_support.make_app's
BASE = "http://testserver"
EMAILS = {"alice": "alice@example.com", "erin": "erin@bücher.example", "dave": "dave@example.com"}
TESTS = Path(__file__).resolve().parent


class Mailbox:
    """What the SMTP server received; `answer` is its reply to DATA, `pause` how long it
    takes to give it."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.answer = "250 OK"
        self.pause = 0.0
        self.answered_at: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.pause:
            await asyncio.sleep(self.pause)
        self.answered_at.append(time.monotonic())
        if self.answer.startswith("250"):
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append((list(envelope.rcpt_tos), message))
        return self.answer

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpt, m in self.received if address in rcpt]


class SMTPServer:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.box = Mailbox()
        self.controller: Controller | None = None

    def up(self) -> None:
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def mailer(self, timeout: float = 5.0) -> Mailer:
        return Mailer(
            f"smtp://127.0.0.1:{self.port}", sender="signoff@example.com", timeout=timeout
        )


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.up()
    yield server
    server.down()


@pytest.fixture
def down_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()  # nothing listens on its port until `up()`
    yield server
    server.down()


def make_engine(url: str, clock: Any, mailer: Mailer, **kw: Any) -> Engine:
    engine = Engine(
        url,
        WORKFLOWS,
        clock=clock,
        mailer=mailer,
        emails=EMAILS,
        groups={"finance": ["erin"]},
        operators=["carol"],
        base_url=BASE,
        **kw,
    )
    engine.set_link_maker(signed_link_maker(SECRET, BASE))
    return engine


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def link_claims(text: str) -> list[Any]:
    """The claims of the /link/ URLs in a text, read with the server's key."""
    found = []
    for word in text.split():
        if "/link/" in word:
            token = unquote(urlsplit(word.strip('"<>')).path.rsplit("/", 1)[1])
            found.append(read_link_token(SECRET, token))
    return found


def test_the_message_and_its_parts(any_url: str, smtp: SMTPServer) -> None:
    clock = Clock(datetime(2025, 12, 8, 17, 0, tzinfo=UTC))  # a Monday
    engine = make_engine(any_url, clock, smtp.mailer())
    try:
        iid = engine.start(Purchase, {"item": "a <b>chair</b>"})
        assert smtp.box.received == []  # nothing is sent inside the transition
        assert engine.run_due() == 0 and len(smtp.box.received) == 3
        wait = engine.get(iid).waits[0]
        bob = smtp.box.to("bob@example.com")[0]  # an approver written as an address
        assert smtp.box.to("erin@xn--bcher-kva.example")  # a group member; IDNA domain
        [message] = smtp.box.to("alice@example.com")
        assert message["Subject"] == "Approval needed: Buy a <b>chair</b>"
        assert message["From"] == "signoff@example.com" and message["To"] == "alice@example.com"
        [row] = [n for n in engine.notices(iid) if n["person"] == "alice"]
        assert message["Message-ID"] == f"<{row['id'][:48]}@example.com>"
        assert message["Message-ID"] != bob["Message-ID"]
        text, html = parts(message)
        for body in (text, html):
            assert "by Tue 9 Dec, 17:00 UTC" in body  # the deadline, in words
            assert f"{BASE}/instances/{iid}" in body
            assert "120" in body and "internal" not in body  # the summary fields only
        assert "Buy a <b>chair</b>" in text and "Buy a &lt;b&gt;chair&lt;/b&gt;" in html
        assert "For the new office." in text
        # no images, scripts, style sheets or outside assets; styles inline
        for absent in ("<img", "<script", "<style", "<link", "src=", "url("):
            assert absent not in html.lower()
        approve, deny = link_claims(text)
        assert (approve.approver, approve.instance_id, approve.wait_key) == ("alice", iid, wait.key)
        assert approve.expires_at == datetime(2025, 12, 9, 17, 0, tzinfo=UTC)  # the deadline
        assert approve.nonce == deny.nonce  # one link: it decides once
        assert "?decision=approve" in text and "?decision=deny" in text
        assert [c.approver for c in link_claims(html)] == ["alice", "alice"]
        assert [c.approver for c in link_claims(parts(bob)[0])] == ["bob@example.com"] * 2
        sent = [h.message for h in engine.history(iid) if h.kind == "notice sent"]
        assert sorted(sent) == [
            "emailed alice 17:00",
            "emailed bob@example.com 17:00",
            "emailed erin 17:00",
        ]
        # each reminder: a message of its own; a second run sends nothing twice
        clock.advance(hours=1, minutes=1)
        engine.run_due()
        engine.run_due()
        reminders = smtp.box.to("alice@example.com")[1:]
        assert [m["Subject"] for m in reminders] == [
            "Reminder: Buy a <b>chair</b> waits for your decision"
        ]
        assert reminders[0]["Message-ID"] != message["Message-ID"]
        # the escalation: everyone who may decide now, dave too; no reminder besides it
        clock.advance(hours=1)
        engine.run_due()
        escalated = "Escalated: Buy a <b>chair</b> waits for a decision"
        assert [m["Subject"] for m in smtp.box.to("alice@example.com")[2:]] == [escalated]
        assert [m["Subject"] for m in smtp.box.to("dave@example.com")] == [escalated]
        assert engine.deliver_notices() == 0
        assert all(n["status"] == "sent" for n in engine.notices(iid))
    finally:
        engine.close()


def test_delivery_after_the_mail_server_was_down(
    sqlite_url: str, clock: Clock, down_smtp: SMTPServer
) -> None:
    engine = make_engine(sqlite_url, clock, down_smtp.mailer())
    try:
        iid = engine.start(TwoSteps)
        engine.run_due()  # nothing listens: refused at once
        clock.advance(seconds=1)
        engine.run_due()
        down_smtp.up()
        down_smtp.box.answer = "550 5.1.1 mailbox unavailable"
        clock.advance(seconds=2)
        engine.run_due()
        clock.advance(seconds=3)  # not yet: the next try is 4 s after the last
        assert engine.deliver_notices() == 0
        down_smtp.box.answer = "250 OK"
        clock.advance(seconds=1)
        assert engine.deliver_notices() == 1
        assert engine.deliver_notices() == 0
        assert len(down_smtp.box.to("alice@example.com")) == 1
        told = [h.message for h in engine.history(iid) if h.kind.startswith("notice")]
        assert told[0].startswith("email to alice failed: the mail server 127.0.0.1:")
        assert told[0].endswith(", retrying in 1 s")
        assert told[1].endswith(", retrying in 2 s")
        assert told[2] == ("email to alice failed: 550 5.1.1 mailbox unavailable, retrying in 4 s")
        assert told[3] == f"emailed alice {clock.now:%H:%M}" and len(told) == 4
        [row] = engine.notices(iid)
        assert (row["status"], row["attempts"], row["error"]) == ("sent", 4, None)
    finally:
        engine.close()


def test_a_message_whose_wait_ended_first_is_dropped(
    sqlite_url: str, clock: Clock, smtp: SMTPServer
) -> None:
    engine = make_engine(sqlite_url, clock, smtp.mailer())
    try:
        iid = engine.start(TwoSteps)
        engine.send(iid, "one", {"approved": True}, actor="alice")  # before the mail went
        engine.run_due()
        [second] = smtp.box.received  # only the second approval's: the first's links are dead
        assert second[1]["Subject"] == "Approval needed: Second"
        statuses = {n["wait_key"]: n["status"] for n in engine.notices(iid)}
        assert statuses == {"main:1": "dropped", "main:2": "sent"}
        assert "email to alice not sent: the wait ended first" in [
            h.message for h in engine.history(iid)
        ]
    finally:
        engine.close()


KILLED = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from mail_workflows import WORKFLOWS, TwoSteps
from signoff.engine import Engine, Mailer

class Stuck(Mailer):
    def send(self, to, content, key, now):
        Path({marker!r}).write_text(key)  # claimed: the row is ours, and we hang here
        time.sleep(120)

engine = Engine({url!r}, WORKFLOWS, mailer=Stuck("smtp://127.0.0.1:1", sender="s@example.com"),
                emails={{"alice": "alice@example.com"}}, base_url="http://testserver")
iid = engine.start(TwoSteps)
print(iid, flush=True)
engine.deliver_notices()
"""


def test_a_process_killed_between_the_commit_and_the_send(
    any_url: str, smtp: SMTPServer, tmp_path: Path
) -> None:
    """The process commits the wait with its message, claims the message and hangs in the
    mail server's hands; SIGKILL. Another process delivers it once, after the lease."""
    marker = tmp_path / "claimed"
    script = KILLED.format(tests=str(TESTS), marker=str(marker), url=any_url)
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        try:
            deadline = time.monotonic() + 60
            while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert marker.exists(), "the child never reached the send"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            out, err = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL, err
    iid = out.strip()
    clock = Clock(datetime.now(UTC))
    engine = make_engine(any_url, clock, smtp.mailer())
    try:
        [row] = engine.notices(iid)
        assert (row["status"], row["id"]) == ("pending", marker.read_text())
        assert engine.deliver_notices() == 0  # still claimed: its lease has not run out
        clock.advance(minutes=3)  # the lease (six times the mailer's timeout) has run out
        assert engine.deliver_notices() == 1
        assert engine.deliver_notices() == 0
        [message] = smtp.box.to("alice@example.com")
        assert message["Message-ID"] == smtp.mailer().message_id(row["id"])
        assert [h.kind for h in engine.history(iid)].count("notice sent") == 1
    finally:
        engine.close()


def test_link_for_someone_goes_to_them_and_is_never_shown(
    sqlite_url: str, clock: Clock, smtp: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url, clock, smtp.mailer())
    engine.add_operators("alice")
    try:
        iid = engine.start(TwoSteps)
        engine.run_due()
        smtp.box.received.clear()
        with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as client:
            client.headers["X-CSRF-Token"] = sign_in(client, "carol")
            client.headers["Origin"] = ORIGIN
            made = client.post(f"/instances/{iid}/link", data={"event": "one", "approver": "dave"})
            assert made.status_code == 403  # dave may not decide this one
            assert "/link/" not in made.text
            made = client.post(f"/instances/{iid}/link", data={"event": "one", "approver": "alice"})
            assert made.status_code == 200, made.text
            assert "Sent to alice by email (alice@example.com)" in made.text
            assert "/link/" not in made.text and "token" not in made.text.lower()
            page = client.get(f"/instances/{iid}")
            assert "/link/" not in page.text
        engine.run_due()
        [message] = smtp.box.to("alice@example.com")
        assert message["Subject"] == "Your link to decide: First"
        text, _ = parts(message)
        assert "carol asked signoff to send you your link" in text
        assert [c.approver for c in link_claims(text)] == ["alice", "alice"]
        asked = next(h for h in engine.history(iid) if h.kind == "link sent")
        assert (asked.actor, asked.name) == ("carol", "alice")
        assert asked.message == "carol asked for alice's link: emailing alice@example.com"

        # the command line: sends it, prints where it went, never the link
        monkeypatch.setenv("SIGNOFF_SECRET_KEY", SECRET)
        monkeypatch.setenv("SIGNOFF_SMTP_URL", f"smtp://127.0.0.1:{smtp.port}")
        monkeypatch.setenv("SIGNOFF_MAIL_FROM", "signoff <signoff@example.com>")
        monkeypatch.setenv("SIGNOFF_USER_EMAILS", "alice=alice@example.com")
        monkeypatch.setenv("SIGNOFF_OPERATORS", "carol")
        from io import StringIO

        out = StringIO()
        args = ["link", iid, "--approver", "alice", "--as", "carol", "--db", sqlite_url]
        assert main([*args, "--workflows", "mail_workflows"], out=out) == 0
        assert out.getvalue() == "sent to alice by email (alice@example.com)\n"
        assert len(smtp.box.to("alice@example.com")) == 2  # sent by the command itself
        # refused, saying why: nobody with that address, and no mailer at all
        monkeypatch.setenv("SIGNOFF_OPERATORS", "carol,group:x")
        with pytest.raises(NotReachable, match="alice has no email address"):
            engine_without = Engine(sqlite_url, WORKFLOWS, slack=None, clock=clock,
                                    mailer=smtp.mailer(), operators=["carol"])  # fmt: skip
            try:
                engine_without.set_link_maker(signed_link_maker(SECRET, BASE))
                engine_without.send_link(iid, "alice", actor="carol")
            finally:
                engine_without.close()
        monkeypatch.delenv("SIGNOFF_SMTP_URL")
        out = StringIO()
        assert main([*args, "--workflows", "mail_workflows"], out=out) != 0
        assert "/link/" not in out.getvalue()
    finally:
        engine.close()


@pytest.mark.parametrize(
    "bad",
    [
        "alice@example.com\r\nBcc: everyone@example.com",
        "alice@example.com\nSubject: hi",
        "alice",  # not an address
        "älice@example.com",  # a local part outside ASCII
        "alice@example.com, mallory@example.com",
        "<alice@example.com>",
    ],
)
def test_addresses_that_would_inject_headers_are_refused(
    bad: str, sqlite_url: str, smtp: SMTPServer
) -> None:
    with pytest.raises(InvalidData, match="email address of 'alice'"):
        Engine(sqlite_url, WORKFLOWS, emails={"alice": bad}).close()
    with pytest.raises(ConfigError, match="SIGNOFF_USER_EMAILS"):
        mail_settings({"SIGNOFF_USER_EMAILS": f"alice={bad}"})
    if not bad.startswith("<"):  # "<a@example.com>" is a fine sender
        with pytest.raises(ValueError):
            Mailer(f"smtp://127.0.0.1:{smtp.port}", sender=bad)
    with pytest.raises(ValueError):  # nor through the mailer itself
        smtp.mailer().compose(bad, {"subject": "s", "text": "t"}, "k" * 64, datetime.now(UTC))


def test_mail_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_MAIL_FROM"):
        mail_settings({"SIGNOFF_SMTP_URL": "smtp://mail.example.com"})
    with pytest.raises(ConfigError, match="smtp:// or smtps://"):
        mail_settings({"SIGNOFF_SMTP_URL": "http://x", "SIGNOFF_MAIL_FROM": "a@example.com"})
    with pytest.raises(ConfigError, match="name=address"):
        mail_settings({"SIGNOFF_USER_EMAILS": "alice"})
    found = mail_settings(
        {
            "SIGNOFF_SMTP_URL": "smtps://user:p%40ss@mail.example.com",
            "SIGNOFF_MAIL_FROM": "signoff <signoff@example.com>",
            "SIGNOFF_USER_EMAILS": "alice=alice@example.com, erin=erin@bücher.example",
        }
    )
    mailer = found["mailer"]
    assert (mailer.host, mailer.port, mailer.implicit_tls) == ("mail.example.com", 465, True)
    assert (mailer.user, mailer.password) == ("user", "p@ss") and "p@ss" not in repr(mailer)
    assert found["emails"] == {"alice": "alice@example.com", "erin": "erin@bücher.example"}


def test_a_slow_mail_server_never_holds_up_a_transition(sqlite_url: str, smtp: SMTPServer) -> None:
    """With a scheduler running, the committing process sends at once, from its pool: the
    transition has returned long before the server answers."""
    smtp.box.pause = 1.5
    engine = Engine(sqlite_url, WORKFLOWS, mailer=smtp.mailer(), emails=EMAILS, base_url=BASE)
    scheduler = Scheduler(engine, sweep_every=0.5, horizon=1.0)
    scheduler.start()
    try:

        def arrived(count: int) -> None:
            deadline = time.monotonic() + 20
            while len(smtp.box.received) < count and time.monotonic() < deadline:
                time.sleep(0.05)

        began = time.monotonic()
        iid = engine.start(TwoSteps)
        started = time.monotonic()
        arrived(1)
        engine.send(iid, "one", {"approved": True}, actor="alice")
        sent = time.monotonic()
        arrived(2)
        assert [m["Subject"] for _, m in smtp.box.received] == [
            "Approval needed: First",
            "Approval needed: Second",
        ]
        # each transition returned well before the server answered the message it made due
        assert started - began < 1.0 and started < smtp.box.answered_at[0]
        assert sent < smtp.box.answered_at[1]
    finally:
        scheduler.shutdown()
        engine.close()


def test_a_server_that_never_answers_times_out_and_is_retried(
    sqlite_url: str, clock: Clock
) -> None:
    with socket.socket() as listener:  # accepts connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        mailer = Mailer(f"smtp://127.0.0.1:{port}", sender="s@example.com", timeout=0.3)
        engine = make_engine(sqlite_url, clock, mailer)
        try:
            iid = engine.start(TwoSteps)
            engine.run_due()
            [failed] = [h for h in engine.history(iid) if h.kind == "notice failed"]
            assert "did not answer within 0.3 s, retrying in 1 s" in (failed.message or "")
            assert engine.notices(iid)[0]["status"] == "pending"
        finally:
            engine.close()


def test_a_worker_without_the_dashboard_makes_the_same_links(
    sqlite_url: str, clock: Clock, smtp: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No web app in the process (`signoff worker`): links from SIGNOFF_BASE_URL and
    SIGNOFF_SECRET_KEY, which the server's key reads; without the key, no links at all."""
    monkeypatch.setenv("SIGNOFF_SECRET_KEY", SECRET)
    engine = Engine(
        sqlite_url, WORKFLOWS, clock=clock, mailer=smtp.mailer(), emails=EMAILS, base_url=BASE
    )
    try:
        iid = engine.start(TwoSteps)
        engine.run_due()
        [message] = smtp.box.to("alice@example.com")
        claims = link_claims(parts(message)[0])
        assert [(c.approver, c.instance_id) for c in claims] == [("alice", iid)] * 2
    finally:
        engine.close()
    monkeypatch.delenv("SIGNOFF_SECRET_KEY")
    engine = Engine(
        sqlite_url, WORKFLOWS, clock=clock, mailer=smtp.mailer(), emails=EMAILS, base_url=BASE
    )
    try:
        iid = engine.start(TwoSteps)
        engine.run_due()
        text = parts(smtp.box.to("alice@example.com")[-1])[0]
        assert "/link/" not in text and f"{BASE}/instances/{iid}" in text
    finally:
        engine.close()


def test_the_person_a_part_is_handed_to_gets_an_email_of_their_own(
    sqlite_url: str, clock: Clock, smtp: SMTPServer
) -> None:
    engine = make_engine(sqlite_url, clock, smtp.mailer())
    try:
        iid = engine.start(TwoSteps)
        engine.run_due()
        assert len(smtp.box.to("alice@example.com")) == 1
        engine.reassign(iid, "dave", actor="alice", reason="on leave")
        engine.run_due()  # the hand-over's announcement, then its email
        engine.run_due()
        (message,) = smtp.box.to("dave@example.com")
        text, _ = parts(message)
        assert {c.approver for c in link_claims(text)} == {"dave"}  # approve and deny
        assert len(smtp.box.to("alice@example.com")) == 1  # nothing more for alice
        engine.run_due()
        assert len(smtp.box.to("dave@example.com")) == 1  # once
    finally:
        engine.close()
