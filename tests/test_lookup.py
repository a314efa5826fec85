"""An operator's search on PostgreSQL through the trigram index (engine/storage/lookup.py,
revision 0015): the same pages and counts as reading every row, whichever of its three steps
answers; counts that stop at `at_most` say so, on every database; a database where pg_trgm
cannot be created still upgrades, and its searches still work."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from signoff.engine import Approval, Counts, Engine, InvalidData, On, Return, S, Wait, Workflow
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import Clock, _pg_conninfo


class Claim(Workflow):
    employee: str = ""
    amount: int = 0
    note: str = ""
    flag: bool = False

    def definition(self) -> S:
        return S(Wait("approval", On("decision", Approval(approvers=[self.employee]))), Return())


# Searches of every kind: rare and common text, `field:value` of a string, a number and a
# bool, too short to look up, comparisons, wildcards, quotes, other alphabets, long text
SEARCHES = [
    "emp07",
    "employee:emp07",
    "employee:emp3",  # the newest ten: found among the newest (step 1)
    "employee:emp1",  # ten in the middle: more than the cap, few among the newest (step 3)
    "employee:emp0",
    "employee: emp22 ",
    "amount:120",
    "amount:5",  # a value without three letters in a row: the name is looked up
    "amount:1e3",
    "flag:true",
    "x:5",
    "ab",
    "note",
    "Müller",
    "日本語",
    "a%b_c\\",
    "100%",
    "_",
    "'quoted'",
    '"emp07"',
    'note:"say \\"hi\\""',
    'note:say "hi"',
    "amount>100",
    "started<2026-01-05T09:20",
    "emp" + "x" * 197,
]


def _claims(engine: Engine, clock: Clock) -> list[str]:
    """Forty claims a minute apart: emp00..emp39 (each its claim's approver), every fourth
    amount 120, started by boss0, boss1 and boss2 in turn; six cancelled."""
    ids = []
    for i in range(40):
        clock.advance(minutes=1)
        data = {
            "employee": f"emp{i:02d}",
            "amount": 120 if i % 4 == 0 else (5 if i % 4 == 1 else i * 10),
            "note": ["Müller paid 100% of a%b_c\\", "'quoted'", 'say "hi"', "日本語"][i % 4],
            "flag": i % 3 == 0,
        }
        iid = f"c{i:02d}{uuid.uuid4().hex[:6]}"
        ids.append(engine.start(Claim, data, id=iid, actor=f"boss{i % 3}"))
    for iid in ids[3::7]:
        engine.cancel(iid, "test")
    return ids


def _everything(engine: Engine, search: str, actor: str | None = None) -> dict[str, Any]:
    """Every page (four rows each) of `search` in every order, with and without a status,
    and its counts: complete, and stopping at five; as `actor` sees them."""
    found: dict[str, Any] = {}
    for order in ("recent", "oldest", "id"):
        for status in (None, "waiting"):
            pages, before = [], None
            while True:
                rows = engine.list(
                    status=status, limit=4, search=search, before=before, order=order, actor=actor
                )
                pages.append([r.id for r in rows])
                if len(rows) < 4:
                    break
                before = (rows[-1].updated_at, rows[-1].id)
            found[f"{order} {status}"] = pages
    counts = engine.counts(search=search, actor=actor)
    capped = engine.counts(search=search, at_most=5, actor=actor)
    found["counts"] = (dict(counts), counts.complete)
    # past the cap, which of the matches were counted is the database's choice: lower bounds
    assert all(n <= counts[status] for status, n in capped.items())
    found["capped"] = (dict(capped) if capped.complete else sum(capped.values()), capped.complete)
    return found


@pytest.fixture
def pg_claims(pg_url: str, clock: Clock) -> Iterator[tuple[Engine, list[str]]]:
    engine = Engine(pg_url, workflows=[Claim], clock=clock)
    try:
        yield engine, _claims(engine, clock)
    finally:
        engine.close()


@pytest.mark.postgres
def test_the_same_pages_and_counts_with_and_without_the_index(
    pg_url: str, clock: Clock, pg_claims: tuple[Engine, list[str]]
) -> None:
    engine, ids = pg_claims
    lookups = engine.store.pager.lookups
    lookups.probe, lookups.cap = 6, 5  # forty instances take each of the three steps
    searches = [*SEARCHES, ids[3][:5], ids[38][:6]]  # id prefixes
    with_index = {q: _everything(engine, q) for q in searches}
    # a person's search: their own instances first, the trigram index kept out of it
    persons = {q: _everything(engine, q, "boss1") for q in searches[:8]}
    assert lookups.present is True
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text("DROP INDEX ix_signoff_instances_data_trgm"))
    admin.dispose()
    again = Engine(pg_url, workflows=[Claim], clock=clock)
    try:
        without = {q: _everything(again, q) for q in searches}
        persons_without = {q: _everything(again, q, "boss1") for q in searches[:8]}
        assert again.store.pager.lookups.present is False
    finally:
        again.close()
    for q in searches:
        for k in with_index[q]:
            assert (q, k, with_index[q][k]) == (q, k, without[q][k])
    assert persons == persons_without
    assert persons["employee:emp0"]["recent None"] == [[ids[7], ids[4], ids[1]]]
    # and what they found, in a few words
    first = {q: [i for page in f["recent None"] for i in page] for q, f in with_index.items()}
    recent = [r.id for r in engine.list(limit=100)]

    def of(chosen: list[str]) -> list[str]:
        return [i for i in recent if i in chosen]

    assert first["emp07"] == first["employee:emp07"] == [ids[7]]
    assert first["employee:emp3"] == of(ids[30:])
    assert first["employee:emp1"] == of(ids[10:20])
    assert first["employee: emp22 "] == [ids[22]]
    assert first["amount:120"] == of(ids[::4])
    assert first["amount:5"] == of(ids[1::4])
    assert first["flag:true"] == of(ids[::3])
    assert first["x:5"] == first["ab"] == []
    assert first["note"] == recent and len(recent) == 40
    assert first["日本語"] == of(ids[3::4])
    assert first["a%b_c\\"] == first["100%"] == first["Müller"] == of(ids[::4])
    assert first["_"] == of(ids[::4])  # a literal underscore, not any one character
    assert first["'quoted'"] == of(ids[1::4])
    assert first['note:say "hi"'] == of(ids[2::4])
    assert first['note:"say \\"hi\\""'] == []  # the quotes are part of the value
    assert first[ids[3][:5]] == [ids[3]]
    assert first["emp" + "x" * 197] == []
    assert with_index["employee:emp07"]["counts"] == ({"waiting": 1}, True)
    assert with_index["employee:emp1"]["capped"] == (6, False)  # ten match: counted to six


@pytest.mark.postgres
def test_a_search_that_cannot_be_stored_is_refused_either_way(
    pg_claims: tuple[Engine, list[str]],
) -> None:
    engine, _ = pg_claims
    for search in ("a\x00b", "x" * 201):
        with pytest.raises(InvalidData):
            engine.list(search=search)
        with pytest.raises(InvalidData):
            engine.counts(search=search, at_most=10)


def test_counts_stop_at_at_most_and_say_so(any_url: str, clock: Clock) -> None:
    engine = Engine(any_url, workflows=[Claim], clock=clock)
    try:
        ids = _claims(engine, clock)
        common = engine.counts(search="employee:emp", at_most=10)
        assert isinstance(common, Counts)
        assert (common.complete, sum(common.values())) == (False, 11)
        assert all(n <= 34 for s, n in common.items() if s == "waiting")
        assert engine.counts(search="employee:emp") == {"waiting": 34, "cancelled": 6}
        rare = engine.counts(search="employee:emp07", at_most=10)
        assert (rare, rare.complete) == ({"waiting": 1}, True)
        exact = engine.counts(search="employee:emp1", at_most=10)  # ten: all counted
        assert (sum(exact.values()), exact.complete) == (10, True)
        # without a search there is nothing to stop: every instance is counted
        assert engine.counts(at_most=10) == {"waiting": 34, "cancelled": 6}
        assert engine.counts(at_most=10).complete
        assert engine.counts(search=ids[0][:6], at_most=1).complete
        for bad in (0, -1, True, 2.5):
            with pytest.raises(InvalidData, match="at_most"):
                engine.counts(search="emp", at_most=bad)  # type: ignore[arg-type]
    finally:
        engine.close()


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["schema_translate_map", "search_path"])
def test_the_index_is_found_in_the_applications_schema(pg_url: str, clock: Clock, how: str) -> None:
    setup = create_engine(pg_url)
    with setup.begin() as conn:
        conn.execute(text("CREATE SCHEMA apps"))
    setup.dispose()
    if how == "schema_translate_map":
        app = create_engine(pg_url).execution_options(schema_translate_map={None: "apps"})
    else:
        app = create_engine(pg_url, connect_args={"options": "-csearch_path=apps"})
    engine = Engine(app, [Claim], clock=clock)
    try:
        iid = engine.start(Claim, {"employee": "emp4711"})
        assert [r.id for r in engine.list(search="employee:emp4711")] == [iid]
        assert engine.store.pager.lookups.present is True
        with app.connect() as conn:
            where = conn.execute(
                text(
                    "SELECT schemaname FROM pg_indexes "
                    "WHERE indexname = 'ix_signoff_instances_data_trgm'"
                )
            ).scalars()
            assert list(where) == ["apps"]
    finally:
        engine.close()
        app.dispose()


@pytest.fixture
def limited_url(pg_url: str) -> Iterator[str]:
    """The database of `pg_url` as a role that may create tables in it, but not extensions
    (no CREATE on the database): what a managed database's application role often is."""
    role = f"signoff_r_{uuid.uuid4().hex[:10]}"
    name = make_url(pg_url).database
    with psycopg.connect(_pg_conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    with psycopg.connect(_pg_conninfo(name), autocommit=True) as db:
        db.execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"')
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_pg_conninfo(name), autocommit=True) as db:
            db.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(_pg_conninfo(), autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')


@pytest.mark.postgres
def test_without_pg_trgm_the_upgrade_goes_on_and_searches_read_the_rows(
    limited_url: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="signoff.engine.migrations"):
        engine = Engine(limited_url, workflows=[Claim], clock=clock)
    try:
        [line] = [r.getMessage() for r in caplog.records if r.name == "signoff.engine.migrations"]
        assert line.startswith("no trigram index on the instances' data: the pg_trgm extension")
        assert "permission denied" in line
        ids = _claims(engine, clock)
        with engine.store.db.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM signoff_alembic_version"))
            assert version.scalar() == "0015"
            indexes = conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'signoff_instances'")
            ).scalars()
            assert "ix_signoff_instances_data_trgm" not in set(indexes)
        assert [r.id for r in engine.list(search="employee:emp07")] == [ids[7]]
        assert engine.store.pager.lookups.present is False
        capped = engine.counts(search="note", at_most=3)
        assert (sum(capped.values()), capped.complete) == (4, False)
        assert engine.counts(search="employee:emp1") == {"waiting": 8, "cancelled": 2}
    finally:
        engine.close()


def test_counts_read_as_a_plain_mapping() -> None:
    counts = Counts({"waiting": 3}, complete=False)
    assert counts == {"waiting": 3}
    assert repr(counts) == "Counts({'waiting': 3}, complete=False)"
    assert Counts().complete and Counts() == {}
