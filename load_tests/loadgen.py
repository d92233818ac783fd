"""Open-loop HTTP load generator over a pool of keep-alive connections.

Requests are scheduled at a constant rate, `start + i / rate`, whatever the
responses do, and each latency is measured from its scheduled time with
`time.perf_counter`, because uvloop's `loop.time()` is cached per loop
iteration and has millisecond resolution. A server
that stalls therefore shows in the latency tail, instead of slowing the
sender down and hiding the stall (coordinated omission). When every
connection is busy, a scheduled request waits in a queue and that wait counts
in its latency. A request still unanswered `timeout_s` after its scheduled
time counts as a timeout, and is dropped unsent if its deadline passed while
it waited.

The generator is cheap because the request bytes, head and body, are built
once, and each exchange is one write and two reads on an asyncio stream. It
runs in its own process (`python -m load_tests.loadgen`): the first line of
standard input is its configuration, each further line one step to run, and
it writes one JSON line per step to standard output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from load_tests.bodies import RequestBody, build_bodies, parse_mix

START_LEAD_S = 0.05
"""Delay from the start of a step to its first scheduled request."""

PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}

logger = logging.getLogger(__name__)


class ProtocolError(Exception):
    """A response that is not valid HTTP/1.1 as this client reads it."""


@dataclass(frozen=True)
class StepPlan:
    """Constant offered rate for a bounded time."""

    rate: float
    """Requests per second."""
    duration_s: float
    timeout_s: float
    mix: str = ""
    """Label of the candidate mix whose bodies are sent."""


@dataclass
class StepRecorder:
    """Outcome of every request of one step, in completion order."""

    start: float
    latencies_s: list[float] = field(default_factory=list)
    send_lags_s: list[float] = field(default_factory=list)
    candidates: int = 0
    last_done: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    connection_errors: int = 0

    def record_response(
        self, scheduled: float, sent: float, done: float, status: int, candidates: int
    ) -> None:
        """Record a response; only 2xx responses count as successes."""
        self.send_lags_s.append(sent - scheduled)
        self.last_done = max(self.last_done, done)
        if 200 <= status < 300:
            self.latencies_s.append(done - scheduled)
            self.candidates += candidates
        else:
            self.statuses[status] = self.statuses.get(status, 0) + 1


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """Return the bytes of one keep-alive HTTP/1.1 POST with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def parse_head(head: bytes) -> tuple[int, int | None, bool]:
    """Return the status, the Content-Length (None if chunked) and keep-alive.

    Raises ProtocolError when the status line or the framing is missing.
    """
    if not head.startswith(b"HTTP/1.1 ") or len(head) < 12:
        raise ProtocolError(f"unexpected status line {head[:40]!r}")
    status = int(head[9:12])
    headers = head.lower()
    keep_alive = b"\r\nconnection: close" not in headers
    if b"\r\ntransfer-encoding: chunked" in headers:
        return status, None, keep_alive

    start = headers.find(b"\r\ncontent-length:")
    if start < 0:
        raise ProtocolError("the response has neither Content-Length nor chunks")
    end = headers.index(b"\r\n", start + 2)
    return status, int(headers[start + 17 : end]), keep_alive


class HttpConnection:
    """One keep-alive connection that exchanges one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect unless the connection is open, and return its streams."""
        if self._reader is not None and self._reader.at_eof():
            # The server closed the idle connection, as uvicorn does after
            # its keep-alive timeout of 5 s.
            self.close()
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port
            )
        return self._reader, self._writer

    async def exchange(self, request: bytes) -> int:
        """Send one request, read its whole response and return the status.

        When a kept-alive connection closes before any response byte, the
        request is sent once more on a new connection, as HTTP clients do,
        because a ranking request is safe to repeat.
        """
        reused = self._writer is not None
        try:
            return await self._exchange_once(request)
        except (ConnectionError, asyncio.IncompleteReadError) as error:
            unanswered = not getattr(error, "partial", b"")
            if not (reused and unanswered):
                raise
        self.close()
        return await self._exchange_once(request)

    async def _exchange_once(self, request: bytes) -> int:
        reader, writer = await self.open()
        writer.write(request)
        await writer.drain()

        head = await reader.readuntil(b"\r\n\r\n")
        status, length, keep_alive = parse_head(head)
        if length is None:
            await _skip_chunks(reader)
        else:
            await reader.readexactly(length)
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        """Drop the connection; the next exchange opens a new one."""
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None


