"""What a database's refusal means, in words a caller can act on: `StorageError`.

A driver's error (sqlite3's, psycopg's, PyMySQL's, or SQLAlchemy's wrapping of one) says what the
database refused in its own terms: "attempt to write a readonly database", "database or disk
is full", SQLSTATE 53100. `reason` turns it into a sentence part naming the database ("the
database file /srv/signoff.db is read-only", "disk full"); `refused` makes the error, saying
whether the change asked for was committed before the database refused.

How much was committed is known where the work is done, not here: the store counts the
commits made on each thread (`CommitCount`), and the engine's door (`guard_storage`) compares
the count before and after a call.
"""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from signoff.engine.errors import StorageError

T = TypeVar("T")

# SQLSTATE classes and codes of PostgreSQL's refusals (psycopg's errors carry `sqlstate`)
_PG_DISK_FULL = "53100"
_PG_OUT_OF_MEMORY = "53200"
_PG_READ_ONLY = "25006"
_PG_CANNOT_CONNECT = "08"  # connection exceptions: refused, lost, ...
_PG_SHUTTING_DOWN = ("57P01", "57P02", "57P03")  # admin or crash shutdown, cannot connect now


def driver_error(exc: BaseException) -> BaseException | None:
    """The driver's own error behind `exc` (SQLAlchemy wraps it), or None when `exc` is not
    a database's refusal."""
    orig = getattr(exc, "orig", None)
    if orig is not None and _is_driver_error(orig):
        return orig  # type: ignore[no-any-return]
    if _is_driver_error(exc):
        return exc
    return None


def _is_driver_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    # psycopg's and PyMySQL's errors, without importing them (they are optional extras)
    module = type(exc).__module__
    if module.startswith("pymysql"):
        return isinstance(exc, Exception) and type(exc).__name__ != "Warning"
    return module.startswith("psycopg") and hasattr(exc, "sqlstate")


def reason(exc: BaseException, url: Any = None) -> str:
    """What the database refused, as words that name it: "disk full", "the database file
    /srv/x.db is read-only", "the database server at db:5432 refused the connection", ...
    `url` is the SQLAlchemy URL of the database (to name its file or server)."""
    orig = driver_error(exc) or exc
    text = _first_line(orig)
    if isinstance(orig, sqlite3.Error):
        return _sqlite_reason(orig, text, url)
    if type(orig).__module__.startswith("pymysql"):
        return _mysql_reason(orig, text, url)
    return _pg_reason(orig, text, url)


def _sqlite_reason(exc: sqlite3.Error, text: str, url: Any) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    path = _sqlite_path(url)
    file = f"the database file {path}" if path else "the database file"
    lowered = text.lower()
    if name.startswith("SQLITE_FULL") or "database or disk is full" in lowered:
        return "disk full"
    if name.startswith("SQLITE_READONLY") or "readonly database" in lowered:
        return f"{file} is read-only"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open database file" in lowered:
        folder = os.path.dirname(path) if path else ""
        if folder and not os.path.isdir(folder):
            return f"{file} cannot be opened: its directory {folder} does not exist"
        return f"{file} cannot be opened: this process may not read or write it or its directory"
    if name.startswith("SQLITE_BUSY") or "database is locked" in lowered:
        return f"{file} is locked by another writer, which held it too long"
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in lowered:
        return f"{file} could not be read or written: {text}"
    if name.startswith("SQLITE_CORRUPT") or "malformed" in lowered:
        return f"{file} is damaged: {text}"
    return text


def _pg_reason(exc: BaseException, text: str, url: Any) -> str:
    state = str(getattr(exc, "sqlstate", "") or "")
    lowered = text.lower()
    if state == _PG_DISK_FULL or "no space left on device" in lowered:
        return "disk full"
    if state == _PG_OUT_OF_MEMORY:
        return "the database server is out of memory"
    if state == _PG_READ_ONLY or "read-only transaction" in lowered:
        return f"the database is read-only (a standby server, or a read-only transaction): {text}"
    server = _server(url)
    if "connection refused" in lowered:
        return f"the database server at {server} refused the connection"
    if state.startswith(_PG_CANNOT_CONNECT) or state in _PG_SHUTTING_DOWN or not state:
        # psycopg's OperationalError on connecting has no SQLSTATE
        return f"the database server at {server} cannot be reached: {text}"
    return text


