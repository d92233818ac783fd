"""Prometheus metrics of the service.

Each application has its own registry, so one process can build several
applications, as tests do. A server with several worker processes runs in
prometheus_client's multiprocess mode: `watchtime serve` points
PROMETHEUS_MULTIPROC_DIR at an emptied directory before the workers start,
every worker writes its samples there, and a scrape of any worker merges all
of them. Gauges of a worker that died are removed at the next scrape.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
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
BATCH_ROW_BUCKETS = (1, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
WATCH_TIME_BUCKETS_S = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

ENDPOINTS = {
    "/v1/rank": "rank",
    "/v1/model": "model",
    "/v1/admin/reload": "admin_reload",
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

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)


def multiprocess_dir() -> Path | None:
    """Return the multiprocess directory when this process writes samples there.

    prometheus_client picks its value store when it is first imported, so the
    variable only counts if it was set before that; otherwise a warning says
    why this worker's samples stay in memory.
    """
    directory = os.environ.get(MULTIPROCESS_ENV)
    if not directory:
        return None

    if values.ValueClass is values.MutexValue:
        logger.warning(
            "%s is set but prometheus_client was imported before it, so this "
            "process exports only its own samples",
            MULTIPROCESS_ENV,
        )
        return None
    return Path(directory)


def clear_multiprocess_dir(directory: Path) -> None:
    """Remove the sample files of an earlier server from the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


class ServiceMetrics:
    """The metrics of one application and the registry that contains them."""

    def __init__(self, shared_dir: Path | None = None) -> None:
        self.shared_dir = shared_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self._define_request_metrics()
        self._define_model_metrics()

    def _define_request_metrics(self) -> None:
        registry = self.registry
        self.requests = Counter(
            "watchtime_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "watchtime_request_duration_seconds",
            "Time from receiving a request to sending the end of its response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.stage_duration = Histogram(
            "watchtime_stage_duration_seconds",
            "Time of each ranking stage: decode, features, inference, sort, encode.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.candidates_per_request = Histogram(
            "watchtime_candidates_per_request",
            "Number of candidates in each accepted ranking request.",
            buckets=CANDIDATE_BUCKETS,
            registry=registry,
        )
        self.invalid_inputs = Counter(
            "watchtime_invalid_inputs",
            "Requests rejected for invalid input, by error type.",
            ["reason"],
            registry=registry,
        )
        self.rejected_requests = Counter(
            "watchtime_rejected_requests",
            "Valid requests rejected by the service, by reason.",
            ["reason"],
            registry=registry,
        )
        self.unknown_features = Counter(
            "watchtime_unknown_features",
            "Feature values ignored because the model does not use their names.",
            registry=registry,
        )
        self.rankings_in_flight = Gauge(
            "watchtime_rankings_in_flight",
            "Ranking and V2 inference requests admitted and not yet answered.",
            registry=registry,
            multiprocess_mode="liveall",
        )

    def _define_model_metrics(self) -> None:
        registry = self.registry
        self.batch_rows = Histogram(
            "watchtime_batch_rows",
            "Candidate rows in each onnxruntime call.",
            buckets=BATCH_ROW_BUCKETS,
            registry=registry,
        )
        self.predicted_watch_time = Histogram(
            "watchtime_predicted_watch_time_seconds",
            "Expected watch time of every served candidate.",
            buckets=WATCH_TIME_BUCKETS_S,
            registry=registry,
        )
        self.model_info = Gauge(
            "watchtime_model_info",
            "Model version of each worker: 1 for the one it serves, 0 for earlier.",
            ["name", "version"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.model_reloads = Counter(
            "watchtime_model_reloads",
            "Attempts to serve a new model version, by result.",
            ["result"],
            registry=registry,
        )
        self.onnxruntime_threads = Gauge(
            "watchtime_onnxruntime_threads",
            "Threads of each worker's onnxruntime session, by kind.",
            ["kind"],
            registry=registry,
            multiprocess_mode="liveall",
        )

    def render(self) -> tuple[bytes, str]:
        """Return the Prometheus text exposition and its content type."""
        if self.shared_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST

        remove_dead_workers(self.shared_dir)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.shared_dir))
        return generate_latest(merged), CONTENT_TYPE_LATEST

    def forget_this_process(self) -> None:
        """Remove this worker's live gauges, as it stops serving."""
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.shared_dir))


def remove_dead_workers(directory: Path) -> None:
    """Remove the live gauges of worker processes that no longer run."""
    pids = {
        int(match.group(1))
        for path in directory.glob("gauge_live*.db")
        if (match := _LIVE_GAUGE_FILE.fullmatch(path.name))
    }
    for pid in pids:
        if not _process_exists(pid):
            multiprocess.mark_process_dead(pid, str(directory))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def observe_many(histogram: Histogram, samples: np.ndarray) -> None:
    """Add many samples to an unlabelled histogram in one pass.

    prometheus_client has no bulk observe, and calling `observe` once per
    candidate costs microseconds each. This adds each bucket's count once,
    which gives the same exposition as observing the samples one by one; a
    test checks that against `observe`.
    """
    if samples.size == 0:
        return

    # The private attributes are the histogram's own bucket and sum values,
    # the same ones `observe` increments (prometheus_client 0.20 to 0.26).
    bounds = np.asarray(histogram._upper_bounds)
    bucket_index = np.searchsorted(bounds, samples, side="left")
    counts = np.bincount(bucket_index, minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(int(count))
    histogram._sum.inc(float(samples.sum()))


class RequestMetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        endpoint = endpoint_label(scope["path"])
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


def endpoint_label(path: str) -> str:
    """Return the metric label of a request path from a fixed set of values."""
    if path in ENDPOINTS:
        return ENDPOINTS[path]
    if path.startswith("/v2/") or path == "/v2":
        return _v2_endpoint(path)
    return OTHER_ENDPOINT


def _v2_endpoint(path: str) -> str:
    # The V2 routes: /v2, /v2/health/{live,ready}, and /v2/models/{name} with
    # an optional /versions/{version}, then nothing, /ready or /infer.
    parts = path.strip("/").split("/")
    if parts in (["v2"], ["v2", "health", "live"], ["v2", "health", "ready"]):
        return "v2_metadata" if len(parts) == 1 else "v2_health"
    if len(parts) < 3 or parts[1] != "models":
        return OTHER_ENDPOINT

    rest = parts[3:]
    if rest[:1] == ["versions"]:
        if len(rest) < 2:
            return OTHER_ENDPOINT
        rest = rest[2:]
    return {(): "v2_metadata", ("ready",): "v2_health", ("infer",): "v2_infer"}.get(
        tuple(rest), OTHER_ENDPOINT
    )
