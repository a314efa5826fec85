"""Fixtures of the web tests, loaded with `pytest_plugins = ["web_fixtures"]`: the real app
on a real SQLite file and signed-in clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from signoff.engine import Engine
from signoff.web.examples import UPSTREAM
from web_support import ORIGIN, TRACE, WORKFLOWS, TestClient, make_app, sign_in


@pytest.fixture(autouse=True)
def _fresh_trace() -> Iterator[None]:
    """An empty trace, and the example's flaky warehouse made dependable (tests say when
    it fails, with `UPSTREAM.fail_next`)."""
    TRACE.clear()
    rate, UPSTREAM.failure_rate, UPSTREAM.fail_next = UPSTREAM.failure_rate, 0.0, 0
    yield
    TRACE.clear()
    UPSTREAM.failure_rate, UPSTREAM.fail_next = rate, 0


@pytest.fixture
def engine(tmp_path: Any, clock: Any) -> Iterator[Engine]:
    # alice and bob also operate: these tests are about the pages; who may do what is
    # tests/test_web_authority.py's
    eng = Engine(
        f"sqlite:///{tmp_path}/web.db", workflows=WORKFLOWS, clock=clock, operators=["alice", "bob"]
    )
    yield eng
    eng.close()


@pytest.fixture
def app(engine: Engine) -> Any:
    return make_app(engine)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        yield c


@pytest.fixture
def alice(client: TestClient) -> TestClient:
    client.headers["X-CSRF-Token"] = sign_in(client, "alice")
    client.headers["Origin"] = ORIGIN
    return client
