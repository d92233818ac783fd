"""Holdout metrics of predicted watch time against the truth.

On simulated logs the truth is each impression's `expected_watch_time_s`.
Real logs have no such column, so the realised `watch_time_s` replaces it, and
the metrics then include the noise of single outcomes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DECILES = 10
NDCG_DEPTH = 10


def truth_of(log: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Return the column that metrics compare with, and its name."""
    column = "expected_watch_time_s"
    if column in log and log[column].notna().all():
        return log[column].to_numpy(dtype=np.float64), column
    return log["watch_time_s"].to_numpy(dtype=np.float64), "watch_time_s"


def holdout_metrics(log: pd.DataFrame, predicted: np.ndarray) -> dict[str, Any]:
    """Compute calibration, ranking quality and the weighted per-user loss."""
    truth, truth_column = truth_of(log)
    pages = _pages(log)
    decile_ratios = calibration_by_decile(predicted, truth)

    return {
        "rows": len(log),
        "requests": len(pages),
        "truth": truth_column,
        "mean_predicted_s": float(predicted.mean()),
        "mean_truth_s": float(truth.mean()),
        "calibration_ratio": _ratio(predicted.sum(), truth.sum()),
        "calibration_by_decile": decile_ratios,
        "max_decile_error": max(
            (abs(r - 1.0) for r in decile_ratios if r is not None), default=None
        ),
        "mae_s": float(np.abs(predicted - truth).mean()),
        "xauc": xauc(pages, predicted, truth),
        "ndcg_at_10": ndcg_at(pages, predicted, truth, NDCG_DEPTH),
        "weighted_per_user_loss": weighted_per_user_loss(
            pages,
            predicted,
            log["clicked"].to_numpy(dtype=np.int64),
            log["watch_time_s"].to_numpy(dtype=np.float64),
        ),
    }


def _pages(log: pd.DataFrame) -> list[np.ndarray]:
    """Group row indices by request, since ranking metrics compare within a page."""
    codes, _ = pd.factorize(log["request_id"], sort=False)
    order = np.argsort(codes, kind="stable")
    boundaries = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, boundaries)


def calibration_by_decile(
    predicted: np.ndarray, truth: np.ndarray
) -> list[float | None]:
    """Return mean predicted over mean truth in each decile of the prediction.

    A decile without rows or with zero truth has no ratio and gets None.
    """
    order = np.argsort(predicted, kind="stable")
    return [
        _ratio(predicted[part].sum(), truth[part].sum())
        for part in np.array_split(order, DECILES)
    ]


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def xauc(
    pages: list[np.ndarray], predicted: np.ndarray, truth: np.ndarray
) -> float | None:
    """Return the share of within-page pairs ordered as the truth orders them.

    Pairs whose truths tie are skipped; pairs whose predictions tie count half.
    Returns None when no page has a pair with different truths.
    """
    agree, pairs = 0.0, 0
    for rows in pages:
        truth_sign = np.sign(truth[rows][:, None] - truth[rows][None, :])
        score_sign = np.sign(predicted[rows][:, None] - predicted[rows][None, :])
        upper = np.triu(truth_sign != 0, k=1)
        matches = truth_sign[upper] * score_sign[upper]
        agree += float((matches > 0).sum() + 0.5 * (matches == 0).sum())
        pairs += int(upper.sum())
    return agree / pairs if pairs else None


def ndcg_at(
    pages: list[np.ndarray], predicted: np.ndarray, truth: np.ndarray, depth: int
) -> float | None:
    """Return the mean NDCG@depth of pages ranked by prediction, gains = truth."""
    scores = []
    for rows in pages:
        gains = truth[rows]
        ranked = gains[np.argsort(-predicted[rows], kind="stable")][:depth]
        ideal = np.sort(gains)[::-1][:depth]
        discounts = 1.0 / np.log2(np.arange(2, len(ranked) + 2))
        ideal_dcg = float(ideal @ discounts)
        if ideal_dcg > 0:
            scores.append(float(ranked @ discounts) / ideal_dcg)
    return float(np.mean(scores)) if scores else None


def weighted_per_user_loss(
    pages: list[np.ndarray],
    predicted: np.ndarray,
    clicked: np.ndarray,
    watch_time: np.ndarray,
) -> float | None:
    """Return the share of positive watch time ranked below a negative.

    This is the loss of Covington, Adams and Sargin (RecSys 2016). Each pair of
    a clicked and a not-clicked impression on one page is checked. The clicked
    impression's watch time counts as mispredicted when the other impression
    scored higher, and half of it counts when they tie. The sum is divided by
    the watch time of all pairs.
    """
    mispredicted, total = 0.0, 0.0
    for rows in pages:
        positive = rows[clicked[rows] == 1]
        negative = rows[clicked[rows] == 0]
        if len(positive) == 0 or len(negative) == 0:
            continue
        higher = predicted[negative][None, :] > predicted[positive][:, None]
        tied = predicted[negative][None, :] == predicted[positive][:, None]
        wrong = higher.sum(axis=1) + 0.5 * tied.sum(axis=1)
        mispredicted += float(watch_time[positive] @ wrong)
        total += float(watch_time[positive].sum() * len(negative))
    return mispredicted / total if total else None
