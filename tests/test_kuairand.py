import logging
import math
from pathlib import Path

import pandas as pd
import pytest

from trainer.kuairand import load_kuairand
from trainer.logs import COLUMNS

# 2022-04-11 00:00 in China Standard Time (UTC+8), a minute boundary.
T0_MS = 1_649_606_400_000
MINUTE_0 = T0_MS // 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

LOG_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,"
    "is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,"
    "comment_stay_time,is_profile_enter,is_rand,tab"
)

# (label, user, video, time_ms, hourmin, is_click, play_time_ms, duration_ms, tab)
# in file order. Video 13 is missing from the video table, user 3 from the user
# table, and row J has no tab.
LOG_ROWS = [
    ("A", "2", "12", T0_MS + 366 * DAY_MS, 0, 0, 1000, "60000", "2"),
    ("B", "1", "10", T0_MS, 0, 1, 20000, "30000", "1"),
    ("C", "1", "11", T0_MS + 10_000, 0, 0, 5000, "", "1"),
    ("D", "1", "12", T0_MS + HOUR_MS, 100, 1, 45000, "60000", "1"),
    ("E", "1", "10", T0_MS + 2 * HOUR_MS, 200, 0, 7000, "30000", "1"),
    ("F", "1", "11", T0_MS + 2 * HOUR_MS, 200, 1, 9000, "", "1"),
    ("G", "1", "13", T0_MS + 2 * HOUR_MS + 30_000, 200, 1, 4000, "20000", "1"),
    ("H", "2", "12", T0_MS, 0, 1, 30000, "60000", "2"),
    ("I", "2", "12", T0_MS, 0, 0, 0, "60000", "2"),
    ("J", "3", "14", T0_MS + HOUR_MS, 100, 1, 12000, "", ""),
]

VIDEO_TABLE = """\
video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,server_height,music_id,music_type,tag
10,100,NORMAL,2022-04-08,LongImport,0.0,30000.0,720.0,1280.0,1,9.0,39
11,100,NORMAL,2022-04-09,ShortImport,0.0,,720.0,1280.0,2,9.0,2
12,200,NORMAL,2022-04-10,Kmovie,0.0,60000.0,720.0,1280.0,3,9.0,5
14,300,NORMAL,2022-05-01,LongImport,0.0,15000.0,720.0,1280.0,4,9.0,7
"""

USER_TABLE = """\
user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,register_days
1,full_active,0,0,0,799
2,high_active,0,0,1,1474
"""

# Rows sorted by minute, user and time: B, C, H, I, D, J, E, F, G, A.
UNKNOWN_DURATION_S = 45.0  # median of 30, 60, 60, 60, 15, 30, 20, 60
UNKNOWN_AGE_DAYS = 2.0 + 10 / 86_400  # the median of the known ages is row C's
NEVER = 8760.0
EXPECTED = {
    "request_id": [
        f"1-{MINUTE_0}",
        f"1-{MINUTE_0}",
        f"2-{MINUTE_0}",
        f"2-{MINUTE_0}",
        f"1-{MINUTE_0 + 60}",
        f"3-{MINUTE_0 + 60}",
        f"1-{MINUTE_0 + 120}",
        f"1-{MINUTE_0 + 120}",
        f"1-{MINUTE_0 + 120}",
        f"2-{MINUTE_0 + 366 * 1440}",
    ],
    "user_id": ["1", "1", "2", "2", "1", "3", "1", "1", "1", "2"],
    "hour_of_day": [0, 0, 0, 0, 1, 1, 2, 2, 2, 0],
    "device": [
        "tab_1",
        "tab_1",
        "tab_2",
        "tab_2",
        "tab_1",
        "unknown",
        "tab_1",
        "tab_1",
        "tab_1",
        "tab_2",
    ],
    "country": ["unknown"] * 10,
    "recent_video_ids": [
        "",
        "10",
        "",
        "",
        "10",
        "",
        "12 10",
        "12 10",
        "11 12 10",
        "12",
    ],
    "video_id": ["10", "11", "12", "12", "12", "14", "10", "11", "13", "12"],
    "channel_id": [
        "100",
        "100",
        "200",
        "200",
        "200",
        "300",
        "100",
        "100",
        "unknown",
        "200",
    ],
    "category": [
        "LongImport",
        "ShortImport",
        "Kmovie",
        "Kmovie",
        "Kmovie",
        "LongImport",
        "LongImport",
        "ShortImport",
        "unknown",
        "Kmovie",
    ],
}
EXPECTED_APPROX = {
    "video_duration_s": [30.0, 45.0, 60.0, 60.0, 60.0, 15.0, 30.0, 45.0, 20.0, 60.0],
    "video_age_days": [
        3.0,
        2.0 + 10 / 86_400,
        1.0,
        1.0,
        1.0 + 1 / 24,
        0.0,
        3.0 + 2 / 24,
        2.0 + 2 / 24,
        UNKNOWN_AGE_DAYS,
        367.0,
    ],
    "previous_impressions": [0, 0, 0, 0, 0, 0, 1, 1, 0, 2],
    "hours_since_channel_watch": [
        NEVER,
        10 / 3600,
        NEVER,
        NEVER,
        NEVER,
        NEVER,
        2.0,
        2.0,
        NEVER,
        NEVER,
    ],
    "clicked": [1, 0, 1, 0, 1, 1, 0, 1, 1, 0],
    "watch_time_s": [20.0, 0.0, 30.0, 0.0, 45.0, 12.0, 0.0, 9.0, 4.0, 0.0],
}


