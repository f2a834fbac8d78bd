"""Recall channels of the simulated app: who each channel brings back, whom it puts off, and the arms.

A recall campaign randomises its eligible users over *arms*: control (no
message) and every channel in ``SimulationConfig.campaign_channels``, by
default ``sms``, ``email`` and ``push`` with equal shares. Arm 0 is control and
arm ``k`` is the ``k``-th channel, in the configured order.

A message by channel ``c`` sent on day ``t`` does two things, exactly as the
single recall message of :mod:`churnml.simulator.world` does:

* with probability ``d_c`` (the *block* probability) the user is put off for
  good: the latent state becomes *blocked* (for push: the user disables
  notifications and drifts away; for SMS: opts out and leaves);
* otherwise, while lapsed during days ``[t, t + W)``, the user returns each day
  with the extra probability ``rho_c`` (the *recall boost*).

Both depend on traits the event log shows (platform, region, acquisition
channel, tenure, recency, the like habit, community membership) and on a
per-user log-normal factor per channel that nothing shows:

``push`` (the original single channel)
    ``rho = recall_boost * community * like habit * exp(-(recency - min) / recall_recency_days)``
    with ``recall_boost`` from acquisition channel and platform (web users
    barely see pushes); ``d = block_prob`` (paid-social and Android users),
    times ``block_short_tenure_multiplier`` in the first weeks: the push
    sleeping dogs.
``email``
    ``rho = email_boost_base * platform (web x2.5) * like habit (x1.8) *
    tenure (longer is better) * exp(-(recency - min) / email_recency_days)``
    (a slow decay: it reaches deeply lapsed users); ``d`` is tiny.
``sms``
    ``rho = sms_boost_base * region (Latin America, the Middle East and Africa,
    Asia-Pacific far more than North America and Europe) *
    exp(-(recency - min) / sms_recency_days)``; ``d =
    sms_block_base * region (North America and Europe x4)``, times 2.5 in the
    first weeks: some users an SMS puts off.

With ``campaign_channels=["push"]`` the simulation is the original
single-channel one, draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BUILTIN_CHANNELS", "COSTS", "ChannelEffects", "ChannelTraits", "arm_shares", "assign_arms",
           "draw_traits", "effects"]

#: The channel behaviours the simulator knows, in the default order of ``campaign_channels``.
BUILTIN_CHANNELS = ("sms", "email", "push")

#: What a message by each channel costs the simulated app, in units of the value of one returned
#: user: written into the scoring config beside a simulation (the pipeline reads costs only from there).
COSTS = {"sms": 0.05, "email": 0.005, "push": 0.0}

# Multipliers by platform (order of world.PLATFORMS: ios, android, web) and region (order of
# world.REGIONS: na, eu, latam, apac, mea).
_EMAIL_PLATFORM = np.array([0.7, 0.7, 2.5])
_SMS_REGION = np.array([0.35, 0.45, 1.9, 1.3, 2.2])
_SMS_BLOCK_REGION = np.array([4.0, 4.0, 0.5, 0.8, 0.5])


class ChannelEffects(BaseModel):
    """Effect sizes of the ``sms`` and ``email`` channels (``push`` uses the ``recall_*``/``block_*`` fields).

    Parameters
    ----------
    sms_boost_base, email_boost_base : float
        Scale of the daily recall boost ``rho`` (before the trait multipliers
        and the per-user log-normal factor; capped at 0.5).
    sms_recency_days, email_recency_days : float
        Decay (days) of the boost with recency beyond ``campaign_min_days_inactive``.
    email_tenure_days : float
        The e-mail boost grows with tenure: ``0.4 + min(tenure / email_tenure_days, 1.2)``.
    email_like_multiplier : float
        E-mail boost factor for users with the like habit.
    sms_block_base, email_block_base : float
        Scale of the block probability ``d`` (capped at 0.9).
    sms_block_short_tenure_multiplier : float
        SMS block factor in the first ``block_short_tenure_days`` of tenure.
    """

    model_config = ConfigDict(extra="forbid")

    sms_boost_base: float = Field(0.05, ge=0)
    sms_recency_days: float = Field(30.0, gt=0)
    sms_block_base: float = Field(0.01, ge=0)
    sms_block_short_tenure_multiplier: float = Field(2.5, ge=0)
    email_boost_base: float = Field(0.015, ge=0)
    email_recency_days: float = Field(60.0, gt=0)
    email_tenure_days: float = Field(60.0, gt=0)
    email_like_multiplier: float = Field(1.8, ge=0)
    email_block_base: float = Field(0.002, ge=0)


def check_channels(names: list[str]) -> list[str]:
    """Validate ``SimulationConfig.campaign_channels``: known, distinct, at least one."""
    unknown = [n for n in names if n not in BUILTIN_CHANNELS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(
            "The `campaign_channels` parameter of `SimulationConfig` must list distinct channels among "
            f"{list(BUILTIN_CHANNELS)}. Got {names} instead."
        )
    return names


def arm_shares(config) -> np.ndarray:
    """Probability of each arm at a send: ``[control, channel 1, ..., channel K]``.

    ``campaign_treated_share`` is split equally among the channels; None gives
    every arm, control included, the same share.
    """
    k = len(config.campaign_channels)
    treated = config.campaign_treated_share
    treated = k / (k + 1) if treated is None else treated
    return np.array([1.0 - treated, *([treated / k] * k)])


def assign_arms(config, rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw the arm (0 = control, k = k-th channel) of ``n`` eligible users.

    One uniform draw per user; the channels take the bottom of [0, 1) in
    order, so that with one channel ``arm == 1`` exactly when the draw is below
    the treated share (the single-channel simulator's rule).
    """
    shares = arm_shares(config)
    u = rng.random(n)
    edges = np.cumsum(shares[1:])
    arm = np.searchsorted(edges, u, side="right") + 1
    return np.where(u < edges[-1], arm, 0).astype(np.int8)


