"""Point-in-time feature tables, churn labels and stacked training sets.

Everything here is an ibis expression over a validated
:class:`~churnml.data.Dataset`, so the same definitions run on DuckDB (the
default, out of core) and on Spark. Time semantics (see DESIGN.md):

* features at ``as_of`` see only events with ``ts < as_of``, users who signed
  up before ``as_of`` and campaign exposures sent before ``as_of``;
* a user is eligible at ``as_of`` if signed up before it and active in
  ``[as_of - eligibility_days, as_of)``, unless the churn definition says
  otherwise (subscription: covered at ``as_of``);
* the label follows the dataset's churn definition
  (:mod:`churnml.features.labels`; by default churned = eligible and no
  activity event in ``[as_of, as_of + horizon)``). A label is only given once
  its window is fully observed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import ibis
import ibis.expr.datatypes as dtypes
import pyarrow as pa

from churnml.config import utc
from churnml.data import Dataset
from churnml.exceptions import ContractError, DataProblem
from churnml.features.definitions import DAY_US, Feature, count_windows, feature_definitions, safe_name
from churnml.features.labels import LABEL, Population, check_labelled, churn_definition, churn_labels
from churnml.features.labels import is_activity as _activity

__all__ = [
    "ID_COLUMNS",
    "LABEL",
    "FeatureSet",
    "build_features",
    "build_snapshot",
    "RESPONSE",
    "build_training_set",
    "build_uplift_set",
]

ID_COLUMNS = ("user_id", "as_of")
#: Features per level-2 aggregation query; smaller chunks lower peak memory, larger ones save passes.
_PIVOT_CHUNK = 24


@dataclass(frozen=True)
class FeatureSet:
    """The lazy feature table of one snapshot and the definitions behind it.

    Attributes
    ----------
    as_of : datetime
    table : ibis.Table
        One row per eligible user (in no particular order): ``user_id``,
        ``as_of``, then the features.
    features : list of Feature
        Behavioural feature definitions, in column order.
    attributes : list of str
        User attribute columns copied from the users table.
    """

    as_of: dt.datetime
    table: ibis.Table
    features: list[Feature]
    attributes: list[str]
    cached: list[ibis.Table] = field(default_factory=list, repr=False)

    def release(self) -> None:
        """Drop the engine-side intermediate tables behind ``table``."""
        for t in self.cached:
            t.release()

    @property
    def columns(self) -> list[str]:
        """Feature column names (behaviour, tenure, then attributes), without ids."""
        return [f.name for f in self.features] + ["tenure_days"] + self.attributes


@ibis.udf.scalar.builtin(name="epoch_us")
def _duckdb_epoch_us(ts: dtypes.Timestamp(timezone="UTC")) -> dtypes.int64:  # type: ignore[empty-body]
    """DuckDB's own microseconds-since-epoch; ibis's epoch_seconds casts through local time (slow)."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _spark_epoch_us(ts: dtypes.Timestamp(timezone="UTC")) -> dtypes.int64:  # type: ignore[empty-body]
    """Spark's microseconds-since-epoch."""


def instant_us(t: dt.datetime) -> int:
    """Unix microseconds of an aware datetime, exactly (no float rounding of the microseconds)."""
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def epoch_us(ds: Dataset, ts: ibis.Value) -> ibis.Value:
    """Unix microseconds of a UTC timestamp column, with the backend's native function."""
    return (_spark_epoch_us if ds.con.name == "pyspark" else _duckdb_epoch_us)(ts)


