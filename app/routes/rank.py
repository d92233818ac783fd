"""`POST /v1/rank`: rank one request's candidates by expected watch time."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from app.logging import bind_request_context
from app.ranking import RankingService
from app.routes.dependencies import get_ranking_service
from app.routes.errors import REQUEST_ID_HEADER
from app.schemas import (
    ErrorResponse,
    ModelReference,
    RankedItem,
    RankRequest,
    RankResponse,
)

router = APIRouter(tags=["ranking"])

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorResponse, "description": "Too many candidates."},
    422: {"model": ErrorResponse, "description": "Invalid body or feature value."},
    503: {"model": ErrorResponse, "description": "The model is not loaded yet."},
}


# A plain `def` runs in FastAPI's thread pool, so encoding and inference do
# not block the event loop.
@router.post("/v1/rank", response_model=RankResponse, responses=ERROR_RESPONSES)
def rank(
    body: RankRequest,
    request: Request,
    response: Response,
    service: Annotated[RankingService, Depends(get_ranking_service)],
) -> RankResponse:
    """Rank the candidates by expected watch time, highest first."""
    request_id = body.request_id or uuid.uuid4().hex
    request.state.request_id = request_id
    response.headers[REQUEST_ID_HEADER] = request_id
    model = service.model
    bind_request_context(request_id, f"{model.name}/{model.version}")

    ranking = service.rank(body)
    return RankResponse(
        request_id=request_id,
        model=ModelReference(name=model.name, version=model.version),
        items=[RankedItem(**vars(item)) for item in ranking],
    )
