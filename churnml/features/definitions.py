"""Every behavioural feature, declared once: name, meaning, window and expression.

:func:`feature_definitions` generates the full list from a
:class:`~churnml.config.DatasetConfig` and the dataset's event types, so a
different event log (e-commerce purchases, a social network) gets its own
per-event features by configuration alone. Adding a feature is one edit: one
more :class:`Feature` in the family that owns it.

The build (:mod:`churnml.features.build`) first condenses the events before
``as_of`` into small tables, then every feature is an aggregate over one of
them. Every stage table has ``user_id``, ``k`` (the snapshot's index when
several are built together) and ``asof`` (the snapshot's wall-clock
microseconds, see :mod:`churnml.clock`); level-2 aggregates group by
``user_id, k``. Time follows one rule: the window of ``w`` days is
``[as_of - w days, as_of)`` and a day is a calendar date in the dataset's
time zone. Each feature names the stage it is computed at:

``per_event``
    One row per user and event type, with ``event``, ``act`` (the type counts
    as activity), ``n_all`` and ``n_<w>`` (events in the window of ``w`` days,
    for every window in :func:`count_windows`), ``n_onb`` (events on the
    first ``onboarding_days`` calendar dates from the signup date),
    ``first_us``/``last_us`` (first/last event, wall microseconds) and
    ``s_<col>_<w>``/``s_<col>_all`` (summed columns).
``days``
    One row per user and calendar date with activity: ``d`` (the date as
    days since 1970-01-01), ``tmin``/``tmax`` (first/last activity on it,
    wall microseconds; never at or after ``as_of``) and ``gap`` (days to the
    user's next active date, empty for the last).
``onboarding_days``
    The ``days`` rows on the first ``onboarding_days`` dates from the signup date.
``distinct``
    The raw events before ``as_of`` with ``us`` (wall microseconds): for
    distinct counts, which cannot be condensed. Each has its own pass, which
    reads only the events it counts (its ``rows``, and its window); several
    snapshots share that pass, counting the distinct values of its ``column``.
``campaigns``
    The user's campaign exposures sent before ``as_of`` (``treated``,
    ``sent_us``, ``closed``, ``responded``).
``derived``
    A row-wise expression over the already-computed features.

Names are stable and documented; the same code builds training sets, the
nightly batch and online features.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import ibis

from churnml.clock import DAY_US
from churnml.config import DatasetConfig

__all__ = ["DAY_US", "Feature", "count_windows", "feature_definitions", "safe_name"]

Stage = Literal["per_event", "days", "onboarding_days", "distinct", "campaigns", "derived", "subscriptions"]
TREND_DAYS = 7


@dataclass(frozen=True)
class Feature:
    """One feature column.

    Parameters
    ----------
    name : str
        Column name in the feature table.
    description : str
        Plain-language meaning, used in reports and reason codes.
    family : str
        recency, tenure, frequency, activity, trend, depth, onboarding,
        distinct, amount, gaps, campaign or attribute.
    stage : {"per_event", "days", "onboarding_days", "distinct", "campaigns", "derived"}
        Where in the build it is computed (see the module docstring).
    expr : callable
        Builds the ibis expression from the stage's table.
    window_days : int, optional
        The trailing window it covers, if any (``None`` = all history).
    fill : float, optional
        Value for users the stage has no rows for (e.g. 0 contacts). Counts
        have 0 here even where every eligible user has rows: a population
        given outright (subscribers) can hold users without any event.
    rows : callable, optional
        For ``distinct`` features: ``rows(table, asof=None)``, a predicate over
        the stage's table selecting the rows the count reads (``asof``, wall
        microseconds, replaces the table's ``asof`` column when given). The build filters on it before aggregating,
        so the engine can skip the other rows; ``expr`` must give the same
        result without it.
    column : str, optional
        For ``distinct`` features: the column whose distinct values ``expr``
        counts among the ``rows``. Several snapshots built together count them
        from one pass that reads ``rows`` and ``column`` alone.
    """

    name: str
    description: str
    family: str
    stage: Stage
    expr: Callable[[ibis.Table], ibis.Value]
    window_days: int | None = None
    fill: float | None = None
    rows: Callable[[ibis.Table], ibis.Value] | None = None
    column: str | None = None


def safe_name(value: str) -> str:
    """Turn an event type into a column-name fragment (``"Add to cart" -> "add_to_cart"``)."""
    out = re.sub(r"[^0-9a-zA-Z]+", "_", str(value)).strip("_").lower()
    return out or "blank"


def count_windows(config: DatasetConfig) -> list[int]:
    """Trailing windows the per-event table counts over: the configured ones plus the trend's."""
    return sorted(set(config.feature_windows_days) | {TREND_DAYS, 2 * TREND_DAYS})


