"""A limit on the size of request bodies, applied while a body is received."""

from __future__ import annotations

from app.errors import BodyTooLarge
from app.metrics import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    """ASGI middleware that stops a request body at `max_body_bytes`.

    A Content-Length above the limit fails the first read of the body, before
    any of it is read, and a chunked body fails the read that crosses the
    limit. The failure is a BodyTooLarge raised by `receive` inside the route
    that reads the body, so each route's error handling turns it into a 413
    in its own error format. uvicorn then discards the rest of the body, or
    sends no `100 Continue` to a client that waits for one.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        limit = self.max_body_bytes
        declared = declared_length(scope)
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                reason = f"its Content-Length is {declared} bytes"
                raise _too_large(reason, declared, limit)

            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    reason = f"{received} bytes were received"
                    raise _too_large(reason, received, limit)
            return message

        await self.app(scope, receive_within_limit, send)


def declared_length(scope: Scope) -> int | None:
    """Return the request's Content-Length, or None when it has none."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(reason: str, size: int, limit: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request body is too large: {reason}, more than the maximum of "
        f"{limit} bytes set by WATCHTIME_MAX_BODY_BYTES; send fewer or smaller "
        "candidates per request",
        field="body",
        value=size,
    )
