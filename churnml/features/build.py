"""Point-in-time feature tables, churn labels and stacked training sets.

Everything here is an ibis expression over a validated
:class:`~churnml.data.Dataset`, so the same definitions run on DuckDB (the
default, out of core) and on Spark. Time semantics (see DESIGN.md and the
README):

* features at ``as_of`` see only events with ``ts < as_of``, users who signed
  up before ``as_of`` and campaign exposures sent before ``as_of``;
* a window of ``w`` days is ``[as_of - w days, as_of)``, and a day is a
  calendar date, both in the dataset's time zone (``timezone``, UTC by
  default): an event exactly ``w`` days before ``as_of`` is inside, and on
  date-only data a 7-day window before a midnight ``as_of`` covers 7 dates;
* a user is eligible at ``as_of`` if signed up before it and active in
  ``[as_of - eligibility_days, as_of)``, unless the churn definition says
  otherwise (subscription: covered at ``as_of``);
* the label follows the dataset's churn definition
  (:mod:`churnml.features.labels`; by default churned = eligible and no
  activity event in ``[as_of, as_of + horizon)``). A label is only given once
  its window is fully observed.

All times are integer wall-clock microseconds (:mod:`churnml.clock`), read
once per source by :func:`churnml.data.open_dataset`.

How the log is read. One snapshot reads the events before ``as_of`` into two
small tables (per user and active date; per user and event type, for the users
the snapshot can keep) plus one pass per distinct count over its window.
Several snapshots (a training set) first condense the log once into one row per
user, event type and calendar day (stored in user order), and compute every
snapshot's tables from that in the same queries: the active dates once per user
(each snapshot sees the dates before it), the per-event table by joining each
user's rows only to the snapshots that keep the user (activity in the
eligibility window, or the given population), and each distinct count in one
pass that marks every event with a bit per snapshot counting it. So K snapshots
read the log a constant number of times, not K times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import ibis
import pyarrow as pa

from churnml.clock import DAY_US, int_div
from churnml.data import Dataset, condense
from churnml.exceptions import ContractError, DataProblem
from churnml.features.definitions import Feature, count_windows, feature_definitions, safe_name
from churnml.features.labels import CHURN_TS, LABEL, check_labelled, churn_definition
from churnml.features.labels import is_activity as _activity

__all__ = [
    "ID_COLUMNS",
    "LABEL",
    "FeaturePart",
    "FeatureSet",
    "Population",
    "build_features",
    "build_snapshot",
    "RESPONSE",
    "build_training_set",
    "build_uplift_set",
]

ID_COLUMNS = ("user_id", "as_of")
#: Features per level-2 aggregation query; smaller chunks lower peak memory, larger ones save passes.
_PIVOT_CHUNK = 24
#: Snapshots computed together from the condensed log; more share more work but join more rows at once.
_SNAPSHOTS_PER_PASS = 16

#: ``population(ds, snapshots) -> table of (user_id, k)``: who is in each snapshot (replaces the
#: default rule, recent activity). ``snapshots`` has ``k`` (index), ``asof`` (wall microseconds)
#: and ``as_of`` (the instant).
Population = Callable[[Dataset, ibis.Table], ibis.Table]
#: ``part(ds, snapshots) -> (features, table of user_id, k and the features' columns)``: an extra
#: per-user feature part, left-joined onto every snapshot (e.g. subscription features).
FeaturePart = Callable[[Dataset, ibis.Table], tuple[list[Feature], ibis.Table]]


@dataclass(frozen=True)
class FeatureSet:
    """The lazy feature table of one snapshot (or several) and the definitions behind it.

    Attributes
    ----------
    as_of : datetime
        The (last) snapshot instant.
    table : ibis.Table
        One row per user in the population (in no particular order):
        ``user_id``, ``as_of``, then the features.
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


def _definition_population(ds: Dataset, plan: _Plan) -> tuple[ibis.Table | None, bool]:
    """The churn definition's population (:mod:`churnml.features.labels`) for each snapshot.

    Returns ``(user_id, k)`` of the users it allows (None: no restriction of
    its own, the inactivity default) and whether the eligibility rule (recent
    activity) applies as well; when it does not, the table is the whole
    population, users without any event included.
    """
    d = churn_definition(ds.config)
    if d.name == "inactivity":
        return None, True
    per, requires_activity = [], True
    for k, s in enumerate(plan.instants):
        p = d.population(ds, s)
        requires_activity = p.requires_activity
        if p.users is not None:
            per.append(p.users.select("user_id").mutate(k=ibis.literal(k, "int64")))
    if not per:
        return None, requires_activity
    return (per[0] if len(per) == 1 else ibis.union(*per)), requires_activity


