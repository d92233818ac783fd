"""Load KuaiRand interaction logs into the canonical impression log.

KuaiRand (Gao et al., "KuaiRand: An Unbiased Sequential Recommendation Dataset
with Randomly Exposed Videos", CIKM 2022) records impressions of the Kuaishou
short-video app. It ships log CSVs, a user table `user_features*.csv` and a
video table `video_features_basic*.csv`. KuaiRand's fields map to the
canonical columns as follows:

- `request_id`: KuaiRand has no page id, so the impressions of one user in the
  same minute (`time_ms // 60000`) form one page, named `<user_id>-<minute>`.
- `timestamp_s` is `time_ms // 1000`. `hour_of_day` is `hourmin // 100` when
  the log has `hourmin`, else the hour of `time_ms` in China Standard Time
  (UTC+8), because Kuaishou is a Chinese app.
- `device`: KuaiRand records no device. The app surface that showed the video
  stands in for it, as `tab_<n>` from the `tab` column, or `unknown` when the
  log or the row has no `tab`.
- `country`: KuaiRand records no country, and no user column is a place
  (`user_active_degree` is an activity level), so every row gets `unknown`.
- `channel_id` is the video's `author_id` and `category` its `upload_type`.
  Videos missing from the video table get `unknown` for both, and 8760 hours
  since a channel watch because their channel is not known.
- `video_duration_s` is the log's `duration_ms / 1000`, else the video table's
  `video_duration / 1000`, else the median of the known durations.
- `video_age_days` is the time from the upload date (midnight in UTC+8) to
  the impression, at least 0, or the median of the known ages.
- `previous_impressions`, `recent_video_ids` and `hours_since_channel_watch`
  count only impressions and clicks at strictly earlier times in the given
  logs, so rows near the start of the first log see little history.
- `clicked` is `is_click`. `watch_time_s` is `play_time_ms / 1000` for
  clicked impressions and 0 otherwise, because the model weights clicked
  impressions by watch time and ignores play time without a click.
- `click_probability` and `expected_watch_time_s` stay empty (NaN).

The user table is read only to report log users that it does not list,
because none of its columns has a counterpart in the canonical schema.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from trainer.logs import MAX_RECENT_VIDEOS, NEVER_WATCHED_HOURS, conform_log

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

LOG_REQUIRED_COLUMNS = (
    "user_id",
    "video_id",
    "time_ms",
    "is_click",
    "play_time_ms",
    "duration_ms",
)
LOG_OPTIONAL_COLUMNS = ("hourmin", "tab")
"""Optional log columns that the loader uses. It ignores all other columns."""

LOG_INTEGER_COLUMNS = ("time_ms", "is_click", "hourmin", "tab")
"""Log columns that contain whole numbers where they have a value."""

LOG_DURATION_COLUMNS = ("play_time_ms", "duration_ms")
"""Log columns of milliseconds, 0 or more, where they have a value."""

USER_REQUIRED_COLUMNS = ("user_id",)
VIDEO_REQUIRED_COLUMNS = ("video_id", "author_id", "upload_dt")
VIDEO_OPTIONAL_COLUMNS = ("upload_type", "video_duration")

UNKNOWN = "unknown"
CHINA_UTC_OFFSET_MS = 8 * 3_600_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000


def load_kuairand(
    log_paths: PathLike | Sequence[PathLike],
    user_features_path: PathLike,
    video_features_path: PathLike,
) -> pd.DataFrame:
    """Read KuaiRand log files and side tables into one canonical log.

    Rows come out ordered by minute and user, so that each page is contiguous,
    and by time within a page. Raises ValueError when a file lacks a required
    column, a required value is empty, a value is not a finite number, an
    integer column contains a fraction, a duration is negative, or the logs are
    empty. Error messages count data rows from 1, the line after the header.
    """
    impressions = _read_logs(_as_path_list(log_paths))
    videos = _read_videos(video_features_path)
    _report_unknown_users(impressions, user_features_path)

    impressions = _join_videos(impressions, videos, video_features_path)
    impressions = impressions.sort_values(
        ["minute", "user_id", "time_ms"], kind="stable", ignore_index=True
    )
    frame = _canonical_frame(impressions)
    logger.info(
        "loaded %s KuaiRand impressions of %s users and %s videos",
        len(frame),
        frame["user_id"].nunique(),
        frame["video_id"].nunique(),
    )
    return conform_log(frame, source="KuaiRand log")


def _as_path_list(log_paths: PathLike | Sequence[PathLike]) -> list[PathLike]:
    if isinstance(log_paths, str | os.PathLike):
        return [log_paths]
    return list(log_paths)


def _read_table(
    path: PathLike,
    required: Sequence[str],
    optional: Sequence[str],
    string_columns: Sequence[str],
) -> pd.DataFrame:
    """Read the required and the present optional columns of a CSV file."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path} is empty; it needs a header line with {list(required)}"
        ) from None
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(
            f"{path} is missing the columns {missing}. "
            f"It needs {list(required)} and may have {list(optional)}"
        )

    wanted = [name for name in (*required, *optional) if name in header]
    strings = {name: str for name in string_columns if name in wanted}
    return pd.read_csv(path, usecols=wanted, dtype=strings)


