"""Read the event log, users and campaigns, and check them against the data contract.

Every table is read lazily into an ibis backend (DuckDB by default, out of
core; Spark for large logs), renamed to contract names, and validated before
any work: each problem becomes one :class:`~churnml.exceptions.DataProblem`
line naming the source, column, count and an example value. All problems are
collected and raised together as a :class:`~churnml.exceptions.ContractError`.
Exact duplicate events are counted and, as configured (``duplicates``),
dropped with a warning or kept with a note.

Timestamps are read once per source: naive values (naive timestamps, dates,
strings without an offset) are wall-clock times of the dataset's time zone,
aware ones (and integer epochs, whose unit is read from their magnitude) are
instants. Each source gets two views: the contract tables (``ts`` etc. as UTC
timestamps, for the retention report and the like) and :class:`WallTables`,
where each timestamp is an integer of wall-clock microseconds computed straight
from the stored value (no cast to a zoned timestamp), which is what the feature
build reads.

The contract (more columns are kept):

========== ================================= ===============================
table      required                          optional
========== ================================= ===============================
events     user_id, ts, event                item_id, community_id, amount, ...
users      user_id, signup_ts                acquisition channel, platform, ...
campaigns  user_id, campaign_id, sent_ts,    cost, randomised, ...
           and treated or channel (or both)
subscriptions user_id, start, end (empty =    plan, price, period_days,
           running)                          discount
========== ================================= ===============================

Without a users table, a user's signup is the first event in the log (or
the first subscription start, if earlier). The subscriptions table's own
rules are in :mod:`churnml.subscriptions`.

A campaign row's arm is ``channel``: ``control`` (not contacted; the
dataset's ``control_channel`` names it in the source) or the name of the
channel the message went by (``sms``, ``email``, ``push``, ... whatever the
data says). A boolean ``treated`` alone is one channel, named ``treated``;
with both columns, ``treated`` false means control whatever ``channel`` says
(the column may name the campaign's channel on every row) and ``treated`` true
needs a channel. The validated table always has both: ``treated`` (bool) and
``channel`` (``control`` or a channel name).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.datatypes as dtypes

from churnml.clock import DAY_US, Clock, int_div
from churnml.config import DatasetConfig, Settings, SourceConfig, get_settings, utc
from churnml.exceptions import ContractError, DataNote, DataProblem, DataWarning

__all__ = ["CONTROL", "REQUIRED_COLUMNS", "SINGLE_CHANNEL", "Dataset", "WallTables", "connect", "open_dataset"]

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("user_id", "ts", "event"),
    "users": ("user_id", "signup_ts"),
    "campaigns": ("user_id", "campaign_id", "sent_ts"),
    "subscriptions": ("user_id", "start", "end"),
}
#: The arm of a control (not contacted) campaign row in a validated campaigns table.
CONTROL = "control"
#: The channel name of treated rows when the campaigns table has ``treated`` but no ``channel``.
SINGLE_CHANNEL = "treated"
_TS_COLUMN = {"events": "ts", "users": "signup_ts", "campaigns": "sent_ts", "subscriptions": "start"}
_UTC = dtypes.Timestamp(timezone="UTC")
# Strings with an explicit offset ("Z", "+02:00", "+0200") versus naive ones.
_OFFSET_RE = r"(Z|[+-]\d\d(:?\d\d)?)$"
# A time followed by a UTC offset beyond ±14:00, which no time zone has (DuckDB accepts up to ±99:59).
_FAR_OFFSET_RE = r"\d:\d\d(:\d\d(\.\d*)?)?\s*[+-](1[5-9]|[2-9]\d|14:?(0[1-9]|[1-5]\d))(:?\d\d)?$"


@dataclass(frozen=True)
class WallTables:
    """The contract tables with every timestamp as int64 wall-clock microseconds.

    Built once per source from the stored values (see :mod:`churnml.clock`):
    ``wall // DAY_US`` is the calendar date in the dataset's time zone, and in
    UTC the values are Unix microseconds. This is what the feature build reads.

    Attributes
    ----------
    events : ibis.Table
        ``user_id, event, us`` and the extra event columns (duplicates treated
        as configured). When the stored timestamp can be compared with a
        literal, it is kept as ``_raw_ts`` so that time filters skip row groups
        (see :meth:`events_between`).
    users : ibis.Table
        ``user_id, signup_us`` and the attribute columns.
    campaigns : ibis.Table or None
        ``user_id, campaign_id, sent_us, treated`` and extras.
    condensed : ibis.Table or None
        The events per user, event type and calendar day (see :func:`condense`),
        when something cached it for the dataset's lifetime; the feature build
        then starts from it for snapshots at midnight.
    """

    events: ibis.Table
    users: ibis.Table
    campaigns: ibis.Table | None
    clock: Clock
    raw_is_wall: bool = True
    condensed: ibis.Table | None = None

    def events_between(self, lo: int | None = None, hi: int | None = None, table: ibis.Table | None = None) -> ibis.Table:
        """Events with wall microseconds in ``[lo, hi)`` (either bound may be None).

        The exact test is on ``us``; a coarse test on the stored timestamp (a
        day wider, so never stricter) lets the engine skip whole row groups of
        a time-ordered log.
        """
        ev = self.events if table is None else table
        pred = []
        if lo is not None:
            pred.append(ev.us >= lo)
        if hi is not None:
            pred.append(ev.us < hi)
        if "_raw_ts" in ev.columns:
            pad = 0 if self.raw_is_wall else DAY_US
            raw = ev._raw_ts
            if lo is not None:
                pred.append(raw >= ibis.literal(self._raw_literal(lo - pad)))
            if hi is not None:
                pred.append(raw < ibis.literal(self._raw_literal(hi + pad)))
        return ev.filter(*pred) if pred else ev

    def _raw_literal(self, wall: int) -> dt.datetime:
        naive = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(wall))
        if self.raw_is_wall:
            return naive
        return self.clock.from_wall_us(wall)


@dataclass(frozen=True)
class Dataset:
    """A validated dataset: contract-shaped ibis tables on one backend.

    Attributes
    ----------
    config : DatasetConfig
    con : ibis backend the tables live on.
    events : ibis.Table
        ``user_id, ts (UTC), event`` plus any extra columns; exact duplicates
        removed unless ``config.duplicates == "keep"``.
    users : ibis.Table
        ``user_id, signup_ts`` plus attributes; inferred from the first event
        when no users table was given (``signup_inferred``).
    campaigns : ibis.Table or None
        ``user_id, campaign_id, sent_ts, treated (bool), channel`` (``control``
        or a channel name) plus extras.
    subscriptions : ibis.Table or None
        ``user_id, start, end`` (UTC; ``end`` null = running) plus the optional
        ``plan, price, period_days, discount``; see :mod:`churnml.subscriptions`.
    observed_until : datetime
        Exclusive end of the period the log covers.
    n_events, n_users, n_duplicates : int
        ``n_events`` counts the events the features see (after dropping
        duplicates, if they are dropped); ``n_duplicates`` the extra copies found.
    warnings : list of str
        Fixable problems that were fixed (e.g. duplicates dropped), and notes
        (duplicates kept).
    clock : Clock
        The dataset's time zone.
    wall : WallTables
        The same tables with integer wall-clock timestamps, for the feature build.
    """

    config: DatasetConfig
    con: ibis.BaseBackend
    events: ibis.Table
    users: ibis.Table
    campaigns: ibis.Table | None
    observed_until: dt.datetime
    signup_inferred: bool
    n_events: int
    n_users: int
    n_duplicates: int = 0
    warnings: list[str] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)
    wall: WallTables | None = None
    event_counts: dict[str, int] = field(default_factory=dict)
    event_first: dict[str, int] = field(default_factory=dict)
    subscriptions: ibis.Table | None = None

    def event_types(self, before: dt.datetime | None = None) -> list[str]:
        """Event types to build per-event features for.

        The configured list if there is one; otherwise the types found in the
        data before ``before`` (all data if None), sorted, so that events at or
        after a snapshot never change its columns.
        """
        if self.config.event_types is not None:
            return list(self.config.event_types)
        if self.event_first:
            # Each type's first event (from validation's summary) says whether it occurs before.
            w = None if before is None else self.clock.wall_us(before)
            return sorted(str(e) for e, first in self.event_first.items()
                          if first is not None and (w is None or first < w))
        ev = self.wall.events
        if before is not None:
            ev = self.wall.events_between(hi=self.clock.wall_us(before))
        found = ev.select("event").distinct().order_by("event").to_pyarrow()
        return [str(v) for v in found.column("event").to_pylist()]


def connect(
    engine: str = "duckdb", *, database: str | None = None, spark=None, settings: Settings | None = None
) -> ibis.BaseBackend:
    """Open an ibis backend with UTC session time.

    Parameters
    ----------
    engine : {"duckdb", "pyspark"}
    database : str, optional
        A DuckDB file to open read-only (for ``table`` and ``query`` sources).
    spark : pyspark.sql.SparkSession, optional
        Session to use for the Spark engine; a local one is created if omitted.
    settings : Settings, optional
        DuckDB memory limit, threads and spill folder; defaults to :func:`get_settings`.
    """
    if engine == "duckdb":
        settings = settings or get_settings()
        con = ibis.duckdb.connect(database or ":memory:", read_only=bool(database))
        con.raw_sql("SET TimeZone='UTC'")
        con.raw_sql(f"SET memory_limit='{settings.duckdb_memory_limit}'")
        if settings.duckdb_threads:
            con.raw_sql(f"SET threads={settings.duckdb_threads}")
        if settings.duckdb_temp_directory:
            con.raw_sql(f"SET temp_directory='{settings.duckdb_temp_directory}'")
        # Every output is ordered explicitly; letting DuckDB drop insertion order saves memory.
        con.raw_sql("SET preserve_insertion_order=false")
        return con
    if engine == "pyspark":
        if spark is None:
            from pyspark.sql import SparkSession

            spark = (
                SparkSession.builder.master("local[2]")
                .appName("churnml")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.ui.enabled", "false")
                .getOrCreate()
            )
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        return ibis.pyspark.connect(spark)
    raise ValueError(
        f"The `engine` parameter of `connect` must be 'duckdb' or 'pyspark'. Got {engine!r} instead."
    )


def _read(con: ibis.BaseBackend, src: SourceConfig, kind: str) -> ibis.Table:
    if src.path:
        p = src.path
        suffix = Path(p.rstrip("*")).suffix.lower() or Path(p).suffix.lower()
        if "*" not in p and not Path(p).exists():
            raise ContractError([DataProblem(src.label, None, 0, f"file not found (looked for {p})")])
        if "*" not in p and Path(p).is_file() and Path(p).stat().st_size == 0:
            raise ContractError([DataProblem(src.label, None, 0, "file is empty (0 bytes)")])
        if suffix in (".csv", ".tsv", ".txt", ".gz"):
            ts_col = src.columns.get(_TS_COLUMN[kind], _TS_COLUMN[kind])
            try:
                t = con.read_csv(p, header=True)
                if ts_col in t.columns and con.name == "duckdb":
                    # Read timestamps as text so that bad values are reported, not guessed.
                    t = con.read_csv(p, types={ts_col: "VARCHAR"}, header=True)
            except Exception as exc:  # noqa: BLE001 - duckdb raises many types
                raise ContractError([_ragged_rows(p, src.label) or DataProblem(src.label, None, 0, _first_line(exc))]) \
                    from None
            if len(t.columns) == 1 and any(d in t.columns[0] for d in ",;\t|"):
                # DuckDB could not settle on a delimiter and read each line as one value: rows with
                # another number of fields than the header make it give up.
                ragged = _ragged_rows(p, src.label)
                if ragged is not None:
                    raise ContractError([ragged])
            return t
        try:
            return con.read_parquet(p)
        except Exception as exc:  # noqa: BLE001
            raise ContractError([DataProblem(src.label, None, 0, _first_line(exc))]) from None
    try:
        return con.table(src.table) if src.table else con.sql(src.query)
    except Exception as exc:  # noqa: BLE001
        raise ContractError([DataProblem(src.label, None, 0, _first_line(exc))]) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"cannot read ({text[0] if text else exc.__class__.__name__})"


def _ragged_rows(pattern: str, label: str) -> DataProblem | None:
    """Rows of a CSV file (or glob of files) with another number of fields than the header, if any.

    Read with Python's csv module, so that it works whatever stopped DuckDB's
    reader; only called once a read has failed.
    """
    import csv
    import glob
    import gzip

    for path in sorted(glob.glob(pattern)) if "*" in pattern else [pattern]:
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rt", newline="", errors="replace") as f:
                sample = f.read(65536)
                f.seek(0)
                delimiter = max(",;\t|", key=sample.split("\n", 1)[0].count)
                rows = csv.reader(f, delimiter=delimiter)
                width = len(next(rows, []))
                count, first = 0, None
                for row in rows:
                    if row and len(row) != width:
                        count += 1
                        first = first or (rows.line_num, len(row), delimiter.join(row))
        except (OSError, csv.Error):
            return None
        if count:
            line, n, text = first
            where = f"{Path(path).name}: " if "*" in pattern else ""
            return DataProblem(label, None, count, f"rows with another number of fields than the header's {width} "
                                                   f"({where}the first at line {line} has {n})", text[:200])
    return None


def _csv_error(exc: BaseException, label: str, path: str | None) -> DataProblem | None:
    """A CSV reading error met while scanning a table (DuckDB reads lazily) as one problem line."""
    text = str(exc)
    if "CSV Error on Line" not in text and "Expected Number of Columns" not in text:
        return None
    if path is not None:
        ragged = _ragged_rows(path, label)
        if ragged is not None:
            return ragged
    return DataProblem(label, None, 0, _first_line(exc).replace("Invalid Input Error: ", ""))


def _scalar(expr) -> object:
    return expr.to_pyarrow().as_py()


def _example(t: ibis.Table, pred, col: str) -> str:
    rows = t.filter(pred).select(col).limit(1).to_pyarrow().column(col).to_pylist()
    return str(rows[0]) if rows else None


def _rename(t: ibis.Table, src: SourceConfig) -> ibis.Table:
    if not src.columns:
        return t
    absent = {c: s for c, s in src.columns.items() if s not in t.columns}
    if absent:
        # A mapping to a column that is not there must not fall back on a same-named column.
        raise ContractError([
            DataProblem(src.label, s, 0, f"named in 'columns' (as {c!r}) but not in the table "
                                         f"(columns found: {', '.join(t.columns)})")
            for c, s in absent.items()
        ])
    return t.rename(dict(src.columns))


@ibis.udf.scalar.builtin(name="epoch_us")
def _duckdb_epoch_us(ts: dtypes.Timestamp()) -> dtypes.int64:  # type: ignore[empty-body]
    """DuckDB's microseconds since the epoch, straight from the stored value (naive or zoned)."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _spark_epoch_us(ts: dtypes.Timestamp(timezone="UTC")) -> dtypes.int64:  # type: ignore[empty-body]
    """Spark's microseconds since the epoch."""


