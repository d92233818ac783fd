"""Errors of the ranking service.

`ServiceError` and its subclasses carry the HTTP status they map to, so the
ranking code can raise them without knowing about HTTP and one handler in
`app.routes.errors` turns any of them into the same JSON body. `ModelLoadError`
and `SettingsError` stop the start-up and never reach a client.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

_MAX_VALUE_CHARS = 200
"""Maximum length of a value echoed in an error, so a huge list stays readable."""

_MAX_VALUE_DEPTH = 8
"""Nesting depth of a list or object echoed in an error; deeper parts show "..."."""

_MAX_INT_BITS = 64
"""Longest integer echoed as a number; longer ones are described in words."""


class ServiceError(Exception):
    """An error that a client caused or can act on, with its HTTP status."""

    status_code = 500
    error_type = "internal_error"

    def __init__(
        self, message: str, *, field: str | None = None, value: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value
        self.request_id: str | None = None
        """Id of the request that failed, once known; echoed in X-Request-ID."""
        self.headers: dict[str, str] = {}
        """Extra response headers, such as Retry-After."""

    def to_dict(self) -> dict[str, Any]:
        """Return the `error` object of the JSON response body."""
        body: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
            body["value"] = shorten_value(self.value)
        return body


class ModelNotReady(ServiceError):
    """The model is not loaded yet, or its start-up check failed."""

    status_code = 503
    error_type = "model_not_ready"


class InvalidRequest(ServiceError):
    """The request body does not match the `/v1/rank` schema."""

    status_code = 422
    error_type = "invalid_request"


class InvalidFeature(ServiceError):
    """A feature value has the wrong type or is out of range."""

    status_code = 422
    error_type = "invalid_feature"


class UnknownFeature(InvalidFeature):
    """A feature name that the model does not read, with strict features on."""

    error_type = "unknown_feature"


class BodyTooLarge(ServiceError):
    """A request body is longer than the configured maximum."""

    status_code = 413
    error_type = "body_too_large"


class Overloaded(ServiceError):
    """The server cannot finish the request within its deadline, so it rejects it.

    The error type is also the `reason` label of the rejection counter.
    """

    status_code = 429
    error_type = "overload"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after_s)


class ShuttingDown(ServiceError):
    """The process received a stop signal and finishes the requests it has."""

    status_code = 503
    error_type = "shutting_down"


class UnsupportedMediaType(ServiceError):
    """The request body is not declared as JSON."""

    status_code = 415
    error_type = "unsupported_media_type"


class DuplicateCandidate(ServiceError):
    """Two candidates of one request have the same id."""

    status_code = 422
    error_type = "duplicate_candidate"


class TooManyCandidates(ServiceError):
    """A request contains more candidates than the configured maximum."""

    status_code = 413
    error_type = "too_many_candidates"


class AdminDisabled(ServiceError):
    """An admin endpoint was called while no admin token is configured."""

    status_code = 404
    error_type = "admin_disabled"


class Unauthorized(ServiceError):
    """An admin request lacks the configured bearer token."""

    status_code = 401
    error_type = "unauthorized"


class ModelRejected(ServiceError):
    """A requested reload found a model version that failed its checks."""

    status_code = 422
    error_type = "model_rejected"


class ModelLoadError(Exception):
    """The model repository, manifest or graph is missing or invalid."""


class SettingsError(ValueError):
    """A setting from the environment or the command line is invalid."""


def shorten_value(value: Any) -> Any:
    """Return `value` for an error body, cut to a readable length.

    Finite numbers, booleans and null come back unchanged, except integers
    too long for JSON clients, which come back as a text. NaN and the
    infinities, which strict JSON cannot hold, come back as the strings
    "NaN", "Infinity" and "-Infinity". A list or object comes back unchanged
    if it is strict JSON, short and shallow, and as a JSON preview otherwise.
    Texts longer than the limit are cut to it with a trailing "...".
    """
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value.bit_length() <= _MAX_INT_BITS else _int_text(value)
    if value is None or isinstance(value, bool | float):
        return value

    if isinstance(value, str):
        return _cut(value)
    text, complete = json_preview(value)
    if complete and _is_strict_json(value):
        return value
    return text


def json_preview(value: Any, limit: int = _MAX_VALUE_CHARS) -> tuple[str, bool]:
    """Return the start of a value's JSON text and whether it is all there.

    The text stops after about `limit` characters and at a nesting depth of
    `_MAX_VALUE_DEPTH`, with "..." where it stops. It never renders more
    than it returns, so a huge or deeply nested request value costs little
    and cannot hit the recursion limit of `json.dumps`.
    """
    pieces: list[str] = []
    length = 0
    for piece in _json_pieces(value, depth=0):
        pieces.append(piece)
        length += len(piece)
        if length > limit:
            return "".join(pieces)[:limit] + "...", False
    text = "".join(pieces)
    return text, "..." not in pieces


def _json_pieces(value: Any, depth: int) -> Iterator[str]:
    if isinstance(value, dict | list | tuple) and depth >= _MAX_VALUE_DEPTH:
        yield "..."
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ", " if index else ""
            yield _scalar_text(str(key)) + ": "
            yield from _json_pieces(item, depth + 1)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for index, item in enumerate(value):
            yield ", " if index else ""
            yield from _json_pieces(item, depth + 1)
        yield "]"
    else:
        yield _scalar_text(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value.bit_length() <= _MAX_INT_BITS else _int_text(value)
    if isinstance(value, str):
        return json.dumps(value[: _MAX_VALUE_CHARS + 1])
    if value is None or isinstance(value, bool | float):
        return json.dumps(value)  # NaN and Infinity as JavaScript spells them
    return json.dumps(repr(value)[:_MAX_VALUE_CHARS])


def _int_text(value: int) -> str:
    # str() of an integer with more than 4300 digits raises ValueError since
    # Python 3.11, so the digit count comes from the bit length.
    digits = int(value.bit_length() * math.log10(2)) + 1
    return f"<an integer of about {digits} digits>"


def _is_strict_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _cut(text: str) -> str:
    if len(text) <= _MAX_VALUE_CHARS:
        return text
    return text[:_MAX_VALUE_CHARS] + "..."


def describe_value(value: Any) -> str:
    """Return the JSON type and a short JSON rendering of a received value."""
    if value is None:
        return "null"
    if isinstance(value, str):
        text = json.dumps(_cut(value))
    else:
        text, _ = json_preview(value)
    return f"the {_json_type_name(value)} {text}"


def _json_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
