"""Holdout metrics on pages small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.evaluate import (
    calibration_by_decile,
    holdout_metrics,
    ndcg_at,
    weighted_per_user_loss,
    xauc,
)

ONE_PAGE = [np.array([0, 1, 2])]


def test_xauc_is_one_for_the_true_order():
    truth = np.array([3.0, 2.0, 1.0])

    assert xauc(ONE_PAGE, truth * 10, truth) == 1.0


def test_xauc_counts_one_swapped_pair_of_three():
    truth = np.array([3.0, 2.0, 1.0])
    predicted = np.array([2.0, 3.0, 1.0])

    assert xauc(ONE_PAGE, predicted, truth) == pytest.approx(2 / 3)


def test_xauc_compares_only_within_pages():
    pages = [np.array([0, 1]), np.array([2, 3])]
    truth = np.array([2.0, 1.0, 20.0, 10.0])
    predicted = np.array([200.0, 100.0, 2.0, 1.0])

    assert xauc(pages, predicted, truth) == 1.0


def test_ndcg_is_one_for_the_ideal_order():
    truth = np.array([1.0, 5.0, 3.0])

    assert ndcg_at(ONE_PAGE, truth, truth, depth=10) == pytest.approx(1.0)


def test_ndcg_of_the_reversed_order():
    truth = np.array([1.0, 0.0, 0.0])
    predicted = np.array([0.0, 1.0, 2.0])

    assert ndcg_at(ONE_PAGE, predicted, truth, depth=10) == pytest.approx(0.5)


def test_weighted_loss_counts_positives_below_negatives():
    clicked = np.array([1, 1, 0])
    watch_time = np.array([30.0, 10.0, 0.0])
    predicted = np.array([5.0, 1.0, 2.0])

    loss = weighted_per_user_loss(ONE_PAGE, predicted, clicked, watch_time)

    assert loss == pytest.approx(10.0 / 40.0)


def test_weighted_per_user_loss_counts_ties_half():
    clicked = np.array([1, 0, 0])
    watch_time = np.array([10.0, 0.0, 0.0])
    predicted = np.array([1.0, 1.0, 0.0])

    loss = weighted_per_user_loss(ONE_PAGE, predicted, clicked, watch_time)

    assert loss == pytest.approx(0.25)


def test_decile_calibration_of_perfect_prediction():
    truth = np.linspace(1.0, 100.0, 100)

    assert calibration_by_decile(truth, truth) == pytest.approx([1.0] * 10)


def test_holdout_metrics_fall_back_to_realised_watch_time():
    log = pd.DataFrame(
        {
            "request_id": ["a", "a"],
            "clicked": [1, 0],
            "watch_time_s": [20.0, 0.0],
            "expected_watch_time_s": [np.nan, np.nan],
        }
    )

    metrics = holdout_metrics(log, np.array([12.0, 8.0]))

    assert metrics["truth"] == "watch_time_s"
    assert metrics["calibration_ratio"] == pytest.approx(1.0)