def _log_line(row: tuple) -> str:
    _, user, video, time_ms, hourmin, click, play_ms, duration_ms, tab = row
    date = "20220411"
    flags = "0,0,0,0,0,0"
    return (
        f"{user},{video},{date},{hourmin},{time_ms},{click},{flags},{play_ms},"
        f"{duration_ms},0,0,0,0,{tab}"
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_log(path: Path, rows: list[tuple]) -> Path:
    lines = [LOG_HEADER, *(_log_line(row) for row in rows)]
    return _write(path, "\n".join(lines) + "\n")


@pytest.fixture
def side_tables(tmp_path) -> tuple[Path, Path]:
    users = _write(tmp_path / "user_features.csv", USER_TABLE)
    videos = _write(tmp_path / "video_features_basic.csv", VIDEO_TABLE)
    return users, videos


@pytest.fixture
def loaded(tmp_path, side_tables) -> pd.DataFrame:
    log = _write_log(tmp_path / "log.csv", LOG_ROWS)
    return load_kuairand(log, *side_tables)


def test_load_kuairand_has_canonical_columns(loaded):
    columns = tuple(loaded.columns)

    assert columns == COLUMNS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_kuairand_fills_column(loaded, name):
    values = loaded[name].tolist()

    assert values == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_APPROX))
def test_load_kuairand_fills_float_column(loaded, name):
    values = loaded[name].tolist()

    assert values == pytest.approx(EXPECTED_APPROX[name])


def test_load_kuairand_converts_time_to_seconds(loaded):
    first = loaded["timestamp_s"].iloc[0]

    assert first == T0_MS // 1000


def test_load_kuairand_leaves_ground_truth_empty(loaded):
    truth = loaded[["click_probability", "expected_watch_time_s"]]

    assert truth.isna().all().all()


def test_load_kuairand_joins_several_log_files(tmp_path, side_tables, loaded):
    first = _write_log(tmp_path / "log_1.csv", LOG_ROWS[:4])
    second = _write_log(tmp_path / "log_2.csv", LOG_ROWS[4:])

    joined = load_kuairand([first, second], *side_tables)

    pd.testing.assert_frame_equal(joined, loaded)


def test_load_kuairand_reports_missing_videos(tmp_path, side_tables, caplog):
    log = _write_log(tmp_path / "log.csv", LOG_ROWS)

    with caplog.at_level(logging.WARNING, logger="trainer.kuairand"):
        load_kuairand(log, *side_tables)

    assert "1 impressions of 1 videos missing" in caplog.text


def test_load_kuairand_reports_missing_users(tmp_path, side_tables, caplog):
    log = _write_log(tmp_path / "log.csv", LOG_ROWS)

    with caplog.at_level(logging.WARNING, logger="trainer.kuairand"):
        load_kuairand(log, *side_tables)

    assert "1 of 3 log users are missing" in caplog.text


