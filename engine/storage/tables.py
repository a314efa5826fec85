"""signoff's tables, as the newest migration leaves them.

`migrations/versions/` is the truth about the schema; these declarations are what the queries
are written against, and a test checks that the migrations produce exactly them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from signoff.engine.storage.migrations import LONG_TEXT, TABLE_OPTIONS
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        kept: TypeEngine[Any] = (
            mysql.DATETIME(fsp=6)  # DATETIME keeps whole seconds there
            if dialect.name in ("mysql", "mariadb")
            else DateTime()
        )
        found: TypeEngine[Any] = dialect.type_descriptor(kept)
        return found

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("signoff stores aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _when(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class InstanceRow(SQLModel, table=True):
    __tablename__ = "signoff_instances"
    __table_args__ = (
        Index("ix_signoff_instances_recent", "updated_at", "id"),
        Index("ix_signoff_instances_status_recent", "status", "updated_at", "id"),
        Index("ix_signoff_instances_workflow_recent", "workflow", "updated_at", "id"),
        # per-status counts of one workflow (the instances list filtered by it), from the index
        Index("ix_signoff_instances_workflow_status", "workflow", "status"),
        TABLE_OPTIONS,
    )

    id: str = Field(sa_column=Column(String(100), primary_key=True))
    workflow: str = Field(sa_column=Column(String(200), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    data: str = Field(sa_column=Column(LONG_TEXT, nullable=False))
    state: str = Field(sa_column=Column(LONG_TEXT, nullable=False))
    result: str | None = Field(default=None, sa_column=Column(LONG_TEXT))
    error: str | None = Field(default=None, sa_column=Column(LONG_TEXT))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    due_at: datetime | None = _when(index=True)
    lease_owner: str | None = Field(default=None, sa_column=Column(String(64)))
    lease_until: datetime | None = _when()
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)


class WaitRow(SQLModel, table=True):
    """One open case of one wait: what waits for which event, and when its timer falls due."""

    __tablename__ = "signoff_waits"
    __table_args__ = (
        Index("ix_signoff_waits_event", "instance_id", "event"),
        # in the page's order with the id and instance: a person's inbox walks it, no row read
        Index("ix_signoff_waits_kind", "kind", "began_at", "id", "instance_id"),
        # the inbox of one workflow, oldest first, without reading the instances
        Index("ix_signoff_waits_kind_workflow", "kind", "workflow", "began_at"),
        TABLE_OPTIONS,
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    instance_id: str = Field(sa_column=Column(String(100), nullable=False))
    thread: str = Field(sa_column=Column(String(200), nullable=False))
    wait: str = Field(sa_column=Column(String(200), nullable=False))
    event: str = Field(sa_column=Column(String(200), nullable=False))
    kind: str = Field(sa_column=Column(String(50), nullable=False))
    began_at: datetime = _when(nullable=False)
    due_at: datetime | None = _when(index=True)
    approvers: str | None = Field(default=None, sa_column=Column(LONG_TEXT))  # JSON list or null
    title: str | None = Field(default=None, sa_column=Column(LONG_TEXT))
    wait_key: str | None = Field(default=None, sa_column=Column(String(250)))  # ThreadState's
    workflow: str | None = Field(default=None, sa_column=Column(String(200)))  # the instance's


class HistoryRow(SQLModel, table=True):
    """The append-only audit trail."""

    __tablename__ = "signoff_history"
    __table_args__ = (
        Index("ix_signoff_history_instance", "instance_id", "id"),
        TABLE_OPTIONS,
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    instance_id: str = Field(sa_column=Column(String(100), nullable=False))
    at: datetime = _when(nullable=False)
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    thread: str | None = Field(default=None, sa_column=Column(String(200)))
    name: str | None = Field(default=None, sa_column=Column(String(200)))
    actor: str | None = Field(default=None, sa_column=Column(String(200)))
    via: str | None = Field(default=None, sa_column=Column(String(20)))
    message: str | None = Field(default=None, sa_column=Column(LONG_TEXT))
    detail: str | None = Field(default=None, sa_column=Column(LONG_TEXT))


INSTANCES = InstanceRow.__table__  # type: ignore[attr-defined]
WAITS = WaitRow.__table__  # type: ignore[attr-defined]
HISTORY = HistoryRow.__table__  # type: ignore[attr-defined]

# Who takes part in which instance, for the lists' "who sees what" (storage/visibility.py) as
# one index range per person: a person who "acted" (their history entries that keep sight of
# it: started, decided, voted, sent an event), and each person an open wait of theirs names
# (role: the wait's kind, "approval" or "input"; person "" when it names nobody, so anyone
# may decide it). Written in the same commit as the history and wait rows it mirrors: acted
# rows stay, a wait's rows are replaced with the waits.
PARTICIPANTS = Table(
    "signoff_participants",
    MetaData(),
    Column("instance_id", String(100), primary_key=True),
    Column("role", String(20), primary_key=True),
    Column("person", String(250), primary_key=True),
    Index("ix_signoff_participants_person", "person", "role", "instance_id"),
    **TABLE_OPTIONS,
)
# PostgreSQL only: its primary key index follows the database's collation, which LIKE cannot use;
# an id prefix search is a LIKE 'prefix%' through this one
ID_PREFIX = Index(
    "ix_signoff_instances_id_prefix", INSTANCES.c.id, postgresql_ops={"id": "text_pattern_ops"}
)
ID_PREFIX.ddl_if(dialect="postgresql")
# PostgreSQL only, and only where the pg_trgm extension is (revision 0015 creates it when it may):
# the trigrams of the data, which an operator's search through the data looks up (pager.py)
DATA_TRIGRAMS = Index(
    "ix_signoff_instances_data_trgm",
    INSTANCES.c.data,
    postgresql_using="gin",
    postgresql_ops={"data": "gin_trgm_ops"},
)


def _has_trigrams(
    ddl: Any,
    target: Any,
    bind: Any,
    tables: Any = None,
    state: Any = None,
    *,
    dialect: Any,
    compiler: Any = None,
    checkfirst: bool = False,
) -> bool:
    """`create_all` makes the trigram index only on PostgreSQL, where pg_trgm is there."""
    if bind is None or dialect.name != "postgresql":
        return False
    found = bind.exec_driver_sql("SELECT 1 FROM pg_opclass WHERE opcname = 'gin_trgm_ops'")
    return found.first() is not None


# Only signoff's tables: SQLModel.metadata is shared with any SQLModel models of the application.
METADATA = MetaData()
for _table in (INSTANCES, WAITS, HISTORY, PARTICIPANTS):
    _table.to_metadata(METADATA)
PARTICIPANTS = METADATA.tables["signoff_participants"]
for _index in METADATA.tables["signoff_instances"].indexes:  # to_metadata leaves ddl_if behind
    if _index.name == DATA_TRIGRAMS.name:
        _index.ddl_if(callable_=_has_trigrams)

# Sign-in sessions: the browser holds a random token, the table only its SHA-256.
SESSIONS = Table(
    "signoff_sessions",
    METADATA,
    Column("id", String(64), primary_key=True),  # sha256 of the token, hex
    Column("user", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_signoff_sessions_user", "user"),
    Index("ix_signoff_sessions_expires", "expires_at"),
    **TABLE_OPTIONS,
)

# Deliveries seen recently (Slack interactions), so a replay is refused in every process; only
# a SHA-256 of each key is kept, until it expires.
SEEN = Table(
    "signoff_seen",
    METADATA,
    Column("id", String(64), primary_key=True),  # sha256 of the key, hex
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_signoff_seen_expires", "expires_at"),
    **TABLE_OPTIONS,
)

# Keys used once (approval links): a second insert of the same key fails, in every process.
SPENT = Table(
    "signoff_spent_keys",
    METADATA,
    Column("id", String(64), primary_key=True),  # sha256 of the key, hex
    Column("spent_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_signoff_spent_keys_expires", "expires_at"),
    **TABLE_OPTIONS,
)

# The releases of each workflow that engines ran on this database (engine/core/releases.py):
# recorded when an engine starts, insert-or-ignore on (workflow, fingerprint); `seq` orders
# them by first recording, `last_seen` is bumped while a process runs the release.
RELEASES = Table(
    "signoff_releases",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("workflow", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("retired_at", UTCDateTime()),
    Column("statements", LONG_TEXT, nullable=False),  # JSON list of names
    Column("renames", LONG_TEXT, nullable=False),  # JSON: new name -> old names, per wait events
    UniqueConstraint("workflow", "fingerprint", name="uq_signoff_releases_workflow_fingerprint"),
    **TABLE_OPTIONS,
)

# "Away until ..., send my requests to ...": set by a user on the dashboard (`Engine.set_delegate`).
DELEGATIONS = Table(
    "signoff_delegations",
    METADATA,
    Column("user", String(200), primary_key=True),
    Column("delegate", String(200), nullable=False),
    Column("until", UTCDateTime(), nullable=False),
    Column("set_at", UTCDateTime(), nullable=False),
    **TABLE_OPTIONS,
)

# The outbox: one row per message to a person outside the dashboard (an email, a Slack message),
# written in the commit that made it due and sent after it (`runtime/outbox.py`). The id is the
# message's idempotency key; `status` is pending, sent, failed (given up) or dropped (its wait
# ended first, or its announcement was never sent).
OUTBOX = Table(
    "signoff_outbox",
    METADATA,
    Column("id", String(64), primary_key=True),
    Column("instance_id", String(100), nullable=False),
    Column("thread", String(200)),
    Column("wait_key", String(250)),
    Column("channel", String(20), nullable=False),
    Column("person", String(200), nullable=False),
    Column("address", String(320), nullable=False),
    Column("what", String(20), nullable=False),
    Column("message", LONG_TEXT, nullable=False),
    Column("asked_by", String(200)),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("error", LONG_TEXT),
    # a Slack reply or edit: the announcement it belongs to (its outbox id)
    Column("parent", String(64)),
    # where a Slack post went once sent ({"channel": ..., "ts": ...}), as JSON
    Column("result", LONG_TEXT),
    # an attempt failed in a way that leaves open whether the service took it (a timeout, a
    # lost answer, a 5xx): the next attempt looks for it before posting again
    Column("maybe_sent", Boolean, nullable=False, server_default=false()),
    Index("ix_signoff_outbox_due", "status", "next_at"),
    Index("ix_signoff_outbox_instance", "instance_id", "created_at"),
    **TABLE_OPTIONS,
)
