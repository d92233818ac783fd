"""The naive endpoint ranks as the service does, on the bundled model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from load_tests.servers import (
    LOOPBACK,
    RunningServer,
    find_free_port,
    naive_spec,
    run_server,
    service_spec,
)

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "models"
MODEL_DIR = REPOSITORY / "watchtime" / "1"


@pytest.fixture(scope="module")
def golden_requests() -> list[dict[str, Any]]:
    """Return the golden requests of the bundled model's manifest."""
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text(encoding="utf-8"))
    return [golden["request"] for golden in manifest["golden"]]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Return `watchtime serve` on the bundled model."""
    port = find_free_port()
    spec = service_spec("service", REPOSITORY, 1, port, {})
    log = tmp_path_factory.mktemp("service") / "service.log"
    with run_server(spec, port, log) as running:
        yield running


@pytest.fixture(scope="module")
def naive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Return the naive endpoint on the bundled model."""
    port = find_free_port()
    spec = naive_spec("naive", MODEL_DIR, 1, port)
    log = tmp_path_factory.mktemp("naive") / "naive.log"
    with run_server(spec, port, log) as running:
        yield running


def ranked_ids(server: RunningServer, request: dict[str, Any]) -> list[Any]:
    """Return the ids of a server's ranking of one request, best first."""
    response = httpx.post(
        f"http://{LOOPBACK}:{server.port}/v1/rank", json=request, timeout=30.0
    )
    response.raise_for_status()
    return [item["id"] for item in response.json()["items"]]


def test_naive_app_ranks_golden_requests_as_service(service, naive, golden_requests):
    service_orders = [ranked_ids(service, r) for r in golden_requests]

    naive_orders = [ranked_ids(naive, r) for r in golden_requests]

    assert naive_orders == service_orders


def test_naive_app_applies_top_k(naive, golden_requests):
    request = {**golden_requests[0], "top_k": 2}

    ids = ranked_ids(naive, request)

    assert len(ids) == 2
