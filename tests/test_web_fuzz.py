"""The JSON API fuzzed from its own OpenAPI description (Schemathesis) against a real uvicorn on
127.0.0.1: whatever a client sends — odd cursors, page sizes, filters, ids, bodies — the answer
is never a server error. Bounded: a few dozen examples per operation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from signoff.engine import Engine

from tests.test_web_hardening import FLOWS, served
from tests.web_support import TOKENS, make_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

AUTH = {"Authorization": f"Bearer {next(iter(TOKENS))}"}


@pytest.mark.slow
def test_the_api_never_answers_with_a_server_error(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, FLOWS, synchronous="OFF")
    for i in range(3):  # something to find, page through and act on
        engine.start("Trip", {"who": f"person {i}"}, id=f"trip-{i}")
    try:
        with served(make_app(engine)) as base:
            schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
            operations = [result.ok() for result in schema.get_all_operations()]
            assert len(operations) >= 8
            for operation in operations:

                @given(case=operation.as_strategy())
                @settings(
                    max_examples=40,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    derandomize=True,
                    database=None,
                )
                def call(case: Any) -> None:
                    case.call_and_validate(base_url=base, headers=AUTH, checks=[not_a_server_error])

                call()
    finally:
        engine.close()
