"""Choose the L2 penalty of a linear model by its loss on held-out pages.

The sample weights of the weighted LR are divided by their mean, and so is
the Poisson target. On the simulator the mean grows with the click rate, from
about 8 at a 2% click rate to about 150 at 45%, so a fixed `l2` shrinks the
weights far harder at high click rates than at low ones. Choosing `l2` per log keeps
the comparison about the losses rather than about one penalty.

The candidates are tried on a share of the training pages, from the value
nearest the default outwards in the direction in which the validation loss
falls, and each fit starts from the solution of its neighbour. The search
stops at the first candidate that does worse than the best so far, which
finds the minimum when the loss is unimodal along the grid. The chosen value
is then fitted on all training pages.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from trainer.fit import FitOptions, Solution
from trainer.split import holdout_mask

logger = logging.getLogger(__name__)

L2_GRID: tuple[float, ...] = (
    0.0003,
    0.001,
    0.003,
    0.01,
    0.03,
    0.1,
    0.3,
    1.0,
    3.0,
    10.0,
)
"""Candidates of `watchtime compare`, a factor of about 3 apart."""

Fit = Callable[[sp.csr_matrix, pd.DataFrame, FitOptions, Solution | None], Solution]
Loss = Callable[[Solution, sp.csr_matrix, pd.DataFrame], float]


@dataclass(frozen=True)
class Selection:
    """The chosen penalty and the validation loss of each candidate tried."""

    l2: float
    losses: dict[float, float]

    def record(self) -> dict[str, Any]:
        """Describe the selection for the manifest."""
        return {
            "l2": self.l2,
            "validation_losses": {str(l2): loss for l2, loss in self.losses.items()},
        }


def fit_with_selected_l2(
    fit: Fit,
    loss: Loss,
    features: sp.csr_matrix,
    log: pd.DataFrame,
    options: FitOptions,
    seed: int,
) -> tuple[Solution, Selection | None]:
    """Fit on all of `log` with `options.l2`, or with the best of `l2_grid`."""
    if not options.l2_grid:
        return fit(features, log, options, None), None

    selection, start = select_l2(fit, loss, features, log, options, seed)
    chosen = dataclasses.replace(options, l2=selection.l2)
    logger.info("chose l2 %s from %s", selection.l2, sorted(selection.losses))
    return fit(features, log, chosen, start), selection


def select_l2(
    fit: Fit,
    loss: Loss,
    features: sp.csr_matrix,
    log: pd.DataFrame,
    options: FitOptions,
    seed: int,
) -> tuple[Selection, Solution]:
    """Search `options.l2_grid` on a validation split of the pages of `log`.

    Returns the selection and the chosen candidate's fit, a starting point for
    the fit on all pages.
    """
    in_validation = holdout_mask(log, options.validation_fraction, seed)
    train_rows, validation_rows = ~in_validation, in_validation
    train_log = log[train_rows].reset_index(drop=True)
    validation_log = log[validation_rows].reset_index(drop=True)
    grid = sorted(options.l2_grid)
    solutions: dict[int, Solution] = {}
    losses: dict[int, float] = {}

    def score(index: int, start: Solution | None) -> float:
        candidate = dataclasses.replace(options, l2=grid[index])
        solutions[index] = fit(features[train_rows], train_log, candidate, start)
        losses[index] = loss(
            solutions[index], features[validation_rows], validation_log
        )
        return losses[index]

    start = int(np.argmin([abs(np.log(l2 / options.l2)) for l2 in grid]))
    score(start, None)
    best = start
    for step in (-1, 1):
        index = start + step
        while 0 <= index < len(grid):
            if score(index, solutions[index - step]) >= losses[best]:
                break
            best = index
            index += step
        if best != start:
            break

    selection = Selection(grid[best], {grid[i]: losses[i] for i in sorted(losses)})
    return selection, solutions[best]
