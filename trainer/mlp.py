"""The `weighted-mlp` variant: YouTube's ranking network with ReLU layers.

The network has the weighted LR's loss and output, a sigmoid over a logit
whose exponential is served, with ReLU hidden layers in between. It reads the
same features through the same transforms, with two changes that keep the
first layer narrow: fewer hash buckets for the three id features
(`MLP_BUCKETS`), and no crosses, whose interactions the hidden layers can
learn. The first layer then reads 6,516 columns instead of 57,716.

scikit-learn's MLPClassifier fits it with Adam and sample weights. Its own
early stopping scores accuracy, which ignores the weights, so training stops
here instead when the weighted log loss on a validation split of the training
pages has not improved for `patience` epochs, and keeps the best epoch.
Without hidden layers the network is the weighted LR on the narrow features,
which L-BFGS fits to convergence where Adam would stop short of the optimum.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier

from app.contract import FeatureSpec
from trainer.design import design_matrix
from trainer.fit import (
    FitOptions,
    fit_logistic,
    linear_network,
    solver_record,
    training_targets,
)
from trainer.network import Dense, Network, tables_from_matrix
from trainer.outputs import WEIGHTED_MLP
from trainer.split import split_by_request
from trainer.tensors import log_tensors

logger = logging.getLogger(__name__)

MLP_BUCKETS: dict[str, int] = {
    "video_id": 4096,
    "recent_video_ids": 1024,
    "channel_id": 1024,
}
"""Hash buckets of the id features in the network's first layer."""

MLP_SOLVER = "scikit-learn MLPClassifier(solver='adam'), partial_fit per epoch"


@dataclass(frozen=True)
class NetworkOptions:
    """Layer sizes and the Adam schedule of the `weighted-mlp` variant."""

    hidden: tuple[int, ...] = (256, 128, 64)
    """Units of each ReLU hidden layer; () fits the logistic output alone."""
    batch_size: int = 1024
    learning_rate: float = 1e-3
    """Adam's initial step size."""
    max_epochs: int = 20
    patience: int = 2
    """Epochs without a lower validation loss before training stops."""
    validation_fraction: float = 0.1
    """Share of the training pages held out to choose the epoch."""

    def __post_init__(self) -> None:
        if any(units < 1 for units in self.hidden):
            raise ValueError(
                f"hidden layer sizes must be positive, got {list(self.hidden)}"
            )
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"network {name} must be at least 1, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class _Checkpoint:
    epoch: int
    validation_loss: float
    coefs: list[np.ndarray]
    intercepts: list[np.ndarray]


def network_spec(spec: FeatureSpec) -> FeatureSpec:
    """Return `spec` with the network's bucket counts and without crosses."""
    features = tuple(
        dataclasses.replace(
            feature,
            transform=feature.transform | {"buckets": MLP_BUCKETS[feature.name]},
        )
        if feature.name in MLP_BUCKETS
        else feature
        for feature in spec.features
    )
    return FeatureSpec(features=features, crosses=())


def fit_mlp(
    spec: FeatureSpec,
    log: pd.DataFrame,
    options: FitOptions,
    network: NetworkOptions,
    seed: int,
) -> tuple[Network, dict[str, Any]]:
    """Fit the network on `log` and return it with a record for the manifest.

    `options.l2` sets scikit-learn's `alpha` to batch_size / (l2 · rows). The
    penalty on each batch's mean loss is then ||W||² / (2 · l2 · rows), as in
    the weighted LR.
    """
    narrow = network_spec(spec)
    if not network.hidden:
        return _fit_output_layer(narrow, log, options)

    fit_log, validation_log = split_by_request(log, network.validation_fraction, seed)
    features, labels, weights = _training_data(narrow, fit_log)
    validation = _training_data(narrow, validation_log)

    batch_size = min(network.batch_size, len(labels))
    alpha = batch_size / (options.l2 * len(labels))
    classifier = MLPClassifier(
        hidden_layer_sizes=network.hidden,
        alpha=alpha,
        batch_size=batch_size,
        learning_rate_init=network.learning_rate,
        random_state=seed,
    )
    best, epochs, converged = _train_epochs(
        classifier, features, labels, weights, validation, network
    )
    if not converged:
        logger.warning(
            "the validation loss still fell at epoch %s of %s; raise --max-epochs",
            epochs,
            network.max_epochs,
        )

    record = {
        "solver": MLP_SOLVER,
        "hidden_units": list(network.hidden),
        "alpha": alpha,
        "batch_size": batch_size,
        "learning_rate": network.learning_rate,
        "epochs": epochs,
        "best_epoch": best.epoch,
        "validation_loss": best.validation_loss,
        "fit_rows": len(labels),
        "validation_rows": len(validation[1]),
        "buckets": dict(MLP_BUCKETS),
        "converged": converged,
    }
    return _network(narrow, best), record


