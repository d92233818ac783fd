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


def logit_range(network: Network) -> tuple[float, float]:
    """Return bounds on the logit that any request can produce.

    Every numeric input passes through its quantile CDF into [0, 1], and every
    categorical or id-list value selects rows of a finite table, so each
    feature's contribution to a first-layer unit has a smallest and a largest
    value. Summing them bounds the unit; ReLU and dense layers carry the bounds
    through by interval arithmetic. The bounds are exact for a linear model
    without crosses and may be loose otherwise, since crosses and the hidden
    units are bounded as if their inputs varied independently.
    """
    low, high = _first_layer_range(network)
    for layer in network.layers:
        low, high = np.maximum(low, 0.0), np.maximum(high, 0.0)
        positive = np.maximum(layer.weights, 0.0)
        negative = np.minimum(layer.weights, 0.0)
        low, high = (
            low @ positive + high @ negative + layer.bias,
            high @ positive + low @ negative + layer.bias,
        )
    return float(low[0]), float(high[0])


def _first_layer_range(network: Network) -> tuple[np.ndarray, np.ndarray]:
    numeric = {f.name for f in network.spec.features if f.kind == "numeric"}
    id_lists = {f.name for f in network.spec.features if f.kind == "id_list"}
    units = len(network.bias)
    low = network.bias.astype(np.float64).copy()
    high = low.copy()

    for name, table in network.tables.items():
        rows = table.reshape(-1, units).astype(np.float64)
        if name in numeric:
            contributions = _numeric_extremes(rows)
        elif name in id_lists:
            # A list of padding ids only contributes nothing.
            contributions = np.vstack([rows, np.zeros(units)])
        else:
            contributions = rows
        low += contributions.min(axis=0)
        high += contributions.max(axis=0)
    return low, high


def _numeric_extremes(rows: np.ndarray) -> np.ndarray:
    """Return each unit's `[x, x², √x] @ rows` at the points where it can peak.

    With x = u², the derivative `a + 2bx + c / (2√x)` vanishes where the cubic
    `2b·u³ + a·u + c / 2` does, so the extremes on [0, 1] lie at 0, at 1 or at
    a real root u in (0, 1) of that cubic.
    """
    values = []
    for a, b, c in rows.T:
        points = [0.0, 1.0]
        for root in np.roots([2.0 * b, 0.0, a, c / 2.0]):
            if abs(root.imag) < 1e-12 and 0.0 < root.real < 1.0:
                points.append(root.real**2)
        x = np.array(points)
        values.append((a * x + b * x**2 + c * np.sqrt(x)).tolist())
    width = max(len(v) for v in values)
    # Pad with each unit's value at 0 so every column has the same length.
    padded = [v + [v[0]] * (width - len(v)) for v in values]
    return np.array(padded).T
