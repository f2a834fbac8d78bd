"""Typed configuration schemas (types and defaults, no job values).

The dataset configuration says where the event log is, which columns play
which role, which event types count as activity, and every window the
features and labels use. Defaults fit the embedded simulator, but nothing in
the pipeline depends on the simulator's event names: every per-event feature
is generated from ``event_types`` (or from the event types found in the data).

Job values live in YAML files in ``features/``, ``training/`` and ``serving/``
and are loaded with :func:`load_dataset_config`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import string
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from churnml.exceptions import ConfigError

__all__ = [
    "BacktestConfig",
    "BudgetConfig",
    "ChannelConfig",
    "ChurnConfig",
    "DatasetConfig",
    "DistinctCount",
    "PolicyConfig",
    "Settings",
    "SnapshotRule",
    "SourceConfig",
    "SourcesConfig",
    "TrainConfig",
    "get_settings",
    "RefitConfig",
    "ScoreConfig",
    "load_dataset_config",
    "load_score_config",
    "load_train_config",
    "utc",
]

PositiveDays = Annotated[int, Field(gt=0)]


def utc(value: dt.datetime | dt.date | str) -> dt.datetime:
    """Return ``value`` as a timezone-aware UTC datetime.

    Dates become midnight UTC; naive datetimes are taken to be UTC.

    Examples
    --------
    >>> utc("2024-03-01")
    datetime.datetime(2024, 3, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, bool) or not isinstance(value, dt.date):
        raise ValueError(f"expected a date or an ISO datetime such as 2024-04-30, got {value!r}")
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    offset = value.utcoffset()
    if abs(offset) > MAX_UTC_OFFSET:
        raise ValueError(f"UTC offset {_offset_text(offset)} of {value.isoformat()} is outside ±14:00; "
                         "no time zone is that far from UTC")
    return value.astimezone(dt.UTC)


# The farthest any time zone is from UTC (Kiribati, +14:00; the farthest west is -12:00).
MAX_UTC_OFFSET = dt.timedelta(hours=14)


def _offset_text(offset: dt.timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _bool_as_number(value, annotation) -> bool:
    """Whether ``value`` holds a boolean (also inside lists and mappings) where ``annotation`` wants a number.

    YAML reads ``true`` as a boolean, and Python counts booleans as the integers 1 and 0: without
    this check ``horizon_days: true`` became a one-day horizon.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _bool_as_number(value, args[0])
    if origin in (typing.Union, types.UnionType):
        if any(a is bool for a in args):
            return False
        return any(_bool_as_number(value, a) for a in args if a is not type(None))
    if isinstance(value, bool):
        return annotation in (int, float)
    if origin is list and isinstance(value, list) and args:
        return any(_bool_as_number(v, args[0]) for v in value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return any(_bool_as_number(v, args[1]) for v in value.values())
    return False


class _Strict(BaseModel):
    """Base of every config section: unknown keys are refused (naming them) and so are booleans given
    for numbers; values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value, info: ValidationInfo):
        field = cls.model_fields.get(info.field_name)
        if field is not None and _bool_as_number(value, field.annotation):
            got = "the boolean" if isinstance(value, bool) else "a boolean in"
            raise ValueError(f"must be a number, got {got} {json.dumps(value, default=str)}")
        return value


class SourceConfig(_Strict):
    """Where one table comes from.

    Exactly one of ``path`` (a Parquet or CSV file, or a glob of them),
    ``table`` (a table in the DuckDB database ``database``) or ``query`` (SQL
    run against ``database``, or against an in-memory DuckDB) is given.
    ``columns`` renames source columns to contract names, e.g.
    ``{user_id: customer_id}``. ``event_type`` gives every row that event
    type, for a log of one kind of event without an event column (a purchase
    log); it is an error if the table has an ``event`` column too.
    """

    path: str | None = None
    table: str | None = None
    query: str | None = None
    database: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    event_type: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> SourceConfig:
        given = [k for k in ("path", "table", "query") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "The `source` parameter of `SourceConfig` must name exactly one of "
                f"path, table or query. Got {given or 'none'} instead."
            )
        if self.table and not self.database:
            raise ValueError("A `table` source needs `database` (a DuckDB file).")
        return self

    @property
    def label(self) -> str:
        """Short human name of the source, used in error messages."""
        if self.path:
            return Path(self.path).name
        if self.table:
            return f"{Path(self.database or '').name}:{self.table}"
        return "query"


