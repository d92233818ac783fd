"""Fit the logistic regressions of the linear training variants.

The weighted LR of YouTube's ranking model takes clicked impressions as
positives weighted by their watch time and impressions that were not clicked
as negatives of weight 1. At the optimum its odds `exp(Wx + b)` equal
`E[T · click] / (1 - p)`, close to the expected watch time of the impression
when the click probability p is small.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from app.contract import FeatureSpec
from trainer.network import Network, tables_from_matrix

logger = logging.getLogger(__name__)

LOGISTIC_SOLVER = "scikit-learn LogisticRegression(solver='lbfgs')"


DEFAULT_L2 = 0.1
"""`l2` of the logistic models when none is given, chosen at a 5% click rate."""

POISSON_DEFAULT_L2 = 0.003
"""`l2` of the Poisson regression when none is given.

The comparison chose it at a 5% click rate on 200,000 impressions. At the
logistic default of 0.1 the Poisson fit shrinks its weights far more: on the
first 20,000 impressions of the bundled model's log its holdout xAUC fell
from 0.762 to 0.717.
"""


@dataclass(frozen=True)
class FitOptions:
    """Hyperparameters of the linear fit."""

    l2: float = DEFAULT_L2
    """Inverse L2 strength, scikit-learn's `C`; the penalty is ||W||² / (2C)."""
    max_iter: int = 500
    """L-BFGS iteration limit."""
    l2_grid: tuple[float, ...] = ()
    """Candidate values of `l2`; when given, each linear model takes the one with
    the lowest validation loss instead of `l2` (see trainer.selection)."""
    validation_fraction: float = 0.2
    """Share of the training pages that scores the `l2_grid` candidates."""

    def __post_init__(self) -> None:
        for value in (self.l2, *self.l2_grid):
            if not value > 0:
                raise ValueError(
                    f"l2 values must be positive, got {value}; use e.g. 0.1"
                )


@dataclass(frozen=True)
class Solution:
    """Coefficients of one linear model over the design matrix's columns."""

    coefficients: np.ndarray
    intercept: float
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


def fit_logistic(
    features: sp.csr_matrix,
    labels: np.ndarray,
    sample_weight: np.ndarray | None,
    inverse_l2: float,
    max_iter: int,
    initial: Solution | None = None,
) -> Solution:
    """Fit one L2-penalised logistic regression with scikit-learn's L-BFGS.

    L-BFGS starts from `initial` when given, and from zero otherwise. A
    ConvergenceWarning is caught and logged, and `converged` records it.
    """
    classifier = LogisticRegression(
        C=inverse_l2, max_iter=max_iter, warm_start=initial is not None
    )
    if initial is not None:
        # scikit-learn's warm start reads the previous fit's attributes.
        classifier.coef_ = initial.coefficients.reshape(1, -1).copy()
        classifier.intercept_ = np.array([initial.intercept])

    with single_threaded_blas(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(features, labels, sample_weight=sample_weight)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if not converged:
        logger.warning("L-BFGS stopped at max_iter=%s before converging", max_iter)

    return Solution(
        coefficients=classifier.coef_[0].copy(),
        intercept=float(classifier.intercept_[0]),
        iterations=int(classifier.n_iter_[0]),
        converged=converged,
    )


def single_threaded_blas() -> threadpool_limits:
    """Limit BLAS to one thread, as the linear fits run fastest that way.

    L-BFGS spends its time in vector operations of one coefficient per design
    column, too small to split across threads. On a 2-core machine with other
    processes running, OpenBLAS threads made the weighted LR fit of 160,000
    rows 3.5 times slower (17.0 s against 4.8 s for the same 71 iterations).
    """
    return threadpool_limits(limits=1, user_api="blas")


def fit_weighted_lr(
    features: sp.csr_matrix,
    log: pd.DataFrame,
    options: FitOptions,
    initial: Solution | None = None,
) -> Solution:
    """Fit the weighted LR on the design matrix of `log`."""
    labels, sample_weight = training_targets(log)
    return fit_logistic(
        features, labels, sample_weight, options.l2, options.max_iter, initial
    )


def fit_click_lr(
    features: sp.csr_matrix,
    log: pd.DataFrame,
    options: FitOptions,
    initial: Solution | None = None,
) -> Solution:
    """Fit a plain LR of the click, whose sigmoid estimates the click probability."""
    labels = log["clicked"].to_numpy(dtype=np.int64)
    return fit_logistic(features, labels, None, options.l2, options.max_iter, initial)


def logistic_loss(
    solution: Solution,
    features: sp.csr_matrix,
    labels: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Return the mean log loss of `solution` on labelled rows, without penalty."""
    logit = features @ solution.coefficients + solution.intercept
    losses = np.where(labels == 1, np.logaddexp(0.0, -logit), np.logaddexp(0.0, logit))
    return float(np.average(losses, weights=sample_weight))


def weighted_loss(
    solution: Solution, features: sp.csr_matrix, log: pd.DataFrame
) -> float:
    """Return the weighted LR's mean loss on `log`, weights as in training."""
    labels, sample_weight = training_targets(log)
    return logistic_loss(solution, features, labels, sample_weight)


def click_loss(solution: Solution, features: sp.csr_matrix, log: pd.DataFrame) -> float:
    """Return the click model's mean log loss on `log`."""
    return logistic_loss(solution, features, log["clicked"].to_numpy(np.int64))


def linear_network(
    variant: str, spec: FeatureSpec, solutions: list[Solution]
) -> Network:
    """Stack linear solutions as the columns of a network without dense layers.

    The first solution is the logit; a second one is the click logit.
    """
    matrix = np.column_stack([s.coefficients for s in solutions])
    return Network(
        variant=variant,
        spec=spec,
        tables=tables_from_matrix(spec, matrix),
        bias=np.array([s.intercept for s in solutions]),
        click_head=len(solutions) == 2,
    )


def solver_record(solution: Solution) -> dict[str, Any]:
    """Describe a logistic fit for the manifest's training options."""
    return {
        "solver": LOGISTIC_SOLVER,
        "iterations": solution.iterations,
        "converged": solution.converged,
    }
