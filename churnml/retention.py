"""Retention analysis: cohort retention, activity series, gaps and campaign readouts.

Everything that touches the event log is an ibis expression, so it runs on
DuckDB (out of core) and on Spark; only small result tables (one row per
signup day and day offset, per calendar day, per gap length, per campaign)
are collected into pandas.

The event log is scanned **once**: :func:`condense_activity` reduces it to
one row per user and UTC calendar day with an activity event (plus the first
and last activity instant of that day, which is all a campaign's response
window needs), and every analysis is computed from that table and the users
table. Pass the result of :func:`condense_activity` as ``activity=`` to run
several analyses over one scan (:func:`analyse_retention` does this).

Day semantics
-------------
Days are UTC calendar days, numbered as whole days since the Unix epoch
(``epoch_us(ts) // DAY_US``; date casts are much slower in DuckDB). A user's
*day N* is the calendar day ``signup_day + N``. The log's complete days end
before ``floor(observed_until)``: when ``observed_until`` is not a midnight,
the day containing it is partial and is left out of every daily measure
(it still counts for campaign response windows, which are timestamp-exact).
The log's first day is the first day with an activity event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import ibis
import numpy as np
import pandas as pd

from churnml.data import Dataset
from churnml.features.build import epoch_us, instant_us
from churnml.features.definitions import DAY_US

__all__ = [
    "ANOMALY_COLUMNS",
    "CAMPAIGN_COLUMNS",
    "COHORT_COLUMNS",
    "GAP_COLUMNS",
    "SERIES_COLUMNS",
    "ActivityDays",
    "activity_gaps",
    "activity_series",
    "analyse_retention",
    "anomalous_cohorts",
    "benjamini_hochberg",
    "cohort_attribute_mix",
    "campaign_readout",
    "cohort_retention",
    "condense_activity",
    "gap_quantile",
    "retention_headline",
    "wilson_interval",
]

_EPOCH = dt.date(1970, 1, 1)

#: Output columns of :func:`cohort_retention`, :func:`activity_series`, :func:`activity_gaps`
#: (the distribution) and :func:`campaign_readout`, in order.
COHORT_COLUMNS = [
    "cohort", "day", "cohort_size", "eligible", "retained_nday", "retained_rolling",
    "rate_nday", "rate_rolling", "ci_low", "ci_high", "ci_low_rolling", "ci_high_rolling", "complete",
]
SERIES_COLUMNS = ["date", "dau", "wau", "mau", "stickiness", "new", "returning", "resurrected"]
GAP_COLUMNS = ["gap", "count", "share", "cumulative_share"]
CAMPAIGN_COLUMNS = [
    "campaign_id", "sent_from", "sent_to", "n_treated", "n_control", "returned_treated",
    "returned_control", "rate_treated", "rate_control", "lift_abs", "lift_abs_ci_low",
    "lift_abs_ci_high", "lift_rel", "incremental_returns", "window_complete",
]


# --------------------------------------------------------------------------------------------
# Statistics


def wilson_interval(k, n, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion ``k / n`` (vectorised).

    Parameters
    ----------
    k : array_like of int
        Successes.
    n : array_like of int
        Trials; where ``n == 0`` both bounds are NaN.
    z : float, default 1.96
        Normal quantile (1.96 for a 95% interval).

    Returns
    -------
    low, high : ndarray of float
        Bounds, broadcast to the shape of ``k`` and ``n`` (0-d arrays for scalars).

    Examples
    --------
    >>> low, high = wilson_interval(5, 10)
    >>> round(float(low), 4), round(float(high), 4)
    (0.2366, 0.7634)
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
        low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def _rate(k, n) -> np.ndarray:
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, k / n, np.nan)


# --------------------------------------------------------------------------------------------
# The one pass over the events


@dataclass(frozen=True)
class ActivityDays:
    """The event log condensed to active user-days, shared by every analysis.

    Attributes
    ----------
    days : ibis.Table
        One row per user and UTC day with an activity event: ``user_id``,
        ``day`` (days since 1970-01-01), ``first_us``/``last_us`` (first and
        last activity instant of that day, Unix microseconds). Includes the
        partial last day, if any.
    users : ibis.Table
        ``user_id, signup_us, signup_day`` of users who signed up before
        ``observed_until``.
    first_day : int or None
        First day with an activity event (None if there is none).
    end_day : int
        First day that is not complete (``floor(observed_until)``, in days).
    observed_until_us : int
        ``observed_until`` in Unix microseconds.
    """

    days: ibis.Table
    users: ibis.Table
    first_day: int | None
    end_day: int
    observed_until_us: int

    @property
    def complete_days(self) -> ibis.Table:
        """``days`` restricted to complete days (before ``end_day``)."""
        return self.days.filter(self.days.day < self.end_day)

    def release(self) -> None:
        """Drop the engine-side cached tables."""
        for t in (self.days, self.users):
            try:
                t.release()
            except Exception:  # noqa: BLE001 - not cached, or already released
                pass


def _day_to_date(day) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(day))


def condense_activity(ds: Dataset) -> ActivityDays:
    """Condense the event log to active user-days in one pass, and cache it in the engine.

    Parameters
    ----------
    ds : Dataset
        Validated dataset; only events of ``config.activity_events`` (all if
        None) count as activity.

    Returns
    -------
    ActivityDays
        Call :meth:`ActivityDays.release` when done.
    """
    until_us = instant_us(ds.observed_until)
    ev = ds.events
    if ds.config.activity_events:
        ev = ev.filter(ev.event.isin(list(ds.config.activity_events)))
    ev = ev.select("user_id", us=epoch_us(ds, ev.ts))
    ev = ev.mutate(day=ev.us // DAY_US)
    days = ev.group_by("user_id", "day").aggregate(first_us=ev.us.min(), last_us=ev.us.max()).cache()
    u = ds.users.filter(ds.users.signup_ts.notnull() & (ds.users.signup_ts < ibis.literal(ds.observed_until)))
    u = u.select("user_id", signup_us=epoch_us(ds, u.signup_ts))
    users = u.mutate(signup_day=u.signup_us // DAY_US).cache()
    first = days.day.min().to_pyarrow().as_py()
    return ActivityDays(days=days, users=users, first_day=None if first is None else int(first),
                        end_day=until_us // DAY_US, observed_until_us=until_us)


class _Condensed:
    """Use the caller's :class:`ActivityDays`, or condense (and release) one for this call."""

    def __init__(self, ds: Dataset, activity: ActivityDays | None):
        self._own = activity is None
        self.act = condense_activity(ds) if activity is None else activity

    def __enter__(self) -> ActivityDays:
        return self.act

    def __exit__(self, *exc) -> None:
        if self._own:
            self.act.release()


