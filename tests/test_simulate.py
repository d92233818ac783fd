import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from trainer.logs import COLUMNS, DTYPES, MAX_RECENT_VIDEOS, read_log, write_log
from trainer.simulate import SimulationConfig, simulate_log

ROWS = 20_000
CLICK_RATE = 0.05


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return simulate_log(rows=ROWS, click_rate=CLICK_RATE, seed=7)


def test_simulate_is_deterministic_for_a_seed():
    first = simulate_log(rows=2_000, seed=3)

    second = simulate_log(rows=2_000, seed=3)

    pd.testing.assert_frame_equal(first, second)


def test_simulate_differs_between_seeds():
    first = simulate_log(rows=2_000, seed=3)

    second = simulate_log(rows=2_000, seed=4)

    assert not first.equals(second)


def test_simulate_has_canonical_columns(log):
    columns = tuple(log.columns)

    assert columns == COLUMNS


@pytest.mark.parametrize("name", COLUMNS)
def test_simulate_has_canonical_dtype(log, name):
    expected = pd.Series([], dtype=DTYPES[name]).dtype

    dtype = log[name].dtype

    assert dtype == expected


@pytest.mark.parametrize("rows", [1, 7, 31, 1_000])
def test_simulate_returns_exact_row_count(rows):
    frame = simulate_log(rows=rows, seed=1)

    assert len(frame) == rows


def test_simulate_truncates_only_the_last_page(log):
    page_sizes = log.groupby("request_id", sort=False).size()

    assert page_sizes.iloc[:-1].between(8, 30).all()


@pytest.mark.parametrize("click_rate", [0.01, CLICK_RATE, 0.5])
def test_simulate_matches_click_rate_in_probability(click_rate):
    frame = simulate_log(rows=5_000, click_rate=click_rate, seed=2)

    mean_probability = frame["click_probability"].mean()

    assert abs(mean_probability - click_rate) / click_rate < 1e-3


def test_simulate_realised_click_rate_is_close(log):
    realised = log["clicked"].mean()

    assert abs(realised - CLICK_RATE) / CLICK_RATE < 0.15


def test_simulate_watch_time_is_zero_without_click(log):
    unclicked = log[log["clicked"] == 0]

    assert (unclicked["watch_time_s"] == 0.0).all()


def test_simulate_watch_time_is_positive_with_click(log):
    clicked = log[log["clicked"] == 1]

    assert (clicked["watch_time_s"] > 0.0).all()


def test_simulate_watch_time_stays_within_duration(log):
    excess = log["watch_time_s"] - log["video_duration_s"]

    assert (excess <= 0.0).all()


def test_simulate_mean_watch_time_matches_expectation(log):
    realised = log["watch_time_s"].mean()

    expected = log["expected_watch_time_s"].mean()

    assert abs(realised - expected) / expected < 0.2


def test_simulate_expected_watch_time_is_bounded(log):
    bound = log["click_probability"] * log["video_duration_s"]

    assert (log["expected_watch_time_s"] <= bound).all()


def test_simulate_recent_ids_are_well_formed(log):
    pattern = rf"(v\d+( v\d+){{0,{MAX_RECENT_VIDEOS - 1}}})?"

    well_formed = log["recent_video_ids"].str.fullmatch(pattern)

    assert well_formed.all()


def test_simulate_recent_ids_include_empty_histories():
    frame = simulate_log(rows=50_000, seed=5)

    empty = frame["recent_video_ids"] == ""

    assert empty.any()


def test_simulate_recent_ids_are_shared_within_a_request(log):
    histories_per_request = log.groupby("request_id")["recent_video_ids"].nunique()

    assert (histories_per_request == 1).all()


def test_simulate_shows_a_video_once_per_request(log):
    repeated = log.duplicated(["request_id", "video_id"])

    assert not repeated.any()


def test_simulate_hour_effect_depends_on_category(log):
    # A model additive in hour and category gives a zero difference of
    # differences. News peaks in the morning and film in the evening.
    hour = log["hour_of_day"]
    log_odds = pd.Series(logit(log["click_probability"]), index=log.index)
    morning = hour.between(6, 10)
    evening = hour.between(19, 23)

    def contrast(category: str) -> float:
        in_category = log["category"] == category
        return (
            log_odds[in_category & morning].mean()
            - log_odds[in_category & evening].mean()
        )

    assert contrast("news") - contrast("film") > 1.0


@pytest.mark.parametrize("click_rate", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_simulate_rejects_invalid_click_rate(click_rate):
    with pytest.raises(ValueError, match="click_rate must lie in"):
        simulate_log(rows=10, click_rate=click_rate)


def test_simulate_rejects_zero_rows():
    with pytest.raises(ValueError, match="rows must be an integer of at least 1"):
        simulate_log(rows=0)


def test_simulation_config_rejects_too_few_videos():
    with pytest.raises(ValueError, match="videos must be at least"):
        SimulationConfig(videos=3)


def test_simulate_accepts_a_small_population():
    config = SimulationConfig(users=5, channels=2, videos=12, days=1)

    frame = simulate_log(rows=300, seed=0, config=config)

    assert frame["user_id"].nunique() <= 5


def test_log_round_trips_through_gzip_csv(tmp_path, log):
    path = tmp_path / "log.csv.gz"

    write_log(log, path)
    read = read_log(path)

    pd.testing.assert_frame_equal(read, log)


def test_write_log_is_byte_identical_for_equal_logs(tmp_path, log):
    first = tmp_path / "first" / "log.csv.gz"
    second = tmp_path / "second" / "log.csv.gz"

    write_log(log.head(100), first)
    write_log(log.head(100), second)

    assert first.read_bytes() == second.read_bytes()


def test_read_log_names_missing_columns(tmp_path, log):
    path = tmp_path / "broken.csv"
    log.drop(columns=["clicked", "device"]).to_csv(path, index=False)

    with pytest.raises(ValueError, match=r"broken\.csv is missing the columns"):
        read_log(path)


def test_read_log_lists_each_missing_column(tmp_path, log):
    path = tmp_path / "broken.csv"
    log.drop(columns=["clicked", "device"]).to_csv(path, index=False)

    with pytest.raises(ValueError, match=r"\['device', 'clicked'\]"):
        read_log(path)


def test_read_log_keeps_ids_as_strings(tmp_path, log):
    path = tmp_path / "log.csv"
    frame = log.head(3).assign(user_id="007", recent_video_ids="")
    frame.drop(columns=["click_probability", "expected_watch_time_s"]).to_csv(
        path, index=False
    )

    read = read_log(path)

    assert read["user_id"].tolist() == ["007"] * 3


def test_read_log_reads_empty_history_as_empty_string(tmp_path, log):
    path = tmp_path / "log.csv"
    log.head(3).assign(recent_video_ids="").to_csv(path, index=False)

    read = read_log(path)

    assert read["recent_video_ids"].tolist() == [""] * 3


def test_read_log_adds_missing_simulation_columns(tmp_path, log):
    path = tmp_path / "log.csv"
    log.head(3).drop(columns=["click_probability"]).to_csv(path, index=False)

    read = read_log(path)

    assert np.isnan(read["click_probability"]).all()


def test_read_log_rejects_text_in_numeric_column(tmp_path, log):
    path = tmp_path / "log.csv"
    log.head(3).assign(previous_impressions="many").to_csv(path, index=False)

    with pytest.raises(ValueError, match="'previous_impressions' cannot be read"):
        read_log(path)
