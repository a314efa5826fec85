"""Shared fixtures: real SQLite files, a fresh PostgreSQL or MariaDB database per test, a movable
clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


# Where the tests find MariaDB (or MySQL): a URL of a user that may create databases. Each test
# gets a fresh database of its own on that server.
MARIADB_ADMIN_URL = os.environ.get(
    "SIGNOFF_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"
)


def _mariadb_connect(timeout: int = 5) -> object:
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(MARIADB_ADMIN_URL)
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        connect_timeout=timeout,
        autocommit=True,
    )


def _mariadb_available() -> str | None:
    try:
        _mariadb_connect(timeout=2).close()  # type: ignore[attr-defined]
        return None
    except Exception as exc:
        from sqlalchemy.engine import make_url

        where = make_url(MARIADB_ADMIN_URL).render_as_string(hide_password=True)
        return (
            f"MariaDB is not reachable at {where} ({type(exc).__name__}: {exc}); "
            "SIGNOFF_TEST_MARIADB sets where to look"
        )


_MARIADB_PROBLEM: str | bool | None = False


@pytest.fixture
def new_mariadb_database() -> Iterator[NewDatabase]:
    """Makes fresh, empty MariaDB databases (on SIGNOFF_TEST_MARIADB's server); each is dropped
    when the test ends. Skips the test when MariaDB is not there."""
    global _MARIADB_PROBLEM
    if _MARIADB_PROBLEM is False:
        _MARIADB_PROBLEM = _mariadb_available()
    if _MARIADB_PROBLEM:
        pytest.skip(str(_MARIADB_PROBLEM))
    from sqlalchemy.engine import make_url

    made: list[str] = []

    def new() -> str:
        name = f"signoff_t_{uuid.uuid4().hex[:12]}"
        conn: Any = _mariadb_connect()
        try:
            conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        made.append(name)
        url = make_url(MARIADB_ADMIN_URL).set(database=name)
        return url.render_as_string(hide_password=False)

    try:
        yield new
    finally:
        if made:
            conn: Any = _mariadb_connect()
            try:
                for name in made:
                    conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
            finally:
                conn.close()


@pytest.fixture
def mariadb_url(new_mariadb_database: NewDatabase) -> str:
    """A fresh, empty MariaDB database for one test, dropped afterwards."""
    return new_mariadb_database()


# MariaDB runs the suites whose SQL differs from one database to another: storage, commits,
# timers, several writers, migrations, lists and search, who sees what, the outbox, releases.
# Stories told above the storage layer run on SQLite and PostgreSQL: the suite stays under ten
# minutes on two cores.
ON_MARIADB = {
    "test_commits",
    "test_corrupt",
    "test_lookup",
    "test_mail",
    "test_metrics",
    "test_migrations",
    "test_recent",
    "test_releases",
    "test_scheduler",
    "test_search_compare",
    "test_storage_input",
    "test_store",
    "test_visibility",
}


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def any_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Parametrises a test over a SQLite file, a PostgreSQL and a MariaDB database."""
    if request.param == "mariadb" and request.module.__name__.rsplit(".", 1)[-1] not in ON_MARIADB:
        pytest.skip("a story above the storage layer: told on SQLite and PostgreSQL (conftest)")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/signoff.db"
    url: str = request.getfixturevalue("pg_url" if request.param == "postgres" else "mariadb_url")
    return url


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on a server that several processes share: PostgreSQL, then MariaDB."""
    url: str = request.getfixturevalue("pg_url" if request.param == "postgres" else "mariadb_url")
    return url


MakeEngine = Callable[..., object]


# --- the browser tests' Chromium and screenshots (test_web_dashboard_browser, triage) --------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module; skips, saying why, without."""
    from test_web_browser import CHROMIUM_ARGS, _chromium

    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: SIGNOFF_SCREENSHOTS when set, else the test's own folder."""
    chosen = os.environ.get("SIGNOFF_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
