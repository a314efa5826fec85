"""Event handlers: how a wait's case is set up, accepted and cleaned up (the seed's
Setup/Handle/Teardown), and the built-in ones: Timeout, Approval, Input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError
from signoff.engine.errors import EventRejected, NotAllowed

Via = Literal["web", "slack", "api", "timer", "cli"]
MAX_REASON_LENGTH = 2000


@dataclass(frozen=True)
class Services:
    """What the engine lends handlers: the clock and the Slack client."""

    clock: Callable[[], datetime]
    slack: Any = None
    slack_users: Mapping[str, str] = field(default_factory=dict)  # user name -> Slack id
    # calls application code and awaits what it returns when that is awaitable (an async def)
    call: Callable[..., Any] = field(default=lambda action, *args: action(*args))

    def identities(self, actor: str) -> set[str]:
        """An actor's user name and Slack id, whichever of them is known."""
        names = {actor}
        if actor in self.slack_users:
            names.add(self.slack_users[actor])
        names.update(name for name, sid in self.slack_users.items() if sid == actor)
        return names


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

    @property
    def now(self) -> datetime:
        return self.moment or self.services.clock()


class FireEvent:
    """Returned by `Handler.on_due` to deliver the handler's event (a timer that fired)."""


FIRE = FireEvent()


class Handler:
    """Base of all handlers. Every method has a harmless default."""

    kind: ClassVar[str] = "event"

    def setup(self, wait: WaitInfo) -> dict[str, Any] | None:
        """Runs once the wait has begun; the dict it returns is stored with the wait."""
        return None

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        """Validate and apply the payload. Raise EventRejected to refuse it; nothing changes."""

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

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        if wait.via != "timer":
            raise NotAllowed("a timeout fires by itself when it falls due; it cannot be sent")

    def describe(self) -> dict[str, Any]:
        return {"after_seconds": self.after.total_seconds()}


@dataclass(frozen=True)
class Decision:
    approved: bool
    actor: str | None
    reason: str
    via: str | None
    at: datetime


@dataclass
class Approval(Handler):
    """A person approves or denies, from the dashboard, the JSON API or Slack.

    Payload: `{"approved": true}` or `{"approved": false, "reason": "..."}`.
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
    kind: ClassVar[str] = "approval"

    def may_decide(self, wait: WaitInfo, actor: str | None) -> bool:
        allowed = self.current_approvers(wait)
        if allowed is None:
            return True
        if actor is None:
            return False
        return bool(wait.services.identities(actor) & set(allowed))

    def current_approvers(self, wait: WaitInfo) -> list[str] | None:
        if self.approvers is None:
            return None
        escalated = bool(wait.stored and wait.stored.get("escalated"))
        return [*self.approvers, *(self.escalate_to or [])] if escalated else list(self.approvers)

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        if not self.may_decide(wait, actor):
            who = ", ".join(self.current_approvers(wait) or [])
            raise NotAllowed(
                f"{actor or 'an anonymous caller'} may not decide this; approvers: {who}"
            )
        approved = payload.get("approved")
        if not isinstance(approved, bool):
            raise EventRejected('an approval needs "approved": true or false')
        reason = payload.get("reason") or ""
        if not isinstance(reason, str):
            raise EventRejected('"reason" must be text')
        reason = reason.strip()
        if len(reason) > MAX_REASON_LENGTH:
            raise EventRejected(f"the reason is longer than {MAX_REASON_LENGTH} characters")
        if not approved and self.require_reason and not reason:
            raise EventRejected("a reason is required to deny")
        decision = Decision(approved, actor, reason, wait.via, wait.now)
        callback = self.approve if approved else self.deny
        if callback is not None:
            wait.services.call(callback, decision)

    def due_at(self, wait: WaitInfo) -> datetime | None:
        stored = wait.stored or {}
        times = []
        if self.remind_every:
            times.append(wait.began_at + self.remind_every * (int(stored.get("reminders", 0)) + 1))
        if self.escalate_after and self.escalate_to and not stored.get("escalated"):
            times.append(wait.began_at + self.escalate_after)
        return min(times) if times else None

    def on_due(self, wait: WaitInfo) -> FireEvent | dict[str, Any]:
        stored = dict(wait.stored or {})
        now = wait.now
        if (
            self.escalate_after
            and self.escalate_to
            and not stored.get("escalated")
            and now >= wait.began_at + self.escalate_after
        ):
            stored["escalated"] = True
            stored["escalated_at"] = now.isoformat()
            stored.update(self.notify(wait, "escalated", stored) or {})
        if self.remind_every:
            # the rung of the ladder we are on: after a long outage, one reminder, not a burst
            rung = int((now - wait.began_at) / self.remind_every)
            if rung > int(stored.get("reminders", 0)):
                stored["reminders"] = rung
                stored["reminded_at"] = now.isoformat()
                stored.update(self.notify(wait, "reminder", stored) or {})
        return stored

    def notify(
        self, wait: WaitInfo, what: Literal["reminder", "escalated"], stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Re-notify the approvers (`what` = "reminder") or tell the widened set of approvers
        (`what` = "escalated"); `stored` is what will be stored with the wait. The engine writes
        the history entry itself. Returns keys to merge into `stored` (e.g. a Slack message ts).

        The hook for Slack reminders: `wait.services.slack` is the client. It runs when the
        timer fires, before the commit, so it may run again if that commit loses a race:
        notifications here are at least once."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "text": self.text,
            "approvers": self.approvers,
            "escalate_to": self.escalate_to,
            "slack_channel": self.slack_channel,
            "require_reason": self.require_reason,
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

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        try:
            value = self.model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
                for err in exc.errors()
            )
            raise EventRejected(f"invalid input: {problems}") from None
        wait.services.call(self.apply, value)

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