def _default_parts(ds: Dataset) -> list[FeaturePart]:
    """Extra feature parts the dataset brings (e.g. a subscriptions source); none by default."""
    return []


# --- snapshots ----------------------------------------------------------------------------------
@dataclass
class _Plan:
    """Snapshots built together: their instants, wall-clock microseconds and common time of day."""

    ds: Dataset
    instants: list[dt.datetime]
    cached: list[ibis.Table] = field(default_factory=list)

    def __post_init__(self):
        clock = self.ds.clock
        self.walls = [clock.wall_us(s) for s in self.instants]
        tods = {w % DAY_US for w in self.walls}
        assert len(tods) == 1, "snapshots built together share their time of day"
        self.tod = tods.pop()

    @property
    def single(self) -> bool:
        return len(self.instants) == 1

    def snaps(self) -> ibis.Table:
        """``k, asof, as_of``: one row per snapshot."""
        return ibis.memtable(pa.table({
            "k": pa.array(range(len(self.instants)), pa.int64()),
            "asof": pa.array(self.walls, pa.int64()),
            "as_of": pa.array(self.instants, pa.timestamp("us", tz="UTC")),
        }))

    def expand(self, t: ibis.Table, col: str, *, before: bool = True, span: int | None = None,
               within: ibis.Table | None = None) -> ibis.Table:
        """Rows of ``t`` joined to each snapshot they belong to, with ``k`` and ``asof``.

        ``before``: rows with ``t[col] < asof`` (the feature side); otherwise
        rows with ``asof <= t[col] < asof + span`` (a label window).
        ``within`` (``user_id, k, asof``) limits each user's rows to the
        snapshots listed for them (the feature side only).
        """
        if within is not None and not self.single:
            w = within.select(_uid="user_id", k="k", asof="asof")
            return t.join(w, [t.user_id == w._uid, t[col] < w.asof]).drop("_uid")
        if within is not None:
            t = t.semi_join(within, "user_id")
        if self.single:
            w = self.walls[0]
            cond = (t[col] < w) if before else ((t[col] >= w) & (t[col] < w + span))
            return t.filter(cond).mutate(k=ibis.literal(0, "int64"), asof=ibis.literal(w, "int64"))
        s = self.snaps().select("k", "asof")
        cond = (t[col] < s.asof) if before else ((t[col] >= s.asof) & (t[col] < s.asof + span))
        return t.join(s, cond)

    def base(self, users: ibis.Table) -> ibis.Table:
        """Users signed up before each snapshot, with ``k``, ``asof`` and ``as_of``."""
        if self.single:
            w = self.walls[0]
            return users.filter(users.signup_us < w).mutate(
                k=ibis.literal(0, "int64"), asof=ibis.literal(w, "int64"),
                as_of=ibis.literal(self.instants[0]))
        s = self.snaps()
        return users.join(s, users.signup_us < s.asof)

    def keep(self, t: ibis.Table) -> ibis.Table:
        if self.ds.con.name == "pyspark":
            # ibis's Spark cache compiles the query without registering the in-memory tables it reads
            # (the snapshots table): register them first, as an execute would.
            self.ds.con._run_pre_execute_hooks(t)
        t = t.cache()
        self.cached.append(t)
        return t


def _rows(ds: Dataset, plan: _Plan, hi: int, sum_cols: list[str]) -> tuple[ibis.Table, bool, bool]:
    """The rows the snapshot tables are aggregated from: whether condensed, and whether the build owns them.

    Snapshots at midnight (wall-clock) start from the table validation
    condensed (one row per user, event type and calendar day, with ``n``
    events, their ``first``/``last`` times and sums; ``t`` = the row's date).
    Others condense the log once for themselves, split at their time of day
    so that every window edge is a row edge; a single snapshot off midnight
    reads the events before it directly (``t`` = the event's time).
    """
    if plan.tod == 0 and ds.wall.condensed is not None:
        c = ds.wall.condensed
        return c.filter(c.t < hi), True, False
    ev = ds.wall.events_between(hi=hi)
    if plan.single:
        cols = {"user_id": ev.user_id, "event": ev.event, "t": ev.us, "first": ev.us, "last": ev.us}
        cols.update({f"s_{safe_name(c)}": ev[c] for c in sum_cols})
        return ev.select(**cols), False, True
    return plan.keep(_by_user(ds, condense(ev, sum_cols, plan.tod, ds.con.name))), True, True