class LoadGenerator:
    """Sends pre-built requests to one server on a fixed schedule."""

    def __init__(
        self,
        host: str,
        port: int,
        connections: int,
        requests: dict[str, Sequence[tuple[bytes, int]]],
    ) -> None:
        self.requests = requests
        self.connections = [HttpConnection(host, port) for _ in range(connections)]

    async def open(self) -> None:
        """Open every connection, so that no step pays for connecting."""
        await asyncio.gather(*(connection.open() for connection in self.connections))

    def close(self) -> None:
        """Close every connection."""
        for connection in self.connections:
            connection.close()

    async def run_step(self, plan: StepPlan) -> dict[str, Any]:
        """Offer `plan.rate` requests per second for `plan.duration_s` seconds."""
        queue: asyncio.Queue[tuple[float, int]] = asyncio.Queue()
        recorder = StepRecorder(start=time.perf_counter() + START_LEAD_S)
        usage_before = _cpu_seconds()
        wall_before = time.perf_counter()

        senders = [
            asyncio.create_task(self._send_queued(c, queue, recorder, plan))
            for c in self.connections
        ]
        count = max(1, round(plan.rate * plan.duration_s))
        await _schedule(queue, recorder.start, plan.rate, count)
        await queue.join()
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

        cpu_cores = (_cpu_seconds() - usage_before) / (
            time.perf_counter() - wall_before
        )
        return summarise_step(plan, recorder, count, cpu_cores)

    async def _send_queued(
        self,
        connection: HttpConnection,
        queue: asyncio.Queue[tuple[float, int]],
        recorder: StepRecorder,
        plan: StepPlan,
    ) -> None:
        requests = self.requests[plan.mix]
        while True:
            scheduled, index = await queue.get()
            request, candidates = requests[index % len(requests)]
            # task_done runs even if sending raises, so the step's join ends.
            try:
                await self._send_one(
                    connection, request, candidates, scheduled, recorder, plan
                )
            finally:
                queue.task_done()

    async def _send_one(
        self,
        connection: HttpConnection,
        request: bytes,
        candidates: int,
        scheduled: float,
        recorder: StepRecorder,
        plan: StepPlan,
    ) -> None:
        sent = time.perf_counter()
        remaining_s = scheduled + plan.timeout_s - sent
        if remaining_s <= 0:
            recorder.timeouts += 1
            return

        try:
            async with asyncio.timeout(remaining_s):
                status = await connection.exchange(request)
        except TimeoutError:
            recorder.timeouts += 1
            connection.close()
            return
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ProtocolError,
            ValueError,
        ) as error:
            logger.debug("connection error: %r", error)
            recorder.connection_errors += 1
            connection.close()
            return
        recorder.record_response(
            scheduled, sent, time.perf_counter(), status, candidates
        )


async def _skip_chunks(reader: asyncio.StreamReader) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


async def _schedule(
    queue: asyncio.Queue[tuple[float, int]], start: float, rate: float, count: int
) -> None:
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, index))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """Return p50 to p99.9 and the maximum of latencies, in milliseconds."""
    if not values_s:
        return {name: None for name in [*PERCENTILES, "max"]}
    values = np.asarray(values_s) * 1000.0
    result: dict[str, float | None] = {
        name: round(float(np.percentile(values, q)), 3)
        for name, q in PERCENTILES.items()
    }
    result["max"] = round(float(values.max()), 3)
    return result


def summarise_step(
    plan: StepPlan, recorder: StepRecorder, count: int, cpu_cores: float
) -> dict[str, Any]:
    """Return the throughput, latency and error counts of one finished step.

    Throughput divides the successes by the step's duration, or by the time
    to the last response when that is longer, so a server that falls behind
    achieves less than the offered rate.
    """
    window_s = max(plan.duration_s, recorder.last_done - recorder.start)
    ok = len(recorder.latencies_s)
    non_2xx = sum(recorder.statuses.values())
    return {
        "mix": plan.mix,
        "offered_rate": plan.rate,
        "duration_s": plan.duration_s,
        "scheduled": count,
        "ok": ok,
        "non_2xx": non_2xx,
        "statuses": {str(k): v for k, v in sorted(recorder.statuses.items())},
        "timeouts": recorder.timeouts,
        "connection_errors": recorder.connection_errors,
        "errors": non_2xx + recorder.timeouts + recorder.connection_errors,
        "achieved_rate": round(ok / window_s, 3),
        "candidates_per_s": round(recorder.candidates / window_s, 1),
        "latency_ms": percentiles_ms(recorder.latencies_s),
        "send_lag_ms": percentiles_ms(recorder.send_lags_s),
        "generator_cpu_cores": round(cpu_cores, 3),
    }


def prepare_requests(config: dict[str, Any]) -> dict[str, list[tuple[bytes, int]]]:
    """Build the request bytes of every candidate mix named in the configuration."""
    requests = {}
    for label in config["mixes"]:
        bodies: list[RequestBody] = build_bodies(
            config["features"], parse_mix(label), config["bodies"], config["seed"]
        )
        requests[label] = [
            (
                build_request(
                    config["host"], config["port"], config["path"], b.content
                ),
                b.candidates,
            )
            for b in bodies
        ]
    return requests


async def serve_steps() -> None:
    """Read the configuration, then run each step read and write its result."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    config = json.loads(await reader.readline())
    generator = LoadGenerator(
        config["host"], config["port"], config["connections"], prepare_requests(config)
    )
    await generator.open()
    _write_line({"ready": True, "event_loop": type(loop).__module__})

    while line := await reader.readline():
        result = await generator.run_step(StepPlan(**json.loads(line)))
        _write_line(result)
    generator.close()


def _write_line(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a uvloop event loop when uvloop is installed, else asyncio's.

    uvicorn[standard] installs uvloop. Each step reports the generator's CPU
    use, whichever loop runs.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> int:
    """Run steps read from standard input until it ends."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve_steps())
    return 0


if __name__ == "__main__":
    sys.exit(main())
