"""Open-loop load generator against a slow HTTP server on loopback.

The server responds to one request at a time per connection after a fixed
delay, so with one connection the generator's requests queue, and their
latencies must count that wait from their scheduled send times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from load_tests.loadgen import (
    LoadGenerator,
    ProtocolError,
    StepPlan,
    build_request,
    parse_head,
)
from load_tests.servers import find_free_port, run_server, sink_spec

SERVICE_TIME_S = 0.1
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


async def _respond_slowly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(SERVICE_TIME_S)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def slow_server() -> AsyncIterator[int]:
    """Serve on a free loopback port, responding to each request after 100 ms.

    At exit it waits for the connection handlers, which end when the client
    has closed its connections, so that no socket outlives the event loop.
    """
    handlers: set[asyncio.Task[None]] = set()

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        await _respond_slowly(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
    await asyncio.wait_for(asyncio.gather(*handlers), timeout=5.0)


def run_step_against_slow_server(plan: StepPlan, connections: int) -> dict[str, Any]:
    """Run one step of the generator against a fresh slow server."""

    async def run() -> dict[str, Any]:
        async with slow_server() as port:
            request = build_request("127.0.0.1", port, "/v1/rank", b"{}")
            generator = LoadGenerator(
                "127.0.0.1", port, connections, {"": [(request, 10)]}
            )
            await generator.open()
            try:
                return await generator.run_step(plan)
            finally:
                generator.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def queued_step() -> dict[str, Any]:
    """Return 10 requests at 20 req/s through one connection to a 100 ms server."""
    return run_step_against_slow_server(StepPlan(20.0, 0.5, 5.0), connections=1)


def test_step_latency_includes_queueing_time(queued_step):
    # The 10th request is scheduled at 450 ms and completes after 10 services.
    expected_min_ms = 10 * SERVICE_TIME_S * 1000 - 450 - 20

    max_latency_ms = queued_step["latency_ms"]["max"]

    assert max_latency_ms >= expected_min_ms


def test_step_median_latency_exceeds_service_time(queued_step):
    median_ms = queued_step["latency_ms"]["p50"]

    assert median_ms >= 2 * SERVICE_TIME_S * 1000


def test_step_send_lag_shows_wait_for_connection(queued_step):
    max_lag_ms = queued_step["send_lag_ms"]["max"]

    assert max_lag_ms >= 300


def test_step_counts_every_scheduled_request(queued_step):
    ok = queued_step["ok"]

    assert ok == 10


def test_slow_server_lowers_achieved_rate(queued_step):
    achieved = queued_step["achieved_rate"]

    assert achieved < 0.99 * queued_step["offered_rate"]


def test_step_with_enough_connections_has_no_queueing():
    plan = StepPlan(20.0, 0.5, 5.0)

    step = run_step_against_slow_server(plan, connections=8)

    assert step["latency_ms"]["max"] < 3 * SERVICE_TIME_S * 1000


def test_step_counts_requests_past_their_deadline_as_timeouts():
    plan = StepPlan(20.0, 0.5, 0.25)

    step = run_step_against_slow_server(plan, connections=1)

    assert step["timeouts"] > 0
    assert step["errors"] == step["timeouts"]


def test_parse_head_reads_status_and_content_length():
    head = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 17\r\n\r\n"

    status, length, keep_alive = parse_head(head)

    assert status == 422
    assert length == 17
    assert keep_alive


def test_parse_head_marks_chunked_body_and_close():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"

    _, length, keep_alive = parse_head(head)

    assert length is None
    assert not keep_alive


def test_parse_head_rejects_unframed_response():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"

    with pytest.raises(ProtocolError):
        parse_head(head)


def test_sink_completes_every_generated_request(tmp_path):
    port = find_free_port()
    plan = StepPlan(50.0, 0.5, 5.0)

    with run_server(sink_spec("sink", port), port, tmp_path / "sink.log"):
        step = asyncio.run(_run_one_step(port, plan))

    assert step["ok"] == step["scheduled"]


async def _run_one_step(port: int, plan: StepPlan) -> dict[str, Any]:
    request = build_request("127.0.0.1", port, "/v1/rank", b'{"candidates": []}')
    generator = LoadGenerator("127.0.0.1", port, 4, {"": [(request, 0)]})
    await generator.open()
    try:
        return await generator.run_step(plan)
    finally:
        generator.close()
