"""Simulate a music-streaming app's event log with exact ground truth.

The simulator produces the three tables of churnml's data contract (events,
users, campaigns) for a population of users who sign up, listen, like songs,
join communities, lapse, come back, and receive randomised recall
campaigns over several channels (SMS, e-mail, push; see
:mod:`churnml.simulator.channels`). Beside them it writes the latent truth: every per-user parameter,
the exact probability that each campaign exposure is followed by activity
with and without treatment (hence the true individual uplift and segment),
and, for requested snapshots, the exact probability that each eligible user
churns.

The process
-----------
Users sign up over the period (weekends ``weekend_signup_factor`` times
busier; promotion days ``1 + promotion_extra_signups`` times, the extra users
being low-intent ``promo`` signups with low engagement and a high hazard).
Engagement ``e`` comes from a Beta mixture of casual listeners and regular
ones, shifted by acquisition channel. Day ``t`` covers ``[start + t, start + t + 1)`` in UTC. Every user is in one
of three latent states: *alive*, *lapsed* or *blocked* (blocked is lapsed for
good, and only a recall message sent to a sleeping dog causes it). On each
day, in this order:

1. **Campaign send** (on campaign days, at 10:00 UTC). Eligible are users who
   signed up before day ``t``, whose last activity lies between
   ``campaign_min_days_inactive`` and ``campaign_max_days_inactive`` days
   before ``t`` and who are not inside the response window of an earlier
   exposure (any arm). Blocked users can be eligible: their state is
   latent. Each eligible user gets one arm at random: control or one of
   ``campaign_channels`` (shares from ``campaign_treated_share``). A user
   messaged by channel ``c`` who is not yet blocked becomes blocked with
   probability ``d_c``, and gets an extra daily return probability ``rho_c``
   while lapsed during days ``[t, t + W)``.
2. **Activity.** An alive user is active with probability ``e`` (engagement);
   a lapsed user returns (becomes alive and active) with probability
   ``r`` (+ ``rho`` inside a treated window); blocked users do nothing. New
   users are active on their signup day.
3. **Events.** Active users emit visits, plays, likes, searches, shares,
   playlist additions, community joins and community posts.
4. **Lapse.** An alive user lapses with hazard
   ``h0 * tenure_factor(tenure) * m_like**L * m_comm**C * synergy**(L*C)``,
   where ``L`` says the user liked more than ``like_habit_threshold`` songs in
   the first ``like_habit_days`` days of tenure (so far) and ``C`` says the
   user has joined a community. ``h0`` falls with engagement, so engagement
   confounds behaviour and retention. Searches, shares and playlist
   additions correlate with engagement but do not change the hazard.

Campaign effects depend on observable things and differ by channel (see
:mod:`churnml.simulator.channels`): push's ``rho`` on acquisition channel,
platform, community membership, the like habit and recency (days since last
activity), its ``d`` on acquisition channel, platform and tenure at the send
(paid-social users in their first weeks are the push sleeping dogs); e-mail
reaches web users, long-tenure users and those with the like habit; SMS
reaches some regions far better than others and puts some users off.
``campaign_channels=["push"]`` is the single-channel simulator.

Ground truth
------------
On a path without activity nothing observable changes, so a user's future
hazards, return rates and campaign eligibility are deterministic functions
of the state at the start of a day. The truth is therefore computed exactly
(no Monte Carlo) by a forward recursion over {alive, lapsed, blocked}
that carries the probability mass of "no activity so far", mixing over the
random treatment assignment of every campaign the user would be eligible
for inside the window.

- ``truth/exposures.parquet``: ``p_control`` and ``p_treated`` are the
  probabilities of any activity on days ``[t, t + W)`` of a campaign sent on
  day ``t`` (equivalently, because recipients' events on those two boundary
  days fall after 10:00 UTC, any event in ``[sent_ts, sent_ts + W days)``),
  given the latent state at the start of day ``t``, without a message and
  with one by the user's channel (with several channels, ``p_treated`` of a
  control row is empty); ``uplift = p_treated - p_control``.
- ``truth/exposure_arms.parquet``: the same probability under every arm of
  every exposure (one row per exposure and arm, control included): the true
  per-channel uplifts. Segments: ``persuadable`` if uplift > 0.02, ``sleeping_dog``
  if uplift < -0.02, otherwise ``sure_thing`` if ``p_control >= 0.5`` and
  ``lost_cause`` if not.
- ``truth/churn.parquet``: for each snapshot ``as_of`` (a midnight) and each
  user who signed up before ``as_of`` and was active within
  ``[as_of - eligibility_days, as_of)``, ``p_churn`` is the probability of
  no event of any type in ``[as_of, as_of + horizon_days)`` given the full
  latent state at ``as_of``. ``p_churn_observed`` is the same probability
  from the filtered belief over the three states given the user's
  parameters and observed daily activity (the best any model that knew the
  parameters could do).

No event ever falls exactly on a midnight or on a send time, so half-open
windows ``[a, b)`` and ``(a, b]`` on those boundaries give the same labels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from churnml.simulator import channels as _channels
from churnml.simulator.subscriptions import (
    SUBSCRIPTION_TRUTH_README,
    SUBSCRIPTION_TRUTH_SCHEMA,
    SubscriptionConfig,
    SubscriptionLayer,
)

__all__ = ["SimulationConfig", "SimulationResult", "TruthSpec", "simulate"]

DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
SEND_OFFSET_US = 10 * _HOUR_US
"""Campaigns are sent at 10:00 UTC on the campaign day."""

ALIVE, LAPSED, BLOCKED = 0, 1, 2
STATES = ("alive", "lapsed", "blocked")
EVENT_TYPES = (
    "visit",
    "play",
    "like",
    "search",
    "share",
    "playlist_add",
    "community_join",
    "community_post",
)
_PLAY, _LIKE, _PLAYLIST, _JOIN, _POST = 1, 2, 5, 6, 7
_SONG_EVENTS = (_PLAY, _LIKE, _PLAYLIST)

CHANNELS = ("organic", "search_ads", "paid_social", "referral", "promo")
_PROMO = CHANNELS.index("promo")
_PAID_SOCIAL = CHANNELS.index("paid_social")
# Mix of the regular (not promotion-driven) signups over the first four channels.
_CHANNEL_MIX = np.array([0.40, 0.22, 0.25, 0.13])
# Shift of the engagement mean per regular channel (promo users use their own mean).
_CHANNEL_ENGAGEMENT_SHIFT = np.array([0.02, 0.0, -0.07, 0.07, 0.0])
PLATFORMS = ("ios", "android", "web")
_PLATFORM_MIX = np.array([0.42, 0.46, 0.12])
REGIONS = ("na", "eu", "latam", "apac", "mea")
_REGION_MIX = np.array([0.30, 0.30, 0.15, 0.18, 0.07])

# Campaign-effect multipliers by channel (order of CHANNELS) and platform.
_RECALL_CHANNEL = np.array([1.0, 1.2, 0.1, 1.5, 0.6])
_RECALL_PLATFORM = np.array([1.2, 1.0, 0.3])
_BLOCK_CHANNEL = np.array([0.004, 0.008, 0.2, 0.002, 0.03])
_BLOCK_PLATFORM = np.array([1.0, 1.4, 0.5])

SEGMENT_UPLIFT_THRESHOLD = 0.02
"""``|uplift|`` above this makes a persuadable (+) or a sleeping dog (-)."""
SURE_THING_P_CONTROL = 0.5
"""Below the uplift threshold: sure thing if ``p_control`` >= this, else lost cause."""

_TRUTH_README = """\
# Simulator ground truth

