"""A small open-loop HTTP/1.1 load generator for tests against a loopback server.

Requests are sent on a fixed schedule whatever the server does, each on an
idle keep-alive connection of a pool that grows up to `max_connections`, and
latency counts from the scheduled time. So a server that falls behind shows
long latencies instead of slowing the generator down. Every request ends as a
response, a timeout or a connection error; none is dropped uncounted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Outcome:
    """What became of one scheduled request."""

    scheduled: float
    """`time.perf_counter()` value at which it was due to be sent."""
    latency_s: float
    send_lag_s: float
    """Time from the schedule to the write, spent waiting for a connection or CPU."""
    status: int | None
    """HTTP status, or None for a timeout or a connection error."""
    head: bytes = b""
    """Status line and headers of the response."""
    body: bytes = b""
    error: str | None = None


@dataclass
class LoadResult:
    """Every outcome of one run, in completion order."""

    outcomes: list[Outcome] = field(default_factory=list)

    def statuses(self) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def send_lag_ms(self, percentile: float) -> float:
        """Return a percentile of the send lag of all requests, in ms."""
        values = [o.send_lag_s for o in self.outcomes]
        return float(np.percentile(values, percentile)) * 1000 if values else 0.0

    def latency_ms(self, status: int, percentile: float) -> float:
        """Return a latency percentile of the responses with `status`, in ms."""
        values = [o.latency_s for o in self.outcomes if o.status == status]
        return float(np.percentile(values, percentile)) * 1000 if values else 0.0

    def response_time_ms(self, status: int, percentile: float) -> float:
        """Return a percentile of the time from write to response, in ms.

        Unlike `latency_ms` it leaves out the send lag, which on a machine
        shared with other work is the generator waiting for a CPU.
        """
        values = [
            o.latency_s - o.send_lag_s for o in self.outcomes if o.status == status
        ]
        return float(np.percentile(values, percentile)) * 1000 if values else 0.0


def http_request(host: str, port: int, path: str, body: bytes, headers: str) -> bytes:
    """Return the bytes of one keep-alive POST with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{headers}\r\n"
    )
    return head.encode("ascii") + body


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(request)
        await writer.drain()

        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        if b"connection: close" in head.lower():
            self.close()
        return status, head, body

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].transport.abort()
        self.streams = None


async def run_open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    duration_s: float,
    timeout_s: float,
    max_connections: int = 256,
) -> LoadResult:
    """Send `rate * duration_s` requests at a constant rate, cycling `requests`."""
    result = LoadResult()
    idle: list[_Connection] = []
    capacity = asyncio.Semaphore(max_connections)
    count = max(1, round(rate * duration_s))
    start = time.perf_counter() + 0.05

    async def send(index: int, scheduled: float) -> None:
        async with capacity:
            connection = idle.pop() if idle else _Connection(host, port)
            request = requests[index % len(requests)]
            lag = time.perf_counter() - scheduled
            try:
                async with asyncio.timeout(scheduled + timeout_s - time.perf_counter()):
                    status, head, body = await connection.exchange(request)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
                connection.close()
                latency = time.perf_counter() - scheduled
                outcome = Outcome(scheduled, latency, lag, None, error=repr(error))
                result.outcomes.append(outcome)
                return
            latency = time.perf_counter() - scheduled
            outcome = Outcome(scheduled, latency, lag, status, head, body)
            result.outcomes.append(outcome)
            idle.append(connection)

    tasks = []
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(index, scheduled)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return result


async def measure_throughput(
    host: str, port: int, requests: Sequence[bytes], connections: int, duration_s: float
) -> float:
    """Return the responses per second of `connections` closed-loop senders."""
    finished = 0
    stop_at = time.perf_counter() + duration_s

    async def send_until_stopped(offset: int) -> None:
        nonlocal finished
        connection = _Connection(host, port)
        index = offset
        while time.perf_counter() < stop_at:
            await connection.exchange(requests[index % len(requests)])
            finished += 1
            index += connections
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(send_until_stopped(i) for i in range(connections)))
    return finished / (time.perf_counter() - started)
