"""Simulate impression logs whose click probability and watch time are known.

The simulator draws a population of users, channels and videos, then pages of
8 to 30 impressions (by default) shown to users at different hours and on
different devices. Every impression gets a true click probability `p` and a
true expected watch time given a click, so the log carries the ground truth
that a trained model should recover: `expected_watch_time_s = p * E[T | click]`.

Click probability, with sigma the logistic function:

    p = sigma(b + 0.8 s + 0.5 q + 0.6 cos(2 pi (h - h_c) / 24) + 0.4 d z
              + 0.8 n exp(-n) - 0.15 n - 0.25 ln(1 + w) + 0.7 exp(-a / 7)
              + u + k)

Watch time given a click, T = duration * completion, where

    completion ~ Beta(6 m, 6 (1 - m))
    m = 0.08 + 0.87 sigma(0.3 + 0.4 s + 0.5 q - 0.6 z + 0.35 d z
                          + 0.3 cos(2 pi (h - h_c) / 24)
                          - 0.1 ln(1 + n) - 0.05 ln(1 + w))
    E[T | click] = duration * m

with the symbols

    s    = ln(K theta), the user's taste theta for the video's category among
           K categories, clipped to [-4, ln K], so a uniform taste gives 0.
           Each user's taste vector is drawn from Dirichlet(0.3, ..., 0.3).
    q    = hidden video quality, channel quality plus N(0, 0.6^2) noise
    h    = hour_of_day (local), h_c = peak hour of the video's category
    d    = the device's lean to long videos: mobile -1, tablet -0.3,
           desktop 0.3, tv 1
    z    = ln(video_duration_s / 300)
    n    = previous_impressions, whose effect rises from n = 0 to n = 1 and
           then falls (curiosity first, fatigue after repeated showings)
    w    = hours_since_channel_watch
    a    = video_age_days
    u    = hidden user bias, N(0, 0.4^2)
    k    = country x category affinity, N(0, 0.3^2) per pair
    b    = offset found by root finding so that the mean of p over the drawn
           impressions equals `click_rate`

The interactions (taste x category, hour x category, device x duration), the
non-monotone effect of previous impressions, the log shape of channel recency
and the freshness decay keep any linear model in the logged features from
fitting p or E[T | click] exactly, as in real traffic.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit

from trainer.logs import MAX_RECENT_VIDEOS, NEVER_WATCHED_HOURS, conform_log

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
SECONDS_PER_HOUR = 3_600


@dataclass(frozen=True)
class CategoryProfile:
    """A video category with its duration distribution and daily peak."""

    name: str
    share: float
    """Share of channels that publish mainly in this category."""
    median_duration_s: float
    duration_sigma: float
    """Standard deviation of ln(duration)."""
    peak_hour: int
    """Local hour at which the category is most attractive."""


CATEGORIES: tuple[CategoryProfile, ...] = (
    CategoryProfile("music", 0.14, 210.0, 0.5, 20),
    CategoryProfile("gaming", 0.12, 900.0, 0.9, 22),
    CategoryProfile("news", 0.07, 240.0, 0.6, 8),
    CategoryProfile("sports", 0.08, 360.0, 0.8, 21),
    CategoryProfile("comedy", 0.10, 120.0, 0.7, 21),
    CategoryProfile("education", 0.07, 720.0, 0.7, 15),
    CategoryProfile("howto", 0.08, 480.0, 0.7, 13),
    CategoryProfile("film", 0.06, 1500.0, 0.9, 21),
    CategoryProfile("kids", 0.06, 420.0, 0.8, 17),
    CategoryProfile("vlog", 0.10, 600.0, 0.7, 19),
    CategoryProfile("science", 0.05, 840.0, 0.7, 14),
    CategoryProfile("cooking", 0.07, 540.0, 0.6, 18),
)

# Country code, share of users and UTC offset in hours.
COUNTRIES: tuple[tuple[str, float, float], ...] = (
    ("US", 0.24, -5.0),
    ("IN", 0.16, 5.5),
    ("BR", 0.10, -3.0),
    ("ID", 0.07, 7.0),
    ("MX", 0.06, -6.0),
    ("JP", 0.05, 9.0),
    ("DE", 0.04, 1.0),
    ("GB", 0.04, 0.0),
    ("FR", 0.035, 1.0),
    ("TR", 0.03, 3.0),
    ("PH", 0.03, 8.0),
    ("VN", 0.025, 7.0),
    ("KR", 0.025, 9.0),
    ("RU", 0.025, 3.0),
    ("ES", 0.02, 1.0),
    ("IT", 0.02, 1.0),
    ("CA", 0.02, -5.0),
    ("AR", 0.02, -3.0),
    ("NG", 0.02, 1.0),
    ("EG", 0.02, 2.0),
)

DEVICES: tuple[str, ...] = ("mobile", "tablet", "desktop", "tv")
DEVICE_SHARES = np.array([0.62, 0.08, 0.20, 0.10])
DEVICE_LONG_VIDEO_LEAN = np.array([-1.0, -0.3, 0.3, 1.0])
PREFERRED_DEVICE_SHARE = 0.8
"""Share of a user's requests made on the user's preferred device."""

# Relative traffic per local hour 0..23: a night trough and an evening peak.
HOURLY_TRAFFIC = np.array(
    [3.0, 2.0, 1.3, 1.0, 0.9, 1.0, 1.6, 2.6, 3.4, 3.6, 3.8, 4.0]
    + [4.4, 4.3, 4.2, 4.4, 4.8, 5.4, 6.2, 7.0, 7.6, 7.4, 6.2, 4.6]
)

TASTE_DRIVEN_SHARE = 0.6
"""Share of candidates whose category is drawn from the user's taste."""

