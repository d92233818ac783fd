"""A ranking endpoint written the first way a FastAPI user would write it.

It is the benchmark's reference for what the service's engineering buys:
pydantic validates every candidate as a model with typed feature fields,
Python loops build the input tensors one value at a time, onnxruntime runs
the same graph, Python sorts the scores, and a pydantic response model
serialises the result. It returns the same ranking order as the service.

Run it with `uvicorn load_tests.naive_app:create_app_from_env --factory`,
with `NAIVE_APP_MODEL_DIR` set to a model version directory.

NOTE: the feature fields and their defaults are those of the bundled model
`models/watchtime/1`; a model with other features needs this file changed,
as a hand-written endpoint would.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

from app.contract import PADDING_ID, category_id

MODEL_DIR_VARIABLE = "NAIVE_APP_MODEL_DIR"
RECENT_IDS_MAX_LENGTH = 50


class Context(BaseModel):
    """Features shared by all candidates of a request."""

    country: str | int = "US"
    device: str | int = "mobile"
    hour_of_day: str | int = 21
    recent_video_ids: list[str | int] = []


class CandidateFeatures(BaseModel):
    """Features of one candidate video."""

    video_id: str | int | None = None
    channel_id: str | int = "ch1817"
    category: str | int = "music"
    video_duration_s: float = 454.0
    video_age_days: float = 15.51099967956543
    previous_impressions: float = 0.0
    hours_since_channel_watch: float = 8760.0


class Candidate(BaseModel):
    """A candidate video and its features."""

    id: str | int
    features: CandidateFeatures = CandidateFeatures()


class RankRequest(BaseModel):
    """Body of `POST /v1/rank`."""

    request_id: str | None = None
    context: Context = Context()
    candidates: list[Candidate]
    top_k: int | None = None


class RankedItem(BaseModel):
    """One ranked candidate."""

    id: str | int
    rank: int
    expected_watch_time_s: float
    logit: float


class RankResponse(BaseModel):
    """Body of a `POST /v1/rank` response."""

    request_id: str | None
    items: list[RankedItem]


def build_inputs(request: RankRequest) -> dict[str, np.ndarray]:
    """Build the graph's input tensors with one Python loop over the candidates."""
    columns: dict[str, list] = {name: [] for name in CandidateFeatures.model_fields}
    for candidate in request.candidates:
        features = candidate.features
        video_id = candidate.id if features.video_id is None else features.video_id
        columns["video_id"].append(category_id(video_id))
        columns["channel_id"].append(category_id(features.channel_id))
        columns["category"].append(category_id(features.category))
        columns["video_duration_s"].append(features.video_duration_s)
        columns["video_age_days"].append(features.video_age_days)
        columns["previous_impressions"].append(features.previous_impressions)
        columns["hours_since_channel_watch"].append(features.hours_since_channel_watch)

    inputs = {
        name: np.array(values, dtype=np.int64 if name in _ID_COLUMNS else np.float32)
        for name, values in columns.items()
    }
    inputs.update(_context_inputs(request.context))
    inputs["candidate_request"] = np.zeros(len(request.candidates), dtype=np.int64)
    return inputs


_ID_COLUMNS = {"video_id", "channel_id", "category"}


def _context_inputs(context: Context) -> dict[str, np.ndarray]:
    recent = [category_id(v) for v in context.recent_video_ids[:RECENT_IDS_MAX_LENGTH]]
    if not recent:
        recent = [PADDING_ID]
    return {
        "country": np.array([category_id(context.country)], dtype=np.int64),
        "device": np.array([category_id(context.device)], dtype=np.int64),
        "hour_of_day": np.array([category_id(context.hour_of_day)], dtype=np.int64),
        "recent_video_ids": np.array([recent], dtype=np.int64),
    }


def create_app(model_dir: Path) -> FastAPI:
    """Build the naive endpoint around an onnxruntime session of the model."""
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    app = FastAPI(title="Naive ranking endpoint")

    @app.post("/v1/rank")
    def rank(request: RankRequest) -> RankResponse:
        watch_times, logits = session.run(
            ["expected_watch_time_s", "logit"], build_inputs(request)
        )
        scored = [
            (float(watch_times[row]), float(logits[row]), candidate.id)
            for row, candidate in enumerate(request.candidates)
        ]
        # sorted() is stable, so ties keep the request's order as in the service.
        ranked = sorted(scored, key=lambda item: item[0], reverse=True)
        items = [
            RankedItem(id=id_, rank=rank, expected_watch_time_s=watch_time, logit=logit)
            for rank, (watch_time, logit, id_) in enumerate(ranked[: request.top_k], 1)
        ]
        return RankResponse(request_id=request.request_id, items=items)

    return app


def create_app_from_env() -> FastAPI:
    """Build the endpoint for the model directory named by NAIVE_APP_MODEL_DIR."""
    return create_app(Path(os.environ[MODEL_DIR_VARIABLE]))
