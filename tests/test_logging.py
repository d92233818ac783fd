"""Logs of a real server process: JSON records, context fields, nothing secret."""

from __future__ import annotations

import json

import httpx
import pytest

from service_helpers import run_server

TOKEN = "logging-test-token-0123456789"
MARKER = "do-not-log-this-value"


def send(base_url: str, bodies: list[dict]) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for body in bodies:
            client.post("/v1/rank", json=body)
        client.get("/healthz")


@pytest.fixture(scope="module")
def json_log(model_repository, manifest, tmp_path_factory) -> list[dict]:
    """Return the JSON records of a server that ranked one good, one bad request."""
    request = manifest["golden"][0]["request"] | {"request_id": "log-test-1"}
    request["candidates"][0]["features"]["category"] = MARKER
    bad = {
        "request_id": "log-test-2",
        "context": {},
        "candidates": [{"id": MARKER, "features": {"video_duration_s": MARKER}}],
    }
    log_path = tmp_path_factory.mktemp("logging") / "server.log"
    arguments = ("--log-format", "json", "--log-level", "debug")
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    with run_server(model_repository, log_path, *arguments, **variables) as server:
        send(server.base_url, [request, bad])
    lines = log_path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_log_line_is_a_json_record(json_log):
    assert all({"time", "level", "logger", "message"} <= set(r) for r in json_log)


def test_ranking_record_carries_request_id_and_model(json_log):
    ranked = [r for r in json_log if r["logger"] == "app.ranking"]

    assert ranked[0]["level"] == "DEBUG"
    assert ranked[0]["request_id"] == "log-test-1"
    assert ranked[0]["model"] == "watchtime/1"


def test_failed_request_is_logged_at_warning(json_log):
    failed = [r for r in json_log if r["message"].startswith("request failed")]

    assert failed[0]["level"] == "WARNING"
    assert "422" in failed[0]["message"]


def test_start_up_record_masks_the_admin_token(json_log):
    settings = [
        r for r in json_log if r["message"].startswith("starting with settings")
    ]

    assert "'admin_token': '**********'" in settings[0]["message"]


def test_log_contains_no_token_and_no_request_values(json_log):
    text = json.dumps(json_log)

    assert TOKEN not in text
    assert MARKER not in text


def test_access_log_leaves_out_health_probes(json_log):
    paths = [r.get("path") for r in json_log if r["logger"] == "uvicorn.access"]

    assert "/v1/rank" in paths
    assert "/healthz" not in paths