class SourcesConfig(_Strict):
    """The tables of the data contract; only ``events`` is required.

    ``subscriptions`` (``user_id, start, end``; optional ``plan, price,
    period_days, discount``) is needed by the ``subscription`` churn
    definition and adds subscription features to any definition.
    """

    events: SourceConfig
    users: SourceConfig | None = None
    campaigns: SourceConfig | None = None
    subscriptions: SourceConfig | None = None

    def named(self) -> dict[str, SourceConfig]:
        """The configured sources by table name, in contract order."""
        return {k: getattr(self, k) for k in ("events", "users", "campaigns", "subscriptions")
                if getattr(self, k) is not None}


class ChurnConfig(_Strict):
    """What churn means for this product (``DatasetConfig.churn``).

    Parameters
    ----------
    definition : {"inactivity", "subscription", "event"}
        ``inactivity`` (default): an eligible user with no activity event in
        ``[as_of, as_of + horizon_days)``. ``subscription``: a user covered by
        a subscription at ``as_of`` whose coverage ends in
        ``[as_of, as_of + horizon_days)`` and does not start again within
        ``grace_days``. ``event``: an eligible user (not already churned) with
        one of ``events`` in ``[as_of, as_of + horizon_days)``. See
        :mod:`churnml.features.labels` for the exact rules.
    events : list of str, optional
        The explicit churn event types (``cancel``, ``uninstall``, ...); only
        for ``event``, and required there.
    grace_days : int
        Only for ``subscription``: a new subscription starting at most this
        many days after coverage ends continues it (a renewal paid late, a
        plan switch); a longer gap is churn. Labels need ``grace_days`` of
        data after the horizon.
    """

    definition: Literal["inactivity", "subscription", "event"] = "inactivity"
    events: list[str] | None = None
    grace_days: Annotated[int, Field(ge=0)] = 7

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"definition": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _fits_definition(self) -> ChurnConfig:
        if self.definition == "event" and not self.events:
            raise ValueError("churn: definition `event` needs `events`, the churn event types "
                             "(e.g. [cancel, uninstall])")
        if self.definition != "event" and self.events is not None:
            raise ValueError(f"churn: `events` is only used by definition `event`, not `{self.definition}`")
        return self


class SnapshotRule(_Strict):
    """A regular series of snapshot instants: ``start``, ``start + every_days``, ... ``<= end``."""

    start: dt.datetime
    end: dt.datetime
    every_days: PositiveDays = 7

    @field_validator("start", "end", mode="before")
    @classmethod
    def _to_utc(cls, v):
        return utc(v)

    def instants(self) -> list[dt.datetime]:
        """All snapshot instants of the rule, in order."""
        out, t = [], self.start
        while t <= self.end:
            out.append(t)
            t += dt.timedelta(days=self.every_days)
        return out


class DistinctCount(_Strict):
    """A distinct-count feature over a column, e.g. communities joined so far.

    ``events`` restricts the count to some event types (all if omitted);
    ``window_days`` restricts it to the last N days (all history if omitted).
    """

    name: str
    column: str
    events: list[str] | None = None
    window_days: PositiveDays | None = None
    description: str | None = None


