"""A numpy computation of a linear model from its manifest alone.

It repeats in float64 what the ONNX graph does in float32, reading nothing but
the manifest's feature spec and `linear` parameters. Tests compare the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.contract import CANDIDATE_REQUEST_INPUT, FeatureSpec
from trainer.design import buckets_of, cross_buckets, numeric_basis

Tensors = dict[str, np.ndarray]


def reference_logit(manifest: dict[str, Any], tensors: Tensors) -> np.ndarray:
    """Return `Wx + b` per candidate, computed from the manifest's parameters."""
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    weights = {k: np.asarray(v) for k, v in manifest["linear"]["weights"].items()}
    candidate_request = tensors[CANDIDATE_REQUEST_INPUT]
    logit = np.full(len(candidate_request), float(manifest["linear"]["bias"]))

    for feature in spec.features:
        tensor = tensors[feature.name]
        w = weights[feature.name]
        if feature.kind == "numeric":
            part = numeric_basis(tensor, feature.transform) @ w
        elif feature.kind == "categorical":
            part = w[buckets_of(tensor, feature.transform["buckets"])]
        else:
            part = _mean_over_list(tensor, w)
        if feature.source == "context":
            part = part[candidate_request]
        logit += part

    for cross in spec.crosses:
        logit += weights[cross.name][cross_buckets(spec, cross, tensors)]
    return logit


def _mean_over_list(ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    present = ids >= 0
    gathered = np.where(present, weights[buckets_of(ids, len(weights))], 0.0)
    return gathered.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def reference_watch_time(manifest: dict[str, Any], tensors: Tensors) -> np.ndarray:
    """Return `exp(Wx + b)` per candidate."""
    return np.exp(reference_logit(manifest, tensors))