def _by_user(ds: Dataset, t: ibis.Table) -> ibis.Table:
    """``t`` stored in user order on DuckDB: the joins to the snapshots keep that order, so their
    aggregations per user (and snapshot) meet each group's rows together instead of scattered over a
    table of millions of groups (twice as fast at 10M events). Spark gains nothing from it."""
    return t.order_by("user_id") if ds.con.name == "duckdb" else t


def _onboarding_day(ds: Dataset, users: ibis.Table) -> ibis.Table:
    """``user_id, sday, onb_end``: the signup date, and the end of the onboarding window (wall microseconds)."""
    sday = users.select("user_id", sday=int_div(users.signup_us, DAY_US, ds.con.name))
    # The onboarding window ends onboarding_days dates after the signup date (per user, not per event).
    return sday.mutate(onb_end=(sday.sday + ds.config.onboarding_days) * DAY_US)


def _per_event(ds: Dataset, plan: _Plan, rows: ibis.Table, condensed: bool, sday: ibis.Table,
               sum_cols: list[str], within: ibis.Table | None) -> ibis.Table:
    """Per user, snapshot and event type (cached); ``within`` limits it to the users each snapshot can keep."""
    cfg = ds.config

    def count(t, where=None):
        # A sum over no rows is empty, a count 0: the condensed path must give the count's 0.
        return t.n.sum(where=where).fill_null(0) if condensed else t.count(where=where)

    e = plan.expand(rows, "t", within=within).join(sday, "user_id")
    onb = e.t < e.onb_end
    sums = {}
    for col in sum_cols:
        c = f"s_{safe_name(col)}"
        sums[f"{c}_all"] = e[c].sum()
        sums.update({f"{c}_{w}": e[c].sum(where=e.t >= e.asof - w * DAY_US) for w in cfg.feature_windows_days})
    per_event = e.group_by("user_id", "k", "event").aggregate(
        asof=e.asof.max(),
        n_all=count(e),
        n_onb=count(e, onb),
        first_us=e["first"].min(),
        last_us=e["last"].max(),
        **{f"n_{w}": count(e, e.t >= e.asof - w * DAY_US) for w in count_windows(cfg)},
        **sums,
    )
    return plan.keep(per_event.mutate(act=_activity(ds, per_event)))


def _active_days(ds: Dataset, plan: _Plan, rows: ibis.Table):
    """Per user, snapshot and active calendar date (from the events alone, no join to users).

    Returns ``(days, dates)``: one snapshot's ``days`` table (cached) and
    None; for several, ``days(within)``, a function giving the (uncached)
    table limited to ``within``, and the cached :func:`_active_dates` behind it.
    """
    eng = ds.con.name
    a = rows.filter(_activity(ds, rows))
    if plan.single:
        a = plan.expand(a, "t")
        days = a.group_by("user_id", "k", d=int_div(a.t, DAY_US, eng)).aggregate(
            asof=a.asof.max(), tmin=a["first"].min(), tmax=a["last"].max())
        return plan.keep(days.mutate(gap=days.d.lead().over(group_by=["user_id", "k"], order_by="d") - days.d)), None
    dates = plan.keep(_active_dates(a, eng))
    return (lambda within=None, of=dates: _dates_before(plan, of, within)), dates


def _active_dates(a: ibis.Table, eng: str) -> ibis.Table:
    """Each user's active calendar dates over all the rows, once for every snapshot.

    ``d``, ``tmin``/``tmax`` (first/last activity on the date), ``t_lo`` (the
    date's first row: a snapshot sees the date if ``t_lo < asof``),
    ``tmax_early`` (the last activity in the date's first row; rows are split
    at the snapshots' time of day, so on a snapshot's own date that is what it
    sees) and ``next_d``/``next_t_lo`` (the user's next active date).
    """
    d = int_div(a.t, DAY_US, eng)
    dates = a.group_by("user_id", d=d).aggregate(
        tmin=a["first"].min(), tmax=a["last"].max(), t_lo=a.t.min(),
        tmax_early=a["last"].max(where=a.t == d * DAY_US))
    w = ibis.window(group_by="user_id", order_by="d")
    return dates.mutate(next_d=dates.d.lead().over(w), next_t_lo=dates.t_lo.lead().over(w))


