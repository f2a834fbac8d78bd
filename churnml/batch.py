"""The nightly scoring job: features as of a date, champion models, the ranked recall list, atomically.

Exit codes of ``churnml score`` (for schedulers; see ``serving/README.md``):

====  ==============================================================
0     the list was written
2     bad input: config, data contract, arguments
3     no registered champion model (train and promote first)
4     stale data: no events in the hours before ``as_of``
5     the features differ from what the models were trained on
6     a list for that date exists (``--force`` replaces it), or another
      run is writing it
7     the list could not be written (disk full, read-only or no
      permission); nothing was changed
====  ==============================================================

A list is published atomically (:func:`churnml.io.atomic_dir`):
``<output>/<date>`` is a symbolic link to a hidden folder beside it, swapped
in one ``rename``, so there is always a complete list for the date (the old
one until the new one is in place) and never a half-written one. One run at a
time writes a date (:func:`churnml.io.try_lock`); whatever an interrupted run
left behind (``kill -9``) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from churnml.config import ScoreConfig, Settings, load_dataset_config, utc
from churnml.data import Dataset, open_dataset
from churnml.exceptions import (
    ConfigError,
    DataWarning,
    OutputExistsError,
    OutputWriteError,
    StaleDataError,
    storage_problem,
)
from churnml.features import build_features
from churnml.io import atomic_dir, sweep, try_lock, write_json, write_parquet
from churnml.scoring import RANKED_BY_RISK, RANKED_BY_UPLIFT, Scorer, recall_list

__all__ = ["EXIT_CODES", "ScoreJobResult", "score_job"]

LIST_FILE = "recall_list.parquet"
LIST_CSV = "recall_list.csv"
SCORES_FILE = "scores.parquet"
FEATURES_FILE = "features.parquet"
MANIFEST_FILE = "manifest.json"
CAMPAIGN_ROWS_FILE = "campaign_rows.parquet"

EXIT_CODES = {"ok": 0, "bad_input": 2, "model_not_found": 3, "stale_data": 4, "schema_mismatch": 5,
              "list_exists": 6, "cannot_write": 7}
# How long a run waits for the date's lock: long enough for another run's sweep of leftovers (a
# moment), far shorter than another run writing the list.
LOCK_WAIT_SECONDS = 2.0
_HIDDEN_DAY = re.compile(r"^\.(\d{4}-\d{2}-\d{2})\.")


@dataclass(frozen=True)
class ScoreJobResult:
    """Where the day's list went and what is in it."""

    folder: Path
    as_of: dt.datetime
    campaign_id: str
    counts: dict
    versions: dict
    top: pd.DataFrame
    ranking: dict | None = None


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


