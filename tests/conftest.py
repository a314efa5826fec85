"""Shared fixtures: real SQLite files, a fresh PostgreSQL database per test, a movable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

# Where the tests find PostgreSQL: a URL of a role that may create databases. Each test gets a
# fresh database of its own on that server.
PG_ADMIN_URL = os.environ.get(
    "SIGNOFF_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_conninfo(database: str | None = None) -> str:
    """psycopg's form of the admin URL, or of a database on the same server."""
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _pg_url(database: str) -> str:
    """The SQLAlchemy URL of a database on the test server."""
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


class Clock:
    """A clock tests move by hand: `clock.advance(minutes=5)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/signoff.db"


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(_pg_conninfo(), connect_timeout=2):
            return None
    except Exception as exc:
        from sqlalchemy.engine import make_url

        where = make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        return (
            f"PostgreSQL is not reachable at {where} ({type(exc).__name__}: {exc}); "
            "SIGNOFF_TEST_PG sets where to look"
        )


_PG_PROBLEM: str | bool | None = False

NewDatabase = Callable[[], str]


@pytest.fixture
def new_pg_database() -> Iterator[NewDatabase]:
    """Makes fresh, empty PostgreSQL databases (on SIGNOFF_TEST_PG's server); each is dropped
    when the test ends. Skips the test when PostgreSQL is not there."""
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _pg_available()
    if _PG_PROBLEM:
        pytest.skip(str(_PG_PROBLEM))
    import psycopg

    made: list[str] = []

    def new() -> str:
        name = f"signoff_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return _pg_url(name)

    try:
        yield new
    finally:
        with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(new_pg_database: NewDatabase) -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    return new_pg_database()


@pytest.fixture(params=["sqlite", "postgres"])
def any_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Parametrises a test over a SQLite file and a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/signoff.db"
    url: str = request.getfixturevalue("pg_url")
    return url


MakeEngine = Callable[..., object]