def build_features(
    ds: Dataset,
    as_of: dt.datetime,
    *,
    event_types: Sequence[str] | None = None,
    max_inactive_days: int | None = None,
) -> FeatureSet:
    """Build the point-in-time feature table at ``as_of`` (lazily).

    The events before ``as_of`` are condensed twice (per user and event type;
    per user and active day) into cached tables, and every feature is an
    aggregate over those (see :mod:`churnml.features.definitions`). Call
    :meth:`FeatureSet.release` when done with the table.

    Parameters
    ----------
    ds : Dataset
        Validated dataset.
    as_of : datetime
        Snapshot instant (naive = UTC).
    event_types : sequence of str, optional
        Event types for per-event features; defaults to those found before
        ``as_of`` (or the configured list). Pass the list a model was trained
        with when scoring.
    max_inactive_days : int, optional
        Keep users whose last activity is at most this many days before
        ``as_of``. By default the churn definition's population (see
        :mod:`churnml.features.labels`: with ``inactivity``, activity within
        ``eligibility_days``). Recall campaigns reach users lapsed for longer,
        so their training rows widen it.

    Returns
    -------
    FeatureSet
    """
    as_of = utc(as_of)
    cfg = ds.config
    ep = instant_us(as_of)
    cut = ibis.literal(as_of)
    types = list(event_types) if event_types is not None else ds.event_types(before=as_of)
    feats = feature_definitions(
        cfg, types, as_of_us=ep, has_campaigns=ds.campaigns is not None,
        event_columns=tuple(ds.events.columns),
    )
    stage = {s: [f for f in feats if f.stage == s]
             for s in ("per_event", "days", "onboarding_days", "distinct", "campaigns", "derived")}

    users = ds.users.filter(ds.users.signup_ts < cut)
    attrs = [c for c in users.columns if c not in ("user_id", "signup_ts")]
    signup_us = epoch_us(ds, users.signup_ts)
    ev = ds.events.filter(ds.events.ts < cut)
    ev = ev.mutate(us=epoch_us(ds, ev.ts))
    ev = ev.mutate(d=(ibis.literal(ep) - ev.us) // DAY_US)
    e = ev.join(users.select("user_id", signup_us=signup_us), "user_id")
    e = e.mutate(tsec=e.us - e.signup_us, act=_activity(ds, e))
    onb = e.tsec < cfg.onboarding_days * DAY_US

    # Level 1: two passes over the events, cached (they are small: users x types, users x days).
    sums = {}
    for col in cfg.sum_columns:
        if col in ds.events.columns:
            c = safe_name(col)
            sums[f"s_{c}_all"] = e[col].sum()
            sums.update({f"s_{c}_{w}": e[col].sum(where=e.d < w) for w in cfg.feature_windows_days})
    per_event = e.group_by("user_id", "event").aggregate(
        n_all=e.count(),
        n_onb=e.count(where=onb),
        first_us=e.us.min(),
        last_us=e.us.max(),
        **{f"n_{w}": e.count(where=e.d < w) for w in count_windows(cfg)},
        **sums,
    )
    per_event = per_event.mutate(act=_activity(ds, per_event)).cache()
    # Active days come from the events alone (no join to users): the onboarding days, which need
    # the signup, are their own aggregate below.
    days = ev.filter(_activity(ds, ev)).select("user_id", "d").distinct().cache()

    # Level 2: narrow per-user tables, each its own cached query so no single aggregation holds
    # every feature's state at once (that was the memory peak on large logs; see BENCHMARKS.md).
    first, *rest = [stage["per_event"][i:i + _PIVOT_CHUNK]
                    for i in range(0, len(stage["per_event"]), _PIVOT_CHUNK)]
    agg = per_event.group_by("user_id").aggregate(**{f.name: f.expr(per_event) for f in first})
    window = cfg.eligibility_days if max_inactive_days is None else max_inactive_days
    pop = Population(None, True) if max_inactive_days is not None else churn_definition(cfg).population(ds, as_of)
    if pop.requires_activity:
        agg = agg.filter(agg.days_since_last_activity <= window)
    if pop.users is not None:
        agg = agg.semi_join(pop.users, "user_id")
    agg = agg.cache()
    parts = [agg] + [
        per_event.semi_join(agg, "user_id").group_by("user_id")
        .aggregate(**{f.name: f.expr(per_event) for f in chunk}).cache()
        for chunk in rest
    ]

    # The gap (in days) from each active day to the user's previous one.
    gaps = days.mutate(gap=days.d.lead().over(group_by="user_id", order_by="d") - days.d)
    parts.append(gaps.group_by("user_id").aggregate(**{f.name: f.expr(gaps) for f in stage["days"]}).cache())
    optional = []
    onb_days = e.filter(onb & e.act).select("user_id", od=e.tsec // DAY_US).distinct()
    optional.append(onb_days.group_by("user_id").aggregate(
        **{f.name: f.expr(onb_days) for f in stage["onboarding_days"]}).cache())
    # Distinct counts cannot be condensed. Each reads only the events it counts: filtered in a
    # WHERE (not only in the aggregate) and, for a window, on the raw timestamp, so the engine
    # skips the rest of the log. The features' own expressions still apply both exactly.
    for f in stage["distinct"]:
        rows = ev if f.window_days is None else ev.filter(
            ev.ts > ibis.literal(as_of - dt.timedelta(days=f.window_days)))
        rows = rows if f.rows is None else rows.filter(f.rows(rows))
        optional.append(rows.group_by("user_id").aggregate(**{f.name: f.expr(rows)}).cache())
    if stage["campaigns"]:
        history, judged = _campaign_history(ds, ev, cut, stage["campaigns"])
        judged.release()
        optional.append(history)
    if ds.subscriptions is not None:
        from churnml.features.subscriptions import subscription_features

        sub_feats, sub_table = subscription_features(ds.subscriptions, as_of, grace_days=cfg.churn.grace_days,
                                                     epoch_us=lambda ts: epoch_us(ds, ts))
        feats = feats + sub_feats
        optional.append(sub_table.cache())
    # The condensed tables are consumed; free them before the final join.
    per_event.release()
    days.release()
    cached = parts + optional

    base = users.select("user_id", *attrs, tenure_days=(ibis.literal(ep) - signup_us) / DAY_US)
    if not pop.requires_activity:
        # The population is given outright (subscribers): users without any event keep their row.
        base = base.semi_join(pop.users, "user_id")
        parts, optional = [], parts + optional
    wide = base
    for part in parts:
        wide = wide.join(part, "user_id")
    for part in optional:
        wide = _left(wide, part)

    fills = {f.name: wide[f.name].fill_null(f.fill) for f in feats if f.fill is not None}
    wide = wide.mutate(**fills) if fills else wide
    wide = wide.mutate(**{f.name: f.expr(wide) for f in stage["derived"]})

    ordered = [f.name for f in feats] + ["tenure_days"] + attrs
    table = wide.select("user_id", ibis.literal(as_of).name("as_of"), *ordered)
    return FeatureSet(as_of=as_of, table=table, features=feats, attributes=attrs, cached=cached)


def _left(wide: ibis.Table, other: ibis.Table) -> ibis.Table:
    return wide.left_join(other, "user_id").drop("user_id_right")


def _campaign_history(
    ds: Dataset, ev: ibis.Table, cut, feats: list[Feature]
) -> tuple[ibis.Table, ibis.Table]:
    """Per-user campaign features (cached) and the cached table of judged exposures."""
    win = ibis.interval(days=ds.config.response_window_days)
    c = ds.campaigns.filter(ds.campaigns.sent_ts < cut)
    c = c.select("user_id", "campaign_id", "sent_ts", "treated")
    c = c.mutate(closed=c.treated & (c.sent_ts + win <= cut))
    # A response is activity in [sent_ts, sent_ts + window). Only closed windows are judged, and
    # those end before as_of, so only events before as_of are used. The join's build side is the
    # closed exposures (small); events before the earliest of them cannot be responses.
    judged = c.filter(c.closed).select(uid="user_id", cid="campaign_id", sent="sent_ts").cache()
    first = judged.sent.min().to_pyarrow().as_py()
    acts = ev.filter(_activity(ds, ev))
    if first is not None:
        acts = acts.filter(acts.ts >= ibis.literal(first))
    acts = acts.select("user_id", "ts")
    hits = judged.join(acts, [judged.uid == acts.user_id, acts.ts >= judged.sent, acts.ts < judged.sent + win])
    hits = hits.select(user_id="uid", campaign_id="cid", sent_ts="sent").distinct().mutate(hit=ibis.literal(True))
    c = c.left_join(hits, ["user_id", "campaign_id", "sent_ts"])
    c = c.mutate(responded=c.hit.fill_null(False), sent_us=epoch_us(ds, c.sent_ts))
    return c.group_by("user_id").aggregate(**{f.name: f.expr(c) for f in feats}).cache(), judged


def build_snapshot(
    ds: Dataset, as_of: dt.datetime, *, labels: bool = False, event_types: Sequence[str] | None = None
) -> tuple[pa.Table, FeatureSet]:
    """Compute one snapshot's feature table (and labels) into memory.

    Returns
    -------
    table : pyarrow.Table
        Sorted by ``user_id``; with a ``churned`` column (0/1) if ``labels``,
        and ``churn_ts`` (the churn event's instant, empty if none) when the
        churn definition has churn events.
    feature_set : FeatureSet
    """
    fs = build_features(ds, as_of, event_types=event_types)
    t = fs.table
    if labels:
        t = churn_labels(ds, fs.as_of, t)
    try:
        # Sorted here rather than in the engine: an ORDER BY over the wide result roughly doubles
        # the peak memory of the final query on large logs.
        return t.to_pyarrow().sort_by("user_id"), fs
    finally:
        fs.release()


def build_training_set(
    ds: Dataset,
    snapshots: Sequence[dt.datetime],
    *,
    event_types: Sequence[str] | None = None,
    progress: Callable[[dt.datetime], None] | None = None,
) -> tuple[pa.Table, FeatureSet]:
    """Stack labelled snapshots into one training table.

    Event types are fixed once (from the config or the data before the last
    snapshot) so every snapshot has the same columns.

    Parameters
    ----------
    ds : Dataset
    snapshots : sequence of datetime
        Each must have a fully observed label window.
    event_types : sequence of str, optional
    progress : callable, optional
        Called with each snapshot after it is built.

    Returns
    -------
    table : pyarrow.Table
        Rows sorted by ``as_of`` then ``user_id``.
    feature_set : FeatureSet
        Definitions of the last snapshot (identical columns for all).
    """
    if not snapshots:
        raise ContractError([DataProblem("snapshots", None, 0, "no snapshot instants given")])
    instants = sorted(utc(s) for s in snapshots)
    for s in instants:  # fail before any work if a label window is incomplete
        check_labelled(ds, s)
    types = list(event_types) if event_types is not None else ds.event_types(before=instants[-1])
    parts, fs = [], None
    for s in instants:
        table, fs = build_snapshot(ds, s, labels=True, event_types=types)
        parts.append(table)
        if progress:
            progress(s)
    return pa.concat_tables(parts, promote_options="permissive"), fs


#: The outcome column of recall training sets: activity within the response window after the send.
RESPONSE = "responded"


def build_uplift_set(
    ds: Dataset,
    *,
    event_types: Sequence[str] | None = None,
    progress: Callable[[dt.datetime], None] | None = None,
) -> tuple[pa.Table, FeatureSet]:
    """One row per campaign exposure: features as of the send, ``treated`` and ``responded``.

    For every send instant in the campaigns table whose response window the
    data fully covers, features are built as of ``sent_ts`` (only events before
    it; the exposure itself is not in the campaign history) for the users the
    campaign reached, however long they had been inactive. ``responded`` is 1 if
    the user had activity in ``[sent_ts, sent_ts + response_window_days)``.

    Returns
    -------
    table : pyarrow.Table
        ``campaign_id``, ``user_id``, ``as_of`` (= ``sent_ts``), the features,
        ``channel`` (the arm: ``control`` or a channel), ``treated`` (0/1) and
        ``responded`` (0/1); sorted by send, campaign, user.
    feature_set : FeatureSet

    Raises
    ------
    ContractError
        No campaigns table, or no campaign whose response window has closed.
    """
    if ds.campaigns is None:
        raise ContractError([DataProblem("campaigns", None, 0,
                                         "no campaigns table configured; uplift needs randomised campaigns")])
    win = dt.timedelta(days=ds.config.response_window_days)
    sends = ds.campaigns.select("campaign_id", "sent_ts").distinct().to_pyarrow().to_pylist()
    closed = sorted({utc(r["sent_ts"]) for r in sends if utc(r["sent_ts"]) + win <= ds.observed_until})
    if not closed:
        raise ContractError([DataProblem(
            "campaigns", "sent_ts", len(sends),
            f"no campaign's {ds.config.response_window_days}-day response window ends before the data ends "
            f"({ds.observed_until.isoformat()})")])
    types = list(event_types) if event_types is not None else ds.event_types(before=closed[-1])
    parts, fs = [], None
    ev = ds.events
    for sent in closed:
        fs = build_features(ds, sent, event_types=types, max_inactive_days=10**6)
        c = ds.campaigns.filter(ds.campaigns.sent_ts == ibis.literal(sent))
        c = c.select("campaign_id", "user_id", "channel", treated=c.treated.cast("int8"))
        after = ev.filter((ev.ts >= ibis.literal(sent)) & (ev.ts < ibis.literal(sent + win)) & _activity(ds, ev))
        hit = after.select("user_id").distinct().mutate(hit=ibis.literal(1))
        t = fs.table.join(c, "user_id").left_join(hit, "user_id").drop("user_id_right")
        t = t.mutate(**{RESPONSE: t.hit.fill_null(0).cast("int8")}).drop("hit")
        cols = ["campaign_id", "user_id", "as_of", *fs.columns, "channel", "treated", RESPONSE]
        try:
            parts.append(t.select(*cols).to_pyarrow().sort_by([("campaign_id", "ascending"),
                                                                ("user_id", "ascending")]))
        finally:
            fs.release()
        if progress:
            progress(sent)
    return pa.concat_tables(parts, promote_options="permissive"), fs
