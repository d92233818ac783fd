"""JSON bodies of the HTTP API.

Feature values stay plain JSON values in `dict[str, Any]` here because their
types depend on the loaded model. `app.encoding` checks them against the
model's feature spec, one column at a time.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from app.contract import category_id

CandidateId = str | int

MAX_ID_LENGTH = 256
"""Maximum length of a string candidate id."""

STATIC_RANK_EXAMPLE: dict[str, Any] = {
    "request_id": "home-feed-7f3a",
    "context": {"country": "US", "device": "mobile", "hour_of_day": 21},
    "candidates": [
        {"id": "v101", "features": {"video_duration_s": 312.0, "category": "music"}},
        {"id": "v202", "features": {"video_duration_s": 48.0}},
        {"id": "v303", "features": {}},
    ],
    "top_k": 2,
}
"""Request shown in the API docs until a model is loaded."""


class Candidate(BaseModel):
    """One video to rank, with its own feature values."""

    model_config = ConfigDict(extra="forbid")

    id: CandidateId = Field(
        description="Video id: a string, or an integer in [0, 2**62)."
    )
    features: dict[str, Any] = Field(
        default_factory=dict,
        description="Values of the model's candidate features by name. "
        "A missing or null feature takes its default.",
    )

    @field_validator("id", mode="before")
    @classmethod
    def _check_id(cls, value: Any) -> Any:
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
            return _encodable(value)
        if isinstance(value, int) and not isinstance(value, bool) and _is_id(value):
            return value
        raise PydanticCustomError(
            "candidate_id",
            "Input should be a string of 1 to {max_length} characters "
            "or an integer in [0, 2**62)",
            {"max_length": MAX_ID_LENGTH},
        )


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "candidate_id", "Input should be valid Unicode, without lone surrogates"
        ) from None
    return value


def _is_id(value: int) -> bool:
    try:
        category_id(value)
    except ValueError:
        return False
    return True


class RankRequest(BaseModel):
    """Body of `POST /v1/rank`: one user's request with its candidates."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [STATIC_RANK_EXAMPLE]}
    )

    request_id: str | None = Field(
        default=None,
        pattern=r"^[\x21-\x7e]{1,128}$",
        description="Id echoed in the response and the X-Request-ID header, of "
        "1 to 128 visible ASCII characters. A random one is made when omitted.",
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Values of the model's context features by name, "
        "shared by all candidates.",
    )
    candidates: list[Candidate] = Field(description="Videos to rank.")
    top_k: StrictInt | None = Field(
        default=None, ge=1, description="Number of items to return, all if omitted."
    )


class ModelReference(BaseModel):
    """Name and version of the model that scored a response."""

    name: str
    version: int


class RankedItem(BaseModel):
    """One candidate of the ranking with its scores."""

    id: CandidateId
    rank: int = Field(description="Position in the ranking, starting at 1.")
    expected_watch_time_s: float = Field(
        description="Expected watch time in seconds, by which items are ranked: "
        "exp(logit), or exp(logit) * (1 - click_probability) with a click head."
    )
    logit: float = Field(
        description="The model's logit: Wx + b of a linear model, or the output "
        "of a network's last layer."
    )
    click_probability: float | None = Field(
        default=None,
        description="Click probability, sent only by models with a click head; "
        "their expected watch time is exp(logit) * (1 - click_probability).",
    )


class RankResponse(BaseModel):
    """Body of a successful `POST /v1/rank` response."""

    request_id: str
    model: ModelReference
    items: list[RankedItem]


class FeatureDescription(BaseModel):
    """A feature as a client needs to know it to build requests."""

    name: str
    source: str = Field(description="`context` or `candidate`.")
    kind: str = Field(description="`numeric`, `categorical` or `id_list`.")
    default: Any = Field(description="Value used when the feature is not sent.")
    example: Any
    description: str
    value_from_id: bool = Field(
        description="True when the candidate's id is the value unless sent."
    )


class OutputDescription(BaseModel):
    """An output of the model graph."""

    name: str
    dtype: str
    description: str


class ModelDescription(BaseModel):
    """Body of `GET /v1/model`: what the loaded model expects and returns."""

    name: str
    version: int
    variant: str | None
    created_at: str | None
    max_candidates: int
    features: list[FeatureDescription]
    outputs: list[OutputDescription]
    metrics: dict[str, Any]
    worker_pid: int = Field(
        description="Process id of the worker that answered; each worker "
        "serves its own copy of the model."
    )


class ErrorDetail(BaseModel):
    """Description of a failed request, with the field and value that caused it."""

    type: str = Field(description="Condition, such as `invalid_feature`.")
    message: str
    field: str | None = Field(
        default=None, description="Path of the invalid value in the request body."
    )
    value: Any = Field(default=None, description="The invalid value, shortened.")


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorDetail


class ReloadResponse(BaseModel):
    """Result of `POST /v1/admin/reload` and the model served afterwards."""

    result: str = Field(description="`loaded` or `unchanged`.")
    name: str | None
    version: int | None
