"""Mapping of errors to HTTP responses with one JSON shape.

Every error body is `{"error": {"type", "message", "field"?, "value"?}}`:
service errors, request body validation errors, unknown paths and methods,
and unexpected exceptions, which return no exception text.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ServiceError
from app.metrics import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    ServiceMetrics,
    endpoint_label,
)
from app.validation import invalid_request

REQUEST_ID_HEADER = "X-Request-ID"

logger = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers and the middleware that produce error bodies."""
    app.add_exception_handler(ServiceError, _handle_service_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_middleware(UnhandledErrorMiddleware)


class AsciiJSONResponse(JSONResponse):
    """JSON response with every non-ASCII character escaped.

    Error messages can quote what a client sent, including a lone surrogate
    that has no UTF-8 encoding; as a `\\ud800` escape it is still valid JSON.
    """

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def error_response(
    error: ServiceError, request_id: str | None = None
) -> AsciiJSONResponse:
    """Return the JSON response of a service error."""
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return AsciiJSONResponse(
        {"error": error.to_dict()}, status_code=error.status_code, headers=headers
    )


async def _handle_service_error(request: Request, error: ServiceError) -> JSONResponse:
    count_rejection(request.app.state.metrics, error)
    request_id = error.request_id or getattr(request.state, "request_id", None)
    # The message can quote request values, so only the type is logged.
    logger.warning("request failed with %s %s", error.status_code, error.error_type)
    return error_response(error, request_id)


def count_rejection(metrics: ServiceMetrics, error: ServiceError) -> None:
    """Count a rejected request as invalid input or as refused by the service."""
    if 400 <= error.status_code < 500 and error.status_code != 429:
        metrics.invalid_inputs.labels(error.error_type).inc()
    else:
        metrics.rejected_requests.labels(error.error_type).inc()


async def _handle_validation_error(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    return await _handle_service_error(request, invalid_request(error.errors()))


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
            endpoint = endpoint_label(scope["path"])
            logger.exception("unexpected error on endpoint %s", endpoint)
            response = error_response(ServiceError("internal server error"))
            await response(scope, receive, send)
