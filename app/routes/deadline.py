"""The caller's time budget of a request, from the `X-Request-Deadline-Ms` header.

`/v1/rank` and the V2 inference endpoints read it, and admission control
rejects a request that would finish after it.
"""

from __future__ import annotations

import math

from app.errors import InvalidRequest

DEADLINE_HEADER = "X-Request-Deadline-Ms"
MAX_DEADLINE_MS = 600_000.0


def deadline_s(header: str | None, default_ms: float) -> float:
    """Return the request's time budget in seconds, from its header or the default.

    Raises InvalidRequest naming the header when it is not a number of
    milliseconds in (0, 600000].
    """
    if header is None:
        return default_ms / 1000
    try:
        milliseconds = float(header)
    except ValueError:
        milliseconds = math.nan
    if not 0 < milliseconds <= MAX_DEADLINE_MS:
        raise InvalidRequest(
            f"the header {DEADLINE_HEADER} is invalid: got {header!r}, expected "
            f"the milliseconds the caller can wait, a number in (0, "
            f"{MAX_DEADLINE_MS:.0f}], or leave it out for the server's default "
            f"of {default_ms:g} ms",
            field=DEADLINE_HEADER,
            value=header,
        )
    return milliseconds / 1000
