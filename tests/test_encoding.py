"""Encoding of ranking requests into raw tensors, with the trainer's feature spec."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from app.contract import CANDIDATE_REQUEST_INPUT, PADDING_ID, FeatureSpec, category_id
from app.decoding import parse_request_object
from app.encoding import FeatureEncoder
from app.errors import InvalidFeature
from trainer.tensors import request_tensors


@pytest.fixture(scope="module")
def spec(manifest: dict[str, Any]) -> FeatureSpec:
    return FeatureSpec.from_dict(manifest["feature_spec"])


@pytest.fixture(scope="module")
def encoder(spec: FeatureSpec) -> FeatureEncoder:
    return FeatureEncoder(spec)


@pytest.fixture
def golden_body(manifest: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(manifest["golden"][0]["request"])


def encode(encoder: FeatureEncoder, *bodies: dict[str, Any]):
    return encoder.encode([parse_request_object(body) for body in bodies])


def test_encode_matches_trainer_tensors(encoder, spec, golden_body):
    expected = request_tensors(spec, golden_body)

    batch = encode(encoder, golden_body)

    assert batch.tensors.keys() == expected.keys()
    for name, tensor in expected.items():
        np.testing.assert_array_equal(batch.tensors[name], tensor, err_msg=name)
        assert batch.tensors[name].dtype == tensor.dtype, name


def test_encode_shapes_one_request(encoder, spec, golden_body):
    count = len(golden_body["candidates"])

    batch = encode(encoder, golden_body)

    for feature in spec.features:
        rows = 1 if feature.source == "context" else count
        assert batch.tensors[feature.name].shape[0] == rows, feature.name
    assert batch.tensors["recent_video_ids"].ndim == 2
    assert batch.tensors[CANDIDATE_REQUEST_INPUT].tolist() == [0] * count


def test_encode_batch_maps_candidates_to_requests(encoder, manifest):
    first = manifest["golden"][0]["request"]
    second = manifest["golden"][1]["request"]
    counts = [len(first["candidates"]), len(second["candidates"])]

    batch = encode(encoder, first, second)

    expected_rows = [0] * counts[0] + [1] * counts[1]
    assert batch.tensors[CANDIDATE_REQUEST_INPUT].tolist() == expected_rows
    assert batch.tensors["country"].shape == (2,)
    assert batch.candidate_counts == tuple(counts)


def test_encode_batch_error_names_request(encoder, manifest):
    first = manifest["golden"][0]["request"]
    second = copy.deepcopy(manifest["golden"][1]["request"])
    second["candidates"][1]["features"]["video_age_days"] = "old"
    candidate_id = second["candidates"][1]["id"]

    with pytest.raises(InvalidFeature) as raised:
        encode(encoder, first, second)

    expected = (
        f'requests[1].candidates[1] (id "{candidate_id}").features.video_age_days'
    )
    assert raised.value.field == expected


def test_encode_missing_features_take_defaults(encoder, spec):
    body = {"candidates": [{"id": "v1"}]}

    batch = encode(encoder, body)

    duration = spec.by_name("video_duration_s").default
    country = spec.by_name("country").default
    assert batch.tensors["video_duration_s"].tolist() == [np.float32(duration)]
    assert batch.tensors["country"].tolist() == [category_id(country)]
    assert batch.tensors["recent_video_ids"].tolist() == [[PADDING_ID]]


def test_encode_video_id_comes_from_candidate_id(encoder):
    body = {"candidates": [{"id": "v7"}, {"id": 42}]}

    batch = encode(encoder, body)

    assert batch.tensors["video_id"].tolist() == [category_id("v7"), 42]


def test_encode_sent_video_id_wins_over_candidate_id(encoder):
    body = {"candidates": [{"id": "v7", "features": {"video_id": "v8"}}]}

    batch = encode(encoder, body)

    assert batch.tensors["video_id"].tolist() == [category_id("v8")]


def test_encode_integer_and_decimal_string_are_one_category(encoder):
    as_int = {"context": {"hour_of_day": 7}, "candidates": []}
    as_str = {"context": {"hour_of_day": "7"}, "candidates": []}

    int_batch = encode(encoder, as_int)
    str_batch = encode(encoder, as_str)

    assert int_batch.tensors["hour_of_day"].tolist() == [7]
    assert str_batch.tensors["hour_of_day"].tolist() == [7]


def test_encode_pads_id_lists(encoder):
    first = {"context": {"recent_video_ids": ["v1", "v2", "v3"]}, "candidates": []}
    second = {"context": {"recent_video_ids": ["v4"]}, "candidates": []}

    batch = encode(encoder, first, second)

    matrix = batch.tensors["recent_video_ids"]
    assert matrix.shape == (2, 3)
    assert matrix[1].tolist() == [category_id("v4"), PADDING_ID, PADDING_ID]


def test_encode_keeps_first_ids_up_to_max_length(encoder, spec):
    max_length = spec.by_name("recent_video_ids").transform["max_length"]
    ids = [f"v{i}" for i in range(max_length + 10)]
    body = {"context": {"recent_video_ids": ids}, "candidates": []}

    batch = encode(encoder, body)

    matrix = batch.tensors["recent_video_ids"]
    assert matrix.shape == (1, max_length)
    assert matrix[0, -1] == category_id(ids[max_length - 1])


def test_encode_with_no_candidates_has_empty_columns(encoder):
    batch = encode(encoder, {"candidates": []})

    assert batch.tensors["video_duration_s"].shape == (0,)
    assert batch.tensors[CANDIDATE_REQUEST_INPUT].shape == (0,)
    assert batch.candidate_total == 0


def test_encode_accepts_integer_for_numeric(encoder):
    body = {"candidates": [{"id": "v1", "features": {"video_duration_s": 90}}]}

    batch = encode(encoder, body)

    assert batch.tensors["video_duration_s"].tolist() == [90.0]


def test_encode_counts_unknown_features(encoder):
    body = {
        "context": {"country": "US", "weather": "rain"},
        "candidates": [
            {"id": "v1", "features": {"category": "news", "colour": "red"}},
            {"id": "v2", "features": {"likes": 3, "shares": 1}},
        ],
    }

    batch = encode(encoder, body)

    assert batch.unknown_features == 4


@pytest.mark.parametrize(
    ("features", "field", "value"),
    [
        ({"video_duration_s": "60"}, "video_duration_s", "60"),
        ({"video_duration_s": True}, "video_duration_s", True),
        ({"video_duration_s": 10**400}, "video_duration_s", None),
        ({"video_age_days": 1e39}, "video_age_days", 1e39),
        ({"category": 1.0}, "category", 1.0),
        ({"category": False}, "category", False),
        ({"channel_id": 2**62}, "channel_id", 2**62),
        ({"channel_id": ["ch1"]}, "channel_id", ["ch1"]),
    ],
)
def test_encode_rejects_invalid_candidate_value(encoder, features, field, value):
    body = {"candidates": [{"id": "v0"}, {"id": "v12", "features": features}]}

    with pytest.raises(InvalidFeature) as raised:
        encode(encoder, body)

    assert raised.value.field == f'candidates[1] (id "v12").features.{field}'
    assert raised.value.status_code == 422
    if value is not None:
        assert raised.value.value == value


def test_encode_error_message_says_what_to_send(encoder, spec):
    body = {"candidates": [{"id": "v1", "features": {"video_age_days": "new"}}]}

    with pytest.raises(InvalidFeature) as raised:
        encode(encoder, body)

    default = spec.by_name("video_age_days").default
    message = str(raised.value)
    assert 'got the string "new"' in message
    assert "expected a finite number" in message
    assert f"use the default {default}" in message


def test_encode_rejects_non_list_id_list(encoder):
    body = {"context": {"recent_video_ids": "v1,v2"}, "candidates": []}

    with pytest.raises(InvalidFeature) as raised:
        encode(encoder, body)

    assert raised.value.field == "context.recent_video_ids"


def test_encode_rejects_invalid_id_inside_list(encoder):
    body = {"context": {"recent_video_ids": ["v1", None]}, "candidates": []}

    with pytest.raises(InvalidFeature) as raised:
        encode(encoder, body)

    assert raised.value.field == "context.recent_video_ids[1]"


def test_encoder_rejects_spec_with_invalid_default(manifest):
    data = copy.deepcopy(manifest["feature_spec"])
    numeric = next(f for f in data["features"] if f["kind"] == "numeric")
    numeric["default"] = "median"

    with pytest.raises(ValueError, match="default of"):
        FeatureEncoder(FeatureSpec.from_dict(data))


def test_encoder_rejects_id_list_without_max_length(manifest):
    data = copy.deepcopy(manifest["feature_spec"])
    id_list = next(f for f in data["features"] if f["kind"] == "id_list")
    del id_list["transform"]["max_length"]

    with pytest.raises(ValueError, match="max_length"):
        FeatureEncoder(FeatureSpec.from_dict(data))
