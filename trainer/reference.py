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

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT
from app.linear import first_layer_sum
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
    units = len(network.bias)
    tables = {name: table.reshape(-1, units) for name, table in network.tables.items()}
    return first_layer_sum(network.spec, tables, network.bias, tensors)


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
