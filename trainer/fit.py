"""Fit the weighted logistic regression of YouTube's ranking model.

Clicked impressions are positives weighted by their watch time, impressions
that were not clicked are negatives of weight 1. At the optimum the odds
`exp(Wx + b)` equal `E[T · click] / (1 - p)`, close to the expected watch time
of the impression when the click probability p is small.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from app.contract import FeatureSpec
from trainer.design import blocks, design_matrix
from trainer.tensors import log_tensors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOptions:
    """Hyperparameters of the linear fit."""

    l2: float = 0.1
    """Inverse L2 strength, scikit-learn's `C`; the penalty is ||W||² / (2C)."""
    max_iter: int = 500
    """L-BFGS iteration limit."""


@dataclass(frozen=True)
class LinearModel:
    """Fitted parameters, keyed by feature or cross name."""

    bias: float
    weights: dict[str, np.ndarray]
    iterations: int
    converged: bool


def training_targets(log: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return labels and sample weights: watch time for clicks, 1 otherwise.

    The weights are divided by their mean. A common factor leaves the optimum
    of the unpenalised loss unchanged, and it makes `l2` mean the same thing
    whether watch time is in seconds or milliseconds.
    """
    clicked = log["clicked"].to_numpy(dtype=np.int64)
    watch_time = log["watch_time_s"].to_numpy(dtype=np.float64)
    weights = np.where(clicked == 1, watch_time, 1.0)
    return clicked, weights / weights.mean()


def fit_weighted_lr(
    spec: FeatureSpec, log: pd.DataFrame, options: FitOptions
) -> LinearModel:
    """Fit the weighted LR on `log` with scikit-learn's L-BFGS solver."""
    features = design_matrix(spec, log_tensors(spec, log))
    labels, sample_weight = training_targets(log)
    classifier = LogisticRegression(C=options.l2, max_iter=options.max_iter)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(features, labels, sample_weight=sample_weight)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if not converged:
        logger.warning(
            "L-BFGS stopped at max_iter=%s before converging", options.max_iter
        )

    return _unpack(spec, classifier, converged)


def _unpack(
    spec: FeatureSpec, classifier: LogisticRegression, converged: bool
) -> LinearModel:
    coefficients = classifier.coef_[0]
    weights = {
        block.name: coefficients[block.start : block.start + block.width].copy()
        for block in blocks(spec)
    }
    return LinearModel(
        bias=float(classifier.intercept_[0]),
        weights=weights,
        iterations=int(classifier.n_iter_[0]),
        converged=converged,
    )
