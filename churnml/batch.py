"""The nightly scoring job: features as of a date, champion models, the ranked recall list, atomically.

Exit codes of ``churnml score`` (for schedulers; see ``serving/README.md``):

====  ==============================================================
0     the list was written
2     bad input: config, data contract, arguments
3     no registered champion model (train and promote first)
4     stale data: no events in the hours before ``as_of``
5     the features differ from what the models were trained on
6     a list for that date exists (``--force`` replaces it)
====  ==============================================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from churnml.config import ScoreConfig, Settings, load_dataset_config, utc
from churnml.data import Dataset, open_dataset
from churnml.exceptions import ConfigError, OutputExistsError, StaleDataError
from churnml.features import build_features
from churnml.io import atomic_dir, write_json, write_parquet
from churnml.scoring import Scorer, recall_list

__all__ = ["EXIT_CODES", "ScoreJobResult", "score_job"]

LIST_FILE = "recall_list.parquet"
LIST_CSV = "recall_list.csv"
SCORES_FILE = "scores.parquet"
FEATURES_FILE = "features.parquet"
MANIFEST_FILE = "manifest.json"
CAMPAIGN_ROWS_FILE = "campaign_rows.parquet"

EXIT_CODES = {"ok": 0, "bad_input": 2, "model_not_found": 3, "stale_data": 4, "schema_mismatch": 5,
              "list_exists": 6}


@dataclass(frozen=True)
class ScoreJobResult:
    """Where the day's list went and what is in it."""

    folder: Path
    as_of: dt.datetime
    campaign_id: str
    counts: dict
    versions: dict
    top: pd.DataFrame


def _check_fresh(ds: Dataset, as_of: dt.datetime, hours: float) -> dt.datetime:
    ev = ds.events
    latest = ev.filter(ev.ts < as_of).ts.max().to_pyarrow().as_py()
    if latest is None:
        raise StaleDataError(f"no events before {as_of.isoformat()}: nothing to score")
    latest = utc(latest)
    if as_of - latest > dt.timedelta(hours=hours):
        raise StaleDataError(
            f"stale data: the latest event before {as_of.isoformat()} is from {latest.isoformat()} "
            f"({(as_of - latest).total_seconds() / 3600:.0f} hours earlier; at most {hours:g} allowed). "
            "Has the event export run?")
    return latest


