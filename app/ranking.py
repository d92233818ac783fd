"""Ranking of one request's candidates by expected watch time, without HTTP.

A ranking runs five timed stages: decode the JSON body, build the feature
tensors, run the model, sort, and encode the JSON response. The model is read
once at the start, so a hot reload never mixes two versions in one ranking.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.batching import Batcher
from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT
from app.decoding import ParsedRequest, decode_request
from app.encoding import DEFAULT_LIMITS, InputLimits, string_aware_ids
from app.errors import (
    DuplicateCandidate,
    ModelNotReady,
    ServiceError,
    TooManyCandidates,
)
from app.logging import bind_request_context
from app.metrics import ServiceMetrics, observe_many
from app.model import RankingModel
from app.model_manager import ModelManager
from app.schemas import CandidateId

CLICK_PROBABILITY_OUTPUT = "click_probability"

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankOutcome:
    """A finished ranking: the model that scored it and the encoded response."""

    request_id: str
    model: RankingModel
    body: bytes


class RankingService:
    """Scores a request's candidates with the served model and sorts them.

    The service owns no HTTP concepts: it raises `ServiceError` subclasses,
    which carry their status code for the HTTP layer.
    """

    def __init__(
        self,
        models: ModelManager,
        max_candidates: int,
        metrics: ServiceMetrics,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self.models = models
        self.max_candidates = max_candidates
        self.metrics = metrics
        self.limits = limits
        self.batcher: Batcher | None = None
        """Shares onnxruntime calls between requests when batching is on."""

    def rank_json(self, body: bytes, header_request_id: str | None) -> RankOutcome:
        """Rank a JSON request body and return the JSON response body.

        Errors raised after the request id is known carry it in `request_id`.
        """
        model = self.models.current
        if model is None:
            raise ModelNotReady(
                "the model is not loaded yet, so retry when /readyz returns 200"
            )

        with self._stage("decode"):
            request = decode_request(body)
        request_id = choose_request_id(request.request_id, header_request_id)
        bind_request_context(request_id, f"{model.name}/{model.version}")

        try:
            ranking = self.rank(model, request)
        except ServiceError as error:
            error.request_id = request_id
            raise

        with self._stage("encode"):
            content = encode_response(request_id, model, ranking)
        logger.debug("ranked %d candidates", len(request.candidates))
        return RankOutcome(request_id, model, content)

    def rank(self, model: RankingModel, request: ParsedRequest) -> list[dict[str, Any]]:
        """Return the response items, sorted by expected watch time, highest first.

        Ties keep the request's order. The list holds `top_k` items when the
        request sets it. An empty candidate list returns an empty ranking
        without running the model.
        """
        self._check_candidates(request.candidates)
        self.metrics.candidates_per_request.observe(len(request.candidates))
        if not request.candidates:
            # The context is still checked, so a client that sends a bad
            # value learns it on every request, not only on full ones.
            with self._stage("features"):
                model.encoder.encode([request], self.limits)
            return []

        outputs = self._score(model, request)

        with self._stage("sort"):
            watch_times = outputs[WATCH_TIME_OUTPUT]
            # A stable sort of the negated scores puts ties in request order.
            order = np.argsort(-watch_times, kind="stable")[: request.top_k]
            items = ranked_items(request.candidates, outputs, order)
        observe_many(self.metrics.predicted_watch_time, watch_times[order])
        return items

    def _check_candidates(self, candidates: list[dict[str, Any]]) -> None:
        if len(candidates) > self.max_candidates:
            raise TooManyCandidates(
                f"the request has {len(candidates)} candidates, more than the "
                f"maximum of {self.max_candidates} set by WATCHTIME_MAX_CANDIDATES; "
                "split the candidates over several requests",
                field="candidates",
                value=len(candidates),
            )
        _check_unique_ids(candidates)

    def _score(
        self, model: RankingModel, request: ParsedRequest
    ) -> dict[str, np.ndarray]:
        with self._stage("features"):
            batch = model.encoder.encode([request], self.limits)
        if batch.unknown_features:
            self.metrics.unknown_features.inc(batch.unknown_features)
            logger.debug("ignored %d unknown feature values", batch.unknown_features)

        with self._stage("inference"):
            if self.batcher is not None:
                return self.batcher.predict(model, batch.tensors, batch.candidate_total)
            outputs = model.predict(batch.tensors)
        self.metrics.batch_rows.observe(batch.candidate_total)
        return outputs

    @contextmanager
    def _stage(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self.metrics.stage_duration.labels(stage).observe(elapsed)


def choose_request_id(body_request_id: str | None, header: str | None) -> str:
    """Return the body's request id, else a valid header value, else a new one."""
    if body_request_id:
        return body_request_id
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def encode_response(
    request_id: str, model: RankingModel, items: list[dict[str, Any]]
) -> bytes:
    """Serialise the `/v1/rank` response body."""
    body = {
        "request_id": request_id,
        "model": {"name": model.name, "version": model.version},
        "items": items,
    }
    return orjson.dumps(body)


def ranked_items(
    candidates: list[dict[str, Any]],
    outputs: dict[str, np.ndarray],
    order: np.ndarray,
) -> list[dict[str, Any]]:
    """Build the response items of the candidates at `order`, ranked from 1."""
    rows = order.tolist()
    ids = [candidates[row]["id"] for row in rows]
    watch_times = outputs[WATCH_TIME_OUTPUT][order].tolist()
    logits = outputs[LOGIT_OUTPUT][order].tolist()
    ranks = range(1, len(rows) + 1)
    items = [
        {"id": i, "rank": r, "expected_watch_time_s": w, "logit": g}
        for i, r, w, g in zip(ids, ranks, watch_times, logits, strict=True)
    ]

    click_probabilities = outputs.get(CLICK_PROBABILITY_OUTPUT)
    if click_probabilities is not None:
        chosen = click_probabilities[order].tolist()
        for item, probability in zip(items, chosen, strict=True):
            item["click_probability"] = probability
    return items


def _check_unique_ids(candidates: list[dict[str, Any]]) -> None:
    # The contract's category id makes 13 and "13" the same video, as the
    # model's id features see them. np.unique tells whether any id repeats,
    # and only then does a loop find the first pair to name it.
    ids = string_aware_ids([c["id"] for c in candidates])
    if len(np.unique(ids)) == len(ids):
        return

    first_index: dict[int, int] = {}
    for index, key in enumerate(ids.tolist()):
        earlier = first_index.setdefault(key, index)
        if earlier != index:
            first_id, second_id = candidates[earlier]["id"], candidates[index]["id"]
            raise DuplicateCandidate(
                f"candidates[{earlier}] and candidates[{index}] have the same id "
                f"{_describe_ids(first_id, second_id)}; send each video once",
                field=f"candidates[{index}].id",
                value=second_id,
            )


def _describe_ids(first: CandidateId, second: CandidateId) -> str:
    if first == second:
        return json.dumps(first)
    return f"({json.dumps(first)} and {json.dumps(second)} name one video)"
