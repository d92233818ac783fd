"""Logs of a real server on error paths: no request value, no token, even in a 500.

The server is the service's application with one extra route that fails
with the request body in its exception message and cause, as a bug could.
Every request below carries a marker, in its body, a header or the query
string, and the marker must appear nowhere in the log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from failing_app import FAILING_PATH
from service_helpers import (
    LOOPBACK,
    ROOT,
    find_free_port,
    service_env,
    stop_process,
    wait_until_ready,
)

MARKER = "marker-value-that-must-not-be-logged"
TOKEN = "admin-token-that-must-not-be-logged"
MAX_BODY_BYTES = 4096


@pytest.fixture(scope="module")
def failing_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """Return the address and log path of a running failing app."""
    port = find_free_port()
    log_path = tmp_path_factory.mktemp("failing") / "server.log"
    variables = {
        "WATCHTIME_MODEL_REPOSITORY": str(model_repository),
        "WATCHTIME_ADMIN_TOKEN": TOKEN,
        "WATCHTIME_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "WATCHTIME_RELOAD_INTERVAL_S": "0",
    }
    command = [sys.executable, str(ROOT / "tests" / "failing_app.py"), str(port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT / "tests",
            env=service_env(**variables),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until_ready(base_url, process, log_path)
        yield base_url, log_path
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def responses(failing_server) -> dict[str, httpx.Response]:
    """Send every request with the marker once and return the responses."""
    base_url, _ = failing_server
    json_headers = {"Content-Type": "application/json"}
    deep = "[" * 2000 + json.dumps(MARKER) + "]" * 2000
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return {
            "500": client.post(FAILING_PATH, content=MARKER),
            "invalid feature": client.post(
                "/v1/rank",
                json={"candidates": [{"id": "v1", "features": {"category": [MARKER]}}]},
            ),
            "query string": client.post(
                f"/v1/rank?token={MARKER}", json={"candidates": []}
            ),
            "body too large": client.post(
                "/v1/rank", content=MARKER * 200, headers=json_headers
            ),
            "content type": client.post(
                "/v1/rank", content=MARKER, headers={"Content-Type": f"text/{MARKER}"}
            ),
            "deadline header": client.post(
                "/v1/rank",
                json={"candidates": []},
                headers={"X-Request-Deadline-Ms": MARKER},
            ),
            "deep nesting": client.post("/v1/rank", content=deep, headers=json_headers),
            "wrong token": client.post(
                "/v1/admin/reload", headers={"Authorization": f"Bearer {MARKER}"}
            ),
            "v2 body": client.post(
                "/v2/models/watchtime/infer", content=MARKER, headers=json_headers
            ),
            "admin": client.post(
                "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
            ),
        }


@pytest.fixture(scope="module")
def log_text(failing_server, responses) -> str:
    """Return the log once every request has its response."""
    _, log_path = failing_server
    time.sleep(0.5)
    return log_path.read_text(encoding="utf-8")


def test_unexpected_error_returns_a_generic_500(responses):
    response = responses["500"]

    assert response.status_code == 500
    assert response.json() == {
        "error": {"type": "internal_error", "message": "internal server error"}
    }


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("invalid feature", 422),
        ("query string", 200),
        ("body too large", 413),
        ("content type", 415),
        ("deadline header", 422),
        ("deep nesting", 422),
        ("wrong token", 401),
        ("v2 body", 400),
        ("admin", 200),
    ],
)
def test_marked_request_gets_its_answer(responses, name, status):
    assert responses[name].status_code == status


def test_log_of_the_500_keeps_its_traceback(log_text):
    records = [json.loads(line) for line in log_text.splitlines() if line.strip()]

    failed = [r for r in records if r["message"].startswith("unexpected error")]

    assert len(failed) == 1
    assert "Traceback" in failed[0]["exception"]
    assert "builtins.RuntimeError" in failed[0]["exception"]
    assert "builtins.KeyError" in failed[0]["exception"]


def test_log_contains_no_request_value(log_text):
    assert MARKER not in log_text


def test_log_contains_no_admin_token(log_text):
    assert TOKEN not in log_text
