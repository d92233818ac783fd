"""Build the ONNX graph of a linear watch-time model, transforms included.

The graph takes the raw tensors of docs/model-format.md and outputs `logit`
and `expected_watch_time_s = exp(logit)`. Context contributions are computed
once per request row and gathered to the candidate rows, so a batch of several
requests costs one context transform per request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.contract import (
    CANDIDATE_REQUEST_INPUT,
    LOGIT_OUTPUT,
    WATCH_TIME_OUTPUT,
    Cross,
    Feature,
    FeatureSpec,
)

OPSET = 17
LOGIT_CAP = 88.0
"""Largest logit passed to Exp: exp(88) is about 1.7e38, below float32's max."""


class GraphBuilder:
    """Collect nodes and constants under unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        output = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output


def build_linear_graph(
    spec: FeatureSpec, bias: float, weights: dict[str, np.ndarray]
) -> onnx.ModelProto:
    """Return the ONNX model of `exp(Wx + b)` over the spec's transforms."""
    graph = GraphBuilder()
    contributions: dict[str, list[str]] = {"context": [], "candidate": []}
    buckets: dict[str, str] = {}

    for feature in spec.features:
        term, bucket = _feature_term(graph, feature, weights[feature.name])
        contributions[feature.source].append(term)
        if bucket is not None:
            buckets[feature.name] = bucket

    for cross in spec.crosses:
        contributions["candidate"].append(
            _cross_term(graph, spec, cross, buckets, weights[cross.name])
        )

    logit = _sum_logit(graph, contributions, bias)
    return _assemble(graph, spec, logit)


def _cross_term(
    graph: GraphBuilder,
    spec: FeatureSpec,
    cross: Cross,
    buckets: dict[str, str],
    weights: np.ndarray,
) -> str:
    """Weigh the bucket `(bucket_a · buckets_b + bucket_b) mod buckets`."""
    first, second = (spec.by_name(name) for name in cross.features)
    second_width = graph.constant("width", np.int64(second.transform["buckets"]))
    scaled = graph.op(
        "Mul", [_candidate_rows(graph, first, buckets[first.name]), second_width], "a"
    )
    pair = graph.op(
        "Add", [scaled, _candidate_rows(graph, second, buckets[second.name])], "ab"
    )
    cross_width = graph.constant("buckets", np.int64(cross.buckets))
    bucket = graph.op("Mod", [pair, cross_width], f"{cross.name}_bucket")
    return _gather(graph, weights, bucket, cross.name)


def _feature_term(
    graph: GraphBuilder, feature: Feature, weights: np.ndarray
) -> tuple[str, str | None]:
    """Return the feature's logit contribution and, if categorical, its bucket."""
    if feature.kind == "numeric":
        return _numeric_term(graph, feature, weights), None

    buckets = graph.constant("buckets", np.int64(feature.transform["buckets"]))
    if feature.kind == "categorical":
        bucket = graph.op("Mod", [feature.name, buckets], f"{feature.name}_bucket")
        return _gather(graph, weights, bucket, feature.name), bucket

    return _id_list_term(graph, feature, weights, buckets), None


def _numeric_term(graph: GraphBuilder, feature: Feature, weights: np.ndarray) -> str:
    """Quantile-normalise as a sum of clipped ramps, then weigh x̃, x̃², √x̃.

    For strictly increasing knots q and CDF values c, np.interp equals
    c[0] + Σ_j (c[j+1] - c[j]) · clip((x - q[j]) / (q[j+1] - q[j]), 0, 1).
    """
    knots = np.asarray(feature.transform["knots"], dtype=np.float64)
    cdf = np.asarray(feature.transform["cdf"], dtype=np.float64)
    zero = graph.op("Mul", [feature.name, graph.constant("zero", np.float32(0))], "0")
    normalised = graph.op("Add", [zero, graph.constant("c0", np.float32(cdf[0]))], "c")

    if len(knots) > 1:
        column = graph.op(
            "Unsqueeze",
            [feature.name, graph.constant("axis", np.array([1], np.int64))],
            "col",
        )
        offset = graph.op(
            "Sub", [column, graph.constant("left", knots[:-1].astype(np.float32))], "d"
        )
        scaled = graph.op(
            "Mul",
            [
                offset,
                graph.constant("inv_width", (1 / np.diff(knots)).astype(np.float32)),
            ],
            "t",
        )
        ramps = graph.op(
            "Clip",
            [
                scaled,
                graph.constant("lo", np.float32(0)),
                graph.constant("hi", np.float32(1)),
            ],
            "ramp",
        )
        rise = graph.op(
            "MatMul",
            [ramps, graph.constant("rise", np.diff(cdf).astype(np.float32))],
            "r",
        )
        normalised = graph.op("Add", [normalised, rise], f"{feature.name}_cdf")

    squared = graph.op("Mul", [normalised, normalised], "sq")
    root = graph.op("Sqrt", [normalised], "sqrt")
    w = weights.astype(np.float32)
    terms = [
        graph.op("Mul", [part, graph.constant("w", w[i])], "wx")
        for i, part in enumerate([normalised, squared, root])
    ]
    return graph.op("Sum", terms, f"{feature.name}_term")


