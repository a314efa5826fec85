"""Commits in the middle of a drive: a step's commit writes the instance's data and state only,
so the instance keeps its place in the lists and PostgreSQL can update the row in place. The
lease moves on only once half of it is spent; the drive's last commit releases it and stamps
the time."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from signoff.engine import Engine, S, Step, Workflow
from signoff.engine.core.records import Stored

from tests.conftest import Clock

LEASE = timedelta(seconds=10)


class Watch:
    """What the steps look at: the engine, its clock, and the rows they found."""

    engine: Engine | None
    clock: Clock
    instance = "slow-1"
    seen: list[Stored] = []  # the row as each step found it in the database


class Slow(Workflow):
    """Six steps, each two seconds long on the test's clock."""

    done: int = 0

    def definition(self) -> S:
        return S(*(Step(f"s{n}", self.work) for n in range(6)))

    def work(self) -> None:
        assert Watch.engine is not None
        row = Watch.engine.store.load(Watch.instance)
        assert row is not None
        Watch.seen.append(row)
        Watch.clock.advance(seconds=2)
        self.done += 1


def test_a_long_drive_keeps_its_place_and_renews_its_lease_once_half_is_spent(
    any_url: str, clock: Clock
) -> None:
    engine = Engine(any_url, [Slow], clock=clock, lease=LEASE)
    Watch.engine, Watch.clock, Watch.seen = engine, clock, []
    t0 = clock()
    engine.start(Slow, id="slow-1")

    # each step saw the commit before it: the previous step's, durable before it ran
    assert [row.data for row in Watch.seen] == [f'{{"done":{n}}}' for n in range(6)]
    at = [(row.version, row.lease_until, row.updated_at) for row in Watch.seen]

    def s(seconds: int) -> datetime:
        return t0 + timedelta(seconds=seconds)

    assert at == [
        (1, s(10), s(0)),  # started: leased for 10 s
        (2, s(10), s(0)),  # 8 s of the lease left: data and state only
        (3, s(10), s(0)),  # 6 s left
        (4, s(16), s(6)),  # 4 s left: renewed, and the list's time moves with it
        (5, s(16), s(6)),
        (6, s(16), s(6)),
    ]
    done = engine.get("slow-1")
    assert (done.status, done.updated_at) == ("completed", s(12))
    finished = engine.store.load("slow-1")
    assert finished is not None and finished.lease_owner is None and finished.due_at is None
    assert [h.name for h in engine.history("slow-1") if h.kind == "step"] == [
        f"s{n}" for n in range(6)
    ]
    Watch.engine = None
    engine.close()  # or its connections are left for the garbage collector to find open


class Handover(Workflow):
    """Quick steps that spend part of the lease without renewing it, then a long one."""

    def definition(self) -> S:
        return S(
            Step("s0", self.short),
            Step("s1", self.short),
            Step("s2", self.short),
            Step("long", self.long),
        )

    def short(self) -> None:
        time.sleep(0.45)

    def long(self) -> None:
        LONG_RUNS.append(threading.current_thread().name)
        time.sleep(2.5)


LONG_RUNS: list[str] = []


def test_a_long_step_begun_with_half_a_lease_left_is_never_taken_over(sqlite_url: str) -> None:
    """Commits renew the lease only once half is spent, so a step may begin with little more
    than half of it left; the lease keeper renews it from its next beat, whatever the phase of
    its thread, so another process polling for due work never finds it expired."""
    lease = timedelta(seconds=3)
    here, elsewhere = Engine(sqlite_url, [Handover], lease=lease), Engine(sqlite_url, [Handover])
    LONG_RUNS.clear()
    # another instance's long step keeps the keeper's thread beating at its own phase
    with here.runner.keeper.holding("another", "driver"):
        time.sleep(0.7)
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                elsewhere.run_due()
                time.sleep(0.05)

        poller = threading.Thread(target=poll, name="elsewhere")
        poller.start()
        try:
            here.start(Handover, id="handover")
        finally:
            stop.set()
            poller.join()
    assert LONG_RUNS == ["MainThread"]
    assert here.get("handover").status == "completed"


def test_lease_tokens_never_repeat_in_a_process_or_across_a_fork() -> None:
    """Two holders with one token would each take the other's lease for their own."""
    import os

    from signoff.engine.runtime.commits import lease_token

    made = {lease_token() for _ in range(10_000)}
    assert len(made) == 10_000 and all(len(t) <= 64 for t in made)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its next token and leave at once
        os.write(write, lease_token().encode())
        os._exit(0)
    os.close(write)
    theirs = os.read(read, 100).decode()
    os.waitpid(child, 0)
    mine = lease_token()
    assert theirs and theirs[:24] != mine[:24] and theirs not in made
