"""The storage contract, run against a SQLite file and a PostgreSQL database alike: rows round-trip
with aware UTC times, a stale version writes nothing, waits are replaced as a set, history keeps
its order, due work is claimed earliest first, and listing pages by keyset."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from signoff.engine import Conflict
from signoff.engine.core.records import Record, Stored, WaitRecord
from signoff.engine.errors import DataNotStorable
from signoff.engine.storage.placement import open_approvals
from signoff.engine.storage.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(any_url: str) -> Iterator[Store]:
    store = Store(any_url)
    yield store
    store.close()


def row(
    iid: str,
    *,
    status: str = "waiting",
    workflow: str = "Expense",
    data: str = "{}",
    due_at: datetime | None = None,
    updated_at: datetime = T0,
    version: int = 1,
) -> Stored:
    return Stored(
        id=iid,
        workflow=workflow,
        status=status,
        data=data,
        state="{}",
        result=None,
        error=None,
        version=version,
        due_at=due_at,
        lease_owner=None,
        lease_until=None,
        created_at=T0,
        updated_at=updated_at,
    )


def wait(
    event: str, *, due_at: datetime | None = None, approvers: list[str] | None = None
) -> WaitRecord:
    return WaitRecord(
        thread="main",
        wait="approval",
        event=event,
        kind="approval",
        began_at=T0,
        due_at=due_at,
        approvers=approvers,
        title=f"about {event}",
        wait_key="main:1",
    )


def test_an_inserted_row_loads_back_exactly_with_aware_utc_times(store: Store) -> None:
    stored = row(
        "a", data='{"amount":120,"note":"caf\\u00e9 \\u2713"}', due_at=T0 + timedelta(minutes=10)
    )
    stored.result, stored.error = '{"ok":true}', "nothing"
    stored.lease_owner, stored.lease_until = "me", T0 + timedelta(seconds=60)
    store.insert(stored, [], [])
    loaded = store.load("a")
    assert loaded == stored
    assert loaded is not None and loaded.due_at is not None
    assert loaded.due_at.utcoffset() == timedelta(0)
    assert store.load("missing") is None


def test_times_in_other_zones_are_stored_as_the_same_instant(store: Store) -> None:
    from zoneinfo import ZoneInfo

    berlin = datetime(2026, 3, 1, 13, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    store.insert(row("b", due_at=berlin), [], [])
    loaded = store.load("b")
    assert loaded is not None and loaded.due_at == T0
    assert loaded.due_at.tzinfo == UTC


def test_a_duplicate_id_is_a_conflict_and_changes_nothing(store: Store) -> None:
    store.insert(row("a", data='{"n":1}'), [wait("approve")], [Record(T0, "started")])
    with pytest.raises(Conflict, match="an instance with id 'a' already exists"):
        store.insert(row("a", data='{"n":2}'), [wait("other")], [Record(T0, "again")])
    loaded = store.load("a")
    assert loaded is not None and loaded.data == '{"n":1}'
    assert [w["event"] for w in open_approvals(store)] == ["approve"]
    assert [h.kind for h in store.history("a")] == ["started"]


def test_save_checks_the_version_and_a_stale_writer_writes_nothing(store: Store) -> None:
    store.insert(row("a"), [wait("approve")], [Record(T0, "started")])

    first = row("a", data='{"by":"first"}', version=2, status="completed")
    assert store.save(first, 1, [], [Record(T0, "decision", actor="alice")]) is True

    stale = row("a", data='{"by":"stale"}', version=2, status="cancelled")
    assert store.save(stale, 1, [wait("zombie")], [Record(T0, "lost")]) is False

    loaded = store.load("a")
    assert loaded is not None
    assert (loaded.data, loaded.status, loaded.version) == ('{"by":"first"}', "completed", 2)
    assert open_approvals(store) == []
    assert [(h.kind, h.actor) for h in store.history("a")] == [
        ("started", None),
        ("decision", "alice"),
    ]
    assert store.save(row("ghost", version=2), 1, None, [Record(T0, "x")]) is False
    assert store.history("ghost") == []


def test_claims_of_one_taken_at_once_from_many_threads_take_one_row_each(store: Store) -> None:
    """Eight threads draining 200 due rows one claim at a time: each claim takes at most the
    one row asked for (PostgreSQL must not run the pick again per row), and every row is
    taken exactly once."""
    for n in range(200):
        store.insert(row(f"due-{n:03d}", due_at=T0), [], [])
    hour = T0 + timedelta(hours=1)
    sizes: list[int] = []
    taken: list[str] = []
    lock = threading.Lock()

    def drain(me: str) -> None:
        while True:
            got = store.claim_due(hour, me, hour + timedelta(minutes=1), limit=1)
            with lock:
                sizes.append(len(got))
                taken.extend(ids(got))
            if not got and not store.any_due(hour):
                return

    threads = [threading.Thread(target=drain, args=(f"t{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(sizes) == 1
    assert sorted(taken) == [f"due-{n:03d}" for n in range(200)]


def test_a_progress_write_stores_data_state_and_version_only(store: Store) -> None:
    """A step's commit in the middle of a drive: the listed and indexed columns stay as they
    were (so PostgreSQL can update in place), and the version check still guards it."""
    store.insert(row("a", status="running", due_at=T0), [wait("approve")], [Record(T0, "started")])
    later = T0 + timedelta(minutes=5)
    step = row("a", data='{"n":1}', version=2, status="failed", due_at=later, updated_at=later)
    assert store.save(step, 1, None, [Record(later, "step", name="s1")], progress=True) is True

    loaded = store.load("a")
    assert loaded is not None
    assert (loaded.data, loaded.version) == ('{"n":1}', 2)
    assert (loaded.status, loaded.due_at, loaded.updated_at) == ("running", T0, T0)
    assert [w["event"] for w in open_approvals(store)] == ["approve"]
    assert [h.kind for h in store.history("a")] == ["started", "step"]
    assert store.save(row("a", data='{"n":9}', version=2), 1, None, [], progress=True) is False
    assert store.load("a").data == '{"n":1}'  # type: ignore[union-attr]


def test_waits_are_replaced_as_a_set_or_left_alone(store: Store) -> None:
    store.insert(
        row("a"),
        [
            wait("approve", approvers=["alice", "U1"]),
            wait("timeout", due_at=T0 + timedelta(hours=1)),
        ],
        [],
    )
    store.insert(row("b"), [wait("approve")], [])
    waits = open_approvals(store)
    assert [(w["instance_id"], w["event"], w["approvers"], w["due_at"]) for w in waits] == [
        ("a", "approve", ["alice", "U1"], None),
        ("a", "timeout", None, T0 + timedelta(hours=1)),
        ("b", "approve", None, None),
    ]
    assert waits[0]["title"] == "about approve"

    assert store.save(row("a", version=2), 1, None, [])  # None: waits untouched
    assert len(open_approvals(store)) == 3
    assert store.save(row("a", version=3), 2, [wait("feedback")], [])  # replaced
    assert [(w["instance_id"], w["event"]) for w in open_approvals(store)] == [
        ("b", "approve"),
        ("a", "feedback"),
    ]  # oldest wait first, then insertion order
    assert store.save(row("a", version=4), 3, [], [])  # emptied
    assert [w["instance_id"] for w in open_approvals(store)] == ["b"]


def test_history_is_appended_in_order_with_its_details(store: Store) -> None:
    store.insert(row("a"), [], [Record(T0, "started", actor="ann", via="web")])
    version = 1
    for n in range(5):
        store.save(
            row("a", version=version + 1),
            version,
            None,
            [
                Record(
                    T0 + timedelta(seconds=n),
                    "step",
                    thread="main",
                    name=f"s{n}",
                    detail={"attempt": 1, "when": T0},
                )
            ],
        )
        version += 1
    store.insert(row("other"), [], [Record(T0, "started")])
    entries = store.history("a")
    assert [h.name for h in entries] == [None, "s0", "s1", "s2", "s3", "s4"]
    assert [h.id for h in entries] == sorted(h.id for h in entries)
    assert (entries[0].actor, entries[0].via) == ("ann", "web")
    assert entries[3].detail == {"attempt": 1, "when": str(T0)}
    assert entries[3].at == T0 + timedelta(seconds=2)
    assert all(h.instance_id == "a" for h in entries)


def test_a_history_detail_that_is_no_json_is_refused_and_nothing_is_written(
    store: Store,
) -> None:
    """The last guard of the history: NaN and Infinity (no JSON) and a detail that holds
    itself are refused with DataNotStorable, and the commit writes nothing."""
    store.insert(row("a"), [], [])
    looped: dict[str, object] = {}
    looped["self"] = looped
    for detail in ({"ms": float("nan")}, {"left": [float("-inf")]}, looped):
        with pytest.raises(DataNotStorable, match="the history entry 'step' cannot be stored"):
            store.save(row("a", version=2), 1, None, [Record(T0, "step", detail=detail)])
    kept = store.load("a")
    assert kept is not None and kept.version == 1
    assert store.history("a") == []


def test_a_commit_keeps_its_history_rows_in_order_however_many_it_has(store: Store) -> None:
    """None, a few (sent as plain parameters on PostgreSQL) or many (as one JSON array): the
    rows land in the order given, each with all its fields, and a stale commit lands none."""
    store.insert(row("a"), [], [])
    version, names = 1, []
    for size in (0, 2, 3, 5, 1):
        batch = [
            Record(
                T0 + timedelta(seconds=len(names) + i),
                "step",
                thread="main",
                name=f"s{len(names) + i}",
                actor="ann" if i % 2 else None,
                via="web" if i % 2 else None,
                message=f"line {i}" if i else None,
                detail={"n": i} if i else None,
            )
            for i in range(size)
        ]
        names += [r.name for r in batch]
        assert store.save(row("a", version=version + 1), version, None, batch)
        version += 1
    assert not store.save(row("a", version=99), 1, None, [Record(T0, "step", name="stale")] * 3)
    entries = store.history("a")
    assert [h.name for h in entries] == names
    assert [h.at for h in entries] == [T0 + timedelta(seconds=i) for i in range(len(names))]
    second = entries[1]  # i == 1 of the first batch of two
    assert (second.actor, second.via, second.message, second.detail) == (
        "ann",
        "web",
        "line 1",
        {"n": 1},
    )
    assert (entries[0].actor, entries[0].message, entries[0].detail) == (None, None, None)


def ids(rows: list[Stored]) -> list[str]:
    return [r.id for r in rows]


def test_due_work_is_claimed_earliest_first_and_once(store: Store) -> None:
    store.insert(row("late", due_at=T0 + timedelta(minutes=30)), [], [])
    store.insert(row("early", due_at=T0 + timedelta(minutes=5)), [], [])
    store.insert(row("never"), [], [])
    store.insert(row("future", due_at=T0 + timedelta(days=1)), [], [])
    store.insert(row("mid", due_at=T0 + timedelta(minutes=10)), [], [])
    hour = T0 + timedelta(hours=1)

    assert [iid for iid, _ in store.upcoming(T0, hour)] == ["early", "mid", "late"]
    assert store.claim_due(T0, "me", hour) == []
    claimed = store.claim_due(hour, "me", hour + timedelta(minutes=1), limit=2)
    assert ids(claimed) == ["early", "mid"]
    # each claimed row comes back as it now stands, so the claimer needs no second read
    assert [(r.lease_owner, r.lease_until, r.version) for r in claimed] == [
        ("me", hour + timedelta(minutes=1), 2)
    ] * 2
    assert claimed[0] == store.load("early")
    assert ids(store.claim_due(hour, "you", hour + timedelta(minutes=1))) == ["late"]
    assert store.claim_due(hour, "them", hour + timedelta(minutes=1)) == []
    # a claim is due again when its lease runs out, in case its claimer died
    again = store.upcoming(hour, hour + timedelta(days=1))
    assert sorted(again[:3]) == [
        (iid, hour + timedelta(minutes=1)) for iid in ("early", "late", "mid")
    ]
    assert again[3:] == [("future", T0 + timedelta(days=1))]


def test_a_claim_takes_only_the_named_instance_and_only_the_workflows_it_may_run(
    store: Store,
) -> None:
    """A worker started for some workflows never leases another's instance; a timer's own
    claim takes its instance alone, and only when it is due and free."""
    for n, workflow in enumerate(("Expense", "Trip", "Expense", "Other")):
        store.insert(row(f"d{n}", workflow=workflow, due_at=T0 + timedelta(minutes=n)), [], [])
    hour = T0 + timedelta(hours=1)
    later = hour + timedelta(minutes=1)
    assert store.claim_due(hour, "w", later, workflows=[]) == []
    assert ids(store.claim_due(hour, "w", later, workflows=["Trip", "Other"])) == ["d1", "d3"]
    assert store.claim_due(T0, "w", later, instance_id="d2") == []  # not due yet
    assert store.claim_due(hour, "w", later, instance_id="d2", workflows=["Trip"]) == []
    assert ids(store.claim_due(hour, "w", later, instance_id="d2", workflows=["Expense"])) == ["d2"]
    assert store.claim_due(hour, "x", later, instance_id="d2") == []  # leased now
    assert store.any_due(hour, ["Expense"]) and not store.any_due(hour, ["Trip", "Other"])
    assert ids(store.claim_due(hour, "x", later)) == ["d0"]
    assert not store.any_due(hour)  # every one leased
    after = later + timedelta(seconds=1)  # every lease ran out: due again, for those who may
    assert store.any_due(after) and store.any_due(after, ["Other"])
    assert not store.any_due(after, ["Nope"]) and not store.any_due(after, [])


def test_a_time_without_a_zone_is_refused_and_claims_nothing(store: Store) -> None:
    """A naive datetime could be any zone's; read as the machine's, it would lease an
    instance early or late, so it is refused before anything is written."""
    store.insert(row("due", due_at=T0), [], [])
    naive = (T0 + timedelta(hours=1)).replace(tzinfo=None)
    with pytest.raises(ValueError, match="aware"):
        store.claim_due(naive, "w", T0 + timedelta(hours=2))
    with pytest.raises(ValueError, match="aware"):
        store.any_due(naive)
    assert store.load("due").lease_owner is None  # type: ignore[union-attr]


def test_page_filters_and_pages_by_keyset_most_recent_first(store: Store) -> None:
    for n in range(7):
        store.insert(
            row(
                f"i{n}",
                workflow="Expense" if n % 2 else "Trip",
                status="completed" if n == 3 else "waiting",
                data=f'{{"who":"person_{n}","pct":"{n}%"}}',
                updated_at=T0 + timedelta(minutes=n // 2),
            ),
            [wait(f"e{n}")],
            [],
        )
    # i5 and i4 share an updated_at: the id breaks the tie
    everything = [r["id"] for r in store.page()]
    assert everything == ["i6", "i5", "i4", "i3", "i2", "i1", "i0"]

    pages, before = [], None
    while True:
        chunk = store.page(limit=3, before=before)
        if not chunk:
            break
        pages.append([r["id"] for r in chunk])
        before = (chunk[-1]["updated_at"], chunk[-1]["id"])
    assert pages == [["i6", "i5", "i4"], ["i3", "i2", "i1"], ["i0"]]

    def pages_of_two(order: str) -> list[str]:
        """Every page of two: a page ends between i5 and i4, which changed at one moment."""
        found: list[str] = []
        before = None
        while chunk := store.page(limit=2, before=before, order=order):
            found += [r["id"] for r in chunk]
            before = (chunk[-1]["updated_at"], chunk[-1]["id"])
        return found

    assert pages_of_two("recent") == everything
    assert pages_of_two("oldest") == ["i0", "i1", "i2", "i3", "i4", "i5", "i6"]

    assert [r["id"] for r in store.page(workflow="Expense")] == ["i5", "i3", "i1"]
    assert [r["id"] for r in store.page(status="completed")] == ["i3"]
    assert [r["id"] for r in store.page(status="waiting", workflow="Trip", limit=2)] == ["i6", "i4"]
    assert [r["id"] for r in store.page(search="person_2")] == ["i2"]
    assert [r["id"] for r in store.page(search="i5")] == ["i5"]
    # LIKE wildcards in a search are taken literally
    assert [r["id"] for r in store.page(search="5%")] == ["i5"]
    assert store.page(search="person%") == []
    first = store.page(limit=1)[0]
    assert first["waiting_for"] == ["e6"]
    assert first["updated_at"] == T0 + timedelta(minutes=3)
    assert store.counts() == {"waiting": 6, "completed": 1}


def test_a_second_store_on_the_same_database_sees_the_same_rows(any_url: str, store: Store) -> None:
    store.insert(row("a"), [wait("approve")], [Record(T0, "started")])
    other = Store(any_url)  # the schema is current already: nothing to migrate
    try:
        assert other.load("a") == store.load("a")
        assert other.save(row("a", version=2, status="completed"), 1, [], [])
        assert store.save(row("a", version=2), 1, [], []) is False
    finally:
        other.close()
