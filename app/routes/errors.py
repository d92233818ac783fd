"""Mapping of errors to HTTP responses with one JSON shape.

Every error body is `{"error": {"type", "message", "field"?, "value"?}}`:
service errors, request body validation errors, unknown paths and methods,
and unexpected exceptions, which return no exception text.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import InvalidRequest, ServiceError, describe_value
from app.metrics import (
    ENDPOINTS,
    OTHER_ENDPOINT,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
)

REQUEST_ID_HEADER = "X-Request-ID"
MAX_LISTED_PROBLEMS = 5
"""Validation problems listed in one message; the rest are only counted."""

logger = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers and the middleware that produce error bodies."""
    app.add_exception_handler(ServiceError, _handle_service_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_middleware(UnhandledErrorMiddleware)


def error_response(error: ServiceError, request_id: str | None = None) -> JSONResponse:
    """Return the JSON response of a service error."""
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return JSONResponse(
        {"error": error.to_dict()}, status_code=error.status_code, headers=headers
    )


async def _handle_service_error(request: Request, error: ServiceError) -> JSONResponse:
    return error_response(error, getattr(request.state, "request_id", None))


async def _handle_validation_error(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    problems = [_describe_problem(detail) for detail in error.errors()]
    message = "; ".join(message for message, _, _ in problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        message += f"; and {len(problems) - MAX_LISTED_PROBLEMS} more problems"

    _, field, value = problems[0]
    return error_response(InvalidRequest(message, field=field, value=value))


async def _handle_http_exception(
    request: Request, error: StarletteHTTPException
) -> JSONResponse:
    status = HTTPStatus(error.status_code)
    body = {
        "error": {
            "type": status.phrase.lower().replace(" ", "_").replace("-", "_"),
            "message": str(error.detail),
        }
    }
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def _describe_problem(detail: dict[str, Any]) -> tuple[str, str, Any]:
    """Return the message, the field path and the value of one pydantic error."""
    location = list(detail.get("loc", ()))
    if location and location[0] == "body":
        location = location[1:]
    path = _format_path(location) or "body"

    if detail.get("type") == "json_invalid":
        reason = detail.get("ctx", {}).get("error", "invalid JSON")
        position = location[0] if location else "?"
        message = f"the body is not valid JSON: {reason} at character {position}"
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


class UnhandledErrorMiddleware:
    """ASGI middleware that turns unexpected exceptions into a generic 500.

    It logs the traceback once and does not re-raise, unlike Starlette's
    ServerErrorMiddleware, after which uvicorn would log it a second time.
    An exception after the response has started is re-raised for uvicorn to
    log, because no error body can be sent any more.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        response_started = False

        async def send_and_track(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_track)
        except Exception:
            if response_started:
                raise
            endpoint = ENDPOINTS.get(scope["path"], OTHER_ENDPOINT)
            logger.exception("unexpected error on endpoint %s", endpoint)
            response = error_response(ServiceError("internal server error"))
            await response(scope, receive, send)
