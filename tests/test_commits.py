"""Commits in the middle of a drive: a step's commit writes the instance's data and state only,
so the instance keeps its place in the lists and PostgreSQL can update the row in place. The
lease moves on only once half of it is spent; the drive's last commit releases it and stamps
the time."""

from __future__ import annotations

from datetime import datetime, timedelta

from signoff.engine import Engine, S, Step, Workflow
from signoff.engine.core.records import Stored

from tests.conftest import Clock

LEASE = timedelta(seconds=10)


class Watch:
    """What the steps look at: the engine, its clock, and the rows they found."""

    engine: Engine
    clock: Clock
    instance = "slow-1"
    seen: list[Stored] = []  # the row as each step found it in the database


class Slow(Workflow):
    """Six steps, each two seconds long on the test's clock."""

    done: int = 0

    def definition(self) -> S:
        return S(*(Step(f"s{n}", self.work) for n in range(6)))

    def work(self) -> None:
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
