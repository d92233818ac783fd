"""Dependencies that fetch the application's collaborators from its state."""

from __future__ import annotations

from fastapi import Request

from app.admission import AdmissionController
from app.errors import ModelNotReady, ShuttingDown
from app.metrics import ServiceMetrics
from app.model import RankingModel
from app.model_manager import ModelManager
from app.ranking import RankingService
from app.shutdown import ShutdownState


def get_ranking_service(request: Request) -> RankingService:
    """Return the ranking service, or raise ModelNotReady before it is loaded."""
    service: RankingService | None = request.app.state.ranking_service
    if service is None or service.models.current is None:
        raise _not_ready()
    return service


def get_admission(request: Request) -> AdmissionController:
    """Return the admission control of ranking requests."""
    return request.app.state.admission


def get_model_manager(request: Request) -> ModelManager:
    """Return the model manager of the application."""
    return request.app.state.model_manager


def get_current_model(request: Request) -> RankingModel:
    """Return the served model, or raise ModelNotReady before it is loaded.

    Read it once per request: a reload may replace it between two reads.
    """
    model = request.app.state.model_manager.current
    if model is None:
        raise _not_ready()
    return model


def check_not_stopping(request: Request) -> None:
    """Raise ShuttingDown once this worker has received a stop signal.

    Readiness probes call it, so that load balancers stop sending requests
    while the worker finishes the ones it has.
    """
    shutdown: ShutdownState = request.app.state.shutdown
    if shutdown.stopping:
        raise ShuttingDown(
            f"the server received {shutdown.signal_name} and is finishing the "
            "requests it has; send new requests to another replica"
        )


def get_metrics(request: Request) -> ServiceMetrics:
    """Return the metrics of the application."""
    return request.app.state.metrics


def _not_ready() -> ModelNotReady:
    return ModelNotReady(
        "the model is not loaded yet, so retry when /readyz returns 200"
    )
