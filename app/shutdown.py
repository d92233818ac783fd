"""Readiness during shutdown: probes fail from the moment a stop signal arrives.

The probes are `/readyz` and the V2 `/v2/health/ready` and model ready paths.

uvicorn (0.29 and later) installs its SIGTERM and SIGINT handlers with
`signal.signal` before it starts the lifespan, and on a signal it stops
accepting connections, waits for the requests in flight and only then ends
the lifespan. A flag set at the end of the lifespan would come too late for
the readiness probe, so the lifespan wraps uvicorn's handlers instead. The
wrapper marks the worker as stopping at once. It calls uvicorn's handler
after the event loop has read the requests already waiting in its sockets.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Callable
from functools import partial
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

logger = logging.getLogger(__name__)


class ShutdownState:
    """Whether this worker received a stop signal, and which one."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def stopping(self) -> bool:
        return self.signal_name is not None


def watch_stop_signals(state: ShutdownState, timeout_s: int) -> Callable[[], None]:
    """Mark `state` as stopping on SIGTERM or SIGINT, then run the server's handler.

    Returns a function that puts the server's handlers back. Nothing is
    wrapped outside the main thread, where Python delivers no signals, or
    where a signal still has its default action: wrapping that would keep
    the process alive, because the wrapper cannot repeat the default action.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    loop = asyncio.get_running_loop()
    originals: dict[int, Callable[[int, FrameType | None], object]] = {}
    for stop_signal in STOP_SIGNALS:
        handler = signal.getsignal(stop_signal)
        if callable(handler):
            originals[stop_signal] = handler
            signal.signal(stop_signal, _wrap(handler, state, loop, timeout_s))

    def restore() -> None:
        for stop_signal, handler in originals.items():
            signal.signal(stop_signal, handler)

    return restore


def _wrap(
    handler: Callable[[int, FrameType | None], object],
    state: ShutdownState,
    loop: asyncio.AbstractEventLoop,
    timeout_s: int,
) -> Callable[[int, FrameType | None], None]:
    def mark_stopping(signum: int, frame: FrameType | None) -> None:
        if state.stopping:
            # A repeated signal goes straight to the server, which may
            # force its exit, as uvicorn does on a second SIGINT.
            handler(signum, frame)
            return

        state.signal_name = signal.Signals(signum).name
        stop_server = partial(_stop_server, handler, signum, timeout_s)
        loop.call_soon_threadsafe(_call_after_next_poll, loop, stop_server)

    return mark_stopping


def _call_after_next_poll(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
) -> None:
    """Run `callback` from the event loop's next poll for I/O.

    uvicorn's shutdown closes every connection that has no request in
    progress, even one whose next request already waits in its socket. That
    poll reads every such socket first, so a request that reached the server
    before the signal is in progress when uvicorn looks, and completes.
    """
    receiver, sender = socket.socketpair()

    def on_readable() -> None:
        loop.remove_reader(receiver.fileno())
        receiver.close()
        sender.close()
        callback()

    loop.add_reader(receiver.fileno(), on_readable)
    sender.send(b"\0")


def _stop_server(
    handler: Callable[[int, FrameType | None], object], signum: int, timeout_s: int
) -> None:
    logger.info(
        "received %s: /readyz and /v2/health/ready return 503 from now on, new "
        "connections are refused, and requests in flight get up to %d s to finish",
        signal.Signals(signum).name,
        timeout_s,
    )
    handler(signum, None)