All probabilities are exact (a forward recursion over the latent states
alive / lapsed / blocked, no Monte Carlo). Day t covers [start + t, start + t + 1) UTC.

- `users.parquet`: every latent per-user parameter. `engagement` = daily activity
  probability while alive; `hazard_base` = h0 (daily lapse hazard before the tenure
  factor and the like/community multipliers); `return_rate` = daily return probability
  while lapsed; `recall_boost` and `block_prob` = the user's campaign-effect scale before
  the at-send modifiers (see exposures); `like_taste` = probability of liking a played
  song; `social` = community propensity; `search_rate`, `share_rate`, `playlist_rate` =
  Poisson rates per active day (no causal effect on retention); `final_state`.
- `exposures.parquet`: one row per campaign exposure. `p_control` / `p_treated` =
  P(any event in [sent_ts, sent_ts + W days) | latent state at the start of the send
  day) without / with treatment; `uplift = p_treated - p_control`; `segment`:
  persuadable if uplift > 0.02, sleeping_dog if uplift < -0.02, otherwise sure_thing
  if p_control >= 0.5 else lost_cause. `recall_boost` (rho) and `block_prob` (d) are
  the effective effects at the send; `state_at_send` is the latent state; the
  `*_observed` columns start from the filtered belief instead of the true state.
  `channel` is the arm the user got; with several channels the columns about the
  message (`p_treated`, `uplift`, `segment`, effects) are empty on control rows.
- `exposure_arms.parquet`: one row per exposure and arm (`channel`: control or a
  channel): `p_return` (= p_control for control) and `p_return_observed` under that
  arm, `uplift` / `uplift_observed` against control, `recall_boost`, `block_prob`.
  The best channel of an exposure is the one with the largest uplift.
- `churn.parquet` (when snapshots were requested): for each `as_of` and each user who
  signed up before it and was active in [as_of - eligibility_days, as_of):
  `p_churn` = P(no event of any type in [as_of, as_of + horizon_days) | latent state
  at as_of), including the random assignment of campaigns inside the horizon;
  `p_churn_observed` = the same from the filtered belief P(state | parameters,
  observed daily activity, known treatment); `state` = latent state at as_of.
