"""The schema is Alembic's: a database of the first release is upgraded in place and its
instances go on; `signoff db upgrade` is safe to run twice and from several processes at once;
`migrate=False` refuses an outdated schema and says what to run; the application's own engine
and schema are used as they are."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from signoff.engine import (
    AlreadyDecided,
    Approval,
    Decision,
    Engine,
    If,
    On,
    Return,
    S,
    SchemaOutdated,
    Step,
    Timeout,
    Wait,
    Workflow,
    upgrade_database,
)
from signoff.engine.storage.migrate import VERSION_TABLE
from signoff.engine.storage.tables import METADATA
from signoff.web.cli import main
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy import Engine as Database

from tests.conftest import Clock

# What the first release (commit dcd6c33) created, as SQLAlchemy rendered it for each database.
_FIRST_RELEASE_TABLES = """
CREATE TABLE signoff_instances (
    id VARCHAR(100) NOT NULL, workflow VARCHAR(200) NOT NULL, status VARCHAR(20) NOT NULL,
    data TEXT NOT NULL, state TEXT NOT NULL, result TEXT, error TEXT, version INTEGER NOT NULL,
    due_at {ts}, lease_owner VARCHAR(64), lease_until {ts},
    created_at {ts} NOT NULL, updated_at {ts} NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_signoff_instances_recent ON signoff_instances (updated_at, id);
CREATE INDEX ix_signoff_instances_status_recent ON signoff_instances (status, updated_at, id);
CREATE INDEX ix_signoff_instances_due_at ON signoff_instances (due_at);
CREATE INDEX ix_signoff_instances_workflow_recent ON signoff_instances (workflow, updated_at, id);
CREATE TABLE signoff_waits (
    id {serial} NOT NULL, instance_id VARCHAR(100) NOT NULL, thread VARCHAR(200) NOT NULL,
    wait VARCHAR(200) NOT NULL, event VARCHAR(200) NOT NULL, kind VARCHAR(50) NOT NULL,
    began_at {ts} NOT NULL, due_at {ts}, approvers TEXT, title TEXT,
    PRIMARY KEY (id)
);
CREATE INDEX ix_signoff_waits_due_at ON signoff_waits (due_at);
CREATE INDEX ix_signoff_waits_kind ON signoff_waits (kind, began_at);
CREATE INDEX ix_signoff_waits_event ON signoff_waits (instance_id, event);
CREATE TABLE signoff_history (
    id {serial} NOT NULL, instance_id VARCHAR(100) NOT NULL, at {ts} NOT NULL,
    kind VARCHAR(40) NOT NULL, thread VARCHAR(200), name VARCHAR(200), actor VARCHAR(200),
    via VARCHAR(20), message TEXT, detail TEXT,
    PRIMARY KEY (id)
);
CREATE INDEX ix_signoff_history_instance ON signoff_history (instance_id, id)
"""
_TYPES = {
    "sqlite": {"ts": "DATETIME", "serial": "INTEGER"},
    "postgresql": {"ts": "TIMESTAMP WITHOUT TIME ZONE", "serial": "SERIAL"},
}

# An Expense that the first release started, as it stored it: the step ran, and the instance
# waits for an approval by alice, with a three-day timeout.
_FIRST_RELEASE_STATE = (
    '{"threads":{"main":{"id":"main","name":"main","root":null,"status":"waiting",'
    '"at":"approval wait","entry":"at","event":null,"cases":[{"event":"approval",'
    '"kind":"approval","began_at":"2026-01-05T09:00:00Z","stored":null,"setup":"done",'
    '"error":null,"attempts":0,"retry_at":null,"due_at":null,"info":{"title":"Expense",'
    '"text":null,"approvers":["alice"],"escalate_to":null,"slack_channel":null,'
    '"require_reason":true}},{"event":"timeout","kind":"timeout",'
    '"began_at":"2026-01-05T09:00:00Z","stored":null,"setup":"done","error":null,'
    '"attempts":0,"retry_at":null,"due_at":"2026-01-08T09:00:00Z",'
    '"info":{"after_seconds":259200.0}}],"attempts":0,"retry_at":null,"error":null,'
    '"traceback":null}},"teardowns":[],"decided":[]}'
)
_FIRST_RELEASE_ROWS = f"""
INSERT INTO signoff_instances (id, workflow, status, data, state, result, error, version,
    due_at, lease_owner, lease_until, created_at, updated_at)
VALUES ('exp-1', 'Expense', 'waiting', '{{"amount":120,"approved":false,"notified":true}}',
    '{_FIRST_RELEASE_STATE}', NULL, NULL, 3, '2026-01-08 09:00:00.000000', NULL, NULL,
    '2026-01-05 09:00:00.000000', '2026-01-05 09:00:00.000000');
INSERT INTO signoff_waits (instance_id, thread, wait, event, kind, began_at, due_at, approvers,
    title)
VALUES ('exp-1', 'main', 'approval wait', 'approval', 'approval', '2026-01-05 09:00:00.000000',
    NULL, '["alice"]', 'Expense'),
    ('exp-1', 'main', 'approval wait', 'timeout', 'timeout', '2026-01-05 09:00:00.000000',
    '2026-01-08 09:00:00.000000', NULL, NULL);
INSERT INTO signoff_history (instance_id, at, kind, thread, name, actor, via, message, detail)
VALUES ('exp-1', '2026-01-05 09:00:00.000000', 'started', NULL, 'Expense', NULL, 'api', NULL,
    NULL),
    ('exp-1', '2026-01-05 09:00:00.000000', 'step', 'main', 'notify', NULL, NULL, NULL,
    '{{"attempt": 1, "ms": 0.055}}'),
    ('exp-1', '2026-01-05 09:00:00.000000', 'waiting', 'main', 'approval wait', NULL, NULL, NULL,
    '{{"events": ["approval", "timeout"]}}')
"""


class Expense(Workflow):
    """The workflow the first release ran, unchanged since."""

    amount: int = 0
    approved: bool = False
    notified: bool = False

    def definition(self) -> S:
        return S(
            Step("notify", self.notify),
            Wait(
                "approval wait",
                On(
                    "approval",
                    Approval(
                        approve=self.on_approve,
                        deny=self.on_deny,
                        title="Expense",
                        approvers=["alice"],
                    ),
                ),
                On("timeout", Timeout(after=timedelta(days=3)), Return(error="timed out")),
            ),
            If(self.approved, Return(self.amount)),
            Return(error="denied"),
        )

    def notify(self) -> None:
        self.notified = True

    def on_approve(self, decision: Decision) -> None:
        self.approved = True

    def on_deny(self, decision: Decision) -> None:
        self.approved = False


def first_release_database(db: Database, prelude: str = "") -> None:
    """Make in `db` what the first release left: its tables, one instance waiting."""
    types = _TYPES[db.dialect.name]
    script = prelude + _FIRST_RELEASE_TABLES.format(**types) + ";" + _FIRST_RELEASE_ROWS
    with db.begin() as conn:
        for statement in script.split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement)


POSTGRESQL_ONLY = ("ix_signoff_instances_id_prefix", "ix_signoff_instances_data_trgm")


def differences(conn: Connection) -> list[Any]:
    """What the database lacks or has more than the tables the queries are written for."""

    def wanted(item: Any, name: str | None, kind: str, reflected: bool, _: Any) -> bool:
        # the indexes the tables declare for PostgreSQL only (ddl_if), which Alembic compares anyway
        return conn.dialect.name == "postgresql" or name not in POSTGRESQL_ONLY

    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "include_object": wanted}
    )
    return list(compare_metadata(context, METADATA))


def upgrade_command(url: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["db", "upgrade", "--db", url], out=out)
    return code, out.getvalue().strip()


def test_a_first_release_database_is_upgraded_in_place_and_its_instance_continues(
    any_url: str,
) -> None:
    if any_url.startswith("mysql"):
        pytest.skip("MariaDB/MySQL came long after the first release: no such database exists")
    clock = Clock(datetime(2026, 1, 6, 10, 0, tzinfo=UTC))
    old = create_engine(any_url)
    first_release_database(old)
    with old.begin() as conn:  # someone who took part: sent it an event
        conn.execute(
            text(
                "INSERT INTO signoff_history (instance_id, at, kind, actor) "
                "VALUES ('exp-1', '2026-01-05 09:30:00', 'event', 'bob')"
            )
        )
    old.dispose()

    with pytest.raises(SchemaOutdated, match=r"run `signoff db upgrade --db URL`"):
        Engine(any_url, [Expense], clock=clock, migrate=False)

    assert upgrade_command(any_url) == (
        0,
        f"{any_url}: upgraded from schema revision 0001 to 0015",
    )
    assert upgrade_command(any_url) == (0, f"{any_url}: already at schema revision 0015")

    engine = Engine(any_url, [Expense], clock=clock, migrate=False)
    try:
        # who sees it was filled in from what was stored: its approver and who took part
        seen = {who: [i.id for i in engine.list(actor=who)] for who in ("alice", "bob", "carol")}
        assert seen == {"alice": ["exp-1"], "bob": ["exp-1"], "carol": []}
        assert [r["instance_id"] for r in engine.inbox("alice")] == ["exp-1"]
        assert engine.inbox("bob") == []
        [request] = engine.open_approvals()
        # the upgrade gave the old wait row its key, so the inbox's stale-click check works
        assert (request["instance_id"], request["key"]) == ("exp-1", "main:0")
        done = engine.send(
            "exp-1", "approval", {"approved": True}, actor="alice", wait_key=request["key"]
        )
        assert (done.status, done.result) == ("completed", 120)
        assert done.data == {"amount": 120, "approved": True, "notified": True}
        kinds = [h.kind for h in engine.history("exp-1")]
        assert kinds[:3] == ["started", "step", "waiting"]  # the first release's entries
        assert kinds[-1] == "completed"
        with pytest.raises(AlreadyDecided):
            engine.send("exp-1", "approval", {"approved": False}, actor="alice", wait_key="main:0")
        assert engine.open_approvals() == []
    finally:
        engine.close()


def test_the_migrations_make_exactly_the_tables_the_queries_are_written_for(any_url: str) -> None:
    assert upgrade_database(any_url) == (None, "0015")
    db = create_engine(any_url)
    try:
        with db.connect() as conn:
            assert differences(conn) == []
            assert sorted(inspect(conn).get_table_names()) == [
                "signoff_alembic_version",
                "signoff_delegations",
                "signoff_history",
                "signoff_instances",
                "signoff_outbox",
                "signoff_participants",
                "signoff_releases",
                "signoff_seen",
                "signoff_sessions",
                "signoff_spent_keys",
                "signoff_waits",
            ]
    finally:
        db.dispose()


def test_without_migrate_a_fresh_database_is_refused_and_left_untouched(sqlite_url: str) -> None:
    with pytest.raises(SchemaOutdated) as refused:
        Engine(sqlite_url, [Expense], migrate=False)
    assert str(refused.value) == (
        f"the database {sqlite_url} is without signoff's schema; this version of signoff "
        "needs revision 0015: run `signoff db upgrade --db URL` (or construct the Engine "
        "with migrate=True)"
    )
    db = create_engine(sqlite_url)
    assert inspect(db).get_table_names() == []
    db.dispose()


def test_a_database_upgraded_by_a_newer_signoff_is_refused_either_way(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    db = create_engine(sqlite_url)
    with db.begin() as conn:
        conn.execute(text("UPDATE signoff_alembic_version SET version_num = '0099'"))
    db.dispose()
    for migrate in (True, False):
        with pytest.raises(SchemaOutdated, match="revision 0099, which this version of signoff"):
            Engine(sqlite_url, [Expense], migrate=migrate)
    code, _ = upgrade_command(sqlite_url)
    assert code == 1


def test_a_database_made_before_migrations_is_stamped_and_given_only_what_it_lacks(
    any_url: str,
) -> None:
    """Releases between wait_key and Alembic created their tables, index and sessions table
    with create_all: the database is stamped at 0002, and the later revisions add nothing
    that is already there."""
    db = create_engine(any_url)
    METADATA.create_all(db)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO signoff_history (instance_id, at, kind) "
                "VALUES ('x', '2026-01-05 09:00:00', 'started')"
            )
        )
    assert upgrade_database(any_url) == ("0002", "0015")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM signoff_history")).scalar() == 1
        assert differences(conn) == []
    db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["schema_translate_map", "search_path"])
def test_the_applications_engine_and_schema_are_used_as_they_are(pg_url: str, how: str) -> None:
    """An application's engine puts its unqualified tables in schema `apps`: signoff's tables,
    its migrations, its commits and its dashboard queries go there too."""
    setup = create_engine(pg_url)
    with setup.begin() as conn:
        conn.execute(text("CREATE SCHEMA apps"))
    first_release_database(setup, prelude="SET search_path TO apps;\n")
    setup.dispose()
    if how == "schema_translate_map":
        app = create_engine(pg_url).execution_options(schema_translate_map={None: "apps"})
    else:
        app = create_engine(pg_url, connect_args={"options": "-csearch_path=apps"})
    clock = Clock(datetime(2026, 1, 6, 10, 0, tzinfo=UTC))

    engine = Engine(app, [Expense], clock=clock)
    engine.send("exp-1", "approval", {"approved": True}, actor="alice", wait_key="main:0")
    clock.advance(minutes=1)
    iid = engine.start(Expense, {"amount": 7})
    assert engine.statement_counts() == {"Expense": {"approval wait": 1}}
    assert [(s.id, s.status) for s in engine.list()] == [(iid, "waiting"), ("exp-1", "completed")]
    assert engine.counts() == {"waiting": 1, "completed": 1}
    engine.close()  # the application's engine stays open

    again = Engine(app, [Expense], clock=clock, migrate=False)
    again.send(iid, "approval", {"approved": False, "reason": "too dear"}, actor="alice")
    assert again.get(iid).error == "denied"
    again.close()
    with app.connect() as conn:
        where = conn.execute(
            text(
                "SELECT DISTINCT table_schema FROM information_schema.tables "
                "WHERE table_name LIKE 'signoff%'"
            )
        ).scalars()
        assert list(where) == ["apps"]
    app.dispose()


def test_an_applications_sqlite_engine_keeps_its_own_transactions(sqlite_url: str) -> None:
    app = create_engine(sqlite_url)
    with app.begin() as conn:
        conn.execute(text("CREATE TABLE notes (body TEXT)"))
    engine = Engine(app, [Expense])
    iid = engine.start(Expense)
    engine.send(iid, "approval", {"approved": True}, actor="alice")
    assert engine.get(iid).status == "completed"
    engine.close()

    with app.connect() as conn:  # signoff's listeners did not change how the app's work
        conn.execute(text("INSERT INTO notes VALUES ('draft')"))
        conn.rollback()
        assert conn.execute(text("SELECT count(*) FROM notes")).scalar() == 0
    app.dispose()


_START = "import sys; from signoff.engine import Engine; Engine(sys.argv[1]).close(); print('up')"


def start_together(url: str, processes: int) -> list[tuple[int, str]]:
    """Start `processes` Pythons that each construct an Engine on `url` at once."""
    running = [
        subprocess.Popen(
            [sys.executable, "-c", _START, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in running]
    return [(p.returncode, out) for p, out in zip(running, outputs, strict=True)]


@pytest.mark.slow
@pytest.mark.postgres
def test_four_processes_starting_together_on_a_fresh_postgres_database_all_come_up(
    new_pg_database: Callable[[], str],
) -> None:
    # without the migration lock, four processes on a fresh database collide nearly every time
    for _ in range(5):
        url = new_pg_database()
        assert start_together(url, 4) == [(0, "up\n")] * 4
        assert upgrade_database(url) == ("0015", "0015")


@pytest.mark.slow
@pytest.mark.mariadb
def test_four_processes_starting_together_on_a_fresh_mariadb_database_all_come_up(
    new_mariadb_database: Callable[[], str],
) -> None:
    # once, not five times as on PostgreSQL: GET_LOCK is the lock here, and each round is slow
    url = new_mariadb_database()
    assert start_together(url, 4) == [(0, "up\n")] * 4
    assert upgrade_database(url) == ("0015", "0015")
    db = create_engine(url)
    try:
        with db.connect() as conn:
            assert differences(conn) == []
    finally:
        db.dispose()


@pytest.mark.slow
def test_four_processes_starting_together_on_a_fresh_sqlite_file_all_come_up(
    tmp_path: object,
) -> None:
    for n in range(3):
        url = f"sqlite:///{tmp_path}/fresh{n}.db"
        assert start_together(url, 4) == [(0, "up\n")] * 4
        assert upgrade_database(url) == ("0015", "0015")