@ibis.udf.scalar.builtin(name="make_timestamp")
def _duckdb_ts_from_us(us: dtypes.int64) -> dtypes.Timestamp():  # type: ignore[empty-body]
    """DuckDB's timestamp from microseconds since the epoch."""


@ibis.udf.scalar.builtin(name="timestamp_micros")
def _spark_ts_from_us(us: dtypes.int64) -> dtypes.Timestamp(timezone="UTC"):  # type: ignore[empty-body]
    """Spark's timestamp from microseconds since the epoch."""


# Integer epochs: the unit is read from the magnitude of the largest value (dates 1973-5138).
_EPOCH_UNITS = ((1e11, "seconds", 1_000_000), (1e14, "milliseconds", 1_000), (1e17, "microseconds", 1),
                (float("inf"), "nanoseconds", -1_000))


@dataclass(frozen=True)
class _Time:
    """How one source's timestamp column is stored, and its microseconds as read.

    ``us`` builds an int64 expression from the (renamed) source table: wall
    microseconds when ``wall`` (naive values), Unix microseconds otherwise.
    ``prunable``: the stored column can be compared with a timestamp literal.
    """

    col: str
    wall: bool
    us: object
    prunable: bool = False
    unit: str | None = None


def _epoch_us(con: ibis.BaseBackend, ts: ibis.Value) -> ibis.Value:
    if con.name == "pyspark":
        return _spark_epoch_us(ts.cast(_UTC))
    return _duckdb_epoch_us(ts)