COMPLETION_CONCENTRATION = 6.0
"""Sum of the two Beta parameters of the completion ratio."""

REFERENCE_DURATION_S = 300.0
"""Duration at which the device x duration interaction is zero."""


@dataclass(frozen=True)
class SimulationConfig:
    """Sizes of the simulated population and of its pages of impressions."""

    users: int = 20_000
    channels: int = 2_000
    videos: int = 20_000
    days: int = 14
    """Length of the simulated period in days."""
    start_timestamp_s: int = 1_709_510_400
    """Start of the period in unix seconds (2024-03-04T00:00:00Z)."""
    min_page_size: int = 8
    max_page_size: int = 30

    def __post_init__(self) -> None:
        for name in ("users", "channels", "days", "min_page_size"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"SimulationConfig.{name} must be at least 1, "
                    f"got {getattr(self, name)}"
                )
        if self.videos < len(CATEGORIES):
            raise ValueError(
                f"SimulationConfig.videos must be at least {len(CATEGORIES)} "
                f"so that every category has a video, got {self.videos}"
            )
        if self.max_page_size < self.min_page_size:
            raise ValueError(
                f"SimulationConfig.max_page_size ({self.max_page_size}) must be "
                f"at least min_page_size ({self.min_page_size})"
            )


@dataclass(frozen=True)
class _Users:
    country: np.ndarray
    preferred_device: np.ndarray
    taste: np.ndarray
    """Matrix of users x categories whose rows sum to 1."""
    activity: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class _Videos:
    channel: np.ndarray
    category: np.ndarray
    duration_s: np.ndarray
    age_at_start_days: np.ndarray
    quality: np.ndarray
    popularity: np.ndarray
    """Positive weight with which candidate generation picks the video."""
    popularity_z: np.ndarray
    channel_popularity_z: np.ndarray


@dataclass(frozen=True)
class _World:
    users: _Users
    videos: _Videos
    country_category_affinity: np.ndarray


@dataclass(frozen=True)
class _Pages:
    sizes: np.ndarray
    user: np.ndarray
    timestamp_s: np.ndarray
    hour: np.ndarray
    device: np.ndarray
    recent_video_ids: list[str]


@dataclass(frozen=True)
class _Impressions:
    page: np.ndarray
    user: np.ndarray
    video: np.ndarray
    video_age_days: np.ndarray
    previous_impressions: np.ndarray
    hours_since_channel_watch: np.ndarray