"""


class SimulationConfig(BaseModel):
    """Parameters of the simulated music-streaming app.

    Every field has a default tuned so that the planted structure (promotion
    dip, like/community retention effects, the four uplift segments) is
    clearly visible at 20,000 users.

    Parameters
    ----------
    n_users : int
        Total signups over the simulated period.
    start : datetime.date
        First simulated day (UTC).
    days : int
        Number of simulated days.
    seed : int
        Seed of ``numpy.random.default_rng``; same config and seed give
        byte-identical Parquet files.
    promotion_days : list of int
        Day offsets of a promotion surge; ``[]`` means no promotion. Offsets
        from ``days`` on fall outside the period and have no effect (here
        and in ``campaign_days``), so shorter runs can keep the defaults.
    promotion_extra_signups : float
        Promotion days get ``1 + promotion_extra_signups`` times the normal
        signups; the extra ones are low-intent users from channel ``promo``.
    campaign_days : list of int
        Day offsets of the recall campaigns.
    campaign_channels : list of str
        The channels campaigns randomise over, besides control (see
        :mod:`churnml.simulator.channels`); ``["push"]`` is the single-channel
        simulator.
    campaign_treated_share : float or None
        Probability that an eligible user gets a message (split equally among
        the channels; the rest is control). None: every arm, control
        included, gets the same share (one half with a single channel).
    campaign_min_days_inactive, campaign_max_days_inactive : int
        Eligible users were last active between these many days before the
        send (inclusive): at risk (a few quiet days) and lapsed.
    response_window_days : int
        Length ``W`` of the response window in days, starting on the send day.
    weekend_signup_factor : float
        Relative signup volume on Saturdays and Sundays.
    engagement_mean, low_intent_engagement_mean : float
        Mean engagement ``e`` (daily activity probability while alive) of
        regular and of promotion users.
    engagement_concentration : float
        Sum of the two Beta parameters of engagement.
    casual_share, casual_engagement_mean, casual_engagement_concentration : float
        Regular users are a mixture: this share are casual listeners with
        ``e ~ Beta`` of this mean and concentration; the others' Beta mean is
        chosen so that the mixture's mean is ``engagement_mean``. Channel
        shifts apply to both.
    hazard_base : float
        Daily lapse hazard ``h0`` of a regular user with mean engagement.
    hazard_engagement_slope, hazard_noise_sigma : float
        ``h0 = hazard_base * exp(-slope * (e - engagement_mean))`` times a
        log-normal factor with mean 1 and log-sd ``hazard_noise_sigma``
        (and ``low_intent_hazard_multiplier`` for promotion users), capped
        at 0.5.
    low_intent_hazard_multiplier : float
        Extra factor on ``h0`` for promotion users.
    tenure_hazard_peak, tenure_hazard_decay_days : float
        ``tenure_factor(k) = 1 + (peak - 1) * exp(-k / decay_days)``.
    like_habit_threshold, like_habit_days : int
        The like habit: more than ``threshold`` likes within the first
        ``days`` days of tenure.
    like_hazard_multiplier, community_hazard_multiplier, like_community_synergy : float
        Hazard multipliers for the like habit, community membership, and the
        extra factor when both hold.
    return_rate_base : float
        Daily return probability of a lapsed user is
        ``return_rate_base * (0.25 + 1.5 * e)`` times a log-normal factor with
        mean 1 and log-sd ``return_noise_sigma`` (capped at 0.5).
    visit_rate, play_rate : float
        Per active day: ``1 + Poisson(visit_rate * (0.5 + e))`` visits and
        ``Poisson(play_rate * (0.3 + 1.5 * e))`` plays.
    like_taste_mean : float
        Mean probability of liking a played song (Beta, concentration 10).
    search_rate, share_rate, playlist_rate : float
        Mean Poisson rates per active day; each user's rate scales with
        ``0.2 + 1.8 * e`` and a log-normal factor.
    community_join_rate : float
        Per active day, a user who is not in a community joins one with
        probability ``community_join_rate * social``.
    community_post_rate : float
        Per active day, a member posts ``Poisson(rate * social)`` times.
    n_songs, song_zipf_exponent : int, float
        Song catalogue size and the exponent of its Zipf-like popularity.
    n_communities : int
        Number of communities.
    effect_noise_sigma : float
        Log-sd of the per-user (mean 1) log-normal factors of ``rho`` and ``d``.
    recall_boost_base : float
        The user's recall boost is ``recall_boost_base`` times channel and
        platform factors and the log-normal factor (capped at 0.5).
    recall_community_multiplier, recall_like_multiplier, recall_recency_days : float
        At a send, ``rho`` is the user's recall boost times
        ``recall_community_multiplier`` for community members,
        ``recall_like_multiplier`` for users with the like habit, and
        ``exp(-(recency - campaign_min_days_inactive) / recall_recency_days)``.
    block_prob_base, block_short_tenure_days, block_short_tenure_multiplier : float
        The user's block probability is ``block_prob_base`` times channel and
        platform factors and the log-normal factor (capped at 0.9); at a send,
        ``d`` is that times ``block_short_tenure_multiplier`` when the user's
        tenure is below ``block_short_tenure_days`` (capped at 0.9).
        These and the ``recall_*`` fields are the push channel's.
    channel_effects : ChannelEffects
        Effect sizes of the SMS and e-mail channels.
    row_group_days : int
        Simulated days per Parquet row group of ``events.parquet``.
    subscriptions : SubscriptionConfig, optional
        Turns on the subscription layer (monthly and yearly plans, renewals,
        cancellations driven by engagement, exact truth; see
        :mod:`churnml.simulator.subscriptions`). Off by default: without it
        every output is what it was before the layer existed.
    """

    model_config = ConfigDict(extra="forbid")

    n_users: int = Field(20_000, gt=0)
    start: dt.date = dt.date(2024, 1, 1)
    days: int = Field(120, gt=0)
    seed: int = Field(0, ge=0)
    promotion_days: list[int] = [45, 46]
    promotion_extra_signups: float = Field(2.0, ge=0)
    campaign_days: list[int] = [56, 77, 98]
    campaign_channels: list[str] = Field(default_factory=lambda: list(_channels.BUILTIN_CHANNELS))
    campaign_treated_share: float | None = Field(None, ge=0, le=1)
    campaign_min_days_inactive: int = Field(3, ge=1)
    campaign_max_days_inactive: int = Field(60, ge=1)
    response_window_days: int = Field(7, ge=1)

    weekend_signup_factor: float = Field(1.3, gt=0)
    engagement_mean: float = Field(0.45, gt=0, lt=1)
    low_intent_engagement_mean: float = Field(0.2, gt=0, lt=1)
    engagement_concentration: float = Field(6.0, gt=0)
    casual_share: float = Field(0.4, ge=0, lt=1)
    casual_engagement_mean: float = Field(0.18, gt=0, lt=1)
    casual_engagement_concentration: float = Field(25.0, gt=0)
    hazard_base: float = Field(0.018, ge=0, le=1)
    hazard_engagement_slope: float = 1.0
    hazard_noise_sigma: float = Field(0.6, ge=0)
    low_intent_hazard_multiplier: float = Field(1.8, ge=0)
    tenure_hazard_peak: float = Field(2.5, ge=1)
    tenure_hazard_decay_days: float = Field(7.0, gt=0)
    like_habit_threshold: int = Field(3, ge=0)
    like_habit_days: int = Field(7, ge=1)
    like_hazard_multiplier: float = Field(0.55, ge=0)
    community_hazard_multiplier: float = Field(0.6, ge=0)
    like_community_synergy: float = Field(0.8, ge=0)
    return_rate_base: float = Field(0.012, ge=0, le=1)
    return_noise_sigma: float = Field(0.7, ge=0)

    visit_rate: float = Field(0.5, ge=0)
    play_rate: float = Field(2.0, ge=0)
    like_taste_mean: float = Field(0.35, gt=0, lt=1)
    search_rate: float = Field(0.3, ge=0)
    share_rate: float = Field(0.15, ge=0)
    playlist_rate: float = Field(0.2, ge=0)
    community_join_rate: float = Field(0.08, ge=0, le=1)
    community_post_rate: float = Field(0.8, ge=0)
    n_songs: int = Field(50_000, gt=0)
    song_zipf_exponent: float = Field(1.1, gt=0)
    n_communities: int = Field(200, gt=0)

    effect_noise_sigma: float = Field(0.6, ge=0)
    recall_boost_base: float = Field(0.035, ge=0)
    recall_community_multiplier: float = Field(1.8, ge=0)
    recall_like_multiplier: float = Field(1.4, ge=0)
    recall_recency_days: float = Field(15.0, gt=0)
    block_prob_base: float = Field(1.0, ge=0)
    block_short_tenure_days: int = Field(30, ge=0)
    block_short_tenure_multiplier: float = Field(2.5, ge=0)
    channel_effects: _channels.ChannelEffects = Field(default_factory=_channels.ChannelEffects)

    row_group_days: int = Field(4, gt=0)
    subscriptions: SubscriptionConfig | None = None

    @field_validator("promotion_days", "campaign_days")
    @classmethod
    def _sorted_unique(cls, value: list[int]) -> list[int]:
        return sorted(set(value))

    @field_validator("campaign_channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        return _channels.check_channels(value)

    @model_validator(mode="after")
    def _check_days(self) -> SimulationConfig:
        for name in ("promotion_days", "campaign_days"):
            bad = [d for d in getattr(self, name) if d < 0]
            if bad:
                raise ValueError(
                    f"The `{name}` parameter of `SimulationConfig` must be non-negative day "
                    f"offsets. Got {bad} instead."
                )
        if self.campaign_min_days_inactive > self.campaign_max_days_inactive:
            raise ValueError(
                "The `campaign_min_days_inactive` parameter of `SimulationConfig` must be "
                f"<= campaign_max_days_inactive={self.campaign_max_days_inactive}. "
                f"Got {self.campaign_min_days_inactive} instead."
            )
        return self


class TruthSpec(BaseModel):
    """Which churn ground truth to compute.

    Parameters
    ----------
    snapshots : list of datetime.datetime
        Snapshot instants ``as_of``: timezone-aware, UTC midnights within the
        simulated period, such that ``as_of + horizon_days`` does not go past
        its end (so that the label is observable).
    horizon_days : int
        Churn = no event of any type in ``[as_of, as_of + horizon_days)``.
    eligibility_days : int
        Eligible users signed up before ``as_of`` and were active within
        ``[as_of - eligibility_days, as_of)``.
    """

    model_config = ConfigDict(extra="forbid")

    snapshots: list[dt.datetime]
    horizon_days: int = Field(14, gt=0)
    eligibility_days: int = Field(30, gt=0)

    @field_validator("snapshots")
    @classmethod
    def _utc_midnights(cls, value: list[dt.datetime]) -> list[dt.datetime]:
        for ts in value:
            if ts.tzinfo is None or ts.utcoffset() != dt.timedelta(0):
                raise ValueError(
                    "The `snapshots` parameter of `TruthSpec` must be timezone-aware UTC "
                    f"datetimes. Got {ts!r} instead."
                )
            if ts.time() != dt.time(0):
                raise ValueError(
                    f"The `snapshots` parameter of `TruthSpec` must be midnights. Got {ts!r} "
                    "instead."
                )
        return sorted(set(value))


@dataclass(frozen=True)
class SimulationResult:
    """Where :func:`simulate` wrote its output, and how much.

    Attributes
    ----------
    events_path, users_path, campaigns_path : Path
        The three data-contract tables.
    truth_dir : Path
        Directory holding the ground-truth tables and their README.
    n_users, n_events, n_exposures : int
        Row counts of users, events and campaigns.
    subscriptions_path : Path or None
        ``subscriptions.parquet`` when the subscription layer is on.
    n_subscriptions : int
        Its rows (billing periods).
    """

    events_path: Path
    users_path: Path
    campaigns_path: Path
    truth_dir: Path
    n_users: int
    n_events: int
    n_exposures: int
    subscriptions_path: Path | None = None
    n_subscriptions: int = 0


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class _Users:
    """Static per-user attributes, ordered by signup time (index = user_id - 1)."""

    signup_day: np.ndarray  # int64
    signup_offset: np.ndarray  # int64 microseconds within the signup day
    channel: np.ndarray  # int8 index into CHANNELS
    platform: np.ndarray  # int8
    region: np.ndarray  # int8
    low_intent: np.ndarray  # bool
    engagement: np.ndarray
    hazard_base: np.ndarray
    return_rate: np.ndarray
    recall_boost: np.ndarray
    block_prob: np.ndarray
    like_taste: np.ndarray
    social: np.ndarray
    search_rate: np.ndarray
    share_rate: np.ndarray
    playlist_rate: np.ndarray


def _signups(config: SimulationConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw signup day, time of day and promotion flag, sorted by signup time."""
    weekdays = np.array(
        [(config.start + dt.timedelta(days=t)).weekday() for t in range(config.days)]
    )
    weight = np.where(weekdays >= 5, config.weekend_signup_factor, 1.0)
    promo_day = np.zeros(config.days, dtype=bool)
    promo_day[[d for d in config.promotion_days if d < config.days]] = True
    extra = config.promotion_extra_signups
    weight = weight * np.where(promo_day, 1.0 + extra, 1.0)
    counts = rng.multinomial(config.n_users, weight / weight.sum())
    extra_counts = np.where(promo_day, rng.binomial(counts, extra / (1.0 + extra)), 0)

    day = np.repeat(np.arange(config.days, dtype=np.int64), counts)
    first_of_day = np.cumsum(counts) - counts
    rank_in_day = np.arange(config.n_users) - np.repeat(first_of_day, counts)
    promo = rank_in_day < np.repeat(extra_counts, counts)
    # Room after the signup instant for the first session of the day.
    offset = rng.integers(0, DAY_US - 1, size=config.n_users, dtype=np.int64)
    order = np.lexsort((offset, day))
    return day[order], offset[order], promo[order]