def _fit_output_layer(
    spec: FeatureSpec, log: pd.DataFrame, options: FitOptions
) -> tuple[Network, dict[str, Any]]:
    """Fit the network without hidden layers, the weighted LR, with L-BFGS."""
    features = design_matrix(spec, log_tensors(spec, log))
    labels, weights = training_targets(log)
    solution = fit_logistic(features, labels, weights, options.l2, options.max_iter)
    record = solver_record(solution) | {
        "hidden_units": [],
        "fit_rows": len(labels),
        "buckets": dict(MLP_BUCKETS),
    }
    return linear_network(WEIGHTED_MLP, spec, [solution]), record


def _training_data(
    spec: FeatureSpec, log: pd.DataFrame
) -> tuple[Any, np.ndarray, np.ndarray]:
    # float32 halves the memory traffic of Adam's updates, and
    # MLPClassifier keeps the input's float32 dtype for its weights.
    features = design_matrix(spec, log_tensors(spec, log)).astype(np.float32)
    labels, weights = training_targets(log)
    return features, labels, weights


def _train_epochs(
    classifier: MLPClassifier,
    features: Any,
    labels: np.ndarray,
    weights: np.ndarray,
    validation: tuple[Any, np.ndarray, np.ndarray],
    network: NetworkOptions,
) -> tuple[_Checkpoint, int, bool]:
    """Run Adam epoch by epoch until the validation loss stops falling.

    Returns the best checkpoint, the epochs run, and whether training stopped
    because the loss stopped falling rather than at `max_epochs`.
    """
    best = _epoch(classifier, features, labels, weights, validation, 1)
    for epoch in range(2, network.max_epochs + 1):
        if epoch - 1 - best.epoch >= network.patience:
            return best, epoch - 1, True
        checkpoint = _epoch(classifier, features, labels, weights, validation, epoch)
        if checkpoint.validation_loss < best.validation_loss:
            best = checkpoint
    stopped = network.max_epochs - best.epoch >= network.patience
    return best, network.max_epochs, stopped


def _epoch(
    classifier: MLPClassifier,
    features: Any,
    labels: np.ndarray,
    weights: np.ndarray,
    validation: tuple[Any, np.ndarray, np.ndarray],
    epoch: int,
) -> _Checkpoint:
    """Run one pass of Adam over the data and score it on the validation split."""
    classifier.partial_fit(features, labels, sample_weight=weights, classes=[0, 1])
    loss = _weighted_log_loss(classifier, *validation)
    logger.debug("epoch %s: validation loss %.6f", epoch, loss)
    return _Checkpoint(
        epoch,
        loss,
        copy.deepcopy(classifier.coefs_),
        copy.deepcopy(classifier.intercepts_),
    )


def _weighted_log_loss(
    classifier: MLPClassifier, features: Any, labels: np.ndarray, weights: np.ndarray
) -> float:
    probability = classifier.predict_proba(features)[:, 1].astype(np.float64)
    return float(log_loss(labels, probability, sample_weight=weights, labels=[0, 1]))


def _network(spec: FeatureSpec, best: _Checkpoint) -> Network:
    coefs = [np.asarray(c, dtype=np.float64) for c in best.coefs]
    intercepts = [np.asarray(b, dtype=np.float64) for b in best.intercepts]
    layers = tuple(
        Dense(weights, bias)
        for weights, bias in zip(coefs[1:], intercepts[1:], strict=True)
    )
    return Network(
        variant=WEIGHTED_MLP,
        spec=spec,
        tables=tables_from_matrix(spec, coefs[0]),
        bias=intercepts[0],
        layers=layers,
    )