def _id_list_term(
    graph: GraphBuilder, feature: Feature, weights: np.ndarray, buckets: str
) -> str:
    """Average the weights of the list's buckets, skipping padding ids."""
    ids = feature.name
    present = graph.op(
        "Cast",
        [graph.op("GreaterOrEqual", [ids, graph.constant("zero", np.int64(0))], "ge")],
        "mask",
        to=TensorProto.FLOAT,
    )
    clipped = graph.op("Max", [ids, graph.constant("zero", np.int64(0))], "ids")
    bucket = graph.op("Mod", [clipped, buckets], "bucket")
    gathered = _gather(graph, weights, bucket, feature.name)
    masked = graph.op("Mul", [gathered, present], "masked")

    axes = graph.constant("axes", np.array([1], np.int64))
    total = graph.op("ReduceSum", [masked, axes], "total", keepdims=0)
    count = graph.op("ReduceSum", [present, axes], "count", keepdims=0)
    count = graph.op("Max", [count, graph.constant("one", np.float32(1))], "count")
    return graph.op("Div", [total, count], f"{feature.name}_term")


def _gather(graph: GraphBuilder, weights: np.ndarray, index: str, hint: str) -> str:
    table = graph.constant(f"{hint}_weights", weights.astype(np.float32))
    return graph.op("Gather", [table, index], f"{hint}_w", axis=0)


def _candidate_rows(graph: GraphBuilder, feature: Feature, tensor: str) -> str:
    if feature.source == "candidate":
        return tensor
    return graph.op("Gather", [tensor, CANDIDATE_REQUEST_INPUT], "per_row", axis=0)


def _sum_logit(
    graph: GraphBuilder, contributions: dict[str, list[str]], bias: float
) -> str:
    terms = list(contributions["candidate"])
    if contributions["context"]:
        context = graph.op("Sum", contributions["context"], "context_sum")
        terms.append(
            graph.op("Gather", [context, CANDIDATE_REQUEST_INPUT], "ctx", axis=0)
        )
    terms.append(graph.constant("bias", np.float32(bias)))
    return graph.op("Sum", terms, "logit_sum")


def _assemble(graph: GraphBuilder, spec: FeatureSpec, logit: str) -> onnx.ModelProto:
    graph.nodes.append(helper.make_node("Identity", [logit], [LOGIT_OUTPUT]))
    capped = graph.op(
        "Min", [LOGIT_OUTPUT, graph.constant("cap", np.float32(LOGIT_CAP))], "capped"
    )
    graph.nodes.append(helper.make_node("Exp", [capped], [WATCH_TIME_OUTPUT]))

    inputs = [_input_info(f) for f in spec.features]
    inputs.append(
        helper.make_tensor_value_info(CANDIDATE_REQUEST_INPUT, TensorProto.INT64, ["N"])
    )
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"])
        for name in (LOGIT_OUTPUT, WATCH_TIME_OUTPUT)
    ]
    body = helper.make_graph(
        graph.nodes, "watchtime", inputs, outputs, graph.initializers
    )
    model = helper.make_model(
        body,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="watchtime-trainer",
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _input_info(feature: Feature) -> onnx.ValueInfoProto:
    rows = "R" if feature.source == "context" else "N"
    length = f"{feature.name}_length"
    shape: list[str] = [rows, length] if feature.kind == "id_list" else [rows]
    dtype = TensorProto.FLOAT if feature.kind == "numeric" else TensorProto.INT64
    return helper.make_tensor_value_info(feature.name, dtype, shape)
