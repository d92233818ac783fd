"""Discovery, probe, metrics and documentation endpoints on a real server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service_helpers import run_server, sample, scrape

pytest_plugins = ["service_fixtures"]


@pytest.fixture
def small_request(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["golden"][0]["request"]


def test_model_lists_manifest_features(client, manifest):
    description = client.get("/v1/model").json()

    names = [feature["name"] for feature in description["features"]]
    assert names == [f["name"] for f in manifest["feature_spec"]["features"]]


def test_model_feature_has_client_fields(client, manifest):
    description = client.get("/v1/model").json()

    feature = description["features"][0]
    declared = manifest["feature_spec"]["features"][0]
    for key in ("source", "kind", "default", "example", "description"):
        assert feature[key] == declared[key], key


def test_model_marks_value_from_id_feature(client):
    description = client.get("/v1/model").json()

    from_id = [f["name"] for f in description["features"] if f["value_from_id"]]
    assert from_id == ["video_id"]


def test_model_reports_identity_and_limits(client, manifest):
    description = client.get("/v1/model").json()

    assert description["name"] == "watchtime"
    assert description["version"] == 1
    assert description["variant"] == manifest["variant"]
    assert description["created_at"] == manifest["created_at"]
    assert description["max_candidates"] == 5000


def test_model_reports_outputs_and_metrics(client, manifest):
    description = client.get("/v1/model").json()

    outputs = [output["name"] for output in description["outputs"]]
    assert outputs == ["logit", "expected_watch_time_s"]
    assert description["metrics"] == manifest["metrics"]


def test_healthz_returns_alive(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_returns_ready_with_model(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["model"] == {"name": "watchtime", "version": 1}


def test_metrics_count_requests_by_endpoint(client, small_request):
    before = scrape(client)

    for _ in range(3):
        client.post("/v1/rank", json=small_request)
    client.post("/v1/rank", json={"candidates": [{"id": 1.5}]})
    client.get("/healthz")

    after = scrape(client)
    name = "watchtime_requests_total"
    ok = sample(after, name, endpoint="rank", status="200") - sample(
        before, name, endpoint="rank", status="200"
    )
    rejected = sample(after, name, endpoint="rank", status="422") - sample(
        before, name, endpoint="rank", status="422"
    )
    probes = sample(after, name, endpoint="healthz", status="200") - sample(
        before, name, endpoint="healthz", status="200"
    )
    assert ok == 3
    assert rejected == 1
    assert probes == 1


def test_metrics_time_requests(client, small_request):
    name = "watchtime_request_duration_seconds_count"
    before = sample(scrape(client), name, endpoint="rank")

    client.post("/v1/rank", json=small_request)

    after = sample(scrape(client), name, endpoint="rank")
    assert after - before == 1


def test_metrics_count_candidates(client, small_request):
    name = "watchtime_candidates_per_request_sum"
    before = sample(scrape(client), name)

    client.post("/v1/rank", json=small_request)

    after = sample(scrape(client), name)
    assert after - before == len(small_request["candidates"])


def test_metrics_time_ranking_stages(client, small_request):
    client.post("/v1/rank", json=small_request)

    samples = scrape(client)

    name = "watchtime_stage_duration_seconds_count"
    for stage in ("decode", "features", "inference", "sort", "encode"):
        assert sample(samples, name, stage=stage) >= 1, stage


def test_metrics_expose_model_info(client):
    samples = scrape(client)

    value = sample(samples, "watchtime_model_info", name="watchtime", version="1")
    assert value == 1


def test_metrics_label_unknown_path_as_other(client):
    name = "watchtime_requests_total"
    before = sample(scrape(client), name, endpoint="other", status="404")

    client.get("/wp-admin/setup.php")

    after = scrape(client)
    assert sample(after, name, endpoint="other", status="404") - before == 1
    assert not any("wp-admin" in str(key) for key in after)


def test_unknown_path_returns_error_shape(client):
    response = client.get("/v1/unknown")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_wrong_method_returns_error_shape(client):
    response = client.get("/v1/rank")

    assert response.status_code == 405
    assert response.json()["error"]["type"] == "method_not_allowed"


def test_docs_serve_swagger_ui(client):
    response = client.get("/docs")

    assert response.status_code == 200
    assert "swagger-ui" in response.text


def test_openapi_example_uses_model_features(client, manifest):
    document = client.get("/openapi.json").json()

    content = document["paths"]["/v1/rank"]["post"]["requestBody"]["content"]
    example = content["application/json"]["examples"]["model"]["value"]
    context_names = {
        f["name"]
        for f in manifest["feature_spec"]["features"]
        if f["source"] == "context"
    }
    assert set(example["context"]) == context_names


def test_openapi_example_is_accepted(client):
    document = client.get("/openapi.json").json()
    content = document["paths"]["/v1/rank"]["post"]["requestBody"]["content"]
    example = content["application/json"]["examples"]["model"]["value"]

    response = client.post("/v1/rank", json=example)

    assert response.status_code == 200
    assert len(response.json()["items"]) == example["top_k"]


def test_openapi_documents_error_responses(client):
    document = client.get("/openapi.json").json()

    responses = document["paths"]["/v1/rank"]["post"]["responses"]
    assert {"200", "413", "422", "503"} <= set(responses)


def test_access_log_leaves_out_health_probes(client, server):
    client.get("/healthz")
    client.get("/readyz")
    client.get("/v1/model")

    log = server.log()

    assert "GET /v1/model" in log
    assert "GET /healthz" not in log
    assert "GET /readyz" not in log


def test_debug_log_leaves_out_request_bodies(model_repository, tmp_path):
    secret = "secret-country-xyz"
    body = {
        "context": {"country": secret},
        "candidates": [{"id": "v1", "features": {"category": secret}}],
    }
    invalid = {"candidates": [{"id": "v1", "features": {"video_age_days": secret}}]}

    with run_server(
        model_repository, tmp_path / "server.log", "--log-level", "debug"
    ) as debug_server:
        with httpx.Client(base_url=debug_server.base_url) as http:
            http.post("/v1/rank", json=body)
            http.post("/v1/rank", json=invalid)
        log = debug_server.log()

    assert "debug" in log.lower()
    assert secret not in log
