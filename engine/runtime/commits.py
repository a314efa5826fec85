"""Committing a driver's working copy: the lease, the version-checked save, and the merge
with whatever another writer committed meanwhile."""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from signoff.engine.core.enums import HistoryKind, Status
from signoff.engine.core.records import Record
from signoff.engine.core.renames import carry_over
from signoff.engine.core.state import state_json
from signoff.engine.core.working import Working, rebase
from signoff.engine.errors import DataNotStorable
from signoff.engine.runtime import logs, tracing
from signoff.engine.runtime.lifecycle import Lifecycle
from signoff.engine.runtime.metrics import Metrics
from signoff.engine.storage.outbox import outbox_row
from signoff.engine.storage.store import Store


@dataclass(frozen=True)
class Committed:
    """An outside change (event, retry, cancel, goto) that was committed. `drive_as` is the lease
    token to drive the instance on with, or None when there is nothing for us to drive: it has
    ended, or another process holds it and will take the change in."""

    drive_as: str | None


GIVE_UP_ATTEMPTS = 3


_PROCESS = secrets.token_hex(12)  # this process's part of every lease token it makes
_TOKENS = itertools.count(1)


def _new_process() -> None:
    """A forked child (a pre-forking server's worker) draws its own part: tokens must never
    repeat between two processes."""
    global _PROCESS
    _PROCESS = secrets.token_hex(12)


os.register_at_fork(after_in_child=_new_process)


def lease_token() -> str:
    """A new lease holder's token, unique across processes: a random part drawn once per
    process and a counter (`next` on an itertools.count is atomic), no system call each."""
    return f"{_PROCESS}{next(_TOKENS):x}"


class LeaseTokens:
    """One engine's lease tokens. Plain (`lease_token`) until the engine's liveness lock is
    held (engine/storage/liveness.py); then each token starts with "w" and the lock's key in
    8 hex digits, so other processes can tell from a lease whose lock vouches for its holder,
    and take the instance over as soon as that lock is free (the holder died)."""

    __slots__ = ("_first_lock", "before_first", "prefix")

    def __init__(self) -> None:
        self.prefix = ""
        # called once, before the first token is made (the engine takes its lock then); the
        # threads that ask meanwhile wait for it, so their leases are vouched for too
        self.before_first: Callable[[], None] | None = None
        self._first_lock = threading.Lock()

    def __call__(self) -> str:
        if self.before_first is not None:
            with self._first_lock:  # cleared once it returned: the others wait till then
                first = self.before_first
                if first is not None:
                    try:
                        first()
                    finally:
                        self.before_first = None
        return f"{self.prefix}{_PROCESS}{next(_TOKENS):x}"

    def vouched(self, key: int | None) -> None:
        """Tokens made from now on name the lock `key` (None: plain again)."""
        self.prefix = "" if key is None else f"w{key:08x}"


class LostLease(Exception):
    """Another process took over the instance (our lease ran out): stop driving it."""


