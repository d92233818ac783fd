"""Admission control of V2 inferences, shared with `/v1/rank`.

The server is a real `watchtime serve` process with one ranking thread and
at most 4 requests in flight, so that a burst of 5000-row inferences fills
both the queue and the cap. Rejections must be 429 with Retry-After in the
protocol's error body, and counted like those of `/v1/rank`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from app.admission import WARMUP_RANKINGS, AdmissionController
from app.errors import Overloaded

from service_helpers import (
    INFER_PATH,
    RunningServer,
    inference_body,
    run_server,
    sample,
    scrape,
)

ROWS = 5000
BURST = 12
MAX_IN_FLIGHT = 4
LONG_DEADLINE = {"X-Request-Deadline-Ms": "60000"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def capped_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Return a server with one ranking thread and 4 requests in flight at most."""
    log_path = tmp_path_factory.mktemp("v2-admission") / "server.log"
    variables = {
        "WATCHTIME_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
        "WATCHTIME_RANKING_THREADS": "1",
    }
    with run_server(
        model_repository, log_path, "--reload-interval", "0", **variables
    ) as server:
        yield server


@pytest.fixture(scope="module")
def large_body(manifest: dict[str, Any]) -> bytes:
    return inference_body(manifest, ROWS)


def send_together(
    base_url: str, body: bytes, headers: dict[str, str], count: int
) -> list[httpx.Response]:
    """Send `count` inferences at once, each on its own connection."""

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            calls = [
                client.post(INFER_PATH, content=body, headers={**JSON, **headers})
                for _ in range(count)
            ]
            return await asyncio.gather(*calls)

    return asyncio.run(send())


def count_overload_rejections(server: RunningServer) -> float:
    with httpx.Client(base_url=server.base_url) as client:
        samples = scrape(client)
    return sample(samples, "watchtime_rejected_requests_total", reason="overload")


@dataclass(frozen=True)
class Burst:
    """Responses to a burst of inferences, and the rejections the server counted."""

    responses: list[httpx.Response]
    counted: float

    def statuses(self) -> list[int]:
        return [response.status_code for response in self.responses]

    def rejected(self) -> list[httpx.Response]:
        return [r for r in self.responses if r.status_code == 429]


@pytest.fixture(scope="module")
def capped_burst(capped_server: RunningServer, large_body: bytes) -> Burst:
    """Return a burst of 12 patient inferences against the cap of 4 in flight."""
    before = count_overload_rejections(capped_server)
    responses = send_together(capped_server.base_url, large_body, LONG_DEADLINE, BURST)
    counted = count_overload_rejections(capped_server) - before
    return Burst(responses, counted)


def test_infer_burst_is_answered_or_rejected(capped_burst):
    statuses = capped_burst.statuses()

    assert set(statuses) == {200, 429}


def test_infer_beyond_cap_names_setting(capped_burst):
    messages = [response.json()["error"] for response in capped_burst.rejected()]

    assert any("WATCHTIME_MAX_IN_FLIGHT" in message for message in messages)


def test_infer_rejection_has_protocol_body(capped_burst):
    rejected = capped_burst.rejected()[0]

    assert list(rejected.json()) == ["error"]
    assert isinstance(rejected.json()["error"], str)


def test_infer_rejection_carries_retry_after(capped_burst):
    retry_after = [r.headers.get("Retry-After", "") for r in capped_burst.rejected()]

    assert all(value.isdigit() for value in retry_after)


def test_infer_rejections_are_counted_as_overload(capped_burst):
    rejected = len(capped_burst.rejected())

    assert capped_burst.counted == rejected


def test_infer_past_deadline_gets_429(capped_server, large_body):
    url = capped_server.base_url
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(WARMUP_RANKINGS):
            client.post(INFER_PATH, content=large_body, headers=JSON)
    hurried = {"X-Request-Deadline-Ms": "1"}

    responses = send_together(url, large_body, hurried, MAX_IN_FLIGHT)

    messages = [r.json()["error"] for r in responses if r.status_code == 429]
    assert any("X-Request-Deadline-Ms" in message for message in messages)


@pytest.mark.parametrize("header", ["0", "-5", "soon", "nan", "inf", "600001"])
def test_infer_rejects_an_invalid_deadline_header(capped_server, manifest, header):
    body = inference_body(manifest, 2)

    response = httpx.post(
        capped_server.base_url + INFER_PATH,
        content=body,
        headers={**JSON, "X-Request-Deadline-Ms": header},
    )

    message = response.json()["error"]
    assert response.status_code == 400
    assert "X-Request-Deadline-Ms" in message
    assert repr(header) in message


def test_rank_and_infer_share_cap():
    admission = AdmissionController(concurrency=1, max_in_flight=2)
    deadline = time.monotonic() + 60
    admission.admit(1000, deadline, "rank")
    admission.admit(1000, deadline, "v2_infer")

    with pytest.raises(Overloaded):
        admission.admit(1000, deadline, "rank")


def test_infer_trains_own_estimator():
    admission = AdmissionController(concurrency=1, max_in_flight=2)

    async def infer() -> None:
        ticket = admission.admit(1000, time.monotonic() + 60, "v2_infer")
        await admission.run(ticket, lambda: None)

    anyio.run(infer)

    assert admission.estimators["v2_infer"].count == 1
    assert admission.estimators["rank"].count == 0