def _ts_from_us(con: ibis.BaseBackend, us: ibis.Value) -> ibis.Value:
    if con.name == "pyspark":
        return _spark_ts_from_us(us)
    return _duckdb_ts_from_us(us).cast(_UTC)


def _time_source(con, t: ibis.Table, col: str, label: str, problems: list[DataProblem]) -> _Time | None:
    """Classify ``col`` and record missing, unparsable and mixed-timezone values (None: unusable type)."""
    typ = t.schema()[col]
    raw = t[col]
    if typ.is_string():
        present = raw.notnull() & (raw.strip() != "")
        parsed = raw.try_cast(_UTC)
        bad = present & parsed.isnull()
        has_offset = raw.strip().re_search(_OFFSET_RE)
        ok = present & parsed.notnull()
        far = ok & raw.strip().re_search(_FAR_OFFSET_RE)
        stats = t.aggregate(
            missing=(~present).sum(),
            bad=bad.sum(),
            far=far.sum(),
            aware=(ok & has_offset).sum(),
            naive=(ok & ~has_offset).sum(),
        ).to_pyarrow().to_pylist()[0]
        if stats["far"]:
            problems.append(DataProblem(label, col, stats["far"], "timestamps with a UTC offset beyond ±14:00, "
                                        "which no time zone has", _example(t, far, col)))
        if stats["missing"]:
            problems.append(DataProblem(label, col, stats["missing"], "missing timestamps"))
        if stats["bad"]:
            problems.append(
                DataProblem(label, col, stats["bad"], "unparsable timestamps", _example(t, bad, col))
            )
        if stats["aware"] and stats["naive"]:
            problems.append(
                DataProblem(
                    label,
                    col,
                    stats["naive"],
                    f"timestamps without a timezone mixed with {stats['aware']:,} that have one "
                    "(mixed timezones; give every value an offset, or none for times in the dataset's timezone)",
                    _example(t, ok & ~has_offset, col),
                )
            )
        if stats["aware"]:
            return _Time(col, False, lambda tb: _epoch_us(con, tb[col].try_cast(_UTC)))
        return _Time(col, True, lambda tb: _epoch_us(con, tb[col].try_cast("timestamp")))
    if typ.is_timestamp():
        return _Time(col, typ.timezone is None, lambda tb: _epoch_us(con, tb[col]), prunable=con.name == "duckdb")
    if typ.is_date():
        return _Time(col, True, lambda tb: _epoch_us(con, tb[col].cast("timestamp")))
    if typ.is_integer():
        top = _scalar(raw.abs().max())
        if top is None:
            return _Time(col, False, lambda tb: tb[col].cast("int64"))
        _, unit, scale = next(u for u in _EPOCH_UNITS if top < u[0])
        if scale > 0:
            return _Time(col, False, lambda tb: tb[col].cast("int64") * scale, unit=unit)
        return _Time(col, False, lambda tb: tb[col].cast("int64") // -scale, unit=unit)
    problems.append(DataProblem(label, col, 0, f"has type {typ}, expected timestamps"))
    return None


@dataclass
class _Source:
    """One loaded source: the renamed table, how its time is stored, and the span of its values."""

    table: ibis.Table
    time: _Time
    label: str
    lo: int | None = None
    hi: int | None = None

    def raw_us(self, t: ibis.Table | None = None) -> ibis.Value:
        return self.time.us(self.table if t is None else t)

    def wall_us(self, clock: Clock, t: ibis.Table | None = None) -> ibis.Value:
        us = self.raw_us(t)
        if self.time.wall or clock.is_utc:
            return us
        return clock.to_wall(us, self.lo, self.hi)

    def instant_us(self, clock: Clock, t: ibis.Table | None = None) -> ibis.Value:
        us = self.raw_us(t)
        if not self.time.wall or clock.is_utc:
            return us
        return clock.to_instant(us, self.lo, self.hi)

    def utc_ts(self, con, clock: Clock, t: ibis.Table | None = None) -> ibis.Value:
        """The column as UTC timestamps (the contract tables' ``ts``/``signup_ts``/``sent_ts``)."""
        t = self.table if t is None else t
        raw = t[self.time.col]
        typ = t.schema()[self.time.col]
        if self.time.wall and not clock.is_utc:
            return _ts_from_us(con, self.instant_us(clock, t))
        if typ.is_string():
            return raw.try_cast(_UTC)
        if typ.is_timestamp():
            return raw if typ.timezone == "UTC" else raw.cast(_UTC)
        if typ.is_date():
            return raw.cast("timestamp").cast(_UTC)
        return _ts_from_us(con, self.raw_us(t))

    def instant(self, clock: Clock, value: int | None) -> dt.datetime | None:
        """A raw value (microseconds as read) as an aware UTC datetime."""
        if value is None:
            return None
        if self.time.wall:
            return clock.from_wall_us(value)
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(value))