def _numeric_column(table: pd.DataFrame, name: str, path: PathLike) -> pd.Series:
    """Parse a column as float, raising ValueError unless each value is finite.

    Empty fields stay NaN. Text that is not a number, "nan" and infinities
    are errors.
    """
    values = pd.to_numeric(table[name], errors="coerce")
    invalid = (values.isna() & table[name].notna()) | np.isinf(values)
    if invalid.any():
        row = int(np.argmax(invalid.to_numpy()))
        raise ValueError(
            f"{path}: column {name!r} has {int(invalid.sum())} values that are "
            f"not finite numbers, such as {table[name].iloc[row]!r} in data row "
            f"{row + 1}"
        )
    return values.astype(np.float64)


def _require_rows(
    table: pd.DataFrame, name: str, valid: pd.Series, expected: str, path: PathLike
) -> None:
    """Raise ValueError naming the first row of `table` where `valid` is False."""
    invalid = ~valid.to_numpy(dtype=bool)
    if invalid.any():
        row = int(np.argmax(invalid))
        raise ValueError(
            f"{path}: column {name!r} has {table[name].iloc[row]:g} in data row "
            f"{row + 1}; expected {expected}"
        )


def _require_values(table: pd.DataFrame, names: Iterable[str], path: PathLike) -> None:
    for name in names:
        empty = int(table[name].isna().sum())
        if empty:
            raise ValueError(f"{path}: column {name!r} has {empty} empty values")


def _read_logs(paths: list[PathLike]) -> pd.DataFrame:
    if not paths:
        raise ValueError("no KuaiRand log files given. Pass at least one path")

    frames = [_read_log_file(path) for path in paths]
    impressions = pd.concat(frames, ignore_index=True)
    if impressions.empty:
        raise ValueError(f"the KuaiRand logs {[str(p) for p in paths]} have no rows")
    return impressions


def _read_log_file(path: PathLike) -> pd.DataFrame:
    """Read one log file into typed columns plus the `minute` of each row."""
    table = _read_table(
        path, LOG_REQUIRED_COLUMNS, LOG_OPTIONAL_COLUMNS, ("user_id", "video_id")
    )
    numeric = [name for name in table.columns if name not in ("user_id", "video_id")]
    for name in numeric:
        table[name] = _numeric_column(table, name, path)
    _require_values(table, ("user_id", "video_id", "time_ms", "is_click"), path)
    _check_log_values(table, path)

    table["time_ms"] = table["time_ms"].astype(np.int64)
    table["is_click"] = table["is_click"].astype(np.int64)
    table["minute"] = table["time_ms"] // MS_PER_MINUTE
    return table


