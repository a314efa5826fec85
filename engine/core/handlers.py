"""Event handlers: how a wait's case is set up, accepted and cleaned up (the seed's
Setup/Handle/Teardown), and the built-in ones: Timeout, Approval, Input."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError
from signoff.engine.core.authority import Authority, approvers_now, checked_reason
from signoff.engine.core.finite import finite_problem
from signoff.engine.core.handover import ANNOUNCE_KEY, HandOver, handovers, routed
from signoff.engine.core.mailtext import approval_email, deadline_words, link_chat
from signoff.engine.core.notices import (
    SLACK_USER_ID,
    ApprovalNotice,
    Message,
    Notifier,
    Renderer,
    Vote,
    slack_recipients,
)
from signoff.engine.core.outbound import (
    EMAIL,
    MAX_RECIPIENTS,
    SLACK,
    Outbound,
    Reach,
    What,
    notice_key,
    people,
)
from signoff.engine.core.state import Ending
from signoff.engine.errors import EventRejected, InvalidData, NotAllowed

LINK_LIFETIME = timedelta(days=7)  # an emailed link dies with its wait, and after this at most


@dataclass(frozen=True)
class Services:
    """What the engine lends handlers: the clock, the Slack client, and who may do what.

    `slack` is the raw `slack_sdk.WebClient` (None: Slack is off), for handlers of your own;
    `notifier` is what the built-in `Approval` announces itself through (see `notices`)."""

    clock: Callable[[], datetime]
    slack: Any = None
    authority: Authority = field(default_factory=Authority)
    # calls application code and awaits what it returns when that is awaitable (an async def)
    call: Callable[..., Any] = field(default=lambda action, *args: action(*args))
    notifier: Notifier | None = None
    # finds the Slack ids of approvers written as email addresses (SlackDirectory), if any
    learn_slack_ids: Callable[[Sequence[str]], None] | None = None
    # addresses, links and the dashboard's URL, for messages queued in the outbox (email)
    reach: Reach | None = None

    @property
    def slack_users(self) -> Mapping[str, str]:
        """User name -> Slack id."""
        return self.authority.slack_users

    def identities(self, actor: str) -> set[str]:
        """An actor's user name, Slack id and groups (`group:NAME`), whichever are known."""
        return self.authority.identities(actor)


@dataclass(frozen=True)
class WaitInfo:
    """The wait a handler serves: where it is, when it began, and what setup stored."""

    instance_id: str
    workflow: str
    thread: str
    wait: str
    event: str
    began_at: datetime
    stored: dict[str, Any] | None
    services: Services
    via: str | None = None
    moment: datetime | None = None  # the time run_due was asked about, when it was given one
    starter: str | None = None  # the actor who started the instance (None: the program)
    key: str | None = None  # the wait key of this opening of the wait (see ThreadState)
    ending: Ending | None = None  # at teardown: how the wait ended
    data_json: str | None = None  # the instance's data as it is now, as JSON
    deadline: datetime | None = None  # at setup: when a Timeout of the same wait falls due
    # queues a message in the outbox, written with the commit this call's outcome goes into;
    # None where nothing may be queued (a read)
    post: Callable[[Outbound], None] | None = None

    @property
    def data(self) -> dict[str, Any]:
        """The instance's data (a copy: changing it changes nothing)."""
        loaded = json.loads(self.data_json) if self.data_json else {}
        return loaded if isinstance(loaded, dict) else {}

    @property
    def now(self) -> datetime:
        """The moment being decided on: `run_due`'s time when it was given one, else now."""
        return self.moment or self.services.clock()


class FireEvent:
    """Returned by `Handler.on_due` to deliver the handler's event (a timer that fired)."""


FIRE = FireEvent()


@dataclass(frozen=True)
class KeepWaiting:
    """Returned by `Handler.handle`: the event was taken (a vote of several), but the wait goes
    on; `stored` replaces what the wait stores."""

    stored: dict[str, Any]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """Returned by `Handler.handle`: the event was taken, and `value` (JSON) is the answer to
    its sender: `send` returns it as the view's `reply` (the seed's HandleCallback output)."""

    value: Any


def replied(value: Any) -> Reply | None:
    """What a handler returns for its callback's result: a reply, unless there was none."""
    return None if value is None else Reply(value)