def simulate_log(
    rows: int = 200_000,
    click_rate: float = 0.05,
    seed: int = 0,
    config: SimulationConfig | None = None,
) -> pd.DataFrame:
    """Draw a log of exactly `rows` impressions in the canonical schema.

    The mean true click probability equals `click_rate`. The same seed and
    config give an identical frame. Raises ValueError when `rows` is not a
    positive integer or `click_rate` lies outside the open interval (0, 1).
    """
    _check_arguments(rows, click_rate)
    config = config or SimulationConfig()
    rng = np.random.default_rng(seed)

    world = _draw_world(rng, config)
    pages = _draw_pages(rng, world, rows, config)
    impressions = _draw_impressions(rng, world, pages, config)

    terms = _terms(world, pages, impressions)
    click_terms = _click_terms(terms)
    offset = _solve_click_offset(click_terms, click_rate)
    click_probability = expit(offset + click_terms)
    mean_completion = _mean_completion(terms)
    logger.debug("simulated click offset %s for click rate %s", offset, click_rate)

    clicked = rng.random(rows) < click_probability
    duration_s = world.videos.duration_s[impressions.video]
    watch_time_s = np.zeros(rows)
    watch_time_s[clicked] = duration_s[clicked] * rng.beta(
        COMPLETION_CONCENTRATION * mean_completion[clicked],
        COMPLETION_CONCENTRATION * (1.0 - mean_completion[clicked]),
    )

    frame = _frame(world, pages, impressions)
    frame["clicked"] = clicked.astype(np.int64)
    frame["watch_time_s"] = watch_time_s
    frame["click_probability"] = click_probability
    frame["expected_watch_time_s"] = click_probability * duration_s * mean_completion
    return conform_log(frame, source="simulated log")


def _solve_click_offset(click_terms: np.ndarray, click_rate: float) -> float:
    """Return the offset b for which mean(sigmoid(b + click_terms)) is click_rate.

    The mean is increasing in b, so the root is bracketed by the offsets that
    put the largest and the smallest term exactly at `click_rate`.
    """
    target = float(logit(click_rate))
    low = target - float(click_terms.max()) - 1.0
    high = target - float(click_terms.min()) + 1.0

    def excess(offset: float) -> float:
        return float(expit(offset + click_terms).mean()) - click_rate

    return float(brentq(excess, low, high, xtol=1e-12, rtol=1e-12, maxiter=200))


def _check_arguments(rows: int, click_rate: float) -> None:
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise ValueError(f"rows must be an integer of at least 1, got {rows!r}")
    if not (math.isfinite(click_rate) and 0.0 < click_rate < 1.0):
        raise ValueError(
            f"click_rate must lie in the open interval (0, 1), got {click_rate}"
        )


def _draw_world(rng: np.random.Generator, config: SimulationConfig) -> _World:
    users = _draw_users(rng, config)
    videos = _draw_videos(rng, config)
    affinity = rng.normal(0.0, 0.3, size=(len(COUNTRIES), len(CATEGORIES)))
    return _World(users=users, videos=videos, country_category_affinity=affinity)


def _draw_users(rng: np.random.Generator, config: SimulationConfig) -> _Users:
    country_shares = np.array([share for _, share, _ in COUNTRIES])
    taste_alpha = np.full(len(CATEGORIES), 0.3)

    return _Users(
        country=rng.choice(
            len(COUNTRIES), size=config.users, p=country_shares / country_shares.sum()
        ),
        preferred_device=rng.choice(len(DEVICES), size=config.users, p=DEVICE_SHARES),
        taste=rng.dirichlet(taste_alpha, size=config.users),
        activity=rng.lognormal(0.0, 0.9, size=config.users),
        bias=rng.normal(0.0, 0.4, size=config.users),
    )


def _draw_videos(rng: np.random.Generator, config: SimulationConfig) -> _Videos:
    category_shares = np.array([profile.share for profile in CATEGORIES])
    category_shares /= category_shares.sum()
    channel_category = rng.choice(
        len(CATEGORIES), size=config.channels, p=category_shares
    )
    channel_quality = rng.normal(0.0, 0.5, size=config.channels)
    channel_log_popularity = rng.normal(0.0, 1.0, size=config.channels)

    # Popular channels upload more, and most videos stay in their channel's
    # category. The first videos cover every category once, so that candidate
    # generation always finds a video in the category it draws.
    upload_weight = np.exp(0.5 * channel_log_popularity)
    channel = rng.choice(
        config.channels, size=config.videos, p=upload_weight / upload_weight.sum()
    )
    off_topic = rng.random(config.videos) < 0.15
    category = np.where(
        off_topic,
        rng.choice(len(CATEGORIES), size=config.videos, p=category_shares),
        channel_category[channel],
    )
    category[: len(CATEGORIES)] = np.arange(len(CATEGORIES))

    duration_s = _draw_durations(rng, category)
    age_at_start_days = _draw_ages(rng, config.videos)
    quality = channel_quality[channel] + rng.normal(0.0, 0.6, size=config.videos)
    log_popularity = (
        channel_log_popularity[channel]
        + 0.8 * quality
        + 1.5 * np.exp(-age_at_start_days / 10.0)
        + rng.normal(0.0, 0.8, size=config.videos)
    )
    return _Videos(
        channel=channel,
        category=category,
        duration_s=duration_s,
        age_at_start_days=age_at_start_days,
        quality=quality,
        popularity=np.exp(log_popularity),
        popularity_z=_standardise(log_popularity),
        channel_popularity_z=_standardise(channel_log_popularity)[channel],
    )