def _dates_before(plan: _Plan, dates: ibis.Table, within: ibis.Table | None = None) -> ibis.Table:
    """The ``days`` stage table of every snapshot from :func:`_active_dates` (a join, not cached).

    A snapshot sees the dates whose first row is before it; on its own date
    (snapshots off midnight) only the row before it, so ``tmax`` is that row's;
    the gap to the next date is empty when the snapshot does not see that date.
    """
    e = plan.expand(dates, "t_lo", within=within)
    return e.select(
        "user_id", "k", "d", "asof", "tmin",
        tmax=(e.tmax >= e.asof).ifelse(e.tmax_early, e.tmax),
        gap=(e.next_t_lo < e.asof).ifelse(e.next_d - e.d, ibis.null("int64")))


def _join(wide: ibis.Table, part: ibis.Table, how: str = "inner") -> ibis.Table:
    keys = ["user_id", "k"]
    if how == "inner":
        return wide.join(part, keys)
    out = wide.left_join(part, keys)
    return out.drop(*[c for c in out.columns if c.endswith("_right")])


def _build(
    ds: Dataset,
    instants: Sequence[dt.datetime],
    *,
    event_types: Sequence[str] | None = None,
    max_inactive_days: int | None = None,
    label_span: int | None = None,
    population: Population | None = None,
    parts: Sequence[FeaturePart] = (),
    with_k: bool = False,
) -> FeatureSet:
    """The lazy feature table of snapshots sharing a time of day (optionally with churn labels).

    ``with_k`` keeps the snapshot index ``k`` after ``as_of``.
    """
    cfg = ds.config
    plan = _Plan(ds, list(instants))
    types = list(event_types) if event_types is not None else ds.event_types(before=max(plan.instants))
    feats = feature_definitions(cfg, types, has_campaigns=ds.campaigns is not None,
                                event_columns=tuple(ds.events.columns))
    stage = {s: [f for f in feats if f.stage == s]
             for s in ("per_event", "days", "onboarding_days", "distinct", "campaigns", "derived")}
    sum_cols = [c for c in cfg.sum_columns if c in ds.events.columns]
    users = ds.wall.users
    attrs = [c for c in users.columns if c not in ("user_id", "signup_us")]

    hi = max(plan.walls) + (label_span or 0)
    rows, condensed, owned = _rows(ds, plan, hi, sum_cols)
    sday = _onboarding_day(ds, users)
    given = None if population is None else population(ds, plan.snaps())
    restrict = None
    if given is None and max_inactive_days is None:
        restrict, requires_activity = _definition_population(ds, plan)
        if restrict is not None and not requires_activity:  # e.g. subscribers, with or without events
            given, restrict = restrict, None
    window = cfg.eligibility_days if max_inactive_days is None else max_inactive_days
    days, dates = _active_days(ds, plan, rows)
    temporary = [] if dates is None else [dates]
    # Each user's rows go only to the snapshots that can keep them (the given population, or activity
    # in the window), so the per-event table and its pivots hold no one dropped later.
    d = days() if dates is not None else days
    if given is None:
        within = d.filter(d.tmax >= d.asof - window * DAY_US).select("user_id", "k", "asof").distinct()
    else:
        within = given.select("user_id", "k").distinct().join(plan.snaps().select("k", "asof"), "k")
    within = plan.keep(within)
    temporary.append(within)
    if dates is not None:
        days = days(within)
    per_event = _per_event(ds, plan, rows, condensed, sday, sum_cols, within)
    temporary.append(per_event)
    if dates is None:
        temporary.append(days)
    onb = days.join(sday, "user_id")
    onb = onb.filter(onb.d < onb.sday + cfg.onboarding_days)

    # Level 2: narrow per-user tables, each its own cached query so no single aggregation holds
    # every feature's state at once (that was the memory peak on large logs; see BENCHMARKS.md).
    def pivot(t: ibis.Table, fs: list[Feature]) -> ibis.Table:
        return t.group_by("user_id", "k").aggregate(**{f.name: f.expr(t) for f in fs})

    first, *rest = [stage["per_event"][i:i + _PIVOT_CHUNK] for i in range(0, len(stage["per_event"]), _PIVOT_CHUNK)]
    agg = pivot(per_event, first)
    if given is None:
        agg = agg.filter(agg.days_since_last_activity <= window)
        if restrict is not None:  # e.g. less users whose latest event is a churn event
            agg = agg.semi_join(restrict, ["user_id", "k"])
        agg = plan.keep(agg)
        pop = agg.select("user_id", "k")
    else:
        pop = plan.keep(given.select("user_id", "k").distinct())
        agg = plan.keep(agg.semi_join(pop, ["user_id", "k"]))
    # Rows limited to ``within`` already hold only the population (unless a definition narrows it).
    kept = per_event if within is not None and restrict is None else per_event.semi_join(pop, ["user_id", "k"])
    inner = [agg] + [plan.keep(pivot(kept, chunk)) for chunk in rest]
    inner.append(plan.keep(pivot(days, stage["days"])))

    optional = []
    optional.append(plan.keep(pivot(onb, stage["onboarding_days"])))
    for f in stage["distinct"]:
        optional.append(_distinct(ds, plan, f))
    if stage["campaigns"]:
        optional.append(_campaign_history(ds, plan, stage["campaigns"]))
    extra_feats: list[Feature] = []
    for part in [*parts, *_default_parts(ds)]:
        fs, table = part(ds, plan.snaps())
        extra_feats += fs
        optional.append(plan.keep(table))
    if ds.subscriptions is not None:
        fs, table = _subscription_part(ds, plan)
        extra_feats += fs
        optional.append(table)
    labels = None if label_span is None else _labels(ds, plan, rows, label_span)
    # The condensed tables are consumed; free them before the final join.
    for t in [*temporary, rows] if condensed and owned else temporary:
        t.release()
        plan.cached.remove(t)

    base = plan.base(users)
    base = base.select("user_id", "k", "as_of", *attrs, tenure_days=(base.asof - base.signup_us) / DAY_US)
    wide = _join(base, pop) if given is not None else base
    for part in inner:
        wide = _join(wide, part, "left" if given is not None else "inner")
    for part in optional:
        wide = _join(wide, part, "left")
    feats = feats + extra_feats
    fills = {f.name: wide[f.name].fill_null(f.fill) for f in feats if f.fill is not None}
    wide = wide.mutate(**fills) if fills else wide
    wide = wide.mutate(**{f.name: f.expr(wide) for f in stage["derived"]})

    cols = ["user_id", "as_of", *(["k"] if with_k else []), *(f.name for f in feats), "tenure_days", *attrs]
    if labels is not None:
        listed, unlisted, label_cols = labels
        wide = _join(wide, listed, "left")
        wide = wide.mutate(**{LABEL: wide._label.fill_null(unlisted).cast("int8")})
        cols += [*label_cols, LABEL]
    return FeatureSet(as_of=plan.instants[-1], table=wide.select(*cols), features=feats,
                      attributes=attrs, cached=plan.cached)


