"""PostgreSQL's liveness locks (engine/storage/liveness.py): a lease is taken over early only
when the lock its token names is free; a held lock (a process alive, however slow) keeps it;
a plain token is left to its lease. (A SIGKILLed worker or web process: tests/test_scale.py.)"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from signoff.engine import Engine, S, Step, Workflow
from signoff.engine.runtime.scheduler import Scheduler
from signoff.engine.storage.liveness import Liveness

pytestmark = pytest.mark.postgres

RELEASE = threading.Event()  # the step below returns once it is set


class Blocking(Workflow):
    runs: int = 0

    def definition(self) -> S:
        return S(Step("block", self.block), Step("done", lambda: None))

    def block(self) -> None:
        RELEASE.wait(20)
        self.runs += 1


def held_row(engine: Engine, instance_id: str) -> str:
    """The lease owner once the instance's row is in the database (its step blocking)."""
    deadline = time.monotonic() + 20
    while True:
        row = engine.store.load(instance_id)
        if row is not None and row.lease_owner:
            return row.lease_owner
        assert time.monotonic() < deadline, "the instance never began"
        time.sleep(0.02)


def test_a_lease_is_taken_over_early_only_once_the_lock_it_names_is_free(pg_url: str) -> None:
    RELEASE.clear()
    lease = timedelta(seconds=60)
    alive = Engine(pg_url, [Blocking], lease=lease)
    other = Engine(pg_url, [Blocking])
    probe = Liveness(other.store)
    scheduler = Scheduler(alive, probe_every=0.05)
    scheduler.start()  # the lock is held once `start` returns
    driving = threading.Thread(target=alive.start, args=(Blocking, {}, "held"))
    driving.start()
    try:
        owner = held_row(other, "held")
        assert alive.liveness is not None and alive.liveness.key is not None
        assert owner.startswith(f"w{alive.liveness.key:08x}")
        probe.hold()
        assert probe.take_over(datetime.now(UTC)) == []  # its lock is held: left alone

        # the process loses its lock (as when it dies); its lease would hold for a minute
        scheduler.shutdown()
        alive.liveness.close()
        taken: list[str] = []
        deadline = time.monotonic() + 20
        while not taken:  # the server frees the lock as the session ends, a moment later
            assert time.monotonic() < deadline, "never taken over"
            now = datetime.now(UTC)
            taken = probe.take_over(now)
        assert taken == ["held"]
        assert probe.take_over(now) == []  # once
        row = other.store.load("held")
        assert row is not None and row.lease_until == now and row.due_at == now
        # its driver, still running, cannot commit what it did: the version moved (it may take
        # the lease again, as after a lease ran out, before another process claims it)
        RELEASE.set()
        driving.join(timeout=20)
        other.run_due()
    finally:
        RELEASE.set()
        driving.join(timeout=20)
        scheduler.shutdown()
        probe.close()
        alive.close()
    view = other.get("held")
    assert view.status == "completed" and view.data["runs"] == 1
    committed = Counter(h.name for h in other.history("held") if h.kind == "step")
    assert committed == Counter({"block": 1, "done": 1})
    other.close()


def test_an_engine_holds_its_lock_from_its_first_lease_until_it_closes(pg_url: str) -> None:
    RELEASE.set()
    reader = Engine(pg_url, [Blocking])
    assert reader.liveness is not None and not reader.liveness.held  # took no lease: no lock
    reader.list()  # reading takes none either
    assert not reader.liveness.held
    reader.close()

    engine = Engine(pg_url, [Blocking], lease=timedelta(seconds=60))
    tokens = engine.runner.committer.tokens
    assert engine.liveness is not None and not engine.liveness.held
    assert tokens().startswith("w")  # the first lease takes the lock: no scheduler needed
    assert engine.liveness.held and tokens().startswith(f"w{engine.liveness.key:08x}")
    scheduler = Scheduler(engine)
    scheduler.start()
    scheduler.shutdown()
    assert tokens().startswith("w")  # the lock stays held until the engine closes
    engine.close()
    assert not tokens().startswith("w")
    assert engine.liveness.hold() is None  # closed for good


def test_a_plain_lease_is_left_to_run_out(pg_url: str) -> None:
    """A lease whose token names no lock (an engine closed meanwhile, an older release) is
    never taken over early: nothing vouches for its holder, nor against it."""
    other = Engine(pg_url, [Blocking])
    probe = Liveness(other.store)
    probe.hold()
    RELEASE.clear()
    plain = Engine(pg_url, [Blocking], lease=timedelta(seconds=60))
    plain.runner.committer.tokens.before_first = None  # as if its lock could not be taken
    driving = threading.Thread(target=plain.start, args=(Blocking, {}, "plain"))
    driving.start()
    try:
        assert not held_row(other, "plain").startswith("w")
        assert probe.take_over(datetime.now(UTC)) == []
    finally:
        RELEASE.set()
        driving.join(timeout=20)
        probe.close()
        plain.close()
        other.close()
        other.close()
