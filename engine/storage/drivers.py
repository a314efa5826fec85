"""What the DB-API drivers under the hot paths differ in: MariaDB/MySQL's error codes and
autocommit switch, the words of a refusal, and a stand-in for an error class a driver lacks."""

from __future__ import annotations

from typing import Any


def is_mysql(db: Any) -> bool:
    """Whether `db` (a SQLAlchemy engine) speaks to MariaDB or MySQL."""
    return db.dialect.name in ("mysql", "mariadb")


# MariaDB/MySQL error codes: a deadlock and a lock wait that timed out roll the transaction back
# whole (it may run again); MariaDB's max_statement_time and MySQL's max_execution_time stop a
# statement that ran too long
MYSQL_RETRY = (1213, 1205)
MYSQL_TOO_SLOW = (1969, 3024)


def mysql_code(exc: BaseException) -> int | None:
    """The error code of a pymysql error, or None."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def set_autocommit(conn: Any, on: bool) -> None:
    """Turn a DB-API connection's autocommit on or off (pymysql's is a method)."""
    if callable(getattr(conn, "autocommit", None)):
        conn.autocommit(on)
    else:
        conn.autocommit = on


def said(exc: BaseException) -> Any:
    """A driver's refusal in words: PyMySQL's errors are (code, message)."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return args[1] if len(args) > 1 and isinstance(args[1], str) else exc


class Never(Exception):
    """Stands for a driver error class the driver does not have."""
