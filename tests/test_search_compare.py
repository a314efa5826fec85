"""The instances list for triage (`Engine.list`/`counts`/`inbox`): comparisons in a search
(`amount>200`, `started<2026-12-01`), a hint for one that cannot be read, and the filters
"waits for me" (`decider=`), overdue and started between two moments, on SQLite and
PostgreSQL alike; what each waiting instance waits for (`InstanceSummary.waiting`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from signoff.engine import Engine, InvalidData
from signoff.web.examples import UPSTREAM, WORKFLOWS


@pytest.fixture(autouse=True)
def _dependable_upstream() -> Iterator[None]:
    rate, UPSTREAM.failure_rate = UPSTREAM.failure_rate, 0.0
    yield
    UPSTREAM.failure_rate = rate


def _ids(rows: list[object]) -> set[str]:
    return {r.id for r in rows}  # type: ignore[attr-defined]


def test_comparisons_and_narrowing(any_url: str, clock: object) -> None:
    engine = Engine(any_url, workflows=WORKFLOWS, clock=clock, operators=["op"])
    try:
        small = engine.start("Expense", {"employee": "ann", "amount": 50})
        clock.advance(days=1)  # type: ignore[attr-defined]
        big = engine.start("Expense", {"employee": "ben", "amount": 250})
        odd = engine.start("Expense", {"employee": "amount>200", "amount": 5})
        buy = engine.start("Purchase", {"item": "GPU", "cost": 900})  # alice, carol, dave
        report = engine.start("NightlyReport", {"day": "2026-01-05"})  # anyone publishes
        assert _ids(engine.list(search="amount>200")) == {big}
        assert _ids(engine.list(search="amount >= 50")) == {small, big}
        assert _ids(engine.list(search="amount<50.5")) == {small, odd}
        assert _ids(engine.list(search="cost>800")) == {buy}
        assert engine.counts(search="amount>200") == {"waiting": 1}
        # dates: whole days, or a moment; UTC unless the text says otherwise
        assert _ids(engine.list(search="started<2026-01-06")) == {small}
        assert _ids(engine.list(search="started<=2026-01-05")) == {small}
        assert _ids(engine.list(search="started>2026-01-05")) == {big, odd, buy, report}
        assert _ids(engine.list(search="started>=2026-01-06T09:00")) == {big, odd, buy, report}
        assert _ids(engine.list(search="changed<2026-01-05T09:00:01+00:00")) == {small}
        # the inbox searches the same way
        assert {r["instance_id"] for r in engine.inbox("alice", search="amount>200")} == {big}
        assert engine.inbox_count("alice", search="amount>=50") == 2
        # unreadable: a hint, never a silent empty list
        for bad in ("amount>lots", "started<yesterday", "amount>nan", "amount<1e999"):
            with pytest.raises(InvalidData, match="amount>200"):
                engine.list(search=bad)
        # started between two moments (the list's date filter), with the other filters
        day2 = datetime(2026, 1, 6, tzinfo=UTC)
        assert _ids(engine.list(started_from=day2)) == {big, odd, buy, report}
        assert _ids(engine.list(started_before=day2)) == {small}
        assert _ids(engine.list(started_from=day2, started_before=day2)) == set()
        assert _ids(engine.list(started_from=day2, search="amount<100")) == {odd}
        assert engine.counts(started_from=day2, decider="dave") == {"waiting": 2}
        assert engine.counts(started_before=day2, search="amount>10") == {"waiting": 1}
        with pytest.raises(InvalidData, match="time zone"):
            engine.list(started_from=datetime(2026, 1, 6))
        # waits for me: an open approval naming one of the person's identities, or nobody
        assert _ids(engine.list(decider="alice")) == {small, big, odd, buy, report}
        assert _ids(engine.list(decider="dave")) == {buy, report}
        assert engine.counts(decider="dave") == {"waiting": 2}
        # overdue: a deadline passed and nothing fired the timer (no scheduler ran)
        assert _ids(engine.list(overdue=True)) == set()
        clock.advance(days=2, hours=12)  # type: ignore[attr-defined]
        assert _ids(engine.list(overdue=True)) == {small, report}  # 3 days, 2 hours are up
        assert _ids(engine.list(overdue=True, decider="dave")) == {report}
        # what each waits for, since when, and until when
        rows = {r.id: r for r in engine.list()}
        [ask] = rows[small].waiting
        assert (ask.kind, ask.title, ask.approvers) == (
            "approval",
            "Expense: 50 EUR for ann",
            ["alice"],
        )
        assert ask.since == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        assert ask.deadline == ask.since + timedelta(days=3)
        assert ask.overdue(clock()) and not rows[big].waiting[0].overdue(clock())  # type: ignore[operator]
        assert rows[buy].waiting[0].deadline is None  # no timeout: it may wait for ever
        assert rows[buy].to_dict()["waiting"][0]["approvers"] == ["alice", "carol", "dave"]
    finally:
        engine.close()


def test_a_comparison_is_safe_sql(any_url: str) -> None:
    """What a comparison puts in the query is a parameter, whatever the text."""
    engine = Engine(any_url, workflows=WORKFLOWS)
    try:
        engine.start("Expense", {"employee": "x'); DROP TABLE signoff_instances; --", "amount": 7})
        for hostile in (
            "amount>1 OR 1=1",
            "amount' OR '1'='1>3",
            'a"b>3',
            "started<2026-01-01' OR '1'='1",
            "x>-0",
            "amount>" + "9" * 190,
        ):
            with contextlib.suppress(InvalidData):
                engine.list(search=hostile)
        assert len(engine.list()) == 1
        assert _ids(engine.list(search="x>-0")) == set()
    finally:
        engine.close()