def _beta(
    rng: np.random.Generator, mean: np.ndarray, concentration: float | np.ndarray
) -> np.ndarray:
    return rng.beta(mean * concentration, (1.0 - mean) * concentration)


def _lognormal(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    """Log-normal factors with mean 1."""
    return rng.lognormal(-0.5 * sigma**2, sigma, size=size)


def _draw_users(config: SimulationConfig, rng: np.random.Generator) -> _Users:
    """Draw every static attribute and latent parameter of every user."""
    n = config.n_users
    signup_day, signup_offset, low_intent = _signups(config, rng)
    channel = np.where(
        low_intent, _PROMO, rng.choice(len(_CHANNEL_MIX), size=n, p=_CHANNEL_MIX)
    ).astype(np.int8)
    platform = rng.choice(len(PLATFORMS), size=n, p=_PLATFORM_MIX).astype(np.int8)
    region = rng.choice(len(REGIONS), size=n, p=_REGION_MIX).astype(np.int8)

    # Regular users are a mixture of casual listeners and a main group whose mean
    # makes the mixture's mean `engagement_mean`.
    casual = ~low_intent & (rng.random(n) < config.casual_share)
    main_mean = (config.engagement_mean - config.casual_share * config.casual_engagement_mean) / (
        1.0 - config.casual_share
    )
    mean = np.where(casual, config.casual_engagement_mean, main_mean)
    mean = np.clip(mean + _CHANNEL_ENGAGEMENT_SHIFT[channel], 0.01, 0.95)
    mean = np.where(low_intent, config.low_intent_engagement_mean, mean)
    concentration = np.where(
        casual, config.casual_engagement_concentration, config.engagement_concentration
    )
    engagement = np.clip(_beta(rng, mean, concentration), 1e-4, 0.98)
    hazard_base = config.hazard_base * np.exp(
        -config.hazard_engagement_slope * (engagement - config.engagement_mean)
    )
    hazard_base = np.minimum(
        hazard_base
        * np.where(low_intent, config.low_intent_hazard_multiplier, 1.0)
        * _lognormal(rng, config.hazard_noise_sigma, n),
        0.5,
    )
    return_rate = np.minimum(
        config.return_rate_base
        * (0.25 + 1.5 * engagement)
        * _lognormal(rng, config.return_noise_sigma, n),
        0.5,
    )

    recall_boost = np.minimum(
        config.recall_boost_base
        * _RECALL_CHANNEL[channel]
        * _RECALL_PLATFORM[platform]
        * _lognormal(rng, config.effect_noise_sigma, n),
        0.5,
    )
    block_prob = np.minimum(
        config.block_prob_base
        * _BLOCK_CHANNEL[channel]
        * _BLOCK_PLATFORM[platform]
        * _lognormal(rng, config.effect_noise_sigma, n),
        0.9,
    )
    like_taste = _beta(rng, np.full(n, config.like_taste_mean), 10.0)
    social = rng.beta(2.0, 4.0, size=n)
    activity = 0.2 + 1.8 * engagement

    def _rate(scale: float) -> np.ndarray:
        return scale * activity * _lognormal(rng, 0.5, n)

    return _Users(
        signup_day=signup_day,
        signup_offset=signup_offset,
        channel=channel,
        platform=platform,
        region=region,
        low_intent=low_intent,
        engagement=engagement,
        hazard_base=hazard_base,
        return_rate=return_rate,
        recall_boost=recall_boost,
        block_prob=block_prob,
        like_taste=like_taste,
        social=social,
        search_rate=_rate(config.search_rate),
        share_rate=_rate(config.share_rate),
        playlist_rate=_rate(config.playlist_rate),
    )


# ------------------------------------------------------------- shared dynamics


def _tenure_factor(config: SimulationConfig, tenure: np.ndarray) -> np.ndarray:
    return 1.0 + (config.tenure_hazard_peak - 1.0) * np.exp(
        -tenure / config.tenure_hazard_decay_days
    )


def _behaviour_multiplier(
    config: SimulationConfig, like_habit: np.ndarray, community: np.ndarray
) -> np.ndarray:
    """Hazard multiplier of the like habit, community membership and both."""
    return (
        np.where(like_habit, config.like_hazard_multiplier, 1.0)
        * np.where(community, config.community_hazard_multiplier, 1.0)
        * np.where(like_habit & community, config.like_community_synergy, 1.0)
    )


def _hazard(hazard0: np.ndarray, tenure_factor: np.ndarray) -> np.ndarray:
    """End-of-day lapse probability; ``hazard0`` already holds the behaviour multiplier."""
    return np.minimum(hazard0 * tenure_factor, 1.0)


def _return_prob(return_rate: np.ndarray, boost: np.ndarray) -> np.ndarray:
    return np.minimum(return_rate + boost, 1.0)


def _eligible(
    config: SimulationConfig,
    signup_day: np.ndarray,
    last_active: np.ndarray,
    window_end: np.ndarray,
    day: int,
) -> np.ndarray:
    """Campaign eligibility on ``day`` (aligned arrays in, boolean mask out)."""
    recency = day - last_active
    return (
        (signup_day < day)
        & (recency >= config.campaign_min_days_inactive)
        & (recency <= config.campaign_max_days_inactive)
        & (window_end <= day)
    )


# ------------------------------------------------------------------ ground truth


@dataclass(frozen=True)
class _CampaignStep:
    """A campaign inside a truth horizon, for one group of users."""

    offset: int  # days after the start of the horizon
    eligible: np.ndarray  # bool, deterministic on the no-activity path
    rho: np.ndarray  # (n_channels, n)
    block: np.ndarray  # (n_channels, n)
    arm: int | None  # fixed arm (0 = control, k = k-th channel), or None to mix over every arm


@dataclass(frozen=True)
class _Horizon:
    """Everything the no-activity recursion needs about a group of users at day ``t``."""

    init: np.ndarray  # (n, 3) state probabilities at the start of day t
    engagement: np.ndarray
    return_rate: np.ndarray
    hazard0: np.ndarray  # h0 times the (frozen) behaviour multiplier
    tenure0: np.ndarray  # tenure at day t
    boost: np.ndarray  # rho of a treated window still open at day t (else 0)
    boost_days: np.ndarray  # days of that window left, counted from day t
    steps: tuple[_CampaignStep, ...] = field(default=())


def _no_activity_path(
    config: SimulationConfig, h: _Horizon, horizon: int, assignment: Sequence[int]
) -> np.ndarray:
    """P(no activity on days 0..horizon-1) for one fixed arm of every campaign."""
    alive, lapsed, blocked = (h.init[:, k].copy() for k in range(3))
    boost, boost_days = h.boost.copy(), h.boost_days.copy()
    steps = {s.offset: (s, a) for s, a in zip(h.steps, assignment, strict=True)}
    for k in range(horizon):
        if k in steps:
            step, arm = steps[k]
            if arm:
                moved = np.where(step.eligible, step.block[arm - 1], 0.0)
                blocked = blocked + (alive + lapsed) * moved
                alive, lapsed = alive * (1.0 - moved), lapsed * (1.0 - moved)
                boost = np.where(step.eligible, step.rho[arm - 1], boost)
            else:
                boost = np.where(step.eligible, 0.0, boost)
            boost_days = np.where(step.eligible, k + config.response_window_days, boost_days)
        active_boost = np.where(k < boost_days, boost, 0.0)
        alive = alive * (1.0 - h.engagement)
        lapsed = lapsed * (1.0 - _return_prob(h.return_rate, active_boost))
        hazard = _hazard(h.hazard0, _tenure_factor(config, h.tenure0 + k))
        alive, lapsed = alive * (1.0 - hazard), lapsed + alive * hazard
    return alive + lapsed + blocked


def _no_activity_dp(config: SimulationConfig, h: _Horizon, horizon: int) -> np.ndarray:
    """P(no activity in the horizon), mixing over every unassigned campaign's arms.

    Parameters
    ----------
    config : SimulationConfig
        Supplies the tenure factor, the response window and the arms' shares.
    h : _Horizon
        The users' state at the start of the horizon and the campaigns inside it.
    horizon : int
        Number of days.

    Returns
    -------
    numpy.ndarray
        One probability per user.
    """
    shares = _channels.arm_shares(config)
    free = [i for i, s in enumerate(h.steps) if s.arm is None]
    total = np.zeros(len(h.engagement))
    for arms in itertools.product(range(len(shares)), repeat=len(free)):
        assignment = [s.arm or 0 for s in h.steps]
        weight = 1.0
        for i, arm in zip(free, arms, strict=True):
            assignment[i] = arm
            weight *= shares[arm]
        if weight > 0.0:
            total += weight * _no_activity_path(config, h, horizon, assignment)
    return total


# ----------------------------------------------------------------------- events


def _zipf(rng: np.random.Generator, n: int, size: int, exponent: float) -> np.ndarray:
    """Ids 1..n with Zipf-like popularity (inverse CDF of a truncated power law)."""
    u = rng.random(size)
    if abs(exponent - 1.0) < 1e-9:
        x = np.exp(u * np.log(n + 1.0))
    else:
        a = 1.0 - exponent
        x = (1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a)
    return np.clip(np.floor(x).astype(np.int64), 1, n)


@dataclass(frozen=True)
class _DayEvents:
    user_id: np.ndarray
    ts: np.ndarray
    event: np.ndarray  # int8 index into EVENT_TYPES
    item_id: np.ndarray
    community_id: np.ndarray
    likes: np.ndarray  # per active user
    joined: np.ndarray  # per active user: community joined today, 0 = none


def _emit_events(
    config: SimulationConfig,
    rng: np.random.Generator,
    users: _Users,
    idx: np.ndarray,
    day_start: int,
    earliest: np.ndarray,
    home_community: np.ndarray,
) -> _DayEvents:
    """Events of the active users ``idx`` on the day starting at ``day_start`` (epoch us).

    ``earliest`` is, per active user, the smallest allowed offset (microseconds)
    within the day; ``home_community`` the community they post in (0 = none).
    """
    m = len(idx)
    e = users.engagement[idx]
    social = users.social[idx]
    member = home_community > 0
    counts = np.empty((m, len(EVENT_TYPES)), dtype=np.int64)
    counts[:, 0] = 1 + rng.poisson(config.visit_rate * (0.5 + e))
    counts[:, _PLAY] = rng.poisson(config.play_rate * (0.3 + 1.5 * e))
    counts[:, _LIKE] = rng.binomial(counts[:, _PLAY], users.like_taste[idx])
    counts[:, 3] = rng.poisson(users.search_rate[idx])
    counts[:, 4] = rng.poisson(users.share_rate[idx])
    counts[:, _PLAYLIST] = rng.poisson(users.playlist_rate[idx])
    counts[:, _JOIN] = ~member & (rng.random(m) < config.community_join_rate * social)
    counts[:, _POST] = rng.poisson(np.where(member, config.community_post_rate * social, 0.0))

    per_type = counts.sum(axis=0)
    pos = np.concatenate([np.repeat(np.arange(m), counts[:, k]) for k in range(counts.shape[1])])
    event = np.repeat(np.arange(len(EVENT_TYPES), dtype=np.int8), per_type)
    n = len(pos)
    lo = earliest[pos]
    ts = day_start + lo + (rng.random(n) * (DAY_US - lo)).astype(np.int64)

    bounds = np.concatenate([[0], np.cumsum(per_type)])
    item_id = np.zeros(n, dtype=np.int64)
    for k in _SONG_EVENTS:
        item_id[bounds[k] : bounds[k + 1]] = _zipf(
            rng, config.n_songs, int(per_type[k]), config.song_zipf_exponent
        )
    community_id = np.zeros(n, dtype=np.int64)
    joins = _zipf(rng, config.n_communities, int(per_type[_JOIN]), 0.8)
    community_id[bounds[_JOIN] : bounds[_JOIN + 1]] = joins
    community_id[bounds[_POST] : bounds[_POST + 1]] = home_community[pos[bounds[_POST] :]]
    joined = np.zeros(m, dtype=np.int64)
    joined[pos[bounds[_JOIN] : bounds[_JOIN + 1]]] = joins
    return _DayEvents(
        user_id=idx[pos] + 1,
        ts=ts,
        event=event,
        item_id=item_id,
        community_id=community_id,
        likes=counts[:, _LIKE],
        joined=joined,
    )


_EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("event", pa.string()),
        ("item_id", pa.int64()),
        ("community_id", pa.int64()),
    ]
)
_EVENT_NAMES = pa.array(EVENT_TYPES, type=pa.string())