class DatasetConfig(_Strict):
    """Everything the pipeline needs to know about one event log.

    Parameters
    ----------
    name : str
        Short name of the dataset, used in reports and output paths.
    sources : SourcesConfig
        Where events, users and campaigns come from (paths are relative to the
        config file).
    event_types : list of str, optional
        Event types that get per-event features. If omitted, the event types
        found in the data (before the snapshot) are used, sorted by name.
    activity_events : list of str, optional
        Event types that count as activity for eligibility, labels and
        active days. All event types if omitted.
    eligibility_days : int
        A user is eligible at ``as_of`` if signed up before it and active in
        ``[as_of - eligibility_days, as_of)``.
    horizon_days : int
        The label looks at ``[as_of, as_of + horizon_days)``; with the default
        churn definition, churned = eligible and no activity in it.
    churn : ChurnConfig
        The churn definition: ``inactivity`` (default), ``subscription`` or
        ``event``. A bare name (``churn: subscription``) is accepted.
    snapshots : SnapshotRule or list of datetime
        Snapshot instants for stacked training sets.
    feature_windows_days : list of int
        Trailing windows for counts and active days.
    onboarding_days : int
        Length of the onboarding window after signup.
    response_window_days : int
        A recall exposure "responded" if activity follows within this many days.
    control_channel : str
        The ``channel`` value of control (not contacted) rows in the campaigns
        table; validated tables call it ``control``.
    distinct_counts : list of DistinctCount
        Distinct-count features (items, communities, ...).
    sum_columns : list of str
        Numeric event columns summed per window (e.g. ``amount``).
    observed_until : datetime, optional
        Exclusive end of the period the log covers. Events at or after it are
        an input error; labels need ``as_of + horizon <= observed_until``.
        Defaults to just after the latest event.
    timezone : str
        IANA time zone of the product's calendar (default ``"UTC"``). Naive
        timestamps, in the data and in this config (snapshots,
        ``observed_until``), are wall-clock times in this zone; "days" (active
        days, gaps, onboarding days, windows of ``w`` days) are calendar dates
        in it. See the README's time semantics.
    duplicates : {"drop", "keep"}
        What to do with exact duplicate events (every column equal): ``drop``
        keeps one of each (the default, as before) and warns; ``keep`` counts
        every copy (date-only purchase logs, where two equal rows are two
        purchases) and says how many there are. Either way they are counted.
    horizons_days : list of int, optional
        Extra horizons (days) for which each user gets a probability of
        churning within that many days (``p_churn_<h>d``), monotone in the
        horizon, longer horizons than the data can label included (a
        discrete-time hazard model, see :mod:`churnml.models.horizons`).
    """

    name: str = "dataset"
    sources: SourcesConfig
    event_types: list[str] | None = None
    activity_events: list[str] | None = None
    eligibility_days: PositiveDays = 30
    horizon_days: PositiveDays = 14
    snapshots: SnapshotRule | list[dt.datetime] | None = None
    feature_windows_days: list[PositiveDays] = Field(default_factory=lambda: [1, 7, 14, 30])
    onboarding_days: PositiveDays = 7
    response_window_days: PositiveDays = 7
    control_channel: str = Field("control", min_length=1)
    distinct_counts: list[DistinctCount] = Field(default_factory=list)
    sum_columns: list[str] = Field(default_factory=list)
    observed_until: dt.datetime | None = None
    engine: Literal["duckdb", "pyspark"] = "duckdb"
    timezone: str = "UTC"
    duplicates: Literal["drop", "keep"] = "drop"
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    horizons_days: list[PositiveDays] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from churnml.clock import Clock

        Clock(v)  # raises ValueError with the allowed form
        return v

    @model_validator(mode="before")
    @classmethod
    def _local_instants(cls, data):
        # Naive instants in the config are wall-clock times of the dataset's zone; make them aware
        # here, before the field validators (which take naive values as UTC) see them.
        if not isinstance(data, dict) or data.get("timezone", "UTC") == "UTC":
            return data
        from churnml.clock import Clock

        try:
            clock = Clock(data["timezone"])
        except ValueError:
            return data  # reported by the field validator
        def local(v):
            try:
                return clock.localize(v)
            except (ValueError, TypeError, AttributeError):
                return v  # not an instant: the field validator says so

        data = dict(data)
        if data.get("observed_until") is not None:
            data["observed_until"] = local(data["observed_until"])
        snaps = data.get("snapshots")
        if isinstance(snaps, list):
            data["snapshots"] = [local(v) for v in snaps]
        elif isinstance(snaps, dict):
            data["snapshots"] = {k: local(v) if k in ("start", "end") else v for k, v in snaps.items()}
        return data

    @field_validator("observed_until", mode="before")
    @classmethod
    def _until_utc(cls, v):
        return None if v is None else utc(v)

    @field_validator("snapshots", mode="before")
    @classmethod
    def _list_utc(cls, v):
        if isinstance(v, list):
            return [utc(x) for x in v]
        return v

    @field_validator("feature_windows_days")
    @classmethod
    def _sorted_windows(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("`feature_windows_days` must list at least one window.")
        return sorted(set(v))

    @field_validator("horizons_days")
    @classmethod
    def _sorted_horizons(cls, v: list[int] | None) -> list[int] | None:
        return None if not v else sorted(set(v))

    @model_validator(mode="after")
    def _ordered_snapshots(self):
        rule = self.snapshots
        if isinstance(rule, SnapshotRule) and rule.start > rule.end:
            raise ValueError(f"snapshots: start {rule.start.date()} is after end {rule.end.date()}")
        if self.churn.definition == "subscription" and self.sources.subscriptions is None:
            raise ValueError("churn: definition `subscription` needs a `subscriptions` source "
                             "(sources: subscriptions: {path: ...}; columns user_id, start, end)")
        return self

    def snapshot_instants(self) -> list[dt.datetime]:
        """The configured snapshot instants (empty if none are configured)."""
        if self.snapshots is None:
            return []
        if isinstance(self.snapshots, SnapshotRule):
            if self.timezone == "UTC":
                return self.snapshots.instants()
            # Steps of whole calendar days in the dataset's zone: the same wall-clock time each time,
            # across daylight-saving changes.
            from churnml.clock import Clock

            rule, clock = self.snapshots, Clock(self.timezone)
            start, end = clock.wall_us(rule.start), clock.wall_us(rule.end)
            step = rule.every_days * 86_400_000_000
            return [clock.from_wall_us(w) for w in range(start, end + 1, step)]
        return sorted(self.snapshots)


def _resolve(source: SourceConfig | None, base: Path) -> SourceConfig | None:
    if source is None:
        return None
    updates = {}
    if source.path and not Path(source.path).is_absolute():
        updates["path"] = str((base / source.path).resolve())
    if source.database and not Path(source.database).is_absolute():
        updates["database"] = str((base / source.database).resolve())
    return source.model_copy(update=updates)


def _read_config(path: Path, schema: type[BaseModel], section: str):
    """Read a YAML file and validate it (or its ``section``) against ``schema``; one line per problem."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the config file (YAML) inside it")
    try:
        raw = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          "save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"{path}: not valid YAML{where} ({what})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    raw = raw.get(section, raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings under '{section}', got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {_where(e['loc'])}: {_message(e)}" if _where(e["loc"]) else f"{path}: {_message(e)}"
                 for e in _distinct_errors(exc.errors())]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


# Errors that only say "this value is not the other shape a field may take" (a mapping given where
# a list would also do): beside the error about the shape it does have, they are noise.
_SHAPE_ERRORS = {"list_type", "dict_type", "model_type", "model_attributes_type", "is_instance_of"}


def _distinct_errors(errors: list[dict]) -> list[dict]:
    """One error per problem: drop a union member's shape mismatch when the field has a real error."""
    def field(e):
        return tuple(str(p) for p in e["loc"][:1])

    real = {field(e) for e in errors if e["type"] not in _SHAPE_ERRORS}
    out, shaped = [], set()
    for e in errors:
        if e["type"] in _SHAPE_ERRORS:
            if field(e) in real or field(e) in shaped:
                continue
            shaped.add(field(e))
        out.append(e)
    return out


def _where(loc: tuple) -> str:
    """A validation error's location as the keys of the YAML file (without pydantic's union member names)."""
    models = {c.__name__ for c in _Strict.__subclasses__()}
    keys = [str(p) for p in loc if not (isinstance(p, str) and (p in models or "[" in p))]
    return ".".join(keys)


def _message(error: dict) -> str:
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key (not a setting here; check its spelling and indentation)"
    return msg


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Read and validate a dataset config (YAML), resolving paths against its folder.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or does not validate; the message
        names the file and every invalid field.
    """
    path = Path(path)
    cfg = _read_config(path, DatasetConfig, "dataset")
    base = path.parent
    sources = cfg.sources.model_copy(
        update={k: _resolve(v, base) for k, v in cfg.sources.named().items()}
    )
    return cfg.model_copy(update={"sources": sources})


class SplitConfig(_Strict):
    """How many of the latest labelled snapshots validate and test (see :func:`churnml.models.split.time_split`)."""

    valid_snapshots: PositiveDays = 1
    test_snapshots: PositiveDays = 1


class BacktestConfig(_Strict):
    """The rolling backtest of a churn run (see :mod:`churnml.models.backtest`).

    Parameters
    ----------
    folds : int
        Cut-offs: the latest labelled snapshots whose label windows do not
        overlap (fewer when the history is short).
    """

    folds: Annotated[int, Field(ge=1, le=12)] = 3


class RefitConfig(_Strict):
    """The production refit on every labelled snapshot (see :mod:`churnml.models.refit`).

    Parameters
    ----------
    tree_exponent : float
        The refit grows ``trees * (rows / early-stopping rows) ** tree_exponent``
        trees, ``trees`` being what early stopping chose on the inner split
        (0 = no scaling, 1 = proportional to the rows).
    """

    tree_exponent: Annotated[float, Field(ge=0, le=1)] = 0.25


class TuningConfig(_Strict):
    """The Optuna study.

    Parameters
    ----------
    trials : int
        Trials to run (0 = no tuning: the fixed ``lightgbm.params``).
    timeout_seconds : float, optional
        Stop starting new trials after this long.
    storage : str, optional
        Optuna storage URL; default ``sqlite:///<mlruns_dir>/optuna.db``.
    study_name : str, optional
        Name of the study to resume or extend; default a new study per run.
    pruning : bool
        Stop unpromising trials early (median rule on validation loss).
    max_rows : int, optional
        Trials fit on at most this many training rows (a seeded sample); the
        final model uses all of them.
    """

    trials: Annotated[int, Field(ge=0)] = 30
    timeout_seconds: Annotated[float, Field(gt=0)] | None = 600
    storage: str | None = None
    study_name: str | None = None
    pruning: bool = True
    max_rows: Annotated[int, Field(gt=0)] | None = 300_000


class BoosterConfig(_Strict):
    """LightGBM settings: rounds, early stopping and the fixed parameters (tuned ones override them)."""

    num_boost_round: Annotated[int, Field(gt=0)] = 1000
    early_stopping_rounds: Annotated[int, Field(gt=0)] = 50
    params: dict = Field(default_factory=lambda: {
        "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 100, "feature_fraction": 0.8,
        "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "max_bin": 255,
    })


class GateConfig(_Strict):
    """Champion/challenger gate: promote when ``challenger >= champion - margin`` on ``metric``."""

    metric: str | None = None
    margin: Annotated[float, Field(ge=0)] = 0.0


class ChannelConfig(_Strict):
    """One recall channel of a multi-channel list.

    Parameters
    ----------
    cost : float, optional
        Cost of one message by this channel, in the unit of ``value_per_user``;
        ``contact_cost`` if omitted.
    max_contacts : int, optional
        Most messages by this channel per list (a provider's cap); no cap if omitted.
    """

    cost: Annotated[float, Field(ge=0)] | None = None
    max_contacts: Annotated[int, Field(ge=0)] | None = None


def _check_channel_names(channels: dict) -> dict:
    bad = [n for n in channels if not str(n).strip() or str(n).strip().lower() == "control"]
    if bad:
        raise ValueError(f"channel names must be non-empty and not 'control' (the arm of users not "
                         f"contacted). Got {bad[0]!r}")
    return channels


class PolicyConfig(_Strict):
    """How the uplift job values channel assignments on the test campaign (multi-channel models).

    Every policy compared (the learned assignment, one channel for everyone,
    random channels, churn-risk ranking) gets the same budget and costs.

    Parameters
    ----------
    value_per_user : float
        Value of one return.
    channels : dict of str to ChannelConfig
        Cost of a message per channel (channels not listed cost 0); caps are not used here.
    contact_share : float
        At most this share of the test exposures may be messaged.
    cost_per_user : float, optional
        Money per test exposure: at most ``cost_per_user * n`` is spent.
    """

    value_per_user: Annotated[float, Field(gt=0)] = 1.0
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    contact_share: Annotated[float, Field(gt=0, le=1)] = 0.3
    cost_per_user: Annotated[float, Field(ge=0)] | None = None

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, v: dict) -> dict:
        return _check_channel_names(v)

    def cost(self, name: str) -> float:
        """The cost of one message by channel ``name`` (0 if not listed)."""
        own = self.channels.get(name)
        return 0.0 if own is None or own.cost is None else own.cost


class TrainConfig(_Strict):
    """A training job (``training/churn.yaml``, ``training/uplift.yaml``).

    Parameters
    ----------
    kind : {"churn", "uplift"}
    dataset : path
        The dataset config the training data comes from.
    training_set : path, optional
        A training set already built by ``churnml features build`` (else built
        from ``dataset``'s snapshots).
    truth : path, optional
        The simulator's ``truth/churn.parquet`` (or ``exposures.parquet``):
        adds the oracle baseline.
    experiment, registered_model : str, optional
        MLflow names; default ``churn-risk`` / ``recall-uplift`` by kind.
    seed : int
    split, tuning, lightgbm, gate
        For churn, ``split.valid_snapshots`` is the recipe's inner validation
        part; the backtest's cut-offs replace ``split.test_snapshots``.
    backtest, refit
        Churn only: the rolling backtest and the production refit.
    calibration : {"auto", "isotonic", "sigmoid", "none"}
    min_class_count : int
        Fewer churned or retained training rows than this is an error.
    exclude_features : list of str
        Columns never used as inputs.
    policy : PolicyConfig
        Value, channel costs and budget with which a multi-channel uplift
        model's assignment is compared with simpler policies.
    """

    kind: Literal["churn", "uplift"] = "churn"
    dataset: Path
    training_set: Path | None = None
    truth: Path | None = None
    experiment: str | None = None
    registered_model: str | None = None
    seed: int = 42
    split: SplitConfig = Field(default_factory=SplitConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    refit: RefitConfig = Field(default_factory=RefitConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    lightgbm: BoosterConfig = Field(default_factory=BoosterConfig)
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    min_class_count: Annotated[int, Field(gt=0)] = 50
    exclude_features: list[str] = Field(default_factory=list)
    gate: GateConfig = Field(default_factory=GateConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    source: Path | None = Field(default=None, exclude=True)

    @property
    def model_name(self) -> str:
        return self.registered_model or {"churn": "churn-risk", "uplift": "recall-uplift"}[self.kind]

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.model_name


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config, resolving its paths against its folder.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or does not validate.
    """
    path = Path(path)
    cfg = _read_config(path, TrainConfig, "training")
    base = path.parent
    fix = {k: (base / getattr(cfg, k)).resolve() for k in ("dataset", "training_set", "truth")
           if getattr(cfg, k) is not None and not getattr(cfg, k).is_absolute()}
    return cfg.model_copy(update={**fix, "source": path.resolve()})


class EligibilityConfig(_Strict):
    """Who may be on the recall list: recently lapsed users, and active users at risk."""

    lapsed_min_days: PositiveDays = 7
    lapsed_max_days: PositiveDays = 60
    at_risk_min_p_churn: Annotated[float, Field(ge=0, le=1)] = 0.5


class ExclusionConfig(_Strict):
    """Who is never on the list: recently contacted users, and an opt-out list (Parquet or CSV, ``user_id``)."""

    contacted_within_days: Annotated[int, Field(ge=0)] = 14
    opt_out: Path | None = None


class BudgetConfig(_Strict):
    """The list's budget: users selected (holdout included) and, optionally, money spent on messages.

    ``max_contacts=None`` selects every user with a positive priority;
    ``max_cost`` caps the summed cost of the messages sent (multi-channel lists).
    """

    max_contacts: Annotated[int, Field(gt=0)] | None = 1000
    max_cost: Annotated[float, Field(ge=0)] | None = None


class ScoreConfig(_Strict):
    """The nightly scoring job (``serving/batch.yaml``).

    Parameters
    ----------
    dataset : path
        The dataset config of the event log to score.
    output : path
        Folder of the lists; each day goes to ``<output>/<as_of date>/``.
    churn_model, uplift_model, alias : str
        Registered models and the alias to load (``champion``). ``uplift_model``
        null: no uplift model is loaded and the list is ranked by churn risk.
    ranking : {"auto", "uplift", "risk"}
        ``uplift``: rank by expected incremental returns (uplift x value); no
        registered uplift model is an error (exit 3). ``risk``: rank by churn
        risk x value, the list a team gets before any randomised campaign.
        ``auto`` (default): by uplift when the uplift model is registered,
        otherwise by risk, with a warning.
    eligibility, exclusions, budget
    value_per_user : float
        Value of one returned user; priority = uplift x value - cost of the message
        (or p_churn x value when ranked by risk).
    value_column : str, optional
        A per-user value column of the feature rows (a spend feature such as
        ``sum_amount_all``, or a users-table attribute) used as each user's
        value instead of ``value_per_user``; missing or negative values count 0.
    contact_cost : float
        Cost of one message (of a channel without its own cost); users whose
        expected gain does not cover it are left out (uplift ranking only:
        churn risk says nothing about what a contact gains).
    channels : dict of str to ChannelConfig
        Multi-channel lists (an uplift model learned from campaigns with several
        channels): the channels to use, each with its cost and optional cap.
        Empty: every channel the model knows, at ``contact_cost``. Names are
        the campaigns table's ``channel`` values.
    holdout_share : float
        Share of the selected users held out at random (not contacted), per user and campaign.
    campaign_id : str
        Campaign name; ``{as_of}`` is replaced by the date.
    channel : str, optional
        A channel column value written on every row (e.g. ``push``).
    reasons : int
        Reasons per user on the list.
    max_staleness_hours : float
        The job refuses to score if the latest event is older than this before ``as_of``.
    """

    dataset: Path
    output: Path = Path("../out/lists")
    churn_model: str = "churn-risk"
    uplift_model: str | None = "recall-uplift"
    alias: str = "champion"
    ranking: Literal["auto", "uplift", "risk"] = "auto"
    eligibility: EligibilityConfig = Field(default_factory=EligibilityConfig)
    exclusions: ExclusionConfig = Field(default_factory=ExclusionConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    value_per_user: Annotated[float, Field(gt=0)] = 1.0
    value_column: str | None = None
    contact_cost: Annotated[float, Field(ge=0)] = 0.0
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    holdout_share: Annotated[float, Field(ge=0, lt=1)] = 0.1
    campaign_id: str = "recall-{as_of}"
    channel: str | None = None
    reasons: Annotated[int, Field(ge=0, le=3)] = 3
    max_staleness_hours: Annotated[float, Field(gt=0)] = 24.0
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, v: dict) -> dict:
        return _check_channel_names(v)

    def channel_cost(self, name: str) -> float:
        """The cost of one message by channel ``name`` (its own, else ``contact_cost``)."""
        own = self.channels.get(name)
        return self.contact_cost if own is None or own.cost is None else own.cost
    @field_validator("campaign_id")
    @classmethod
    def _known_placeholders(cls, v: str) -> str:
        # Checked when the config is read, not after the night's scoring work (a KeyError then).
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(v) if name is not None]
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a valid template ({exc}); write braces as {{{{ and }}}}") from None
        unknown = [n for n in names if n != "as_of"]
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}} in {v!r}; the only placeholder is {{as_of}} "
                             "(the scoring date)")
        try:
            v.format(as_of="2024-04-30")
        except (ValueError, LookupError) as exc:  # a format spec or conversion the date text refuses
            raise ValueError(f"{v!r} cannot be filled in with the date ({exc})") from None
        return v

    @model_validator(mode="after")
    def _uplift_named(self) -> ScoreConfig:
        if self.ranking == "uplift" and not self.uplift_model:
            raise ValueError("ranking: uplift needs an uplift_model (or ranking: risk / auto)")
        return self


