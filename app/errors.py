"""Errors of the ranking service.

`ServiceError` and its subclasses carry the HTTP status they map to, so the
ranking code can raise them without knowing about HTTP and one handler in
`app.routes.errors` turns any of them into the same JSON body. `ModelLoadError`
and `SettingsError` stop the start-up and never reach a client.
"""

from __future__ import annotations

import json
import math
from typing import Any

_MAX_VALUE_CHARS = 200
"""Maximum length of a value echoed in an error, so a huge list stays readable."""


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

    Finite numbers, booleans and null come back unchanged. NaN and the
    infinities, which strict JSON cannot hold, come back as the strings
    "NaN", "Infinity" and "-Infinity". A list or object comes back unchanged
    if it is strict JSON and short, and as its JSON text otherwise. Texts
    longer than the limit are cut to it with a trailing "...".
    """
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if value is None or isinstance(value, bool | int | float):
        return value

    if isinstance(value, str):
        return _cut(value)
    try:
        strict_text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _cut(json.dumps(value, default=repr))
    return value if len(strict_text) <= _MAX_VALUE_CHARS else _cut(strict_text)


def _cut(text: str) -> str:
    if len(text) <= _MAX_VALUE_CHARS:
        return text
    return text[:_MAX_VALUE_CHARS] + "..."


def describe_value(value: Any) -> str:
    """Return the JSON type and a short JSON rendering of a received value."""
    if value is None:
        return "null"
    if isinstance(value, float):
        text = json.dumps(value)  # NaN and Infinity as JavaScript spells them
    else:
        text = json.dumps(shorten_value(value), default=repr)
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
