"""Ranking of one request's candidates by expected watch time, without HTTP."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT, category_id
from app.errors import DuplicateCandidate, TooManyCandidates
from app.metrics import ServiceMetrics
from app.model import RankingModel
from app.schemas import Candidate, CandidateId, RankRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankedCandidate:
    """One candidate of a ranking with its scores."""

    id: CandidateId
    rank: int
    expected_watch_time_s: float
    logit: float


class RankingService:
    """Scores a request's candidates with the model and sorts them.

    The service owns no HTTP concepts: it raises `ServiceError` subclasses,
    which carry their status code for the HTTP layer.
    """

    def __init__(
        self, model: RankingModel, max_candidates: int, metrics: ServiceMetrics
    ) -> None:
        self.model = model
        self.max_candidates = max_candidates
        self.metrics = metrics

    def rank(self, request: RankRequest) -> list[RankedCandidate]:
        """Return the candidates sorted by expected watch time, highest first.

        Ties keep the request's order. The list contains `top_k` items when the
        request sets it. An empty candidate list returns an empty ranking
        without running the model.
        """
        self._check_candidates(request.candidates)
        self.metrics.candidates_per_request.observe(len(request.candidates))
        if not request.candidates:
            return []

        outputs = self._score(request)

        started = time.perf_counter()
        ranking = _sort(request.candidates, outputs, request.top_k)
        self._observe_stage("sort", started)
        return ranking

    def _check_candidates(self, candidates: list[Candidate]) -> None:
        if len(candidates) > self.max_candidates:
            raise TooManyCandidates(
                f"the request has {len(candidates)} candidates, more than the "
                f"maximum of {self.max_candidates} set by WATCHTIME_MAX_CANDIDATES; "
                "split the candidates over several requests",
                field="candidates",
                value=len(candidates),
            )
        _check_unique_ids(candidates)

    def _score(self, request: RankRequest) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        batch = self.model.encoder.encode([request])
        self._observe_stage("encode", started)
        if batch.unknown_features:
            self.metrics.unknown_features.inc(batch.unknown_features)
            logger.debug("ignored %d unknown feature values", batch.unknown_features)

        started = time.perf_counter()
        outputs = self.model.predict(batch.tensors)
        self._observe_stage("predict", started)
        return outputs

    def _observe_stage(self, stage: str, started: float) -> None:
        self.metrics.stage_duration.labels(stage).observe(time.perf_counter() - started)


def _check_unique_ids(candidates: list[Candidate]) -> None:
    # The contract's category id makes 13 and "13" the same video, as the
    # model's id features see them.
    first_index: dict[int, int] = {}
    for index, candidate in enumerate(candidates):
        key = category_id(candidate.id)
        earlier = first_index.setdefault(key, index)
        if earlier != index:
            raise DuplicateCandidate(
                f"candidates[{earlier}] and candidates[{index}] have the same id "
                f"{_describe_ids(candidates[earlier].id, candidate.id)}; "
                "send each video once",
                field=f"candidates[{index}].id",
                value=candidate.id,
            )


def _describe_ids(first: CandidateId, second: CandidateId) -> str:
    if first == second:
        return json.dumps(first)
    return f"({json.dumps(first)} and {json.dumps(second)} name one video)"


def _sort(
    candidates: list[Candidate], outputs: dict[str, np.ndarray], top_k: int | None
) -> list[RankedCandidate]:
    watch_times = outputs[WATCH_TIME_OUTPUT]
    logits = outputs[LOGIT_OUTPUT]

    # A stable sort of the negated scores puts ties in request order.
    order = np.argsort(-watch_times, kind="stable")[:top_k]
    return [
        RankedCandidate(
            id=candidates[row].id,
            rank=rank,
            expected_watch_time_s=float(watch_times[row]),
            logit=float(logits[row]),
        )
        for rank, row in enumerate(order.tolist(), start=1)
    ]
