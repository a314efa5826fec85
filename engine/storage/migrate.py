"""Bring a database to signoff's current schema, or say that it is not there.

Alembic runs programmatically: its script location is `migrations/` inside this package, and
it is handed a connection that already holds the migration lock, so processes starting together
on a fresh database queue up instead of racing their CREATE TABLEs. The lock is an advisory
lock on PostgreSQL, the write lock (BEGIN IMMEDIATE) on SQLite and a named lock (GET_LOCK) on
MariaDB/MySQL; it is held from the version check to the commit of the last revision. (MariaDB
commits each DDL statement at once, so there a failed upgrade may leave part of a revision done.)

A database made before signoff had migrations has its tables but no version table: it is
stamped at the revision its columns match, then upgraded like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from signoff.engine.errors import SchemaOutdated
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

VERSION_TABLE = "signoff_alembic_version"
UPGRADE_COMMAND = "signoff db upgrade"
# the pg_advisory_xact_lock key that stands for "signoff's schema" (any fixed bigint would do)
_PG_LOCK_KEY = 0x1E3E_2A4C_6D5B_0F17
# MariaDB/MySQL: the GET_LOCK name that stands for it, and how long to wait for it (seconds)
_MYSQL_LOCK_NAME = "signoff_schema"
LOCK_PATIENCE = 600
_MIGRATIONS = Path(__file__).with_name("migrations")


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(_MIGRATIONS))


def head() -> str:
    """The revision this version of signoff needs."""
    found = _scripts().get_current_head()
    assert found is not None
    return found


def schema_of(db: Engine | Connection) -> str | None:
    """The schema signoff's tables live in: the application's `schema_translate_map` entry for
    unqualified tables, else None (the connection's default schema, or its search_path)."""
    mapping = db.get_execution_options().get("schema_translate_map") or {}
    schema: str | None = mapping.get(None)
    return schema


def current(conn: Connection) -> str | None:
    """The revision the database is at; None when it has no version table."""
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": schema_of(conn)}
    )
    return context.get_current_revision()


def check(db: Engine) -> None:
    """Raise `SchemaOutdated` unless the database is at the revision this signoff needs."""
    with db.connect() as conn:
        found = current(conn)
    if found != head():
        raise SchemaOutdated(_outdated(db, found))


def upgrade(db: Engine) -> tuple[str | None, str]:
    """Take the database to the current schema under the migration lock; harmless when it is
    there already. Returns the revisions before and after (before is None for a database
    without signoff's tables)."""
    target = head()
    with db.connect() as conn:  # the quick answer for the usual case: nothing to do
        found = current(conn)
    if found == target:
        return found, target
    with _locked(db) as conn:
        found = current(conn)  # again: another process may have migrated while we waited
        if found == target:
            return found, target
        if found is not None and found not in _known():
            raise SchemaOutdated(_outdated(db, found))
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        config.attributes["connection"] = conn
        config.attributes["schema"] = schema_of(conn)
        if found is None:
            found = _unversioned_revision(conn)
            if found is not None:
                command.stamp(config, found)
        command.upgrade(config, target)
    return found, target


def _known() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def _unversioned_revision(conn: Connection) -> str | None:
    """The revision that a database made before migrations existed is at, from its columns;
    None when signoff's tables are not there at all."""
    inspector = inspect(conn)
    schema = schema_of(conn)
    if not inspector.has_table("signoff_instances", schema=schema):
        return None
    # what came after 0002 in such releases (an index, the sessions table) is created by its
    # revision only where it is missing
    waits = {c["name"] for c in inspector.get_columns("signoff_waits", schema=schema)}
    return "0002" if "wait_key" in waits else "0001"


@contextmanager
def _locked(db: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that holds signoff's migration lock until it ends."""
    # On SQLite the store's "begin" listener turns a write connection's BEGIN into BEGIN
    # IMMEDIATE, which takes the database's write lock up front.
    with db.connect().execution_options(signoff_write=True) as conn:
        if db.dialect.name in ("mysql", "mariadb"):
            # a named lock of the session (DDL commits at once there: no transaction holds it)
            got = conn.execute(
                text("SELECT GET_LOCK(:name, :wait)"),
                {"name": _MYSQL_LOCK_NAME, "wait": LOCK_PATIENCE},
            ).scalar()
            conn.commit()
            if got != 1:
                raise SchemaOutdated(
                    f"the migration lock ({_MYSQL_LOCK_NAME}) was not free within "
                    f"{LOCK_PATIENCE} s: another process is upgrading the schema, or stuck"
                )
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK_NAME})
                conn.commit()
            return
        with conn.begin():
            if db.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield conn


def _outdated(db: Engine, found: str | None) -> str:
    where = db.url.render_as_string(hide_password=True)
    if found is not None and found not in _known():
        return (
            f"the database {where} is at schema revision {found}, which this version of signoff "
            f"does not know (it needs {head()}): it was upgraded by a newer signoff"
        )
    have = f"at schema revision {found}" if found else "without signoff's schema"
    return (
        f"the database {where} is {have}; this version of signoff needs revision {head()}: "
        f"run `{UPGRADE_COMMAND} --db URL` (or construct the Engine with migrate=True)"
    )