def _check_log_values(table: pd.DataFrame, path: PathLike) -> None:
    """Reject fractions in integer columns, negative durations and bad clicks."""
    for name in LOG_INTEGER_COLUMNS:
        if name in table.columns:
            values = table[name]
            whole = values.isna() | (values == np.round(values))
            _require_rows(table, name, whole, "a whole number", path)

    for name in LOG_DURATION_COLUMNS:
        values = table[name]
        milliseconds = values.isna() | (values >= 0)
        _require_rows(table, name, milliseconds, "milliseconds, 0 or more", path)

    not_binary = ~table["is_click"].isin([0.0, 1.0])
    if not_binary.any():
        row = int(np.argmax(not_binary.to_numpy()))
        raise ValueError(
            f"{path}: column 'is_click' must be 0 or 1, "
            f"got {table['is_click'].iloc[row]:g} in data row {row + 1}"
        )


def _read_videos(path: PathLike) -> pd.DataFrame:
    """Read the video table, indexed by video id, with times in ms since epoch."""
    table = _read_table(
        path,
        VIDEO_REQUIRED_COLUMNS,
        VIDEO_OPTIONAL_COLUMNS,
        ("video_id", "author_id", "upload_type", "upload_dt"),
    )
    _require_values(table, ("video_id",), path)

    repeated = table["video_id"].duplicated()
    if repeated.any():
        logger.warning(
            "%s lists %s video ids more than once, so the first row of each is used",
            path,
            int(repeated.sum()),
        )
        table = table[~repeated]

    upload_date = pd.to_datetime(table["upload_dt"], format="%Y-%m-%d", errors="coerce")
    upload_utc_ms = (upload_date - pd.Timestamp("1970-01-01")) / pd.Timedelta(
        milliseconds=1
    )
    duration_ms = (
        _numeric_column(table, "video_duration", path)
        if "video_duration" in table.columns
        else pd.Series(np.nan, index=table.index)
    )
    category = table.get("upload_type", pd.Series(UNKNOWN, index=table.index))
    return pd.DataFrame(
        {
            "channel_id": table["author_id"].fillna(UNKNOWN).to_numpy(),
            "category": category.fillna(UNKNOWN).to_numpy(),
            "upload_ms": (upload_utc_ms - CHINA_UTC_OFFSET_MS).to_numpy(),
            "table_duration_ms": duration_ms.to_numpy(),
        },
        index=pd.Index(table["video_id"].to_numpy(), name="video_id"),
    )


def _report_unknown_users(impressions: pd.DataFrame, path: PathLike) -> None:
    table = _read_table(path, USER_REQUIRED_COLUMNS, (), ("user_id",))
    log_users = pd.Index(impressions["user_id"].unique())
    unknown = log_users.difference(pd.Index(table["user_id"].dropna()))
    if len(unknown):
        logger.warning(
            "%s of %s log users are missing from %s", len(unknown), len(log_users), path
        )


def _join_videos(
    impressions: pd.DataFrame, videos: pd.DataFrame, path: PathLike
) -> pd.DataFrame:
    """Add channel, category, duration and age from the video table."""
    position = videos.index.get_indexer(impressions["video_id"])
    known = position >= 0
    row = np.where(known, position, 0)
    joined = impressions.copy()

    joined["channel_id"] = np.where(
        known, videos["channel_id"].to_numpy()[row], UNKNOWN
    )
    joined["category"] = np.where(known, videos["category"].to_numpy()[row], UNKNOWN)
    table_duration_ms = np.where(
        known, videos["table_duration_ms"].to_numpy()[row], np.nan
    )
    upload_ms = np.where(known, videos["upload_ms"].to_numpy()[row], np.nan)

    log_duration_ms = joined["duration_ms"].to_numpy()
    duration_ms = np.where(
        np.isnan(log_duration_ms), table_duration_ms, log_duration_ms
    )
    joined["video_duration_s"] = _fill_with_median(
        pd.Series(duration_ms / 1000.0, index=joined.index), "durations"
    )
    age_days = np.maximum((joined["time_ms"] - upload_ms) / MS_PER_DAY, 0.0)
    joined["video_age_days"] = _fill_with_median(age_days, "video ages")

    if not known.all():
        missing_videos = joined.loc[~known, "video_id"].nunique()
        logger.warning(
            "%s impressions of %s videos missing from %s get category %r, "
            "channel %r and the median age",
            int((~known).sum()),
            missing_videos,
            path,
            UNKNOWN,
            UNKNOWN,
        )
    return joined


