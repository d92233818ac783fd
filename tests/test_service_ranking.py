"""`POST /v1/rank` on a real server with a model made by the trainer."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT, FeatureSpec
from trainer.tensors import request_tensors

from service_helpers import sample, scrape

pytest_plugins = ["service_fixtures"]


@pytest.fixture(scope="module")
def golden_request(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the manifest's golden request with the most candidates."""
    requests = [golden["request"] for golden in manifest["golden"]]
    return copy.deepcopy(max(requests, key=lambda r: len(r["candidates"])))


def direct_scores(
    model_dir: Path, manifest: dict[str, Any], request: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Score a request with onnxruntime on tensors built by the trainer's code."""
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    tensors = request_tensors(spec, request)
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    logits, watch_times = session.run([LOGIT_OUTPUT, WATCH_TIME_OUTPUT], tensors)
    return {LOGIT_OUTPUT: logits, WATCH_TIME_OUTPUT: watch_times}


def rank(client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/rank", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def scores_by_id(ranking: dict[str, Any]) -> dict[Any, float]:
    return {item["id"]: item["expected_watch_time_s"] for item in ranking["items"]}


def test_rank_orders_like_sorted_model_outputs(
    client, model_dir, manifest, golden_request
):
    expected = direct_scores(model_dir, manifest, golden_request)
    order = np.argsort(-expected[WATCH_TIME_OUTPUT], kind="stable")
    expected_ids = [golden_request["candidates"][i]["id"] for i in order]

    ranking = rank(client, golden_request)

    assert [item["id"] for item in ranking["items"]] == expected_ids


def test_rank_returns_model_scores(client, model_dir, manifest, golden_request):
    expected = direct_scores(model_dir, manifest, golden_request)
    ids = [candidate["id"] for candidate in golden_request["candidates"]]

    ranking = rank(client, golden_request)

    items = {item["id"]: item for item in ranking["items"]}
    watch_times = [items[i]["expected_watch_time_s"] for i in ids]
    logits = [items[i]["logit"] for i in ids]
    np.testing.assert_allclose(watch_times, expected[WATCH_TIME_OUTPUT], rtol=1e-6)
    np.testing.assert_allclose(logits, expected[LOGIT_OUTPUT], rtol=1e-6)


def test_rank_numbers_items_from_one(client, golden_request):
    ranking = rank(client, golden_request)

    ranks = [item["rank"] for item in ranking["items"]]
    assert ranks == list(range(1, len(golden_request["candidates"]) + 1))


def test_rank_scores_are_exp_of_logits(client, golden_request):
    ranking = rank(client, golden_request)

    watch_times = [item["expected_watch_time_s"] for item in ranking["items"]]
    logits = [item["logit"] for item in ranking["items"]]
    np.testing.assert_allclose(watch_times, np.exp(logits), rtol=1e-5)


def test_rank_keeps_request_order_for_ties(client, golden_request):
    candidate = golden_request["candidates"][0]
    shared_features = dict(candidate["features"])
    body = {
        "context": golden_request["context"],
        "candidates": [
            {"id": video_id, "features": {**shared_features, "video_id": "same"}}
            for video_id in ("c", "a", "b")
        ],
    }

    ranking = rank(client, body)

    assert [item["id"] for item in ranking["items"]] == ["c", "a", "b"]


def test_rank_cuts_to_top_k(client, golden_request):
    full = rank(client, golden_request)
    body = {**golden_request, "top_k": 2}

    ranking = rank(client, body)

    assert ranking["items"] == full["items"][:2]


def test_rank_with_top_k_above_count_returns_all(client, golden_request):
    body = {**golden_request, "top_k": 10_000}

    ranking = rank(client, body)

    assert len(ranking["items"]) == len(golden_request["candidates"])


def test_rank_with_empty_candidates_returns_no_items(client):
    ranking = rank(client, {"request_id": "empty-1", "candidates": []})

    assert ranking["items"] == []


def test_rank_with_empty_candidates_checks_context(client):
    body = {"context": {"country": True}, "candidates": []}

    response = client.post("/v1/rank", json=body)

    assert response.status_code == 422
    assert "context.country" in response.json()["error"]["message"]


def test_rank_echoes_request_id(client, golden_request):
    body = {**golden_request, "request_id": "feed-42"}

    response = client.post("/v1/rank", json=body)

    assert response.json()["request_id"] == "feed-42"
    assert response.headers["X-Request-ID"] == "feed-42"


def test_rank_without_request_id_generates_one(client, golden_request):
    body = {k: v for k, v in golden_request.items() if k != "request_id"}

    response = client.post("/v1/rank", json=body)

    request_id = response.json()["request_id"]
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0
    assert response.headers["X-Request-ID"] == request_id


def test_rank_names_model_and_version(client, golden_request):
    ranking = rank(client, golden_request)

    assert ranking["model"] == {"name": "watchtime", "version": 1}


def test_rank_uses_default_for_missing_feature(client, manifest, golden_request):
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    default = spec.by_name("video_duration_s").default
    with_default = copy.deepcopy(golden_request)
    without = copy.deepcopy(golden_request)
    for candidate in with_default["candidates"]:
        candidate["features"]["video_duration_s"] = default
    for candidate in without["candidates"]:
        candidate["features"].pop("video_duration_s", None)

    expected = scores_by_id(rank(client, with_default))
    actual = scores_by_id(rank(client, without))

    assert actual == expected


def test_rank_treats_null_as_missing(client, golden_request):
    with_null = copy.deepcopy(golden_request)
    without = copy.deepcopy(golden_request)
    with_null["context"]["device"] = None
    without["context"].pop("device", None)

    expected = scores_by_id(rank(client, without))
    actual = scores_by_id(rank(client, with_null))

    assert actual == expected


def test_rank_takes_video_id_from_candidate_id(client, golden_request):
    explicit = copy.deepcopy(golden_request)
    for candidate in explicit["candidates"]:
        candidate["features"]["video_id"] = candidate["id"]

    expected = scores_by_id(rank(client, explicit))
    actual = scores_by_id(rank(client, golden_request))

    assert actual == expected


def test_rank_ignores_and_counts_unknown_features(client, golden_request):
    with_unknown = copy.deepcopy(golden_request)
    with_unknown["context"]["screen_dpi"] = 440
    for candidate in with_unknown["candidates"]:
        candidate["features"]["thumbnail_hue"] = 0.3
    unknown_count = 1 + len(with_unknown["candidates"])
    before = sample(scrape(client), "watchtime_unknown_features_total")

    expected = scores_by_id(rank(client, golden_request))
    actual = scores_by_id(rank(client, with_unknown))

    after = sample(scrape(client), "watchtime_unknown_features_total")
    assert actual == expected
    assert after - before == unknown_count


def test_rank_rejects_duplicate_ids(client, golden_request):
    body = copy.deepcopy(golden_request)
    body["candidates"][2]["id"] = body["candidates"][0]["id"]
    duplicate = body["candidates"][0]["id"]

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["type"] == "duplicate_candidate"
    assert "candidates[0] and candidates[2]" in error["message"]
    assert f'"{duplicate}"' in error["message"]
    assert error["field"] == "candidates[2].id"


def test_rank_rejects_integer_and_string_of_one_id(client):
    body = {"candidates": [{"id": 13}, {"id": "13"}]}

    response = client.post("/v1/rank", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["type"] == "duplicate_candidate"


def test_rank_rejects_too_many_candidates(client):
    body = {"candidates": [{"id": i} for i in range(5001)]}

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 413
    assert error["type"] == "too_many_candidates"
    assert "5000" in error["message"]
    assert "WATCHTIME_MAX_CANDIDATES" in error["message"]


def test_rank_accepts_max_candidates(client):
    body = {"candidates": [{"id": i} for i in range(5000)], "top_k": 3}

    ranking = rank(client, body)

    assert len(ranking["items"]) == 3


def test_rank_rejects_string_for_numeric_feature(client, golden_request):
    body = copy.deepcopy(golden_request)
    body["candidates"][3]["features"]["video_duration_s"] = "12 min"
    candidate_id = body["candidates"][3]["id"]

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    path = f'candidates[3] (id "{candidate_id}").features.video_duration_s'
    assert response.status_code == 422
    assert error["type"] == "invalid_feature"
    assert error["field"] == path
    assert error["value"] == "12 min"
    assert error["message"].startswith(path)
    assert '"12 min"' in error["message"]
    assert "a finite number" in error["message"]


@pytest.mark.parametrize(
    ("source", "name", "value", "expected"),
    [
        ("candidate", "video_age_days", True, "a finite number"),
        ("candidate", "previous_impressions", [1.0], "a finite number"),
        ("candidate", "category", 2.5, "a string or an integer"),
        ("candidate", "channel_id", -4, "a string or an integer"),
        ("context", "hour_of_day", False, "a string or an integer"),
        ("context", "recent_video_ids", "v1 v2", "an array"),
        ("context", "country", {"code": "US"}, "a string or an integer"),
    ],
)
def test_rank_rejects_wrongly_typed_feature(
    client, golden_request, source, name, value, expected
):
    body = copy.deepcopy(golden_request)
    if source == "context":
        body["context"][name] = value
    else:
        body["candidates"][1]["features"][name] = value

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"].endswith(name)
    assert expected in error["message"]


def test_rank_rejects_invalid_id_in_list(client, golden_request):
    body = copy.deepcopy(golden_request)
    body["context"]["recent_video_ids"] = ["v1", 2.5, "v3"]

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == "context.recent_video_ids[1]"
    assert error["value"] == 2.5


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e39"])
def test_rank_rejects_non_finite_number(client, literal):
    content = (
        '{"candidates": [{"id": "v1", "features": '
        f'{{"video_duration_s": {literal}}}}}]}}'
    )

    response = client.post(
        "/v1/rank", content=content, headers={"Content-Type": "application/json"}
    )

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == 'candidates[0] (id "v1").features.video_duration_s'


def test_rank_rejects_non_finite_id_in_list(client):
    content = '{"context": {"recent_video_ids": [NaN]}, "candidates": [{"id": "v1"}]}'

    response = client.post(
        "/v1/rank", content=content, headers={"Content-Type": "application/json"}
    )

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == "context.recent_video_ids[0]"
    assert error["value"] == "NaN"


def test_rank_error_carries_request_id(client, golden_request):
    body = copy.deepcopy(golden_request)
    body["request_id"] = "bad-feature-7"
    body["candidates"][0]["features"]["video_duration_s"] = "long"

    response = client.post("/v1/rank", json=body)

    assert response.headers["X-Request-ID"] == "bad-feature-7"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"candidates": [{"id": 1.5}]}, "candidates[0].id"),
        ({"candidates": [{"id": True}]}, "candidates[0].id"),
        ({"candidates": [{"id": ""}]}, "candidates[0].id"),
        ({"candidates": [{"id": "v1"}], "top_k": 0}, "top_k"),
        ({"candidates": "v1"}, "candidates"),
        ({"context": {}}, "candidates"),
        ({"candidates": [], "topk": 3}, "topk"),
        ({"candidates": [], "request_id": "has space"}, "request_id"),
    ],
)
def test_rank_rejects_invalid_body(client, body, field):
    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["type"] == "invalid_request"
    assert error["field"] == field
    assert error["message"].startswith(field)


def test_rank_rejects_malformed_json(client):
    response = client.post(
        "/v1/rank",
        content='{"candidates": [',
        headers={"Content-Type": "application/json"},
    )

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["type"] == "invalid_request"
    assert "not valid JSON" in error["message"]