def test_load_kuairand_reads_minimal_columns(tmp_path):
    # 05:30 China Standard Time, without hourmin or tab in the log and
    # without upload_type or video_duration in the video table.
    log = _write(
        tmp_path / "log.csv",
        "user_id,video_id,time_ms,is_click,play_time_ms,duration_ms\n"
        f"1,10,{T0_MS + 5 * HOUR_MS + 1_800_000},1,8000,\n",
    )
    users = _write(tmp_path / "users.csv", "user_id\n1\n")
    videos = _write(
        tmp_path / "videos.csv", "video_id,author_id,upload_dt\n10,100,2022-04-10\n"
    )

    frame = load_kuairand(log, users, videos)

    assert frame["hour_of_day"].tolist() == [5]
    assert frame["device"].tolist() == ["unknown"]
    assert frame["category"].tolist() == ["unknown"]


def test_load_kuairand_uses_zero_without_any_duration(tmp_path):
    log = _write(
        tmp_path / "log.csv",
        f"user_id,video_id,time_ms,is_click,play_time_ms,duration_ms\n"
        f"1,10,{T0_MS},0,0,\n",
    )
    users = _write(tmp_path / "users.csv", "user_id\n1\n")
    videos = _write(
        tmp_path / "videos.csv", "video_id,author_id,upload_dt\n10,100,2022-04-10\n"
    )

    frame = load_kuairand(log, users, videos)

    assert frame["video_duration_s"].tolist() == [0.0]


def test_load_kuairand_names_missing_log_columns(tmp_path, side_tables):
    log = _write(tmp_path / "bad_log.csv", "user_id,video_id,is_click\n1,10,1\n")

    with pytest.raises(ValueError, match=r"bad_log\.csv is missing the columns"):
        load_kuairand(log, *side_tables)


def test_load_kuairand_lists_each_missing_log_column(tmp_path, side_tables):
    log = _write(tmp_path / "bad_log.csv", "user_id,video_id,is_click\n1,10,1\n")

    with pytest.raises(ValueError, match=r"\['time_ms', 'play_time_ms', 'dur"):
        load_kuairand(log, *side_tables)


def test_load_kuairand_names_missing_video_columns(tmp_path):
    log = _write_log(tmp_path / "log.csv", LOG_ROWS)
    users = _write(tmp_path / "users.csv", USER_TABLE)
    videos = _write(tmp_path / "bad_videos.csv", "video_id,upload_dt\n10,2022-04-10\n")

    with pytest.raises(ValueError, match=r"bad_videos\.csv .*\['author_id'\]"):
        load_kuairand(log, users, videos)


def test_load_kuairand_names_missing_user_column(tmp_path, side_tables):
    log = _write_log(tmp_path / "log.csv", LOG_ROWS)
    users = _write(tmp_path / "bad_users.csv", "uid\n1\n")

    with pytest.raises(ValueError, match=r"bad_users\.csv .*\['user_id'\]"):
        load_kuairand(log, users, side_tables[1])


def test_load_kuairand_rejects_text_time(tmp_path, side_tables):
    rows = [(*LOG_ROWS[1][:3], "noon", *LOG_ROWS[1][4:])]
    log = _write_log(tmp_path / "log.csv", rows)

    with pytest.raises(ValueError, match=r"log\.csv: column 'time_ms' .*'noon'"):
        load_kuairand(log, *side_tables)


def test_load_kuairand_rejects_non_binary_click(tmp_path, side_tables):
    row = LOG_ROWS[1]
    log = _write_log(tmp_path / "log.csv", [(*row[:5], 2, *row[6:])])

    with pytest.raises(ValueError, match="'is_click' must be 0 or 1, got 2"):
        load_kuairand(log, *side_tables)


def test_load_kuairand_rejects_empty_user_id(tmp_path, side_tables):
    row = LOG_ROWS[1]
    log = _write_log(tmp_path / "log.csv", [(row[0], "", *row[2:])])

    with pytest.raises(ValueError, match="'user_id' has 1 empty values"):
        load_kuairand(log, *side_tables)


def test_load_kuairand_rejects_empty_log(tmp_path, side_tables):
    log = _write_log(tmp_path / "log.csv", [])

    with pytest.raises(ValueError, match="have no rows"):
        load_kuairand(log, *side_tables)


def test_load_kuairand_rejects_no_log_paths(side_tables):
    with pytest.raises(ValueError, match="no KuaiRand log files"):
        load_kuairand([], *side_tables)


def test_load_kuairand_gives_unknown_video_median_age(loaded):
    age = loaded.loc[loaded["video_id"] == "13", "video_age_days"].item()

    assert math.isclose(age, UNKNOWN_AGE_DAYS)
