"""Makes time pass in production: APScheduler 3.x wakes each instance when something of it falls
due (a timeout, a reminder, a step retry, an owed setup or teardown).

The database is the truth and decides; APScheduler only says "look now". Two paths lead there:

- a date job per instance, armed at the instance's `due_at` — from the engine's `on_due` hook
  after every commit in this process, and from the database for what other processes armed;
- a periodic sweep that runs `engine.run_due()` (anything overdue: after a restart, a lost job,
  a timer armed elsewhere shortly before it fell due) and arms the jobs due within the horizon;
- on PostgreSQL, a listener thread: every commit that leaves an instance due NOTIFYs, so a
  timer another process created (a web-only `signoff serve --no-scheduler`) is armed at once,
  not at the next sweep. On SQLite and MariaDB/MySQL (no LISTEN/NOTIFY) that case waits for
  the sweep (`--sweep-every`);
- on PostgreSQL, the engine's vigil (engine/runtime/vigil.py), kept from `start` on: it holds
  this process's liveness lock and, every `probe_every`, takes over the instances of processes
  whose lock is free (they died), so a killed process's instances are driven on within about a
  second, not when their leases run out (engine/storage/liveness.py). Elsewhere a dead
  process's instances fall due when their lease runs out (the engine's `lease`), and the next
  sweep or armed job takes them up.

Only instances due within `horizon` get a job; the rest stay rows in the database until a later
sweep brings them into the window. Memory is therefore bounded by the timers due in the next
`horizon` seconds, not by all pending ones, and a timer is still armed `horizon - sweep_every`
ahead of its time. A job runs `engine.wake(instance_id)` in the thread pool, which claims the
instance in the database first (`Store.claim_due`): a duplicate, stale or concurrent wake-up
(another process, the sweep) finds nothing to claim and does nothing. A wake-up that fails (the
database is away) is armed again with a backoff, and the row stays due, so nothing is lost.

When many timers fall due together (every process arms every timer it hears of), a job does
not stop at its own instance: it drains (`Engine.drain_due`), claiming whatever else is due one
instance at a time (`FOR UPDATE SKIP LOCKED` keeps the processes' claims apart) until nothing
due is left. A job whose instance a finished drain covers (the drain began after the job was
armed and after its due time, and its last claim found nothing left) returns without touching
the database: the instance was claimed by someone, or is held by a live driver that arms it
again when it lets go. So the processes split a burst instead of each racing for all of it.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from signoff.engine.async_engine import AsyncEngine
from signoff.engine.engine import Engine
from signoff.engine.storage.notices import DueNotices

log = logging.getLogger("signoff.engine.scheduler")

SWEEP_JOB = "signoff:sweep"
OUTBOX_JOB = "signoff:outbox"
MAX_RETRY_DELAY = timedelta(seconds=30)


def _delta(value: timedelta | float) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


class Scheduler:
    """`Scheduler(engine).start()` fires the engine's timers on time until `shutdown()`; the
    engine may be an `Engine` or an `AsyncEngine`."""

    def __init__(
        self,
        engine: Engine | AsyncEngine,
        *,
        sweep_every: timedelta | float = 2.0,
        horizon: timedelta | float = 30.0,
        workers: int = 8,
        upcoming_limit: int = 20_000,
        probe_every: timedelta | float = 0.5,
    ) -> None:
        self.engine = engine.engine if isinstance(engine, AsyncEngine) else engine
        self.sweep_every = _delta(sweep_every)
        self.horizon = _delta(horizon)
        if self.sweep_every <= timedelta(0):
            raise ValueError("sweep_every must be positive")
        if self.horizon < 2 * self.sweep_every:
            raise ValueError(
                "the horizon must be at least twice sweep_every, or timers due "
                "between two sweeps would be armed late"
            )
        self.upcoming_limit = upcoming_limit
        self.probe_every = _delta(probe_every)
        if self.probe_every <= timedelta(0):
            raise ValueError("probe_every must be positive")
        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={
                "misfire_grace_time": None,  # a late job still runs: the database decides
                "coalesce": True,
                # a wake-up may re-arm its own instance while still running: let both run
                "max_instances": 4,
            },
            timezone=UTC,
        )
        self._failures: dict[str, int] = {}  # instance id -> failed wake-ups in a row
        # draining (see the module's docstring): when each job was last armed, and the start
        # of the latest drain that finished (the engine's clock, as due times are)
        self._armed_at: dict[str, datetime] = {}
        self._drained_through: datetime | None = None
        self._lock = threading.Lock()
        self._sweeping = threading.Lock()  # one sweep at a time in this scheduler
        self._running = False
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.engine.on_due(self._on_due)

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start firing: a first sweep runs at once (what fell due while nothing ran)."""
        with self._lock:
            if self._running:
                return
            self._running = True
        self._stop.clear()
        self._aps.start()
        self._aps.add_job(
            self.sweep,
            "interval",
            seconds=self.sweep_every.total_seconds(),
            id=SWEEP_JOB,
            next_run_time=datetime.now(UTC),
            # a sweep that is still draining makes the next one return at once (`sweep`), so
            # APScheduler never has to skip one and warn about it
            max_instances=2,
            replace_existing=True,
        )
        # messages a commit of this process queues go out at once, from this pool
        self.engine.outbox.kick = self.send_notices_soon
        if self.engine.store.notifies:  # PostgreSQL; elsewhere the sweep finds what is due
            self._listener = threading.Thread(
                target=self._listen, daemon=True, name="signoff-due-listener"
            )
            self._listener.start()
        if self.engine.vigil is not None:
            # held before `start` returns, so every lease taken from now on is vouched for
            self.engine.vigil.probe_every = self.probe_every
            self.engine.vigil.keep()

    def shutdown(self, wait: bool = True) -> None:
        """Stop arming and firing; with `wait`, let running wake-ups finish."""
        with self._lock:
            if not self._running:
                return
            self._running = False
        self._stop.set()
        if self.engine.outbox.kick == self.send_notices_soon:
            self.engine.outbox.kick = None
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        self._aps.shutdown(wait=wait)

    @property
    def running(self) -> bool:
        """Whether `start` was called and `shutdown` not yet."""
        return self._running

    def armed(self) -> int:
        """How many instances have a job (the sweep's own job not counted)."""
        return sum(1 for job in self._aps.get_jobs() if job.id not in (SWEEP_JOB, OUTBOX_JOB))

    # --- the outbox ------------------------------------------------------------------------------

    def send_notices_soon(self) -> None:
        """Send what the outbox holds now, in the pool (called after a commit queued some)."""
        if self._running:
            self._aps.add_job(
                self._send_notices,
                "date",
                run_date=datetime.now(UTC),
                id=OUTBOX_JOB,
                replace_existing=True,
            )

    def _send_notices(self) -> None:
        try:
            self.engine.deliver_notices()
        except Exception as exc:  # the sweep tries again
            log.warning("sending the outbox failed (%s: %s)", type(exc).__name__, exc)

    # --- arming --------------------------------------------------------------------------------

    def _on_due(self, instance_id: str, due_at: datetime) -> None:
        """The engine committed something due for `instance_id` at `due_at`. Never raises: this
        runs inside the engine's commit path, after the commit."""
        if not self._running:
            return
        try:
            if due_at <= self.engine.clock() + self.horizon:
                self.arm(instance_id, due_at)
        except Exception:  # the sweep will arm it
            log.exception("arming the timer of %s failed; the sweep will catch it", instance_id)

    def arm(self, instance_id: str, due_at: datetime) -> None:
        """Have `instance_id` woken at `due_at` (one job per instance: the latest arming wins)."""
        armed_at = self.engine.clock()
        with self._lock:
            self._armed_at[instance_id] = armed_at
        job = self._aps.get_job(instance_id)
        if job is not None and job.next_run_time == due_at:
            return
        self._aps.add_job(
            self._fire,
            "date",
            run_date=due_at,
            id=instance_id,
            args=[instance_id, due_at],
            replace_existing=True,
        )

    def _listen(self) -> None:
        """Arm what other processes make due, as their commits NOTIFY it (PostgreSQL). A lost
        connection is opened again after a pause; the sweep covers the gap."""
        pause = 0.5
        while not self._stop.is_set():
            notices = None
            try:
                notices = DueNotices(self.engine.store)
                pause = 0.5
                while not self._stop.is_set():
                    for instance_id, due_at in notices.wait(timeout=0.5):
                        self._on_due(instance_id, due_at)
            except Exception as exc:
                log.warning("listening for due timers failed (%s); trying again", exc)
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)
            finally:
                if notices is not None:
                    notices.close()

    @property
    def taken_over(self) -> int:
        """Instances of dead processes this process made due (PostgreSQL's liveness locks)."""
        return self.engine.vigil.taken_over if self.engine.vigil is not None else 0

    # --- firing --------------------------------------------------------------------------------

    def _covered(self, instance_id: str, due_at: datetime | None) -> bool:
        """Whether a finished drain makes this job's wake-up needless (the module's docstring)."""
        with self._lock:
            armed_at = self._armed_at.pop(instance_id, None)
            done = self._drained_through
        return (
            due_at is not None
            and armed_at is not None
            and done is not None
            and done >= max(armed_at, due_at)
        )

    def _drained(self, began: datetime) -> None:
        with self._lock:
            if self._drained_through is None or began > self._drained_through:
                self._drained_through = began

    def _fire(self, instance_id: str, due_at: datetime | None = None) -> None:
        if self._covered(instance_id, due_at):
            return
        log.debug("timer fired: waking %s", instance_id, extra={"instance_id": instance_id})
        began = self.engine.clock()
        try:
            self.engine.wake(instance_id)
        except Exception as exc:  # e.g. the database is unreachable: retry
            with self._lock:
                failures = self._failures[instance_id] = self._failures.get(instance_id, 0) + 1
            delay = min(timedelta(seconds=0.25 * 2 ** (failures - 1)), MAX_RETRY_DELAY)
            log.warning(
                "waking %s failed (%s: %s); trying again in %.2fs (attempt %d)",
                instance_id,
                type(exc).__name__,
                exc,
                delay.total_seconds(),
                failures,
                extra={"instance_id": instance_id},
            )
            if self._running:
                self.arm(instance_id, datetime.now(UTC) + delay)
            return
        if self._failures:
            with self._lock:
                self._failures.pop(instance_id, None)
        # then whatever else is due, one at a time; a failure there is another instance's,
        # logged by the engine, and the sweep takes it up again
        try:
            if self.engine.drain_due(stop=self._stopping)[1]:
                self._drained(began)
        except Exception as exc:
            log.warning("draining due work failed (%s: %s)", type(exc).__name__, exc)

    def _stopping(self) -> bool:
        """Shut down: a drain stops after the instance it is at."""
        return self._stop.is_set()

    def sweep(self) -> dict[str, Any]:
        """Fire everything overdue, then arm what falls due within the horizon. Safe to call
        from anywhere, at any time, in any number of processes. While another sweep of this
        scheduler runs, it returns at once with `skipped` set: that one does the work."""
        report: dict[str, Any] = {
            "woken": 0,
            "upcoming": 0,
            "notices": 0,
            "error": None,
            "skipped": False,
        }
        if not self._sweeping.acquire(blocking=False):
            report["skipped"] = True
            return report
        try:
            return self._sweep(report)
        finally:
            self._sweeping.release()

    def _sweep(self, report: dict[str, Any]) -> dict[str, Any]:
        try:
            # one at a time, as the jobs' drains claim: a batch taken here would wait its turn
            # in this one thread while the other threads found nothing left to take
            began = self.engine.clock()
            report["woken"], dry = self.engine.drain_due(stop=self._stopping)
            if dry:
                self._drained(began)
        except Exception as exc:  # the next sweep tries again
            report["error"] = f"{type(exc).__name__}: {exc}"
            log.warning(
                "sweep: firing due work failed (%s); the next sweep retries", report["error"]
            )
        try:
            report["notices"] = self.engine.deliver_notices()
        except Exception as exc:
            report["error"] = report["error"] or f"{type(exc).__name__}: {exc}"
            log.warning("sweep: sending the outbox failed (%s)", report["error"])
        if not self._running:
            return report
        try:
            now = self.engine.clock()
            for instance_id, due_at in self.engine.store.upcoming(
                now, now + self.horizon, limit=self.upcoming_limit
            ):
                self.arm(instance_id, due_at)
                report["upcoming"] += 1
        except Exception as exc:
            report["error"] = report["error"] or f"{type(exc).__name__}: {exc}"
            log.warning("sweep: arming upcoming timers failed (%s)", report["error"])
        return report