def load_score_config(path: str | Path) -> ScoreConfig:
    """Read and validate a scoring config, resolving its paths against its folder.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or does not validate.
    """
    path = Path(path)
    cfg = _read_config(path, ScoreConfig, "scoring")
    base = path.parent
    fix = {"dataset": (base / cfg.dataset).resolve(), "output": (base / cfg.output).resolve()}
    if cfg.exclusions.opt_out is not None:
        fix["exclusions"] = cfg.exclusions.model_copy(update={"opt_out": (base / cfg.exclusions.opt_out).resolve()})
    return cfg.model_copy(update={**fix, "source": path.resolve()})


class Settings(BaseSettings):
    """Runtime settings, from the environment (prefix ``CHURNML_``) or a ``.env`` file.

    Parameters
    ----------
    duckdb_memory_limit : str
        DuckDB's memory limit (e.g. ``"3GB"``); beyond it DuckDB spills to
        ``duckdb_temp_directory``. Keeps a nightly job inside its memory budget.
    duckdb_threads : int, optional
        Worker threads for DuckDB (all cores if unset).
    duckdb_temp_directory : str, optional
        Where DuckDB spills (DuckDB's default if unset).
    mlflow_tracking_uri : str, optional
        Where MLflow tracks runs and the model registry. Unset: the standard
        ``MLFLOW_TRACKING_URI`` variable, else a local store in ``mlruns_dir``
        (``sqlite:///mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``).
    mlruns_dir : str
        Folder of the default local MLflow store.
    threads : int, optional
        Threads for LightGBM (all cores if unset).
    """

    model_config = SettingsConfigDict(env_prefix="CHURNML_", env_file=".env", extra="ignore")

    duckdb_memory_limit: str = "3GB"
    duckdb_threads: Annotated[int, Field(gt=0)] | None = None
    duckdb_temp_directory: str | None = None
    mlflow_tracking_uri: str | None = None
    mlruns_dir: str = "mlruns"
    threads: Annotated[int, Field(gt=0)] | None = None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
