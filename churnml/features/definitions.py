"""Every behavioural feature, declared once: name, meaning, window and expression.

:func:`feature_definitions` generates the full list from a
:class:`~churnml.config.DatasetConfig` and the dataset's event types, so a
different event log (e-commerce purchases, a social network) gets its own
per-event features by configuration alone. Adding a feature is one edit: one
more :class:`Feature` in the family that owns it.

Each feature is computed at one stage of the point-in-time build
(:mod:`churnml.features.build`):

``events``
    An aggregate over the user's events with ``ts < as_of``. The expression
    sees a table with the contract columns plus ``secs`` (seconds before
    ``as_of``), ``d`` (whole days before ``as_of``: 0 is the last 24 hours),
    ``act`` (the event counts as activity) and ``tsec`` (seconds after signup).
``gaps``
    An aggregate over the gaps (in days) between the user's distinct active
    days before ``as_of``; the table has ``gap``.
``campaigns``
    An aggregate over the user's campaign exposures sent before ``as_of``.
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

from churnml.config import DatasetConfig

__all__ = ["Feature", "feature_definitions", "safe_name"]

Stage = Literal["events", "gaps", "campaigns", "derived"]
_DAY = 86_400


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
    stage : {"events", "gaps", "campaigns", "derived"}
        Where in the build it is computed (see the module docstring).
    expr : callable
        Builds the ibis expression from the stage's table.
    window_days : int, optional
        The trailing window it covers, if any (``None`` = all history).
    fill : float, optional
        Value for eligible users the stage has no rows for (e.g. 0 contacts).
    """

    name: str
    description: str
    family: str
    stage: Stage
    expr: Callable[[ibis.Table], ibis.Value]
    window_days: int | None = None
    fill: float | None = None


def safe_name(value: str) -> str:
    """Turn an event type into a column-name fragment (``"Add to cart" -> "add_to_cart"``)."""
    out = re.sub(r"[^0-9a-zA-Z]+", "_", str(value)).strip("_").lower()
    return out or "blank"


def _days_since(ts_max: ibis.Value, as_of_epoch: int) -> ibis.Value:
    return (ibis.literal(as_of_epoch) - ts_max) / _DAY


