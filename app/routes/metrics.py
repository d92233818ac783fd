"""`GET /metrics`: the Prometheus text exposition of this process."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.metrics import ServiceMetrics
from app.routes.dependencies import get_metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def export_metrics(
    metrics: Annotated[ServiceMetrics, Depends(get_metrics)],
) -> Response:
    """Return the metrics of this process for a Prometheus scrape."""
    content, content_type = metrics.render()
    return Response(content, media_type=content_type)
