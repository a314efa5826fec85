"""Releases: which code of a workflow runs, and which release handles an instance.

During a rolling deploy two releases of a workflow run on one database, and on a rollback an
old one comes back. A release is named by a fingerprint of its definition (built from the
defaults, as registration builds it): the statement names and kinds and the declared renames.
Each engine records its releases when it starts; their order is the order in which they were
first recorded (`seq`).

The rule, `judge`: when this process's definition lacks a position an instance stands on and
the newest release (highest `seq`, not retired) is newer than this one and has that statement,
by name or as an old name it renames, that release handles the instance; this process leaves
it untouched. When no process runs that release any more but a newer release renamed the
statement from one this definition has, the rename is followed backwards (a rollback).
Otherwise the statement is gone for good (the newest release lacks it too) and the transition
fails the instance as before. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from signoff.engine.core.deploy import Assessment
from signoff.engine.core.enums import HistoryKind
from signoff.engine.core.records import Record
from signoff.engine.core.renames import NAMED, Move, Renames, moves
from signoff.engine.core.state import LIVE_THREAD, InstanceState
from signoff.engine.core.tree import Statement, walk
from signoff.engine.core.waits import Wait
from signoff.engine.core.working import Working

# a process bumps its releases' last_seen this often (the scheduler's sweep, events) ...
BEAT_EVERY = timedelta(seconds=15)
# ... and a release counts as run by some process when one was seen this recently
ALIVE_WITHIN = timedelta(seconds=60)
FINGERPRINT_CHARS = 16


@dataclass(frozen=True, slots=True)
class Release:
    """One release of one workflow as recorded. `statements`: the names of its steps, waits,
    WaitFors, Fors and Gos; `renames`: new statement name -> the old names it declares;
    `events`: per wait, new event name -> old event names. `seq` orders releases by their
    first recording (0: not recorded yet); `retired` ones no longer count as newer."""

    workflow: str
    fingerprint: str
    statements: frozenset[str]
    renames: dict[str, tuple[str, ...]] = field(default_factory=dict)
    events: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    seq: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    retired_at: datetime | None = None

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    def alive(self, now: datetime, within: timedelta = ALIVE_WITHIN) -> bool:
        """Whether some process ran it lately (bumped `last_seen`)."""
        return not self.retired and self.last_seen is not None and now - self.last_seen <= within

    def knows(self, name: str) -> bool:
        """Whether an instance standing on `name` can go on under this release: it has the
        statement, or declares `name` as an old name of one."""
        return name in self.statements or any(name in old for old in self.renames.values())

    def renames_json(self) -> str:
        return json.dumps(
            {
                "statements": {k: list(v) for k, v in sorted(self.renames.items())},
                "events": {
                    w: {k: list(v) for k, v in sorted(m.items())}
                    for w, m in sorted(self.events.items())
                },
            },
            separators=(",", ":"),
        )


def release_of(workflow: str, definition: Statement) -> Release:
    """The release a definition makes (fingerprinted; not yet recorded)."""
    kinds: dict[str, str] = {}
    renames: dict[str, tuple[str, ...]] = {}
    events: dict[str, dict[str, tuple[str, ...]]] = {}
    for stmt in walk(definition):
        if not isinstance(stmt, NAMED):
            continue
        kinds[stmt.name] = type(stmt).__name__
        if stmt.renamed_from:
            renames[stmt.name] = tuple(stmt.renamed_from)
        if isinstance(stmt, Wait):
            moved = {c.event: tuple(c.renamed_from) for c in stmt.cases if c.renamed_from}
            if moved:
                events[stmt.name] = moved
    shape = json.dumps(
        {
            "workflow": workflow,
            "statements": sorted(kinds.items()),
            "renames": {k: list(v) for k, v in sorted(renames.items())},
            "events": {w: {k: list(v) for k, v in sorted(m.items())} for w, m in events.items()},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(shape.encode()).hexdigest()[:FINGERPRINT_CHARS]
    return Release(workflow, digest, frozenset(kinds), renames, events)


Names = dict[str, tuple[str, ...]]


def read_renames(text: str) -> tuple[Names, dict[str, Names]]:
    """The `renames` column back: statement renames and event renames."""
    found = json.loads(text or "{}")
    statements = {k: tuple(v) for k, v in (found.get("statements") or {}).items()}
    events = {
        w: {k: tuple(v) for k, v in m.items()} for w, m in (found.get("events") or {}).items()
    }
    return statements, events


def positions(state: InstanceState) -> set[str]:
    """The statement names the instance's live threads stand on (and run, for a Go's thread),
    and the waits that still owe a teardown: what a definition must have to drive it."""
    found: set[str] = set()
    for thread in state.threads.values():
        if thread.status in LIVE_THREAD:
            if thread.at is not None:
                found.add(thread.at)
            if thread.root is not None:
                found.add(thread.root)
    found.update(t.wait for t in state.teardowns)
    return found


def names_of(definition: Statement) -> set[str]:
    return {s.name for s in walk(definition) if isinstance(s, NAMED)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with an instance whose positions this release lacks: leave it to `holder`
    (a newer release), or follow `back` (renames a newer release declared, backwards)."""

    holder: Release | None = None
    back: Renames = field(default_factory=Renames)


