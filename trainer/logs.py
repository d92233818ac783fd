"""The canonical impression log: one CSV row per video shown to a user.

Rows that share a `request_id` were shown together as one page. The simulator
and the KuaiRand loader both produce this schema, and training reads only it.
`click_probability` and `expected_watch_time_s` are the simulator's ground
truth and stay empty in logs of real traffic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS: tuple[str, ...] = (
    "request_id",
    "user_id",
    "timestamp_s",
    "hour_of_day",
    "device",
    "country",
    "recent_video_ids",
    "video_id",
    "channel_id",
    "category",
    "video_duration_s",
    "video_age_days",
    "previous_impressions",
    "hours_since_channel_watch",
    "clicked",
    "watch_time_s",
    "click_probability",
    "expected_watch_time_s",
)
"""Column names in file order."""

DTYPES: dict[str, type | str] = {
    "request_id": str,
    "user_id": str,
    "timestamp_s": "int64",
    "hour_of_day": "int64",
    "device": str,
    "country": str,
    "recent_video_ids": str,
    "video_id": str,
    "channel_id": str,
    "category": str,
    "video_duration_s": "float64",
    "video_age_days": "float64",
    "previous_impressions": "int64",
    "hours_since_channel_watch": "float64",
    "clicked": "int64",
    "watch_time_s": "float64",
    "click_probability": "float64",
    "expected_watch_time_s": "float64",
}
"""Pandas dtype of each column. Ids stay strings even when they look numeric."""

SIMULATION_COLUMNS: tuple[str, ...] = ("click_probability", "expected_watch_time_s")
"""Ground-truth columns that only the simulator fills. They are NaN in real logs."""

REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    name for name in COLUMNS if name not in SIMULATION_COLUMNS
)
"""Columns that every log file must contain."""

MAX_RECENT_VIDEOS = 50
"""Maximum number of ids in `recent_video_ids`."""

NEVER_WATCHED_HOURS = 8760.0
"""`hours_since_channel_watch` for a channel not watched within the last year."""

STRING_COLUMNS: tuple[str, ...] = tuple(name for name in COLUMNS if DTYPES[name] is str)

FEATURE_FLOAT_COLUMNS: tuple[str, ...] = (
    "video_duration_s",
    "video_age_days",
    "hours_since_channel_watch",
)
"""Numeric feature columns that may contain NaN or infinity after reading."""


def read_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a log from a .csv or .csv.gz file into the canonical dtypes.

    A file without the simulation columns gets them as NaN. Columns outside
    the schema are kept after the canonical ones. Raises ValueError when a
    required column is missing, a value does not parse as its dtype, or a
    label or feature is invalid (see `check_log_values`). Error messages count
    data rows from 1, so data row 1 is the line after the header.
    """
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"log {path} is empty; a log starts with a header line naming "
            f"the columns {list(REQUIRED_COLUMNS)}"
        ) from None
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ValueError(
            f"log {path} is missing the columns {missing}. "
            f"A log needs all of {list(REQUIRED_COLUMNS)}"
        )

    # Empty fields stay "" in string columns (an empty `recent_video_ids` is a
    # user without history), and become NaN only in numeric columns.
    numeric_columns = [name for name in header if name not in STRING_COLUMNS]
    try:
        frame = pd.read_csv(
            path,
            dtype={name: str for name in STRING_COLUMNS},
            keep_default_na=False,
            na_values={name: [""] for name in numeric_columns},
        )
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    return conform_log(frame, source=str(path))


def _not_text(path: str | os.PathLike[str], error: UnicodeDecodeError) -> ValueError:
    return ValueError(
        f"log {path} is not UTF-8 text: byte {error.start} cannot be decoded; "
        "write the log as UTF-8 CSV, optionally gzip-compressed with a .gz name"
    )


