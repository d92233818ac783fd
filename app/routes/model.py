"""`GET /v1/model`: what the loaded model expects and returns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT
from app.ranking import RankingService
from app.routes.dependencies import get_ranking_service
from app.schemas import (
    ErrorResponse,
    FeatureDescription,
    ModelDescription,
    OutputDescription,
)

router = APIRouter(tags=["model"])

OUTPUT_DESCRIPTIONS = (
    OutputDescription(
        name=LOGIT_OUTPUT,
        dtype="float32",
        description="Wx + b of the weighted logistic regression.",
    ),
    OutputDescription(
        name=WATCH_TIME_OUTPUT,
        dtype="float32",
        description="exp(logit): the odds of the weighted logistic regression, "
        "which estimate the expected watch time in seconds. Items are ranked "
        "by it.",
    ),
)


@router.get(
    "/v1/model",
    response_model=ModelDescription,
    responses={503: {"model": ErrorResponse}},
)
def describe_model(
    service: Annotated[RankingService, Depends(get_ranking_service)],
) -> ModelDescription:
    """Describe the served model and the features a request can send."""
    model = service.model
    manifest = model.manifest
    return ModelDescription(
        name=model.name,
        version=model.version,
        variant=manifest.get("variant"),
        created_at=manifest.get("created_at"),
        max_candidates=service.max_candidates,
        features=[
            FeatureDescription(
                name=f.name,
                source=f.source,
                kind=f.kind,
                default=f.default,
                example=f.example,
                description=f.description,
                value_from_id=f.value_from_id,
            )
            for f in model.spec.features
        ],
        outputs=list(OUTPUT_DESCRIPTIONS),
        metrics=manifest.get("metrics") or {},
    )
