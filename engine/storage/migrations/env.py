"""Alembic's entry point: runs the revisions on the connection that `migrate.py` passes in.

The connection arrives in `config.attributes["connection"]`, already inside the transaction
that holds the migration lock, so every revision and the version stamp commit together.
"""

from __future__ import annotations

from alembic import context
from signoff.engine.storage.migrate import VERSION_TABLE
from signoff.engine.storage.tables import METADATA

if context.is_offline_mode():
    raise RuntimeError("signoff's migrations run online only: use `signoff db upgrade`")

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=METADATA,
    version_table=VERSION_TABLE,
    version_table_schema=context.config.attributes.get("schema"),
)
with context.begin_transaction():
    context.run_migrations()
