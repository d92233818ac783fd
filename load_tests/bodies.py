"""Ranking request bodies built once as bytes, from a model's feature spec.

A candidate mix sets how many candidates each request has, for example `500`,
`1-5000` or `50:3,500:1` (three requests of 50 for each request of 500). The
same mix, feature spec and seed always give the same bodies, so the load
generator and the in-process reference measure identical requests.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import orjson

ID_RANGE = 1_000_000
"""Numeric suffixes of generated ids such as `v123` are drawn below this."""

DEFAULT_ID_LIST_LENGTH = 20
"""Longest generated id list when the spec's transform sets no `max_length`."""

_NUMBERED_ID = re.compile(r"^([A-Za-z_-]*)(\d+)$")
_MIX_PART = re.compile(r"^(\d+)(?:-(\d+))?(?::(\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class CountRange:
    """Candidate counts drawn uniformly from `low` to `high`, with a weight."""

    low: int
    high: int
    weight: float


@dataclass(frozen=True)
class CandidateMix:
    """Distribution of candidate counts per request, parsed from its label."""

    label: str
    ranges: tuple[CountRange, ...]

    @property
    def max_count(self) -> int:
        return max(part.high for part in self.ranges)

    def draw(self, rng: random.Random) -> int:
        """Draw the candidate count of one request."""
        weights = [part.weight for part in self.ranges]
        part = rng.choices(self.ranges, weights)[0]
        return rng.randint(part.low, part.high)


def parse_mix(label: str) -> CandidateMix:
    """Parse `N`, `LOW-HIGH` or weighted parts such as `50:3,500:1`.

    Raises ValueError naming the part that is invalid.
    """
    ranges = []
    for part in label.split(","):
        match = _MIX_PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(
                f"invalid candidate mix part {part!r} in {label!r}: expected N, "
                "LOW-HIGH or either followed by :WEIGHT, such as 50:3,500:1"
            )
        low = int(match.group(1))
        high = int(match.group(2) or low)
        weight = float(match.group(3) or 1)
        if not 1 <= low <= high or weight <= 0:
            raise ValueError(
                f"invalid candidate mix part {part!r}: counts must satisfy "
                "1 <= LOW <= HIGH and the weight must be positive"
            )
        ranges.append(CountRange(low, high, weight))
    return CandidateMix(label, tuple(ranges))


@dataclass(frozen=True)
class RequestBody:
    """One encoded `/v1/rank` body and its number of candidates."""

    content: bytes
    candidates: int


def build_bodies(
    features: list[dict[str, Any]], mix: CandidateMix, count: int, seed: int
) -> list[RequestBody]:
    """Build `count` request bodies whose values vary around the spec's examples.

    `features` are the feature descriptions of `GET /v1/model` or of a
    manifest's `feature_spec`. Every request sends every feature except those
    taken from the candidate id, as a candidate generator would.
    """
    rng = random.Random(seed)
    bodies = []
    for number in range(count):
        candidates = mix.draw(rng)
        request = _build_request(features, candidates, number, rng)
        bodies.append(RequestBody(orjson.dumps(request), candidates))
    return bodies


def _build_request(
    features: list[dict[str, Any]], candidates: int, number: int, rng: random.Random
) -> dict[str, Any]:
    # The service rejects a request that lists one video twice.
    ids = rng.sample(range(1, ID_RANGE), candidates)
    return {
        "request_id": f"bench-{number}",
        "context": _values(features, "context", rng),
        "candidates": [
            {"id": f"v{video}", "features": _values(features, "candidate", rng)}
            for video in ids
        ],
    }


def _values(
    features: list[dict[str, Any]], source: str, rng: random.Random
) -> dict[str, Any]:
    return {
        feature["name"]: _draw_value(feature, rng)
        for feature in features
        if feature["source"] == source and not feature.get("value_from_id")
    }


def _draw_value(feature: dict[str, Any], rng: random.Random) -> Any:
    example = feature["example"]
    if feature["kind"] == "id_list":
        max_length = feature.get("transform", {}).get(
            "max_length", DEFAULT_ID_LIST_LENGTH
        )
        length = rng.randint(0, max_length)
        template = example[0] if example else "v1"
        return [_vary_id(template, rng) for _ in range(length)]
    return _vary(example, feature["default"], rng)


def _vary(value: Any, default: Any, rng: random.Random) -> Any:
    # type() rather than isinstance(), because bool is a subclass of int.
    if type(value) is float:
        return round(abs(value or 1.0) * rng.lognormvariate(0.0, 0.8), 2)
    if type(value) is str:
        return _vary_id(value, rng) if _NUMBERED_ID.match(value) else _pick(value, rng)
    if type(value) is int:
        return rng.choice([value, default])
    return value


def _vary_id(template: str, rng: random.Random) -> str:
    numbered = _NUMBERED_ID.match(template)
    prefix = numbered.group(1) if numbered else template
    return f"{prefix}{rng.randrange(1, ID_RANGE)}"


def _pick(value: str, rng: random.Random) -> str:
    # Letters vary per request, so categorical values fall in several buckets.
    return rng.choice([value, value.lower(), value.upper(), value + "2"])