def _events_table(chunks: list[_DayEvents]) -> pa.Table:
    user_id = np.concatenate([c.user_id for c in chunks])
    ts = np.concatenate([c.ts for c in chunks])
    event = np.concatenate([c.event for c in chunks])
    item_id = np.concatenate([c.item_id for c in chunks])
    community_id = np.concatenate([c.community_id for c in chunks])
    return pa.Table.from_arrays(
        [
            pa.array(user_id),
            pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            _EVENT_NAMES.take(pa.array(event)),
            pa.array(item_id, mask=item_id == 0),
            pa.array(community_id, mask=community_id == 0),
        ],
        schema=_EVENT_SCHEMA,
    )


# ------------------------------------------------------------------------ tables


def _utc(day_start_us: int, us: np.ndarray) -> pa.Array:
    return pa.array(day_start_us + us, type=pa.timestamp("us", tz="UTC"))


def _epoch_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_US


def _users_table(users: _Users, t0: int) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(np.arange(1, len(users.signup_day) + 1, dtype=np.int64)),
            "signup_ts": _utc(t0, users.signup_day * DAY_US + users.signup_offset),
            "acquisition_channel": pa.array(CHANNELS).take(pa.array(users.channel)),
            "platform": pa.array(PLATFORMS).take(pa.array(users.platform)),
            "region": pa.array(REGIONS).take(pa.array(users.region)),
        }
    )


