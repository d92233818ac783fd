"""A numpy computation of a linear head from the manifest's parameters.

It repeats in float64 what the ONNX graph does in float32, from nothing but
the feature spec and a `{"bias", "weights"}` parameter block, so a graph can
be checked against the model it claims to be.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.contract import CANDIDATE_REQUEST_INPUT, Cross, FeatureSpec

Tensors = dict[str, np.ndarray]


def numeric_basis(values: np.ndarray, transform: dict[str, Any]) -> np.ndarray:
    """Return the `[x̃, x̃², √x̃]` columns of the quantile-normalised values."""
    knots = np.asarray(transform["knots"], dtype=np.float64)
    cdf = np.asarray(transform["cdf"], dtype=np.float64)
    normalised = np.interp(values.astype(np.float64), knots, cdf)
    return np.column_stack([normalised, normalised**2, np.sqrt(normalised)])


def buckets_of(ids: np.ndarray, buckets: int) -> np.ndarray:
    """Map non-negative ids to buckets; padding ids map to bucket 0."""
    return np.maximum(ids, 0) % buckets


def cross_buckets(spec: FeatureSpec, cross: Cross, tensors: Tensors) -> np.ndarray:
    """Return the cross's bucket for each candidate row."""
    candidate_request = tensors[CANDIDATE_REQUEST_INPUT]
    sides = []
    for name in cross.features:
        feature = spec.by_name(name)
        width = int(feature.transform["buckets"])
        bucket = buckets_of(tensors[name], width)
        if feature.source == "context":
            bucket = bucket[candidate_request]
        sides.append((bucket, width))

    (first, _), (second, second_width) = sides
    return (first * second_width + second) % cross.buckets


def linear_logit(
    spec: FeatureSpec, parameters: dict[str, Any], tensors: Tensors
) -> np.ndarray:
    """Return `Wx + b` per candidate row for one linear parameter block."""
    tables = {
        name: np.asarray(weights, dtype=np.float64)[:, None]
        for name, weights in parameters["weights"].items()
    }
    bias = np.array([float(parameters["bias"])])
    return first_layer_sum(spec, tables, bias, tensors)[:, 0]


def first_layer_sum(
    spec: FeatureSpec,
    tables: dict[str, np.ndarray],
    bias: np.ndarray,
    tensors: Tensors,
) -> np.ndarray:
    """Return the (candidates, units) sums of the rows the transforms select.

    Each feature and cross has a table with one row per design column and one
    column per unit, so a linear model is the case of a single unit.
    """
    candidate_request = tensors[CANDIDATE_REQUEST_INPUT]
    total = np.tile(bias, (len(candidate_request), 1))

    for feature in spec.features:
        tensor = tensors[feature.name]
        table = tables[feature.name]
        if feature.kind == "numeric":
            part = numeric_basis(tensor, feature.transform) @ table
        elif feature.kind == "categorical":
            part = table[buckets_of(tensor, feature.transform["buckets"])]
        else:
            part = _mean_over_list(tensor, table)
        if feature.source == "context":
            part = part[candidate_request]
        total += part

    for cross in spec.crosses:
        total += tables[cross.name][cross_buckets(spec, cross, tensors)]
    return total


def _mean_over_list(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    present = ids >= 0
    rows = table[buckets_of(ids, len(table))]
    gathered = np.where(present[:, :, None], rows, 0.0)
    counts = np.maximum(present.sum(axis=1), 1)
    return gathered.sum(axis=1) / counts[:, None]
