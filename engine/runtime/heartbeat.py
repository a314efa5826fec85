"""Keeps the leases of instances whose step is still running from running out.

A driver's lease is renewed by its commits once half of it is spent, which is plenty for quick
steps. A step (or a handler's setup, say a Slack post) that runs longer than what is left would
let another process take the instance over and run it again, so while a drive goes on, one
daemon thread per engine renews its lease every third of the lease.

A sync step with a timeout is watched too: once the engine's clock passes its deadline (seen
at the next beat), its lease is no longer renewed and `expire` is called, which gives the
instance up (see `Runner`); no beat renews that lease again until the step returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

log = logging.getLogger("signoff.engine")


class Renews(Protocol):
    def renew_lease(self, instance_id: str, owner: str, until: datetime) -> bool: ...


class LeaseKeeper:
    def __init__(self, store: Renews, lease: timedelta, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.lease = lease
        self.clock = clock
        self.interval = max(lease.total_seconds() / 3, 0.05)
        self._held: dict[tuple[str, str], float] = {}  # (instance, owner) -> held since
        # (instance, owner) -> the deadline of the sync step it runs, and what to do past it
        self._deadlines: dict[tuple[str, str], tuple[datetime, Callable[[], None]]] = {}
        self._expired: set[tuple[str, str]] = set()  # past a deadline: no longer renewed
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def holding(self, instance_id: str, owner: str) -> _Holding:
        """A context: the lease of `instance_id` under `owner` is renewed while it is open."""
        return _Holding(self, (instance_id, owner))

    def hold(self, key: tuple[str, str]) -> None:
        with self._lock:
            # counted as held for a whole interval already, so the first renewal comes at the
            # thread's next beat (within a third of the lease), whatever its phase: a commit
            # renews only once half the lease is spent, so less than half may be left now
            self._held[key] = time.monotonic() - self.interval
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._renew_while_held, daemon=True, name="signoff-lease-keeper"
                )
                self._thread.start()

    def release(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._held.pop(key, None)
            self._deadlines.pop(key, None)
            self._expired.discard(key)

    def watch(self, key: tuple[str, str], deadline: datetime, expire: Callable[[], None]) -> None:
        """While the held `key` runs a sync step: past `deadline` (by the engine's clock),
        stop renewing its lease and call `expire` (from the keeper's thread)."""
        with self._lock:
            self._deadlines[key] = (deadline, expire)

    def unwatch(self, key: tuple[str, str]) -> None:
        """The step returned: renew as before (the lease is checked at every renewal)."""
        with self._lock:
            self._deadlines.pop(key, None)
            self._expired.discard(key)

    def _passed(self) -> list[tuple[tuple[str, str], Callable[[], None]]]:
        """The watched steps past their deadline, now no longer renewed (under the lock)."""
        now = self.clock()
        passed = [(key, d[1]) for key, d in self._deadlines.items() if now >= d[0]]
        for key, _ in passed:
            del self._deadlines[key]
            self._expired.add(key)
        return passed

    def _renew_while_held(self) -> None:
        """Renew what is held; end once nothing is (the next `holding` starts a new thread), so
        an engine that is dropped or closed leaves no thread behind."""
        while True:
            time.sleep(self.interval)
            now = time.monotonic()
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                passed = self._passed() if self._deadlines else []
                due = [
                    key
                    for key, since in self._held.items()
                    if now - since >= self.interval and key not in self._expired
                ]
            for key, expire in passed:
                try:
                    expire()
                except Exception:  # the database may be away: try again at the next beat
                    log.exception("giving up the lease of %s past its step's timeout", key[0])
                    with self._lock:
                        if key in self._expired:
                            self._deadlines[key] = (self.clock(), expire)
            for instance_id, owner in due:
                try:
                    self.store.renew_lease(instance_id, owner, self.clock() + self.lease)
                except Exception:  # the database may be away; the next beat retries
                    continue
                with self._lock:
                    if (instance_id, owner) in self._held:
                        self._held[(instance_id, owner)] = now


class _Holding:
    """`LeaseKeeper.holding`: a class rather than a generator, as every drive opens one."""

    __slots__ = ("keeper", "key")

    def __init__(self, keeper: LeaseKeeper, key: tuple[str, str]) -> None:
        self.keeper, self.key = keeper, key

    def __enter__(self) -> None:
        self.keeper.hold(self.key)

    def __exit__(self, *_: object) -> None:
        self.keeper.release(self.key)
