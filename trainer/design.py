"""The sparse design matrix that a linear model is fitted on.

Column blocks follow the feature spec: three columns per numeric feature
(`x̃`, `x̃²`, `√x̃`), one column per bucket for categorical features, id lists
and crosses. The ONNX graph computes the same model from the same blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from app.contract import CANDIDATE_REQUEST_INPUT, Cross, Feature, FeatureSpec
from app.linear import buckets_of, cross_buckets, numeric_basis

Tensors = dict[str, np.ndarray]
NUMERIC_COLUMNS = 3


@dataclass(frozen=True)
class Block:
    """A named run of columns in the design matrix."""

    name: str
    start: int
    width: int


def block_width(spec: FeatureSpec, name: str) -> int:
    """Return the number of design columns of a feature or cross."""
    for cross in spec.crosses:
        if cross.name == name:
            return cross.buckets

    feature = spec.by_name(name)
    if feature.kind == "numeric":
        return NUMERIC_COLUMNS
    return int(feature.transform["buckets"])


def blocks(spec: FeatureSpec) -> list[Block]:
    """Lay out the column blocks in spec order: features, then crosses."""
    names = [f.name for f in spec.features] + [c.name for c in spec.crosses]
    layout, start = [], 0
    for name in names:
        width = block_width(spec, name)
        layout.append(Block(name, start, width))
        start += width
    return layout


def design_matrix(spec: FeatureSpec, tensors: Tensors) -> sp.csr_matrix:
    """Build the sparse design matrix with one row per candidate."""
    candidate_request = tensors[CANDIDATE_REQUEST_INPUT]
    parts = [
        _feature_block(feature, tensors[feature.name], candidate_request)
        for feature in spec.features
    ]
    parts += [_cross_block(spec, c, tensors) for c in spec.crosses]
    return sp.hstack(parts, format="csr")


def _feature_block(
    feature: Feature, tensor: np.ndarray, candidate_request: np.ndarray
) -> sp.csr_matrix:
    if feature.kind == "numeric":
        block = sp.csr_matrix(numeric_basis(tensor, feature.transform))
    elif feature.kind == "categorical":
        block = _one_hot(buckets_of(tensor, feature.transform["buckets"]), feature)
    else:
        block = _mean_of_one_hots(tensor, feature.transform["buckets"])

    if feature.source == "context":
        block = block[candidate_request]
    return block


def _one_hot(bucket: np.ndarray, feature: Feature) -> sp.csr_matrix:
    rows = np.arange(len(bucket))
    shape = (len(bucket), int(feature.transform["buckets"]))
    return sp.csr_matrix((np.ones(len(bucket)), (rows, bucket)), shape=shape)


def _mean_of_one_hots(ids: np.ndarray, buckets: int) -> sp.csr_matrix:
    present = ids >= 0
    counts = np.maximum(present.sum(axis=1), 1)
    rows, cols = np.nonzero(present)
    values = 1.0 / counts[rows]
    bucket = ids[rows, cols] % buckets
    shape = (ids.shape[0], buckets)
    return sp.csr_matrix((values, (rows, bucket)), shape=shape)


def _cross_block(spec: FeatureSpec, cross: Cross, tensors: Tensors) -> sp.csr_matrix:
    bucket = cross_buckets(spec, cross, tensors)
    rows = np.arange(len(bucket))
    shape = (len(bucket), cross.buckets)
    return sp.csr_matrix((np.ones(len(bucket)), (rows, bucket)), shape=shape)
