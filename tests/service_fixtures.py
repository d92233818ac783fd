"""Fixtures that run the real service in a uvicorn subprocess on loopback.

Test modules load them with `pytest_plugins = ["service_fixtures"]`. They use
the `model_repository` fixture of conftest.py, a model made by the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service_helpers import RunningServer, run_server


@pytest.fixture(scope="session")
def server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Return a service on a loopback port serving the trainer's model."""
    log_path = tmp_path_factory.mktemp("service") / "server.log"
    with run_server(model_repository, log_path) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """Return an HTTP client of the shared service."""
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
        yield http
