"""The variant comparison on small logs: report structure and effect directions.

Logs of 6,000 impressions are far too small to measure the effects precisely.
The tests therefore check only effects large enough to show at that size. The
odds bias of the weighted LR grows from a 2% to a 45% click rate, and the click
correction moves the calibration ratio towards 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from trainer.compare import CompareOptions
from trainer.outputs import VARIANTS

LOW_RATE, HIGH_RATE = 0.02, 0.45
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRICS = {
    "variant",
    "click_rate",
    "calibration_ratio",
    "max_decile_error",
    "mae_s",
    "xauc",
    "ndcg_at_10",
    "weighted_per_user_loss",
    "train_seconds",
    "train_rows",
}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the directory of a comparison run on 6,000-impression logs."""
    directory = tmp_path_factory.mktemp("compare")
    status = main(
        [
            "compare",
            "--out",
            str(directory),
            "--rows",
            "6000",
            "--click-rates",
            f"{LOW_RATE},{HIGH_RATE}",
            "--hidden",
            "8",
            "--max-epochs",
            "3",
            "--resample-max-rows",
            "100000",
            "--l2-grid",
            "0.03,0.3,3",
        ]
    )
    if status != 0:
        pytest.fail(f"watchtime compare exited with status {status}")
    return directory


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "report.json").read_text(encoding="utf-8"))


def result(report: dict[str, Any], model: str, rate: float) -> dict[str, Any]:
    return next(
        row
        for row in report["results"]
        if row["model"] == model and row["click_rate"] == rate
    )


@pytest.mark.parametrize(
    "name", ["report.md", "calibration_by_decile.png", "odds_bias.png"]
)
def test_compare_writes_the_report_file(report_dir, name):
    assert (report_dir / name).stat().st_size > 0


@pytest.mark.parametrize("name", ["calibration_by_decile.png", "odds_bias.png"])
def test_compare_figures_are_png(report_dir, name):
    assert (report_dir / name).read_bytes()[:8] == PNG_SIGNATURE


def test_report_row_per_model_and_rate(report):
    keys = {(row["model"], row["click_rate"]) for row in report["results"]}

    assert len(keys) == len(report["results"])
    assert len(keys) == len(VARIANTS) * 2


def test_report_rows_carry_every_metric(report):
    for row in report["results"]:
        assert set(row) >= METRICS, row["model"]


def test_linear_rows_record_their_chosen_l2(report):
    weighted = result(report, "weighted", HIGH_RATE)

    assert set(weighted["l2"]) <= {0.03, 0.3, 3.0}


def test_resampled_rows_carry_unit_weighted_fit(report):
    resampled = result(report, "resampled", HIGH_RATE)

    assert resampled["unit_s"] >= 1.0
    assert resampled["unit_weighted_xauc"] is not None


def test_report_records_the_settings(report):
    assert report["settings"]["rows"] == 6000
    assert report["settings"]["click_rates"] == [LOW_RATE, HIGH_RATE]


def test_weighted_bias_grows_with_click_rate(report):
    low = result(report, "weighted", LOW_RATE)["calibration_ratio"]
    high = result(report, "weighted", HIGH_RATE)["calibration_ratio"]

    assert high > low


def test_click_correction_nears_calibration(report):
    weighted = result(report, "weighted", HIGH_RATE)["calibration_ratio"]
    corrected = result(report, "weighted+click", HIGH_RATE)["calibration_ratio"]

    assert abs(corrected - 1) < abs(weighted - 1)


def test_resampled_reads_more_rows_than_weighted(report):
    for rate in (LOW_RATE, HIGH_RATE):
        weighted = result(report, "weighted", rate)["train_rows"]
        resampled = result(report, "resampled", rate)["train_rows"]

        assert resampled > weighted, rate


def test_odds_bias_lists_inverse_one_minus_p(report):
    high = next(r for r in report["odds_bias"] if r["click_rate"] == HIGH_RATE)

    assert high["inverse_one_minus_p"] == pytest.approx(1 / (1 - HIGH_RATE))


def test_truth_odds_ratio_exceeds_one(report):
    ratios = [row["truth_odds_ratio"] for row in report["odds_bias"]]

    assert min(ratios) > 1


def test_report_markdown_states_conclusions(report_dir):
    text = (report_dir / "report.md").read_text(encoding="utf-8")

    assert "## Conclusions" in text
    assert "weighted's calibration ratio rises" in text


def test_compare_rejects_click_rate_one():
    with pytest.raises(ValueError, match="click rate 1.0"):
        CompareOptions(click_rates=(0.1, 1.0))


def test_compare_rejects_unknown_variant():
    with pytest.raises(ValueError, match="tobit"):
        CompareOptions(variants=("weighted", "tobit"))


def test_compare_rejects_too_few_rows():
    with pytest.raises(ValueError, match="--rows 10 is too few"):
        CompareOptions(rows=10)


def test_compare_rejects_repeated_variant():
    with pytest.raises(ValueError, match="more than once"):
        CompareOptions(variants=("weighted", "weighted"))


def test_compare_cli_reports_too_few_rows(tmp_path, capsys):
    status = main(["compare", "--out", str(tmp_path), "--rows", "10"])

    assert status == 2
    assert "--rows 10 is too few" in capsys.readouterr().err