def ranking_note(cfg: ScoreConfig, scorer: Scorer) -> dict:
    """How the list will be ranked and why, for the manifest and the summary.

    Returns ``{"by": "uplift" | "churn_risk", "why": ..., "note": ...}``; ``why`` is
    ``uplift_model``, ``configured`` (``ranking: risk`` or no ``uplift_model``)
    or ``auto_no_uplift_model`` (``ranking: auto`` and none registered).
    """
    value = f"{cfg.value_column} (per user)" if cfg.value_column else f"value_per_user {cfg.value_per_user:g}"
    if scorer.uplift is not None and cfg.ranking != "risk":
        if scorer.channels is not None:
            return {"by": RANKED_BY_UPLIFT, "why": "uplift_model", "value": value,
                    "note": f"one channel per user, ranked by expected incremental value net of the channel's cost "
                            f"(uplift x {value} - cost)"}
        return {"by": RANKED_BY_UPLIFT, "why": "uplift_model", "value": value,
                "note": f"ranked by expected incremental returns (uplift x {value})"}
    configured = cfg.ranking == "risk" or not cfg.uplift_model
    why = "configured" if configured else "auto_no_uplift_model"
    cause = ("as configured" if configured else
             f"no uplift model '{cfg.uplift_model}' with alias '{cfg.alias}' is registered")
    return {"by": RANKED_BY_RISK, "why": why, "value": value,
            "note": f"ranked by churn risk x {value}, not by uplift ({cause}); the random holdout makes this "
                    "list a randomised campaign the uplift model can later learn from"}


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

    Writes ``<output>/<date>/`` as one unit (a link to a complete hidden
    folder, swapped in one step; see the module docstring): ``recall_list.parquet`` and ``.csv`` (the ranked list),
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
        A list for the date exists and ``force`` is false, or another run is
        writing the date's list (both checked first).
    OutputWriteError
        The disk is full (or read-only): nothing was changed.
    StaleDataError, ModelNotFoundError, SchemaMismatchError, ContractError, ConfigError
        Nothing is written and earlier lists are untouched.
    """
    as_of = utc(as_of)
    folder = cfg.output / as_of.date().isoformat()
    with _date_lock(folder):
        if folder.exists() and not force:
            raise OutputExistsError(f"a recall list for {as_of.date()} exists at {folder}; pass --force to replace it")
        _sweep_leftovers(folder, log)
        return _score_locked(cfg, as_of, folder, force=force, dataset=dataset, scorer=scorer, settings=settings,
                             log=log)


def _score_locked(cfg: ScoreConfig, as_of: dt.datetime, folder: Path, *, force: bool, dataset: Dataset | None,
                  scorer: Scorer | None, settings: Settings | None, log: Callable[[str], None]) -> ScoreJobResult:
    ds = dataset or open_dataset(load_dataset_config(cfg.dataset))
    latest = _check_fresh(ds, as_of, cfg.max_staleness_hours)
    scorer = scorer or Scorer.from_registry(
        churn_model=cfg.churn_model, uplift_model=None if cfg.ranking == "risk" else cfg.uplift_model,
        alias=cfg.alias, settings=settings, uplift_optional=cfg.ranking == "auto")
    ranking = ranking_note(cfg, scorer)
    if ranking["why"] == "auto_no_uplift_model":
        warnings.warn(f"no uplift model '{cfg.uplift_model}' with alias '{cfg.alias}' is registered: this list is "
                      "ranked by churn risk, not by who a message brings back (see the README, 'Recall lists "
                      "before any campaign')", DataWarning, stacklevel=2)
    if scorer.channels is not None and ranking["by"] == RANKED_BY_UPLIFT:
        # A multi-channel model: each user's channel by the configured costs.
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
    try:
        _write_list(folder, force, lst, scored, table, as_of, manifest_head={
            "as_of": as_of.isoformat(), "campaign_id": campaign_id,
            "models": {k: {"version": v, "alias": cfg.alias} for k, v in scorer.versions.items()},
            "data": {"dataset": ds.config.name, "latest_event_before_as_of": latest.isoformat(),
                     "feature_window_days": max(ds.config.feature_windows_days),
                     "observed_until": ds.observed_until.isoformat()},
            "ranking": ranking,
            "counts": counts,
            "config": cfg.model_dump(mode="json"),
        })
    except OSError as exc:
        problem = storage_problem(exc)
        if problem is None:
            raise
        raise OutputWriteError(f"cannot write the recall list for {as_of.date()} to {cfg.output}: {problem}; "
                               "nothing was changed (earlier lists are untouched)") from exc
    return ScoreJobResult(folder, as_of, campaign_id, counts, dict(scorer.versions), lst.head(10), ranking)


def _write_list(folder: Path, force: bool, lst: pd.DataFrame, scored: pd.DataFrame, table: pa.Table,
                as_of: dt.datetime, manifest_head: dict) -> None:
    with atomic_dir(folder, replace=force) as tmp:
        write_parquet(pa.Table.from_pandas(lst, preserve_index=False), tmp / LIST_FILE)
        lst.to_csv(tmp / LIST_CSV, index=False, float_format="%.6f")
        write_parquet(pa.Table.from_pandas(scored.reset_index(drop=True), preserve_index=False), tmp / SCORES_FILE)
        write_parquet(table, tmp / FEATURES_FILE)
        names = [LIST_FILE, LIST_CSV, SCORES_FILE, FEATURES_FILE]
        if "channels" in manifest_head["counts"]:  # a multi-channel list as tomorrow's campaign rows (arm in `channel`)
            rows = lst[["user_id", "campaign_id", "channel", "treated", "randomised"]].assign(sent_ts=pd.Timestamp(as_of))
            write_parquet(pa.Table.from_pandas(rows, preserve_index=False), tmp / CAMPAIGN_ROWS_FILE)
            names.append(CAMPAIGN_ROWS_FILE)
        files = {name: _sha256(tmp / name) for name in names}
        write_json({**manifest_head, "files": files}, tmp / MANIFEST_FILE)


@contextlib.contextmanager
def _date_lock(folder: Path) -> Iterator[None]:
    """Be the only run writing the list of ``folder``'s date (others get OutputExistsError, exit 6)."""
    output = folder.parent
    created = not output.exists()
    try:
        with try_lock(folder, wait=LOCK_WAIT_SECONDS) as holder:
            if holder is not None:
                raise OutputExistsError(f"another run ({holder}) is writing the recall list for {folder.name} in "
                                        f"{output}; this run stops without writing")
            yield
    finally:
        if created:  # a run that wrote nothing leaves no empty lists folder behind
            with contextlib.suppress(OSError):
                output.rmdir()


def _sweep_leftovers(folder: Path, log: Callable[[str], None]) -> None:
    """Remove what interrupted runs left in the lists folder: this date's (its lock is held), and other
    dates' when no run holds their lock."""
    output = folder.parent
    days = sorted({m.group(1) for p in output.iterdir() if (m := _HIDDEN_DAY.match(p.name))} - {folder.name}) \
        if output.is_dir() else []
    gone = sweep(folder)
    for day in days:
        with try_lock(output / day) as holder:
            if holder is None:
                gone += sweep(output / day)
    if gone:
        log(f"removed {len(gone)} leftover(s) of interrupted runs from {output}: "
            f"{', '.join(p.name for p in gone[:4])}{' ...' if len(gone) > 4 else ''}")


def read_manifest(folder: Path) -> dict:
    """The manifest of a list folder."""
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())
