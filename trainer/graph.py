"""Build the ONNX graph of a trained network, feature transforms included.

The graph takes the raw tensors of docs/model-format.md and computes the
network of `trainer.network`: the first layer over the transformed features,
then the dense layers, then the variant's outputs. Context contributions to
the first layer are computed once per request row and gathered to the
candidate rows, so a batch of several requests costs one context transform per
request.
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
from trainer.network import Network
from trainer.outputs import CLICK_PROBABILITY_OUTPUT

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

    def output(self, op_type: str, inputs: list[str], name: str) -> None:
        """Add a node whose output is the graph output `name`."""
        self.nodes.append(helper.make_node(op_type, inputs, [name]))


def build_graph(network: Network) -> onnx.ModelProto:
    """Return the ONNX model of `network` over its spec's transforms."""
    graph = GraphBuilder()
    activations = _first_layer(graph, network)

    for layer in network.layers:
        hidden = graph.op("Relu", [activations], "relu")
        product = graph.op(
            "MatMul", [hidden, _float_constant(graph, "dense_w", layer.weights)], "mm"
        )
        activations = graph.op(
            "Add", [product, _float_constant(graph, "dense_b", layer.bias)], "dense"
        )

    output_names = _outputs(graph, activations, network.click_head)
    return _assemble(graph, network.spec, output_names)


def _first_layer(graph: GraphBuilder, network: Network) -> str:
    """Sum the feature and cross terms and the bias into an (N, units) tensor."""
    spec = network.spec
    contributions: dict[str, list[str]] = {"context": [], "candidate": []}
    buckets: dict[str, str] = {}

    for feature in spec.features:
        table = network.tables[feature.name]
        term, bucket = _feature_term(graph, feature, table)
        contributions[feature.source].append(term)
        if bucket is not None:
            buckets[feature.name] = bucket

    for cross in spec.crosses:
        contributions["candidate"].append(
            _cross_term(graph, spec, cross, buckets, network.tables[cross.name])
        )

    terms = list(contributions["candidate"])
    if contributions["context"]:
        context = graph.op("Sum", contributions["context"], "context_sum")
        terms.append(
            graph.op("Gather", [context, CANDIDATE_REQUEST_INPUT], "ctx", axis=0)
        )
    terms.append(_float_constant(graph, "bias", network.bias))
    return graph.op("Sum", terms, "first_layer")


def _cross_term(
    graph: GraphBuilder,
    spec: FeatureSpec,
    cross: Cross,
    buckets: dict[str, str],
    table: np.ndarray,
) -> str:
    """Look up the bucket `(bucket_a · buckets_b + bucket_b) mod buckets`."""
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
    return _gather(graph, table, bucket, cross.name)


def _feature_term(
    graph: GraphBuilder, feature: Feature, table: np.ndarray
) -> tuple[str, str | None]:
    """Return the feature's (rows, units) term and, if categorical, its bucket."""
    if feature.kind == "numeric":
        return _numeric_term(graph, feature, table), None

    buckets = graph.constant("buckets", np.int64(feature.transform["buckets"]))
    if feature.kind == "categorical":
        bucket = graph.op("Mod", [feature.name, buckets], f"{feature.name}_bucket")
        return _gather(graph, table, bucket, feature.name), bucket

    return _id_list_term(graph, feature, table, buckets), None


