"""When each user churns: the churn *time* of a churn definition, for the multi-horizon model.

"Churned within ``h`` days" must not decrease as ``h`` grows. That needs a
churn time ``T`` per user and snapshot, and then "churned within h" is
``T < as_of + h``.

``inactivity``
    The existing label, "no activity in ``[as_of, as_of + L)``" (``L`` =
    ``horizon_days``), *decreases* with ``L``, so the horizon cannot simply
    be stretched. The churn time is the start of the first inactivity spell
    of at least ``L`` days that starts at or after ``as_of``::

        T = inf{ t >= as_of : no activity event in [t, t + L) }

    which is ``as_of`` itself when there is no activity in
    ``[as_of, as_of + L)`` (exactly the existing label: ``churned`` is
    ``T == as_of``), and otherwise the instant of the activity event after
    which the next one is at least ``L`` later (or never comes). Activity
    before ``as_of`` plays no part. A spell is seen in full only ``L`` days
    after it starts, so churn times are confirmed up to
    ``observed_until - L`` (:func:`confirmation_lag`); later ones are
    censored there. Returning after the spell does not undo it: "churned
    within h" is the first spell's start, monotone in ``h``.

``subscription``
    The end of the coverage spell holding ``as_of`` when no new subscription
    starts within the grace: "churned within h" is "coverage ends within h
    without renewal". Confirmed ``grace_days`` after the end.
``event``
    The first churn event at or after ``as_of``; confirmed at once.

The churn definitions live in ``churnml/features/labels.py``; the
``subscription`` and ``event`` churn times are theirs (``event_times``).
:func:`churn_times` is the one entry point the multi-horizon model uses: it
dispatches on the configured definition and implements ``inactivity`` here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import pandas as pd

from churnml.config import DatasetConfig, utc
from churnml.data import Dataset
from churnml.features.build import epoch_us, instant_us
from churnml.features.definitions import DAY_US

__all__ = ["CHURN_TS", "churn_times", "churn_times_frame", "confirmation_lag", "confirmed_until"]

#: The churn time column (UTC); missing when no churn was confirmed (censored).
CHURN_TS = "churn_ts"


def _definition(config: DatasetConfig) -> str:
    churn = getattr(config, "churn", None)
    return getattr(churn, "definition", "inactivity") if churn is not None else "inactivity"


def confirmation_lag(config: DatasetConfig) -> dt.timedelta:
    """How long after a churn time the data must run before it is confirmed.

    ``inactivity``: ``horizon_days`` (the spell must be seen in full);
    ``subscription``: the grace (no renewal within it); ``event``: none.
    """
    definition = _definition(config)
    if definition == "subscription":
        return dt.timedelta(days=config.churn.grace_days)
    if definition == "event":
        return dt.timedelta(0)
    return dt.timedelta(days=config.horizon_days)


def confirmed_until(ds: Dataset, until: dt.datetime | None = None) -> dt.datetime:
    """Churn times before this instant are final, for data that ends at ``until`` (default: the dataset's end)."""
    return utc(until or ds.observed_until) - confirmation_lag(ds.config)


def _activity_gaps(ds: Dataset, until: dt.datetime) -> ibis.Table:
    """Activity events after which the next one is at least ``L`` later or never came: ``user_id, us, nxt``."""
    ev = ds.events
    acts = ds.config.activity_events
    ev = ev.filter(ev.ts < ibis.literal(until))
    if acts:
        ev = ev.filter(ev.event.isin(acts))
    ev = ev.select("user_id", us=epoch_us(ds, ev.ts))
    ev = ev.mutate(nxt=ev.us.lead().over(group_by="user_id", order_by="us"))
    spell = ds.config.horizon_days * DAY_US
    return ev.filter(ev.nxt.isnull() | (ev.nxt - ev.us >= spell))


def churn_times(ds: Dataset, as_of: dt.datetime, *, until: dt.datetime | None = None,
                gaps: ibis.Table | None = None) -> ibis.Table:
    """The confirmed churn time of every user who has one at ``as_of``: ``user_id, churn_us``.

    Users without a row had no churn confirmed before :func:`confirmed_until`
    (censored there). Only activity in ``[as_of, until)`` decides it.

    Parameters
    ----------
    ds : Dataset
    as_of : datetime
    until : datetime, optional
        Take the data as it stood at this instant (events before it only);
        default the dataset's ``observed_until``.
    gaps : ibis.Table, optional
        The activity gaps for ``until`` already computed (when building many snapshots).

    Returns
    -------
    ibis.Table
        ``user_id``, ``churn_us`` (Unix microseconds of the churn time).

    Raises
    ------
    ImportError
        A ``subscription`` or ``event`` definition without ``churnml.features.labels``.
    """
    as_of, until = utc(as_of), utc(until or ds.observed_until)
    if _definition(ds.config) != "inactivity":
        # The subscription and event definitions give their own churn times (churnml.features.labels);
        # as the data stood at `until`, only those confirmed by then count.
        from churnml.features.labels import churn_definition

        t = churn_definition(ds.config).event_times(ds, as_of)
        t = t.filter(t[CHURN_TS] < ibis.literal(confirmed_until(ds, until)))
        return t.select("user_id", churn_us=epoch_us(ds, t[CHURN_TS]))
    g = _activity_gaps(ds, until) if gaps is None else gaps
    s, u, spell = instant_us(as_of), instant_us(until), ds.config.horizon_days * DAY_US
    # The gap that spans as_of, if it leaves [as_of, as_of + L) without activity: churned at as_of.
    at_once = g.filter((g.us < s) & ((g.nxt >= s + spell) | (g.nxt.isnull() & ibis.literal(s + spell <= u))))
    # Otherwise the last activity before the first long gap after as_of, once the gap is seen in full.
    later = g.filter((g.us >= s) & (g.nxt.notnull() | (g.us + spell <= u)))
    both = at_once.select("user_id", t=ibis.literal(s)).union(later.select("user_id", t=later.us))
    return both.group_by("user_id").aggregate(churn_us=both.t.min())


def churn_times_frame(ds: Dataset, snapshots: Sequence[dt.datetime], *,
                      until: dt.datetime | None = None) -> pd.DataFrame:
    """:func:`churn_times` for several snapshots: ``as_of``, ``user_id``, ``churn_ts`` (UTC) in pandas."""
    until = utc(until or ds.observed_until)
    gaps = _activity_gaps(ds, until).cache() if _definition(ds.config) == "inactivity" else None
    parts = []
    try:
        for s in sorted(utc(x) for x in snapshots):
            t = churn_times(ds, s, until=until, gaps=gaps).to_pandas()
            parts.append(pd.DataFrame({"as_of": pd.Timestamp(s), "user_id": t["user_id"].to_numpy(),
                                       CHURN_TS: pd.to_datetime(t["churn_us"].to_numpy(), unit="us", utc=True)}))
    finally:
        if gaps is not None:
            gaps.release()
    cols = {"as_of": pd.Series(dtype="datetime64[us, UTC]"), "user_id": pd.Series(dtype="int64"),
            CHURN_TS: pd.Series(dtype="datetime64[us, UTC]")}
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(cols)
