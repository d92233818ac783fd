"""Application factory of the ranking service.

Nothing here runs at import time: `create_app` builds an application from
its settings, and its lifespan loads the model before the server accepts
requests. uvicorn imports `create_app_from_env` in each worker process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import anyio
import anyio.to_thread
from fastapi import FastAPI

from app.admission import AdmissionController
from app.batching import Batcher
from app.body_limit import BodySizeLimitMiddleware
from app.encoding import InputLimits
from app.errors import ModelLoadError
from app.memory import freeze_startup_objects, malloc_trimmer
from app.metrics import RequestMetricsMiddleware, ServiceMetrics, multiprocess_dir
from app.model_manager import ModelManager
from app.ranking import RankingService
from app.resources import available_cpus
from app.routes import router
from app.routes.errors import install_error_handlers
from app.routes.openapi import build_openapi
from app.settings import Settings, load_settings
from app.shutdown import ShutdownState, watch_stop_signals

DESCRIPTION = (
    "Online ranking stage of a video recommender. `POST /v1/rank` scores a "
    "user's candidate videos by their expected watch time, exp(logit) of the "
    "served model (the odds of a weighted logistic regression, or a Poisson "
    "regression of watch time, as the model's variant says), and returns "
    "them sorted by it. `GET /v1/model` lists the features that a request "
    "can send and the variant."
)

RELOAD_TICK_S = 1.0
"""Seconds between checks for a reload requested by another worker."""

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the application, whose lifespan loads the model the settings select."""
    metrics = ServiceMetrics(shared_dir=multiprocess_dir())
    models = ModelManager(settings, metrics, settings.runtime_dir)
    app = FastAPI(
        title="Watch-time ranking service",
        description=DESCRIPTION,
        version=_package_version(),
        lifespan=_lifespan,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.model_manager = models
    limits = InputLimits(settings.max_id_list_length, settings.strict_features)
    app.state.ranking_service = RankingService(
        models, settings.max_candidates, metrics, limits
    )
    app.state.admission = AdmissionController(
        settings.resolved_ranking_threads(),
        settings.max_in_flight,
        metrics.rankings_in_flight.set,
    )
    app.state.openapi_model = None
    app.state.shutdown = ShutdownState()

    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
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
    models: ModelManager = app.state.model_manager
    metrics: ServiceMetrics = app.state.metrics
    logger.info("starting with settings %s", settings.model_dump(mode="json"))
    try:
        model = await anyio.to_thread.run_sync(models.load_initial)
    except ModelLoadError as error:
        logger.error("cannot start: %s", error)
        raise

    threads = models.intra_op_threads
    metrics.onnxruntime_threads.labels("intra_op").set(threads)
    metrics.onnxruntime_threads.labels("inter_op").set(1)
    logger.info(
        "onnxruntime uses %d intra-op and 1 inter-op thread per worker, "
        "from %.2f available cores and %d workers; intra-op spinning %s",
        threads,
        available_cpus(),
        settings.workers,
        "on" if model.intra_op_spinning else "off",
    )
    service: RankingService = app.state.ranking_service
    if settings.batching:
        service.batcher = Batcher(
            settings.batch_max_rows,
            settings.batch_max_delay_ms / 1000,
            metrics.batch_rows.observe,
        )
    if settings.gc_freeze:
        # Frozen once only: objects of a model that a reload replaces stay
        # frozen, and any reference cycles among them are never collected.
        frozen = freeze_startup_objects()
        logger.info("froze %d start-up objects out of garbage collection", frozen)
    logger.info(
        "ready to serve model %s version %s from %s",
        model.name,
        model.version,
        model.location.directory,
    )
    restore_signals = watch_stop_signals(
        app.state.shutdown, settings.shutdown_timeout_s
    )
    try:
        async with anyio.create_task_group() as tasks:
            if settings.reload_interval_s > 0 or settings.runtime_dir is not None:
                tasks.start_soon(watch_repository, models, settings.reload_interval_s)
            trim = malloc_trimmer()
            if trim is not None and settings.malloc_trim_interval_s > 0:
                interval_s = settings.malloc_trim_interval_s
                logger.info("returning free heap pages every %g s", interval_s)
                tasks.start_soon(trim_periodically, trim, interval_s)
            yield
            tasks.cancel_scope.cancel()
    finally:
        restore_signals()

    logger.info("shutting down")
    if service.batcher is not None:
        service.batcher.close()
    metrics.forget_this_process()


async def watch_repository(models: ModelManager, interval_s: float) -> None:
    """Reload on schedule, and at once when another worker asks for it.

    The generation file is checked every tick, a cheap stat, so a reload
    requested from one worker reaches the others within a tick.
    """
    tick_s = min(RELOAD_TICK_S, interval_s) if interval_s > 0 else RELOAD_TICK_S
    next_poll = time.monotonic() + interval_s
    while True:
        await anyio.sleep(tick_s)
        due = interval_s > 0 and time.monotonic() >= next_poll
        if models.poll_generation() or due:
            try:
                await anyio.to_thread.run_sync(models.reload)
            except Exception:
                # The model manager rejects bad versions itself; anything
                # else it raises must not end polling for the worker's life.
                logger.exception("model reload failed; polling continues")
            next_poll = time.monotonic() + interval_s


async def trim_periodically(trim: Callable[[], bool], interval_s: float) -> None:
    """Return free heap pages to the kernel every `interval_s` seconds.

    Rankings of up to 5,000 candidates leave freed arrays inside glibc's
    arenas, which count as resident until they are trimmed.
    """
    while True:
        await anyio.sleep(interval_s)
        await anyio.to_thread.run_sync(trim)


def _package_version() -> str:
    try:
        return version("watchtime-ranker")
    except PackageNotFoundError:
        return "unknown"