def _truth_users_table(users: _Users, state: np.ndarray) -> pa.Table:
    columns = {
        "user_id": pa.array(np.arange(1, len(users.signup_day) + 1, dtype=np.int64)),
        "low_intent": pa.array(users.low_intent),
    }
    for name in (
        "engagement",
        "hazard_base",
        "return_rate",
        "recall_boost",
        "block_prob",
        "like_taste",
        "social",
        "search_rate",
        "share_rate",
        "playlist_rate",
    ):
        columns[name] = pa.array(getattr(users, name))
    columns["final_state"] = pa.array(STATES).take(pa.array(state))
    return pa.table(columns)


def _segment(p_control: np.ndarray, uplift: np.ndarray) -> pa.Array:
    code = np.where(
        uplift > SEGMENT_UPLIFT_THRESHOLD,
        0,
        np.where(
            uplift < -SEGMENT_UPLIFT_THRESHOLD,
            3,
            np.where(p_control >= SURE_THING_P_CONTROL, 1, 2),
        ),
    )
    names = pa.array(["persuadable", "sure_thing", "lost_cause", "sleeping_dog"])
    return names.take(pa.array(code))


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()


_CAMPAIGN_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("campaign_id", pa.string()),
        ("sent_ts", pa.timestamp("us", tz="UTC")),
        ("treated", pa.bool_()),
        ("channel", pa.string()),
    ]
)
_EXPOSURE_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("campaign_id", pa.string()),
        ("sent_ts", pa.timestamp("us", tz="UTC")),
        ("treated", pa.bool_()),
        ("channel", pa.string()),
        ("p_treated", pa.float64()),
        ("p_control", pa.float64()),
        ("uplift", pa.float64()),
        ("segment", pa.string()),
        ("p_treated_observed", pa.float64()),
        ("p_control_observed", pa.float64()),
        ("recall_boost", pa.float64()),
        ("block_prob", pa.float64()),
        ("state_at_send", pa.string()),
    ]
)
_ARM_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("campaign_id", pa.string()),
        ("sent_ts", pa.timestamp("us", tz="UTC")),
        ("channel", pa.string()),
        ("p_return", pa.float64()),
        ("p_return_observed", pa.float64()),
        ("uplift", pa.float64()),
        ("uplift_observed", pa.float64()),
        ("recall_boost", pa.float64()),
        ("block_prob", pa.float64()),
    ]
)
_CHURN_SCHEMA = pa.schema(
    [
        ("as_of", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.int64()),
        ("p_churn", pa.float64()),
        ("p_churn_observed", pa.float64()),
        ("state", pa.string()),
    ]
)


# ------------------------------------------------------------------- simulation


class _World:
    """The mutable state of one simulation run (private to :func:`simulate`)."""

    def __init__(self, config: SimulationConfig, users: _Users, traits: _channels.ChannelTraits) -> None:
        n = config.n_users
        self.config = config
        self.users = users
        self.traits = traits
        self.state = np.full(n, ALIVE, dtype=np.int8)
        self.last_active = np.full(n, -1, dtype=np.int64)
        self.early_likes = np.zeros(n, dtype=np.int64)
        self.like_habit = np.zeros(n, dtype=bool)
        self.home_community = np.zeros(n, dtype=np.int64)
        self.window_end = np.full(n, -1, dtype=np.int64)  # first day after the window
        self.boost = np.zeros(n)  # rho of the current window (0 for control)
        self.excluded = np.zeros(n, dtype=bool)  # never sent recall campaigns (subscribers)
        # Filtered belief over (alive, lapsed, blocked) from observed activity.
        self.belief = np.zeros((n, 3))
        self.belief[:, ALIVE] = 1.0

    def hazard0(self, idx: np.ndarray | slice) -> np.ndarray:
        return self.users.hazard_base[idx] * _behaviour_multiplier(
            self.config, self.like_habit[idx], self.home_community[idx] > 0
        )

    def horizon(self, idx: np.ndarray, day: int, horizon: int, arm: int | None) -> _Horizon:
        """Build the truth recursion's inputs for users ``idx`` from the start of ``day``.

        ``arm`` (0 = control, k = k-th channel) fixes the arm of a campaign sent on
        ``day`` itself (exposures); ``None`` mixes over the arms of every campaign (churn).
        """
        cfg, users = self.config, self.users
        last_active = self.last_active[idx]
        like_habit = self.like_habit[idx]
        community = self.home_community[idx] > 0
        window_end = self.window_end[idx]
        steps = []
        for c in cfg.campaign_days:
            if not day <= c < day + horizon:
                continue
            eligible = _eligible(cfg, users.signup_day[idx], last_active, window_end, c) & ~self.excluded[idx]
            rho, block = _channels.effects(
                cfg, users, self.traits, idx, c, last_active, like_habit, community
            )
            steps.append(
                _CampaignStep(
                    offset=c - day,
                    eligible=eligible,
                    rho=rho,
                    block=block,
                    arm=arm if c == day else None,
                )
            )
            window_end = np.where(eligible, c + cfg.response_window_days, window_end)
        return _Horizon(
            init=np.eye(3)[self.state[idx]],
            engagement=users.engagement[idx],
            return_rate=users.return_rate[idx],
            hazard0=self.hazard0(idx),
            tenure0=(day - users.signup_day[idx]).astype(np.float64),
            boost=np.where(self.window_end[idx] > day, self.boost[idx], 0.0),
            boost_days=np.maximum(self.window_end[idx] - day, 0),
            steps=tuple(steps),
        )

    def observed(self, h: _Horizon, idx: np.ndarray) -> _Horizon:
        """Return the same horizon, starting from the filtered belief instead of the true state."""
        return dataclasses.replace(h, init=self.belief[idx])


def _churn_truth(world: _World, day: int, n_signed: int, truth: TruthSpec, t0: int) -> pa.Table:
    users = world.users
    signed = np.arange(n_signed)
    eligible = (users.signup_day[:n_signed] < day) & (
        world.last_active[:n_signed] >= day - truth.eligibility_days
    )
    idx = signed[eligible]
    h = world.horizon(idx, day, truth.horizon_days, arm=None)
    p_churn = _no_activity_dp(world.config, h, truth.horizon_days)
    p_observed = _no_activity_dp(world.config, world.observed(h, idx), truth.horizon_days)
    return pa.Table.from_arrays(
        [
            _utc(t0, np.full(len(idx), day * DAY_US, dtype=np.int64)),
            pa.array(idx + 1),
            pa.array(p_churn),
            pa.array(p_observed),
            pa.array(STATES).take(pa.array(world.state[idx])),
        ],
        schema=_CHURN_SCHEMA,
    )


