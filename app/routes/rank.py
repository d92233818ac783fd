"""`POST /v1/rank`: rank one request's candidates by expected watch time."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response

from app.errors import UnsupportedMediaType
from app.ranking import RankingService
from app.routes.dependencies import get_ranking_service
from app.routes.errors import REQUEST_ID_HEADER
from app.schemas import ErrorResponse, RankResponse

router = APIRouter(tags=["ranking"])

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    413: {
        "model": ErrorResponse,
        "description": "Too many candidates, or a body over WATCHTIME_MAX_BODY_BYTES.",
    },
    415: {"model": ErrorResponse, "description": "The body is not declared as JSON."},
    422: {"model": ErrorResponse, "description": "Invalid body or feature value."},
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
    """Raise UnsupportedMediaType unless the body is declared as JSON."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        f"the Content-Type is {content_type or 'missing'}; send the body as JSON "
        "with the header Content-Type: application/json",
        field="Content-Type",
        value=content_type,
    )


@router.post(
    "/v1/rank",
    response_model=RankResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=REQUEST_BODY_SCHEMA,
)
async def rank(
    request: Request,
    service: Annotated[RankingService, Depends(get_ranking_service)],
) -> Response:
    """Rank the candidates by expected watch time, highest first."""
    check_json_content_type(request.headers.get("content-type"))
    body = await request.body()
    header_request_id = request.headers.get(REQUEST_ID_HEADER)

    # Decoding, encoding and inference run in a worker thread, so a large
    # request never blocks the event loop.
    outcome = await anyio.to_thread.run_sync(service.rank_json, body, header_request_id)
    request.state.request_id = outcome.request_id
    return Response(
        outcome.body,
        media_type="application/json",
        headers={REQUEST_ID_HEADER: outcome.request_id},
    )
