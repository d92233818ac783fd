"""SIGTERM under load against real `watchtime serve` processes on loopback.

Client threads rank in a closed loop while the server gets SIGTERM. Every
request sent before the signal must get a ranking, `/readyz`
must stop returning 200, new connections must be refused, and the process
must exit with status 0 within the shutdown timeout.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings

from service_helpers import LOOPBACK, RunningServer, find_free_port, run_server

SHUTDOWN_TIMEOUT_S = 10
CLIENTS = 6
LOAD_START_TIMEOUT_S = 60.0
PROBE_WINDOW_S = 1.5
EXIT_MARGIN_S = 15.0
"""Allowance beyond the shutdown timeout for start of shutdown and process exit."""

LONG_DEADLINE = {"X-Request-Deadline-Ms": "60000"}
"""Header that keeps admission control from rejecting requests of these tests."""


@dataclass(frozen=True)
class Exchange:
    """One request of a client thread and how it ended."""

    started: float
    ended: float
    status: int | None
    error: str | None = None


@pytest.fixture(scope="module")
def rank_body(manifest: dict[str, Any]) -> bytes:
    """Return a 500-candidate body, long enough to keep requests in flight."""
    golden = manifest["golden"][0]["request"]
    features = dict(golden["candidates"][0]["features"])
    features.pop("video_id", None)
    candidates = [{"id": f"v{i}", "features": features} for i in range(500)]
    return json.dumps({"context": golden["context"], "candidates": candidates}).encode()


def rank_in_a_loop(
    base_url: str, body: bytes, stop: threading.Event, exchanges: list[Exchange]
) -> None:
    """Send rankings one after another until `stop` is set or one fails."""
    headers = {"Content-Type": "application/json", **LONG_DEADLINE}
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = client.post("/v1/rank", content=body, headers=headers)
            except httpx.TransportError as error:
                exchanges.append(Exchange(started, time.monotonic(), None, repr(error)))
                return
            exchanges.append(Exchange(started, time.monotonic(), response.status_code))


@dataclass(frozen=True)
class Probe:
    """One call of /readyz on a new connection, as the kubelet makes them."""

    started: float
    outcome: int | str
    """HTTP status, or the name of the transport error."""


def probe_readiness(base_url: str, window_s: float) -> list[Probe]:
    """Call /readyz every 20 ms for `window_s` seconds."""
    probes: list[Probe] = []
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            outcome: int | str = httpx.get(
                base_url + "/readyz", timeout=1.0
            ).status_code
        except httpx.TransportError as error:
            outcome = type(error).__name__
        probes.append(Probe(started, outcome))
        time.sleep(0.02)
    return probes


@dataclass(frozen=True)
class ShutdownRun:
    """What the clients and probes saw around one SIGTERM."""

    workers: int
    signal_at: float
    exit_status: int
    exit_after_s: float
    exchanges: list[Exchange]
    probes: list[Probe]

    def sent_before_signal(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.started < self.signal_at]


def wait_for_exchanges(exchanges: list[Exchange], count: int) -> None:
    """Wait until the clients have `count` responses, so that the load is running."""
    deadline = time.monotonic() + LOAD_START_TIMEOUT_S
    while len(exchanges) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_under_load(server: RunningServer, body: bytes, workers: int) -> ShutdownRun:
    stop = threading.Event()
    exchanges: list[Exchange] = []
    clients = [
        threading.Thread(
            target=rank_in_a_loop, args=(server.base_url, body, stop, exchanges)
        )
        for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    wait_for_exchanges(exchanges, 2 * CLIENTS)

    signal_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    probes = probe_readiness(server.base_url, PROBE_WINDOW_S)
    exit_status = server.process.wait(timeout=SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S)
    exit_after_s = time.monotonic() - signal_at
    stop.set()
    for client in clients:
        client.join(timeout=30)
    return ShutdownRun(workers, signal_at, exit_status, exit_after_s, exchanges, probes)


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def shutdown_run(
    request, model_repository: Path, rank_body: bytes, tmp_path_factory
) -> ShutdownRun:
    """Return what one server with 1 or 2 workers did on SIGTERM under load."""
    workers = request.param
    log_path = tmp_path_factory.mktemp("shutdown") / "server.log"
    arguments = ("--workers", str(workers), "--reload-interval", "0")
    variables = {"WATCHTIME_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S)}
    with run_server(model_repository, log_path, *arguments, **variables) as server:
        return stop_under_load(server, rank_body, workers)


def test_shutdown_answers_every_request_sent_before_the_signal(shutdown_run):
    before = shutdown_run.sent_before_signal()

    failed = [e for e in before if e.status != 200]

    assert len(before) >= CLIENTS
    assert failed == []


def test_shutdown_exits_with_status_zero(shutdown_run):
    assert shutdown_run.exit_status == 0


def test_shutdown_exits_within_the_timeout(shutdown_run):
    assert shutdown_run.exit_after_s < SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S


def test_shutdown_readiness_never_recovers_once_it_fails(shutdown_run):
    outcomes = [probe.outcome for probe in shutdown_run.probes]

    first_failure = next(i for i, o in enumerate(outcomes) if o != 200)

    assert 200 not in outcomes[first_failure:]


def test_readiness_fails_at_once_with_one_worker(shutdown_run):
    # With several workers, uvicorn's supervisor receives the signal and
    # checks for it every 0.5 s before it forwards SIGTERM to the workers.
    if shutdown_run.workers > 1:
        pytest.skip("the supervisor forwards the signal up to 0.5 s later")

    outcomes = [probe.outcome for probe in shutdown_run.probes]

    assert 200 not in outcomes


def test_shutdown_stops_serving_new_connections(shutdown_run):
    # One worker closes the listening socket, so connecting fails. With
    # several, the supervisor keeps it open until it exits, so the kernel
    # still completes connections that no worker will ever read.
    last_outcome = shutdown_run.probes[-1].outcome

    assert last_outcome in ("ConnectError", "ReadTimeout", "ReadError")


def test_shutdown_timeout_cancels_requests_that_outlast_it(
    model_repository, manifest, tmp_path
):
    golden = manifest["golden"][0]["request"]
    candidates = [{"id": f"v{i}"} for i in range(5000)]
    body = json.dumps({"context": golden["context"], "candidates": candidates})
    arguments = ("--reload-interval", "0")
    variables = {"WATCHTIME_SHUTDOWN_TIMEOUT_S": "1", "WATCHTIME_MAX_IN_FLIGHT": "200"}
    statuses: list[object] = []

    def rank_once(base_url: str) -> None:
        headers = {"Content-Type": "application/json", **LONG_DEADLINE}
        try:
            response = httpx.post(
                base_url + "/v1/rank", content=body, headers=headers, timeout=60
            )
            statuses.append(response.status_code)
        except httpx.TransportError as error:
            statuses.append(type(error).__name__)

    with run_server(
        model_repository, tmp_path / "log", *arguments, **variables
    ) as server:
        senders = [
            threading.Thread(target=rank_once, args=(server.base_url,))
            for _ in range(100)
        ]
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        signal_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_status = server.process.wait(timeout=EXIT_MARGIN_S)
        exit_after_s = time.monotonic() - signal_at
        for sender in senders:
            sender.join(timeout=30)
        log = server.log()

    assert exit_status == 0
    assert exit_after_s < 1 + EXIT_MARGIN_S
    assert "timeout graceful shutdown exceeded" in log
    assert 200 in statuses
    assert len(statuses) == 100


async def read_response_head(reader: asyncio.StreamReader) -> bytes:
    """Read one response, and return its status line and headers."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.partition(b":")[2])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


