"""Prometheus metrics of the service, in a registry per application.

A registry per application, rather than the global one, lets one process
build several applications, as tests do, without duplicate metric names.

NOTE: with `--workers N` each worker process has its own registry, so one
scrape of /metrics shows one worker. Counting across workers needs
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
CANDIDATE_BUCKETS = (0, 1, 10, 50, 100, 200, 300, 500, 1000, 2000, 5000)

ENDPOINTS = {
    "/v1/rank": "rank",
    "/v1/model": "model",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/docs": "docs",
    "/docs/oauth2-redirect": "docs",
    "/openapi.json": "openapi",
}
"""Label value of each known path. Every other path counts as `other`, so
clients cannot create label values."""

OTHER_ENDPOINT = "other"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServiceMetrics:
    """The metrics of one application and the registry that contains them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "watchtime_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "watchtime_request_duration_seconds",
            "Time from receiving a request to sending the end of its response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.stage_duration = Histogram(
            "watchtime_ranking_stage_duration_seconds",
            "Time of each stage of a ranking: encode, predict and sort.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.candidates_per_request = Histogram(
            "watchtime_candidates_per_request",
            "Number of candidates in each accepted ranking request.",
            buckets=CANDIDATE_BUCKETS,
            registry=self.registry,
        )
        self.unknown_features = Counter(
            "watchtime_unknown_features",
            "Feature values ignored because the model does not use their names.",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "watchtime_model_info",
            "Name and version of the served model; the value is always 1.",
            ["name", "version"],
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """Return the Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        endpoint = ENDPOINTS.get(scope["path"], OTHER_ENDPOINT)
        status = 500
        started = time.perf_counter()

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_duration.labels(endpoint).observe(elapsed)