def feature_definitions(
    config: DatasetConfig,
    event_types: list[str],
    *,
    as_of_epoch: int,
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
    as_of_epoch : int
        The snapshot instant in Unix seconds (recency features need it).
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
    trend = 7
    longest = max(windows)
    names = {e: safe_name(e) for e in event_types}
    feats: list[Feature] = []
    add = feats.append

    # --- recency and tenure -------------------------------------------------------------
    add(Feature("days_since_last_activity", "days since the user's last activity", "recency", "events",
                lambda e: _days_since(e.ts.epoch_seconds().max(where=e.act), as_of_epoch)))
    for ev, n in names.items():
        add(Feature(f"days_since_last_{n}", f"days since the user's last '{ev}' event (empty if never)",
                    "recency", "events",
                    lambda e, ev=ev: _days_since(e.ts.epoch_seconds().max(where=e.event == ev), as_of_epoch)))
    add(Feature("days_since_first_event", "days since the user's first event", "tenure", "events",
                lambda e: _days_since(e.ts.epoch_seconds().min(), as_of_epoch)))

    # --- frequency per event type and window --------------------------------------------
    for ev, n in names.items():
        for w in windows:
            add(Feature(f"n_{n}_{w}d", f"number of '{ev}' events in the last {w} days", "frequency",
                        "events", lambda e, ev=ev, w=w: ((e.event == ev) & (e.d < w)).sum(), w))
        add(Feature(f"n_{n}_all", f"number of '{ev}' events so far", "frequency", "events",
                    lambda e, ev=ev: (e.event == ev).sum()))

    # --- activity ---------------------------------------------------------------------------
    for w in windows:
        add(Feature(f"n_events_{w}d", f"number of activity events in the last {w} days", "activity",
                    "events", lambda e, w=w: (e.act & (e.d < w)).sum(), w))
        add(Feature(f"active_days_{w}d", f"days with activity among the last {w}", "activity",
                    "events", lambda e, w=w: e.d.nunique(where=e.act & (e.d < w)), w))
    add(Feature("active_days_all", "days with activity so far", "activity", "events",
                lambda e: e.d.nunique(where=e.act)))

    # --- trend: the last week against the week before ------------------------------------------
    add(Feature(f"n_events_prev_{trend}d", f"activity events {trend + 1}-{2 * trend} days ago", "trend",
                "events", lambda e: (e.act & (e.d >= trend) & (e.d < 2 * trend)).sum(), 2 * trend))
    add(Feature(f"n_events_last_{trend}d", f"activity events in the last {trend} days", "trend",
                "events", lambda e: (e.act & (e.d < trend)).sum(), trend))
    add(Feature(f"activity_trend_{trend}d",
                f"log ratio of activity in the last {trend} days to the {trend} before (below 0 = slowing)",
                "trend", "derived",
                lambda t: ((t[f"n_events_last_{trend}d"] + 1) / (t[f"n_events_prev_{trend}d"] + 1)).ln(),
                2 * trend))

    # --- depth ------------------------------------------------------------------------------
    add(Feature(f"events_per_active_day_{longest}d",
                f"activity events per active day over the last {longest} days", "depth", "derived",
                lambda t: t[f"n_events_{longest}d"] / t[f"active_days_{longest}d"].nullif(0), longest))

    # --- distinct counts (items, communities, ...) and summed amounts -------------------------
    for dc in config.distinct_counts:
        if dc.column not in event_columns:
            continue

        def _distinct(e, dc=dc):
            cond = e[dc.column].notnull()
            if dc.events:
                cond &= e.event.isin(dc.events)
            if dc.window_days:
                cond &= e.d < dc.window_days
            return e[dc.column].nunique(where=cond)

        what = f"distinct {dc.column}" + (f" in {', '.join(dc.events)} events" if dc.events else "")
        span = f"in the last {dc.window_days} days" if dc.window_days else "so far"
        add(Feature(dc.name, dc.description or f"{what} {span}", "distinct", "events", _distinct,
                    dc.window_days))
    for col in config.sum_columns:
        if col not in event_columns:
            continue
        for w in windows:
            add(Feature(f"sum_{safe_name(col)}_{w}d", f"total {col} in the last {w} days", "amount",
                        "events", lambda e, col=col, w=w: e[col].sum(where=e.d < w).fill_null(0), w))
        add(Feature(f"sum_{safe_name(col)}_all", f"total {col} so far", "amount", "events",
                    lambda e, col=col: e[col].sum().fill_null(0)))

    # --- onboarding: the first k days after signup ------------------------------------------
    for ev, n in names.items():
        add(Feature(f"onboard_n_{n}_{k}d", f"'{ev}' events in the first {k} days after signup",
                    "onboarding", "events",
                    lambda e, ev=ev: ((e.event == ev) & (e.tsec < k * _DAY)).sum(), k))
    add(Feature(f"onboard_active_days_{k}d", f"days with activity in the first {k} days after signup",
                "onboarding", "events",
                lambda e: (e.tsec // _DAY).nunique(where=e.act & (e.tsec < k * _DAY)), k))

    # --- gaps between active days -----------------------------------------------------------
    add(Feature("gap_mean_days", "average gap in days between consecutive active days", "gaps", "gaps",
                lambda g: g.gap.mean()))
    add(Feature("gap_max_days", "longest gap in days between consecutive active days", "gaps", "gaps",
                lambda g: g.gap.max()))

    # --- campaign history -------------------------------------------------------------------
    if has_campaigns:
        add(Feature("times_contacted", "recall messages received so far", "campaign", "campaigns",
                    lambda c: c.treated.sum(), fill=0))
        add(Feature("days_since_last_contact", "days since the last recall message (empty if never)",
                    "campaign", "campaigns",
                    lambda c: _days_since(c.sent_ts.epoch_seconds().max(where=c.treated), as_of_epoch)))
        add(Feature("responded_last_contact",
                    f"came back within {config.response_window_days} days of the last recall message "
                    "whose response window had closed (1/0, empty if none)",
                    "campaign", "campaigns",
                    lambda c: c.responded.argmax(c.sent_ts, where=c.closed).cast("int8")))
    return feats