def _opt_out(path: Path | None) -> set:
    if path is None:
        return set()
    if not path.is_file():
        raise ConfigError(f"opt-out list {path} not found")
    df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    if "user_id" not in df:
        raise ConfigError(f"opt-out list {path} has no 'user_id' column")
    return set(df["user_id"].astype(str)) | set(df["user_id"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def score_job(
    cfg: ScoreConfig,
    as_of: dt.datetime | str,
    *,
    force: bool = False,
    dataset: Dataset | None = None,
    scorer: Scorer | None = None,
    settings: Settings | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ScoreJobResult:
    """Score every user as of ``as_of`` and write the day's recall list.

    Writes ``<output>/<date>/`` as one unit (a temporary folder renamed into
    place): ``recall_list.parquet`` and ``.csv`` (the ranked list),
    ``scores.parquet`` (every scored user), ``features.parquet`` (the feature
    rows, which the API looks users up in) and ``manifest.json`` (models and
    versions, data window, counts per segment, config, SHA-256 of each file).
    With a multi-channel uplift model each user on the list gets one channel
    (:mod:`churnml.recall_channels`) and ``campaign_rows.parquet`` holds the
    list as campaign rows (``user_id, campaign_id, sent_ts, channel, treated,
    randomised``) to append to the campaigns table once sent.
    The same inputs give byte-identical files.

    Raises
    ------
    OutputExistsError
        A list for the date exists and ``force`` is false (checked first).
    StaleDataError, ModelNotFoundError, SchemaMismatchError, ContractError, ConfigError
        Nothing is written and earlier lists are untouched.
    """
    as_of = utc(as_of)
    folder = cfg.output / as_of.date().isoformat()
    if folder.exists() and not force:
        raise OutputExistsError(f"a recall list for {as_of.date()} exists at {folder}; pass --force to replace it")
    ds = dataset or open_dataset(load_dataset_config(cfg.dataset))
    latest = _check_fresh(ds, as_of, cfg.max_staleness_hours)
    scorer = scorer or Scorer.from_registry(churn_model=cfg.churn_model, uplift_model=cfg.uplift_model,
                                            alias=cfg.alias, settings=settings)
    if scorer.channels is not None:  # a multi-channel model: each user's channel by the configured costs
        from churnml.recall_channels import list_channels

        used = list_channels(cfg, scorer.channels)
        scorer = dataclasses.replace(scorer, costs={c: cfg.channel_cost(c) for c in used},
                                     value_per_user=cfg.value_per_user)
    log(f"models: {', '.join(f'{k} v{v}' for k, v in scorer.versions.items())}")
    fs = build_features(ds, as_of, event_types=scorer.event_types,
                        max_inactive_days=cfg.eligibility.lapsed_max_days)
    try:
        table = fs.table.to_pyarrow().sort_by("user_id")
    finally:
        fs.release()
    features = table.to_pandas()
    log(f"features: {len(features):,} users active in the {cfg.eligibility.lapsed_max_days} days before {as_of.date()}")
    if features.empty:
        raise StaleDataError(f"no user was active in the {cfg.eligibility.lapsed_max_days} days before "
                             f"{as_of.isoformat()} (the data ends {ds.observed_until.isoformat()}): nothing to score")
    where = f"features as of {as_of.date()}"
    scored = scorer.score(features, reasons=0, where=where)
    campaign_id = cfg.campaign_id.format(as_of=as_of.date().isoformat())
    lst, counts = recall_list(scored, features, cfg, campaign_id=campaign_id,
                              opt_out=_opt_out(cfg.exclusions.opt_out), channels=scorer.channels)
    if cfg.reasons:  # exact SHAP reasons for the users on the list (not for everyone scored)
        rows = features.set_index("user_id").loc[lst["user_id"]].reset_index()
        lst = pd.concat([lst, scorer.reasons(rows, top=cfg.reasons, where=where).set_axis(lst.index)], axis=1)
    lst.insert(2, "as_of", pd.Timestamp(as_of))
    with atomic_dir(folder, replace=force) as tmp:
        write_parquet(pa.Table.from_pandas(lst, preserve_index=False), tmp / LIST_FILE)
        lst.to_csv(tmp / LIST_CSV, index=False, float_format="%.6f")
        write_parquet(pa.Table.from_pandas(scored.reset_index(drop=True), preserve_index=False), tmp / SCORES_FILE)
        write_parquet(table, tmp / FEATURES_FILE)
        files = [LIST_FILE, LIST_CSV, SCORES_FILE, FEATURES_FILE]
        if scorer.channels is not None:  # the list as tomorrow's campaign rows (arm in `channel`)
            rows = lst[["user_id", "campaign_id", "channel", "treated", "randomised"]].assign(sent_ts=pd.Timestamp(as_of))
            write_parquet(pa.Table.from_pandas(rows, preserve_index=False), tmp / CAMPAIGN_ROWS_FILE)
            files.append(CAMPAIGN_ROWS_FILE)
        manifest = {
            "as_of": as_of.isoformat(), "campaign_id": campaign_id,
            "models": {k: {"version": v, "alias": cfg.alias} for k, v in scorer.versions.items()},
            "data": {"dataset": ds.config.name, "latest_event_before_as_of": latest.isoformat(),
                     "feature_window_days": max(ds.config.feature_windows_days),
                     "observed_until": ds.observed_until.isoformat()},
            "counts": counts,
            "config": cfg.model_dump(mode="json"),
            "files": {name: _sha256(tmp / name) for name in files},
        }
        write_json(manifest, tmp / MANIFEST_FILE)
    return ScoreJobResult(folder, as_of, campaign_id, counts, dict(scorer.versions), lst.head(10))


def read_manifest(folder: Path) -> dict:
    """The manifest of a list folder."""
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())
