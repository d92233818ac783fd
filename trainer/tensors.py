"""Raw input tensors from impression logs and from ranking requests.

Both paths use the contract in `app.contract`, the same one the service uses,
and produce the tensors described in docs/model-format.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from app.contract import (
    CANDIDATE_REQUEST_INPUT,
    Feature,
    FeatureSpec,
    category_ids,
    id_list_matrix,
)
from trainer.features import split_id_list

Tensors = dict[str, np.ndarray]


def log_tensors(spec: FeatureSpec, log: pd.DataFrame) -> Tensors:
    """Build tensors for every row of `log`, one context row per request.

    Context features are read from the first impression of each request,
    because every impression of one page shares the request context.
    """
    request_codes, first_rows = _request_index(log)
    tensors: Tensors = {CANDIDATE_REQUEST_INPUT: request_codes}

    for feature in spec.features:
        column = log[feature.name]
        if feature.source == "context":
            column = column.iloc[first_rows]
        tensors[feature.name] = _column_tensor(feature, column.tolist())
    return tensors


def _request_index(log: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    codes, _ = pd.factorize(log["request_id"], sort=False)
    _, first_rows = np.unique(codes, return_index=True)
    return codes.astype(np.int64), first_rows


def _column_tensor(feature: Feature, values: list[Any]) -> np.ndarray:
    if feature.kind == "numeric":
        return np.asarray(values, dtype=np.float32)

    if feature.kind == "categorical":
        return category_ids(values)

    lists = [split_id_list(v) for v in values]
    return id_list_matrix(lists, feature.transform["max_length"])


def request_tensors(spec: FeatureSpec, request: dict[str, Any]) -> Tensors:
    """Build tensors for one request in the `/v1/rank` body format.

    Omitted features and features sent as null take the spec's default, and a
    `value_from_id` feature takes the candidate's id. This mirrors what the
    service does, and the golden requests in each manifest check that the two
    agree.
    """
    context = request.get("context", {})
    candidates = request["candidates"]
    tensors: Tensors = {
        CANDIDATE_REQUEST_INPUT: np.zeros(len(candidates), dtype=np.int64)
    }

    for feature in spec.features:
        if feature.source == "context":
            values = [_given_or_default(feature, context.get(feature.name))]
        else:
            values = [_candidate_value(feature, c) for c in candidates]
        tensors[feature.name] = _request_tensor(feature, values)
    return tensors


def _candidate_value(feature: Feature, candidate: dict[str, Any]) -> Any:
    value = candidate.get("features", {}).get(feature.name)
    if value is None and feature.value_from_id:
        return candidate["id"]
    return _given_or_default(feature, value)


def _given_or_default(feature: Feature, value: Any) -> Any:
    return feature.default if value is None else value


def _request_tensor(feature: Feature, values: list[Any]) -> np.ndarray:
    if feature.kind == "id_list":
        return id_list_matrix(values, feature.transform["max_length"])
    return _column_tensor(feature, values)
