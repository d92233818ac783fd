"""Application factory of the ranking service.

Nothing here runs at import time: `create_app` builds an application from
its settings, and its lifespan loads the model before the server accepts
requests. uvicorn imports `create_app_from_env` in each worker process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import anyio.to_thread
from fastapi import FastAPI

from app.errors import ModelLoadError
from app.metrics import RequestMetricsMiddleware, ServiceMetrics
from app.model import load_configured_model
from app.ranking import RankingService
from app.routes import router
from app.routes.errors import install_error_handlers
from app.routes.openapi import build_openapi
from app.settings import Settings, load_settings

DESCRIPTION = (
    "Online ranking stage of a video recommender. `POST /v1/rank` scores a "
    "user's candidate videos with a weighted logistic regression, whose odds "
    "exp(Wx + b) estimate the expected watch time, and returns them sorted "
    "by it. `GET /v1/model` lists the features that a request can send."
)

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the application, whose lifespan loads the model the settings select."""
    metrics = ServiceMetrics()
    app = FastAPI(
        title="Watch-time ranking service",
        description=DESCRIPTION,
        version=_package_version(),
        lifespan=_lifespan,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ranking_service = None

    install_error_handlers(app)
    # Added last, so it runs outermost and also counts the generic 500s.
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.include_router(router)
    # Replacing app.openapi is FastAPI's documented way to extend the document.
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """Build the application from `WATCHTIME_*` environment variables."""
    return create_app(load_settings())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    logger.info("starting with settings %s", settings.model_dump(mode="json"))
    try:
        model = await anyio.to_thread.run_sync(load_configured_model, settings)
    except ModelLoadError as error:
        logger.error("cannot start: %s", error)
        raise

    metrics: ServiceMetrics = app.state.metrics
    metrics.model_info.labels(model.name, str(model.version)).set(1)
    app.state.ranking_service = RankingService(model, settings.max_candidates, metrics)
    logger.info(
        "ready to serve model %s version %s from %s",
        model.name,
        model.version,
        model.location.directory,
    )
    yield

    logger.info("shutting down")
    app.state.ranking_service = None


def _package_version() -> str:
    try:
        return version("watchtime-ranker")
    except PackageNotFoundError:
        return "unknown"
