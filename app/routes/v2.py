"""Open Inference Protocol (KServe V2) REST endpoints over the V2 data plane.

Triton, KServe and Seldon clients and probes speak this protocol. Its error
body is `{"error": "<message>"}`, unlike the `/v1` body, so every `/v2` route
uses `OpenInferenceRoute`, which turns errors into that shape. A catch-all
route gives unknown `/v2` paths and methods the same shape.

Inference shares the admission control of `/v1/rank`: the same bound on
requests in flight, the same `X-Request-Deadline-Ms` header and default, and
429 with Retry-After when a request would miss its deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.errors import InvalidRequest, ServiceError
from app.model import RankingModel
from app.routes.deadline import DEADLINE_HEADER, deadline_s
from app.routes.dependencies import (
    check_not_stopping,
    get_admission,
    get_current_model,
    get_metrics,
)
from app.routes.errors import count_rejection
from app.settings import Settings
from app.v2 import HEADER_LENGTH_HEADER, EncodedResponse, InferenceDataPlane
from app.v2.dataplane import check_model_path
from app.v2.errors import InvalidInferenceRequest

HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

INFERENCE_WORKLOAD = "v2_infer"
"""Admission workload of inferences, whose service times are estimated apart."""

logger = logging.getLogger(__name__)


class EndpointNotFound(ServiceError):
    """A `/v2` path that the protocol does not define."""

    status_code = 404
    error_type = "not_found"


class MethodNotAllowed(ServiceError):
    """A `/v2` path called with a method that it does not accept."""

    status_code = 405
    error_type = "method_not_allowed"

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class OpenInferenceRoute(APIRoute):
    """Route that sends errors as the protocol's `{"error": message}` body.

    Errors are counted in the metrics as on `/v1`, except those of unknown
    paths. An unexpected exception becomes a 500 with a generic message, and
    its traceback is logged once here.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()
        path = self.path

        async def handle_with_protocol_errors(request: Request) -> Response:
            try:
                return await handle(request)
            except ServiceError as error:
                # The message can quote request values, so only its type is logged.
                logger.debug(
                    "%s %s failed with %s", request.method, path, error.error_type
                )
                if not isinstance(error, EndpointNotFound | MethodNotAllowed):
                    count_rejection(get_metrics(request), error)
                return _error_response(error)
            except Exception:
                logger.exception("unexpected error on %s %s", request.method, path)
                return JSONResponse({"error": "internal server error"}, 500)

        return handle_with_protocol_errors


router = APIRouter(tags=["open inference protocol"], route_class=OpenInferenceRoute)


def get_data_plane(request: Request) -> InferenceDataPlane:
    """Return a data plane with the application's version and size limit."""
    settings = request.app.state.settings
    return InferenceDataPlane(request.app.version, settings.max_candidates)


@router.get("/v2")
def read_server_metadata(request: Request) -> JSONResponse:
    """Return the server's name, version and protocol extensions."""
    return JSONResponse(get_data_plane(request).server_metadata())


@router.get("/v2/health/live")
def check_server_live() -> JSONResponse:
    """Return 200 while the process runs."""
    return JSONResponse({"live": True})


@router.get("/v2/health/ready")
def check_server_ready(request: Request) -> JSONResponse:
    """Return 200 once a model is loaded, 503 before and from a stop signal on."""
    get_current_model(request)
    check_not_stopping(request)
    return JSONResponse({"ready": True})


@router.get("/v2/models/{model_name}")
def read_model_metadata(model_name: str, request: Request) -> JSONResponse:
    """Return the model's name, versions, platform, inputs and outputs."""
    return _model_metadata(request, model_name, None)


@router.get("/v2/models/{model_name}/versions/{model_version}")
def read_model_version_metadata(
    model_name: str, model_version: str, request: Request
) -> JSONResponse:
    """Return the metadata of one version of the model."""
    return _model_metadata(request, model_name, model_version)