def _numeric_term(graph: GraphBuilder, feature: Feature, table: np.ndarray) -> str:
    """Quantile-normalise as a sum of clipped ramps, then weigh x̃, x̃², √x̃.

    For strictly increasing knots q and CDF values c, np.interp equals
    c[0] + Σ_j (c[j+1] - c[j]) · clip((x - q[j]) / (q[j+1] - q[j]), 0, 1).
    """
    knots = np.asarray(feature.transform["knots"], dtype=np.float64)
    cdf = np.asarray(feature.transform["cdf"], dtype=np.float64)
    axis = graph.constant("axis", np.array([1], np.int64))
    column = graph.op("Unsqueeze", [feature.name, axis], "col")
    zero = graph.op("Mul", [column, graph.constant("zero", np.float32(0))], "0")
    normalised = graph.op("Add", [zero, graph.constant("c0", np.float32(cdf[0]))], "c")

    if len(knots) > 1:
        offset = graph.op(
            "Sub", [column, graph.constant("left", knots[:-1].astype(np.float32))], "d"
        )
        inverse_width = (1 / np.diff(knots)).astype(np.float32)
        scaled = graph.op(
            "Mul", [offset, graph.constant("inv_width", inverse_width)], "t"
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
        rise = np.diff(cdf).astype(np.float32).reshape(-1, 1)
        increase = graph.op("MatMul", [ramps, graph.constant("rise", rise)], "r")
        normalised = graph.op("Add", [normalised, increase], f"{feature.name}_cdf")

    squared = graph.op("Mul", [normalised, normalised], "sq")
    root = graph.op("Sqrt", [normalised], "sqrt")
    basis = graph.op("Concat", [normalised, squared, root], "basis", axis=1)
    weights = _float_constant(graph, f"{feature.name}_weights", table)
    return graph.op("MatMul", [basis, weights], f"{feature.name}_term")


def _id_list_term(
    graph: GraphBuilder, feature: Feature, table: np.ndarray, buckets: str
) -> str:
    """Average the table rows of the list's buckets, skipping padding ids."""
    ids = feature.name
    zero = graph.constant("zero", np.int64(0))
    present = graph.op(
        "Cast",
        [graph.op("GreaterOrEqual", [ids, zero], "ge")],
        "mask",
        to=TensorProto.FLOAT,
    )
    clipped = graph.op("Max", [ids, zero], "ids")
    bucket = graph.op("Mod", [clipped, buckets], "bucket")
    gathered = _gather(graph, table, bucket, feature.name)
    last_axis = graph.constant("last_axis", np.array([2], np.int64))
    mask = graph.op("Unsqueeze", [present, last_axis], "mask3")
    masked = graph.op("Mul", [gathered, mask], "masked")

    list_axis = graph.constant("list_axis", np.array([1], np.int64))
    total = graph.op("ReduceSum", [masked, list_axis], "total", keepdims=0)
    count = graph.op("ReduceSum", [present, list_axis], "count", keepdims=1)
    count = graph.op("Max", [count, graph.constant("one", np.float32(1))], "count")
    return graph.op("Div", [total, count], f"{feature.name}_term")


def _gather(graph: GraphBuilder, table: np.ndarray, index: str, hint: str) -> str:
    weights = _float_constant(graph, f"{hint}_weights", table)
    return graph.op("Gather", [weights, index], f"{hint}_w", axis=0)


def _float_constant(graph: GraphBuilder, hint: str, value: np.ndarray) -> str:
    return graph.constant(hint, np.ascontiguousarray(value, dtype=np.float32))


def _candidate_rows(graph: GraphBuilder, feature: Feature, tensor: str) -> str:
    if feature.source == "candidate":
        return tensor
    return graph.op("Gather", [tensor, CANDIDATE_REQUEST_INPUT], "per_row", axis=0)


def _column(graph: GraphBuilder, activations: str, index: int, hint: str) -> str:
    position = graph.constant("column", np.int64(index))
    return graph.op("Gather", [activations, position], hint, axis=1)


def _outputs(graph: GraphBuilder, activations: str, click_head: bool) -> list[str]:
    """Add the output nodes and return the output names in graph order."""
    logit = _column(graph, activations, 0, "logit_column")
    graph.output("Identity", [logit], LOGIT_OUTPUT)
    capped = graph.op(
        "Min", [LOGIT_OUTPUT, graph.constant("cap", np.float32(LOGIT_CAP))], "capped"
    )
    if not click_head:
        graph.output("Exp", [capped], WATCH_TIME_OUTPUT)
        return [LOGIT_OUTPUT, WATCH_TIME_OUTPUT]

    # 1 - sigmoid(z) is computed as sigmoid(-z), which keeps its precision in
    # float32 when the click probability is close to 1.
    click_logit = _column(graph, activations, 1, "click_logit")
    graph.output("Sigmoid", [click_logit], CLICK_PROBABILITY_OUTPUT)
    no_click = graph.op("Sigmoid", [graph.op("Neg", [click_logit], "neg")], "no_click")
    odds = graph.op("Exp", [capped], "odds")
    graph.output("Mul", [odds, no_click], WATCH_TIME_OUTPUT)
    return [LOGIT_OUTPUT, CLICK_PROBABILITY_OUTPUT, WATCH_TIME_OUTPUT]


def _assemble(
    graph: GraphBuilder, spec: FeatureSpec, output_names: list[str]
) -> onnx.ModelProto:
    inputs = [_input_info(f) for f in spec.features]
    inputs.append(
        helper.make_tensor_value_info(CANDIDATE_REQUEST_INPUT, TensorProto.INT64, ["N"])
    )
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"])
        for name in output_names
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