def judge(
    mine: str,
    missing: Iterable[str],
    have: Collection[str],
    releases: Iterable[Release],
    now: datetime,
) -> Verdict:
    """Decide by release order. `mine`: this process's fingerprint; `missing`: positions its
    definition lacks; `have`: the names its definition has; `releases`: the workflow's
    releases as recorded."""
    recorded = list(releases)
    me = next((r for r in recorded if r.fingerprint == mine), None)
    if me is None:  # not recorded (yet): nothing is newer than what this process runs
        return Verdict()
    newer = sorted((r for r in recorded if r.seq > me.seq), key=lambda r: -r.seq)
    newest = next((r for r in newer if not r.retired), None)
    statements: dict[str, str] = {}
    events: dict[str, dict[str, str]] = {}
    holder: Release | None = None
    for name in missing:
        keeper = newest if newest is not None and newest.knows(name) else None
        if keeper is not None and keeper.alive(now):
            holder = keeper
            continue
        back = _backwards(name, newer, have)
        if back is not None:
            old, moved = back
            statements[name] = old
            if moved:
                events[old] = moved
            continue
        if keeper is not None:  # nobody runs it now, but it is not retired: left for it
            holder = keeper
    if holder is not None:
        return Verdict(holder=holder)
    return Verdict(back=Renames(statements, events))


def _backwards(
    name: str, newer: list[Release], have: Collection[str]
) -> tuple[str, dict[str, str]] | None:
    """The name this definition has for `name`, following renames that newer releases declared
    back (newest first, through several releases if need be), and the event renames of that
    wait, new -> old."""
    seen = {name}
    todo = [(name, dict[str, str]())]
    while todo:
        current, moved = todo.pop(0)
        for release in newer:
            for old in release.renames.get(current, ()):
                if old in seen:
                    continue
                seen.add(old)
                hop = {
                    new: olds[0] for new, olds in release.events.get(current, {}).items() if olds
                }
                # compose: an event already moved back once moves on from its older name
                chained = {new: hop.get(mid, mid) for new, mid in moved.items()}
                chained.update({k: v for k, v in hop.items() if k not in chained})
                if old in have:
                    return old, chained
                todo.append((old, chained))
    return None


def follow_back(work: Working, back: Renames, now: datetime) -> None:
    """Move the instance back onto the names this (older) definition has, noting each move."""
    for move in moves(work.state, back):
        work.note(
            Record(
                now,
                HistoryKind.MOVED,
                thread=move.thread,
                name=move.new,
                message=f"moved from '{move.old}' to '{move.new}' by a rollback",
                detail={"from": move.old, "to": move.new, "what": move.what, "rollback": True},
            )
        )
    work.waits_dirty = True


def held_by_newer(
    found: Assessment, mine: str, have: Collection[str], releases: Iterable[Release]
) -> None:
    """For `signoff check` with older code (a rollback): of what `found` says this code would
    strand, what a newer release handles is held for it instead (`found.held`), and what a
    newer release renamed from a statement this code has is carried back. In place."""
    recorded = list(releases)
    me = next((r for r in recorded if r.fingerprint == mine), None)
    if me is None:
        return
    newer = sorted((r for r in recorded if r.seq > me.seq), key=lambda r: -r.seq)
    newest = next((r for r in newer if not r.retired), None)
    stranded = []
    for finding in found.stranded:
        if (
            finding.kind in ("statement", "thread")
            and newest is not None
            and newest.knows(finding.name)
        ):
            back = _backwards(finding.name, newer, have)
            if back is not None:
                found.carried.append(Move("", finding.kind, finding.name, back[0]))
            else:
                found.held.append(finding)
            continue
        stranded.append(finding)
    found.stranded = stranded
