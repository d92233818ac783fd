"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.model import RankingModel
from app.routes.dependencies import check_not_stopping, get_current_model
from app.schemas import ErrorResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def check_alive() -> dict[str, str]:
    """Return 200 while the process runs."""
    return {"status": "alive"}


@router.get("/readyz", responses={503: {"model": ErrorResponse}})
def check_ready(
    request: Request,
    model: Annotated[RankingModel, Depends(get_current_model)],
) -> dict[str, object]:
    """Return 200 once the model is loaded and its golden replay passed.

    Return 503 again from the moment the worker receives a stop signal, so
    that load balancers stop sending requests while it drains.
    """
    check_not_stopping(request)
    return {"status": "ready", "model": {"name": model.name, "version": model.version}}