def _frame(table: ibis.Table) -> pd.DataFrame:
    return table.to_pyarrow().to_pandas()


# --------------------------------------------------------------------------------------------
# 1. Cohort retention

_PERIODS = ("day", "week", "month")
_COHORT_DTYPES = {"cohort": object, "day": "int64", "cohort_size": "int64", "eligible": "int64",
                  "retained_nday": "int64", "retained_rolling": "int64", "complete": bool}


def _cohort_start(signup_day: pd.Series, period: str) -> pd.Series:
    """Start date of each signup day's cohort (computed once per distinct day: a small table)."""
    starts = {}
    for day in pd.unique(signup_day):
        date = _day_to_date(day)
        if period == "week":
            date -= dt.timedelta(days=date.weekday())
        elif period == "month":
            date = date.replace(day=1)
        starts[day] = date
    return signup_day.map(starts)


def cohort_retention(
    ds: Dataset,
    *,
    period: Literal["day", "week", "month"] = "day",
    days: Sequence[int] = (1, 7, 30),
    max_day: int = 30,
    activity: ActivityDays | None = None,
) -> pd.DataFrame:
    """N-day and rolling retention per signup cohort, with Wilson intervals.

    A user is *retained on day N* (N-day retention) if active on the calendar
    day ``signup_day + N``, and *rolling-retained at day N* if active on day N
    or any later complete day of the log. A user's day N is observed once it
    is complete (``signup_day + N < end_day``); rates are over those users
    only, so a cohort partly too young for day N gets the rate of its older
    users and ``complete=False``.

    Parameters
    ----------
    ds : Dataset
    period : {"day", "week", "month"}
        Cohort by signup day, ISO week (starting Monday) or calendar month.
    days : sequence of int, default (1, 7, 30)
        Headline days; rows are produced for ``0..max_day`` and for these.
    max_day : int, default 30
    activity : ActivityDays, optional
        A condensed log from :func:`condense_activity` (else one is made).

    Returns
    -------
    DataFrame
        One row per cohort and day, sorted: ``cohort`` (start date),
        ``day``, ``cohort_size``, ``eligible`` (users whose day N is complete),
        ``retained_nday``, ``retained_rolling``, ``rate_nday``,
        ``rate_rolling``, ``ci_low``/``ci_high`` (95% Wilson interval of the
        N-day rate), ``ci_low_rolling``/``ci_high_rolling``, ``complete``
        (every user's day N is observed). Where ``eligible == 0`` the rates
        and intervals are NaN, not 0.

    Raises
    ------
    ValueError
        If ``period``, ``days`` or ``max_day`` is invalid.

    Examples
    --------
    >>> table = cohort_retention(ds, period="week")          # doctest: +SKIP
    >>> retention_headline(table, days=(1, 7))                # doctest: +SKIP
    """
    if period not in _PERIODS:
        raise ValueError(
            f"The `period` parameter of `cohort_retention` must be one of {_PERIODS}. Got {period!r} instead."
        )
    if not isinstance(max_day, (int, np.integer)) or max_day < 0:
        raise ValueError(
            f"The `max_day` parameter of `cohort_retention` must be an int >= 0. Got {max_day!r} instead."
        )
    if any(not isinstance(d, (int, np.integer)) or d < 0 for d in days):
        raise ValueError(
            f"The `days` parameter of `cohort_retention` must be ints >= 0. Got {list(days)!r} instead."
        )
    offsets = sorted(set(range(max_day + 1)) | {int(d) for d in days})
    top = offsets[-1]

    with _Condensed(ds, activity) as act:
        u = act.users
        sizes = _frame(u.group_by("signup_day").aggregate(n=u.count()))
        a = act.complete_days.join(u, "user_id")
        a = a.mutate(rel=a.day - a.signup_day).filter(lambda t: t.rel >= 0)
        nday = a.filter(a.rel.isin(offsets))
        nday = _frame(nday.group_by("signup_day", "rel").aggregate(k=nday.count()))
        last = a.group_by("user_id", "signup_day").aggregate(last=a.rel.max())
        last = last.mutate(last=ibis.least(last["last"], top))
        last = _frame(last.group_by("signup_day", "last").aggregate(k=last.count()))
        end_day = act.end_day

    if sizes.empty:
        return pd.DataFrame({c: pd.Series(dtype=_COHORT_DTYPES.get(c, float)) for c in COHORT_COLUMNS})
    sig = sizes["signup_day"].astype("int64").to_numpy()
    n = sizes["n"].astype("int64").to_numpy()
    off = np.asarray(offsets, dtype="int64")
    # Per signup day and offset: every user of a signup day reaches day N at the same time.
    grid = pd.DataFrame({
        "signup_day": np.repeat(sig, len(off)),
        "day": np.tile(off, len(sig)),
        "cohort_size": np.repeat(n, len(off)),
    })
    grid["eligible"] = np.where(grid["signup_day"] + grid["day"] < end_day, grid["cohort_size"], 0)
    nday = nday.rename(columns={"rel": "day", "k": "retained_nday"}).astype("int64")
    grid = grid.merge(nday, on=["signup_day", "day"], how="left")
    # Rolling: active on day N or later <=> the user's last active offset is >= N.
    rolling = _rolling_counts(last, sig, off)
    grid = grid.merge(rolling, on=["signup_day", "day"], how="left")
    grid[["retained_nday", "retained_rolling"]] = grid[["retained_nday", "retained_rolling"]].fillna(0)

    grid["cohort"] = _cohort_start(grid["signup_day"], period)
    out = (grid.groupby(["cohort", "day"], sort=True)[
        ["cohort_size", "eligible", "retained_nday", "retained_rolling"]].sum().reset_index())
    out[["cohort_size", "eligible", "retained_nday", "retained_rolling"]] = out[
        ["cohort_size", "eligible", "retained_nday", "retained_rolling"]].astype("int64")
    out["rate_nday"] = _rate(out["retained_nday"], out["eligible"])
    out["rate_rolling"] = _rate(out["retained_rolling"], out["eligible"])
    out["ci_low"], out["ci_high"] = wilson_interval(out["retained_nday"], out["eligible"])
    out["ci_low_rolling"], out["ci_high_rolling"] = wilson_interval(out["retained_rolling"], out["eligible"])
    out["complete"] = out["eligible"] == out["cohort_size"]
    return out[COHORT_COLUMNS].reset_index(drop=True)


