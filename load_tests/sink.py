"""HTTP sink: reads each request whole and returns a fixed 200 response.

It stands in for a server that costs nothing per request, so a sweep against
it measures what the load generator itself can offer on this machine: its
CPU use and send lag at each rate. Run it with
`python -m load_tests.sink --port PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from load_tests.loadgen import new_event_loop

DEFAULT_RESPONSE_BYTES = 45_000
"""Response size close to a ranking of 500 candidates."""


def build_response(size: int) -> bytes:
    """Return a keep-alive 200 response whose JSON body has `size` bytes."""
    body = b'{"items":"' + b"x" * max(0, size - 12) + b'"}'
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def serve(port: int, response: bytes) -> None:
    """Serve on a loopback port until the process is stopped."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _request_length(head)
                await reader.readexactly(length)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _request_length(head: bytes) -> int:
    headers = head.lower()
    start = headers.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    end = headers.index(b"\r\n", start + 2)
    return int(headers[start + 17 : end])


def main(argv: list[str] | None = None) -> int:
    """Parse the options and serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="loopback TCP port")
    parser.add_argument(
        "--response-bytes",
        type=int,
        default=DEFAULT_RESPONSE_BYTES,
        help="size of the response body in bytes",
    )
    options = parser.parse_args(argv)
    response = build_response(options.response_bytes)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(options.port, response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