class Committer:
    """Takes the lease, saves under the version check, merges on conflict, and tells the
    scheduler when an instance next falls due."""

    def __init__(
        self,
        store: Store,
        lifecycle: Lifecycle,
        lease: timedelta,
        clock: Callable[[], datetime],
        notify_due: Callable[[str, datetime], None],
        metrics: Metrics | None = None,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.on_outbox = on_outbox  # told after a commit that queued messages (the outbox)
        self.metrics = metrics or Metrics()
        self.store = store
        self.lifecycle = lifecycle
        self.lease = lease
        self.renew_within = lease / 2  # a commit renews a lease with less than this left
        self.clock = clock
        self.tokens = LeaseTokens()
        self.notify_due = notify_due
        # workflow -> the fingerprint of the release this process runs (engine/core/releases.py)
        self.release_of: Callable[[str], str | None] = lambda _: None

    def claim(self, work: Working, now: datetime) -> str:
        """Take the lease unless a live driver holds it; returns our token or ""."""
        row = work.row
        if row.lease_owner and row.lease_until and row.lease_until > now:
            return ""
        owner = self.tokens()
        row.lease_owner, row.lease_until = owner, now + self.lease
        return owner

    def save(self, work: Working, now: datetime) -> bool:
        """Commit the working copy if nobody else committed since we loaded it."""
        work.refresh_status()
        if work.terminal and work.state.inbox:  # kept events whose wait never began
            for pending in work.state.inbox:
                work.note(
                    Record(
                        now,
                        HistoryKind.EVENT_DROPPED,
                        name=pending.event,
                        actor=pending.actor,
                        via=pending.via,
                        message="the instance ended before a wait for this event began",
                    )
                )
            work.state.inbox = []
        row = work.row
        expected = row.version
        if row.lease_owner and not work.terminal:
            row.due_at = row.lease_until
        else:
            row.lease_owner = row.lease_until = None
            row.due_at = work.state.next_due()  # a finished instance may still owe teardowns
        release = self.release_of(row.workflow)
        if release is not None and work.state.release != release:
            work.state.release = release
        row.state = state_json(work.state)
        # a step's commit mid-drive changes data and state only: the row keeps its place in
        # the lists (updated_at) and its indexes stay as they are
        progress = work.progress_only()
        stamp = row.updated_at if progress else now
        row.version, row.updated_at = expected + 1, stamp
        # a finished instance has no wait rows: cleared unless known to be gone already
        rewrite = work.waits_dirty or (work.terminal and not work.no_waits)
        waits = work.wait_records() if rewrite else None
        outbox = [outbox_row(o, now) for o in work.outbox]
        try:
            if tracing.off():
                saved = self.store.save(row, expected, waits, work.history, progress, outbox)
            else:
                with tracing.span(
                    "signoff.transition",
                    lambda: {
                        "signoff.workflow": row.workflow,
                        "signoff.instance_id": row.id,
                        "signoff.status": row.status,
                        "signoff.version": expected + 1,
                        "signoff.history": [r.kind for r in work.history],
                    },
                ):
                    saved = self.store.save(row, expected, waits, work.history, progress, outbox)
        except DataNotStorable as exc:
            row.version = expected
            self.give_up(work, exc)
            raise DataNotStorable(f"instance {work.id} failed: {exc}") from exc
        if not saved:
            row.version = expected
            self.metrics.conflict(row.workflow)
            return False
        logs.committed(row.id, row.workflow, work.history)
        self.metrics.committed(row.workflow, work.history)
        work.committed(expected + 1, stamp)
        if waits is not None:
            work.no_waits = not waits
        if row.due_at is not None and row.lease_owner is None:
            self.notify_due(row.id, row.due_at)
        if outbox and self.on_outbox is not None:
            self.on_outbox()  # never sends here: at most it wakes a sender in another thread
        return True

    def commit(self, work: Working, owner: str) -> bool:
        """Commit mid-drive, keeping the lease; merge in whatever another writer committed.
        False when a merge happened: what the caller walked to may be stale now."""
        merged = False
        while True:
            now = self.clock()
            row = work.row
            # renewed once half of it is spent, not at every commit: a commit that moves
            # neither the lease nor the status is a progress-only write (see `save`)
            if (
                row.lease_owner != owner
                or row.lease_until is None
                or row.lease_until - now < self.renew_within
            ):
                row.lease_owner, row.lease_until = owner, now + self.lease
            if self.save(work, now):
                return not merged
            self.rebase(work, owner)
            merged = True

    def give_up(self, work: Working, exc: DataNotStorable) -> None:
        """The database refused what `work` would commit (text it cannot keep): retrying the
        same commit can only fail again, so fail the instance as last committed, naming why.
        The refused progress is dropped; an operator's retry re-enters where it stood."""
        message = f"a commit was refused, so the instance stopped here: {exc}"
        for _ in range(GIVE_UP_ATTEMPTS):  # should other writers keep committing first
            fresh = self.store.load(work.id)
            if fresh is None or fresh.status in (Status.COMPLETED, Status.CANCELLED, Status.FAILED):
                return
            stuck = Working.of(fresh, work.cls)
            now = self.clock()
            threads = list(stuck.state.threads.values())
            for thread in [t for t in threads if t.live] or threads:
                stuck.fail(thread, message, now)
            stuck.row.lease_owner = stuck.row.lease_until = None
            try:
                if self.save(stuck, now):
                    return
            except DataNotStorable:
                return  # what was stored once stores again; never loop on it

    def rebase(self, work: Working, owner: str) -> None:
        fresh = self.store.load(work.id)
        if fresh is None:
            raise LostLease(f"instance {work.id} vanished")
        theirs = Working.of(fresh, work.cls)
        if fresh.lease_owner not in (owner, None):
            raise LostLease(f"instance {work.id} is driven elsewhere now")
        merged = rebase(work, theirs)
        carry_over(work, self.clock())  # the other writer may run the code from before a rename
        if not merged:
            work.note(
                Record(
                    self.clock(),
                    HistoryKind.MERGED,
                    message="a concurrent change to the same thread "
                    "won; this process's uncommitted progress was discarded",
                )
            )

    def commit_change(self, work: Working, now: datetime) -> Committed | None:
        """Commit an outside change (event, retry, cancel, goto); None when someone committed
        first, so the caller reloads and tries again."""
        owner = "" if work.terminal else self.claim(work, now)
        if not self.save(work, now):
            return None
        if work.terminal and work.state.teardowns:
            # a finished instance still owes teardowns: run them now (run_due retries failures)
            self.lifecycle.cleanups(work, self.clock())
            self.save(work, self.clock())
            return Committed(None)
        return Committed(owner or None)