def write_log(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a log as CSV, compressed with gzip when the name ends in .gz.

    The frame is checked and cast with `conform_log` first, so a file written
    here reads back with `read_log`. Parent directories are created.
    """
    log = conform_log(frame, source="frame to write")
    Path(path).parent.mkdir(parents=True, exist_ok=True)

    # A fixed gzip timestamp makes equal logs byte-identical, so the SHA-256
    # of a log file identifies its content.
    compression: str | dict[str, object] = "infer"
    if str(path).endswith(".gz"):
        compression = {"method": "gzip", "compresslevel": 6, "mtime": 0}
    log.to_csv(path, index=False, compression=compression)


def conform_log(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Return a copy of `frame` with the canonical column order and dtypes.

    Missing simulation columns are added as NaN, and extra columns follow the
    canonical ones unchanged. `source` names the data in error messages.
    Raises ValueError when a required column is missing or cannot be cast,
    and when `check_log_values` rejects a value.
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"{source} is missing the log columns {missing}")

    log = frame.copy()
    for name in SIMULATION_COLUMNS:
        if name not in log.columns:
            log[name] = float("nan")

    for name in COLUMNS:
        log[name] = _cast_column(log[name], name, source)
    extra = [name for name in log.columns if name not in COLUMNS]
    log = log[list(COLUMNS) + extra]
    check_log_values(log, source)
    return log


FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_EXPECTED = f"a finite number of magnitude at most {FLOAT32_MAX:.3g}"
INT64_LIMIT = 2.0**63


def check_log_values(log: pd.DataFrame, source: str) -> None:
    """Raise ValueError at the first invalid label or numeric feature.

    `clicked` must be 0 or 1, `watch_time_s` a finite number of seconds of at
    least 0 and exactly 0 on unclicked rows, and the numeric features finite.
    The message names the column, the first invalid data row and its value.
    """
    for name in FEATURE_FLOAT_COLUMNS:
        # The graph reads numeric features as float32, so larger values
        # would turn into infinity there.
        in_range = np.isfinite(log[name]) & (log[name].abs() <= FLOAT32_MAX)
        _require(log, name, in_range, FLOAT32_EXPECTED, source)

    clicked = log["clicked"]
    _require(log, "clicked", clicked.isin((0, 1)), "0 or 1", source)

    watch_time = log["watch_time_s"]
    seconds = np.isfinite(watch_time) & (watch_time >= 0) & (watch_time <= FLOAT32_MAX)
    expected_seconds = f"a number of seconds from 0 to {FLOAT32_MAX:.3g}"
    _require(log, "watch_time_s", seconds, expected_seconds, source)
    _require(
        log,
        "watch_time_s",
        (clicked == 1) | (watch_time == 0),
        "0 on rows with clicked 0, because a video is watched only after a click",
        source,
    )


def _require(
    log: pd.DataFrame, name: str, valid: pd.Series, expected: str, source: str
) -> None:
    invalid = ~valid.to_numpy(dtype=bool)
    if not invalid.any():
        return

    row = int(np.argmax(invalid))
    count = int(invalid.sum())
    raise ValueError(
        f"{source}: column {name!r} {_shown(log[name].iloc[row])} in data row "
        f"{row + 1}; expected {expected} ({count} invalid {_rows(count)} in all)"
    )


def _cast_column(column: pd.Series, name: str, source: str) -> pd.Series:
    if DTYPES[name] is str:
        return _cast_string_column(column, name, source)

    # Unparsable text and the text "nan" both become NaN here, so a NaN
    # where the field was not missing before marks such text.
    values = pd.to_numeric(column, errors="coerce")
    invalid = values.isna() & column.notna()
    expected = "a number"
    if DTYPES[name] == "int64":
        # Beyond 2**63 the cast to int64 would wrap around silently.
        whole = np.isfinite(values) & (values == np.round(values))
        invalid |= ~(whole & (values.abs() < INT64_LIMIT))
        expected = f"a whole number of magnitude below {INT64_LIMIT:.3g}"
    if invalid.any():
        row = int(np.argmax(invalid.to_numpy()))
        raise ValueError(
            f"{source}: column {name!r} cannot be read, it {_shown(column.iloc[row])} "
            f"in data row {row + 1}; expected {expected}"
        )
    return values.astype(DTYPES[name])


def _shown(value: object) -> str:
    # Empty numeric fields were read as NaN, so NaN reads as a missing value.
    if pd.isna(value):
        return "has no value"
    return f"has {value!r}" if isinstance(value, str) else f"has {value}"


def _rows(count: int) -> str:
    return "row" if count == 1 else "rows"


def _cast_string_column(column: pd.Series, name: str, source: str) -> pd.Series:
    # A missing history is an empty list, but a missing id or category has no
    # sensible default, and astype(str) would turn it into the text "nan".
    if name == "recent_video_ids":
        column = column.fillna("")
        missing = 0
    else:
        # read_log keeps empty text fields as "", which is no id either.
        missing = int((column.isna() | (column == "")).sum())
    if missing:
        raise ValueError(
            f"{source}: column {name!r} has {missing} missing values. "
            "Fill them with a placeholder such as 'unknown'"
        )
    return column.astype(str)
