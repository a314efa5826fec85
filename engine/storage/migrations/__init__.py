"""signoff's Alembic migrations: `versions/` holds one revision per change of the schema.

They run only through `signoff.engine.storage.migrate` (on `Engine(..., migrate=True)` and
`signoff db upgrade`), which hands Alembic the connection; there is no alembic.ini.

To add a revision: write `versions/vN_what.py` by hand with `down_revision` the previous head,
change `tables.py` to match, and run `tests/test_migrations.py` (it checks the two agree).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql

# MariaDB and MySQL: TEXT holds 64 KiB and DATETIME whole seconds, and a table's default collation
# compares text without case. Signoff's text columns hold any size, its times microseconds, and
# its names compare as written (`ABC` is not `abc`), in utf8mb4 (emoji included).
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
WHEN = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def target_schema() -> str | None:
    """The schema a revision writes in: the application's `schema_translate_map` entry for
    unqualified tables (Alembic's ALTERs do not go through that map), else None."""
    schema: str | None = context.config.attributes.get("schema")
    return schema


def index_if_missing() -> bool:
    """`if_not_exists` for a CREATE INDEX of a table an older release may have made already.
    MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB has); there the revisions made every table,
    so the index is never there already."""
    dialect = op.get_bind().dialect
    return dialect.name not in ("mysql", "mariadb") or bool(getattr(dialect, "is_mariadb", False))