def _rolling_counts(last: pd.DataFrame, sig: np.ndarray, off: np.ndarray) -> pd.DataFrame:
    """Users per signup day whose last active offset is >= each offset (a reverse cumulative sum)."""
    rows = []
    for s, grp in last.groupby("signup_day"):
        hist = grp.set_index("last")["k"]
        lasts = hist.index.to_numpy(dtype="int64")
        counts = hist.to_numpy(dtype="int64")
        at_least = np.array([counts[lasts >= o].sum() for o in off], dtype="int64")
        rows.append(pd.DataFrame({"signup_day": int(s), "day": off, "retained_rolling": at_least}))
    if not rows:
        return pd.DataFrame({"signup_day": pd.Series(dtype="int64"), "day": pd.Series(dtype="int64"),
                             "retained_rolling": pd.Series(dtype="int64")})
    return pd.concat(rows, ignore_index=True)


def retention_headline(table: pd.DataFrame, days: Sequence[int] = (1, 7, 30)) -> pd.DataFrame:
    """One wide row per cohort with the N-day retention of a few headline days.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`cohort_retention`.
    days : sequence of int, default (1, 7, 30)
        Must all be present in ``table.day``.

    Returns
    -------
    DataFrame
        ``cohort, cohort_size`` then, for each N: ``d{N}`` (rate, NaN if no
        user reached day N), ``d{N}_ci_low``, ``d{N}_ci_high``,
        ``d{N}_eligible``, ``d{N}_complete``.

    Raises
    ------
    ValueError
        If a requested day is not in the table.
    """
    missing = sorted(set(days) - set(table["day"].unique()))
    if missing:
        raise ValueError(
            f"The `days` parameter of `retention_headline` must be days present in the table "
            f"(0..{int(table['day'].max()) if len(table) else '-'}). Got {missing} instead."
        )
    out = table.loc[table["day"] == days[0], ["cohort", "cohort_size"]] if days else table[["cohort"]]
    out = out.drop_duplicates("cohort").reset_index(drop=True)
    for d in days:
        part = table.loc[table["day"] == d, ["cohort", "rate_nday", "ci_low", "ci_high", "eligible", "complete"]]
        part = part.rename(columns={"rate_nday": f"d{d}", "ci_low": f"d{d}_ci_low", "ci_high": f"d{d}_ci_high",
                                    "eligible": f"d{d}_eligible", "complete": f"d{d}_complete"})
        out = out.merge(part, on="cohort", how="left")
    return out.sort_values("cohort").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# 1b. Anomalous cohorts

