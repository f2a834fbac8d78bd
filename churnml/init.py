"""``churnml init``: a commented dataset config chosen from the data (issue 14, item 5).

A new user has an event log and no idea which eligibility, horizon, windows
or snapshot cadence fit it; the defaults fit a daily app, and on a purchase
log they scored fewer than one customer in ten. :func:`init_config` reads the
log with DuckDB, infers which column plays which role (user id, timestamp,
event type, amount, quantity, item) from names and types, validates the
result against the data contract, measures the log (span, timestamp
granularity, exact duplicates, the gaps between a user's active days) and
chooses every number from those measurements:

``horizon_days``
    The smallest round horizon (7, 14, 30, 60, 90, ... days) within which at
    least 90% of returns happen (gaps between consecutive active days), cut
    down if the log is too short for train, validation and test snapshots
    whose label windows do not overlap. A horizon the business asks for
    (``horizon_days=``) is taken as given.
``eligibility_days``
    The gap within which 99% of returns happen, rounded up: users lapsed for
    longer almost never come back, so they are already lost, and everyone
    else is scored.
``feature_windows_days``
    Round windows from about the median gap (a typical user's rhythm) to the
    95th percentile, plus one longer, at most five.
``onboarding_days``
    The round window at or below the median gap, at least 7 days.
``snapshots``
    Every ``horizon / 4`` days rounded up to whole weeks (more often gives
    near-copies of the same label window), from when users have a horizon of
    history to the last instant whose label window the log covers.
``duplicates``
    ``keep`` for date-only timestamps (two identical purchases on one date
    are real), ``drop`` for finer ones (an identical event at the same
    second is a double send).

The file has three sections, ``dataset``, ``training`` and ``scoring``
(each command reads its own), so ``churnml train churn -c dataset.yaml`` and
``churnml score -c dataset.yaml`` work on it directly. Each choice is
explained in a comment with the figures behind it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import ibis

from churnml.config import DatasetConfig, ScoreConfig, SourcesConfig, TrainConfig, utc
from churnml.exceptions import ConfigError, ContractError, DataProblem, OutputExistsError
from churnml.features.definitions import safe_name

__all__ = ["InitResult", "Mapping", "SYNONYMS", "choose_settings", "infer_mapping", "init_config",
           "render_config"]

#: Column names that play each role, by preference, compared lower-case without
#: separators ("Customer ID" = "customer_id" = "customerid").
SYNONYMS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "userid", "user", "uid", "customer_id", "customer", "cust_id", "client_id",
                "account_id", "member_id", "visitor_id", "person_id", "buyer_id", "subscriber_id",
                "player_id", "profile_id", "device_id", "id"),
    "ts": ("ts", "timestamp", "event_time", "event_timestamp", "event_ts", "datetime", "time", "date",
           "event_date", "occurred_at", "created_at", "logged_at", "invoicedate", "invoice_date",
           "order_date", "order_time", "purchase_date", "purchase_time", "transaction_date",
           "transaction_time", "server_time", "client_time", "time_stamp"),
    "event": ("event", "event_type", "event_name", "action", "action_type", "activity", "activity_type",
              "interaction", "interaction_type", "behavior", "behaviour", "type", "name"),
    "amount": ("amount", "revenue", "value", "total", "total_price", "sales", "spend", "order_value",
               "dollar_value", "payment", "gmv", "net_amount", "price", "unitprice", "unit_price"),
    "quantity": ("quantity", "qty", "units", "number_of_cds", "n_items", "items", "count"),
    "item_id": ("item_id", "item", "product_id", "product", "sku", "stockcode", "stock_code", "article_id",
                "track_id", "song_id", "content_id", "video_id", "sku_id", "itemid", "productid"),
}
USERS_SYNONYMS: dict[str, tuple[str, ...]] = {
    "user_id": SYNONYMS["user_id"],
    "signup_ts": ("signup_ts", "signup_time", "signup_date", "signup", "registered_at", "registration_date",
                  "created_at", "join_date", "joined_at", "first_seen", "install_date", "installed_at"),
}
SUBSCRIPTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "user_id": SYNONYMS["user_id"],
    "start": ("start", "start_ts", "start_date", "started_at", "period_start", "begin", "valid_from"),
    "end": ("end", "end_ts", "end_date", "ended_at", "period_end", "cancelled_at", "canceled_at", "valid_to"),
    "plan": ("plan", "plan_id", "plan_name", "tier", "product"),
    "price": ("price", "amount", "fee", "mrr"),
    "period_days": ("period_days", "billing_period_days", "billing_days", "period"),
}
_LADDER = (1, 7, 14, 30, 60, 90, 180, 365)
_HORIZONS = (7, 14, 30, 60, 90, 120, 180, 270, 365)
_MIN_HISTORY_DAYS = 28
_MAX_EVENT_TYPES = 30


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


@dataclass(frozen=True)
class Mapping:
    """Which source column plays which role, and why.

    Attributes
    ----------
    columns : dict
        Contract name -> source column, for the roles that were found.
    kinds : dict
        Source column -> DuckDB type.
    event_type : str, optional
        The constant event type when the log has no event column.
    notes : dict
        Role -> how it was recognised (for the config's comments).
    """

    columns: dict[str, str]
    kinds: dict[str, str]
    event_type: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def rename(self, roles: tuple[str, ...]) -> dict[str, str]:
        """The ``columns`` entry of a source: contract name -> source column, where they differ."""
        return {r: c for r, c in self.columns.items() if r in roles and r != c}


def _reader(path: str) -> str:
    quoted = path.replace("'", "''")
    low = path.lower().rstrip("*")
    if low.endswith(".parquet") or low.endswith(".pq"):
        return f"read_parquet('{quoted}')"
    return f"read_csv('{quoted}', header=true)"


def _describe(con, path: str, label: str) -> dict[str, str]:
    if "*" not in path and not Path(path).is_file():
        raise ContractError([DataProblem(label, None, 0, f"file not found (looked for {path})")])
    if "*" not in path and Path(path).stat().st_size == 0:
        raise ContractError([DataProblem(label, None, 0, "file is empty (0 bytes)")])
    try:
        rows = con.sql(f"DESCRIBE SELECT * FROM {_reader(path)}").fetchall()
    except Exception as exc:  # noqa: BLE001 - duckdb raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ContractError([DataProblem(label, None, 0, f"cannot read ({first})")]) from None
    return {r[0]: str(r[1]).upper() for r in rows}


def _is_time(kind: str) -> bool:
    return kind.startswith("TIMESTAMP") or kind == "DATE"


def _is_numeric(kind: str) -> bool:
    return kind.split("(")[0] in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                                  "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL"}


def _parses_as_time(con, path: str, col: str) -> bool:
    q = col.replace('"', '""')
    share = con.sql(f'SELECT avg((TRY_CAST("{q}" AS TIMESTAMPTZ) IS NOT NULL)::INT) FROM '
                    f'(SELECT "{q}" FROM {_reader(path)} WHERE "{q}" IS NOT NULL LIMIT 1000)').fetchone()[0]
    return share is not None and share >= 0.99


def _distinct(con, path: str, col: str) -> int:
    q = col.replace('"', '""')
    return int(con.sql(f'SELECT approx_count_distinct("{q}") FROM {_reader(path)}').fetchone()[0])


def infer_mapping(path: str | Path, *, con=None, synonyms: dict[str, tuple[str, ...]] | None = None,
                  required: tuple[str, ...] = ("user_id", "ts")) -> Mapping:
    """Infer which column of a Parquet/CSV table plays which role.

    Names are matched against :data:`SYNONYMS` (case, spaces and underscores
    ignored; earlier synonyms win), then checked by type: the timestamp must
    be a date/timestamp or text that parses as one, amounts and quantities
    numeric, the event column text with few distinct values. Roles no name
    matches fall back on types: the only timestamp column; for the user, an
    ``...id`` column with the most distinct values.

    Parameters
    ----------
    path : path
        A Parquet or CSV file (or a glob).
    con : duckdb connection, optional
    synonyms : dict, optional
        Role -> names; default :data:`SYNONYMS` (events).
    required : tuple of str
        Roles that must be found.

    Returns
    -------
    Mapping
        Without an event column (and with events synonyms), ``event_type`` is
        ``"purchase"`` if an amount or quantity column was found, else ``"event"``.

    Raises
    ------
    ContractError
        The file cannot be read, or a required role has no column; one line.
    """
    import duckdb

    con = con or duckdb.connect()
    path = str(path)
    label = Path(path).name
    kinds = _describe(con, path, label)
    synonyms = synonyms or SYNONYMS
    by_norm = {}
    for c in kinds:
        by_norm.setdefault(_norm(c), c)
    columns: dict[str, str] = {}
    notes: dict[str, str] = {}
    taken: set[str] = set()

    def ok(role: str, col: str) -> bool:
        kind = kinds[col]
        if role in ("ts", "signup_ts", "start", "end"):
            return _is_time(kind) or (kind == "VARCHAR" and _parses_as_time(con, path, col))
        if role in ("amount", "quantity", "price", "period_days"):
            return _is_numeric(kind)
        if role == "event":
            return kind == "VARCHAR" and _distinct(con, path, col) <= 1000
        return True

    for role, names in synonyms.items():
        for name in names:
            col = by_norm.get(_norm(name))
            if col is not None and col not in taken and ok(role, col):
                columns[role] = col
                taken.add(col)
                notes[role] = f"{col!r} ({kinds[col].lower()}), by name"
                break
    for role in ("ts", "signup_ts", "start"):
        if role in synonyms and role not in columns:
            times = [c for c in kinds if c not in taken and _is_time(kinds[c])]
            if len(times) == 1:
                columns[role] = times[0]
                taken.add(times[0])
                notes[role] = f"{times[0]!r} ({kinds[times[0]].lower()}), the only timestamp column"
    if "user_id" not in columns:
        ids = [c for c in kinds if c not in taken and _norm(c).endswith("id")]
        if ids:
            best = max(ids, key=lambda c: _distinct(con, path, c))
            columns["user_id"] = best
            taken.add(best)
            notes["user_id"] = f"{best!r} ({kinds[best].lower()}), the id column with the most distinct values"
    missing = [r for r in required if r not in columns]
    if missing:
        what = {"user_id": "user id", "ts": "timestamp", "signup_ts": "signup time", "start": "start time"}
        raise ContractError([DataProblem(label, None, 0, (
            f"no column recognised as the {' or '.join(what.get(m, m) for m in missing)} "
            f"(columns found: {', '.join(f'{c} ({k.lower()})' for c, k in kinds.items())}); rename it to "
            f"{' / '.join(missing)}"))])
    event_type = None
    if synonyms is SYNONYMS and "event" not in columns:
        event_type = "purchase" if ("amount" in columns or "quantity" in columns) else "event"
        notes["event"] = (f"no event column: every row is one {event_type!r} "
                          + ("(the log has amounts or quantities)" if event_type == "purchase" else ""))
    return Mapping(columns=columns, kinds=kinds, event_type=event_type, notes=notes)


# --------------------------------------------------------------------------------------------
# Measuring the log and choosing the numbers


@dataclass(frozen=True)
class LogFacts:
    """What :func:`measure` found in a validated log (the figures behind every choice)."""

    n_events: int
    n_users: int
    first_ts: dt.datetime
    last_ts: dt.datetime
    date_only: bool
    sub_second: bool
    n_duplicates: int
    event_counts: dict[str, int]
    gaps: dict[float, int | None]
    n_gaps: int
    last_activity_days: list[float]


def measure(ds) -> LogFacts:
    """Measure a validated dataset: span, timestamp granularity, duplicates, event types, return gaps.

    Parameters
    ----------
    ds : churnml.data.Dataset

    Returns
    -------
    LogFacts
        ``gaps`` maps a share (0.25 ... 0.99) to the gap in days within which
        that share of returns happen (gaps between a user's consecutive active
        calendar days, UTC); ``last_activity_days`` is, per user, the days from
        the last activity to the end of the log.
    """
    from churnml.features.build import epoch_us, instant_us
    from churnml.features.definitions import DAY_US
    from churnml.retention import activity_gaps, gap_quantile

    ev = ds.events
    us = epoch_us(ds, ev.ts)
    stats = ev.aggregate(n=ev.count(), first=ev.ts.min(), last=ev.ts.max(),
                         off_midnight=(us % DAY_US != 0).sum(),
                         sub_second=(us % 1_000_000 != 0).sum()).to_pyarrow().to_pylist()[0]
    counts = ev.group_by("event").aggregate(k=ev.count()).order_by(ibis.desc("k")).to_pyarrow().to_pylist()
    dist, summary = activity_gaps(ds)
    gaps = {q: gap_quantile(dist, q) for q in (0.25, 0.5, 0.75, 0.9, 0.95, 0.99)}
    acts = ds.config.activity_events
    a = ev.filter(ev.event.isin(acts)) if acts else ev
    last = a.group_by("user_id").aggregate(last_us=epoch_us(ds, a.ts).max()).to_pyarrow()
    end_us = instant_us(ds.observed_until)
    lapse = sorted((end_us - u) / DAY_US for u in last.column("last_us").to_pylist())
    n_dup = getattr(ds, "n_duplicates", 0) or 0
    return LogFacts(
        n_events=int(stats["n"]), n_users=int(ds.n_users), first_ts=utc(stats["first"]), last_ts=utc(stats["last"]),
        date_only=stats["off_midnight"] == 0, sub_second=stats["sub_second"] > 0, n_duplicates=int(n_dup),
        event_counts={str(r["event"]): int(r["k"]) for r in counts}, gaps=gaps, n_gaps=int(summary["n_gaps"]),
        last_activity_days=lapse,
    )


def _round_up(days: float, ladder=_LADDER) -> int:
    return next((x for x in ladder if x >= days), ladder[-1])


def _round_down(days: float, ladder=_LADDER) -> int:
    return max([x for x in ladder if x <= days] or [ladder[0]])


def _eligibility_round(days: float) -> int:
    """Whole weeks up to 8 weeks, then whole 30-day months."""
    days = max(days, 7)
    return 7 * math.ceil(days / 7) if days <= 56 else 30 * math.ceil(days / 30)


def _share_within(values: list[float], days: float) -> float:
    return sum(v <= days for v in values) / len(values) if values else 0.0


@dataclass(frozen=True)
class Choice:
    """One chosen setting and the sentence that explains it."""

    value: object
    why: str


def _median_billing_days(subscriptions) -> float | None:
    """Median billing period of a subscriptions table (days): ``period_days`` if given, else closed rows' length."""
    if subscriptions is None:
        return None
    cols = subscriptions.columns
    if "period_days" in cols:
        v = subscriptions.period_days.cast("float64")
        got = subscriptions.aggregate(m=v.median()).to_pyarrow().to_pylist()[0]["m"]
        if got is not None and got > 0:
            return round(float(got), 1)
    closed = subscriptions.filter(subscriptions.end.notnull())
    days = (closed.end.epoch_seconds() - closed.start.epoch_seconds()) / 86400
    got = closed.aggregate(m=days.median()).to_pyarrow().to_pylist()[0]["m"]
    return round(float(got), 1) if got is not None and got > 0 else None


def _snapshot_plan(first: dt.datetime, last_ts: dt.datetime, horizon: int, every: int):
    """Snapshot instants (midnights UTC) from ``first + max(horizon, 28 d)`` to the last labellable one."""
    day0 = dt.datetime.combine(first.date(), dt.time(), tzinfo=dt.UTC)
    start = day0 + dt.timedelta(days=max(horizon, _MIN_HISTORY_DAYS))
    end_label = last_ts + dt.timedelta(microseconds=1) - dt.timedelta(days=horizon)
    last = dt.datetime.combine(end_label.date(), dt.time(), tzinfo=dt.UTC)
    out, t = [], last
    while t >= start:
        out.append(t)
        t -= dt.timedelta(days=every)
    return sorted(out)


def _splits(snaps, horizon) -> bool:
    from churnml.exceptions import TrainingDataError
    from churnml.models.split import time_split

    try:
        s = time_split(snaps, horizon)
    except TrainingDataError:
        return False
    return len(s.train) >= 2


def choose_settings(facts: LogFacts, *, horizon_days: int | None = None, billing_days: float | None = None,
                    grace_days: int = 0) -> dict[str, Choice]:
    """Choose horizon, eligibility, windows, onboarding, snapshots and duplicate handling from the figures.

    Parameters
    ----------
    facts : LogFacts
    horizon_days : int, optional
        The horizon the business asks about; chosen from the return gaps if omitted.
    billing_days : float, optional
        The typical billing period of a subscription product (median days): when
        given, the horizon is the round one that holds a whole period (every
        subscriber's next renewal falls inside it), not one from the return gaps.
    grace_days : int
        Days a label needs after the horizon (a subscription's grace): snapshots
        stop early enough that the data covers the whole label window.

    Returns
    -------
    dict
        ``horizon_days``, ``eligibility_days``, ``feature_windows_days``,
        ``onboarding_days``, ``snapshots`` (a dict for :class:`SnapshotRule`),
        ``duplicates`` and ``max_staleness_hours``, each a :class:`Choice`.

    Raises
    ------
    ConfigError
        The log is too short for train, validation and test snapshots.
    """
    g = facts.gaps
    span = (facts.last_ts - facts.first_ts).total_seconds() / 86400
    out: dict[str, Choice] = {}
    p50, p90, p95, p99 = g[0.5], g[0.9], g[0.95], g[0.99]
    seen = f"{facts.n_gaps:,} returns (gaps between a user's consecutive active days)"

    def every_for(h: int) -> int:
        return 7 * max(1, math.ceil(h / 4 / 7))

    def plan(h: int, every: int):
        return _snapshot_plan(facts.first_ts, facts.last_ts, h + grace_days, every)

    def fits(snaps, h: int) -> bool:
        return _splits(snaps, h + grace_days)

    if horizon_days is not None:
        h = horizon_days
        snaps = plan(h, every_for(h))
        if not fits(snaps, h) and not fits(snaps := plan(h, 7), h):
            raise ConfigError(f"the log spans {span:.0f} days: too short for a {h}-day horizon (train, validation "
                              f"and test snapshots need non-overlapping label windows, about {4 * h + 28} days); "
                              "ask for a shorter --horizon-days")
        why = f"horizon {h} d: as asked (--horizon-days)"
        if p90 is not None:
            why += f"; for reference, 90% of {seen} happen within {p90} days"
    else:
        if billing_days is not None:
            wanted = _round_up(max(billing_days, 7), _HORIZONS)
        else:
            wanted = _round_up(max(p90 or 7, 7), _HORIZONS)
        h = None
        for cand in [x for x in _HORIZONS if x <= wanted][::-1]:
            snaps = plan(cand, every_for(cand))
            if fits(snaps, cand) or fits(snaps := plan(cand, 7), cand):
                h = cand
                break
        if h is None:
            raise ConfigError(f"the log spans {span:.0f} days: too short to train and test a churn model "
                              f"(a 7-day horizon needs about {4 * 7 + 28 + grace_days} days of events)")
        if billing_days is not None:
            why = (f"horizon {h} d: the median billing period is {billing_days:g} days, so every subscriber on it "
                   "renews (or not) within the horizon")
        elif p90 is not None:
            why = f"horizon {h} d: 90% of {seen} happen within {p90} days"
        else:
            why = f"horizon {h} d: no user has returned after a gap yet, so the shortest round horizon"
        if h < wanted:
            why += (f" ({wanted} d would fit the gaps, but the log's {span:.0f} days leave no room for train, "
                    f"validation and test snapshots with non-overlapping {wanted}-day label windows)")
    every = (snaps[1] - snaps[0]).days if len(snaps) > 1 else every_for(h)
    out["horizon_days"] = Choice(h, why)
    out["snapshots"] = Choice(
        {"start": snaps[0].date().isoformat(), "end": snaps[-1].date().isoformat(), "every_days": every},
        f"{len(snaps)} snapshots every {every} d ({'a quarter of the horizon, in whole weeks' if every == every_for(h) else 'weekly, so that enough fit'}): "
        f"from {max(h, _MIN_HISTORY_DAYS)} days after the first event ({facts.first_ts.date()}), so users have "
        f"history, to the last instant whose {h + grace_days}-day label window"
        + (f" (horizon and {grace_days}-day grace)" if grace_days else "")
        + f" the log covers (it ends {facts.last_ts.date()})")

    if p99 is not None:
        elig = _eligibility_round(p99)
        cover = _share_within(facts.last_activity_days, elig)
        cover30 = _share_within(facts.last_activity_days, 30)
        why = (f"eligibility {elig} d: 99% of {seen} happen within {p99} days, so users lapsed for longer are "
               f"already lost; at the end of the log it covers {cover:.0%} of the {facts.n_users:,} users "
               f"(30 days would cover {cover30:.0%})")
    else:
        elig = _eligibility_round(max(span, 30))
        why = f"eligibility {elig} d: no returns to measure yet, so the whole {span:.0f}-day log"
    out["eligibility_days"] = Choice(elig, why)

    lo = 1 if (p50 or 1) <= 1 else _round_down(max(p50 or 7, 7))
    hi = _round_up(p95 or 30)
    wins = [w for w in _LADDER if lo <= w <= hi]
    longer = [w for w in _LADDER if w > hi and w <= max(span / 2, hi)]
    wins += longer[:1]
    if len(wins) > 5:
        keep = {wins[0], wins[-1]}
        step = (len(wins) - 1) / 4
        keep |= {wins[round(i * step)] for i in range(1, 4)}
        wins = sorted(keep)
    out["feature_windows_days"] = Choice(
        wins, f"windows {wins} d: from about the median gap between active days ({p50} d) to past the "
              f"95th percentile ({p95} d), so they cover a typical user's rhythm and a long lapse")
    onb = max(7, _round_down(p50 or 7))
    out["onboarding_days"] = Choice(onb, f"onboarding {onb} d: the round window at or below the median gap "
                                         f"({p50} d), at least a week")
    if facts.date_only:
        out["duplicates"] = Choice("keep", (
            f"duplicates keep: every timestamp is at midnight (date-only), so identical rows are separate events "
            f"on the same date (two identical purchases); {facts.n_duplicates:,} such rows"))
    else:
        grain = "sub-second" if facts.sub_second else "second-level"
        out["duplicates"] = Choice("drop", (
            f"duplicates drop: timestamps are {grain}, so an identical row at the same instant is a double send; "
            f"{facts.n_duplicates:,} such rows"))
    daily = 48 if facts.date_only else 24
    out["max_staleness_hours"] = Choice(daily, (
        f"max_staleness_hours {daily}: " + ("date-only events sit at midnight, so the day's export is a day old "
                                            "when scored" if facts.date_only else "a nightly export")))
    return out


# --------------------------------------------------------------------------------------------
# Writing the config


@dataclass(frozen=True)
class InitResult:
    """What ``churnml init`` wrote and chose."""

    path: Path
    mapping: Mapping
    facts: LogFacts
    choices: dict[str, Choice]
    config: dict


def _dump(obj) -> str:
    # JSON is YAML's flow style: one line per value, strings quoted, null for None.
    return json.dumps(obj, ensure_ascii=False)


def _comment(text: str, indent: int) -> list[str]:
    import textwrap

    pad = " " * indent
    return [f"{pad}# {line}" for line in textwrap.wrap(text, 100 - indent)]


def render_config(doc: dict, comments: dict[str, str], header: list[str]) -> str:
    """YAML text of a nested config with a comment above each commented key.

    ``comments`` maps a dotted key (``dataset.horizon_days``) to its comment.
    """
    lines = [f"# {h}" for h in header]

    def walk(d: dict, prefix: str, indent: int):
        for k, v in d.items():
            key = f"{prefix}{k}"
            if key in comments:
                lines.extend(_comment(comments[key], indent))
            pad = " " * indent
            if isinstance(v, dict) and v and any(f"{key}.{kk}" in comments or isinstance(vv, dict)
                                                 for kk, vv in v.items()):
                lines.append(f"{pad}{k}:")
                walk(v, f"{key}.", indent + 2)
            else:
                lines.append(f"{pad}{k}: {_dump(v)}")

    walk(doc, "", 0)
    return "\n".join(lines) + "\n"


def _source(path: str, out_dir: Path, mapping: Mapping, roles: tuple[str, ...]) -> dict:
    src: dict = {"path": os.path.relpath(Path(path).resolve(), out_dir)}
    cols = mapping.rename(roles)
    if cols:
        src["columns"] = cols
    if mapping.event_type is not None and "event" in roles:
        src["event_type"] = mapping.event_type
    return src


def init_config(
    events: str | Path,
    out: str | Path = "dataset.yaml",
    *,
    users: str | Path | None = None,
    subscriptions: str | Path | None = None,
    horizon_days: int | None = None,
    force: bool = False,
    name: str | None = None,
    log=lambda _: None,
) -> InitResult:
    """Read a log, infer the column mapping, choose every window from the data and write a commented config.

    Parameters
    ----------
    events : path
        The event log (Parquet or CSV, or a glob).
    out : path
        The config file to write (atomically). Its ``dataset``, ``training``
        and ``scoring`` sections are read by ``churnml features``/``validate``,
        ``train churn`` and ``score``.
    users, subscriptions : path, optional
        The users table (signup times and attributes) and a subscriptions table.
    horizon_days : int, optional
        The churn horizon asked for; chosen from the return gaps if omitted.
    force : bool
        Replace an existing ``out``.
    name : str, optional
        Dataset name; default the events file's stem.
    log : callable
        Called with progress lines.

    Returns
    -------
    InitResult

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``force`` is false (checked first).
    ContractError
        A table cannot be read, a role has no column, or the data breaks the contract.
    ConfigError
        The log is too short to train and test a model.
    """
    import duckdb

    from churnml.data import open_dataset
    from churnml.io import write_text

    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the config file to write")
    out_dir = out.resolve().parent
    con = duckdb.connect()
    events = str(events)
    mapping = infer_mapping(events, con=con)
    log("columns: " + ", ".join(f"{r} <- {c}" for r, c in mapping.columns.items())
        + (f"; every row is a {mapping.event_type!r} event" if mapping.event_type else ""))
    ev_roles = ("user_id", "ts", "event")
    sources = {"events": _source(events, out_dir, mapping, ev_roles)}
    comments = {"dataset.sources.events": "columns inferred: " + "; ".join(
        f"{r} = {n}" for r, n in mapping.notes.items())}
    umap = None
    if users is not None:
        umap = infer_mapping(str(users), con=con, synonyms=USERS_SYNONYMS, required=("user_id", "signup_ts"))
        sources["users"] = _source(str(users), out_dir, umap, ("user_id", "signup_ts"))
        comments["dataset.sources.users"] = "columns inferred: " + "; ".join(f"{r} = {n}" for r, n in umap.notes.items())
    if subscriptions is not None:
        if "subscriptions" not in SourcesConfig.model_fields:
            raise ConfigError("this version of churnml has no subscriptions source")
        smap = infer_mapping(str(subscriptions), con=con, synonyms=SUBSCRIPTION_SYNONYMS, required=("user_id", "start"))
        sources["subscriptions"] = _source(str(subscriptions), out_dir, smap, tuple(SUBSCRIPTION_SYNONYMS))
        comments["dataset.sources.subscriptions"] = "columns inferred: " + "; ".join(
            f"{r} = {n}" for r, n in smap.notes.items())

    sums = [mapping.columns[r] for r in ("amount", "quantity") if r in mapping.columns]
    item = mapping.columns.get("item_id")
    draft = {"name": name or re.sub(r"[^0-9A-Za-z_-]+", "_", Path(events.rstrip("*")).stem) or "dataset",
             "sources": sources}
    # Validated against the data contract with absolute paths (the config's own are relative to it).
    absolute = {k: {**v, "path": str((out_dir / v["path"]).resolve())} for k, v in sources.items()}
    cfg = DatasetConfig.model_validate({**draft, "sources": absolute, "sum_columns": sums})
    ds = open_dataset(cfg)
    facts = measure(ds)
    log(f"{facts.n_events:,} events of {facts.n_users:,} users from {facts.first_ts.date()} to "
        f"{facts.last_ts.date()}; {facts.n_gaps:,} returns measured")
    billing = grace = None
    if subscriptions is not None:
        from churnml.config import ChurnConfig

        grace = ChurnConfig.model_fields["grace_days"].default
        billing = _median_billing_days(ds.subscriptions)
        if billing is not None:
            log(f"subscriptions: median billing period {billing:g} days")
    ch = choose_settings(facts, horizon_days=horizon_days, billing_days=billing, grace_days=grace or 0)

    types = list(facts.event_counts)
    shown = ", ".join(f"{e} {n:,}" for e, n in list(facts.event_counts.items())[:12])
    dataset = dict(draft)
    comments["dataset.event_types"] = (
        f"event types by count: {shown}" + (f" (the {_MAX_EVENT_TYPES} commonest of {len(types)} get per-event "
                                            "features)" if len(types) > _MAX_EVENT_TYPES else ""))
    dataset["event_types"] = sorted(types[:_MAX_EVENT_TYPES])
    comments["dataset.activity_events"] = ("which event types count as activity for eligibility and labels: "
                                           "null = all; list them to leave out passive events (a push received)")
    dataset["activity_events"] = None
    for key in ("eligibility_days", "horizon_days", "snapshots", "feature_windows_days", "onboarding_days"):
        dataset[key] = ch[key].value
        comments[f"dataset.{key}"] = ch[key].why
    if "duplicates" in DatasetConfig.model_fields:
        dataset["duplicates"] = ch["duplicates"].value
        comments["dataset.duplicates"] = ch["duplicates"].why
    if "timezone" in DatasetConfig.model_fields:
        dataset["timezone"] = "UTC"
        comments["dataset.timezone"] = ("timestamps without an offset are read in this zone, and days are its "
                                        "calendar dates: set your business's zone (e.g. Europe/Paris)")
    if "churn" in DatasetConfig.model_fields and subscriptions is not None:
        dataset["churn"] = {"definition": "subscription", "grace_days": grace}
        comments["dataset.churn"] = (
            "a subscriptions table was given: churn = coverage ending within the horizon with no new subscription "
            f"within {grace} days (grace: a late renewal or a plan switch is not churn); labels need the horizon "
            "plus the grace")
    if sums:
        dataset["sum_columns"] = sums
        comments["dataset.sum_columns"] = "numeric columns summed per window (spend and quantity features)"
    if item:
        dataset["distinct_counts"] = [{"name": "distinct_items", "column": item,
                                       "description": f"distinct {item} so far"}]
        comments["dataset.distinct_counts"] = f"{item!r} looks like an item id: distinct items so far"
    DatasetConfig.model_validate({**dataset, "sources": absolute})  # what we write must validate

    base = out.name
    training = {"kind": "churn", "dataset": base}
    comments["training"] = ("`churnml train churn -c " + base + "` reads this section (defaults: 30 Optuna "
                            "trials, at most 10 minutes; see training/churn.yaml for every field)")
    lapsed_min = max(1, min(ch["eligibility_days"].value, math.ceil(facts.gaps[0.75] or 7)))
    scoring = {"dataset": base, "output": "lists", "ranking": "auto",
               "eligibility": {"lapsed_min_days": lapsed_min, "lapsed_max_days": ch["eligibility_days"].value},
               "max_staleness_hours": ch["max_staleness_hours"].value}
    if sums:
        scoring["value_column"] = f"sum_{safe_name(sums[0])}_all"
        comments["scoring.value_column"] = (f"rank by churn risk x each user's total {sums[0]} so far "
                                            "(by uplift x it once an uplift model exists)")
    comments["scoring"] = ("`churnml score -c " + base + " --as-of DATE` reads this section; without a "
                           "recall-uplift model the list is ranked by churn risk")
    comments["scoring.eligibility"] = (
        f"lapsed = no activity for {lapsed_min}-{ch['eligibility_days'].value} days (75% of returns happen within "
        f"{facts.gaps[0.75]} days; the upper end is the eligibility window); users active more recently are "
        "listed when their churn risk is at least 0.5")
    comments["scoring.max_staleness_hours"] = ch["max_staleness_hours"].why
    ScoreConfig.model_validate({**scoring, "dataset": out})
    TrainConfig.model_validate({**training, "dataset": out})
    doc = {"dataset": dataset, "training": training, "scoring": scoring}
    header = [f"Written by `churnml init` from {Path(events).name}: {facts.n_events:,} events of "
              f"{facts.n_users:,} users, {facts.first_ts.date()} to {facts.last_ts.date()}",
              "(timestamps " + ("date-only" if facts.date_only else "with times of day") + ").",
              "Every number was chosen from the data; the comment above it says how. Paths are relative to "
              "this file.",
              f"Next: churnml validate -c {base}; churnml train churn -c {base}; "
              f"churnml score -c {base} --as-of <date>"]
    if "duplicates" not in DatasetConfig.model_fields:
        header.append(ch["duplicates"].why.replace("duplicates ", "duplicates (not configurable here): ", 1))
    text = render_config(doc, comments, header)
    write_text(text, out)
    return InitResult(path=out, mapping=mapping, facts=facts, choices=ch, config=doc)