async def probe_with_the_signal(server: uvicorn.Server, port: int) -> list[bytes]:
    """Send /readyz before and right after SIGTERM on one connection."""
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    request = f"GET /readyz HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n\r\n".encode()
    heads = []

    writer.write(request)
    heads.append(await read_response_head(reader))
    signal.raise_signal(signal.SIGTERM)
    writer.write(request)
    heads.append(await read_response_head(reader))

    writer.close()
    await serving
    return heads


def test_readiness_returns_503_after_the_signal(model_repository):
    # A real uvicorn server in this process, whose main thread receives the
    # signal, so that the probe is sure to reach it after the signal and
    # before its listening socket closes.
    port = find_free_port()
    settings = Settings(model_repository=model_repository, reload_interval_s=0)
    config = uvicorn.Config(
        create_app(settings), host=LOOPBACK, port=port, ws="none", log_config=None
    )
    server = uvicorn.Server(config)
    # uvicorn raises the signal again after its shutdown, for the handler it
    # found in place: this one, instead of the default that ends pytest.
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: received.append(signum))
    try:
        heads = asyncio.run(probe_with_the_signal(server, port))
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert heads[0].startswith(b"HTTP/1.1 200")
    assert heads[1].startswith(b"HTTP/1.1 503")
    assert received == [signal.SIGTERM]
