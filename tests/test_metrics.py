"""Metric helpers with real prometheus_client objects and real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from app.metrics import (
    MULTIPROCESS_ENV,
    ServiceMetrics,
    endpoint_label,
    observe_many,
    remove_dead_workers,
)

BUCKETS = (1.0, 5.0, 10.0, 60.0)


def histogram_text(samples: list[float], bulk: bool) -> bytes:
    registry = CollectorRegistry()
    histogram = Histogram("h", "test", buckets=BUCKETS, registry=registry)
    if bulk:
        observe_many(histogram, np.asarray(samples))
    else:
        for value in samples:
            histogram.observe(value)
    lines = generate_latest(registry).splitlines()
    return b"\n".join(line for line in lines if b"_created" not in line)


def test_observe_many_equals_observe_one_by_one():
    samples = [0.5, 1.0, 1.0001, 5.0, 7.0, 60.0, 61.0, 1e9, 0.0]

    assert histogram_text(samples, bulk=True) == histogram_text(samples, bulk=False)


def test_observe_many_ignores_an_empty_array():
    assert histogram_text([], bulk=True) == histogram_text([], bulk=False)


def test_endpoint_label_keeps_client_paths_out_of_labels():
    assert endpoint_label("/v1/rank") == "rank"
    assert endpoint_label("/secret/../etc") == "other"
    assert endpoint_label("/v2/models/anything/infer") == "v2_infer"
    assert endpoint_label("/v2/health/ready") == "v2_health"
    assert endpoint_label("/v2/models/watchtime") == "v2_metadata"
    assert endpoint_label("/v2/models/watchtime/ready") == "v2_health"
    assert endpoint_label("/v2/models/watchtime/versions/1/ready") == "v2_health"
    assert endpoint_label("/v2/models/watchtime/versions/1/infer") == "v2_infer"
    assert endpoint_label("/v2/models/watchtime/other") == "other"
    assert endpoint_label("/v2/unknown") == "other"


def test_dead_worker_gauges_leave_the_exposition(tmp_path):
    # A real process writes a live gauge in multiprocess mode and exits.
    code = (
        "from app.metrics import ServiceMetrics\n"
        "ServiceMetrics().model_info.labels('watchtime', '7').set(1)\n"
    )
    env = os.environ | {MULTIPROCESS_ENV: str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    files_before = sorted(p.name for p in tmp_path.glob("gauge_live*.db"))

    remove_dead_workers(tmp_path)

    assert len(files_before) == 1
    assert list(tmp_path.glob("gauge_live*.db")) == []


def test_single_process_metrics_render_their_own_registry():
    metrics = ServiceMetrics()
    metrics.requests.labels("rank", "200").inc()

    text, _ = metrics.render()

    assert b'watchtime_requests_total{endpoint="rank",status="200"} 1.0' in text
