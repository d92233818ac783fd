"""A real Prometheus server scraping a 2-worker service on loopback."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

import httpx
import pytest

from prometheus_helpers import run_prometheus, wait_for_value
from service_helpers import run_server

REQUESTS = 37


@pytest.fixture(scope="module")
def scraped_service(model_repository, manifest, tmp_path_factory):
    """Run a 2-worker service that served exactly REQUESTS rankings, and Prometheus."""
    directory = tmp_path_factory.mktemp("scrape")
    request = manifest["golden"][0]["request"]
    with run_server(
        model_repository, directory / "service.log", "--workers", "2"
    ) as server:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            statuses = [
                client.post("/v1/rank", json=request).status_code
                for _ in range(REQUESTS)
            ]
        target = urlsplit(server.base_url).netloc
        with run_prometheus(target, directory) as prometheus:
            yield prometheus, statuses


def test_prometheus_counts_every_request_across_workers(scraped_service):
    prometheus, statuses = scraped_service
    expression = 'sum(watchtime_requests_total{endpoint="rank",status="200"})'

    counted = wait_for_value(prometheus, expression, float(REQUESTS), timeout_s=30)

    assert statuses == [200] * REQUESTS
    assert counted == REQUESTS


def test_prometheus_p99_from_histogram_is_finite(scraped_service):
    prometheus, _ = scraped_service
    wait_for_value(
        prometheus,
        'sum(watchtime_request_duration_seconds_count{endpoint="rank"})',
        float(REQUESTS),
        timeout_s=30,
    )
    expression = (
        "histogram_quantile(0.99, sum by (le) "
        '(watchtime_request_duration_seconds_bucket{endpoint="rank"}))'
    )

    p99 = prometheus.scalar(expression)

    assert p99 is not None
    assert math.isfinite(p99)
    assert p99 > 0


def test_prometheus_sees_the_model_of_each_worker(scraped_service):
    prometheus, _ = scraped_service
    expression = "count(watchtime_model_info == 1)"

    workers = wait_for_value(prometheus, expression, 2.0, timeout_s=30)

    assert workers == 2


def test_prometheus_sums_stage_histograms(scraped_service):
    prometheus, _ = scraped_service
    expression = 'sum(watchtime_stage_duration_seconds_count{stage="inference"})'

    inferences = wait_for_value(prometheus, expression, float(REQUESTS), timeout_s=30)

    assert inferences == REQUESTS