def _distinct(ds: Dataset, plan: _Plan, f: Feature) -> ibis.Table:
    """A distinct count per snapshot. It reads only the events it counts: filtered in a WHERE
    (not only in the aggregate) and, for a window, by time, so the engine skips the rest of the log.
    One snapshot applies the feature's own expression; several share one pass (:func:`_distinct_together`)."""
    if not plan.single and f.column is not None:
        return plan.keep(_distinct_together(ds, plan, f))
    per = []
    for k, w in enumerate(plan.walls):
        lo = None if f.window_days is None else w - f.window_days * DAY_US
        rows = ds.wall.events_between(lo=lo, hi=w)
        rows = rows.mutate(k=ibis.literal(k, "int64"), asof=ibis.literal(w, "int64"))
        rows = rows if f.rows is None else rows.filter(f.rows(rows))
        per.append(rows.group_by("user_id", "k").aggregate(**{f.name: f.expr(rows)}))
    out = per[0] if len(per) == 1 else ibis.union(*per)
    return plan.keep(out)


def _distinct_together(ds: Dataset, plan: _Plan, f: Feature) -> ibis.Table:
    """Every snapshot's distinct count of ``f.column`` in one pass over the log.

    Each event gets a bit mask of the snapshots that count it (bit ``k``: it
    is before snapshot ``k`` and ``f.rows`` holds at that snapshot's ``asof``);
    the masks are OR-ed per user and value, and a value counts for snapshot
    ``k`` when bit ``k`` is set. Two aggregations, no join to the snapshots,
    so the work does not grow with their number (at most 62 per pass).
    """
    assert len(plan.walls) < 63, "one bit per snapshot in an int64 mask"
    lo = None if f.window_days is None else min(plan.walls) - f.window_days * DAY_US
    ev = ds.wall.events_between(lo=lo, hi=max(plan.walls))
    zero = ibis.literal(0, "int64")
    bits = [ibis.literal(1 << k, "int64") for k in range(len(plan.walls))]
    mask = zero
    for k, w in enumerate(plan.walls):
        cond = ev.us < w
        if f.rows is not None:
            cond &= f.rows(ev, asof=ibis.literal(w, "int64"))
        mask = mask + cond.ifelse(bits[k], zero)
    ev = ev.select("user_id", v=ev[f.column], m=mask)
    ev = ev.filter(ev.m != 0)
    if ds.con.name == "duckdb":
        m = ev.m.bit_or()
    else:  # ibis compiles no bit_or for Spark: OR the bits one by one (max of each bit, added up)
        m = sum((ev.m & bit).max() for bit in bits)
    per_value = ev.group_by("user_id", "v").aggregate(m=m)
    counts = per_value.group_by("user_id").aggregate(
        **{f"c{k}": ((per_value.m & bit) != 0).sum() for k, bit in enumerate(bits)})
    per = [counts.filter(counts[f"c{k}"] > 0).select(
        "user_id", k=ibis.literal(k, "int64"), **{f.name: counts[f"c{k}"].cast("int64")})
        for k in range(len(plan.walls))]
    return ibis.union(*per)


