"""Dependencies that fetch the application's collaborators from its state."""

from __future__ import annotations

from fastapi import Request

from app.errors import ModelNotReady
from app.metrics import ServiceMetrics
from app.ranking import RankingService


def get_ranking_service(request: Request) -> RankingService:
    """Return the ranking service, or raise ModelNotReady before it is loaded."""
    service: RankingService | None = request.app.state.ranking_service
    if service is None:
        raise ModelNotReady(
            "the model is not loaded yet, so retry when /readyz returns 200"
        )
    return service


def get_metrics(request: Request) -> ServiceMetrics:
    """Return the metrics of the application."""
    return request.app.state.metrics