def _check_columns(t: ibis.Table, kind: str, label: str) -> list[DataProblem]:
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in t.columns]
    found = f"(columns found: {', '.join(t.columns)})"
    if kind == "campaigns" and not {"treated", "channel"} & set(t.columns):
        return [DataProblem(label, "treated", 0, "required column missing: give `treated` (true/false) or "
                                                  f"`channel` ('{CONTROL}' or a channel name) {found}")]
    if not missing:
        return []
    what = "required column missing" if len(missing) == 1 else "required columns missing"
    return [DataProblem(label, ", ".join(missing), 0, f"{what} {found}")]


def _bad_ids(t: ibis.Table):
    uid = t.user_id
    if t.schema()["user_id"].is_string():
        return uid.isnull() | (uid.strip() == "")
    return uid.isnull()


def _load_table(con, src: SourceConfig, kind: str) -> tuple[_Source | ibis.Table, list[DataProblem], list[DataProblem]]:
    """Read, rename and classify one table's timestamps.

    Returns the source, the problems that stop any further check (missing
    columns, no rows, wrong types) and the ones that do not (bad values).
    """
    t = _rename(_read(con, src, kind), src)
    if src.event_type is not None:
        if "event" in t.columns:
            return t, [DataProblem(src.label, "event", 0, f"has an event column and event_type {src.event_type!r}; "
                                                          "give one or the other")], []
        t = t.mutate(event=ibis.literal(src.event_type))
    fatal = _check_columns(t, kind, src.label)
    if fatal:
        return t, fatal, []
    try:
        n = _scalar(t.count())  # the first full read: a bad row far into a CSV file shows here
    except Exception as exc:  # noqa: BLE001 - whatever the engine raises
        problem = _csv_error(exc, src.label, src.path)
        if problem is None:
            raise
        return t, [problem], []
    if n == 0:
        return t, [DataProblem(src.label, None, 0, "table is empty (no rows)")], []
    values: list[DataProblem] = []
    time = _time_source(con, t, _TS_COLUMN[kind], src.label, values)
    fatal = [p for p in values if "expected timestamps" in p.message]
    return _Source(t, time, src.label), fatal, [p for p in values if p not in fatal]


def condense(events: ibis.Table, sum_columns: list[str], tod: int = 0, engine: str = "duckdb") -> ibis.Table:
    """The events condensed to one row per user, event type and calendar day (uncached).

    ``events`` are wall tables' events (``us`` in wall microseconds). Each row
    has ``t`` (the start of its span: the date's midnight, or with ``tod`` the
    date split at that time of day, so that snapshots at that time of day and
    their windows start on row edges), ``n`` events, their ``first``/``last``
    times and ``s_<col>`` sums. The feature build computes the tables of
    several snapshots from it.
    """
    from churnml.features.definitions import safe_name

    day = int_div(events.us, DAY_US, engine) * DAY_US
    t = day if tod == 0 else day + ((events.us - day) >= tod).cast("int64") * tod
    ev = events.mutate(t=t)
    return ev.group_by("user_id", "event", "t").aggregate(
        n=ev.count(), first=ev.us.min(), last=ev.us.max(),
        **{f"s_{safe_name(c)}": ev[c].sum() for c in sum_columns},
    )