ANOMALY_COLUMNS = [
    "cohort", "day", "eligible", "rate", "ci_low", "ci_high", "baseline_rate", "baseline_cohorts",
    "z", "p_value", "q_value", "flagged", "direction",
]


def _normal_sf(z: np.ndarray) -> np.ndarray:
    from math import erfc, sqrt

    return np.array([0.5 * erfc(v / sqrt(2)) for v in np.asarray(z, dtype=float)])


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p_values, dtype=float)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty(n)
    out[order] = q
    return out


def anomalous_cohorts(
    table: pd.DataFrame,
    *,
    days: Sequence[int] = (1, 7),
    baseline_cohorts: int = 14,
    min_baseline: int = 5,
    min_eligible: int = 20,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Cohorts whose day-N retention differs significantly from their trailing baseline.

    The baseline of a cohort is the **median** N-day rate of the previous
    ``baseline_cohorts`` cohorts (at least ``min_baseline`` of them with
    ``min_eligible`` observed users): a median, so that one bad cohort does not
    make its neighbours look good. Each cohort's rate is tested against it
    with a z-test whose variance is the binomial one plus the spread between
    cohorts beyond sampling noise (estimated once per day from all cohorts'
    deviations from their baselines, robustly, by the median absolute
    deviation); the p-values of all cohorts and days are adjusted
    together with Benjamini-Hochberg, and ``flagged`` means ``q_value < alpha``.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`cohort_retention`.
    days : sequence of int
        Retention days to test (each must be in ``table.day``).
    baseline_cohorts, min_baseline, min_eligible : int
    alpha : float
        False discovery rate.

    Returns
    -------
    DataFrame
        Every tested (cohort, day), columns :data:`ANOMALY_COLUMNS`, sorted by
        ``q_value``; ``direction`` is "lower" or "higher".
    """
    rows = []
    for d in days:
        t = table[(table["day"] == d) & (table["eligible"] >= min_eligible)].sort_values("cohort")
        rates = t["rate_nday"].to_numpy(dtype=float)
        tested = []
        for i in range(len(t)):
            prev = rates[max(0, i - baseline_cohorts):i]
            if len(prev) >= min_baseline:
                tested.append((i, float(np.median(prev)), len(prev)))
        if not tested:
            continue
        idx = np.array([i for i, _, _ in tested])
        base = np.array([b for _, b, _ in tested])
        n = t["eligible"].to_numpy(dtype=float)[idx]
        resid = rates[idx] - base
        binom = np.maximum(base * (1 - base), 1e-12) / n
        # Cohorts differ by more than sampling noise (weekday, mix). Estimate that extra spread once
        # per day from all residuals, robustly (median absolute deviation), so a few anomalous
        # cohorts do not inflate it, and add it to each cohort's binomial variance.
        spread = (1.4826 * np.median(np.abs(resid - np.median(resid)))) ** 2
        tau2 = max(0.0, spread - float(np.median(binom)))
        z = resid / np.sqrt(binom + tau2)
        for (i, b, k), zi, ni in zip(tested, z, n, strict=True):
            r = t.iloc[i]
            rows.append({"cohort": r["cohort"], "day": d, "eligible": int(ni), "rate": float(r["rate_nday"]),
                         "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
                         "baseline_rate": b, "baseline_cohorts": k, "z": float(zi)})
    out = pd.DataFrame(rows, columns=[c for c in ANOMALY_COLUMNS if c not in ("p_value", "q_value", "flagged", "direction")])
    out["p_value"] = 2 * _normal_sf(np.abs(out["z"].to_numpy(dtype=float))) if len(out) else []
    out["q_value"] = benjamini_hochberg(out["p_value"].to_numpy()) if len(out) else []
    out["flagged"] = out["q_value"] < alpha
    out["direction"] = np.where(out["z"] < 0, "lower", "higher") if len(out) else []
    return out[ANOMALY_COLUMNS].sort_values(["q_value", "cohort"]).reset_index(drop=True)


def cohort_attribute_mix(
    ds: Dataset, cohorts: Sequence, *, period: Literal["day", "week", "month"] = "day", top: int = 3
) -> pd.DataFrame:
    """User attributes over-represented in given cohorts, against all other users.

    For each attribute column of the users table (everything but ``user_id``
    and ``signup_ts``) and each of its values: the share of the cohort's users
    with that value against the share among all other users. Counting runs in
    the engine; only (signup day, attribute value) counts are collected.

    Returns
    -------
    DataFrame
        ``cohort, attribute, value, share_in_cohort, share_elsewhere, ratio``;
        the ``top`` values per cohort with the highest ratio among values held
        by at least 10% of the cohort.
    """
    cols = ["cohort", "attribute", "value", "share_in_cohort", "share_elsewhere", "ratio"]
    users = ds.users
    attrs = [c for c in users.columns if c not in ("user_id", "signup_ts")]
    if not attrs or not len(cohorts):
        return pd.DataFrame(columns=cols)
    day = (epoch_us(ds, users.signup_ts) // DAY_US).name("signup_day")
    parts = []
    for a in attrs:
        counts = users.group_by(day, users[a].cast("string").name("value")).aggregate(n=users.count())
        df = _frame(counts)
        df["attribute"] = a
        parts.append(df)
    counts = pd.concat(parts, ignore_index=True)
    counts["cohort"] = _cohort_start(counts["signup_day"], period)
    rows = []
    wanted = {pd.Timestamp(c).date() if not isinstance(c, dt.date) else c for c in cohorts}
    for c in wanted:
        inside = counts["cohort"] == c
        for a, g in counts.groupby("attribute"):
            m = inside[g.index]
            ins = g[m].groupby("value")["n"].sum()
            out = g[~m].groupby("value")["n"].sum()
            if ins.sum() == 0:
                continue
            share_in = ins / ins.sum()
            share_out = (out / max(out.sum(), 1)).reindex(share_in.index).fillna(0.0)
            for v in share_in.index:
                if share_in[v] >= 0.10:
                    ratio = share_in[v] / share_out[v] if share_out[v] > 0 else np.inf
                    rows.append({"cohort": c, "attribute": a, "value": v, "share_in_cohort": share_in[v],
                                 "share_elsewhere": share_out[v], "ratio": ratio})
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    df = df.sort_values(["cohort", "ratio"], ascending=[True, False])
    return df.groupby("cohort").head(top).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# 2. Daily activity series


def activity_series(ds: Dataset, *, activity: ActivityDays | None = None) -> pd.DataFrame:
    """Daily, weekly and monthly active users and the composition of each day's actives.

    Parameters
    ----------
    ds : Dataset
    activity : ActivityDays, optional
        A condensed log from :func:`condense_activity` (else one is made).

    Returns
    -------
    DataFrame
        One row per complete day from the log's first day: ``date``, ``dau``,
        ``wau`` (distinct users active in the 7 days ending that day),
        ``mau`` (30 days), ``stickiness`` (``dau / mau``), ``new`` (active
        on their signup day), ``returning`` (active, not new, and active at
        least once in the previous 7 days), ``resurrected`` (active, not new,
        not active in the previous 7 days). ``wau``/``mau``/``stickiness`` are
        NaN until the trailing window lies inside the log, and
        ``returning``/``resurrected`` until the previous 7 days do (before
        that, earlier activity cannot be seen).
    """
    with _Condensed(ds, activity) as act:
        if act.first_day is None or act.first_day >= act.end_day:
            return pd.DataFrame({c: pd.Series(dtype="object" if c == "date" else float) for c in SERIES_COLUMNS})
        d = act.complete_days.select("user_id", "day")
        d = d.join(act.users.select("user_id", "signup_day"), "user_id", how="left")
        w = ibis.window(group_by=d.user_id, order_by=d.day)
        d = d.mutate(prev=d.day.lag().over(w), nxt=d.day.lead().over(w))
        new = d.day == d.signup_day
        recent = d.prev.notnull() & (d.day - d.prev <= 7)
        zero = ibis.literal(0, "int64")
        one = ibis.literal(1, "int64")
        # DAU, composition and the +1 of each user's coverage interval (see below), by day.
        starts = d.select(
            day=d.day, dau=one, new=new.cast("int64"), returning=(~new & recent).cast("int64"),
            resurrected=(~new & ~recent).cast("int64"), wau_delta=one, mau_delta=one,
        )
        # A user counts in the w-day window ending on D iff some active day a has a <= D < a + w.
        # Each active day covers [a, min(a + w, next active day)): these intervals are disjoint per
        # user, so WAU/MAU are running sums of +1 at a and -1 at the interval's end.
        ends = [
            d.select(day=ibis.least(d.day + width, d.nxt.fill_null(d.day + width)), dau=zero, new=zero,
                     returning=zero, resurrected=zero,
                     wau_delta=ibis.literal(-1 if width == 7 else 0, "int64"),
                     mau_delta=ibis.literal(-1 if width == 30 else 0, "int64"))
            for width in (7, 30)
        ]
        u = ibis.union(starts, *ends, distinct=False)
        per_day = _frame(u.group_by("day").aggregate(
            **{c: u[c].sum() for c in ("dau", "new", "returning", "resurrected", "wau_delta", "mau_delta")}))
        first, end = act.first_day, act.end_day

    grid = pd.DataFrame({"day": np.arange(first, end, dtype="int64")})
    per_day = per_day.astype("int64")
    # Interval ends fall after the log too; the running sums only need the days inside it.
    per_day = per_day[per_day["day"] < end]
    out = grid.merge(per_day, on="day", how="left").fillna(0).astype("int64")
    since = out["day"] - first
    out["wau"] = out["wau_delta"].cumsum().astype(float).where(since >= 6)
    out["mau"] = out["mau_delta"].cumsum().astype(float).where(since >= 29)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["stickiness"] = out["dau"] / out["mau"].where(out["mau"] > 0)
    for c in ("returning", "resurrected"):
        out[c] = out[c].astype(float).where(since >= 7)
    out["date"] = out["day"].map(_day_to_date)
    return out[SERIES_COLUMNS]


# --------------------------------------------------------------------------------------------
# 3. Gaps between active days


def gap_quantile(dist: pd.DataFrame, q: float) -> int | None:
    """The smallest gap ``g`` with at least a share ``q`` of gaps ``<= g`` (None without gaps).

    ``dist`` is the gap table of :func:`activity_gaps`.
    """
    if not len(dist) or not dist["count"].sum():
        return None
    # A tiny tolerance so that e.g. 9/10 counts as reaching 0.90 despite float rounding.
    return int(dist.loc[dist["cumulative_share"] >= q - 1e-12, "gap"].iloc[0])


def activity_gaps(ds: Dataset, *, activity: ActivityDays | None = None) -> tuple[pd.DataFrame, dict]:
    """Distribution of gaps between a user's consecutive active days, and the metric it suggests.

    Gaps are counted in whole days (consecutive days = 1) over the complete
    days of the log. Gaps longer than what the log shows are not seen, so the
    tail is a lower bound on a young log.

    Parameters
    ----------
    ds : Dataset
    activity : ActivityDays, optional
        A condensed log from :func:`condense_activity` (else one is made).

    Returns
    -------
    gaps : DataFrame
        ``gap, count, share, cumulative_share``, by increasing gap.
    summary : dict
        ``n_gaps``; ``gap_p90``, ``gap_p95``, ``gap_p99`` (smallest gap g
        with share of gaps <= g at least 0.90, ... ; None without gaps);
        ``recommended_horizon_days`` (``max(gap_p95, 1)``, None without
        gaps); ``median_active_days_per_week`` among users with at least 7
        complete days of tenure inside the log and at least one active day
        (active days / tenure weeks; None if there are none);
        ``n_users_for_median``; ``recommended_metric`` ("daily" if that
        median is >= 3, "weekly" if >= 1, else "monthly"; from ``gap_p90``
        when there is no median) and ``reasoning`` (one sentence).
    """
    with _Condensed(ds, activity) as act:
        d = act.complete_days.select("user_id", "day")
        g = d.mutate(gap=d.day.lead().over(group_by=d.user_id, order_by=d.day) - d.day)
        g = g.filter(g.gap.notnull())
        dist = _frame(g.group_by("gap").aggregate(count=g.count()))
        per_user = d.group_by("user_id").aggregate(n=d.count())
        u = act.users
        start = ibis.greatest(u.signup_day, act.first_day if act.first_day is not None else act.end_day)
        u = u.select("user_id", tenure=act.end_day - start).filter(lambda t: t.tenure >= 7)
        j = u.join(per_user, "user_id")
        j = j.mutate(per_week=j.n * 7.0 / j.tenure)
        med = _frame(j.aggregate(median=j.per_week.median(), users=j.count()))

    dist = dist.astype("int64").sort_values("gap").reset_index(drop=True)
    total = int(dist["count"].sum())
    dist["share"] = dist["count"] / total if total else np.nan
    dist["cumulative_share"] = dist["share"].cumsum()
    dist = dist[GAP_COLUMNS]

    p90, p95, p99 = (gap_quantile(dist, q) for q in (0.90, 0.95, 0.99))
    n_med = int(med["users"].iloc[0]) if len(med) else 0
    median = float(med["median"].iloc[0]) if n_med else None
    if median is not None:
        metric = "daily" if median >= 3 else "weekly" if median >= 1 else "monthly"
        reasoning = (
            f"The median user (of {n_med:,} with at least a week of tenure) is active on "
            f"{median:.1f} days a week, "
            + ("at least 3, so day-level (daily) retention fits" if metric == "daily"
               else "between 1 and 3, so weekly retention fits" if metric == "weekly"
               else "less than once a week, so monthly retention fits")
            + (f"; 95% of gaps between active days are at most {p95} days." if p95 is not None else ".")
        )
    elif p90 is not None:
        metric = "daily" if p90 <= 2 else "weekly" if p90 <= 7 else "monthly"
        reasoning = (f"No user has a week of tenure yet; 90% of gaps between active days are at most "
                     f"{p90} days, so {metric} retention fits.")
    else:
        metric = "weekly"
        reasoning = "Too little history to judge usage frequency (no user has two active days); weekly is a default."
    summary = {
        "n_gaps": total,
        "gap_p90": p90,
        "gap_p95": p95,
        "gap_p99": p99,
        "recommended_horizon_days": None if p95 is None else max(p95, 1),
        "median_active_days_per_week": median,
        "n_users_for_median": n_med,
        "recommended_metric": metric,
        "reasoning": reasoning,
    }
    return dist, summary


# --------------------------------------------------------------------------------------------
# 4. Campaign readout


def _empty_readout() -> pd.DataFrame:
    dtypes = {"campaign_id": object, "sent_from": "datetime64[us, UTC]", "sent_to": "datetime64[us, UTC]",
              "n_treated": "int64", "n_control": "int64", "returned_treated": "int64",
              "returned_control": "int64", "window_complete": bool}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, float)) for c in CAMPAIGN_COLUMNS})


def campaign_readout(
    ds: Dataset,
    *,
    window_days: int | None = None,
    z: float = 1.96,
    activity: ActivityDays | None = None,
) -> pd.DataFrame:
    """Return rates of treated and control users per campaign, and the lift with its interval.

    An exposure *returned* if the user has an activity event in
    ``[sent_ts, sent_ts + window_days)``. Each campaign row is one exposure.

    Parameters
    ----------
    ds : Dataset
    window_days : int, optional
        Response window; ``config.response_window_days`` if omitted.
    z : float, default 1.96
        Normal quantile of the lift interval (95%).
    activity : ActivityDays, optional
        A condensed log from :func:`condense_activity` (else one is made).

    Returns
    -------
    DataFrame
        One row per ``campaign_id`` (by first send): ``sent_from``,
        ``sent_to`` (first and last send), ``n_treated``, ``n_control``,
        ``returned_treated``, ``returned_control``, ``rate_treated``,
        ``rate_control``, ``lift_abs`` (difference of rates),
        ``lift_abs_ci_low``/``lift_abs_ci_high`` (normal interval of a
        difference of proportions; NaN without both arms), ``lift_rel``
        (``lift_abs / rate_control``), ``incremental_returns``
        (``lift_abs * n_treated``), ``window_complete`` (every exposure's
        window ends by ``observed_until``; if not, the rates are
        provisional). Empty, with these columns, if the dataset has no
        campaigns table.

    Raises
    ------
    ValueError
        If ``window_days`` is not a positive int.
    """
    window = ds.config.response_window_days if window_days is None else window_days
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
        raise ValueError(
            f"The `window_days` parameter of `campaign_readout` must be an int >= 1. Got {window_days!r} instead."
        )
    if ds.campaigns is None:
        return _empty_readout()
    win_us = int(window) * DAY_US
    with _Condensed(ds, activity) as act:
        c = ds.campaigns
        # Exposures repeated exactly (same user, campaign, time, arm) are weighted, not joined twice.
        x = c.group_by("user_id", "campaign_id", "treated", "sent_ts").aggregate(rows=c.count())
        x = x.mutate(sent_us=epoch_us(ds, x.sent_ts))
        x = x.mutate(end_us=x.sent_us + win_us, s_day=x.sent_us // DAY_US)
        x = x.mutate(e_day=x.end_us // DAY_US)
        a = act.days.rename(a_uid="user_id")
        hit = x.join(a, [x.user_id == a.a_uid, a.day >= x.s_day, a.day <= x.e_day])
        # The window covers whole days strictly inside it, the send day after sent_ts and the
        # last day before end_us: the day's last/first activity instant decides those two.
        inside = (
            ((hit.day > hit.s_day) & (hit.day < hit.e_day))
            | ((hit.day == hit.s_day) & (hit.last_us >= hit.sent_us) & (hit.first_us < hit.end_us))
            | ((hit.day == hit.e_day) & (hit.first_us < hit.end_us) & (hit.last_us >= hit.sent_us))
        )
        keys = ["user_id", "campaign_id", "treated", "sent_ts"]
        hits = hit.filter(inside).select(*keys).distinct().mutate(hit=ibis.literal(1, "int64"))
        y = x.left_join(hits, keys).select(*[x[k] for k in keys], x.rows, x.end_us, hit=hits.hit)
        ret = y.hit.notnull()
        agg = y.group_by("campaign_id").aggregate(
            sent_from=y.sent_ts.min(),
            sent_to=y.sent_ts.max(),
            n_treated=y.rows.sum(where=y.treated),
            n_control=y.rows.sum(where=~y.treated),
            returned_treated=y.rows.sum(where=y.treated & ret),
            returned_control=y.rows.sum(where=~y.treated & ret),
            max_end_us=y.end_us.max(),
        )
        out = _frame(agg)
        until_us = act.observed_until_us

    if out.empty:
        return _empty_readout()
    counts = ["n_treated", "n_control", "returned_treated", "returned_control"]
    out[counts] = out[counts].fillna(0).astype("int64")
    nt, nc = out["n_treated"].to_numpy(float), out["n_control"].to_numpy(float)
    pt, pc = _rate(out["returned_treated"], nt), _rate(out["returned_control"], nc)
    lift = pt - pc
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
        rel = np.where(pc > 0, lift / pc, np.nan)
    out["rate_treated"], out["rate_control"] = pt, pc
    out["lift_abs"] = lift
    out["lift_abs_ci_low"], out["lift_abs_ci_high"] = lift - z * se, lift + z * se
    out["lift_rel"] = rel
    out["incremental_returns"] = lift * nt
    out["window_complete"] = out["max_end_us"].astype("int64") <= until_us
    for col in ("sent_from", "sent_to"):
        out[col] = pd.to_datetime(out[col], utc=True)
    out = out.sort_values(["sent_from", "campaign_id"]).reset_index(drop=True)
    return out[CAMPAIGN_COLUMNS]


# --------------------------------------------------------------------------------------------
# Everything over one scan


def analyse_retention(
    ds: Dataset,
    *,
    period: Literal["day", "week", "month"] = "week",
    days: Sequence[int] = (1, 7, 30),
    max_day: int = 30,
    window_days: int | None = None,
) -> dict:
    """Run every retention analysis over one condensed scan of the event log.

    Parameters
    ----------
    ds : Dataset
    period, days, max_day
        As in :func:`cohort_retention`.
    window_days : int, optional
        As in :func:`campaign_readout`.

    Returns
    -------
    dict
        ``cohorts`` and ``headline`` (DataFrames), ``series``, ``gaps``,
        ``gap_summary`` (dict) and ``campaigns``.
    """
    act = condense_activity(ds)
    try:
        cohorts = cohort_retention(ds, period=period, days=days, max_day=max_day, activity=act)
        gaps, summary = activity_gaps(ds, activity=act)
        return {
            "cohorts": cohorts,
            "headline": retention_headline(cohorts, days=days),
            "series": activity_series(ds, activity=act),
            "gaps": gaps,
            "gap_summary": summary,
            "campaigns": campaign_readout(ds, window_days=window_days, activity=act),
        }
    finally:
        act.release()
