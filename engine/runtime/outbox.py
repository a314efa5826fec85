"""Delivering the outbox: messages written with the commit that made them due are sent after
it, by whichever process runs the scheduler (and at once by the committing process when it runs
one), retried with backoff, each attempt recorded in the instance's history.

Every message is claimed with a lease first (`OutboxTable.claim`), so two processes never send
the same one at once, and marked sent before the lease is released. A process killed between
the commit and the send only delays the message: its row is pending, and the next sender takes
it (after the lease, if the killed process had claimed it).

A process killed after the service accepted a message but before marking it sent leaves it to
be tried again. An email then goes again with the same Message-ID (made from the message's
idempotency key), by which mail systems drop the copy. A Slack post carries its key in its
metadata; a sender that takes a message an earlier attempt may have posted (one that failed
without Slack saying no: a timeout, a lost answer, a 5xx; or a claim whose lease ran out) first
looks for that key among the channel's latest messages and, when it finds it,
records that post instead of posting again. Edits of an announcement wait until it is sent,
and are dropped with it; an older edit is not sent after a newer one.

A message whose wait ended before it went (the request was decided, the instance moved on) is
dropped, not sent: its links could decide nothing.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from signoff.engine.core.enums import HistoryKind, ThreadStatus
from signoff.engine.core.notices import SLACK_USER_ID
from signoff.engine.core.outbound import EMAIL, SLACK
from signoff.engine.core.records import Record
from signoff.engine.core.stored import read_state
from signoff.engine.errors import CorruptState, Unavailable, brief
from signoff.engine.runtime.commits import lease_token
from signoff.engine.storage.outbox import DROPPED, FAILED, PENDING, SENT, OutboxTable
from signoff.engine.storage.store import Store

log = logging.getLogger("signoff.engine.outbox")

DEFAULT_LEASE = timedelta(seconds=60)  # longer than a send may take (the mailer's timeout)
PARENT_WAIT = timedelta(seconds=1)  # an edit or reply looks again this soon for its announcement
LOOKBACK = 100  # how many of a channel's latest messages are searched for an earlier post
NOTICE_EVENT = "signoff_notice"  # the metadata event type of every Slack post
MAX_ATTEMPTS = 12  # 1, 2, 4 ... 1024 s apart, then given up (about 34 minutes in all)
MAX_DELAY = timedelta(minutes=10)


class _Later(Exception):
    """Not a failure: the message waits for its announcement to be sent."""

    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


class _Drop(Exception):
    """Not a failure: the message has nothing left to do."""

    def __init__(self, reason: str, *, told: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.told = reason, told


class EmailSender(Protocol):
    def send(self, to: str, content: Any, key: str, now: datetime) -> str: ...


def retry_delay(attempts: int, exc: BaseException | None = None) -> timedelta:
    """Doubling from one second, at most ten minutes, never sooner than a service asked."""
    delay = min(timedelta(seconds=2 ** (attempts - 1)), MAX_DELAY)
    if isinstance(exc, Unavailable) and exc.retry_after:
        delay = max(delay, timedelta(seconds=min(exc.retry_after, 3600)))
    return delay


def in_words(delay: timedelta) -> str:
    seconds = delay.total_seconds()
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class Outbox:
    """Sends what the outbox holds through the engine's mailer and Slack client."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        mailer: EmailSender | None = None,
        slack: Any = None,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.table = OutboxTable(store)
        self.store = store
        self.clock = clock
        self.mailer = mailer
        self.slack = slack
        # a send is several exchanges with the server, each bounded by the mailer's timeout:
        # the lease outlasts them all, so no other sender takes a message still being sent
        timeout = float(getattr(mailer, "timeout", 0) or 0)
        self.lease = max(lease, timedelta(seconds=6 * timeout))
        # set by a running `Scheduler`: have this process send new messages at once, in the
        # scheduler's thread pool (never in the thread that committed them)
        self.kick: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        """Whether there is anything to send through."""
        return self.mailer is not None or self.slack is not None

    def queued(self) -> None:
        """A commit just queued messages: wake a sender, if this process runs one."""
        kick = self.kick
        if kick is not None:
            try:
                kick()
            except Exception:  # the sweep sends them
                log.exception("waking the outbox sender failed; the next sweep sends")

    def deliver_due(self, now: datetime | None = None, *, limit: int = 100) -> int:
        """Send every message due now (claiming each first); returns how many went."""
        if not self.active:
            return 0
        now = now or self.clock()
        sent = 0
        for key in self.table.due(now, limit):
            if self.deliver(key, now):
                sent += 1
        return sent

    def deliver(self, key: str, now: datetime | None = None) -> bool:
        """Claim, send and mark one message; True when it was sent now."""
        now = now or self.clock()
        owner = lease_token()
        row = self.table.claim(key, owner, now, now + self.lease)
        if row is None:
            return False  # another sender has it, or it went already
        try:
            return self._deliver(row, owner, now)
        except Exception:
            # not the service's failure but ours (the database, a bug): the lease runs out
            # and the message is tried again then
            log.exception("delivering message %s failed", key)
            return False

    def _deliver(self, row: dict[str, Any], owner: str, now: datetime) -> bool:
        key, instance_id, person = row["id"], row["instance_id"], row["person"]
        channel, what = row["channel"], row["what"]
        base = {"channel": channel, "to": row["address"], "what": what, "key": key}
        base.update(wait_key=row["wait_key"])
        if what != "edit" and not self._still_open(row):  # an edit may say how it ended
            self.table.settle(
                key,
                owner,
                {"status": DROPPED, "error": "the wait ended before it was sent"},
                instance_id,
                Record(
                    now,
                    HistoryKind.NOTICE_DROPPED,
                    thread=row["thread"],
                    name=person,
                    message=f"{_kind(channel)} to {person} not sent: the wait ended first",
                    detail=base,
                ),
            )
            return False
        try:
            result = self._send(row, now)
        except _Later as later:  # an edit or reply whose announcement has not gone yet
            self.table.settle(key, owner, {"next_at": later.until}, instance_id, None)
            return False
        except _Drop as drop:
            self.table.settle(
                key,
                owner,
                {"status": DROPPED, "error": drop.reason},
                instance_id,
                Record(
                    now,
                    HistoryKind.NOTICE_DROPPED,
                    thread=row["thread"],
                    name=person,
                    message=f"{_kind(channel)} to {person} not sent: {drop.reason}",
                    detail=base,
                )
                if drop.told
                else None,
            )
            return False
        except Exception as exc:
            from signoff.engine.runtime.slack import SlackRefused

            attempts = int(row["attempts"]) + 1
            # unless the service said no, it may have taken the message before failing
            maybe_sent = channel == SLACK and not isinstance(exc, SlackRefused)
            error = brief(exc) if not isinstance(exc, Unavailable) else str(exc)
            error = error[:1000]
            if attempts >= MAX_ATTEMPTS:
                values: dict[str, Any] = {"status": FAILED, "attempts": attempts, "error": error}
                told = (
                    f"{_kind(channel)} to {person} failed: {error}; "
                    f"gave up after {attempts} attempts"
                )
            else:
                delay = retry_delay(attempts, exc)
                values = {
                    "status": PENDING,
                    "attempts": attempts,
                    "error": error,
                    "next_at": now + delay,
                }
                told = (
                    f"{_kind(channel)} to {person} failed: {error}, retrying in {in_words(delay)}"
                )
            if maybe_sent:
                values["maybe_sent"] = True
            log.warning("%s (instance %s)", told, instance_id)
            self.table.settle(
                key,
                owner,
                values,
                instance_id,
                Record(
                    now,
                    HistoryKind.NOTICE_FAILED,
                    thread=row["thread"],
                    name=person,
                    message=told,
                    detail={**base, "attempt": attempts},
                ),
            )
            return False
        told = f"{_verb(channel, what)} {person} {now:%H:%M}" + (
            " (their link)" if what == "link" else ""
        )
        values = {"status": SENT, "sent_at": now, "attempts": int(row["attempts"]) + 1}
        if result is not None:
            if result.pop("found", False):
                told += " (an earlier attempt had posted it: not posted again)"
            values["result"] = json.dumps(result)
        self.table.settle(
            key,
            owner,
            {**values, "error": None},
            instance_id,
            Record(
                now,
                HistoryKind.NOTICE_SENT,
                thread=row["thread"],
                name=person,
                message=told,
                detail=base,
            ),
        )
        log.info("%s (instance %s)", told, instance_id)
        return True

    def _send(self, row: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """Send one message; for Slack, returns where it is ({"channel", "ts"}, and "found"
        when an earlier attempt had posted it)."""
        content = json.loads(row["message"])
        if row["channel"] == EMAIL:
            if self.mailer is None:
                raise Unavailable("no mailer is configured (SIGNOFF_SMTP_URL)")
            self.mailer.send(row["address"], content, row["id"], now)
            return None
        if row["channel"] == SLACK:
            if self.slack is None:
                raise Unavailable("Slack is not configured (SLACK_BOT_TOKEN)")
            return self._send_slack(row, content, now)
        raise Unavailable(f"unknown channel {row['channel']!r}")

    def _send_slack(
        self, row: dict[str, Any], content: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        from signoff.engine.runtime.slack import call_slack

        key = row["id"]
        thread = self._parent(row, content, now) if row["parent"] or "ts" in content else None
        if row["what"] == "edit":
            if thread is None:
                raise _Drop("an edit that names no message", told=False)
            if row["parent"] and self.table.newer_edit(row["parent"], int(content.get("seq", 0))):
                raise _Drop("a newer edit replaces it", told=False)
            call_slack(
                self.slack,
                "chat.update",
                channel=thread["channel"],
                ts=thread["ts"],
                text=content.get("text", ""),
                blocks=content.get("blocks") or [],
            )
            return dict(thread)
        if row.get("maybe_sent") or row.get("taken_over"):
            # an earlier attempt may have posted it and died, or lost Slack's answer
            found = self._earlier_post(row["address"], key, thread)
            if found is not None:
                return {**found, "found": True}
        args: dict[str, Any] = {
            "channel": thread["channel"] if thread else row["address"],
            "text": content.get("text", ""),
            "unfurl_links": False,
            "metadata": {"event_type": NOTICE_EVENT, "event_payload": {"key": key}},
        }
        if content.get("blocks"):
            args["blocks"] = content["blocks"]
        if thread is not None:
            args["thread_ts"] = thread["ts"]
        answer = call_slack(self.slack, "chat.postMessage", **args)
        return {"channel": str(answer.get("channel")), "ts": str(answer.get("ts"))}

    def _parent(
        self, row: dict[str, Any], content: dict[str, Any], now: datetime
    ) -> dict[str, str]:
        """Where the announcement a reply or an edit belongs to went; raises `_Later` while it
        has not gone yet, `_Drop` when it never will."""
        if "ts" in content:  # a message an earlier release posted directly
            return {"channel": str(content["channel"]), "ts": str(content["ts"])}
        parent = self.table.message(row["parent"])
        if parent is not None and parent["status"] == PENDING and parent["next_at"] <= now:
            self.deliver(parent["id"], now)  # due and free: send it first, here
            parent = self.table.message(row["parent"])
        if parent is None:
            raise _Drop("its announcement is not in the outbox")
        if parent["status"] == PENDING:
            raise _Later(max(now + PARENT_WAIT, parent["next_at"]))
        if parent["status"] == SENT and parent.get("result"):
            found = json.loads(parent["result"])
            return {"channel": str(found["channel"]), "ts": str(found["ts"])}
        raise _Drop(f"its announcement was not sent ({parent['status']})")

    def _earlier_post(
        self, address: str, key: str, thread: dict[str, str] | None
    ) -> dict[str, str] | None:
        """The post an earlier attempt made of the message `key`, looked for by its metadata
        among the latest messages of its channel (or thread); None when there is none. A
        failure to look is the attempt's failure: posting blind could post twice."""
        from signoff.engine.runtime.slack import call_slack

        try:
            if thread is not None:
                channel = thread["channel"]
                answer = call_slack(
                    self.slack,
                    "conversations.replies",
                    read=True,
                    channel=channel,
                    ts=thread["ts"],
                    limit=LOOKBACK,
                    include_all_metadata=True,
                )
            else:
                channel = address
                if SLACK_USER_ID.fullmatch(address):  # a direct message: its conversation
                    opened = call_slack(self.slack, "conversations.open", users=address)
                    channel = str((opened.get("channel") or {}).get("id") or address)
                answer = call_slack(
                    self.slack,
                    "conversations.history",
                    read=True,
                    channel=channel,
                    limit=LOOKBACK,
                    include_all_metadata=True,
                )
        except Unavailable as exc:
            raise Unavailable(
                f"could not check whether an earlier attempt posted it: {exc}", exc.retry_after
            ) from exc
        for message in answer.get("messages") or []:
            metadata = message.get("metadata") if isinstance(message, dict) else None
            if not isinstance(metadata, dict) or metadata.get("event_type") != NOTICE_EVENT:
                continue
            payload = metadata.get("event_payload")
            if isinstance(payload, dict) and payload.get("key") == key:
                return {"channel": channel, "ts": str(message.get("ts"))}
        return None

    def _still_open(self, row: dict[str, Any]) -> bool:
        """Whether the wait the message is about is still the open one."""
        if not row["wait_key"] or not row["thread"]:
            return True
        stored = self.store.load(row["instance_id"])
        if stored is None:
            return False
        try:
            state = read_state(stored.id, stored.state)
        except CorruptState:
            return False
        thread = state.threads.get(row["thread"])
        return (
            thread is not None
            and thread.status == ThreadStatus.WAITING
            and thread.wait_key == row["wait_key"]
        )


def _kind(channel: str) -> str:
    return "email" if channel == EMAIL else "Slack message"


def _verb(channel: str, what: str) -> str:
    """How the history says a message went: "emailed", "sent a Slack message to", ..."""
    if channel == EMAIL:
        return "emailed"
    return {
        "edit": "updated the Slack message to",
        "reminder": "sent a Slack reminder to",
        "escalated": "sent a Slack escalation notice to",
    }.get(what, "sent a Slack message to")


def link_for(
    outbox: Outbox,
    handler: Any,
    info: Any,
    person: str,
    asked_by: str | None,
    now: datetime,
) -> str:
    """Queue `person`'s link to decide the approval `handler` serves (`info`: its wait), asked
    for by `asked_by`; returns where it goes ("dave by email (dave@example.com)"). Raises
    `NotReachable` when it can reach them no way. The history records who asked, for whom and
    where it went; the link itself is never shown to anyone else."""
    import secrets

    from signoff.engine.errors import NotReachable
    from signoff.engine.storage.outbox import outbox_row

    reach = info.services.reach
    if reach is None:
        raise NotReachable(
            f"{person}'s link cannot be sent: no mailer (SIGNOFF_SMTP_URL) and no Slack "
            "(SLACK_BOT_TOKEN) are configured to send it with"
        )
    if reach.link_maker is None:
        raise NotReachable(
            f"{person}'s link cannot be sent: links cannot be made here; set "
            "SIGNOFF_BASE_URL and SIGNOFF_SECRET_KEY (the server's)"
        )
    message = handler.link_message(info, person, asked_by, secrets.token_hex(8))
    if message is None:
        ways = []
        if not reach.mail:
            ways.append("no mailer is configured (SIGNOFF_SMTP_URL)")
        else:
            ways.append(f"{person} has no email address (emails=, SIGNOFF_USER_EMAILS)")
        ways.append(
            "Slack is not configured"
            if info.services.slack is None
            else f"{person} has no Slack id (slack_users=)"
        )
        raise NotReachable(f"{person}'s link cannot be sent: {'; and '.join(ways)}")
    where = (
        f"{person} by email ({message.address})"
        if message.channel == EMAIL
        else f"{person} by Slack direct message"
    )
    going = "emailing" if message.channel == EMAIL else "a Slack direct message to"
    shown_to = message.address if message.channel == EMAIL else person
    record = Record(
        now,
        HistoryKind.LINK_SENT,
        thread=info.thread,
        name=person,
        actor=asked_by,
        message=f"{asked_by or 'the program'} asked for {person}'s link: {going} {shown_to}",
        detail={
            "for": person,
            "channel": message.channel,
            "to": message.address,
            "event": info.event,
            "key": message.key,
        },
    )
    outbox.table.enqueue([outbox_row(message, now)], record)
    outbox.queued()
    return where


def latest_deliveries(
    rows: list[dict[str, Any]], now: datetime, *, addresses: bool
) -> list[dict[str, Any]]:
    """The latest message per wait, person and channel among an instance's outbox rows
    (oldest first), each with its state in words; addresses only when `addresses`."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        latest[(row["thread"], row["wait_key"], row["person"], row["channel"])] = row
    found = []
    for row in latest.values():
        status, person, channel = row["status"], row["person"], row["channel"]
        at = row["sent_at"] if status == SENT else row["next_at"]
        if status == SENT:
            words = f"{_verb(channel, row['what'])} {person} {at:%H:%M}"
        elif status == DROPPED:
            why = row["error"] or "dropped"
            if why == "the wait ended before it was sent":
                why = "the wait ended first"
            words = f"{_kind(channel)} to {person} not sent: {why}"
        elif status == FAILED:
            words = (
                f"{_kind(channel)} to {person} failed: {row['error']}; "
                f"gave up after {row['attempts']} attempts"
            )
        elif row["attempts"]:
            delay = timedelta(seconds=max(math.ceil((at - now).total_seconds()), 0))
            words = f"{_kind(channel)} to {person} failed: {row['error']}, " + (
                f"retrying in {in_words(delay)}" if delay else "retrying now"
            )
        else:
            words = f"{_kind(channel)} to {person} waiting to be sent"
        shown = {
            "thread": row["thread"],
            "wait_key": row["wait_key"],
            "person": person,
            "channel": channel,
            "what": row["what"],
            "status": status,
            "attempts": row["attempts"],
            "error": row["error"],
            "at": at,
            "words": words,
        }
        if addresses:
            shown["address"] = row["address"]
        found.append(shown)
    return found