def _fill_with_median(values: pd.Series, description: str) -> pd.Series:
    missing = int(values.isna().sum())
    if not missing:
        return values

    median = values.median()
    if pd.isna(median):
        # NOTE: no row has the value, so 0 is a placeholder without meaning.
        logger.warning("no impression has known %s, so all get 0", description)
        median = 0.0
    logger.info("filled %s missing %s with the median %s", missing, description, median)
    return values.fillna(median)


def _canonical_frame(impressions: pd.DataFrame) -> pd.DataFrame:
    """Build the canonical columns from impressions sorted by minute and user."""
    user_code = pd.factorize(impressions["user_id"])[0]
    time_ms = impressions["time_ms"].to_numpy()
    clicked = impressions["is_click"].to_numpy()
    channel_code = _channel_codes(impressions["channel_id"])
    video_code = pd.factorize(impressions["video_id"])[0]
    play_time_s = impressions["play_time_ms"].fillna(0.0).to_numpy() / 1000.0

    return pd.DataFrame(
        {
            "request_id": impressions["user_id"]
            + "-"
            + impressions["minute"].astype(str),
            "user_id": impressions["user_id"],
            "timestamp_s": time_ms // 1000,
            "hour_of_day": _hour_of_day(impressions),
            "device": _device(impressions),
            "country": UNKNOWN,
            "recent_video_ids": _recent_clicked_ids(
                user_code, time_ms, impressions["video_id"].to_numpy(), clicked
            ),
            "video_id": impressions["video_id"],
            "channel_id": impressions["channel_id"],
            "category": impressions["category"],
            "video_duration_s": impressions["video_duration_s"],
            "video_age_days": impressions["video_age_days"],
            "previous_impressions": _previous_impressions(
                user_code, video_code, time_ms
            ),
            "hours_since_channel_watch": _hours_since_channel_click(
                user_code, channel_code, time_ms, clicked
            ),
            "clicked": clicked,
            "watch_time_s": np.where(clicked == 1, play_time_s, 0.0),
            "click_probability": np.nan,
            "expected_watch_time_s": np.nan,
        }
    )


def _channel_codes(channel_id: pd.Series) -> np.ndarray:
    # Videos without a known channel share the placeholder name, so they get
    # code -1 to keep them from counting as one channel.
    codes, names = pd.factorize(channel_id)
    placeholder = np.flatnonzero(np.asarray(names) == UNKNOWN)
    return np.where(np.isin(codes, placeholder), -1, codes)


