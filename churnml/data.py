"""Read the event log, users and campaigns, and check them against the data contract.

Every table is read lazily into an ibis backend (DuckDB by default, out of
core; Spark for large logs), renamed to contract names, its timestamps
normalised to UTC, and validated before any work: each problem becomes one
:class:`~churnml.exceptions.DataProblem` line naming the source, column,
count and an example value. All problems are collected and raised together
as a :class:`~churnml.exceptions.ContractError`. Exact duplicate events are the
only thing fixed silently-but-loudly: counted, dropped, and warned about.

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

from churnml.config import DatasetConfig, Settings, SourceConfig, get_settings, utc
from churnml.exceptions import ContractError, DataProblem, DataWarning

__all__ = ["CONTROL", "REQUIRED_COLUMNS", "SINGLE_CHANNEL", "Dataset", "connect", "open_dataset"]

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
class Dataset:
    """A validated dataset: contract-shaped ibis tables on one backend.

    Attributes
    ----------
    config : DatasetConfig
    con : ibis backend the tables live on.
    events : ibis.Table
        ``user_id, ts (UTC), event`` plus any extra columns, duplicates removed.
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
    warnings : list of str
        Fixable problems that were fixed (e.g. duplicates dropped).
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
    subscriptions: ibis.Table | None = None

    def event_types(self, before: dt.datetime | None = None) -> list[str]:
        """Event types to build per-event features for.

        The configured list if there is one; otherwise the types found in the
        data before ``before`` (all data if None), sorted, so that events at or
        after a snapshot never change its columns.
        """
        if self.config.event_types is not None:
            return list(self.config.event_types)
        ev = self.events if before is None else self.events.filter(self.events.ts < ibis.literal(before))
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


def _normalise_ts(t: ibis.Table, col: str, label: str, problems: list[DataProblem]) -> ibis.Table:
    """Cast ``col`` to UTC timestamps, recording missing, unparsable and mixed-timezone values."""
    typ = t.schema()[col]
    raw = t[col]
    if not typ.is_string():
        n_missing = _scalar(raw.isnull().sum())
        if n_missing:
            problems.append(DataProblem(label, col, n_missing, "missing timestamps"))
    else:
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
                    "(mixed timezones; give every value an offset, or none for UTC)",
                    _example(t, ok & ~has_offset, col),
                )
            )
        return t.mutate(**{col: parsed})
    if typ.is_timestamp():
        return t.mutate(**{col: t[col].cast(_UTC)}) if typ.timezone != "UTC" else t
    if typ.is_date():
        return t.mutate(**{col: t[col].cast("timestamp").cast(_UTC)})
    problems.append(DataProblem(label, col, 0, f"has type {typ}, expected timestamps"))
    return t


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


