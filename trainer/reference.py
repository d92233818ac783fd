"""A numpy computation of an exported model from its manifest alone.

It repeats in float64 what the ONNX graph does in float32, reading nothing but
the manifest's feature spec and parameters, and for networks with dense layers
the parameter file beside the manifest. Tests compare the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from app.contract import CANDIDATE_REQUEST_INPUT, LOGIT_OUTPUT, WATCH_TIME_OUTPUT
from trainer.design import buckets_of, cross_buckets, numeric_basis
from trainer.network import Network
from trainer.outputs import CLICK_PROBABILITY_OUTPUT
from trainer.parameters import load_network

Tensors = dict[str, np.ndarray]


def reference_outputs(network: Network, tensors: Tensors) -> dict[str, np.ndarray]:
    """Return every graph output of `network` per candidate, in float64."""
    activations = first_layer(network, tensors)
    for layer in network.layers:
        activations = np.maximum(activations, 0.0) @ layer.weights + layer.bias

    logit = activations[:, 0]
    outputs = {LOGIT_OUTPUT: logit}
    if not network.click_head:
        outputs[WATCH_TIME_OUTPUT] = np.exp(logit)
        return outputs

    click_logit = activations[:, 1]
    outputs[CLICK_PROBABILITY_OUTPUT] = expit(click_logit)
    outputs[WATCH_TIME_OUTPUT] = np.exp(logit) * expit(-click_logit)
    return outputs


def first_layer(network: Network, tensors: Tensors) -> np.ndarray:
    """Return the first layer's (candidates, units) pre-activations."""
    spec = network.spec
    candidate_request = tensors[CANDIDATE_REQUEST_INPUT]
    units = len(network.bias)
    total = np.tile(network.bias, (len(candidate_request), 1))

    for feature in spec.features:
        tensor = tensors[feature.name]
        table = network.tables[feature.name].reshape(-1, units)
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
        table = network.tables[cross.name].reshape(-1, units)
        total += table[cross_buckets(spec, cross, tensors)]
    return total


def _mean_over_list(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    present = ids >= 0
    rows = table[buckets_of(ids, len(table))]
    gathered = np.where(present[:, :, None], rows, 0.0)
    counts = np.maximum(present.sum(axis=1), 1)
    return gathered.sum(axis=1) / counts[:, None]


def reference_logit(
    manifest: dict[str, Any], tensors: Tensors, directory: Path | None = None
) -> np.ndarray:
    """Return the logit per candidate, computed from the manifest's parameters.

    `directory` is the model version directory, needed only by networks whose
    parameters are in a file beside the manifest.
    """
    network = load_network(manifest, directory)
    return reference_outputs(network, tensors)[LOGIT_OUTPUT]


def reference_watch_time(
    manifest: dict[str, Any], tensors: Tensors, directory: Path | None = None
) -> np.ndarray:
    """Return the expected watch time per candidate, the served score."""
    network = load_network(manifest, directory)
    return reference_outputs(network, tensors)[WATCH_TIME_OUTPUT]
