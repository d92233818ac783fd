"""Translation of pydantic validation errors into one clear InvalidRequest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.errors import InvalidRequest, describe_value

MAX_LISTED_PROBLEMS = 5
"""Validation problems listed in one message; the rest are only counted."""


def invalid_request(details: Sequence[Any]) -> InvalidRequest:
    """Return one error that lists the first problems of a failed validation."""
    problems = [_describe_problem(detail) for detail in details]
    message = "; ".join(message for message, _, _ in problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        message += f"; and {len(problems) - MAX_LISTED_PROBLEMS} more problems"

    _, field, value = problems[0]
    return InvalidRequest(message, field=field, value=value)


def _describe_problem(detail: dict[str, Any]) -> tuple[str, str, Any]:
    """Return the message, the field path and the value of one pydantic error."""
    location = list(detail.get("loc", ()))
    if location and location[0] == "body":
        location = location[1:]
    path = _format_path(location) or "body"

    if detail.get("type") == "json_invalid":
        reason = detail.get("ctx", {}).get("error", "invalid JSON")
        message = f"the body is not valid JSON: {reason}"
        if location:
            message += f" at character {location[0]}"
        return message, "body", None
    if detail.get("type") == "missing":
        return f"{path} is missing", path, None

    value = detail.get("input")
    message = f"{path} is invalid: {detail.get('msg')}, got {describe_value(value)}"
    return message, path, value


def _format_path(location: list[Any]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
