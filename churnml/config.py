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
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from churnml.exceptions import ConfigError

__all__ = [
    "BudgetConfig",
    "ChannelConfig",
    "DatasetConfig",
    "DistinctCount",
    "PolicyConfig",
    "Settings",
    "SnapshotRule",
    "SourceConfig",
    "SourcesConfig",
    "TrainConfig",
    "get_settings",
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
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where one table comes from.

    Exactly one of ``path`` (a Parquet or CSV file, or a glob of them),
    ``table`` (a table in the DuckDB database ``database``) or ``query`` (SQL
    run against ``database``, or against an in-memory DuckDB) is given.
    ``columns`` renames source columns to contract names, e.g.
    ``{user_id: customer_id}``.
    """

    path: str | None = None
    table: str | None = None
    query: str | None = None
    database: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)

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
    """The three tables of the data contract; only ``events`` is required."""

    events: SourceConfig
    users: SourceConfig | None = None
    campaigns: SourceConfig | None = None


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
        Churned = eligible and no activity in ``[as_of, as_of + horizon_days)``.
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

    @model_validator(mode="after")
    def _ordered_snapshots(self):
        rule = self.snapshots
        if isinstance(rule, SnapshotRule) and rule.start > rule.end:
            raise ValueError(f"snapshots: start {rule.start.date()} is after end {rule.end.date()}")
        return self

    def snapshot_instants(self) -> list[dt.datetime]:
        """The configured snapshot instants (empty if none are configured)."""
        if self.snapshots is None:
            return []
        if isinstance(self.snapshots, SnapshotRule):
            return self.snapshots.instants()
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
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    raw = raw.get(section, raw)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            if e["loc"] else f"{path}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None


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
        update={k: _resolve(getattr(cfg.sources, k), base) for k in ("events", "users", "campaigns")}
    )
    return cfg.model_copy(update={"sources": sources})


class SplitConfig(_Strict):
    """How many of the latest labelled snapshots validate and test (see :func:`churnml.models.split.time_split`)."""

    valid_snapshots: PositiveDays = 1
    test_snapshots: PositiveDays = 1


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
        Registered models and the alias to load (``champion``).
    eligibility, exclusions, budget
    value_per_user : float
        Value of one returned user; priority = uplift x value - cost of the message.
    contact_cost : float
        Cost of one message (of a channel without its own cost); users whose
        expected gain does not cover it are left out.
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
    uplift_model: str = "recall-uplift"
    alias: str = "champion"
    eligibility: EligibilityConfig = Field(default_factory=EligibilityConfig)
    exclusions: ExclusionConfig = Field(default_factory=ExclusionConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    value_per_user: Annotated[float, Field(gt=0)] = 1.0
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
