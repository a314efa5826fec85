"""signoff's Alembic migrations: `versions/` holds one revision per change of the schema.

They run only through `signoff.engine.storage.migrate` (on `Engine(..., migrate=True)` and
`signoff db upgrade`), which hands Alembic the connection; there is no alembic.ini.

To add a revision: write `versions/vN_what.py` by hand with `down_revision` the previous head,
change `tables.py` to match, and run `tests/test_migrations.py` (it checks the two agree).
"""

from __future__ import annotations

from alembic import context


def target_schema() -> str | None:
    """The schema a revision writes in: the application's `schema_translate_map` entry for
    unqualified tables (Alembic's ALTERs do not go through that map), else None."""
    schema: str | None = context.config.attributes.get("schema")
    return schema
