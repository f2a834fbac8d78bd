"""The multi-channel recall list: at most one channel per user, within the budget, with a randomised holdout.

:func:`channel_list` is what :func:`churnml.scoring.recall_list` does when the
uplift model predicts one uplift per channel. For every eligible user (the
same eligibility and exclusions as the single-channel list) each channel's
expected net value is ``value * uplift - cost`` (``value_per_user``, or the
user's ``value_column``); the channels and
their costs and caps come from ``ScoreConfig.channels`` (every channel the
model knows, at ``contact_cost``, when that is empty).
:func:`churnml.assignment.assign_channels` then gives each user the channel
with the largest net value within the budget (``budget.max_contacts``,
``budget.max_cost``) and the caps, never a channel whose expected uplift is
not positive.

A share ``holdout_share`` of the selected users (deterministic per user and
campaign, like the single-channel holdout) is randomised away from the
model's choice: each gets, with equal chances, control (``holdout``, not
contacted) or one of the other channels whose expected uplift for the user is
not negative (``explore``). An explored channel that would overflow its cap
or the money budget becomes control. So every arm keeps a random sample of
the list: tomorrow's uplift model learns from it, and the list's value can
be measured against it. Each row carries ``channel`` (the arm given) and
``treated``: with ``as_of`` as ``sent_ts`` (or the real send time) the list's
rows are the campaign rows of the next training set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.assignment import NONE, assign_channels
from churnml.config import ScoreConfig
from churnml.data import CONTROL
from churnml.exceptions import ConfigError
from churnml.models.uplift_store import uplift_column
from churnml.scoring import holdout_draw

__all__ = ["channel_list", "list_channels"]


def list_channels(cfg: ScoreConfig, model_channels: list[str]) -> list[str]:
    """The channels a list may use: the configured ones (each known to the model), else all the model's.

    Raises
    ------
    ConfigError
        If ``channels`` names a channel the uplift model was not trained on.
    """
    if not cfg.channels:
        return list(model_channels)
    unknown = [c for c in cfg.channels if c not in model_channels]
    if unknown:
        raise ConfigError(f"channels: {', '.join(repr(c) for c in unknown)} not among the channels the uplift "
                          f"model was trained on ({', '.join(model_channels)})")
    return [c for c in model_channels if c in cfg.channels]


def _second_draw(user_ids: pd.Series, campaign_id: str) -> np.ndarray:
    return holdout_draw(user_ids, f"{campaign_id}:arm")


def _reason(row_up: np.ndarray, cost: np.ndarray, channels: list[str], chosen: int) -> str:
    """Why this channel: its expected gain and cost, and what the others would do."""
    parts = [f"{channels[chosen]} {100 * row_up[chosen]:+.1f} pts for {cost[chosen]:g}"]
    for k, c in enumerate(channels):
        if k == chosen:
            continue
        if row_up[k] < 0:
            parts.append(f"{c} {100 * row_up[k]:+.1f} pts (puts this user off)")
        elif row_up[k] > row_up[chosen]:
            parts.append(f"{c} {100 * row_up[k]:+.1f} pts but costs {cost[k]:g}")
        else:
            parts.append(f"{c} {100 * row_up[k]:+.1f} pts")
    return "; ".join(parts)


def channel_list(scored: pd.DataFrame, features: pd.DataFrame, cfg: ScoreConfig, model_channels: list[str], *,
                 campaign_id: str, keep: np.ndarray, counts: dict, excluded: dict,
                 value: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """The day's multi-channel list (see the module docstring).

    Parameters
    ----------
    scored : DataFrame
        :meth:`Scorer.score` output of a multi-channel model (``uplift_<channel>`` columns).
    features : DataFrame
        The feature rows scored, same index (``days_since_last_activity``).
    cfg : ScoreConfig
    model_channels : list of str
        The uplift model's channels.
    campaign_id : str
        Seeds the holdout draws.
    keep, counts, excluded
        :func:`churnml.scoring.eligible_users` output.
    value : array, optional
        Each user's value of one return (:func:`churnml.scoring.user_value`,
        the ``value_column``); ``value_per_user`` for everyone when not given.

    Returns
    -------
    list : DataFrame
        One row per selected user by rank: ``rank``, ``user_id``, ``group``
        (``contact``, ``explore`` or ``holdout``), ``channel`` (the arm given),
        ``treated``, ``model_channel`` (the model's choice), ``priority`` (its
        net value), ``uplift`` (its uplift), ``uplift_<channel>`` for every
        channel, ``cost`` (of the arm given), ``randomised``, probabilities,
        ``segment``, ``days_since_last_activity``, ``channel_reason`` and ``campaign_id``.
    counts : dict
        The single-channel list's counts plus ``channels``: per channel the
        users contacted by the model's choice and explored, the expected
        incremental returns and the cost; ``cost`` and ``net_value`` in all.
    """
    channels = list_channels(cfg, model_channels)
    up = scored[[uplift_column(c) for c in channels]].to_numpy(dtype=float)
    cost = np.array([cfg.channel_cost(c) for c in channels])
    caps = [None if (c := cfg.channels.get(name)) is None else c.max_contacts for name in channels]
    value = np.full(len(scored), cfg.value_per_user) if value is None else np.asarray(value, dtype=float)
    net = value[:, None] * up - cost
    net[~keep] = np.nan
    hurt = keep & (up < 0).all(axis=1)
    excluded["hurt_by_every_channel"] = int(hurt.sum())
    gain = keep & ((up > 0) & (net > 0)).any(axis=1)
    excluded["no_expected_gain"] = int((keep & ~hurt & ~gain).sum())
    choice = assign_channels(net, cost, uplift=up, max_contacts=cfg.budget.max_contacts,
                             max_cost=cfg.budget.max_cost, caps=caps)
    excluded["over_budget"] = int((gain & (choice == NONE)).sum())
    counts["excluded"] = excluded

    rows = np.flatnonzero(choice != NONE)
    pick = choice[rows]
    priority = net[rows, pick]
    # Highest priority first; ties broken by user id so the order never depends on input order.
    order = np.lexsort((scored["user_id"].to_numpy()[rows], -priority))
    rows, pick, priority = rows[order], pick[order], priority[order]
    cand = scored.iloc[rows].copy()
    user_ids = cand["user_id"]
    held = holdout_draw(user_ids, campaign_id) < cfg.holdout_share
    second = _second_draw(user_ids, campaign_id)
    given = pick.copy()  # channel index, NONE for control
    spent = float(cost[pick].sum())
    used = np.bincount(pick, minlength=len(channels)).astype(float)
    cap = np.array([np.inf if c is None else c for c in caps], dtype=float)
    for i in np.flatnonzero(held):
        options = [NONE] + [k for k in range(len(channels)) if k != pick[i] and up[rows[i], k] >= 0]
        arm = options[int(second[i] * len(options))]
        used[pick[i]] -= 1
        spent -= cost[pick[i]]
        if arm != NONE and (used[arm] + 1 > cap[arm] or (cfg.budget.max_cost is not None
                                                        and spent + cost[arm] > cfg.budget.max_cost * (1 + 1e-12))):
            arm = NONE  # the explored channel has no room left: control
        if arm != NONE:
            used[arm] += 1
            spent += cost[arm]
        given[i] = arm
    names = np.asarray([*channels, CONTROL], dtype=object)
    arm_name = names[np.where(given == NONE, len(channels), given)]
    group = np.where(~held, "contact", np.where(given == NONE, "holdout", "explore"))
    cand = cand.drop(columns=[c for c in ("channel",) if c in cand])
    cand.insert(0, "group", group)
    cand.insert(0, "user_id", cand.pop("user_id"))
    cand.insert(0, "rank", np.arange(1, len(cand) + 1))
    cand.insert(3, "channel", arm_name)
    cand.insert(4, "treated", given != NONE)
    cand.insert(5, "model_channel", names[pick])
    cand.insert(6, "priority", priority)
    cand["uplift"] = up[rows, pick]
    cand["p_return_if_contacted"] = cand["p_return_if_not"].to_numpy() + up[rows, pick]
    cand["cost"] = np.where(given == NONE, 0.0, cost[np.maximum(given, 0)])
    cand["randomised"] = held
    cand["days_since_last_activity"] = features["days_since_last_activity"].to_numpy()[rows]
    cand["channel_reason"] = [_reason(up[r], cost, channels, k) for r, k in zip(rows, pick, strict=True)]
    if cfg.value_column is not None:
        cand["value"] = value[rows]
    cand["campaign_id"] = campaign_id

    per = {}
    for k, c in enumerate(channels):
        mine = given == k
        per[c] = {"contact": int((mine & ~held).sum()), "explore": int((mine & held).sum()),
                  "cost": float(cost[k] * mine.sum()),
                  "expected_incremental_returns": float(up[rows[mine], k].sum()),
                  "expected_incremental_value": float((value[rows[mine]] * up[rows[mine], k]).sum()),
                  "cap": caps[k], "unit_cost": float(cost[k])}
    returns = float(sum(v["expected_incremental_returns"] for v in per.values()))
    total_cost = float(cand["cost"].sum())
    counts |= {"selected": len(cand), "contact": int((group == "contact").sum()),
               "explore": int((group == "explore").sum()), "holdout": int((group == "holdout").sum()),
               "expected_incremental_returns": returns, "cost": total_cost,
               "net_value": float(sum(v["expected_incremental_value"] for v in per.values())) - total_cost,
               "channels": per,
               "budget": {"max_contacts": cfg.budget.max_contacts, "max_cost": cfg.budget.max_cost},
               "segments": {k: int(v) for k, v in cand["segment"].value_counts().sort_index().items()}}
    return cand.reset_index(drop=True), counts