def _days_since(t: ibis.Table, us: ibis.Value) -> ibis.Value:
    """Days (wall-clock, fractional) from ``us`` to the snapshot: an event ``w`` days before is ``w``."""
    return (t.asof.max() - us) / DAY_US


def feature_definitions(
    config: DatasetConfig,
    event_types: list[str],
    *,
    has_campaigns: bool = False,
    event_columns: tuple[str, ...] = (),
) -> list[Feature]:
    """All features for a dataset, in output order.

    Parameters
    ----------
    config : DatasetConfig
        Windows, activity events, distinct counts and summed columns.
    event_types : list of str
        Event types that get per-event features.
    has_campaigns : bool
        Whether campaign-history features apply.
    event_columns : tuple of str
        Columns of the events table (distinct counts and sums need theirs).

    Returns
    -------
    list of Feature
    """
    windows = config.feature_windows_days
    k = config.onboarding_days
    trend = TREND_DAYS
    longest = max(windows)
    names = {e: safe_name(e) for e in event_types}
    feats: list[Feature] = []
    add = feats.append

    def per_type(col: str, ev: str):
        return lambda p: p[col].sum(where=p.event == ev).fill_null(0)

    def active(col: str):
        return lambda p: p[col].sum(where=p.act).fill_null(0)

    # --- recency and tenure -------------------------------------------------------------
    add(Feature("days_since_last_activity", "days since the user's last activity", "recency", "per_event",
                lambda p: _days_since(p, p.last_us.max(where=p.act))))
    for ev, n in names.items():
        add(Feature(f"days_since_last_{n}", f"days since the user's last '{ev}' event (empty if never)",
                    "recency", "per_event",
                    lambda p, ev=ev: _days_since(p, p.last_us.max(where=p.event == ev))))
    add(Feature("days_since_first_event", "days since the user's first event", "tenure", "per_event",
                lambda p: _days_since(p, p.first_us.min())))

    # --- frequency per event type and window --------------------------------------------
    for ev, n in names.items():
        for w in windows:
            add(Feature(f"n_{n}_{w}d", f"number of '{ev}' events in the last {w} days", "frequency",
                        "per_event", per_type(f"n_{w}", ev), w, fill=0))
        add(Feature(f"n_{n}_all", f"number of '{ev}' events so far", "frequency", "per_event",
                    per_type("n_all", ev), fill=0))

    # --- activity ---------------------------------------------------------------------------
    for w in windows:
        add(Feature(f"n_events_{w}d", f"number of activity events in the last {w} days", "activity",
                    "per_event", active(f"n_{w}"), w, fill=0))
        add(Feature(f"active_days_{w}d", f"calendar days with activity in the last {w} days", "activity",
                    "days", lambda a, w=w: a.count(where=a.tmax >= a.asof - w * DAY_US), w, fill=0))
    add(Feature("active_days_all", "days with activity so far", "activity", "days",
                lambda a: a.count(), fill=0))

    # --- trend: the last week against the week before ------------------------------------------
    add(Feature(f"n_events_prev_{trend}d", f"activity events {trend + 1}-{2 * trend} days ago", "trend",
                "per_event",
                lambda p: (p[f"n_{2 * trend}"] - p[f"n_{trend}"]).sum(where=p.act).fill_null(0), 2 * trend,
                fill=0))
    # The last week's count is the activity feature of that window when the config has it (a copy
    # would only split its importance in explanations); otherwise a trend feature of its own.
    last = f"n_events_{trend}d"
    if trend not in windows:
        last = f"n_events_last_{trend}d"
        add(Feature(last, f"activity events in the last {trend} days", "trend",
                    "per_event", active(f"n_{trend}"), trend, fill=0))
    add(Feature(f"activity_trend_{trend}d",
                f"log ratio of activity in the last {trend} days to the {trend} before (below 0 = slowing)",
                "trend", "derived",
                lambda t: ((t[last] + 1) / (t[f"n_events_prev_{trend}d"] + 1)).ln(),
                2 * trend))

    # --- depth ------------------------------------------------------------------------------
    add(Feature(f"events_per_active_day_{longest}d",
                f"activity events per active day over the last {longest} days", "depth", "derived",
                lambda t: t[f"n_events_{longest}d"] / t[f"active_days_{longest}d"].nullif(0), longest))

    # --- distinct counts (items, communities, ...) and summed amounts -------------------------
    for dc in config.distinct_counts:
        if dc.column not in event_columns:
            continue

        def _counted(e, asof=None, dc=dc):
            cond = e[dc.column].notnull()
            if dc.events:
                cond &= e.event.isin(dc.events)
            if dc.window_days:
                cond &= e.us >= (e.asof if asof is None else asof) - dc.window_days * DAY_US
            return cond

        what = f"distinct {dc.column}" + (f" in {', '.join(dc.events)} events" if dc.events else "")
        span = f"in the last {dc.window_days} days" if dc.window_days else "so far"
        add(Feature(dc.name, dc.description or f"{what} {span}", "distinct", "distinct",
                    lambda e, dc=dc, counted=_counted: e[dc.column].nunique(where=counted(e)),
                    dc.window_days, fill=0, rows=_counted, column=dc.column))
    for col in config.sum_columns:
        if col not in event_columns:
            continue
        c = safe_name(col)
        for w in windows:
            add(Feature(f"sum_{c}_{w}d", f"total {col} in the last {w} days", "amount", "per_event",
                        lambda p, c=c, w=w: p[f"s_{c}_{w}"].sum().fill_null(0), w, fill=0))
        add(Feature(f"sum_{c}_all", f"total {col} so far", "amount", "per_event",
                    lambda p, c=c: p[f"s_{c}_all"].sum().fill_null(0), fill=0))

    # --- onboarding: the first k days after signup ------------------------------------------
    for ev, n in names.items():
        add(Feature(f"onboard_n_{n}_{k}d", f"'{ev}' events on the first {k} calendar days from the signup date",
                    "onboarding", "per_event", per_type("n_onb", ev), k, fill=0))
    add(Feature(f"onboard_active_days_{k}d", f"calendar days with activity among the first {k} from the signup date",
                "onboarding", "onboarding_days", lambda o: o.count(), k, fill=0))

    # --- gaps between active days -----------------------------------------------------------
    add(Feature("gap_mean_days", "average gap in days between consecutive active calendar days", "gaps", "days",
                lambda g: g.gap.mean()))
    add(Feature("gap_max_days", "longest gap in days between consecutive active calendar days", "gaps", "days",
                lambda g: g.gap.max()))

    # --- purchase-log shape: BG/NBD's frequency, recency and age as ratios ------------------------
    # On sparse logs (purchases weeks apart) what tells a lapsed customer from a slow one is the
    # lapse against the customer's own rhythm: BG/NBD's x/T and t_x/T, and the lapse in usual gaps
    # (issue 14: churnml trailed BG/NBD on purchase logs). Trees could build these from the parts,
    # but only with far more rows than a young log has.
    add(Feature("active_day_rate", "share of days with activity since the first event", "frequency", "derived",
                lambda t: t.active_days_all / ibis.greatest(t.days_since_first_event, 1.0)))
    add(Feature("lapse_in_usual_gaps",
                "time since the last activity, in multiples of the user's average gap between active days "
                "(empty with one active day)", "recency", "derived",
                lambda t: t.days_since_last_activity / t.gap_mean_days.nullif(0)))
    add(Feature("active_span_ratio", "share of the user's history that lies before the last activity",
                "recency", "derived",
                lambda t: (t.days_since_first_event - t.days_since_last_activity)
                / ibis.greatest(t.days_since_first_event, 1.0)))
    for col in config.sum_columns:
        if col in event_columns:
            c = safe_name(col)
            add(Feature(f"mean_{c}_per_active_day", f"average {col} per active day so far", "amount", "derived",
                        lambda t, c=c: t[f"sum_{c}_all"] / t.active_days_all.nullif(0)))

    # --- campaign history -------------------------------------------------------------------
    if has_campaigns:
        add(Feature("times_contacted", "recall messages received so far", "campaign", "campaigns",
                    lambda c: c.treated.sum(), fill=0))
        add(Feature("days_since_last_contact", "days since the last recall message (empty if never)",
                    "campaign", "campaigns",
                    lambda c: _days_since(c, c.sent_us.max(where=c.treated))))
        add(Feature("responded_last_contact",
                    f"came back within {config.response_window_days} days of the last recall message "
                    "whose response window had closed (1/0, empty if none)",
                    "campaign", "campaigns",
                    lambda c: c.responded.argmax(c.sent_us, where=c.closed).cast("int8")))
    return feats
