"""PostgreSQL: a trigram index on the instances' data (issue 25), so an operator's search for text
in the data or for `field:value` looks its rows up instead of reading every instance. SQLite and
MariaDB/MySQL get nothing: their searches read the rows, under the search time limit.

The index needs the pg_trgm extension. It is created here when it is absent and this role may
(a superuser, or since PostgreSQL 13 anyone with CREATE on the database: pg_trgm is trusted),
inside a savepoint, so a refusal (a managed database, a role that does not own the database)
costs one line in the log and nothing else: searches then read the rows as before. The
operator class is named with the schema the extension lives in, since the application may keep
signoff's tables in a schema of its own (search_path, schema_translate_map).

An index only: a release before this one runs against the new schema as it did. Building it
holds writes to the instances for as long as it takes (about 10-20 s a million instances); to
avoid that on a large database, create it beforehand with CREATE INDEX CONCURRENTLY under this
name (docs/upgrading.md): it is then left as it is. The downgrade drops the index, never the
extension (something else may use it).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import logging

from alembic import op
from signoff.engine.storage.migrations import target_schema
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

revision = "0015"
down_revision: str | None = "0014"
branch_labels = None
depends_on = None

INDEX = "ix_signoff_instances_data_trgm"
log = logging.getLogger("signoff.engine.migrations")


def trigram_schema(conn: Connection) -> str | None:
    """The schema pg_trgm's GIN operator class lives in; None when the extension is absent."""
    found: str | None = conn.execute(
        text(
            "SELECT n.nspname FROM pg_opclass c "
            "JOIN pg_namespace n ON n.oid = c.opcnamespace "
            "JOIN pg_am a ON a.oid = c.opcmethod "
            "WHERE c.opcname = 'gin_trgm_ops' AND a.amname = 'gin' LIMIT 1"
        )
    ).scalar()
    return found


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    schema = trigram_schema(conn)
    if schema is None:
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except DBAPIError as exc:
            problem = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            log.warning(
                "no trigram index on the instances' data: the pg_trgm extension could not be "
                "created (%s); searches through the data read every instance, under the search "
                "time limit; to have it, a superuser creates the extension and the index "
                "(docs/upgrading.md)",
                problem,
            )
            return
        schema = trigram_schema(conn)
        if schema is None:  # created, yet not found: leave the searches as they are
            return
    quoted = conn.dialect.identifier_preparer.quote_schema(schema)
    op.create_index(
        INDEX,
        "signoff_instances",
        ["data"],
        schema=target_schema(),
        postgresql_using="gin",
        postgresql_ops={"data": f"{quoted}.gin_trgm_ops"},
        if_not_exists=True,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(INDEX, table_name="signoff_instances", schema=target_schema(), if_exists=True)
