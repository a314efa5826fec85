"""Hand-overs: an approver gives their part of one open approval to someone else (reassign), or
the engine does it for them while they are away (delegation).

A hand-over is plain data kept in the wait's stored case data (`stored["handovers"]`, oldest
first), so it lasts exactly as long as that opening of the wait. Who may decide is worked out
from the approvers the definition names (widened by escalation) and then every hand-over in
order (`routed`): the giver's own name leaves the list and the receiver's joins it. A giver who
decided only as a member of a group cannot leave a group; they are `excused` instead, and may
no longer decide (unless a later hand-over gives them a part again). Pure: standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signoff.engine.core.authority import GROUP_PREFIX

KEY = "handovers"
ANNOUNCE_KEY = "announce_to"  # receivers not told yet: the handler tells them when due
MAX_HANDOVERS = 50  # per opening of a wait: beyond that it is a loop, not a hand-over


@dataclass(frozen=True)
class HandOver:
    """`giver`'s part went to `to`, by `by` (None: the engine, for a delegation)."""

    giver: str
    to: str
    by: str | None
    reason: str
    at: datetime
    via: str | None = None

    def stored(self) -> dict[str, Any]:
        return {
            "from": self.giver,
            "to": self.to,
            "by": self.by,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "via": self.via,
        }

    def sentence(self) -> str:
        """What the history says: "alice handed their part to erin: on leave"."""
        why = f": {self.reason}" if self.reason else ""
        if self.by is None:
            return f"{self.giver}'s part went to {self.to}{why}"
        whose = "their" if self.by == self.giver else f"{self.giver}'s"
        return f"{self.by} handed {whose} part to {self.to}{why}"


def handovers(stored: Mapping[str, Any] | None) -> list[HandOver]:
    """The hand-overs kept in a wait's stored data, oldest first (malformed entries skipped)."""
    found = (stored or {}).get(KEY)
    if not isinstance(found, list):
        return []
    result = []
    for h in found:
        if not isinstance(h, dict):
            continue
        giver, to, by = h.get("from"), h.get("to"), h.get("by")
        if not (isinstance(giver, str) and isinstance(to, str)):
            continue
        try:
            at = datetime.fromisoformat(str(h.get("at")))
        except ValueError:
            continue
        result.append(
            HandOver(
                giver,
                to,
                by if isinstance(by, str) else None,
                str(h.get("reason") or ""),
                at,
                h.get("via") if isinstance(h.get("via"), str) else None,
            )
        )
    return result


def with_handover(
    stored: Mapping[str, Any] | None, handover: HandOver, *, tell: bool = True
) -> dict[str, Any]:
    """A copy of `stored` with `handover` added and, with `tell`, its receiver to be told (a
    delegation made as the wait begins needs no telling: the wait's announcement does it)."""
    result = dict(stored or {})
    result[KEY] = [*(result.get(KEY) or []), handover.stored()]
    if tell:
        told = [t for t in (result.get(ANNOUNCE_KEY) or []) if isinstance(t, str)]
        result[ANNOUNCE_KEY] = [*told, handover.to]
    return result


def routed(
    approvers: Sequence[str] | None,
    given: Iterable[HandOver],
    names_of: Callable[[str], Iterable[str]] = lambda name: (name,),
) -> tuple[list[str] | None, set[str]]:
    """Who may decide after the hand-overs (None: anyone), and who handed over a part they held
    only through a group (`excused`: they may no longer decide). `names_of` gives the names a
    person goes by (user name, Slack id), so that a giver written as either leaves the list."""
    if approvers is None:
        return None, set()
    current = list(approvers)
    excused: set[str] = set()
    for h in given:
        mine = {n for n in names_of(h.giver) if not n.startswith(GROUP_PREFIX)} | {h.giver}
        kept = [a for a in current if a not in mine]
        if len(kept) == len(current):
            excused.add(h.giver)  # they decided as a member of a group, which stays
        current = kept
        if h.to not in current:
            current.append(h.to)
        excused.discard(h.to)
    return current, excused