def _summarise(events: ibis.Table, until_wall: int) -> ibis.Table:
    """One pass over the events: per user and event type, the rows, their span, missing and late times.

    Every check on the events reads this small table (a few rows per user)
    instead of a pass of its own: counts per event type, null ids and names,
    missing timestamps, events at or after ``observed_until``, and each user's
    first event (the users table's checks, the inferred signup).
    """
    us = events.us
    return events.group_by("user_id", "event").aggregate(
        n=events.count(), missing=us.isnull().sum(), late=(us >= until_wall).sum(), first=us.min(), last=us.max(),
    )


def _check_events(
    src: _Source, public, summary: ibis.Table, until: dt.datetime, configured: bool
) -> tuple[list[DataProblem], dict]:
    """Every check on the events, from the summary (``public()``: UTC ``ts``, for examples)."""
    label = src.label
    c = summary
    per_event = c.group_by("event").aggregate(
        k=c.n.sum(), bad_id=c.n.sum(where=_bad_ids(c)), missing=c.missing.sum(),
        late=c.late.sum(), lo=c["first"].min(), hi=c["last"].max(),
    ).to_pyarrow().to_pylist()
    stats = {
        "n": sum(r["k"] for r in per_event),
        "bad_id": sum(r["bad_id"] or 0 for r in per_event),
        "missing": sum(r["missing"] or 0 for r in per_event),
        "lo": min((r["lo"] for r in per_event if r["lo"] is not None), default=None),
        "hi": max((r["hi"] for r in per_event if r["hi"] is not None), default=None),
        "bad_event": sum(r["k"] for r in per_event if r["event"] is None or not str(r["event"]).strip()),
        "event_counts": {r["event"]: r["k"] for r in per_event if r["event"] is not None},
        "event_first": {r["event"]: r["lo"] for r in per_event if r["event"] is not None},
    }
    problems = []
    if stats["missing"] and not src.table.schema()[src.time.col].is_string():
        problems.append(DataProblem(label, "ts", stats["missing"], "missing timestamps"))
    if stats["bad_id"]:
        problems.append(DataProblem(label, "user_id", stats["bad_id"], "null or empty user ids"))
    if stats["bad_event"]:
        problems.append(DataProblem(label, "event", stats["bad_event"], "null or empty event names"))
    n_late = sum(r["late"] or 0 for r in per_event)
    if n_late:
        pub = public()
        late = pub.ts >= ibis.literal(until)
        problems.append(
            DataProblem(
                label,
                "ts",
                n_late,
                (f"events at or after observed_until {until.isoformat()}" if configured
                 else f"events in the future (after now, {until.isoformat(timespec='seconds')})"),
                _example(pub, late, "ts"),
            )
        )
    return problems, stats


def _check_config_names(
    config: DatasetConfig, ev: ibis.Table, counts: dict, label: str
) -> tuple[list[DataProblem], list[str]]:
    """Event types and columns the config names, against the events table.

    A column the features need that is missing or not numeric is a problem; an
    event type that never occurs is a warning (a config may list types a log
    does not have yet), unless no activity event occurs at all, which leaves
    nothing to build.
    """
    problems: list[DataProblem] = []
    notes: list[str] = []
    found = sorted(str(e) for e in counts)
    shown = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
    named = [("sum_columns", c) for c in config.sum_columns]
    named += [(f"distinct_counts '{d.name}'", d.column) for d in config.distinct_counts]
    for key, col in named:
        if col not in ev.columns:
            problems.append(DataProblem(label, col, 0, f"named in {key} but not in the table "
                                                       f"(columns found: {', '.join(ev.columns)})"))
    for col in config.sum_columns:
        if col in ev.columns and not ev.schema()[col].is_numeric():
            bad = ev[col].notnull() & ev[col].cast("string").try_cast("float64").isnull()
            n_bad = _scalar(bad.sum())
            problems.append(DataProblem(label, col, n_bad, "sum_columns needs numbers; values that are not",
                                        _example(ev, bad, col)))
    for key, one, named in (("activity_events", "activity event", config.activity_events or []),
                            ("churn.events", "churn event", config.churn.events or [])):
        if named and not any(a in counts for a in named):
            problems.append(DataProblem(label, "event", 0, f"none of the {key} {named} occurs "
                                                           f"(event types found: {shown})"))
        else:
            notes += [f"{label}: {one} {a!r} never occurs (event types found: {shown})"
                      for a in named if a not in counts]
    notes += [f"{label}: event type {e!r} in event_types never occurs; its features will be empty "
              f"(event types found: {shown})" for e in config.event_types or [] if e not in counts]
    for d in config.distinct_counts:
        notes += [f"{label}: event type {e!r} of distinct_counts '{d.name}' never occurs"
                  for e in d.events or [] if e not in counts]
    return problems, notes


def _count_duplicates(ev: ibis.Table, slices: list[tuple[int, int]] | None = None, between=None) -> int:
    """Exact number of extra copies of identical rows (every column equal).

    Rows are grouped by a 64-bit hash of all their values (a narrow key,
    cheaper than grouping by every column); only rows whose hash repeats
    (duplicates, or the rare hash collision) are then compared value by value.
    Copies share their timestamp, so the log can be counted in time slices
    (``[lo, hi)`` in wall microseconds, covering every row; ``between(lo,
    hi)`` gives a slice's rows): on a log stored
    in time order each slice reads only its own row groups and the hash table
    stays small instead of holding every row of a large log at once.
    """
    if slices:
        return sum(_count_duplicates(between(lo, hi)) for lo, hi in slices)
    cols = [c for c in ev.columns if c != "_raw_ts"]
    h = ibis.struct({c: ev[c] for c in cols}).hash()
    hashed = ev.mutate(_h=h)
    repeated = hashed.group_by("_h").aggregate(k=hashed.count()).filter(lambda t: t.k > 1)
    if _scalar(repeated.count()) == 0:
        return 0
    rows = hashed.semi_join(repeated, "_h").select(*cols)
    return _scalar(rows.count()) - _scalar(rows.distinct().count())


