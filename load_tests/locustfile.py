"""Load test of the ranking service: realistic ranking requests with locust.

Each simulated user reads the feature spec from `GET /v1/model` once, then
sends `POST /v1/rank` requests of a few hundred candidates whose feature
values vary around the spec's examples, as a candidate generator's would.
deploy/load/locust.conf runs it headless for a bounded time.
"""

from __future__ import annotations

import random
import re
from typing import Any

from locust import HttpUser, between, task

MIN_CANDIDATES = 100
MAX_CANDIDATES = 500
ID_RANGE = 20_000
"""Numeric suffixes of generated ids such as `v123` or `ch45` are drawn below
this, so requests spread over many hash buckets."""

_NUMBERED_ID = re.compile(r"^([A-Za-z_-]*)(\d+)$")


def vary(value: Any, default: Any, rng: random.Random) -> Any:
    """Return a value of the same kind as a feature's example, drawn around it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return round(value * rng.lognormvariate(0.0, 0.6), 2)
    if isinstance(value, int):
        return rng.choice([value, default])
    if isinstance(value, str):
        numbered = _NUMBERED_ID.match(value)
        if numbered:
            return f"{numbered.group(1)}{rng.randrange(1, ID_RANGE)}"
        return rng.choice([value, default])
    if isinstance(value, list):
        return [vary(item, item, rng) for item in value]
    return value


class RequestBuilder:
    """Builds ranking requests from the feature descriptions of `GET /v1/model`."""

    def __init__(self, description: dict[str, Any], rng: random.Random) -> None:
        self.features = description["features"]
        self.max_candidates = int(description.get("max_candidates", MAX_CANDIDATES))
        self.rng = rng

    def build(self, request_number: int) -> dict[str, Any]:
        """Return the body of one ranking request."""
        high = min(MAX_CANDIDATES, self.max_candidates)
        count = self.rng.randint(min(MIN_CANDIDATES, high), high)
        # The service rejects a request that lists one video twice.
        numbers = self.rng.sample(range(1, ID_RANGE), count)
        return {
            "request_id": f"load-{request_number}",
            "context": self._values("context"),
            "candidates": [self._candidate(number) for number in numbers],
        }

    def _candidate(self, number: int) -> dict[str, Any]:
        return {"id": f"v{number}", "features": self._values("candidate")}

    def _values(self, source: str) -> dict[str, Any]:
        return {
            feature["name"]: vary(feature["example"], feature["default"], self.rng)
            for feature in self.features
            if feature["source"] == source and not feature.get("value_from_id")
        }


class RankingUser(HttpUser):
    """A candidate generator that requests a ranking every 50 to 200 ms."""

    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        response = self.client.get("/v1/model")
        response.raise_for_status()
        self.builder = RequestBuilder(response.json(), random.Random())
        self.sent = 0

    @task(20)
    def rank(self) -> None:
        self.sent += 1
        self.client.post("/v1/rank", json=self.builder.build(self.sent))

    @task(1)
    def describe_model(self) -> None:
        self.client.get("/v1/model")
