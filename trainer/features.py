"""The default feature spec and how its parameters are fitted on a training log.

The features follow the ranking model of Covington, Adams and Sargin, "Deep
Neural Networks for YouTube Recommendations" (RecSys 2016): properties of the
candidate video, the user's history with the video and its channel, and the
request context. Each name is also a column of the canonical impression log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from app.contract import Cross, Feature, FeatureSpec

QUANTILE_KNOTS = 64
"""Number of training-set quantiles that define a numeric feature's CDF."""


@dataclass(frozen=True)
class Declaration:
    """A feature before training: everything except the fitted parameters."""

    name: str
    source: str
    kind: str
    description: str
    buckets: int = 0
    max_length: int = 0
    value_from_id: bool = False


DECLARATIONS: tuple[Declaration, ...] = (
    Declaration("country", "context", "categorical", "User country code.", 64),
    Declaration("device", "context", "categorical", "Device type of the request.", 16),
    Declaration("hour_of_day", "context", "categorical", "Local hour, 0 to 23.", 24),
    Declaration(
        "recent_video_ids",
        "context",
        "id_list",
        "Ids of the videos the user watched last, most recent first.",
        buckets=16384,
        max_length=50,
    ),
    Declaration(
        "video_id",
        "candidate",
        "categorical",
        "Candidate video id; taken from the candidate's id unless sent.",
        buckets=16384,
        value_from_id=True,
    ),
    Declaration(
        "channel_id", "candidate", "categorical", "Channel of the video.", 4096
    ),
    Declaration("category", "candidate", "categorical", "Upload type or topic.", 256),
    Declaration("video_duration_s", "candidate", "numeric", "Video length in seconds."),
    Declaration("video_age_days", "candidate", "numeric", "Days since the upload."),
    Declaration(
        "previous_impressions",
        "candidate",
        "numeric",
        "Earlier impressions of this video to this user.",
    ),
    Declaration(
        "hours_since_channel_watch",
        "candidate",
        "numeric",
        "Hours since the user last watched this channel; 8760 for never.",
    ),
)

CROSSES: tuple[Cross, ...] = (
    Cross("category_x_device", ("category", "device"), 4096),
    Cross("category_x_hour_of_day", ("category", "hour_of_day"), 8192),
    Cross("category_x_country", ("category", "country"), 8192),
)


def split_id_list(text: Any) -> list[str]:
    """Split a log's space-separated id list; missing values are empty lists."""
    if not isinstance(text, str) or not text:
        return []
    return text.split()


def fit_spec(log: pd.DataFrame) -> FeatureSpec:
    """Fit quantile knots, defaults and examples of every feature on `log`."""
    features = tuple(_fit_feature(log, declaration) for declaration in DECLARATIONS)
    return FeatureSpec(features=features, crosses=CROSSES)


def _fit_feature(log: pd.DataFrame, declaration: Declaration) -> Feature:
    column = log[declaration.name]

    if declaration.kind == "numeric":
        values = column.to_numpy(dtype=np.float64)
        default: Any = float(np.float32(np.median(values)))
        example: Any = default
        transform = quantile_cdf(values)
    elif declaration.kind == "categorical":
        default = _plain(column.mode().iloc[0])
        example = _plain(column.iloc[0])
        transform = {"type": "hash_bucket", "buckets": declaration.buckets}
    else:
        default = []
        example = split_id_list(column.iloc[int(column.str.len().argmax())])[:5]
        transform = {
            "type": "hash_bucket_mean",
            "buckets": declaration.buckets,
            "max_length": declaration.max_length,
        }

    return Feature(
        name=declaration.name,
        source=declaration.source,
        kind=declaration.kind,
        default=default,
        example=example,
        transform=transform,
        description=declaration.description,
        value_from_id=declaration.value_from_id,
    )


def quantile_cdf(values: np.ndarray) -> dict[str, Any]:
    """Return strictly increasing knots and their mid-rank empirical CDF values.

    Knots are rounded to float32 before deduplication, so the graph, which
    computes in float32, and the numpy reference use identical knots.
    """
    probabilities = np.linspace(0.0, 1.0, QUANTILE_KNOTS + 1)
    quantiles = np.quantile(values, probabilities).astype(np.float32)
    knots = np.unique(quantiles).astype(np.float64)

    ordered = np.sort(values.astype(np.float32).astype(np.float64))
    below = np.searchsorted(ordered, knots, side="left")
    at_or_below = np.searchsorted(ordered, knots, side="right")
    cdf = (below + at_or_below) / 2.0 / len(ordered)

    return {
        "type": "quantile_cdf",
        "knots": [float(k) for k in knots],
        "cdf": [float(c) for c in cdf],
    }


def _plain(value: Any) -> Any:
    """Convert numpy scalars from pandas into JSON-ready Python values."""
    return value.item() if isinstance(value, np.generic) else value
