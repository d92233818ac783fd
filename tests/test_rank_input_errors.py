"""Inputs of /v1/rank that are rejected with a clear 4xx, against a real server."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["service_fixtures"]

ONE_CANDIDATE = {"context": {}, "candidates": [{"id": "v1"}]}


def post_raw(client, text: str, content_type: str = "application/json"):
    return client.post(
        "/v1/rank", content=text.encode("utf-8"), headers={"Content-Type": content_type}
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"candidates": [{"id": "\\ud800"}]}',
        '{"candidates": [{"id": "v1", "features": {"category": "\\ud800"}}]}',
        '{"context": {"recent_video_ids": ["\\ud800"]}, "candidates": [{"id": "v1"}]}',
        '{"request_id": "\\ud800", "candidates": [{"id": "v1"}]}',
        '{"\\ud800": 1, "candidates": [{"id": "v1"}]}',
    ],
)
def test_rank_rejects_lone_surrogates(client, text):
    response = post_raw(client, text)

    assert response.status_code == 422
    assert json.loads(response.text)["error"]["message"]


def test_rank_rejects_a_candidate_feature_in_context(client):
    body = {"context": {"category": "gaming"}, "candidates": [{"id": "v1"}]}

    response = client.post("/v1/rank", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "context.category"
    assert "send it in each candidate's features" in response.json()["error"]["message"]


def test_rank_rejects_a_context_feature_in_a_candidate(client):
    body = {"candidates": [{"id": "v1"}, {"id": "v2", "features": {"hour_of_day": 3}}]}

    response = client.post("/v1/rank", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "candidates[1].features.hour_of_day"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded"]
)
def test_rank_rejects_a_body_not_declared_as_json(client, content_type):
    response = post_raw(client, json.dumps(ONE_CANDIDATE), content_type)

    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]["message"]


@pytest.mark.parametrize("charset", ["utf-16", "latin-1"])
def test_rank_rejects_json_in_another_charset(client, charset):
    content_type = f"application/json; charset={charset}"

    response = post_raw(client, json.dumps(ONE_CANDIDATE), content_type)

    assert response.status_code == 415
    assert "UTF-8 JSON" in response.json()["error"]["message"]


def test_rank_accepts_json_with_a_charset(client):
    response = post_raw(
        client, json.dumps(ONE_CANDIDATE), "application/json; charset=utf-8"
    )

    assert response.status_code == 200


@pytest.mark.parametrize("top_k", ["2", 2.0, True, 0, -1])
def test_rank_rejects_a_top_k_that_is_not_a_positive_integer(client, top_k):
    response = client.post("/v1/rank", json=ONE_CANDIDATE | {"top_k": top_k})

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "top_k"


def test_rank_rejects_invalid_utf8(client):
    response = client.post(
        "/v1/rank",
        content=b'{"candidates": [{"id": "\xff"}]}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]["message"]
