"""Hostile and malformed `/v1/rank` inputs against a real server: a clear 4xx each.

Every case must be rejected with a 4xx whose body names the field, the value
and what to send, without reaching the model and never as a 500.
"""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.encoding import DEFAULT_MAX_ID_LIST_LENGTH, MAX_FEATURE_STRING_LENGTH
from app.settings import Settings

from service_helpers import RunningServer, run_server, sample, scrape

pytest_plugins = ["service_fixtures"]

MAX_BODY_BYTES = Settings.model_fields["max_body_bytes"].default
ID_LIST_MAX_LENGTH = 50
"""`max_length` of `recent_video_ids` in the trainer's feature spec."""


@pytest.fixture(scope="module")
def golden_request(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the manifest's first golden request."""
    return copy.deepcopy(manifest["golden"][0]["request"])


@pytest.fixture(scope="module")
def strict_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningServer:
    """Return a server that rejects unknown feature names."""
    log_path = tmp_path_factory.mktemp("strict") / "server.log"
    variables = {"WATCHTIME_STRICT_FEATURES": "true"}
    with run_server(model_repository, log_path, **variables) as running:
        yield running


def with_feature(name: str, literal: str) -> str:
    """Return a one-candidate body whose feature `name` is the JSON `literal`."""
    body = '{"candidates": [{"id": "v1", "features": {"NAME": VALUE}}]}'
    return body.replace("NAME", name).replace("VALUE", literal)


def post_text(client: httpx.Client, text: str | bytes) -> httpx.Response:
    content = text.encode("utf-8") if isinstance(text, str) else text
    return client.post(
        "/v1/rank", content=content, headers={"Content-Type": "application/json"}
    )


def exchange_raw(base_url: str, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request head and body chunks on one socket; return the response.

    The server may respond before it has read the whole body, so a failed
    write after its response is not an error here.
    """
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), 10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        return _read_response(sock)


def _read_response(sock: socket.socket) -> bytes:
    response = b""
    while b"\r\n\r\n" not in response:
        data = sock.recv(65536)
        if not data:
            return response
        response += data
    head, _, body = response.partition(b"\r\n\r\n")
    length = int(_header(head, b"content-length") or 0)
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            break
        body += data
    return head + b"\r\n\r\n" + body


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def status_and_error(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head[9:12]), json.loads(body)["error"]


def rank_head(server: RunningServer, extra: str) -> bytes:
    host = urlsplit(server.base_url).netloc
    return (
        f"POST /v1/rank HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode("ascii")


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e400", "Infinity"),
        ("-1e400", "-Infinity"),
    ],
)
def test_rank_rejects_non_finite_number_with_its_value(client, literal, value):
    response = post_text(client, with_feature("video_age_days", literal))

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == 'candidates[0] (id "v1").features.video_age_days'
    assert error["value"] == value
    assert "expected a finite number" in error["message"]


def test_rank_rejects_number_sent_as_string(client):
    body = {"candidates": [{"id": "v1", "features": {"video_age_days": "15.5"}}]}

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["value"] == "15.5"
    assert 'got the string "15.5"' in error["message"]


def test_rank_rejects_integer_too_long_for_a_float(client):
    response = post_text(client, with_feature("video_age_days", "1" + "0" * 400))

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == 'candidates[0] (id "v1").features.video_age_days'
    assert "an integer of about 401 digits" in error["message"]


def test_rank_rejects_integer_too_long_to_parse(client):
    response = post_text(client, with_feature("video_age_days", "1" + "0" * 5000))

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == "body"
    assert "number out of range at line 1" in error["message"]


def test_rank_rejects_integer_id_too_long_for_int64(client):
    response = post_text(client, '{"candidates": [{"id": 1' + "0" * 400 + "}]}")

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == "candidates[0].id"


def test_rank_checks_id_list_entries_beyond_max_length(client):
    ids: list[Any] = [f"v{i}" for i in range(ID_LIST_MAX_LENGTH + 10)]
    ids[ID_LIST_MAX_LENGTH + 5] = 2.5
    body = {"context": {"recent_video_ids": ids}, "candidates": [{"id": "v1"}]}

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == f"context.recent_video_ids[{ID_LIST_MAX_LENGTH + 5}]"
    assert error["value"] == 2.5


def test_rank_accepts_id_list_longer_than_max_length(client, golden_request):
    body = copy.deepcopy(golden_request)
    body["context"]["recent_video_ids"] = [f"v{i}" for i in range(200)]

    response = client.post("/v1/rank", json=body)

    assert response.status_code == 200


def test_rank_rejects_a_million_ids_in_a_list(client):
    ids = list(range(1_000_000))
    body = {"context": {"recent_video_ids": ids}, "candidates": [{"id": "v1"}]}

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == "context.recent_video_ids"
    assert "array of 1000000 ids" in error["message"]
    assert f"maximum of {DEFAULT_MAX_ID_LIST_LENGTH}" in error["message"]
    assert "WATCHTIME_MAX_ID_LIST_LENGTH" in error["message"]
    assert len(json.dumps(error["value"])) < 300


@pytest.mark.parametrize(
    ("source", "name"),
    [("candidate", "category"), ("context", "country")],
)
def test_rank_rejects_feature_string_over_the_limit(client, source, name):
    long_text = "x" * (MAX_FEATURE_STRING_LENGTH + 1)
    body: dict[str, Any] = {"context": {}, "candidates": [{"id": "v1"}]}
    if source == "context":
        body["context"][name] = long_text
    else:
        body["candidates"][0]["features"] = {name: long_text}

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"].endswith(name)
    assert f"of {MAX_FEATURE_STRING_LENGTH + 1} characters" in error["message"]
    assert f"strings of at most {MAX_FEATURE_STRING_LENGTH}" in error["message"]


def test_rank_rejects_long_id_list_entry(client):
    long_id = "v" * (MAX_FEATURE_STRING_LENGTH + 1)
    body = {
        "context": {"recent_video_ids": ["v1", long_id]},
        "candidates": [{"id": "v1"}],
    }

    response = client.post("/v1/rank", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "context.recent_video_ids[1]"


def test_rank_accepts_feature_string_at_the_limit(client):
    text = "x" * MAX_FEATURE_STRING_LENGTH
    body = {"candidates": [{"id": "v1", "features": {"category": text}}]}

    response = client.post("/v1/rank", json=body)

    assert response.status_code == 200


@pytest.mark.parametrize("text", ["[]", '"text"', "null", "42", '[{"id": "v1"}]'])
def test_rank_rejects_body_that_is_not_an_object(client, text):
    response = post_text(client, text)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["type"] == "invalid_request"
    assert "Input should be an object" in error["message"]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"candidates": [], "context": {"x": ' + "[" * 10_000 + "]" * 10_000 + "}}",
        with_feature("x", '{"a": ' * 10_000 + "1" + "}" * 10_000),
    ],
    ids=["top level", "context value", "candidate value"],
)
def test_rank_rejects_ten_thousand_levels_of_nesting(client, text):
    response = post_text(client, text)

    error = response.json()["error"]
    assert response.status_code == 422
    assert "recursion limit" in error["message"]


def test_rank_rejects_deep_value_of_a_known_feature(client):
    # Below orjson's depth limit of 1024, so the value reaches the encoder,
    # and deeper than the 1000 frames json.dumps could render in the error.
    nested = "[" * 1020 + "]" * 1020

    response = post_text(client, with_feature("video_age_days", nested))

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == 'candidates[0] (id "v1").features.video_age_days'
    assert error["value"].startswith("[[[[")


def test_rank_ignores_deep_value_of_an_unknown_feature(client):
    nested = "[" * 1020 + "]" * 1020

    response = post_text(client, with_feature("shape", nested))

    assert response.status_code == 200


def test_rank_with_no_candidates_skips_the_model(client):
    before = sample(
        scrape(client), "watchtime_stage_duration_seconds_count", stage="inference"
    )

    response = client.post("/v1/rank", json={"candidates": [], "top_k": 5})

    after = sample(
        scrape(client), "watchtime_stage_duration_seconds_count", stage="inference"
    )
    assert response.status_code == 200
    assert response.json()["items"] == []
    assert after == before


def test_rank_rejects_declared_length_before_body(server):
    head = rank_head(server, f"Content-Length: {MAX_BODY_BYTES + 1}\r\n")

    response = exchange_raw(server.base_url, head, [])

    status, error = status_and_error(response)
    assert status == 413
    assert error["type"] == "body_too_large"
    assert error["value"] == MAX_BODY_BYTES + 1
    assert "WATCHTIME_MAX_BODY_BYTES" in error["message"]


def test_rank_rejects_chunked_body_while_streaming(server):
    head = rank_head(server, "Transfer-Encoding: chunked\r\n")
    chunk = b"x" * (1 << 20)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    # One more chunk than the limit, and no final zero-length chunk: the
    # server must respond from the bytes it has counted, not at the body's end.
    chunks = [framed] * (MAX_BODY_BYTES // len(chunk) + 1)

    response = exchange_raw(server.base_url, head, chunks)

    status, error = status_and_error(response)
    assert status == 413
    assert error["type"] == "body_too_large"
    assert error["value"] > MAX_BODY_BYTES


def test_v2_infer_rejects_body_over_the_limit(server):
    host = urlsplit(server.base_url).netloc
    head = (
        f"POST /v2/models/watchtime/infer HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode("ascii")

    response = exchange_raw(server.base_url, head, [])

    head_bytes, _, body = response.partition(b"\r\n\r\n")
    assert int(head_bytes[9:12]) == 413
    assert "WATCHTIME_MAX_BODY_BYTES" in json.loads(body)["error"]


def test_rank_accepts_body_of_max_candidates_with_features(client, golden_request):
    template = golden_request["candidates"][0]
    candidates = [
        {"id": f"video-{i:06d}", "features": dict(template["features"])}
        for i in range(5000)
    ]
    for candidate in candidates:
        candidate["features"].pop("video_id", None)
    body = {"context": golden_request["context"], "candidates": candidates}

    response = client.post("/v1/rank", json=body | {"top_k": 1})

    assert len(json.dumps(body)) < MAX_BODY_BYTES // 4
    assert response.status_code == 200


def test_strict_server_rejects_unknown_candidate_feature(strict_server):
    body = {"candidates": [{"id": "v1"}, {"id": "v2", "features": {"hue": 0.3}}]}

    response = httpx.post(strict_server.base_url + "/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["type"] == "unknown_feature"
    assert error["field"] == 'candidates[1] (id "v2").features.hue'
    assert error["value"] == 0.3
    assert "WATCHTIME_STRICT_FEATURES" in error["message"]
    assert "GET /v1/model" in error["message"]


def test_strict_server_rejects_unknown_context_feature(strict_server):
    body = {"context": {"screen_dpi": 440}, "candidates": [{"id": "v1"}]}

    response = httpx.post(strict_server.base_url + "/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == "context.screen_dpi"


def test_strict_server_ranks_known_features(strict_server, golden_request):
    response = httpx.post(strict_server.base_url + "/v1/rank", json=golden_request)

    assert response.status_code == 200


def test_strict_server_counts_rejections_as_invalid_input(strict_server):
    body = {"context": {"screen_dpi": 440}, "candidates": [{"id": "v1"}]}

    httpx.post(strict_server.base_url + "/v1/rank", json=body)

    with httpx.Client(base_url=strict_server.base_url) as client:
        samples = scrape(client)
    count = sample(samples, "watchtime_invalid_inputs_total", reason="unknown_feature")
    assert count >= 1
