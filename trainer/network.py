"""The parameters that every training variant exports, in one common shape.

Every variant scores a candidate with the same two stages. The first layer
adds, for each feature and cross, one row of that feature's table, plus a bias:
a categorical bucket picks its row, an id list averages the rows of its
buckets, and a numeric feature multiplies `[x̃, x̃², √x̃]` with its three rows.
This is the design matrix of `trainer.design` times a weight matrix, computed
without building the matrix. Dense layers follow, each after a ReLU.

A linear model is the case with one column and no dense layer. Two linear
models that read the same features, such as the weighted LR and the click
model of `weighted+click`, share the first layer as two columns. A network's
last layer has one column, the logit, or two columns when the model has a
click head: the logit, then the click logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.contract import FeatureSpec
from trainer.design import blocks


@dataclass(frozen=True)
class Dense:
    """A fully connected layer, `inputs @ weights + bias`."""

    weights: np.ndarray
    """Matrix of shape (inputs, units)."""
    bias: np.ndarray
    """Vector of shape (units,)."""


@dataclass(frozen=True)
class Network:
    """A variant's fitted parameters over the feature spec they were fitted on."""

    variant: str
    spec: FeatureSpec
    tables: dict[str, np.ndarray]
    """First-layer table of each feature and cross, of shape (width, units)."""
    bias: np.ndarray
    """First-layer bias of shape (units,)."""
    layers: tuple[Dense, ...] = ()
    """Dense layers after the first, each applied after a ReLU."""
    click_head: bool = False
    """True when the last layer's second column is the click logit."""

    def __post_init__(self) -> None:
        output_units = self.layers[-1].bias.shape[0] if self.layers else len(self.bias)
        expected = 2 if self.click_head else 1
        if output_units != expected:
            raise ValueError(
                f"{self.variant} network ends in {output_units} units, expected "
                f"{expected} (the logit{', then the click logit' * self.click_head})"
            )

    @property
    def is_linear(self) -> bool:
        """True when the first layer is also the output layer."""
        return not self.layers


def tables_from_matrix(spec: FeatureSpec, matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Cut a weight matrix over the design columns into per-feature tables.

    `matrix` has one row per design column, as `trainer.design.blocks` lays
    them out, and one column per first-layer unit. A vector counts as one unit.
    """
    columns = matrix.reshape(matrix.shape[0], -1)
    return {
        block.name: columns[block.start : block.start + block.width].copy()
        for block in blocks(spec)
    }