class Handler:
    """Base of all handlers. Every method has a harmless default."""

    kind: ClassVar[str] = "event"
    # A decision (an approval, a form) is taken only by a wait that is open, so a person
    # decides only what they could have seen; other events may be kept for a wait not begun.
    decides: ClassVar[bool] = False

    def setup(self, wait: WaitInfo) -> dict[str, Any] | None:
        """Runs once the wait has begun; the dict it returns is stored with the wait."""
        return None

    def announces(self, services: Services) -> bool:
        """Whether setup tells the world (posts buttons): then the wait is committed before
        setup runs, so an answer that comes at once finds it open."""
        return type(self).setup is not Handler.setup

    def check(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        """May `actor` send this payload? Raise NotAllowed or EventRejected if not; changes
        nothing. Called before `handle`, and at once by `send` when the event must be kept for
        a wait that has not begun yet. By default only operators may send a handler's event."""
        wait.services.authority.require_operator(actor, f"send '{wait.event}'")

    def handle(
        self, wait: WaitInfo, payload: dict[str, Any], actor: str | None
    ) -> KeepWaiting | Reply | None:
        """Validate and apply the payload. Raise EventRejected to refuse it; nothing changes.
        Return KeepWaiting to take the event without ending the wait, Reply(value) to answer
        the sender."""
        return None

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        """Runs for every case when the wait ends; `handled` tells the case that won."""

    def due_at(self, wait: WaitInfo) -> datetime | None:
        """When this case needs the engine's attention without an event (a timer)."""
        return None

    def on_due(self, wait: WaitInfo) -> FireEvent | dict[str, Any]:
        """The timer of `due_at` fell due: deliver the event, or return a new stored dict."""
        return FIRE

    def describe(self) -> dict[str, Any]:
        """What the dashboard and the inbox show about this case."""
        return {}


@dataclass
class Timeout(Handler):
    """Fires its event `after` the wait began."""

    after: timedelta
    kind: ClassVar[str] = "timeout"

    def __post_init__(self) -> None:
        if self.after < timedelta(0):
            raise ValueError("Timeout(after=...) must not be negative")

    def due_at(self, wait: WaitInfo) -> datetime | None:
        return wait.began_at + self.after

    def check(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        if wait.via != "timer":
            raise NotAllowed("a timeout fires by itself when it falls due; it cannot be sent")

    def describe(self) -> dict[str, Any]:
        return {"after_seconds": self.after.total_seconds()}


@dataclass(frozen=True)
class Decision:
    """What an approval's `approve`/`deny` callback receives: the outcome, who decided
    (`actor`), the `reason`, through what (`via`), when (`at`) and, with a quorum, the `votes`."""

    approved: bool
    actor: str | None
    reason: str
    via: str | None
    at: datetime
    votes: tuple[Vote, ...] = ()  # every vote that led here, this one last


@dataclass
class Approval(Handler):
    """A person approves or denies, from the dashboard, the JSON API or Slack.

    Payload: `{"approved": true}` or `{"approved": false, "reason": "..."}`. Who may decide is
    the engine's `Authority`: `approvers` (names or `group:NAME`; None: anyone), widened by
    `escalate_to` after `escalate_after`; never the starter with `allow_self=False`; with
    `required=N`, N approvals from N different approvers, and one denial decides.
    """

    approve: Callable[[Decision], Any] | None = None
    deny: Callable[[Decision], Any] | None = None
    title: str | None = None
    text: str | None = None
    approvers: list[str] | None = None
    slack_channel: str | None = None
    remind_every: timedelta | None = None
    escalate_after: timedelta | None = None
    escalate_to: list[str] | None = None
    require_reason: bool = True
    required: int = 1
    allow_self: bool = True
    kind: ClassVar[str] = "approval"
    decides: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.required, int) or self.required < 1:
            raise ValueError("Approval(required=...) must be a whole number of at least 1")

    def escalated(self, wait: WaitInfo) -> bool:
        """Escalation is due by the clock, even before its timer has fired."""
        if wait.stored and wait.stored.get("escalated"):
            return True
        return bool(
            self.escalate_after
            and self.escalate_to
            and wait.now >= wait.began_at + self.escalate_after
        )

    def current_approvers(self, wait: WaitInfo) -> list[str] | None:
        """Who may decide now: the approvers, joined by `escalate_to` once escalated, after
        every hand-over (see `handovers`); None when anyone may."""
        return self._routed(wait)[0]

    def handovers(self, wait: WaitInfo) -> list[HandOver]:
        """The hand-overs of this opening of the wait, oldest first (`Engine.reassign`, and
        delegations made when it began)."""
        return handovers(wait.stored)

    def _routed(self, wait: WaitInfo) -> tuple[list[str] | None, set[str]]:
        authority = wait.services.authority
        return routed(
            approvers_now(self.approvers, self.escalate_to, self.escalated(wait)),
            self.handovers(wait),
            authority.identities,
        )

    def votes(self, wait: WaitInfo) -> list[Vote]:
        """The approvals cast so far towards `required`."""
        return [
            Vote(
                actor=v.get("actor"),
                approved=bool(v.get("approved")),
                reason=str(v.get("reason") or ""),
                via=v.get("via"),
                at=datetime.fromisoformat(v["at"]),
            )
            for v in (wait.stored or {}).get("votes", [])
        ]

    def may_decide(self, wait: WaitInfo, actor: str | None) -> bool:
        """Whether `actor` may decide this wait now (`refusal` says why not)."""
        return self.refusal(wait, actor) is None

    def refusal(self, wait: WaitInfo, actor: str | None) -> str | None:
        """Why `actor` may not decide this wait now; None when they may."""
        try:
            self._authorize(wait, actor)
        except NotAllowed as exc:
            return str(exc)
        return None

    def _authorize(self, wait: WaitInfo, actor: str | None) -> None:
        deciders, excused = self._routed(wait)
        wait.services.authority.check_decision(
            actor,
            deciders,
            starter=wait.starter,
            allow_self=self.allow_self,
            voters=[v.actor for v in self.votes(wait) if v.actor],
            excused=excused,
        )

    def check_handover(self, wait: WaitInfo, actor: str | None, giver: str, to: str) -> None:
        """Raise unless `actor` may hand `giver`'s part of this wait to `to` (`Authority`)."""
        deciders, excused = self._routed(wait)
        wait.services.authority.check_handover(
            actor,
            giver,
            to,
            deciders=deciders,
            starter=wait.starter,
            allow_self=self.allow_self,
            voters=[v.actor for v in self.votes(wait) if v.actor],
            excused=excused,
        )

    def check(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        self._authorize(wait, actor)
        approved = payload.get("approved")
        if not isinstance(approved, bool):
            raise EventRejected('an approval needs "approved": true or false')
        checked_reason(approved, payload.get("reason"), required=self.require_reason)

    def handle(
        self, wait: WaitInfo, payload: dict[str, Any], actor: str | None
    ) -> KeepWaiting | Reply | None:
        self.check(wait, payload, actor)
        approved = bool(payload["approved"])
        reason = checked_reason(approved, payload.get("reason"), required=self.require_reason)
        vote = Vote(actor, approved, reason, wait.via, wait.now)
        votes = (*self.votes(wait), vote)
        if approved and len(votes) < self.required:
            stored = dict(wait.stored or {})
            stored["votes"] = [
                {
                    "actor": v.actor,
                    "approved": v.approved,
                    "reason": v.reason,
                    "via": v.via,
                    "at": v.at.isoformat(),
                }
                for v in votes
            ]
            return KeepWaiting(stored, f"approved ({len(votes)} of {self.required})")
        decision = Decision(approved, actor, reason, wait.via, wait.now, votes)
        callback = self.approve if approved else self.deny
        if callback is None:
            return None
        return replied(wait.services.call(callback, decision))

    # --- announcing it (Slack) ----------------------------------------------------------------

    def announces(self, services: Services) -> bool:
        return services.notifier is not None or type(self).setup is not Approval.setup

    def setup(self, wait: WaitInfo) -> dict[str, Any] | None:
        """Queue the announcement of the approval (a Slack message with Approve / Deny
        buttons) for its `slack_channel`, or else for each approver who has a Slack id, and an
        email for each approver with an address; both are sent after the commit (the outbox).
        What it stores names the announcements (`slack_notices`), so later edits and thread
        replies find them."""
        kept = dict(wait.stored) if wait.stored else None  # hand-overs made as it began
        if kept is not None:
            kept.pop(ANNOUNCE_KEY, None)  # the announcement goes to whoever decides now
        stored: dict[str, Any] = dict(kept or {})
        notifier = wait.services.notifier
        approvers = self.current_approvers(wait)
        recipients: list[tuple[str, str]] = []
        if notifier is not None:
            learn = wait.services.learn_slack_ids
            if learn is not None and approvers and not self.slack_channel:
                learn(approvers)
            recipients = slack_recipients(self.slack_channel, approvers, wait.services.authority)
        if recipients:
            announced = self.queue_announcement(wait, recipients, "opened")
            if announced:
                stored["slack_notices"] = announced
                stored["slack_shown"] = _shown(stored)
        mailed = self.mail(wait, "approval", 0)
        if (mailed or stored) and wait.deadline is not None:
            stored["deadline"] = wait.deadline.isoformat()
        return stored or None

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        """Queue the edit of the announcement that says how the wait ended, whatever ended it
        (no buttons); sent after the commit, once the announcement itself went."""
        stored = wait.stored or {}
        self.queue_edit(wait, stored, int(stored.get("slack_edits", 0)) + 1, "ended")

    # --- the Slack messages, queued in the outbox ---------------------------------------------

    def queue_announcement(
        self, wait: WaitInfo, recipients: Sequence[tuple[str, str]], round: str
    ) -> list[dict[str, str]]:
        """Queue the announcement for each (target, person) of `recipients`; returns what to
        store about them (their keys). `round` tells announcements of one wait apart."""
        renderer = _renderer(wait)
        if renderer is None or wait.post is None:
            return []
        content = renderer.render(self.notice(wait))
        found: list[dict[str, str]] = []
        for target, person in recipients:
            key = notice_key(wait.instance_id, wait.thread, wait.key, SLACK, round, target)
            wait.post(self._slack(wait, key, person, target, "approval", content))
            found.append({"key": key, "to": target, "person": person, "wait_key": wait.key or ""})
        return found

    def queue_edit(
        self, wait: WaitInfo, stored: Mapping[str, Any], seq: int, round: str = ""
    ) -> int:
        """Queue an edit of every announcement to show the wait as it is now (`stored`); `seq`
        orders the edits of one announcement (an older one is not sent after a newer one).
        Returns how many were queued."""
        notices, messages = _notices(stored), _messages(stored)
        if not notices and not messages:  # nothing was announced: nothing to edit
            return 0
        renderer = _renderer(wait)
        if renderer is None or wait.post is None:
            return 0
        content = {**renderer.render(self.notice(replace(wait, stored=dict(stored)))), "seq": seq}
        queued = 0
        for notice in notices:
            key = notice_key(notice["key"], "edit", seq, round)
            wait.post(
                self._slack(wait, key, notice["person"], notice["to"], "edit", content, notice)
            )
            queued += 1
        for message in messages:  # posted directly by an earlier release
            key = notice_key(wait.instance_id, wait.key, "edit", seq, round, *message.values())
            legacy = {**content, "channel": message["channel"], "ts": message["ts"]}
            wait.post(
                self._slack(wait, key, message["channel"], message["channel"], "edit", legacy)
            )
            queued += 1
        return queued

    def _slack(
        self,
        wait: WaitInfo,
        key: str,
        person: str,
        target: str,
        what: What,
        content: Mapping[str, Any],
        parent: Mapping[str, str] | None = None,
    ) -> Outbound:
        return Outbound(
            key=key,
            channel=SLACK,
            person=person,
            address=target,
            what=what,
            instance_id=wait.instance_id,
            thread=wait.thread,
            # a teardown knows no wait key: its edits belong to the announcement's wait
            wait_key=wait.key or (parent.get("wait_key") if parent else None) or None,
            message=content,
            parent=parent["key"] if parent is not None else None,
        )

    def notice(self, wait: WaitInfo) -> ApprovalNotice:
        """What an announcement of this wait shows now."""
        stored = wait.stored or {}
        deadline = wait.deadline
        if deadline is None and isinstance(stored.get("deadline"), str):
            deadline = datetime.fromisoformat(stored["deadline"])
        return ApprovalNotice(
            instance_id=wait.instance_id,
            workflow=wait.workflow,
            thread=wait.thread,
            wait=wait.wait,
            event=wait.event,
            key=wait.key,
            title=self.title or f"{wait.workflow}: {wait.wait}",
            text=self.text,
            data=wait.data,
            deciders=self.current_approvers(wait),
            required=self.required,
            votes=tuple(self.votes(wait)),
            require_reason=self.require_reason,
            began_at=wait.began_at,
            deadline=deadline,
            escalated=self.escalated(wait),
            ending=wait.ending,
        )

    # --- what falls due: reminders, escalation, and the message catching up with votes ------

    def due_at(self, wait: WaitInfo) -> datetime | None:
        stored = wait.stored or {}
        times = []
        if self.remind_every:
            times.append(wait.began_at + self.remind_every * (int(stored.get("reminders", 0)) + 1))
        if self.escalate_after and self.escalate_to and not stored.get("escalated"):
            times.append(wait.began_at + self.escalate_after)
        if self._message_behind(stored) or stored.get(ANNOUNCE_KEY):
            # at once: a vote or a hand-over came since the message was edited, or someone
            # was handed a part and is not told yet
            times.append(wait.began_at)
        return min(times) if times else None

    def on_due(self, wait: WaitInfo) -> FireEvent | dict[str, Any]:
        stored = dict(wait.stored or {})
        now = wait.now
        escalated_now = False  # an escalation email this tick says what a reminder would
        if (
            self.escalate_after
            and self.escalate_to
            and not stored.get("escalated")
            and now >= wait.began_at + self.escalate_after
        ):
            stored["escalated"] = True
            stored["escalated_at"] = now.isoformat()
            stored.update(self.notify(replace(wait, stored=stored), "escalated", stored) or {})
            escalated_now = self.mail(replace(wait, stored=stored), "escalated", 0) > 0
        if self.remind_every:
            # the rung of the ladder we are on: after a long outage, one reminder, not a burst
            rung = int((now - wait.began_at) / self.remind_every)
            if rung > int(stored.get("reminders", 0)):
                stored["reminders"] = rung
                stored["reminded_at"] = now.isoformat()
                stored.update(self.notify(replace(wait, stored=stored), "reminder", stored) or {})
                if not escalated_now:
                    self.mail(replace(wait, stored=stored), "reminder", rung)
        if stored.get(ANNOUNCE_KEY):
            stored.update(self.tell_receivers(replace(wait, stored=stored)))
        if self._message_behind(stored):
            seq = int(stored.get("slack_edits", 0)) + 1
            if self.queue_edit(wait, stored, seq):
                stored["slack_edits"] = seq
            stored["slack_shown"] = _shown(stored)
        return stored

    def tell_receivers(self, wait: WaitInfo) -> dict[str, Any]:
        """Tell the people handed a part (`stored["announce_to"]`) on their channels, the way
        a new wait tells its approvers (a direct message with the buttons, an email); returns
        the keys to merge into what the wait stores. Runs when due, after the hand-over's
        commit; what it queues is sent after the commit of its own tick. The announcement of a
        channel is edited to show the new names."""
        stored = dict(wait.stored or {})
        pending = [p for p in stored.pop(ANNOUNCE_KEY, None) or [] if isinstance(p, str)]
        deciders = self.current_approvers(wait) or []
        people = [p for p in pending if p in deciders]  # handed on again since: not theirs now
        handed = f"handed-{len(handovers(stored))}"  # one message per hand-over
        if wait.services.notifier is not None and people:
            recipients = slack_recipients(None, people, wait.services.authority)
            announced = self.queue_announcement(wait, recipients, handed)
            if announced:
                stored["slack_notices"] = [*_notices(stored), *announced]
        reach = wait.services.reach
        if reach is not None and reach.mail and wait.post is not None:
            for person in people[:MAX_RECIPIENTS]:
                address = reach.email_of(person)
                if address is not None and self.refusal(wait, person) is None:
                    wait.post(self.email(wait, reach, person, address, "approval", handed))
        return {**stored, ANNOUNCE_KEY: []}

    def _message_behind(self, stored: Mapping[str, Any]) -> bool:
        """Whether the announcement shows fewer votes, or an older escalation, than there are."""
        announced = _notices(stored) or _messages(stored)
        return bool(announced) and stored.get("slack_shown", [0, False]) != _shown(stored)

    def notify(
        self, wait: WaitInfo, what: Literal["reminder", "escalated"], stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Re-notify the approvers (`what` = "reminder") or tell the widened set of approvers
        (`what` = "escalated"); `stored` is what will be stored with the wait. The engine writes
        the history entry itself. Returns keys to merge into `stored`.

        By default it queues a reply in the thread of each Slack announcement (the message
        itself is then edited to show who may decide now), sent after the commit of this tick
        (the outbox). Override it to notify some other way; `wait.post` queues an `Outbound`
        the same way, and `wait.services.slack` is the raw Slack client: a call to it runs
        when the timer fires, before the commit, so it may run again if that commit loses a
        race, or if a later part of the same tick fails: such notifications are at least
        once."""
        renderer = _renderer(wait)
        if renderer is None or wait.post is None:
            return None
        text = renderer.reply_text(self.notice(wait), what)
        round = stored.get("reminders", 0) if what == "reminder" else 0
        for notice in _notices(stored):
            key = notice_key(notice["key"], what, round)
            content = {"text": text}
            wait.post(self._slack(wait, key, notice["person"], notice["to"], what, content, notice))
        for message in _messages(stored):  # posted directly by an earlier release
            key = notice_key(wait.instance_id, wait.key, what, round, *message.values())
            content = {"text": text, "channel": message["channel"], "ts": message["ts"]}
            wait.post(self._slack(wait, key, message["channel"], message["channel"], what, content))
        return None

    # --- email, and someone's link, through the outbox -----------------------------------------

    def mail(self, wait: WaitInfo, what: What, round: int) -> int:
        """Queue an email for each person who may decide now and has an address (not one who
        voted already); `round` tells the reminders apart. Returns how many were queued. The
        messages go out after the commit this call is part of (the outbox), never during it."""
        reach = wait.services.reach
        if reach is None or not reach.mail or wait.post is None:
            return 0
        queued = 0
        for person in people(self.current_approvers(wait), wait.services.authority.groups):
            if queued >= MAX_RECIPIENTS:
                break
            address = reach.email_of(person)
            if address is None or self.refusal(wait, person) is not None:
                continue
            wait.post(self.email(wait, reach, person, address, what, round))
            queued += 1
        return queued

    def email(
        self,
        wait: WaitInfo,
        reach: Reach,
        person: str,
        address: str,
        what: What,
        round: int | str,
        asked_by: str | None = None,
    ) -> Outbound:
        """The email for `person` at `address` about this wait, with their own Approve / Deny
        links (valid until the deadline, at most `LINK_LIFETIME`)."""
        notice = self.notice(wait)
        links = self.links(wait, reach, person, notice.deadline)
        message = approval_email(
            notice,
            title=self.title or wait.workflow,
            what=what,
            summary=reach.summarize(wait.workflow, wait.data),
            now=wait.now,
            links=links,
            request_url=reach.request_url(wait.instance_id),
            asked_by=asked_by,
        )
        return Outbound(
            key=notice_key(wait.instance_id, wait.thread, wait.key, what, round, EMAIL, address),
            channel=EMAIL,
            person=person,
            address=address,
            what=what,
            instance_id=wait.instance_id,
            thread=wait.thread,
            wait_key=wait.key,
            message=message,
            asked_by=asked_by,
        )

    def link_message(
        self, wait: WaitInfo, person: str, asked_by: str | None, nonce: str
    ) -> Outbound | None:
        """Someone's link, asked for by `asked_by`: by email when they have an address and a
        mailer is set, else as a Slack direct message when they have a Slack id; None when
        neither reaches them."""
        reach = wait.services.reach
        if reach is None:
            return None
        address = reach.email_of(person) if reach.mail else None
        if address is not None:
            return self.email(wait, reach, person, address, "link", nonce, asked_by)
        authority = wait.services.authority
        slack_id = authority.slack_users.get(person) or (
            person if SLACK_USER_ID.fullmatch(person) else None
        )
        if slack_id is None or wait.services.slack is None:
            return None
        notice = self.notice(wait)
        links = self.links(wait, reach, person, notice.deadline)
        if links is None:
            return None
        by = deadline_words(notice.deadline, wait.now) if notice.deadline else None
        return Outbound(
            key=notice_key(wait.instance_id, wait.thread, wait.key, "link", nonce, SLACK, slack_id),
            channel=SLACK,
            person=person,
            address=slack_id,
            what="link",
            instance_id=wait.instance_id,
            thread=wait.thread,
            wait_key=wait.key,
            message={"text": link_chat(self.title or wait.workflow, links[0], asked_by, by)},
            asked_by=asked_by,
        )

    def links(
        self, wait: WaitInfo, reach: Reach, person: str, deadline: datetime | None
    ) -> tuple[str, str] | None:
        if reach.link_maker is None or not wait.key:
            return None
        expires = wait.now + LINK_LIFETIME
        if deadline is not None and deadline < expires:
            expires = deadline
        return reach.link_maker(
            wait.instance_id, person, wait.thread, wait.event, wait.key, expires
        )

    def describe(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "text": self.text,
            "approvers": self.approvers,
            "escalate_to": self.escalate_to,
            "slack_channel": self.slack_channel,
            "require_reason": self.require_reason,
            "required": self.required,
            "allow_self": self.allow_self,
            "remind_every_seconds": (
                self.remind_every.total_seconds() if self.remind_every else None
            ),
            "escalate_after_seconds": (
                self.escalate_after.total_seconds()
                if self.escalate_after and self.escalate_to
                else None
            ),
        }


@dataclass
class Input(Handler):
    """An event whose payload is validated against a pydantic model, then given to `apply`."""

    model: type[BaseModel]
    apply: Callable[[Any], Any]
    kind: ClassVar[str] = "input"
    decides: ClassVar[bool] = True

    def check(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        self._validated(payload)  # anyone may fill in a form; the payload must fit it

    def handle(
        self, wait: WaitInfo, payload: dict[str, Any], actor: str | None
    ) -> KeepWaiting | Reply | None:
        return replied(wait.services.call(self.apply, self._validated(payload)))

    def _validated(self, payload: dict[str, Any]) -> BaseModel:
        try:
            validated = self.model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
                for err in exc.errors()
            )
            raise EventRejected(f"invalid input: {problems}") from None
        # a float field takes the text "nan" or "inf" (a form, the API) and makes it a number
        problem = finite_problem(validated, "the payload")
        if problem:
            raise InvalidData(problem)
        return validated

    def describe(self) -> dict[str, Any]:
        return {"schema": self.model.model_json_schema()}


def upcoming(
    kind: str,
    began_at: datetime,
    due_at: datetime | None,
    info: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """What a waiting case will do on its own, and when: `[{"what": ..., "at": ...}]`, earliest
    first. For an approval: its next reminder and its escalation; for a timeout: its firing."""
    if kind == "timeout":
        return [{"what": "timeout", "at": due_at}] if due_at else []
    if kind == "approval":
        stored = stored or {}
        times = []
        every = info.get("remind_every_seconds")
        if every:
            n = int(stored.get("reminders", 0)) + 1
            times.append(
                {"what": "reminder", "at": began_at + timedelta(seconds=every) * n, "count": n}
            )
        after = info.get("escalate_after_seconds")
        if after and not stored.get("escalated"):
            times.append(
                {
                    "what": "escalation",
                    "at": began_at + timedelta(seconds=after),
                    "to": info.get("escalate_to"),
                }
            )
        return sorted(times, key=lambda t: t["at"])
    return [{"what": "due", "at": due_at}] if due_at else []


def _renderer(wait: WaitInfo) -> Renderer | None:
    notifier = wait.services.notifier
    if notifier is None:  # a Protocol's isinstance costs tens of microseconds: most have none
        return None
    return notifier if isinstance(notifier, Renderer) else None


def _notices(stored: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The Slack announcements of a wait queued in the outbox, as its setup stored them."""
    found = (stored or {}).get("slack_notices")
    if not isinstance(found, list):
        return []
    return [
        n
        for n in found
        if isinstance(n, dict) and all(isinstance(n.get(k), str) for k in ("key", "to", "person"))
    ]


def _messages(stored: Mapping[str, Any] | None) -> list[Message]:
    """The Slack messages announcing a wait that an earlier release posted directly."""
    found = (stored or {}).get("slack_messages")
    if not isinstance(found, list):
        return []
    return [m for m in found if isinstance(m, dict) and "channel" in m and "ts" in m]


def _shown(stored: Mapping[str, Any]) -> list[Any]:
    """What an up-to-date announcement shows: how many votes, whether it escalated, and how
    many hand-overs (who may decide)."""
    shown: list[Any] = [len(stored.get("votes", [])), bool(stored.get("escalated"))]
    if stored.get("handovers"):
        shown.append(len(stored["handovers"]))
    return shown
