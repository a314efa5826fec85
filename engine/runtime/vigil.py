"""This process's liveness lock kept for as long as the engine lives, and the probe for the locks
of processes that died (PostgreSQL; engine/storage/liveness.py says how the two work).

Every process that takes leases holds the lock, a worker with a scheduler as much as a web
process without one (`signoff serve --no-scheduler`), which runs the steps after a decision
itself: killed in the middle of one, its instance is taken over by a worker within about a
second, not when its lease runs out. The lock is taken with the engine's first lease, so an
engine that only reads (`signoff check`, a script) never opens the connection it needs.

One thread holds the lock, takes it again when its connection broke, and probes every
`probe_every`; what it takes over is NOTIFYed by the probe's own statement, and told to this
process's due listeners (its scheduler, if it runs one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from signoff.engine.runtime.commits import LeaseTokens
from signoff.engine.storage.liveness import Liveness

log = logging.getLogger("signoff.engine")

PROBE_EVERY = timedelta(seconds=0.5)


class Vigil:
    """Holds `liveness` from `keep()` until `close()`, vouching for `tokens` while it is held,
    and takes over the leases of dead processes every `probe_every`."""

    def __init__(
        self,
        liveness: Liveness,
        tokens: LeaseTokens,
        clock: Callable[[], datetime],
        on_taken: Callable[[str, datetime], None],
    ) -> None:
        self.liveness = liveness
        self.tokens = tokens
        self.clock = clock
        self.on_taken = on_taken
        self.probe_every = PROBE_EVERY
        self.taken_over = 0  # instances of dead processes this process made due
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._backoff = 0.25  # doubled after each failed probe in a row: 0.5 s, 1 s, ... 10 s
        tokens.before_first = self.keep  # the first lease is vouched for

    @property
    def running(self) -> bool:
        return self._thread is not None

    def keep(self) -> None:
        """Hold the lock from now on (at once, so the leases taken after this are vouched for;
        should the database be away, the thread keeps trying)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            try:
                self._hold()
            except Exception as exc:
                log.warning("taking the liveness lock failed (%s); trying again", exc)
            self._thread = threading.Thread(target=self._watch, daemon=True, name="signoff-vigil")
            self._thread.start()

    def close(self) -> None:
        """Stop probing and let the lock go for good (the engine is closing)."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        self.tokens.vouched(None)
        self.liveness.close(for_good=True)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _hold(self) -> bool:
        """Take the lock; tokens name it from now on. False: closed for good."""
        key = self.liveness.hold()
        if key is None:
            return False
        self.tokens.vouched(key)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.probe()):
            pass

    def probe(self) -> float:
        """Hold the lock (again, when its connection broke) and take over what the dead held;
        returns how long to wait before the next probe (longer after each failure in a row)."""
        try:
            if not self.liveness.held and not self._hold():
                self._stop.set()  # the engine closed
                return 0.0
            now = self.clock()
            taken = self.liveness.take_over(now)
        except Exception as exc:
            if self._stop.is_set():
                return 0.0
            log.warning("the liveness lock or probe failed (%s); trying again", exc)
            self.liveness.close()
            self._backoff = min(self._backoff * 2, 10.0)
            return self._backoff
        self._backoff = 0.25
        if taken:
            log.warning(
                "took over %d instance(s) of processes that died: %s",
                len(taken),
                ", ".join(taken[:10]) + (" ..." if len(taken) > 10 else ""),
            )
            self.taken_over += len(taken)
            for instance_id in taken:
                self.on_taken(instance_id, now)
        return self.probe_every.total_seconds()
