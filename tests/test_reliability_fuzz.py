"""Property-based fuzzing of the OpenAPI document against a real server.

schemathesis generates requests from the server's own /openapi.json, ones
that fit the schema and ones that break it, and sends them to a server on
loopback. No response may be a 5xx, and every response must match the schema
and content type documented for its status. Each test sends
RELIABILITY_FUZZ_EXAMPLES requests (default 50, so 200 in all);
docs/reliability.md records a run with 500, so 2,000 in all.

The tests draw cases with `as_strategy` under a plain `@given`, because the
pytest integration of schemathesis 4.32 (`from_fixture`) reads a pytest
attribute that pytest 9 no longer has.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from service_helpers import RunningServer

pytest_plugins = ["service_fixtures"]

EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "50"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def openapi_schema(server: RunningServer) -> Any:
    """Return the schemathesis schema of the running server."""
    # Without `servers` in the document, requests go to the document's origin.
    return schemathesis.openapi.from_url(server.base_url + "/openapi.json")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def send_generated(cases: st.SearchStrategy, session: requests.Session) -> int:
    """Send EXAMPLES generated cases and check each response; return the count."""
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def send(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(session=session, checks=CHECKS, timeout=30)

    send()
    return sent


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_rank_fuzz_passes_checks(openapi_schema, session, mode):
    cases = openapi_schema["/v1/rank"]["POST"].as_strategy(mode)

    sent = send_generated(cases, session)

    assert sent >= EXAMPLES


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_api_fuzz_passes_checks(openapi_schema, session, mode):
    cases = openapi_schema.as_strategy(mode)

    sent = send_generated(cases, session)

    assert sent >= EXAMPLES
