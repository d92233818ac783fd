"""Split a log into train and holdout by whole pages."""

from __future__ import annotations

import numpy as np
import pandas as pd


def holdout_mask(log: pd.DataFrame, holdout_fraction: float, seed: int) -> np.ndarray:
    """Mark the rows of a random `holdout_fraction` of the pages, at least one page."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(
            f"holdout fraction {holdout_fraction} is outside (0, 1); use e.g. 0.2"
        )
    pages = log["request_id"].unique()
    rng = np.random.default_rng(seed)
    holdout_size = max(1, int(len(pages) * holdout_fraction))
    holdout_pages = set(rng.choice(pages, size=holdout_size, replace=False))
    return log["request_id"].isin(holdout_pages).to_numpy()


def split_by_request(
    log: pd.DataFrame, holdout_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split whole pages into train and holdout, so no page is in both."""
    in_holdout = holdout_mask(log, holdout_fraction, seed)
    train_log = log[~in_holdout].reset_index(drop=True)
    return train_log, log[in_holdout].reset_index(drop=True)