def _send_campaign(
    world: _World, rng: np.random.Generator, day: int, n_signed: int, t0: int
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Send the day's campaign: assign arms, record truth, apply blocks and windows."""
    cfg, users = world.config, world.users
    s = slice(0, n_signed)
    idx = np.flatnonzero(
        _eligible(cfg, users.signup_day[s], world.last_active[s], world.window_end[s], day)
        & ~world.excluded[s]
    )
    arm = _channels.assign_arms(cfg, rng, len(idx))
    treated = arm > 0
    block_draw = rng.random(len(idx))

    # Exact truth under every arm (0 = control): from the latent state and from the belief.
    w = cfg.response_window_days
    n_arms = len(cfg.campaign_channels) + 1
    p, p_obs = np.empty((n_arms, len(idx))), np.empty((n_arms, len(idx)))
    for a in range(n_arms):
        h = world.horizon(idx, day, w, arm=a)
        p[a] = 1.0 - _no_activity_dp(cfg, h, w)
        p_obs[a] = 1.0 - _no_activity_dp(cfg, world.observed(h, idx), w)
    step = h.steps[0]
    rows = np.arange(len(idx))
    got = np.maximum(arm, 1) - 1  # the channel of a treated row (any for control rows)
    rho, block = step.rho[got, rows], step.block[got, rows]
    single = n_arms == 2  # one channel: a control row's "treated" columns are that channel's
    mine = treated | single
    p_treated, p_treated_obs = np.where(mine, p[got + 1, rows], np.nan), np.where(mine, p_obs[got + 1, rows], np.nan)
    uplift = p_treated - p[0]

    campaign_id = f"recall-{cfg.start + dt.timedelta(days=day):%Y-%m-%d}"
    sent = _utc(t0, np.full(len(idx), day * DAY_US + SEND_OFFSET_US, dtype=np.int64))
    zeros = pa.array(np.zeros(len(idx), dtype=np.int8))
    ids = pa.array([campaign_id]).take(zeros)
    names = pa.array(["control", *cfg.campaign_channels])
    channel = names.take(pa.array(arm))
    campaigns = pa.Table.from_arrays(
        [pa.array(idx + 1), ids, sent, pa.array(treated), channel], schema=_CAMPAIGN_SCHEMA
    )
    segment = _segment(np.nan_to_num(p[0]), np.nan_to_num(uplift))
    exposures = pa.Table.from_arrays(
        [
            pa.array(idx + 1),
            ids,
            sent,
            pa.array(treated),
            channel,
            pa.array(p_treated, from_pandas=True),
            pa.array(p[0]),
            pa.array(uplift, from_pandas=True),
            pa.array(segment.to_pylist(), mask=~mine),
            pa.array(p_treated_obs, from_pandas=True),
            pa.array(p_obs[0]),
            pa.array(np.where(mine, rho, np.nan), from_pandas=True),
            pa.array(np.where(mine, block, np.nan), from_pandas=True),
            pa.array(STATES).take(pa.array(world.state[idx])),
        ],
        schema=_EXPOSURE_SCHEMA,
    )
    each = np.tile(rows, n_arms)
    arms = np.repeat(np.arange(n_arms), len(idx))
    zero = np.zeros((1, len(idx)))
    arm_table = pa.Table.from_arrays(
        [
            pa.array(idx[each] + 1),
            ids.take(pa.array(each)),
            sent.take(pa.array(each)),
            names.take(pa.array(arms)),
            pa.array(p.reshape(-1)),
            pa.array(p_obs.reshape(-1)),
            pa.array((p - p[0]).reshape(-1)),
            pa.array((p_obs - p_obs[0]).reshape(-1)),
            pa.array(np.vstack([zero, step.rho]).reshape(-1)),
            pa.array(np.vstack([zero, step.block]).reshape(-1)),
        ],
        schema=_ARM_SCHEMA,
    )

    moved = treated & (world.state[idx] != BLOCKED) & (block_draw < block)
    world.state[idx[moved]] = BLOCKED
    d = np.where(treated, block, 0.0)
    b = world.belief[idx]
    world.belief[idx] = np.column_stack(
        [b[:, ALIVE] * (1 - d), b[:, LAPSED] * (1 - d), b[:, BLOCKED] + (1 - b[:, BLOCKED]) * d]
    )
    world.window_end[idx] = day + w
    world.boost[idx] = np.where(treated, rho, 0.0)
    return campaigns, exposures, arm_table


def _activity(
    world: _World, rng: np.random.Generator, day: int, n_prev: int, n_signed: int
) -> np.ndarray:
    """Step 2: who is active today (returning lapsed users become alive); filter update.

    Users ``n_prev .. n_signed - 1`` sign up today and are active.
    """
    users, s = world.users, slice(0, n_signed)
    state = world.state[s]
    boost = np.where(world.window_end[s] > day, world.boost[s], 0.0)
    p_return = _return_prob(users.return_rate[s], boost)
    u = rng.random(n_signed)
    active = np.where(state == ALIVE, u < users.engagement[s], (state == LAPSED) & (u < p_return))
    active[n_prev:] = True
    world.state[s] = np.where(active, ALIVE, state)
    # Filter: an active user is alive; a quiet one reweights by P(quiet | state).
    quiet = world.belief[s] * np.column_stack(
        [1.0 - users.engagement[s], 1.0 - p_return, np.ones(n_signed)]
    )
    quiet /= quiet.sum(axis=1, keepdims=True)
    world.belief[s] = np.where(active[:, None], np.array([1.0, 0.0, 0.0]), quiet)
    return active


def _record_behaviour(world: _World, day: int, idx: np.ndarray, events: _DayEvents) -> None:
    """Step 3 aftermath: last activity, the like habit and community membership."""
    cfg, users = world.config, world.users
    world.last_active[idx] = day
    early = day - users.signup_day[idx] < cfg.like_habit_days
    world.early_likes[idx] += np.where(early, events.likes, 0)
    world.like_habit[idx] = world.early_likes[idx] > cfg.like_habit_threshold
    joined = events.joined > 0
    world.home_community[idx[joined]] = events.joined[joined]


def _lapse(world: _World, rng: np.random.Generator, day: int, n_signed: int) -> None:
    """Step 4: alive users lapse with their hazard; filter prediction step."""
    users, s = world.users, slice(0, n_signed)
    tenure = (day - users.signup_day[s]).astype(np.float64)
    hazard = _hazard(world.hazard0(s), _tenure_factor(world.config, tenure))
    lapse = (world.state[s] == ALIVE) & (rng.random(n_signed) < hazard)
    world.state[s] = np.where(lapse, LAPSED, world.state[s])
    belief = world.belief[s]
    world.belief[s] = np.column_stack(
        [
            belief[:, ALIVE] * (1.0 - hazard),
            belief[:, LAPSED] + belief[:, ALIVE] * hazard,
            belief[:, BLOCKED],
        ]
    )


def _earliest_offset(world: _World, day: int, idx: np.ndarray) -> np.ndarray:
    """Smallest in-day offset of each active user's events.

    After the signup instant on the signup day; after 10:00 on the send day and
    on the first day after the response window of an exposure, so that
    ``[sent_ts, sent_ts + W days)`` covers exactly days ``t .. t+W-1``. Never 0,
    so no event sits on a midnight.
    """
    users = world.users
    lo = np.ones(len(idx), dtype=np.int64)
    lo = np.where(users.signup_day[idx] == day, users.signup_offset[idx] + 1, lo)
    window_end = world.window_end[idx]
    boundary = (window_end == day + world.config.response_window_days) | (window_end == day)
    return np.where(boundary, np.maximum(lo, SEND_OFFSET_US + 1), lo)


def _check_snapshots(config: SimulationConfig, truth: TruthSpec) -> list[int]:
    days = []
    t0 = dt.datetime.combine(config.start, dt.time(0), tzinfo=dt.UTC)
    for ts in truth.snapshots:
        day = (ts - t0).days
        if not 0 <= day <= config.days - truth.horizon_days:
            raise ValueError(
                "The `snapshots` parameter of `TruthSpec` must be midnights from the start "
                f"to the end of the simulation minus horizon_days={truth.horizon_days}. Got "
                f"{ts.isoformat()} instead."
            )
        days.append(day)
    return days


def simulate(
    config: SimulationConfig,
    out_dir: Path,
    *,
    truth: TruthSpec | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Simulate the app and write its event log, tables and ground truth as Parquet.

    Parameters
    ----------
    config : SimulationConfig
        The simulated world; same config (including ``seed``) gives
        byte-identical files.
    out_dir : Path
        Output directory (created if missing). Receives ``events.parquet``,
        ``users.parquet``, ``campaigns.parquet`` and ``truth/`` with
        ``users.parquet``, ``exposures.parquet``, ``exposure_arms.parquet``,
        ``README.md`` and, when
        ``truth`` is given, ``churn.parquet``.
    truth : TruthSpec, optional
        Snapshots for the churn ground truth. Computing truth draws no random
        numbers, so it never changes the simulated data.
    progress : callable, optional
        ``progress(day_index, n_days)`` is called after each simulated day,
        with the 0-based index of the day just finished.

    Returns
    -------
    SimulationResult
        Paths of the written files and row counts.

    Raises
    ------
    ValueError
        If a snapshot is not inside the simulated period with room for its horizon.

    Notes
    -----
    ``events.parquet``: ``user_id`` int64, ``ts`` timestamp[us, UTC], ``event``
    string (one of ``visit, play, like, search, share, playlist_add,
    community_join, community_post``), ``item_id`` (song, for play / like /
    playlist_add, else null), ``community_id`` (for community_join /
    community_post, else null). Rows are grouped by simulated days, not
    sorted. The event log is streamed in row groups of
    ``config.row_group_days`` days, so memory stays bounded.

    Examples
    --------
    >>> from pathlib import Path
    >>> import tempfile
    >>> cfg = SimulationConfig(n_users=200, days=30, promotion_days=[10], campaign_days=[20])
    >>> result = simulate(cfg, Path(tempfile.mkdtemp()))
    >>> result.n_users
    200
    """
    snapshot_days = _check_snapshots(config, truth) if truth is not None else []
    out_dir = Path(out_dir)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    # The channels' hidden factors have their own (seventh) stream, so the first five are
    # the same whatever the channels; the sixth is the subscription layer's.
    streams = np.random.SeedSequence(config.seed).spawn(7)
    rng_users, rng_campaign, rng_activity, rng_events, rng_lapse, _, rng_channels = (
        np.random.default_rng(s) for s in streams
    )
    users = _draw_users(config, rng_users)
    world = _World(config, users, _channels.draw_traits(config, config.n_users, rng_channels))
    t0 = _epoch_us(config.start)
    first_signup = np.searchsorted(users.signup_day, np.arange(config.days + 1))
    campaign_days = set(config.campaign_days)

    campaigns, exposures, arms, churn, sub_churn = [], [], [], [], []
    layer = SubscriptionLayer(config, t0) if config.subscriptions is not None else None
    n_events = 0
    buffer: list[_DayEvents] = []
    events_path = out_dir / "events.parquet"
    with pq.ParquetWriter(
        events_path, _EVENT_SCHEMA, use_dictionary=["event", "item_id", "community_id"]
    ) as writer:
        for day in range(config.days):
            n_prev, n_signed = int(first_signup[day]), int(first_signup[day + 1])
            if day in snapshot_days:
                churn.append(_churn_truth(world, day, n_prev, truth, t0))
                if layer is not None:
                    sub_churn.append(layer.truth(world, day, truth.horizon_days))
            if layer is not None:
                layer.renew(world, day)
            if day in campaign_days:
                sent = _send_campaign(world, rng_campaign, day, n_prev, t0)
                campaigns.append(sent[0])
                exposures.append(sent[1])
                arms.append(sent[2])

            active = _activity(world, rng_activity, day, n_prev, n_signed)
            idx = np.flatnonzero(active)
            day_events = _emit_events(
                config,
                rng_events,
                users,
                idx,
                t0 + day * DAY_US,
                _earliest_offset(world, day, idx),
                world.home_community[idx],
            )
            buffer.append(day_events)
            _record_behaviour(world, day, idx, day_events)
            if layer is not None:
                layer.subscribe(world, day, idx, _earliest_offset(world, day, idx))
            _lapse(world, rng_lapse, day, n_signed)

            if len(buffer) == config.row_group_days or day == config.days - 1:
                table = _events_table(buffer)
                writer.write_table(table, row_group_size=max(len(table), 1))
                n_events += len(table)
                buffer = []
            if progress is not None:
                progress(day, config.days)

    users_path = out_dir / "users.parquet"
    campaigns_path = out_dir / "campaigns.parquet"
    campaign_table = _concat(campaigns, _CAMPAIGN_SCHEMA)
    pq.write_table(_users_table(users, t0), users_path)
    pq.write_table(campaign_table, campaigns_path)
    pq.write_table(_truth_users_table(users, world.state), truth_dir / "users.parquet")
    pq.write_table(_concat(exposures, _EXPOSURE_SCHEMA), truth_dir / "exposures.parquet")
    pq.write_table(_concat(arms, _ARM_SCHEMA), truth_dir / "exposure_arms.parquet")
    if truth is not None:
        pq.write_table(_concat(churn, _CHURN_SCHEMA), truth_dir / "churn.parquet")
    readme = _TRUTH_README
    subscriptions_path, n_subscriptions = None, 0
    if layer is not None:
        subscriptions_path = out_dir / "subscriptions.parquet"
        sub_table = layer.table()
        n_subscriptions = sub_table.num_rows
        pq.write_table(sub_table, subscriptions_path)
        if truth is not None:
            pq.write_table(_concat(sub_churn, SUBSCRIPTION_TRUTH_SCHEMA), truth_dir / "subscription_churn.parquet")
        readme += SUBSCRIPTION_TRUTH_README
    (truth_dir / "README.md").write_text(readme)
    return SimulationResult(
        events_path=events_path,
        users_path=users_path,
        campaigns_path=campaigns_path,
        truth_dir=truth_dir,
        n_users=config.n_users,
        n_events=n_events,
        n_exposures=campaign_table.num_rows,
        subscriptions_path=subscriptions_path,
        n_subscriptions=n_subscriptions,
    )
