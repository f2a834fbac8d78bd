"""Subscription retention by start cohort: the share of subscribers still covered N days after they started.

A subscriber's cohort is the calendar day (week, month) of their first
subscription start. They are *retained at day N* if their first spell of
coverage (rows joined across gaps of at most ``grace_days``, the same rule
as the ``subscription`` churn definition, see
:func:`churnml.features.subscriptions.spell_rows`) still covers the instant
``start + N days``. Day N of a subscriber is *observed* once
``start + N + grace_days <= observed_until`` (a renewal may arrive up to the
grace after an end); rates are over observed subscribers only, with 95%
Wilson intervals, and a cohort partly too young for day N says so
(``complete=False``), as the signup-cohort tables of
:mod:`churnml.retention` do.

The table has the columns of :data:`churnml.retention.COHORT_COLUMNS` that
apply (``retained_nday`` is "still covered"), so
:func:`churnml.retention.retention_headline` reads it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import ibis
import numpy as np
import pandas as pd

from churnml.data import Dataset
from churnml.features.build import epoch_us, instant_us
from churnml.features.definitions import DAY_US
from churnml.features.subscriptions import coverage_spells
from churnml.retention import _cohort_start, _rate, wilson_interval

__all__ = ["SUBSCRIPTION_COHORT_COLUMNS", "plot_subscription_retention", "subscription_retention"]

SUBSCRIPTION_COHORT_COLUMNS = ["cohort", "day", "cohort_size", "eligible", "retained_nday", "rate_nday",
                               "ci_low", "ci_high", "complete"]
_PERIODS = ("day", "week", "month")


def subscription_retention(
    ds: Dataset,
    *,
    period: Literal["day", "week", "month"] = "month",
    days: Sequence[int] = (30, 90, 180, 365),
    grace_days: int | None = None,
) -> pd.DataFrame:
    """Share of each start cohort still covered ``N`` days after the first start, with intervals.

    Parameters
    ----------
    ds : Dataset
        With a subscriptions table.
    period : {"day", "week", "month"}
        Cohorts by start day, ISO week (from Monday) or calendar month.
    days : sequence of int
        The ``N`` (days after the start).
    grace_days : int, optional
        Gaps up to this long do not end coverage; default the config's
        ``churn.grace_days``.

    Returns
    -------
    DataFrame
        One row per cohort and ``N``: :data:`SUBSCRIPTION_COHORT_COLUMNS`.
        Where no subscriber of a cohort is observed at ``N`` the rate and the
        interval are NaN, not 0.

    Raises
    ------
    ValueError
        No subscriptions table, or an invalid ``period`` or ``days``.

    Examples
    --------
    >>> table = subscription_retention(ds, period="month", days=(30, 90))   # doctest: +SKIP
    """
    if ds.subscriptions is None:
        raise ValueError("The `ds` parameter of `subscription_retention` must have a subscriptions table. "
                         "Got none instead.")
    if period not in _PERIODS:
        raise ValueError(f"The `period` parameter of `subscription_retention` must be one of {_PERIODS}. "
                         f"Got {period!r} instead.")
    if not days or any(not isinstance(d, (int, np.integer)) or d < 1 for d in days):
        raise ValueError(f"The `days` parameter of `subscription_retention` must be ints >= 1. "
                         f"Got {list(days)!r} instead.")
    offsets = sorted({int(d) for d in days})
    grace = ds.config.churn.grace_days if grace_days is None else grace_days
    sp = coverage_spells(ds.subscriptions, grace)
    first = sp.filter(sp.spell == 1)
    f = first.mutate(s=epoch_us(ds, first.start), e=epoch_us(ds, first.end))
    until_us = ibis.literal(instant_us(ds.observed_until))
    aggs = {"n": f.count()}
    for d in offsets:
        seen = f.s + (d + grace) * DAY_US <= until_us
        kept = f.e.isnull() | (f.e > f.s + d * DAY_US)
        aggs[f"e{d}"] = seen.sum()
        aggs[f"k{d}"] = (seen & kept).sum()
    df = f.group_by(start_day=f.s // DAY_US).aggregate(**aggs).to_pandas()
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in SUBSCRIPTION_COHORT_COLUMNS})
    df["cohort"] = _cohort_start(df["start_day"].astype("int64"), period)
    sums = df.drop(columns="start_day").groupby("cohort", sort=True).sum()
    rows = []
    for d in offsets:
        rows.append(pd.DataFrame({"cohort": sums.index, "day": d, "cohort_size": sums["n"].to_numpy(),
                                  "eligible": sums[f"e{d}"].to_numpy(), "retained_nday": sums[f"k{d}"].to_numpy()}))
    out = pd.concat(rows, ignore_index=True)
    for c in ("cohort_size", "eligible", "retained_nday"):
        out[c] = out[c].astype("int64")
    out["rate_nday"] = _rate(out["retained_nday"], out["eligible"])
    out["ci_low"], out["ci_high"] = wilson_interval(out["retained_nday"], out["eligible"])
    out["complete"] = out["eligible"] == out["cohort_size"]
    return out.sort_values(["cohort", "day"]).reset_index(drop=True)[SUBSCRIPTION_COHORT_COLUMNS]


def plot_subscription_retention(table: pd.DataFrame) -> str:
    """Pooled share still covered at each N, with the intervals, as an inline PNG (data URI)."""
    import matplotlib.pyplot as plt

    from churnml.report import figure_uri

    t = table.groupby("day")[["eligible", "retained_nday"]].sum()
    t = t[t["eligible"] > 0]
    fig, ax = plt.subplots(figsize=(8, 4))
    rate = t["retained_nday"] / t["eligible"]
    low, high = wilson_interval(t["retained_nday"], t["eligible"])
    ax.plot(t.index, rate, marker="o", label="still covered (all observed subscribers)")
    ax.fill_between(t.index, low, high, alpha=0.2, label="95% interval")
    ax.set_xlabel("days since the first subscription started")
    ax.set_ylabel("share still covered")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Subscription retention")
    return figure_uri(fig)
