"""The `poisson` variant: a log-link regression on watch time per impression.

A Poisson regression with a log link fits `exp(Wx + b)` to the watch time of
every impression, zero for impressions that were not clicked, so its
prediction estimates the expected watch time directly and needs no odds
correction. The Poisson log-likelihood only needs a non-negative target, and
its score equations make the fit consistent for the mean whatever the
distribution of watch time. With the log link, which is the canonical one,
and an unpenalised intercept, the mean prediction on the training log equals
the mean watch time exactly.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import mean_poisson_deviance

from trainer.fit import FitOptions, Solution, single_threaded_blas

logger = logging.getLogger(__name__)

POISSON_SOLVER = "scikit-learn PoissonRegressor(solver='lbfgs')"


def fit_poisson(
    features: sp.csr_matrix,
    log: pd.DataFrame,
    options: FitOptions,
    initial: Solution | None = None,
) -> Solution:
    """Fit the Poisson regression of watch time on the design matrix of `log`.

    The target is divided by its mean, as the weighted LR's sample weights
    are, and ln(mean) is added to the intercept afterwards, which gives the
    same optimum. scikit-learn's `alpha` is set to 1 / (l2 · rows), so that
    `options.l2` weighs the penalty against the mean loss as in the weighted
    LR. L-BFGS starts from `initial` when given.
    """
    watch_time = watch_time_target(log)
    scale = float(watch_time.mean())
    if not scale > 0:
        raise ValueError(
            "the poisson variant needs some watch time in the training log, "
            "but every impression has 0 s; check the watch_time_s column"
        )

    alpha = 1.0 / (options.l2 * len(watch_time))
    regressor = PoissonRegressor(
        alpha=alpha, max_iter=options.max_iter, warm_start=initial is not None
    )
    if initial is not None:
        # scikit-learn's warm start reads the previous fit's attributes, which
        # are on the scale of the divided target.
        regressor.coef_ = initial.coefficients.copy()
        regressor.intercept_ = initial.intercept - math.log(scale)
    with single_threaded_blas(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        regressor.fit(features, watch_time / scale)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if not converged:
        logger.warning(
            "Poisson L-BFGS stopped at max_iter=%s before converging", options.max_iter
        )

    return Solution(
        coefficients=regressor.coef_.copy(),
        intercept=float(regressor.intercept_) + math.log(scale),
        iterations=int(regressor.n_iter_),
        converged=converged,
    )


def poisson_record(
    solution: Solution, log: pd.DataFrame, options: FitOptions
) -> dict[str, Any]:
    """Describe a Poisson fit on `log` with `options.l2` for the manifest."""
    return {
        "solver": POISSON_SOLVER,
        "iterations": solution.iterations,
        "converged": solution.converged,
        "l2": options.l2,
        "alpha": 1.0 / (options.l2 * len(log)),
        "target_scale_s": float(watch_time_target(log).mean()),
    }


def watch_time_target(log: pd.DataFrame) -> np.ndarray:
    """Return the watch time of each impression, 0 s where it was not clicked."""
    clicked = log["clicked"].to_numpy(dtype=np.int64)
    return np.where(clicked == 1, log["watch_time_s"].to_numpy(np.float64), 0.0)


def poisson_loss(
    solution: Solution, features: sp.csr_matrix, log: pd.DataFrame
) -> float:
    """Return the mean Poisson deviance of `solution` on `log`'s watch time."""
    predicted = np.exp(features @ solution.coefficients + solution.intercept)
    return float(mean_poisson_deviance(watch_time_target(log), predicted))