def _load_table(con, src: SourceConfig, kind: str) -> tuple[ibis.Table, list[DataProblem], list[DataProblem]]:
    """Read, rename and type one table.

    Returns the table, the problems that stop any further check (missing
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
    t = _normalise_ts(t, _TS_COLUMN[kind], src.label, values)
    fatal = [p for p in values if "expected timestamps" in p.message]
    return t, fatal, [p for p in values if p not in fatal]


def _check_events(ev: ibis.Table, label: str, until: dt.datetime, configured: bool) -> tuple[list[DataProblem], dict]:
    bad_id = _bad_ids(ev)
    future = ev.ts >= ibis.literal(until)
    stats = ev.aggregate(
        n=ev.count(),
        bad_id=bad_id.sum(),
        future=future.sum(),
        max_ts=ev.ts.max(),
    ).to_pyarrow().to_pylist()[0]
    # Event names are few: judge them on the distinct values, not on every row.
    names = ev.group_by("event").aggregate(k=ev.count()).to_pyarrow().to_pylist()
    stats["bad_event"] = sum(r["k"] for r in names if r["event"] is None or not str(r["event"]).strip())
    stats["event_counts"] = {r["event"]: r["k"] for r in names if r["event"] is not None}
    problems = []
    if stats["bad_id"]:
        problems.append(DataProblem(label, "user_id", stats["bad_id"], "null or empty user ids"))
    if stats["bad_event"]:
        problems.append(DataProblem(label, "event", stats["bad_event"], "null or empty event names"))
    if stats["future"]:
        problems.append(
            DataProblem(
                label,
                "ts",
                stats["future"],
                (f"events at or after observed_until {until.isoformat()}" if configured
                 else f"events in the future (after now, {until.isoformat(timespec='seconds')})"),
                _example(ev, future, "ts"),
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


def open_dataset(
    config: DatasetConfig,
    *,
    con: ibis.BaseBackend | None = None,
    now: dt.datetime | None = None,
) -> Dataset:
    """Read and validate the configured sources.

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

    fatal: list[DataProblem] = []
    problems: list[DataProblem] = []
    tables = {}
    for kind in ("events", "users", "campaigns", "subscriptions"):
        src = getattr(srcs, kind)
        if src is None:
            tables[kind] = None
            continue
        tables[kind], f, p = _load_table(con, src, kind)
        fatal += f
        problems += p
    if fatal:
        raise ContractError(fatal + problems)
    tables, p = _align_ids(tables, srcs)
    if p:
        raise ContractError(p + problems)
    events, users, campaigns, subscriptions = (tables[k] for k in ("events", "users", "campaigns", "subscriptions"))

    until = config.observed_until or utc(now or dt.datetime.now(dt.timezone.utc))
    ev_label = srcs.events.label
    p, stats = _check_events(events, ev_label, until, config.observed_until is not None)
    problems += p
    p, notes = _check_config_names(config, events, stats["event_counts"], ev_label)
    problems += p
    # Rows with missing or unparsable timestamps were reported above (and fail the run).
    events = events.filter(events.ts.notnull())

    signup_inferred = users is None
    if users is None:
        firsts = events.select("user_id", "ts")
        if subscriptions is not None:  # a subscriber need not have any event yet
            starts = subscriptions.filter(subscriptions.start.notnull())
            firsts = firsts.union(starts.select("user_id", ts=starts.start.cast(firsts.ts.type())))
        users = firsts.group_by("user_id").aggregate(signup_ts=firsts.ts.min())
    else:
        problems += _check_users(users, events, srcs.users.label, ev_label)
    if campaigns is not None:
        campaigns, p = _check_campaigns(campaigns, users, srcs.campaigns.label, config.control_channel)
        problems += p
    if subscriptions is not None:
        from churnml.subscriptions import check_subscriptions

        subscriptions, p, n = check_subscriptions(
            subscriptions, users, srcs.subscriptions.label, users_label=None if signup_inferred else srcs.users.label,
            until=until, until_configured=config.observed_until is not None)
        problems += p
        notes += n
    if problems:
        raise ContractError(problems)

    n_events = stats["n"]
    n_distinct = _scalar(events.distinct().count())
    n_dup = n_events - n_distinct
    for msg in notes:
        warnings.warn(msg, DataWarning, stacklevel=2)
    if n_dup:
        events = events.distinct()
        msg = f"{ev_label}: {n_dup:,} exact duplicate events dropped"
        notes.append(msg)
        warnings.warn(msg, DataWarning, stacklevel=2)
    latest = stats["max_ts"]
    if subscriptions is not None and config.observed_until is None:
        latest = max(latest, _scalar(subscriptions.start.max()))
    observed_until = config.observed_until or (latest + dt.timedelta(microseconds=1))
    return Dataset(
        config=config,
        con=con,
        events=events,
        users=users,
        campaigns=campaigns,
        observed_until=observed_until,
        signup_inferred=signup_inferred,
        n_events=n_distinct,
        n_users=_scalar(users.count()),
        n_duplicates=n_dup,
        warnings=notes,
        subscriptions=subscriptions,
    )


def _align_ids(tables: dict, srcs) -> tuple[dict, list[DataProblem]]:
    """Give ``user_id`` one type across the tables, whose ids are compared with each other.

    When some tables hold numbers and others text (a CSV column with one text id
    among numbers is read as text), text ids that are all integers are read as
    integers; any other text id is a problem, reported with an example.
    """
    present = {k: t for k, t in tables.items() if t is not None}
    text = [k for k, t in present.items() if t.schema()["user_id"].is_string()]
    numeric = [k for k in present if k not in text and present[k].schema()["user_id"].is_numeric()]
    if not text or not numeric:
        return tables, []
    other = getattr(srcs, numeric[0]).label
    out, problems = dict(tables), []
    for kind in text:
        t = present[kind]
        uid = t.user_id.strip()
        as_int = uid.try_cast("int64")
        bad = t.user_id.notnull() & (uid != "") & as_int.isnull()
        n_bad = _scalar(bad.sum())
        if n_bad:
            problems.append(DataProblem(getattr(srcs, kind).label, "user_id", n_bad,
                                        f"user ids that are not integers, while {other}'s are integers",
                                        _example(t, bad, "user_id")))
        else:
            out[kind] = t.mutate(user_id=as_int)
    return out, problems


def _check_users(users: ibis.Table, events: ibis.Table, label: str, ev_label: str) -> list[DataProblem]:
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
    known = users.select(uid="user_id", signup_ts="signup_ts")
    ev = events.select("user_id", "ts")
    j = ev.left_join(known, ev.user_id == known.uid)
    unknown = j.uid.isnull() & j.user_id.notnull()
    early = j.ts < j.signup_ts
    stats = j.aggregate(unknown=unknown.sum(), early=early.sum()).to_pyarrow().to_pylist()[0]
    if stats["unknown"]:
        problems.append(
            DataProblem(ev_label, "user_id", stats["unknown"], f"events of users missing from {label}",
                        _example(j, unknown, "user_id"))
        )
    if stats["early"]:
        problems.append(
            DataProblem(ev_label, "ts", stats["early"], "events before the user's signup_ts",
                        _example(j.mutate(e=j.user_id.cast("string") + " at " + j.ts.cast("string")), early, "e"))
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