def _hour_of_day(impressions: pd.DataFrame) -> np.ndarray:
    china_ms = impressions["time_ms"].to_numpy() + CHINA_UTC_OFFSET_MS
    hour = (china_ms // MS_PER_HOUR) % 24
    if "hourmin" not in impressions.columns:
        return hour

    hourmin = impressions["hourmin"].to_numpy()
    return np.where(np.isnan(hourmin), hour, hourmin // 100).astype(np.int64)


def _device(impressions: pd.DataFrame) -> pd.Series:
    if "tab" not in impressions.columns:
        return pd.Series(UNKNOWN, index=impressions.index)

    tab = impressions["tab"]
    named = "tab_" + tab.astype("Int64").astype(str)
    return named.where(tab.notna(), UNKNOWN)


def _previous_impressions(
    user_code: np.ndarray, video_code: np.ndarray, time_ms: np.ndarray
) -> np.ndarray:
    """Count the earlier impressions of the same video to the same user.

    Impressions at the same millisecond do not count as earlier than each
    other. The inputs may be in any order, and so is the result.
    """
    order = np.lexsort((time_ms, video_code, user_code))
    user, video, time = user_code[order], video_code[order], time_ms[order]

    # After sorting by (user, video, time), the count for a row is the offset
    # of its first same-time row from the start of its (user, video) group.
    new_pair = _changes(user) | _changes(video)
    new_time = new_pair | _changes(time)
    positions = np.arange(len(order))
    pair_start = np.maximum.accumulate(np.where(new_pair, positions, 0))
    time_start = np.maximum.accumulate(np.where(new_time, positions, 0))

    counts = np.empty(len(order), dtype=np.int64)
    counts[order] = time_start - pair_start
    return counts


def _hours_since_channel_click(
    user_code: np.ndarray,
    channel_code: np.ndarray,
    time_ms: np.ndarray,
    clicked: np.ndarray,
) -> np.ndarray:
    """Return the hours since the user last clicked a video of the same channel.

    Only clicks at strictly earlier times count. The result is
    NEVER_WATCHED_HOURS when there is no such click, when it is a year or more
    ago, and for channel code -1 (unknown channel).
    """
    order = np.lexsort((time_ms, channel_code, user_code))
    user, channel, time = user_code[order], channel_code[order], time_ms[order]
    new_pair = _changes(user) | _changes(channel)
    new_time = new_pair | _changes(time)

    # Work on distinct (user, channel, time) keys, so that clicks at the same
    # millisecond are never "earlier" than each other.
    key_start = np.flatnonzero(new_time)
    key_of_row = np.cumsum(new_time) - 1
    key_clicked = np.maximum.reduceat(clicked[order], key_start) > 0
    key_pair = (np.cumsum(new_pair) - 1)[key_start]
    key_time = time[key_start]

    keys = np.arange(len(key_start))
    last_click_key = np.maximum.accumulate(np.where(key_clicked, keys, -1))
    earlier_click_key = np.concatenate(([-1], last_click_key[:-1]))
    found = earlier_click_key >= 0
    found[found] &= key_pair[earlier_click_key[found]] == key_pair[found]

    key_hours = np.full(len(key_start), NEVER_WATCHED_HOURS)
    elapsed_ms = key_time[found] - key_time[earlier_click_key[found]]
    key_hours[found] = np.minimum(elapsed_ms / MS_PER_HOUR, NEVER_WATCHED_HOURS)

    hours = np.empty(len(order))
    hours[order] = key_hours[key_of_row]
    hours[channel_code < 0] = NEVER_WATCHED_HOURS
    return hours


def _recent_clicked_ids(
    user_code: np.ndarray,
    time_ms: np.ndarray,
    video_id: np.ndarray,
    clicked: np.ndarray,
) -> list[str]:
    """List, for each row, the videos its user clicked earlier, most recent first.

    Each entry is a space-separated string of at most MAX_RECENT_VIDEOS ids,
    empty when the user clicked nothing earlier. A video clicked twice appears
    twice. Clicks at the row's own millisecond do not count.
    """
    order = np.lexsort((time_ms, user_code))
    users = user_code[order].tolist()
    times = time_ms[order].tolist()
    videos = video_id[order].tolist()
    clicks = clicked[order].tolist()

    texts = [""] * len(order)
    recent: deque[str] = deque(maxlen=MAX_RECENT_VIDEOS)
    pending: list[str] = []
    text = ""
    previous_user, previous_time = None, None
    for position, row in enumerate(order.tolist()):
        user, time = users[position], times[position]
        if user != previous_user:
            recent.clear()
            pending.clear()
            text = ""
        elif time != previous_time and pending:
            # Clicks become history once time moves past them.
            recent.extendleft(pending)
            pending.clear()
            text = " ".join(recent)

        texts[row] = text
        if clicks[position]:
            pending.append(videos[position])
        previous_user, previous_time = user, time
    return texts


def _changes(values: np.ndarray) -> np.ndarray:
    """Mark the positions where a sorted array differs from its predecessor."""
    changed = np.empty(len(values), dtype=bool)
    changed[:1] = True
    changed[1:] = values[1:] != values[:-1]
    return changed