def _responses(ds: Dataset, exposures: ibis.Table, until: int) -> ibis.Table:
    """``user_id, campaign_id, sent_us, hit``: exposures followed by activity within the response window.

    ``exposures`` holds ``user_id, campaign_id, sent_us``; only activity before
    ``until`` (wall microseconds) is read. The join's build side is the
    exposures (small); events before the earliest of them cannot be responses.
    """
    span = ds.config.response_window_days * DAY_US
    judged = exposures.select(uid="user_id", cid="campaign_id", sent="sent_us").distinct().cache()
    first = judged.sent.min().to_pyarrow().as_py()
    acts = ds.wall.events_between(lo=first, hi=until) if first is not None else ds.wall.events_between(hi=until)
    acts = acts.filter(_activity(ds, acts)).select("user_id", "us")
    hits = judged.join(acts, [judged.uid == acts.user_id, acts.us >= judged.sent, acts.us < judged.sent + span])
    hits = hits.select(user_id="uid", campaign_id="cid", sent_us="sent").distinct().mutate(hit=ibis.literal(True))
    return hits, judged


def _campaign_history(ds: Dataset, plan: _Plan, feats: list[Feature]) -> ibis.Table:
    """Per user and snapshot: campaign features from the exposures sent before it (cached)."""
    span = ds.config.response_window_days * DAY_US
    c = ds.wall.campaigns.select("user_id", "campaign_id", "sent_us", "treated")
    # A response is activity in [sent, sent + window). Only windows closed by as_of are judged, and
    # those end before as_of, so only events before as_of are used.
    closed = c.filter(c.treated & (c.sent_us + span <= max(plan.walls)))
    hits, judged = _responses(ds, closed, max(plan.walls))
    c = plan.expand(c, "sent_us")
    c = c.mutate(closed=c.treated & (c.sent_us + span <= c.asof))
    c = c.left_join(hits, ["user_id", "campaign_id", "sent_us"])
    c = c.mutate(responded=c.hit.fill_null(False))
    out = plan.keep(c.group_by("user_id", "k").aggregate(**{f.name: f.expr(c) for f in feats}))
    judged.release()
    return out


def _subscription_part(ds: Dataset, plan: _Plan) -> tuple[list[Feature], ibis.Table]:
    """Subscription features (:mod:`churnml.features.subscriptions`) of each snapshot: ``user_id, k, sub_*``."""
    from churnml.features.subscriptions import subscription_features

    per, feats = [], []
    for k, s in enumerate(plan.instants):
        feats, t = subscription_features(ds.subscriptions, s, grace_days=ds.config.churn.grace_days,
                                         epoch_us=lambda ts: epoch_us(ds, ts))
        per.append(t.mutate(k=ibis.literal(k, "int64")))
    return feats, plan.keep(per[0] if len(per) == 1 else ibis.union(*per))


def _labels(ds: Dataset, plan: _Plan, rows: ibis.Table, span: int) -> tuple[ibis.Table, int, list[str]]:
    """Each snapshot's labels by the churn definition: ``(user_id, k, _label[, churn_ts])``, the label of
    users not listed, and the extra label columns (``churn_ts`` for definitions with a churn event).

    ``inactivity`` reads the activity in ``[as_of, as_of + horizon)`` from the
    rows the features were built from (condensed, for several snapshots);
    the other definitions ask :mod:`churnml.features.labels` per snapshot.
    """
    d = churn_definition(ds.config)
    if d.name == "inactivity":
        if plan.single:
            w = plan.walls[0]
            fut = ds.wall.events_between(lo=w, hi=w + span).mutate(k=ibis.literal(0, "int64"))
            fut = fut.filter(_activity(ds, fut))
        else:
            fut = plan.expand(rows.filter(_activity(ds, rows)), "t", before=False, span=span)
        listed = fut.select("user_id", "k").distinct().mutate(_label=ibis.literal(0, "int8"))
        return plan.keep(listed), 1, []
    per, unlisted = [], 0
    extra = [CHURN_TS] if d.has_event_time else []
    for k, s in enumerate(plan.instants):
        listed, unlisted = d.outcomes(ds, s)
        per.append(listed.select("user_id", *extra, k=ibis.literal(k, "int64"), _label=listed[LABEL]))
    return plan.keep(per[0] if len(per) == 1 else ibis.union(*per)), unlisted, extra