# MariaDB/MySQL error codes (PyMySQL's errors carry them first in `args`)
_MYSQL_READ_ONLY = (1290, 1792)  # --read-only; a read-only transaction
_MYSQL_FULL = (1021, 1114)  # disk full; the table is full
_MYSQL_OUT_OF_MEMORY = (1037, 1038, 1041)
_MYSQL_CANNOT_CONNECT = (2002, 2003, 2005, 2006, 2013, 2055)  # refused, unknown host, gone, ...
_MYSQL_SHUTTING_DOWN = (1053, 1927)


def _mysql_reason(exc: BaseException, text: str, url: Any) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if len(args) > 1 and isinstance(args[1], str):
        text = args[1].splitlines()[0].strip() or text
    if code in _MYSQL_FULL:
        return "disk full"
    if code in _MYSQL_OUT_OF_MEMORY:
        return "the database server is out of memory"
    if code in _MYSQL_READ_ONLY:
        return f"the database is read-only: {text}"
    server = _server(url)
    if code in _MYSQL_CANNOT_CONNECT or code in _MYSQL_SHUTTING_DOWN:
        if "refused" in text.lower():
            return f"the database server at {server} refused the connection"
        return f"the database server at {server} cannot be reached: {text}"
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _sqlite_path(url: Any) -> str:
    database = str(getattr(url, "database", None) or "")
    if database.startswith("file:"):  # a URI filename (`?uri=true`): file:/srv/x.db?mode=ro
        database = database[len("file:") :].split("?", 1)[0]
    if not database or database == ":memory:":
        return database
    return os.path.abspath(database)


def _server(url: Any) -> str:
    host = getattr(url, "host", None) or "localhost"
    port = getattr(url, "port", None)
    return f"{host}:{port}" if port else str(host)


def refused(exc: BaseException, url: Any, committed: str | None = None) -> StorageError:
    """The error for a database's refusal. `committed` names what was committed before it
    ("the event 'approval'"), or is None when nothing was."""
    why = exc.reason if isinstance(exc, StorageError) else reason(exc, url)
    if committed:
        message = f"{committed} was committed; the database then refused: {why}"
    else:
        message = f"nothing was committed: the database refused: {why}"
    return StorageError(message, committed=committed is not None, reason=why)


class CommitCount:
    """How many commits the store made on the calling thread: a door compares it before and
    after a call to know whether anything of the call was committed."""

    def __init__(self) -> None:
        self._local = threading.local()

    def add(self) -> None:
        local = self._local
        local.n = getattr(local, "n", 0) + 1

    def now(self) -> int:
        return getattr(self._local, "n", 0)


def guard(
    method: Callable[..., T],
    url: Callable[[Any], Any],
    count: Callable[[Any], CommitCount],
    what: Callable[..., str],
) -> Callable[..., T]:
    """`method` of an object whose database refusals come out as `StorageError`: committed
    when the count of commits on this thread moved during the call. `url` and `count` find
    the object's database URL and commit count; `what(*args, **kwargs)` names what a commit
    of this call is ("the event 'approval'")."""

    @functools.wraps(method)
    def guarded(self: Any, /, *args: Any, **kwargs: Any) -> T:
        counter = count(self)
        before = counter.now()
        try:
            return method(self, *args, **kwargs)
        except StorageError as exc:
            moved = counter.now() != before
            if moved == exc.committed:
                raise
            raise refused(exc, None, what(*args, **kwargs) if moved else None) from exc
        except Exception as exc:
            if driver_error(exc) is None:
                raise
            moved = counter.now() != before
            raise refused(exc, url(self), what(*args, **kwargs) if moved else None) from exc

    return guarded


# what a commit of each of the engine's calls is, for "... was committed; the database then
# refused: ..." (a call not named here commits "a change")
COMMITTED_BY: dict[str, str] = {
    "start": "the new instance",
    "send": "the decision",
    "retry": "the retry",
    "cancel": "the cancellation",
    "goto": "the move",
    "run_due": "some of the due work",
    "drain_due": "some of the due work",
    "wake": "some of the due work",
}


def guard_storage(cls: type[T]) -> type[T]:
    """Every public method of `cls` (the engine's door: it has a `store`) raises a database's
    refusal as `StorageError`, saying whether the call committed anything before it."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        noun = COMMITTED_BY.get(name, "a change")
        setattr(
            cls,
            name,
            guard(
                member,
                url=lambda engine: engine.store.db.url,
                count=lambda engine: engine.store.commits,
                what=lambda *_, noun=noun, **__: noun,
            ),
        )
    return cls
