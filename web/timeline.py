"""The instance page's timeline: what happened to an instance, told for the people who decide,
with how long each part took. "Waited 3 h 12 min for alice", then "Approved by alice after
3 h 12 min"; the reminders, escalations, handovers and messages of a wait inside it; a wait
still open says "waiting 2 h so far". Each step says how long it ran, a step that needed
retries how long it took from its first try.

A pure function of the instance's history (oldest first) and the time now: no I/O. The
engine's plumbing (threads starting and ending, setups and teardowns, timers, merges, kept
and dropped events) is left out: operators read it in the raw history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from signoff.engine import HistoryEntry
from signoff.web.durations import duration, run_time

# what only the engine's operators need: the raw history keeps it
PLUMBING = frozenset(
    {
        "thread started",
        "thread completed",
        "setup failed",
        "teardown failed",
        "teardown skipped",
        "teardown abandoned",
        "timer failed",
        "timer discarded",
        "timer dropped",
        "merged",
        "moved",
        "event kept",
        "event dropped",
    }
)
# what happens while a wait is open, shown inside it
INSIDE = frozenset(
    {
        "reminder",
        "escalated",
        "reassigned",
        "vote",
        "notice sent",
        "notice failed",
        "notice dropped",
        "link sent",
        "event refused",
    }
)


@dataclass(frozen=True)
class Note:
    """A line inside a wait: a reminder, an escalation, a vote, a message sent..."""

    at: datetime
    kind: str
    text: str
    key: str | None = None  # a message's outbox key: its failed attempts make one line


@dataclass(frozen=True)
class Moment:
    """One entry of the timeline. `kind` is what it is (started, step, step failed, wait,
    decision, event, cancelled, failed, completed, ...), `text` the sentence people read,
    `took` how long it lasted in seconds (a wait, a step's retries, the whole instance),
    `reason` what the person who acted wrote, `notes` what happened inside a wait, `current`
    a wait still open."""

    at: datetime
    kind: str
    text: str
    actor: str | None = None
    via: str | None = None
    took: float | None = None
    reason: str | None = None
    notes: tuple[Note, ...] = ()
    current: bool = False
    tone: str = ""  # "ok" (approved, completed), "bad" (denied, failed, cancelled) or neutral


@dataclass
class _Wait:
    """A wait being read: where its moment stands in the list, and what it gathered."""

    index: int
    began: datetime
    name: str
    whom: str
    escalated: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def timeline(history: Sequence[HistoryEntry], now: datetime, *, ended: bool) -> list[Moment]:
    """The timeline of `history` (oldest first), as it stands at `now`; `ended`: the instance
    is completed or cancelled (no wait of it is open any more)."""
    moments: list[Moment] = []
    waits: dict[str, _Wait] = {}  # thread -> its open wait
    first_try: dict[tuple[str | None, str | None], datetime] = {}
    started: datetime | None = None

    def close(thread: str | None, at: datetime, until: str = "") -> float | None:
        wait = waits.pop(thread or "main", None)
        if wait is None:
            return None
        took = (at - wait.began).total_seconds()
        text = f"'{wait.name}' waited {duration(took)} {wait.whom}{_then(wait.escalated)}{until}"
        moments[wait.index] = replace(
            moments[wait.index], text=text, took=took, notes=tuple(wait.notes)
        )
        return took

    for h in history:
        detail: Mapping[str, Any] = h.detail or {}
        kind = h.kind
        if kind in PLUMBING:
            continue
        by = f" by {h.actor}" if h.actor else ""
        if kind == "started":
            started = h.at
            moments.append(Moment(h.at, kind, "Started" + by, h.actor, h.via))
        elif kind == "waiting":
            close(h.thread, h.at)
            waits[h.thread or "main"] = _Wait(len(moments), h.at, h.name or "a wait", _whom(detail))
            moments.append(Moment(h.at, "wait", ""))
        elif kind in INSIDE and (h.thread or "main") in waits:
            wait = waits[h.thread or "main"]
            if kind == "escalated":
                wait.escalated += [str(n) for n in detail.get("approvers") or ()]
            key = str(detail["key"]) if detail.get("key") else None
            if kind == "notice failed" and key is not None:
                # a message retried a dozen times is one line: its latest attempt
                wait.notes[:] = [n for n in wait.notes if (n.kind, n.key) != (kind, key)]
            wait.notes.append(Note(h.at, kind, _inside(h, detail, h.at - wait.began), key))
        elif kind in INSIDE:  # no open wait to put it in (an old or partial history)
            moments.append(Moment(h.at, kind, _inside(h, detail, None), h.actor, h.via))
        elif kind == "decision":
            took = close(h.thread, h.at)
            approved = (h.message or "").startswith("approved")  # "approved", "denied: why"
            who = by if h.actor else (" by the timer" if h.via == "timer" else "")
            text = ("Approved" if approved else "Denied") + who + _after(took)
            tone = "ok" if approved else "bad"
            moments.append(
                Moment(h.at, kind, text, h.actor, h.via, took, _reason(h, detail), tone=tone)
            )
        elif kind == "event":
            took = close(h.thread, h.at)
            if h.via == "timer":
                text = f"No answer in time: '{h.name}' came from the timer{_after(took)}"
            else:
                text = f"'{h.name}' sent{by}{_after(took)}"
            moments.append(Moment(h.at, kind, text, h.actor, h.via, took))
        elif kind == "step":
            attempt = int(detail.get("attempt") or 1)
            ran = f"ran {run_time(float(detail.get('ms') or 0))}"
            first = first_try.pop((h.thread, h.name), None)
            text = f"Step '{h.name}' {ran}"
            took = None
            if attempt > 1 and first is not None:
                took = (h.at - first).total_seconds()
                later = f"{duration(took)} after the first"
                text = f"Step '{h.name}' done at try {attempt}, {later} ({ran})"
            moments.append(Moment(h.at, kind, text, took=took))
        elif kind == "step failed":
            first_try.setdefault((h.thread, h.name), h.at)
            tried, of = detail.get("attempt"), detail.get("of")
            tries = f" (try {tried} of {of})" if tried and of else ""
            retry = detail.get("retry_in_seconds")
            again = f"; tries again in {duration(float(retry))}" if retry else ""
            text = f"Step '{h.name}' failed{tries}: {h.message or 'no message'}{again}"
            moments.append(Moment(h.at, kind, text, tone="bad"))
        elif kind == "goto":
            close(h.thread, h.at, ", until it was moved")
            moments.append(Moment(h.at, kind, f"Moved to '{h.name}'{by}", h.actor, h.via))
        elif kind == "retry":
            moments.append(Moment(h.at, kind, f"Retried '{h.name}'{by}", h.actor, h.via))
        elif kind == "cancelled":
            for thread in list(waits):
                close(thread, h.at, ", until it was cancelled")
            moments.append(
                Moment(h.at, kind, "Cancelled" + by, h.actor, h.via, reason=h.message, tone="bad")
            )
        elif kind == "failed":
            moments.append(Moment(h.at, kind, f"Failed: {h.message or 'no message'}", tone="bad"))
        elif kind == "completed":
            for thread in list(waits):
                close(thread, h.at)
            took = (h.at - started).total_seconds() if started is not None else None
            word = "Ended" if h.message else "Completed"  # the message: the error it returned
            text = word + (f" {duration(took)} after it started" if took is not None else "")
            tone = "" if h.message else "ok"
            moments.append(Moment(h.at, kind, text, took=took, reason=h.message, tone=tone))
        else:  # a kind this page does not know yet: as the history says it
            moments.append(Moment(h.at, kind, h.message or kind, h.actor, h.via))
    for thread, wait in list(waits.items()):
        if ended:  # a history that lacks the end: say nothing of how long
            moments[wait.index] = replace(
                moments[wait.index],
                text=f"'{wait.name}' waited {wait.whom}",
                notes=tuple(wait.notes),
            )
            continue
        took = (now - wait.began).total_seconds()
        text = f"'{wait.name}' waiting {duration(took)} so far {wait.whom}{_then(wait.escalated)}"
        moments[wait.index] = replace(
            moments[wait.index], text=text, took=took, notes=tuple(wait.notes), current=True
        )
        del waits[thread]
    return moments


def _whom(detail: Mapping[str, Any]) -> str:
    """What a wait waits for: `for alice`, `for anyone to decide`, `for 'equipment'`."""
    if "approvers" in detail:
        named = detail["approvers"]
        return f"for {_names(named)}" if named else "for anyone to decide"
    if detail.get("asked"):  # recorded before the first approvers were kept apart
        return f"for {_names(detail['asked'])}"
    events = [str(e) for e in detail.get("events") or () if e != "timeout"]
    return "for " + " or ".join(f"'{e}'" for e in events) if events else "for a condition"


def _names(names: Sequence[Any]) -> str:
    people = [str(n) for n in names]
    return ", ".join(people[:-1]) + " or " + people[-1] if len(people) > 1 else people[0]


def _then(escalated: list[str]) -> str:
    return f", then {', '.join(escalated)} too" if escalated else ""


def _after(took: float | None) -> str:
    return f" after {duration(took)}" if took is not None else ""


def _reason(h: HistoryEntry, detail: Mapping[str, Any]) -> str | None:
    """What the person who decided wrote: the payload's reason, else what the message quotes
    of it (a payload too long to keep is cut short in the history)."""
    payload = detail.get("payload")
    reason = payload.get("reason") if isinstance(payload, Mapping) else None
    if not isinstance(reason, str):
        reason = (h.message or "").partition(": ")[2]
    return reason.strip() or None


def _inside(h: HistoryEntry, detail: Mapping[str, Any], into: Any) -> str:
    """A line inside a wait; `into`: how long the wait had been open (a timedelta), if known."""
    after = f" after {duration(into.total_seconds())}" if into is not None else ""
    if h.kind == "reminder":
        count = detail.get("count")
        return f"Reminder{f' {count}' if count else ''} sent{after}"
    if h.kind == "escalated":
        return f"Escalated to {_names(detail.get('approvers') or ['more people'])}{after}"
    if h.kind == "vote":
        return f"{h.actor or 'Someone'} approved{after}: one vote of those needed"
    attempt = detail.get("attempt")
    if h.kind == "notice failed" and isinstance(attempt, int) and attempt > 1:
        after += f" (attempt {attempt})"
    return (h.message or h.kind) + after