def _check_instant(ds: Dataset, s: dt.datetime) -> None:
    if ds.clock.is_ambiguous(s):
        raise ContractError([DataProblem(
            "snapshots", None, 1,
            f"as_of {s.isoformat()} falls in an hour that daylight saving repeats or skips in "
            f"{ds.clock.name}; its windows would be ambiguous, so choose another time of day")])


def _groups(ds: Dataset, instants: Sequence[dt.datetime]) -> list[list[dt.datetime]]:
    """Snapshots that can be built together: same time of day, at most ``_SNAPSHOTS_PER_PASS`` each."""
    by_tod: dict[int, list[dt.datetime]] = {}
    for s in sorted(instants):
        _check_instant(ds, s)
        by_tod.setdefault(ds.clock.wall_us(s) % DAY_US, []).append(s)
    return [g[i:i + _SNAPSHOTS_PER_PASS] for g in by_tod.values() for i in range(0, len(g), _SNAPSHOTS_PER_PASS)]


def build_features(
    ds: Dataset,
    as_of: dt.datetime,
    *,
    event_types: Sequence[str] | None = None,
    max_inactive_days: int | None = None,
    population: Population | None = None,
    parts: Sequence[FeaturePart] = (),
) -> FeatureSet:
    """Build the point-in-time feature table at ``as_of`` (lazily).

    The events before ``as_of`` are condensed twice (per user and event type;
    per user and active date) into cached tables, and every feature is an
    aggregate over those (see :mod:`churnml.features.definitions`). Call
    :meth:`FeatureSet.release` when done with the table.

    Parameters
    ----------
    ds : Dataset
        Validated dataset.
    as_of : datetime
        Snapshot instant (naive = wall-clock time in the dataset's time zone).
    event_types : sequence of str, optional
        Event types for per-event features; defaults to those found before
        ``as_of`` (or the configured list). Pass the list a model was trained
        with when scoring.
    max_inactive_days : int, optional
        Keep users whose last activity is at most this many days before
        ``as_of``. By default the churn definition's population (see
        :mod:`churnml.features.labels`: with ``inactivity``, activity within
        ``eligibility_days``). Recall campaigns reach users lapsed for longer,
        so their training rows widen it (and skip the definition's rule).
    population : callable, optional
        ``population(ds, snapshots) -> (user_id, k)``: who is in the snapshot,
        instead of the definition's population (``max_inactive_days`` is then
        unused). Their behaviour features are empty (counts 0) if they have no
        events.
    parts : sequence of callable
        Extra feature parts ``part(ds, snapshots) -> (features, table)``,
        left-joined on ``user_id, k``.

    Returns
    -------
    FeatureSet

    Raises
    ------
    ContractError
        If ``as_of``'s wall-clock time is ambiguous (a daylight-saving hour).
    """
    as_of = ds.clock.instant(as_of)
    _check_instant(ds, as_of)
    return _build(ds, [as_of], event_types=event_types, max_inactive_days=max_inactive_days,
                  population=population, parts=parts)


def _collect(fs: FeatureSet) -> pa.Table:
    try:
        # Sorted here rather than in the engine: an ORDER BY over the wide result roughly doubles
        # the peak memory of the final query on large logs.
        return fs.table.to_pyarrow().sort_by([("as_of", "ascending"), ("user_id", "ascending")])
    finally:
        fs.release()


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
    as_of = ds.clock.instant(as_of)
    _check_instant(ds, as_of)
    if labels:
        check_labelled(ds, as_of)
    span = ds.config.horizon_days * DAY_US if labels else None
    fs = _build(ds, [as_of], event_types=event_types, label_span=span)
    return _collect(fs), fs