def _draw_durations(rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    medians = np.array([profile.median_duration_s for profile in CATEGORIES])
    sigmas = np.array([profile.duration_sigma for profile in CATEGORIES])
    duration_s = rng.lognormal(np.log(medians[category]), sigmas[category])
    return np.clip(np.round(duration_s), 5.0, 6 * SECONDS_PER_HOUR)


def _draw_ages(rng: np.random.Generator, videos: int) -> np.ndarray:
    # A quarter of the catalogue is fresh uploads, the rest a long tail of
    # older videos, capped at ten years.
    fresh = rng.random(videos) < 0.25
    age_days = np.where(
        fresh,
        rng.exponential(3.0, size=videos),
        rng.lognormal(np.log(60.0), 1.3, size=videos),
    )
    return np.minimum(age_days, 3650.0)


def _standardise(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / (spread if spread > 0 else 1.0)


def _draw_pages(
    rng: np.random.Generator, world: _World, rows: int, config: SimulationConfig
) -> _Pages:
    sizes = _draw_page_sizes(rng, rows, config)
    pages = len(sizes)
    users = world.users
    activity = users.activity / users.activity.sum()
    user = rng.choice(len(activity), size=pages, p=activity)

    hour = rng.choice(24, size=pages, p=HOURLY_TRAFFIC / HOURLY_TRAFFIC.sum())
    day = rng.integers(0, config.days, size=pages)
    second_of_hour = rng.integers(0, SECONDS_PER_HOUR, size=pages)
    utc_offset_s = np.array(
        [round(offset * SECONDS_PER_HOUR) for *_, offset in COUNTRIES]
    )
    timestamp_s = (
        config.start_timestamp_s
        + day * SECONDS_PER_DAY
        + hour * SECONDS_PER_HOUR
        + second_of_hour
        - utc_offset_s[users.country[user]]
    )

    on_other_device = rng.random(pages) >= PREFERRED_DEVICE_SHARE
    device = np.where(
        on_other_device,
        rng.choice(len(DEVICES), size=pages, p=DEVICE_SHARES),
        users.preferred_device[user],
    )
    recent = _draw_recent_video_ids(rng, world, user)

    # Pages are numbered in time order, so the log's rows are sorted by time.
    order = np.argsort(timestamp_s, kind="stable")
    return _Pages(
        sizes=sizes,
        user=user[order],
        timestamp_s=timestamp_s[order],
        hour=hour[order],
        device=device[order],
        recent_video_ids=[recent[index] for index in order],
    )


def _draw_page_sizes(
    rng: np.random.Generator, rows: int, config: SimulationConfig
) -> np.ndarray:
    max_pages = -(-rows // config.min_page_size)
    sizes = rng.integers(config.min_page_size, config.max_page_size + 1, size=max_pages)
    ends = np.cumsum(sizes)
    pages = int(np.searchsorted(ends, rows)) + 1
    sizes = sizes[:pages]
    sizes[-1] -= ends[pages - 1] - rows
    return sizes


def _draw_recent_video_ids(
    rng: np.random.Generator, world: _World, user: np.ndarray
) -> list[str]:
    """Draw each page's watch history as space-separated ids, most recent first.

    The number of ids grows with the user's activity, and the ids follow the
    user's taste and video popularity, like the candidates.
    """
    lengths = np.minimum(
        rng.poisson(10.0 * world.users.activity[user]), MAX_RECENT_VIDEOS
    )
    history_user = np.repeat(user, lengths)
    categories = _draw_taste_categories(rng, world.users.taste, history_user)
    videos = _draw_videos_in_categories(rng, world.videos, categories)

    names = [f"v{video}" for video in videos.tolist()]
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return [" ".join(names[start:end]) for start, end in zip(starts, ends, strict=True)]


def _draw_taste_categories(
    rng: np.random.Generator, taste: np.ndarray, user: np.ndarray
) -> np.ndarray:
    cumulative = np.cumsum(taste, axis=1)[user]
    draws = rng.random(len(user)) * cumulative[:, -1]
    category = (cumulative <= draws[:, None]).sum(axis=1)
    return np.minimum(category, taste.shape[1] - 1)


def _draw_videos_in_categories(
    rng: np.random.Generator, videos: _Videos, category: np.ndarray
) -> np.ndarray:
    chosen = np.empty(len(category), dtype=np.int64)
    for index in range(len(CATEGORIES)):
        slots = np.flatnonzero(category == index)
        members = np.flatnonzero(videos.category == index)
        weights = videos.popularity[members]
        chosen[slots] = rng.choice(members, size=len(slots), p=weights / weights.sum())
    return chosen


def _draw_impressions(
    rng: np.random.Generator,
    world: _World,
    pages: _Pages,
    config: SimulationConfig,
) -> _Impressions:
    page = np.repeat(np.arange(len(pages.sizes)), pages.sizes)
    user = pages.user[page]
    video = _draw_candidates(rng, world, user)
    video = _redraw_repeated_candidates(rng, world, page, user, video)

    videos = world.videos
    elapsed_days = (
        pages.timestamp_s[page] - config.start_timestamp_s
    ) / SECONDS_PER_DAY
    age_days = np.maximum(videos.age_at_start_days[video] + elapsed_days, 0.0)
    taste = _taste_score(world, user, video)
    activity = world.users.activity[user]

    return _Impressions(
        page=page,
        user=user,
        video=video,
        video_age_days=np.round(age_days, 3),
        previous_impressions=_draw_previous_impressions(
            rng, taste, activity, videos.popularity_z[video], age_days
        ),
        hours_since_channel_watch=_draw_hours_since_channel_watch(
            rng, taste, activity, videos.channel_popularity_z[video]
        ),
    )


def _draw_candidates(
    rng: np.random.Generator, world: _World, user: np.ndarray
) -> np.ndarray:
    """Draw one candidate video per impression slot of `user`.

    Candidate generation mixes the user's taste with global demand: the
    category comes from the user's taste for TASTE_DRIVEN_SHARE of the slots
    and from the popularity mass of each category otherwise. The video is
    then drawn by popularity within its category.
    """
    videos = world.videos
    category_mass = np.bincount(
        videos.category, weights=videos.popularity, minlength=len(CATEGORIES)
    )
    by_taste = rng.random(len(user)) < TASTE_DRIVEN_SHARE
    category = np.where(
        by_taste,
        _draw_taste_categories(rng, world.users.taste, user),
        rng.choice(
            len(CATEGORIES), size=len(user), p=category_mass / category_mass.sum()
        ),
    )
    return _draw_videos_in_categories(rng, videos, category)


def _redraw_repeated_candidates(
    rng: np.random.Generator,
    world: _World,
    page: np.ndarray,
    user: np.ndarray,
    video: np.ndarray,
    rounds: int = 5,
) -> np.ndarray:
    # Redraw candidates that repeat within a page. A few repeats can survive
    # all rounds when a page is large compared with the catalogue.
    video = video.copy()
    for _ in range(rounds):
        repeated = pd.DataFrame({"page": page, "video": video}).duplicated().to_numpy()
        if not repeated.any():
            break
        video[repeated] = _draw_candidates(rng, world, user[repeated])
    return video


def _draw_previous_impressions(
    rng: np.random.Generator,
    taste: np.ndarray,
    activity: np.ndarray,
    popularity_z: np.ndarray,
    age_days: np.ndarray,
) -> np.ndarray:
    # Active users, liked categories and popular videos are shown again more
    # often, and a video uploaded hours ago has had little time to be shown.
    rate = (
        0.15
        * np.sqrt(activity)
        * np.exp(0.4 * taste + 0.3 * popularity_z)
        * -np.expm1(-age_days / 2.0)
    )
    return rng.poisson(rate).astype(np.int64)


def _draw_hours_since_channel_watch(
    rng: np.random.Generator,
    taste: np.ndarray,
    activity: np.ndarray,
    channel_popularity_z: np.ndarray,
) -> np.ndarray:
    # Whether the user watched the channel within the last year depends on
    # taste, activity and the channel's reach. For those who did, the time
    # since then is lognormal and shorter for liked categories.
    watched_probability = expit(
        -1.5 + 0.8 * taste + 0.5 * channel_popularity_z + 0.5 * np.log(activity)
    )
    watched = rng.random(len(taste)) < watched_probability
    hours = np.exp(rng.normal(np.log(72.0) - 0.6 * taste, 1.6))
    hours = np.clip(np.round(hours, 2), 0.01, NEVER_WATCHED_HOURS)
    return np.where(watched, hours, NEVER_WATCHED_HOURS)


def _taste_score(world: _World, user: np.ndarray, video: np.ndarray) -> np.ndarray:
    categories = len(CATEGORIES)
    taste = world.users.taste[user, world.videos.category[video]]
    score = np.log(categories * np.maximum(taste, 1e-12))
    return np.clip(score, -4.0, np.log(categories))


@dataclass(frozen=True)
class _Terms:
    """Per-impression values of the symbols in the module docstring."""

    s: np.ndarray
    q: np.ndarray
    hour_fit: np.ndarray
    """cos(2 pi (h - h_c) / 24)."""
    d: np.ndarray
    z: np.ndarray
    n: np.ndarray
    w: np.ndarray
    a: np.ndarray
    u: np.ndarray
    k: np.ndarray


def _terms(world: _World, pages: _Pages, impressions: _Impressions) -> _Terms:
    videos = world.videos
    users = world.users
    video = impressions.video
    category = videos.category[video]
    peak_hour = np.array([profile.peak_hour for profile in CATEGORIES])[category]
    hour = pages.hour[impressions.page]
    country = users.country[impressions.user]

    return _Terms(
        s=_taste_score(world, impressions.user, video),
        q=videos.quality[video],
        hour_fit=np.cos(2.0 * np.pi * (hour - peak_hour) / 24.0),
        d=DEVICE_LONG_VIDEO_LEAN[pages.device[impressions.page]],
        z=np.log(videos.duration_s[video] / REFERENCE_DURATION_S),
        n=impressions.previous_impressions.astype(np.float64),
        w=impressions.hours_since_channel_watch,
        a=impressions.video_age_days,
        u=users.bias[impressions.user],
        k=world.country_category_affinity[country, category],
    )


def _click_terms(t: _Terms) -> np.ndarray:
    """Return the click logit without its offset b."""
    return (
        0.8 * t.s
        + 0.5 * t.q
        + 0.6 * t.hour_fit
        + 0.4 * t.d * t.z
        + 0.8 * t.n * np.exp(-t.n)
        - 0.15 * t.n
        - 0.25 * np.log1p(t.w)
        + 0.7 * np.exp(-t.a / 7.0)
        + t.u
        + t.k
    )


def _mean_completion(t: _Terms) -> np.ndarray:
    """Return m, the mean share of the video watched after a click."""
    logit_m = (
        0.3
        + 0.4 * t.s
        + 0.5 * t.q
        - 0.6 * t.z
        + 0.35 * t.d * t.z
        + 0.3 * t.hour_fit
        - 0.1 * np.log1p(t.n)
        - 0.05 * np.log1p(t.w)
    )
    return 0.08 + 0.87 * expit(logit_m)


def _frame(world: _World, pages: _Pages, impressions: _Impressions) -> pd.DataFrame:
    """Build the feature columns of the log, without labels and ground truth."""
    page = impressions.page
    video = impressions.video
    videos = world.videos
    user_country = world.users.country[impressions.user]

    country_codes = np.array([code for code, *_ in COUNTRIES], dtype=object)
    category_names = np.array([profile.name for profile in CATEGORIES], dtype=object)
    recent = np.array(pages.recent_video_ids, dtype=object)

    return pd.DataFrame(
        {
            "request_id": _prefixed("r", np.arange(len(pages.sizes)))[page],
            "user_id": _prefixed("u", impressions.user),
            "timestamp_s": pages.timestamp_s[page],
            "hour_of_day": pages.hour[page],
            "device": np.array(DEVICES, dtype=object)[pages.device[page]],
            "country": country_codes[user_country],
            "recent_video_ids": recent[page],
            "video_id": _prefixed("v", video),
            "channel_id": _prefixed("ch", videos.channel[video]),
            "category": category_names[videos.category[video]],
            "video_duration_s": videos.duration_s[video],
            "video_age_days": impressions.video_age_days,
            "previous_impressions": impressions.previous_impressions,
            "hours_since_channel_watch": impressions.hours_since_channel_watch,
        }
    )


def _prefixed(prefix: str, numbers: np.ndarray) -> np.ndarray:
    # Formatting each distinct number once keeps this fast for a million rows.
    distinct, inverse = np.unique(numbers, return_inverse=True)
    names = np.array(
        [f"{prefix}{number}" for number in distinct.tolist()], dtype=object
    )
    return names[inverse]
