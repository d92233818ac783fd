"""`POST /v1/rank`: rank one request's candidates by expected watch time."""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from app.admission import AdmissionController
from app.errors import UnsupportedMediaType
from app.ranking import RankingService
from app.routes.deadline import DEADLINE_HEADER, deadline_s
from app.routes.dependencies import get_admission, get_ranking_service
from app.routes.errors import REQUEST_ID_HEADER
from app.schemas import ErrorResponse, RankResponse
from app.settings import Settings

router = APIRouter(tags=["ranking"])

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    413: {
        "model": ErrorResponse,
        "description": "Too many candidates, or a body over WATCHTIME_MAX_BODY_BYTES.",
    },
    415: {"model": ErrorResponse, "description": "The body is not declared as JSON."},
    422: {"model": ErrorResponse, "description": "Invalid body or feature value."},
    429: {
        "model": ErrorResponse,
        "description": "Overloaded: the ranking would miss its deadline. Retry after "
        "the Retry-After seconds.",
        "headers": {
            "Retry-After": {
                "description": "Seconds after which the queue should have drained.",
                "schema": {"type": "integer"},
            }
        },
    },
    503: {"model": ErrorResponse, "description": "The model is not loaded yet."},
}

# The body is read as bytes and decoded by the ranking service, which times
# the decoding as a stage; the schema below documents it for OpenAPI clients.
REQUEST_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RankRequest"}}
        },
    }
}


def check_json_content_type(content_type: str | None) -> None:
    """Raise UnsupportedMediaType unless the body is declared as UTF-8 JSON."""
    media_type, _, parameters = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    is_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    if is_json and _charset(parameters) in ("", "utf-8", "utf8"):
        return
    if is_json:
        # JSON exchanged between systems must be UTF-8 (RFC 8259, section
        # 8.1), and the decoder reads nothing else.
        raise UnsupportedMediaType(
            f"the Content-Type is {content_type}; send the body as UTF-8 JSON, "
            "with the header Content-Type: application/json",
            field="Content-Type",
            value=content_type,
        )
    raise UnsupportedMediaType(
        f"the Content-Type is {content_type or 'missing'}; send the body as JSON "
        "with the header Content-Type: application/json",
        field="Content-Type",
        value=content_type,
    )


def _charset(parameters: str) -> str:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return ""


@router.post(
    "/v1/rank",
    response_model=RankResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=REQUEST_BODY_SCHEMA,
)
async def rank(
    request: Request,
    service: Annotated[RankingService, Depends(get_ranking_service)],
    admission: Annotated[AdmissionController, Depends(get_admission)],
) -> Response:
    """Rank the candidates by expected watch time, highest first.

    A request that would miss its deadline, `X-Request-Deadline-Ms` or the
    server's default, gets 429 with Retry-After at once.
    """
    arrived = time.monotonic()
    settings: Settings = request.app.state.settings
    check_json_content_type(request.headers.get("content-type"))
    budget_s = deadline_s(
        request.headers.get(DEADLINE_HEADER), settings.request_deadline_ms
    )
    body = await request.body()
    header_request_id = request.headers.get(REQUEST_ID_HEADER)

    ticket = admission.admit(len(body), arrived + budget_s)
    # Decoding, encoding and inference run in a ranking thread, so a large
    # request never blocks the event loop.
    ranking = partial(service.rank_json, body, header_request_id)
    outcome = await admission.run(ticket, ranking)
    request.state.request_id = outcome.request_id
    return Response(
        outcome.body,
        media_type="application/json",
        headers={REQUEST_ID_HEADER: outcome.request_id},
    )