@router.get("/v2/models/{model_name}/ready")
def check_model_ready(model_name: str, request: Request) -> JSONResponse:
    """Return 200 when the model is ready, 503 when not and 404 for another name."""
    return _model_ready(request, model_name, None)


@router.get("/v2/models/{model_name}/versions/{model_version}/ready")
def check_model_version_ready(
    model_name: str, model_version: str, request: Request
) -> JSONResponse:
    """Return 200 when that version of the model is ready."""
    return _model_ready(request, model_name, model_version)


@router.post("/v2/models/{model_name}/infer")
async def infer(model_name: str, request: Request) -> Response:
    """Run the model on raw input tensors sent as JSON or binary data."""
    return await _infer(request, model_name, None)


@router.post("/v2/models/{model_name}/versions/{model_version}/infer")
async def infer_version(
    model_name: str, model_version: str, request: Request
) -> Response:
    """Run one version of the model on raw input tensors."""
    return await _infer(request, model_name, model_version)


@router.api_route("/v2/{path:path}", methods=HTTP_METHODS, include_in_schema=False)
def reject_unknown_path(path: str, request: Request) -> None:
    """Raise 405 for a known path called with another method, else 404."""
    allowed = _allowed_methods(request.scope["path"])
    if allowed:
        raise MethodNotAllowed(
            f"{request.method} is not allowed on this path: send "
            f"{' or '.join(allowed)}",
            allowed,
        )
    raise EndpointNotFound(
        "no V2 endpoint has this path: the endpoints are GET /v2, "
        "/v2/health/live, /v2/health/ready, /v2/models/{name} and "
        "/v2/models/{name}/ready, and POST /v2/models/{name}/infer, each model "
        "path also as /v2/models/{name}/versions/{version}/..."
    )


def _model_metadata(request: Request, name: str, version: str | None) -> JSONResponse:
    model = get_current_model(request)
    plane = get_data_plane(request)
    return JSONResponse(plane.model_metadata(model, name, version))


def _model_ready(request: Request, name: str, version: str | None) -> JSONResponse:
    model = get_current_model(request)
    plane = get_data_plane(request)
    status = plane.model_ready(model, name, version)
    check_not_stopping(request)
    return JSONResponse(status)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    arrived = time.monotonic()
    model: RankingModel = get_current_model(request)
    check_model_path(model, name, version)
    plane = get_data_plane(request)
    _check_content_encoding(request)
    budget_s = _deadline_s(request)
    body = await request.body()
    header_length = request.headers.get(HEADER_LENGTH_HEADER)

    admission = get_admission(request)
    ticket = admission.admit(len(body), arrived + budget_s, INFERENCE_WORKLOAD)
    # Decoding, checking and inference are CPU work, run in a ranking thread
    # off the event loop.
    inference = partial(plane.infer, model, name, version, body, header_length)
    encoded = await admission.run(ticket, inference)
    return _inference_response(encoded)


def _deadline_s(request: Request) -> float:
    settings: Settings = request.app.state.settings
    try:
        return deadline_s(
            request.headers.get(DEADLINE_HEADER), settings.request_deadline_ms
        )
    except InvalidRequest as error:
        # Every malformed V2 request gets the protocol's status, 400.
        raise InvalidInferenceRequest(error.message) from None


def _check_content_encoding(request: Request) -> None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InvalidInferenceRequest(
            f"the request body has Content-Encoding {encoding!r}, which this "
            "server does not decode: send the body uncompressed"
        )


def _inference_response(encoded: EncodedResponse) -> Response:
    if encoded.header_length is None:
        return Response(encoded.body, media_type="application/json")
    return Response(
        encoded.body,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH_HEADER: str(encoded.header_length)},
    )


def _error_response(error: ServiceError) -> JSONResponse:
    headers = dict(error.headers)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    return JSONResponse(
        {"error": error.message}, status_code=error.status_code, headers=headers
    )


def _allowed_methods(path: str) -> list[str]:
    methods: set[str] = set()
    for route in router.routes:
        if not isinstance(route, APIRoute) or route.endpoint is reject_unknown_path:
            continue
        if route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)
