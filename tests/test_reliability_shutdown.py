"""SIGTERM under load against real `watchtime serve` processes on loopback.

Client threads rank in a closed loop while the server gets SIGTERM. Every
request sent before the signal must get a ranking, `/readyz` and the V2
readiness paths must stop returning 200, new connections must be refused,
and the process must exit with status 0 within the shutdown timeout.
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

from service_helpers import (
    INFER_PATH,
    LOOPBACK,
    RunningServer,
    find_free_port,
    inference_body,
    run_server,
    sample,
    scrape,
)

SHUTDOWN_TIMEOUT_S = 10
CLIENTS = 6
LOAD_START_TIMEOUT_S = 60.0
PROBE_WINDOW_S = 1.5
EXIT_MARGIN_S = 15.0
"""Allowance beyond the shutdown timeout for start of shutdown and process exit."""

LONG_DEADLINE = {"X-Request-Deadline-Ms": "60000"}
"""Header that keeps admission control from rejecting requests of these tests."""

SLOW_INFERENCES = 8
"""5000-row inferences sent together, which 2 ranking threads finish in turn."""

READINESS_PATHS = (
    "/readyz",
    "/v2/health/ready",
    "/v2/models/watchtime/ready",
    "/v2/models/watchtime/versions/1/ready",
)


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
    """One call of a readiness path on a new connection, as the kubelet makes them."""

    started: float
    outcome: int | str
    """HTTP status, or the name of the transport error."""


def probe_readiness(
    base_url: str, window_s: float, path: str = "/readyz"
) -> list[Probe]:
    """Call a readiness path every 20 ms for `window_s` seconds."""
    probes: list[Probe] = []
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            outcome: int | str = httpx.get(base_url + path, timeout=1.0).status_code
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


def infer_once(base_url: str, body: bytes, statuses: list[int | str]) -> None:
    """Send one inference and record its status or transport error."""
    headers = {"Content-Type": "application/json", **LONG_DEADLINE}
    try:
        response = httpx.post(
            base_url + INFER_PATH, content=body, headers=headers, timeout=60
        )
        statuses.append(response.status_code)
    except httpx.TransportError as error:
        statuses.append(type(error).__name__)


def wait_until_admitted(base_url: str, statuses: list[int | str], count: int) -> float:
    """Return the requests in flight once `count` requests are in flight or done.

    Every request is then inside the server, so the shutdown cannot refuse
    its connection.
    """
    deadline = time.monotonic() + LOAD_START_TIMEOUT_S
    with httpx.Client(base_url=base_url) as client:
        while time.monotonic() < deadline:
            in_flight = sample(scrape(client), "watchtime_rankings_in_flight")
            if in_flight + len(statuses) >= count:
                return in_flight
            time.sleep(0.005)
    pytest.fail(f"{count} requests were not admitted in {LOAD_START_TIMEOUT_S} s")


def test_v2_readiness_fails_while_draining(model_repository, manifest, tmp_path):
    body = inference_body(manifest, 5000)
    arguments = ("--reload-interval", "0")
    variables = {"WATCHTIME_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S)}
    statuses: list[int | str] = []

    with run_server(
        model_repository, tmp_path / "log", *arguments, **variables
    ) as server:
        ready_before = httpx.get(server.base_url + "/v2/health/ready").status_code
        senders = [
            threading.Thread(target=infer_once, args=(server.base_url, body, statuses))
            for _ in range(SLOW_INFERENCES)
        ]
        for sender in senders:
            sender.start()
        in_flight = wait_until_admitted(server.base_url, statuses, SLOW_INFERENCES)
        server.process.send_signal(signal.SIGTERM)
        probes = probe_readiness(server.base_url, PROBE_WINDOW_S, "/v2/health/ready")
        exit_status = server.process.wait(timeout=SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S)
        for sender in senders:
            sender.join(timeout=30)

    assert ready_before == 200
    assert in_flight >= 1
    assert 200 not in [probe.outcome for probe in probes]
    assert statuses == [200] * SLOW_INFERENCES
    assert exit_status == 0


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


async def probe_with_the_signal(
    server: uvicorn.Server, port: int, paths: tuple[str, ...]
) -> list[tuple[bytes, bytes]]:
    """Send each path before and right after SIGTERM, each on its own connection.

    Returns the response heads of each path, before and after the signal.
    The requests after the signal are all written before the event loop
    runs again, so they all reach the server before it closes connections.
    """
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    connections = [await asyncio.open_connection(LOOPBACK, port) for _ in paths]
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n\r\n".encode()
        for path in paths
    ]

    before = []
    for (reader, writer), request in zip(connections, requests, strict=True):
        writer.write(request)
        before.append(await read_response_head(reader))
    signal.raise_signal(signal.SIGTERM)
    for (_, writer), request in zip(connections, requests, strict=True):
        writer.write(request)
    after = [await read_response_head(reader) for reader, _ in connections]

    for _, writer in connections:
        writer.close()
    await serving
    return list(zip(before, after, strict=True))


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
        heads = asyncio.run(probe_with_the_signal(server, port, READINESS_PATHS))
    finally:
        signal.signal(signal.SIGTERM, previous)

    before = [head.split(b"\r\n")[0] for head, _ in heads]
    after = [head.split(b"\r\n")[0] for _, head in heads]
    assert before == [b"HTTP/1.1 200 OK"] * len(READINESS_PATHS)
    assert after == [b"HTTP/1.1 503 Service Unavailable"] * len(READINESS_PATHS)
    assert received == [signal.SIGTERM]