#: Rows per time slice of the duplicate count (when the log is stored in time order).
_DUP_SLICE_ROWS = 4_000_000


def _dup_slices(con, src_cfg: SourceConfig, col: str, n: int, lo: int | None, hi: int | None):
    """Time slices for the duplicate count, or None when the log is not a Parquet file stored in time order.

    Stored in time order = the row groups' timestamp ranges, added up, span at
    most a few times the whole log's (row groups of a shuffled log each span
    nearly all of it, and slicing would read every row group for every slice).
    """
    if con.name != "duckdb" or not src_cfg.path or n <= _DUP_SLICE_ROWS or lo is None:
        return None
    if Path(src_cfg.path.rstrip("*")).suffix.lower() not in (".parquet", ".pq", "") and \
            not src_cfg.path.lower().endswith(".parquet"):
        return None
    raw = src_cfg.columns.get("ts", "ts")
    sql = ("SELECT sum(epoch_us(CAST(stats_max AS TIMESTAMPTZ)) - epoch_us(CAST(stats_min AS TIMESTAMPTZ))), "
           "epoch_us(max(CAST(stats_max AS TIMESTAMPTZ))) - epoch_us(min(CAST(stats_min AS TIMESTAMPTZ))) "
           "FROM parquet_metadata(?) WHERE path_in_schema = ?")
    try:
        spans, whole = con.con.execute(sql, [src_cfg.path, raw]).fetchone()
    except Exception:  # noqa: BLE001 - no usable statistics: count in one pass
        return None
    if not whole or spans is None or spans > 4 * whole:
        return None
    k = -(-n // _DUP_SLICE_ROWS)
    edges = [lo + (hi + 1 - lo) * i // k for i in range(k + 1)]
    return list(zip(edges, edges[1:], strict=False))


def open_dataset(
    config: DatasetConfig,
    *,
    con: ibis.BaseBackend | None = None,
    now: dt.datetime | None = None,
) -> Dataset:
    """Read and validate the configured sources.

    The events are read twice: once into a summary per user and event type,
    which every check reads (the users table is checked against it, one row
    per user, not against every event), and once to count exact duplicates.
    Nothing else scans the whole log.

    Parameters
    ----------
    config : DatasetConfig
    con : ibis backend, optional
        Where to read; a fresh one for ``config.engine`` if omitted.
    now : datetime, optional
        Wall-clock time; events after it are an error when the config gives no
        ``observed_until``. Defaults to the current time.

    Returns
    -------
    Dataset

    Raises
    ------
    ContractError
        Listing every contract problem found, one line each.
    """
    srcs = config.sources
    if con is None:
        dbs = {s.database for s in srcs.named().values() if s.database}
        if len(dbs) > 1:
            raise ContractError(
                [DataProblem("config", "sources", 0, f"all DuckDB sources must share one database, got {sorted(dbs)}")]
            )
        con = connect(config.engine, database=next(iter(dbs), None))
    clock = Clock(config.timezone)

    fatal: list[DataProblem] = []
    problems: list[DataProblem] = []
    loaded: dict[str, _Source | None] = {}
    for kind in ("events", "users", "campaigns", "subscriptions"):
        src = getattr(srcs, kind)
        if src is None:
            loaded[kind] = None
            continue
        loaded[kind], f, p = _load_table(con, src, kind)
        fatal += f
        problems += p
    if fatal:
        raise ContractError(fatal + problems)
    p = _align_ids(loaded, srcs)
    if p:
        raise ContractError(p + problems)
    ev_src, us_src, camp_src, sub_src = (loaded[k] for k in ("events", "users", "campaigns", "subscriptions"))
    ev_label = ev_src.label

    until = config.observed_until or utc(now or dt.datetime.now(dt.timezone.utc))
    if not clock.is_utc:
        # Offsets between these bounds make the wall-clock conversion exact; UTC needs none.
        for src in (ev_src, us_src, camp_src, sub_src):
            if src is not None:
                span = src.table.aggregate(lo=src.raw_us().min(), hi=src.raw_us().max()).to_pyarrow().to_pylist()[0]
                src.lo, src.hi = span["lo"], span["hi"]
    extras = [c for c in ev_src.table.columns if c not in ("user_id", "ts", "event")]
    ev_cols = {"user_id": ev_src.table.user_id, "event": ev_src.table.event,
               **{c: ev_src.table[c] for c in extras}, "us": ev_src.wall_us(clock)}
    if ev_src.time.prunable:
        ev_cols["_raw_ts"] = ev_src.table[ev_src.time.col]
    events_wall = ev_src.table.select(**ev_cols)
    public = ev_src.table.mutate(ts=ev_src.utc_ts(con, clock))

    # One pass summarises the log per user and event type; every check on the events reads that.
    summary = _summarise(events_wall, clock.wall_us(until)).cache()
    try:
        p, stats = _check_events(ev_src, lambda: public, summary, until, config.observed_until is not None)
        problems += p
        p, notes = _check_config_names(config, ev_src.table, stats["event_counts"], ev_label)
        problems += p
        signup_inferred = us_src is None
        if signup_inferred:
            # Signup = first event (wall microseconds), from the summary; kept for the build.
            # (or the first subscription start, if earlier: a subscriber need not have any event yet).
            first = summary.filter(summary["first"].notnull()).select("user_id", signup_us=summary["first"])
            lo, hi = stats["lo"], stats["hi"]
            if sub_src is not None:
                starts = sub_src.table.select("user_id", signup_us=sub_src.wall_us(clock))
                first = first.union(starts.filter(starts.signup_us.notnull()))
                if not clock.is_utc:
                    span = first.aggregate(lo=first.signup_us.min(), hi=first.signup_us.max()).to_pyarrow()
                    lo, hi = span.to_pylist()[0]["lo"], span.to_pylist()[0]["hi"]
            first = first.group_by("user_id").aggregate(signup_us=first.signup_us.min()).cache()
            users_wall = first
            users_public = first.select("user_id", signup_ts=_ts_from_us(
                con, clock.to_instant(first.signup_us, lo, hi) if not clock.is_utc else first.signup_us))
        else:
            users_public = us_src.table.mutate(signup_ts=us_src.utc_ts(con, clock))
            users_wall = us_src.table.mutate(signup_us=us_src.wall_us(clock)).drop("signup_ts")
            problems += _check_users(users_public, users_wall, us_src, ev_src, summary, con, clock, ev_label)
        campaigns_public = campaigns_wall = None
        if camp_src is not None:
            both = camp_src.table.mutate(sent_us=camp_src.wall_us(clock), sent_ts=camp_src.utc_ts(con, clock))
            checked, p = _check_campaigns(both, users_public, camp_src.label, config.control_channel)
            problems += p
            campaigns_public, campaigns_wall = checked.drop("sent_us"), checked.drop("sent_ts")
        subscriptions = None
        if sub_src is not None:
            from churnml.subscriptions import check_subscriptions

            problems += _missing_typed(sub_src.table, "start", sub_src.label)
            subs = sub_src.table.mutate(start=sub_src.utc_ts(con, clock))
            subscriptions, p, n = check_subscriptions(
                subs, users_public, sub_src.label, users_label=None if signup_inferred else us_src.label,
                until=until, until_configured=config.observed_until is not None, con=con, clock=clock)
            problems += p
            notes += n
        if problems:
            raise ContractError(problems)
    finally:
        summary.release()

    n_events = stats["n"]
    slices = _dup_slices(con, srcs.events, ev_src.time.col, n_events, stats["lo"], stats["hi"]) \
        if ev_src.time.prunable else None
    probe = WallTables(events=events_wall, users=users_wall, campaigns=None, clock=clock, raw_is_wall=ev_src.time.wall)
    n_dup = _count_duplicates(events_wall, slices, lambda lo, hi: probe.events_between(lo, hi))
    for msg in notes:
        warnings.warn(msg, DataWarning, stacklevel=2)
    events_public = public
    if n_dup and config.duplicates == "drop":
        events_public = events_public.distinct()
        events_wall = events_wall.drop("_raw_ts").distinct() if "_raw_ts" in events_wall.columns else events_wall.distinct()
        msg = f"{ev_label}: {n_dup:,} exact duplicate events dropped (set duplicates: keep to count every copy)"
        notes.append(msg)
        warnings.warn(msg, DataWarning, stacklevel=2)
        n_events -= n_dup
    elif n_dup:
        msg = f"{ev_label}: {n_dup:,} exact duplicate events kept as separate events (duplicates: keep)"
        notes.append(msg)
        warnings.warn(msg, DataNote, stacklevel=2)
    last = clock.from_wall_us(stats["hi"]) if ev_src.time.wall or clock.is_utc else ev_src.instant(clock, ev_src.hi)
    if subscriptions is not None and config.observed_until is None:
        last = max(last, _scalar(subscriptions.start.max()))
    observed_until = config.observed_until or (last + dt.timedelta(microseconds=1))
    wall = WallTables(events=events_wall, users=users_wall, campaigns=campaigns_wall, clock=clock,
                      raw_is_wall=ev_src.time.wall)
    return Dataset(
        config=config,
        con=con,
        events=events_public,
        users=users_public,
        campaigns=campaigns_public,
        observed_until=observed_until,
        signup_inferred=signup_inferred,
        n_events=n_events,
        n_users=_scalar(users_public.count()),
        n_duplicates=n_dup,
        warnings=notes,
        clock=clock,
        wall=wall,
        event_counts=stats["event_counts"],
        event_first=stats["event_first"],
        subscriptions=subscriptions,
    )


def _align_ids(sources: dict, srcs) -> list[DataProblem]:
    """Give ``user_id`` one type across the sources, whose ids are compared with each other.

    When some tables hold numbers and others text (a CSV column with one text id
    among numbers is read as text), text ids that are all integers are read as
    integers (the source's table is replaced); any other text id is a problem,
    reported with an example.
    """
    present = {k: s for k, s in sources.items() if s is not None}
    text = [k for k, s in present.items() if s.table.schema()["user_id"].is_string()]
    numeric = [k for k in present if k not in text and present[k].table.schema()["user_id"].is_numeric()]
    if not text or not numeric:
        return []
    other = getattr(srcs, numeric[0]).label
    problems = []
    for kind in text:
        t = present[kind].table
        uid = t.user_id.strip()
        as_int = uid.try_cast("int64")
        bad = t.user_id.notnull() & (uid != "") & as_int.isnull()
        n_bad = _scalar(bad.sum())
        if n_bad:
            problems.append(DataProblem(getattr(srcs, kind).label, "user_id", n_bad,
                                        f"user ids that are not integers, while {other}'s are integers",
                                        _example(t, bad, "user_id")))
        else:
            present[kind].table = t.mutate(user_id=as_int)
    return problems


def _missing_typed(t: ibis.Table, col: str, label: str) -> list[DataProblem]:
    """Missing values of a timestamp column that is not text (text columns are checked as they are parsed)."""
    if t.schema()[col].is_string():
        return []
    n = _scalar(t[col].isnull().sum())
    return [DataProblem(label, col, n, "missing timestamps")] if n else []


def _normalise_ts(
    t: ibis.Table, col: str, label: str, problems: list[DataProblem], *, con=None, clock: Clock | None = None
) -> ibis.Table:
    """``t`` with ``col`` as UTC timestamps, recording missing, unparsable and mixed-timezone values.

    Naive values are wall-clock times of ``clock``'s zone (UTC if omitted),
    read as :func:`open_dataset` reads every other timestamp.
    """
    con = con if con is not None else t._find_backend()
    clock = clock or Clock()
    problems += _missing_typed(t, col, label)
    time = _time_source(con, t, col, label, problems)
    if time is None:
        return t
    src = _Source(t, time, label)
    if time.wall and not clock.is_utc:
        span = t.aggregate(lo=src.raw_us().min(), hi=src.raw_us().max()).to_pyarrow().to_pylist()[0]
        src.lo, src.hi = span["lo"], span["hi"]
        if src.lo is None:
            return t.mutate(**{col: ibis.null(_UTC)})
    return t.mutate(**{col: src.utc_ts(con, clock)})


def _check_users(
    users: ibis.Table, users_wall: ibis.Table, us_src: _Source, ev_src: _Source, summary: ibis.Table, con,
    clock: Clock, ev_label: str,
) -> list[DataProblem]:
    label = us_src.label
    problems = []
    stats = users.aggregate(
        bad_id=_bad_ids(users).sum(),
        n=users.count(),
        n_ids=users.user_id.nunique(),
    ).to_pyarrow().to_pylist()[0]
    if stats["bad_id"]:
        problems.append(DataProblem(label, "user_id", stats["bad_id"], "null or empty user ids"))
    if stats["n"] != stats["n_ids"]:
        dup = users.group_by("user_id").aggregate(k=users.count()).filter(lambda t: t.k > 1)
        problems.append(
            DataProblem(label, "user_id", stats["n"] - stats["n_ids"], "repeated user ids",
                        _example(dup, dup.k > 1, "user_id"))
        )
    if problems:
        return problems
    # Per user (one row each, from the summary), not per event: events of unknown users, and whether
    # the first event may precede the signup.
    per_user = summary.group_by("user_id").aggregate(k=summary.n.sum(), first=summary["first"].min())
    known = users_wall.select(uid="user_id", signup="signup_us")
    j = per_user.left_join(known, per_user.user_id == known.uid)
    unknown = j.uid.isnull() & j.user_id.notnull()
    # Wall-clock times order like instants except within a daylight-saving hour: leave that margin.
    margin = 0 if clock.is_utc else 2 * 3_600_000_000
    suspect = j.first < j.signup + margin
    stats = j.aggregate(unknown=j.k.sum(where=unknown), suspect=suspect.sum()).to_pyarrow().to_pylist()[0]
    if stats["unknown"]:
        problems.append(
            DataProblem(ev_label, "user_id", stats["unknown"], f"events of users missing from {label}",
                        _example(j, unknown, "user_id"))
        )
    if stats["suspect"]:
        # Only those users' events, compared instant by instant.
        suspects = j.filter(suspect).select(uid="user_id")
        raw = ev_src.table
        ev = raw.select("user_id", ts=ev_src.utc_ts(con, clock))
        ev = ev.join(suspects, ev.user_id == suspects.uid)
        signup = users.select(sid="user_id", signup_ts="signup_ts")
        ev = ev.join(signup, ev.user_id == signup.sid)
        early = ev.ts < ev.signup_ts
        n_early = _scalar(early.sum())
        if n_early:
            problems.append(
                DataProblem(ev_label, "ts", n_early, "events before the user's signup_ts",
                            _example(ev.mutate(e=ev.user_id.cast("string") + " at " + ev.ts.cast("string")),
                                     early, "e"))
            )
    return problems


_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


def _as_bool(c: ibis.Table, label: str, problems: list[DataProblem]) -> ibis.Table:
    """``treated`` as booleans (text such as 'yes'/'0' accepted); values that are not are problems."""
    if c.schema()["treated"].is_boolean():
        return c
    text = c.treated.cast("string").strip().lower()
    treated = ibis.cases((text.isin(_TRUE), True), (text.isin(_FALSE), False), else_=None)
    bad = c.treated.notnull() & treated.isnull()
    n_bad = _scalar(bad.sum())
    if n_bad:
        problems.append(DataProblem(label, "treated", n_bad, "values that are not boolean",
                                    _example(c, bad, "treated")))
    return c.mutate(treated=treated)


def _arms(c: ibis.Table, label: str, control: str, problems: list[DataProblem]) -> ibis.Table:
    """Add or normalise ``channel`` (the arm: CONTROL or a channel name) and ``treated`` from each other."""
    has_treated, has_channel = "treated" in c.columns, "channel" in c.columns
    if not has_channel:
        arm = ibis.ifelse(c.treated, ibis.literal(SINGLE_CHANNEL), ibis.literal(CONTROL))
        return c.mutate(channel=arm)
    name = c.channel.cast("string").strip()
    is_control = name.lower() == ibis.literal(control.strip().lower())
    missing = name.isnull() | (name == "")
    if not has_treated:
        n_missing = _scalar(missing.sum())
        if n_missing:
            problems.append(DataProblem(label, "channel", n_missing,
                                        f"rows without a channel (give '{control}' for the control group)"))
        return c.mutate(channel=ibis.ifelse(is_control, ibis.literal(CONTROL), name), treated=~is_control)
    # Both columns: `treated` decides; a treated row needs a channel that is not control.
    m = c.mutate(_arm=name.fill_null("(missing)"))
    clash = m.treated & ((m._arm == "(missing)") | (m._arm == "")
                         | (m._arm.lower() == ibis.literal(control.strip().lower())))
    n_clash = _scalar(clash.sum())
    if n_clash:
        problems.append(DataProblem(label, "channel", n_clash,
                                    f"treated rows whose channel is missing or '{control}'", _example(m, clash, "_arm")))
    return c.mutate(channel=ibis.ifelse(c.treated, name, ibis.literal(CONTROL)))


def _check_campaigns(c: ibis.Table, users: ibis.Table, label: str,
                     control: str = CONTROL) -> tuple[ibis.Table, list[DataProblem]]:
    problems = []
    if "treated" in c.columns:
        n_null = _scalar(c.treated.isnull().sum())
        c = _as_bool(c, label, problems)
        if n_null:
            problems.append(DataProblem(label, "treated", n_null, "missing treated flags"))
    if not problems:  # arms follow from valid treated flags only
        c = _arms(c, label, control, problems)
    bad_id = _scalar(_bad_ids(c).sum())
    if bad_id:
        problems.append(DataProblem(label, "user_id", bad_id, "null or empty user ids"))
    known = users.select(uid="user_id")
    j = c.left_join(known, c.user_id == known.uid)
    unknown = j.uid.isnull() & j.user_id.notnull()
    n_unknown = _scalar(unknown.sum())
    if n_unknown:
        problems.append(DataProblem(label, "user_id", n_unknown, "campaign rows for unknown users",
                                    _example(j, unknown, "user_id")))
    n_no_camp = _scalar(c.campaign_id.isnull().sum())
    if n_no_camp:
        problems.append(DataProblem(label, "campaign_id", n_no_camp, "rows without a campaign_id"))
    return c, problems
