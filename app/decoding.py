"""Decoding of `/v1/rank` bodies without a pydantic object per candidate.

orjson parses the body and a few type checks per candidate confirm its shape.
Only when a check fails does pydantic validate the body, because its error
names the field and the value precisely; a valid body never pays for it. The
checks below accept exactly what `app.schemas.RankRequest` accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from app.schemas import MAX_ID_LENGTH, RankRequest
from app.validation import invalid_request

REQUEST_KEYS = frozenset({"request_id", "context", "candidates", "top_k"})
CANDIDATE_KEYS = frozenset({"id", "features"})
ID_LIMIT = 1 << 62

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_EMPTY: dict[str, Any] = {}


@dataclass(frozen=True)
class ParsedRequest:
    """A valid `/v1/rank` body as plain Python values.

    Each candidate is the decoded JSON object, with an `id` and, when sent, a
    `features` object.
    """

    request_id: str | None
    context: dict[str, Any]
    candidates: list[dict[str, Any]]
    top_k: int | None


def candidate_features(candidate: dict[str, Any]) -> dict[str, Any]:
    """Return a candidate's feature values, empty when none were sent."""
    return candidate.get("features") or _EMPTY


def decode_request(body: bytes) -> ParsedRequest:
    """Parse and check a body; raise InvalidRequest naming the field otherwise."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _validate_with_pydantic(body)

    parsed = parse_request_object(document)
    return parsed if parsed is not None else _validate_with_pydantic(body)


def parse_request_object(document: Any) -> ParsedRequest | None:
    """Return the request if the decoded JSON has the right shape, else None."""
    if type(document) is not dict or not document.keys() <= REQUEST_KEYS:
        return None

    request_id = document.get("request_id")
    context = document.get("context", _EMPTY)
    candidates = document.get("candidates")
    top_k = document.get("top_k")
    if not (
        _is_request_id(request_id)
        and type(context) is dict
        and type(candidates) is list
        and (top_k is None or (type(top_k) is int and top_k >= 1))
        and all(map(_is_candidate, candidates))
    ):
        return None
    return ParsedRequest(request_id, context, candidates, top_k)


def _is_request_id(value: Any) -> bool:
    return value is None or (type(value) is str and bool(_REQUEST_ID.fullmatch(value)))


def _is_candidate(candidate: Any) -> bool:
    if type(candidate) is not dict or not candidate.keys() <= CANDIDATE_KEYS:
        return False

    features = candidate.get("features", _EMPTY)
    candidate_id = candidate.get("id")
    if type(features) is not dict:
        return False
    if type(candidate_id) is str:
        return 0 < len(candidate_id) <= MAX_ID_LENGTH
    return type(candidate_id) is int and 0 <= candidate_id < ID_LIMIT


def _validate_with_pydantic(body: bytes) -> ParsedRequest:
    try:
        request = RankRequest.model_validate_json(body)
    except ValidationError as error:
        raise invalid_request(error.errors()) from None

    # orjson and pydantic disagree only on corner cases; pydantic's result is
    # then used, with its candidates turned back into plain objects.
    candidates = [{"id": c.id, "features": c.features} for c in request.candidates]
    return ParsedRequest(request.request_id, request.context, candidates, request.top_k)
