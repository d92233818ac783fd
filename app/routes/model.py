"""`GET /v1/model`: what the loaded model expects and returns."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT
from app.model import RankingModel
from app.ranking import CLICK_PROBABILITY_OUTPUT, RankingService
from app.routes.dependencies import get_current_model, get_ranking_service
from app.schemas import (
    ErrorResponse,
    FeatureDescription,
    ModelDescription,
    OutputDescription,
)

router = APIRouter(tags=["model"])

OUTPUT_DESCRIPTIONS = {
    LOGIT_OUTPUT: "The model's logit: Wx + b of a linear model, or the output "
    "of a network's last layer.",
    WATCH_TIME_OUTPUT: "Expected watch time in seconds, by which items are ranked: "
    "exp(logit), or exp(logit) * (1 - click_probability) with a click head.",
    CLICK_PROBABILITY_OUTPUT: "Probability that the candidate is clicked.",
}


@router.get(
    "/v1/model",
    response_model=ModelDescription,
    responses={503: {"model": ErrorResponse}},
)
def describe_model(
    service: Annotated[RankingService, Depends(get_ranking_service)],
    model: Annotated[RankingModel, Depends(get_current_model)],
) -> ModelDescription:
    """Describe the served model and the features a request can send."""
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
        outputs=[
            OutputDescription(
                name=name,
                dtype="float32",
                description=OUTPUT_DESCRIPTIONS.get(name, "Output of the graph."),
            )
            for name in model.output_names
        ],
        worker_pid=os.getpid(),
        metrics=manifest.get("metrics") or {},
    )
