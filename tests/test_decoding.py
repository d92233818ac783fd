"""The orjson fast path accepts exactly the bodies the pydantic schema accepts."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from app.decoding import decode_request, parse_request_object
from app.errors import InvalidRequest
from app.schemas import RankRequest

CANDIDATE = {"id": "v1", "features": {"video_duration_s": 12.0}}

BODIES = [
    {"candidates": []},
    {"candidates": [CANDIDATE]},
    {"candidates": [{"id": 7}], "context": {"device": "tv"}, "top_k": 3},
    {"candidates": [{"id": "v1"}], "request_id": "abc-1"},
    {"candidates": [CANDIDATE], "top_k": None, "request_id": None},
    {},
    {"candidates": None},
    {"candidates": [CANDIDATE], "extra": 1},
    {"candidates": [{"id": "v1", "other": 1}]},
    {"candidates": [{"id": ""}]},
    {"candidates": [{"id": "x" * 257}]},
    {"candidates": [{"id": -1}]},
    {"candidates": [{"id": 2**62}]},
    {"candidates": [{"id": True}]},
    {"candidates": [{"id": 1.0}]},
    {"candidates": [{"id": None}]},
    {"candidates": [{}]},
    {"candidates": [{"id": "v1", "features": None}]},
    {"candidates": [{"id": "v1", "features": []}]},
    {"candidates": ["v1"]},
    {"candidates": [CANDIDATE], "context": None},
    {"candidates": [CANDIDATE], "context": []},
    {"candidates": [CANDIDATE], "top_k": 0},
    {"candidates": [CANDIDATE], "top_k": "2"},
    {"candidates": [CANDIDATE], "top_k": 2.0},
    {"candidates": [CANDIDATE], "top_k": True},
    {"candidates": [CANDIDATE], "request_id": ""},
    {"candidates": [CANDIDATE], "request_id": "has space"},
    {"candidates": [CANDIDATE], "request_id": 5},
    [CANDIDATE],
    "text",
]


def pydantic_accepts(body) -> bool:
    try:
        RankRequest.model_validate_json(json.dumps(body))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("body", BODIES, ids=[json.dumps(b)[:40] for b in BODIES])
def test_fast_path_agrees_with_the_schema(body):
    fast = parse_request_object(json.loads(json.dumps(body)))

    assert (fast is not None) == pydantic_accepts(body)


@pytest.mark.parametrize("body", BODIES, ids=[json.dumps(b)[:40] for b in BODIES])
def test_decode_request_accepts_or_names_the_field(body):
    text = json.dumps(body).encode()

    if pydantic_accepts(body):
        assert decode_request(text).candidates == body.get("candidates")
    else:
        with pytest.raises(InvalidRequest) as raised:
            decode_request(text)
        assert raised.value.field


def test_decode_request_reports_invalid_json_with_a_position():
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        decode_request(b'{"candidates": [}')


def test_decode_request_falls_back_to_pydantic_for_nan_tokens():
    # orjson rejects the NaN token, pydantic reads it; the encoder then
    # rejects it for a known feature and ignores it for an unknown one.
    body = b'{"candidates": [{"id": "v1", "features": {"x": NaN}}]}'

    parsed = decode_request(body)

    assert math.isnan(parsed.candidates[0]["features"]["x"])