@dataclass(frozen=True)
class ChannelTraits:
    """Per-user latent factors of the channels other than push (mean-1 log-normals)."""

    sms_boost: np.ndarray
    sms_block: np.ndarray
    email_boost: np.ndarray
    email_block: np.ndarray


def draw_traits(config, n: int, rng: np.random.Generator) -> ChannelTraits:
    """Draw the hidden per-user factors of the sms and e-mail effects (own random stream)."""
    sigma = config.effect_noise_sigma

    def factor() -> np.ndarray:
        return rng.lognormal(-0.5 * sigma**2, sigma, size=n)

    return ChannelTraits(sms_boost=factor(), sms_block=factor(), email_boost=factor(), email_block=factor())


def effects(config, users, traits: ChannelTraits, idx: np.ndarray, day: int, last_active: np.ndarray,
            like_habit: np.ndarray, community: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall boost ``rho`` and block probability ``d`` of users ``idx`` for every channel at a send on ``day``.

    ``last_active``, ``like_habit`` and ``community`` are aligned with ``idx``.

    Returns
    -------
    rho, block : ndarray of shape (n_channels, len(idx))
        Rows in the order of ``config.campaign_channels``.
    """
    recency = day - last_active
    beyond = recency - config.campaign_min_days_inactive
    tenure = day - users.signup_day[idx]
    short = tenure < config.block_short_tenure_days
    fx = config.channel_effects
    rho, block = [], []
    for name in config.campaign_channels:
        if name == "push":
            r = (users.recall_boost[idx]
                 * np.where(community, config.recall_community_multiplier, 1.0)
                 * np.where(like_habit, config.recall_like_multiplier, 1.0)
                 * np.exp(-beyond / config.recall_recency_days))
            d = users.block_prob[idx] * np.where(short, config.block_short_tenure_multiplier, 1.0)
        elif name == "email":
            r = np.minimum(fx.email_boost_base * _EMAIL_PLATFORM[users.platform[idx]] * traits.email_boost[idx], 0.5)
            r = (r * np.where(like_habit, fx.email_like_multiplier, 1.0)
                 * (0.4 + np.minimum(tenure / fx.email_tenure_days, 1.2))
                 * np.exp(-beyond / fx.email_recency_days))
            d = fx.email_block_base * traits.email_block[idx]
        else:  # sms
            r = np.minimum(fx.sms_boost_base * _SMS_REGION[users.region[idx]] * traits.sms_boost[idx], 0.5)
            r = r * np.exp(-beyond / fx.sms_recency_days)
            d = (fx.sms_block_base * _SMS_BLOCK_REGION[users.region[idx]] * traits.sms_block[idx]
                 * np.where(short, fx.sms_block_short_tenure_multiplier, 1.0))
        rho.append(r)
        block.append(np.minimum(d, 0.9))
    return np.vstack(rho), np.vstack(block)