def build_training_set(
    ds: Dataset,
    snapshots: Sequence[dt.datetime],
    *,
    event_types: Sequence[str] | None = None,
    progress: Callable[[dt.datetime], None] | None = None,
) -> tuple[pa.Table, FeatureSet]:
    """Stack labelled snapshots into one training table, in shared scans of the log.

    Event types are fixed once (from the config or the data before the last
    snapshot) so every snapshot has the same columns. Snapshots at the same
    time of day are built together (up to 16 at a time) from one condensed
    copy of the log; the table equals the one separate builds would give.

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
    instants = sorted(ds.clock.instant(s) for s in snapshots)
    for s in instants:  # fail before any work if a label window is incomplete
        check_labelled(ds, s)
    span = ds.config.horizon_days * DAY_US
    types = list(event_types) if event_types is not None else ds.event_types(before=instants[-1])
    parts, fs = [], None
    for group in _groups(ds, instants):
        fs = _build(ds, group, event_types=types, label_span=span)
        parts.append(_collect(fs))
        if progress:
            for s in group:
                progress(s)
    table = pa.concat_tables(parts, promote_options="permissive")
    if len(parts) > 1:
        table = table.sort_by([("as_of", "ascending"), ("user_id", "ascending")])
    return table, fs


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
    Sends at the same time of day are built together in shared scans.

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
    clock = ds.clock
    span = ds.config.response_window_days * DAY_US
    sends = ds.campaigns.select("campaign_id", "sent_ts").distinct().to_pyarrow().to_pylist()
    end = clock.wall_us(ds.observed_until)
    closed = sorted({clock.instant(r["sent_ts"]) for r in sends
                     if clock.wall_us(clock.instant(r["sent_ts"])) + span <= end})
    if not closed:
        raise ContractError([DataProblem(
            "campaigns", "sent_ts", len(sends),
            f"no campaign's {ds.config.response_window_days}-day response window ends before the data ends "
            f"({ds.observed_until.isoformat()})")])
    types = list(event_types) if event_types is not None else ds.event_types(before=closed[-1])
    camp = ds.wall.campaigns
    exposures = camp.filter(camp.sent_us.isin([clock.wall_us(s) for s in closed]))
    hits, judged = _responses(ds, exposures, max(clock.wall_us(s) for s in closed) + span)
    hits = hits.cache()
    out, fs = [], None
    try:
        for group in _groups(ds, closed):
            fs = _build(ds, group, event_types=types, max_inactive_days=10**6, with_k=True)
            snaps = _Plan(ds, group).snaps().select("k", "asof")
            c = exposures.join(snaps, exposures.sent_us == snaps.asof)
            c = c.select("campaign_id", "user_id", "k", "sent_us", "channel", treated=c.treated.cast("int8"))
            c = c.left_join(hits, ["user_id", "campaign_id", "sent_us"])
            c = c.select("campaign_id", "user_id", "k", **{RESPONSE: c.hit.fill_null(False).cast("int8")},
                         channel="channel", treated="treated")
            t = fs.table.join(c, ["user_id", "k"])
            cols = ["campaign_id", "user_id", "as_of", *fs.columns, "channel", "treated", RESPONSE]
            out.append(_collect(FeatureSet(fs.as_of, t.select(*cols), fs.features, fs.attributes, fs.cached)))
            if progress:
                for s in group:
                    progress(s)
    finally:
        hits.release()
        judged.release()
    table = pa.concat_tables(out, promote_options="permissive")
    table = table.sort_by([("as_of", "ascending"), ("campaign_id", "ascending"), ("user_id", "ascending")])
    return table, fs



# --- helpers other modules (retention, behaviours) read timestamps with --------------------------
@ibis.udf.scalar.builtin(name="epoch_us")
def _duckdb_epoch_us(ts: ibis.expr.datatypes.Timestamp(timezone="UTC")) -> ibis.expr.datatypes.int64:  # type: ignore[empty-body]
    """DuckDB's own microseconds-since-epoch; ibis's epoch_seconds casts through local time (slow)."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _spark_epoch_us(ts: ibis.expr.datatypes.Timestamp(timezone="UTC")) -> ibis.expr.datatypes.int64:  # type: ignore[empty-body]
    """Spark's microseconds-since-epoch."""


def instant_us(t: dt.datetime) -> int:
    """Unix microseconds of an aware datetime, exactly (no float rounding of the microseconds)."""
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def epoch_us(ds: Dataset, ts: ibis.Value) -> ibis.Value:
    """Unix microseconds of a UTC timestamp column, with the backend's native function."""
    return (_spark_epoch_us if ds.con.name == "pyspark" else _duckdb_epoch_us)(ts)
