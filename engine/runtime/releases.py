"""This process's releases, recorded in the database, and the rule of `core/releases.py`
applied to the instances it loads for a transition.

The rule costs nothing while an instance stands where this process's definition reaches (a
set lookup); only an instance standing elsewhere costs a read of its workflow's releases.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from signoff.engine.core.releases import (
    BEAT_EVERY,
    Release,
    follow_back,
    judge,
    names_of,
    positions,
)
from signoff.engine.core.working import Working
from signoff.engine.errors import NewerRelease
from signoff.engine.runtime.metrics import Metrics
from signoff.engine.storage.releases import ReleaseRows
from signoff.engine.storage.store import Store

log = logging.getLogger("signoff.engine.runtime")

# due work a newer release handles is given back, due again this much later: the newer
# release's workers fire it meanwhile
SKIP_FOR = timedelta(seconds=2)
# what an event refused for a newer release tells its sender to wait, in seconds
RETRY_AFTER = 2.0


class Releases:
    """The releases this engine runs (one per registered workflow), and the rule."""

    def __init__(self, store: Store, clock: Callable[[], datetime], metrics: Metrics) -> None:
        self.rows = ReleaseRows(store)
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.mine: dict[str, Release] = {}
        self.recording = False  # True once the engine has started: a release is recorded at once
        self._beat: datetime | None = None
        self._lock = threading.Lock()
        self._warned: type[Exception] | None = None
        self._recorded = False  # what `start` registered is in the database

    def add(self, release: Release) -> None:
        self.mine[release.workflow] = release
        if self.recording:
            self._best_effort(self.rows.record, [release], self.clock())

    def _best_effort(self, write: Callable[..., None], *args: Any) -> None:
        """Recording releases is bookkeeping: a database that refuses the write (read-only,
        locked, full) must not stop an engine from starting or a send from going through.
        What is not recorded now is recorded at the next beat."""
        try:
            write(*args)
        except Exception as exc:  # the driver's error, or StorageError
            if self._warned is not type(exc):  # once per kind of refusal
                log.warning("could not record this process's releases: %s", exc)
            self._warned = type(exc)
            with self._lock:
                self._beat = None  # try again at the next beat

    def start(self) -> None:
        """Record every release registered so far (the engine has started)."""
        self.recording = True
        try:
            now = self.clock()
        except ValueError:  # a clock that is not UTC-aware: the first transition says so
            return
        self._beat = now
        self._best_effort(self._record, list(self.mine.values()), now)

    def beat(self, force: bool = False) -> None:
        """Bump last_seen of this process's releases, at most every BEAT_EVERY (cheap enough to
        call from every sweep and event)."""
        now = self.clock()
        with self._lock:
            if not force and self._beat is not None and now - self._beat < BEAT_EVERY:
                return
            self._beat = now
        if self._recorded:
            self._best_effort(self.rows.beat, list(self.mine.values()), now)
        else:  # the start could not record them: do now what it could not
            self._best_effort(self._record, list(self.mine.values()), now)

    def _record(self, releases: list[Release], now: datetime) -> None:
        self.rows.record(releases, now)
        self._recorded = True

    def fingerprint(self, workflow: str) -> str | None:
        mine = self.mine.get(workflow)
        return mine.fingerprint if mine is not None else None

    def place(self, work: Working, now: datetime) -> Release | None:
        """Apply the rule to an instance loaded for a transition: the newer release that
        handles it (then the caller leaves it untouched), or None to go on, after following
        renames back where the instance stands on a newer release's name for a statement this
        definition has (noted in the history, committed with the transition)."""
        mine = self.mine.get(work.row.workflow)
        if mine is None or work.cls is None:
            return None
        standing = positions(work.state)
        if standing <= mine.statements:
            return None
        try:
            have = names_of(work.tree())
        except Exception:  # the definition cannot be built: the transition reports that
            return None
        missing = sorted(standing - have)
        if not missing:
            return None
        verdict = judge(mine.fingerprint, missing, have, self.rows.of(work.row.workflow), now)
        if verdict.holder is not None:
            return verdict.holder
        if verdict.back:
            follow_back(work, verdict.back, now)
        return None

    def refuse(self, work: Working) -> NewerRelease:
        """The refusal of an event (or retry) for an instance a newer release handles."""
        self.left(work.row.workflow)
        return NewerRelease(work.row.workflow, RETRY_AFTER)

    def give_back(self, work: Working, owner: str, now: datetime) -> None:
        """Release a claim on an instance a newer release handles: nothing changes (no
        history), and it is due again shortly, for whichever process claims it then."""
        self.left(work.row.workflow)
        self.store.give_back(work.id, owner, now + SKIP_FOR)

    def left(self, workflow: str) -> None:
        self.metrics.inc("signoff_newer_release_refusals", (("workflow", workflow),))
