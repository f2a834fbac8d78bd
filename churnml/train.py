"""Training jobs: churn-risk training with honest time-based evaluation, and the champion/challenger gate.

:func:`train_churn_job` builds (or reads) a stacked training set, splits it by
time, tunes LightGBM with Optuna, calibrates, evaluates beside baselines on
the latest fully labelled snapshot, logs everything to MLflow and registers
the model as the ``challenger``. :func:`promote_job` moves ``champion`` only
when the challenger is not worse on the same, latest holdout.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from churnml import tracking
from churnml.config import Settings, TrainConfig, get_settings, load_dataset_config, utc
from churnml.data import Dataset, open_dataset
from churnml.evaluation import (
    compare_scores,
    gains_figure,
    group_auc,
    group_auc_figure,
    reliability_figure,
    signup_cohort,
    tenure_band,
)
from churnml.exceptions import ConfigError, TrainingDataError
from churnml.features import LABEL, build_snapshot, build_training_set, label_window_days
from churnml.models.churn import (
    BASE_PARAMS,
    Calibrator,
    ChurnModel,
    fit_churn_model,
    to_matrix,
    tune,
)
from churnml.models.split import TimeSplit, time_split

__all__ = ["ChurnTrainResult", "PromotionResult", "latest_labelled_snapshot", "promote_job", "train_churn_job"]

ID_COLUMNS = ("user_id", "as_of")
LOWER_IS_BETTER = {"log_loss", "brier", "ece"}


@dataclass
class ChurnTrainResult:
    """What a churn training run did: split, choices, test metrics beside baselines, registry entry."""

    run_id: str
    model: ChurnModel
    split: TimeSplit
    metrics: pd.DataFrame
    by_cohort: pd.DataFrame
    by_tenure: pd.DataFrame
    best_params: dict
    info: dict
    version: str | None
    rows: dict
    oracle_ratio: float | None = None
    study_name: str | None = None
    trials: int = 0
    warnings: list[str] = field(default_factory=list)


def _load_training_frame(cfg: TrainConfig, ds: Dataset | None, progress) -> tuple[pd.DataFrame, dict]:
    """The stacked training set and its schema document."""
    from churnml.jobs import _schema_doc

    if cfg.training_set is not None:
        if not cfg.training_set.is_file():
            raise ConfigError(f"training_set {cfg.training_set} not found; build it with `churnml features build`")
        schema_path = cfg.training_set.with_suffix("").with_suffix(".schema.json")
        if not schema_path.is_file():
            raise ConfigError(f"{schema_path} not found: the training set's schema file must sit beside it")
        df = pd.read_parquet(cfg.training_set)
        doc = json.loads(schema_path.read_text())
        if doc.get("label") != LABEL or LABEL not in df.columns:
            raise TrainingDataError(f"{cfg.training_set} has no '{LABEL}' labels: build it from the config's "
                                    "snapshots (without --as-of) or with --labels")
        return df, doc
    ds = ds or open_dataset(load_dataset_config(cfg.dataset))
    instants = ds.config.snapshot_instants()
    if not instants:
        raise ConfigError(f"{cfg.dataset}: no snapshots configured; a training set needs several")
    types = ds.event_types(before=max(instants))
    table, fs = build_training_set(ds, instants, event_types=types, progress=progress)
    doc = _schema_doc(ds, fs, table, instants, True)
    return table.to_pandas(), doc


def _feature_columns(doc: dict, df: pd.DataFrame, exclude: list[str]) -> list[str]:
    unknown = [c for c in exclude if c not in df.columns]
    if unknown:
        raise ConfigError(f"exclude_features names columns the training set lacks: {', '.join(unknown)}")
    return [c for c in doc["feature_columns"] if c not in exclude and c not in ID_COLUMNS and c != LABEL]


def _sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    return df if n is None or len(df) <= n else df.sample(n=n, random_state=seed).sort_index()


def _logistic_baseline(train: pd.DataFrame, test: pd.DataFrame, model: ChurnModel, seed: int) -> np.ndarray:
    """Logistic regression on the same inputs: median-imputed with missing flags, scaled, one-hot categoricals."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = [s.name for s in model.features if s.kind == "numeric"]
    cat = [s.name for s in model.features if s.kind == "categorical"]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), num),
        ("cat", OneHotEncoder(handle_unknown="ignore"), cat),
    ])
    lr = make_pipeline(prep, LogisticRegression(C=1.0, max_iter=300))
    fit_rows = _sample(train, 200_000, seed)

    def matrix(df):
        m = model.matrix(df, where="baseline data")
        for c in cat:
            m[c] = m[c].astype("object").where(m[c].notna(), "missing")
        return m

    lr.fit(matrix(fit_rows), fit_rows[LABEL].to_numpy())
    return lr.predict_proba(matrix(test))[:, 1]


def _recency_baseline(valid: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Days since last activity, made a probability by isotonic regression on the validation snapshot."""
    def days(df):
        return df["days_since_last_activity"].fillna(df["days_since_last_activity"].max()).to_numpy()

    cal = Calibrator.fit(days(valid), valid[LABEL].to_numpy(), "isotonic")
    d = days(test)
    # Tiny tie-breaker so the ranking inside a flat isotonic step still follows recency (stays in [0, 1]).
    return cal.apply(d) * (1 - 1e-6) + 1e-7 * d / (np.nanmax(d) + 1)


def _oracle(test: pd.DataFrame, truth: Path) -> pd.DataFrame:
    """The simulator's true churn probabilities for the test rows.

    ``oracle`` is ``p_churn_observed``: the exact probability given the user's
    true parameters and everything observable up to ``as_of`` (the best any
    model of the event log could do). ``oracle (latent state)`` is ``p_churn``,
    which also knows whether the user has already silently lapsed, something no
    event log shows; it is an upper bound, not a target.
    """
    t = pd.read_parquet(truth, columns=["as_of", "user_id", "p_churn", "p_churn_observed"])
    t["as_of"] = pd.to_datetime(t["as_of"], utc=True)
    key = test[["as_of", "user_id"]].assign(as_of=lambda d: pd.to_datetime(d["as_of"], utc=True))
    both = key.merge(t, on=["as_of", "user_id"], how="left").set_axis(test.index)
    return both.rename(columns={"p_churn_observed": "oracle", "p_churn": "oracle (latent state)"})[
        ["oracle", "oracle (latent state)"]]


def train_churn_job(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    settings: Settings | None = None,
    register: bool = True,
    on_snapshot: Callable[[dt.datetime], None] | None = None,
    on_trial: Callable[[int, float], None] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ChurnTrainResult:
    """Train, evaluate, track and register a churn-risk model.

    Parameters
    ----------
    cfg : TrainConfig
    dataset : Dataset, optional
        An already validated dataset (skips reading and validation).
    settings : Settings, optional
    register : bool
        Register the model (alias ``challenger``); otherwise only log the run.
    on_snapshot, on_trial, log : callable, optional
        Progress hooks: a snapshot built, an Optuna trial finished
        ``(number, value)``, a line worth printing.

    Returns
    -------
    ChurnTrainResult

    Raises
    ------
    TrainingDataError, ConfigError, ContractError
        Bad or insufficient data; nothing is registered.
    """
    settings = settings or get_settings()
    t0 = time.perf_counter()
    df, doc = _load_training_frame(cfg, dataset, on_snapshot)
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True)
    instants = [utc(x.to_pydatetime()) for x in sorted(df["as_of"].unique())]
    split = time_split(instants, doc.get("label_window_days") or doc.get("horizon_days") or 14,
                       valid_snapshots=cfg.split.valid_snapshots, test_snapshots=cfg.split.test_snapshots)
    for line in split.describe():
        log(line)
    role = df["as_of"].map({pd.Timestamp(s): split.role(s) for s in instants})
    train, valid, test = (df[role == r] for r in ("train", "valid", "test"))
    rows = {r: int((role == r).sum()) for r in ("train", "valid", "test", "gap")}
    features = _feature_columns(doc, df, cfg.exclude_features)
    threads = settings.threads
    build_s = time.perf_counter() - t0

    # --- tuning ------------------------------------------------------------------------------
    params = dict(cfg.lightgbm.params)
    study_name, n_trials = None, 0
    if cfg.tuning.trials > 0:
        from churnml.models.churn import feature_specs

        specs = feature_specs(train, features)
        tr = _sample(train, cfg.tuning.max_rows, cfg.seed)
        storage = cfg.tuning.storage or f"sqlite:///{Path(settings.mlruns_dir).absolute() / 'optuna.db'}"
        Path(settings.mlruns_dir).mkdir(parents=True, exist_ok=True)
        study_name = cfg.tuning.study_name or f"{cfg.model_name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
        fixed = {**params, "seed": cfg.seed, **({"num_threads": threads} if threads else {})}
        study = tune(
            to_matrix(tr, specs, where="training data"), tr[LABEL].to_numpy(),
            to_matrix(valid, specs, where="validation data"), valid[LABEL].to_numpy(), fixed,
            n_trials=cfg.tuning.trials, timeout=cfg.tuning.timeout_seconds, seed=cfg.seed, storage=storage,
            study_name=study_name, pruning=cfg.tuning.pruning, num_boost_round=cfg.lightgbm.num_boost_round,
            early_stopping_rounds=cfg.lightgbm.early_stopping_rounds,
            on_trial=(lambda s, t: on_trial(t.number, t.value)) if on_trial else None,
        )
        from optuna.trial import TrialState

        # Pruned trials carry their last reported value too; only finished ones count as completed.
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n_trials = len(study.trials)
        if complete:
            params.update(study.best_params)
            params["bagging_freq"] = 1
            log(f"Optuna: {n_trials} trials ({len(complete)} completed) in study '{study_name}'; "
                f"best validation log loss {study.best_value:.4f}")
    tune_s = time.perf_counter() - t0 - build_s

    # --- final fit and calibration --------------------------------------------------------------
    meta = {"label": LABEL, "horizon_days": doc.get("horizon_days") or split.horizon_days, "split": split.to_dict(),
            "dataset": doc.get("dataset"), "event_types": doc.get("event_types"),
            "glossary": {c["name"]: {k: c.get(k) for k in ("description", "family", "window_days")}
                         for c in doc.get("columns", []) if c["name"] in features},
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    model, info = fit_churn_model(
        train, valid, features=features, params=params, calibration=cfg.calibration,
        num_boost_round=cfg.lightgbm.num_boost_round, early_stopping_rounds=cfg.lightgbm.early_stopping_rounds,
        min_class_count=cfg.min_class_count, seed=cfg.seed, threads=threads, metadata=meta,
    )
    fit_s = time.perf_counter() - t0 - build_s - tune_s
    log(f"final model: {info['best_iteration']} trees, {info['calibration']} calibration")

    # --- evaluation on the test snapshot, beside baselines ------------------------------------------
    y = test[LABEL].to_numpy()
    if y.min() == y.max():
        raise TrainingDataError(f"the test snapshot has only {'churned' if y[0] else 'retained'} users "
                                f"({len(y):,} rows); AUC is undefined")
    raw = model.raw_score(test, where="test data")
    scores = {"model": model.calibrator.apply(raw), "model uncalibrated": 1 / (1 + np.exp(-raw)),
              "logistic regression": _logistic_baseline(train, test, model, cfg.seed),
              "recency only": _recency_baseline(valid, test)}
    probabilities = set(scores)
    table = compare_scores(y, scores, probabilities)
    oracle_ratio = None
    if cfg.truth is not None:
        truth = _oracle(test, cfg.truth)
        matched = truth.notna().all(axis=1).to_numpy()
        if matched.mean() < 0.99:
            log(f"oracle: only {matched.mean():.1%} of test rows have a true probability")
        on = {k: v[matched] for k, v in scores.items()} | {c: truth[c].to_numpy()[matched] for c in truth}
        both = compare_scores(y[matched], on, probabilities | set(truth.columns))
        table = both if matched.all() else pd.concat([table, both.loc[list(truth.columns)]])
        oracle_ratio = float(both.loc["model", "roc_auc"] / both.loc["oracle", "roc_auc"])
        scores["oracle"] = truth["oracle"].fillna(truth["oracle"].mean()).to_numpy()
    cohort = signup_cohort(test["as_of"], test["tenure_days"])
    ranked = {k: v for k, v in scores.items() if k in ("model", "logistic regression", "oracle")}
    by_cohort = group_auc(y, ranked, cohort)
    by_tenure = group_auc(y, ranked, tenure_band(test["tenure_days"]))

    # --- tracking and registry --------------------------------------------------------------------
    version = None
    with tracking.start_run(cfg.experiment_name, run_name=f"churn {split.test[-1].date()}",
                            tags={"kind": "churn", "git_revision": tracking.git_revision()},
                            settings=settings) as run_id:
        tracking.log_params({
            "seed": cfg.seed, "calibration": info["calibration"], "best_iteration": info["best_iteration"],
            "n_features": len(model.features), "optuna_study": study_name or "none", "optuna_trials": n_trials,
            "rows_train": rows["train"], "rows_valid": rows["valid"], "rows_test": rows["test"],
            **{f"lgb_{k}": v for k, v in model.params.items() if k not in BASE_PARAMS},
            "split_train": ",".join(d.date().isoformat() for d in split.train),
            "split_valid": ",".join(d.date().isoformat() for d in split.valid),
            "split_test": ",".join(d.date().isoformat() for d in split.test),
        })
        if cfg.source is not None:
            tracking.log_artifact(cfg.source, "config")
        tracking.log_dict(cfg.model_dump(mode="json"), "config/resolved.json")
        tracking.log_dict(split.to_dict(), "split.json")
        tracking.log_dict({"features": [s.to_dict() for s in model.features], "schema": doc}, "feature_schema.json")
        for part, frame in (("train", train), ("valid", valid), ("test", test)):
            tracking.log_dataset(frame[[*ID_COLUMNS, *features, LABEL]], name=f"{doc.get('dataset')}-{part}",
                                 source=str(cfg.training_set or cfg.dataset), context=part, targets=LABEL)
        flat = {f"test_{m}": v for m, v in table.loc["model"].items()}
        for name in table.index.drop("model"):
            key = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_")
            flat |= {f"baseline_{key}_{m}": v for m, v in table.loc[name].items()}
        if oracle_ratio is not None:
            flat["oracle_auc_ratio"] = oracle_ratio
        flat |= {k: v for k, v in info.items() if isinstance(v, float)}
        flat |= {"seconds_build": build_s, "seconds_tune": tune_s, "seconds_fit": fit_s}
        tracking.log_metrics(flat)
        tracking.log_dict(json.loads(table.to_json(orient="index")), "evaluation/metrics.json")
        tracking.log_dict(json.loads(by_cohort.to_json(orient="records")), "evaluation/auc_by_signup_week.json")
        tracking.log_dict(json.loads(by_tenure.to_json(orient="records")), "evaluation/auc_by_tenure.json")
        probs = {k: scores[k] for k in ("model", "model uncalibrated", "logistic regression") if k in scores}
        import matplotlib.pyplot as plt

        for fig, path in ((reliability_figure(y, probs), "plots/reliability.png"),
                          (gains_figure(y, {k: v for k, v in scores.items() if k != "model uncalibrated"}),
                           "plots/gains.png"),
                          (group_auc_figure(by_cohort, "AUC by signup week"), "plots/auc_by_signup_week.png"),
                          (group_auc_figure(by_tenure, "AUC by tenure"), "plots/auc_by_tenure.png")):
            tracking.log_figure(fig, path)
            plt.close(fig)
        if register:
            example = test[[s.name for s in model.features]].head(5)
            ref = tracking.log_model(model, registered_name=cfg.model_name, input_example=example)
            version = ref.version
            tracking.set_version_tags(cfg.model_name, version, {
                "test_snapshot": split.test[-1].isoformat(), "test_roc_auc": f"{table.loc['model', 'roc_auc']:.4f}",
                "git_revision": tracking.git_revision()})
    return ChurnTrainResult(run_id, model, split, table, by_cohort, by_tenure, params, info, version, rows,
                            oracle_ratio, study_name, n_trials)


# ------------------------------------------------------------------------------- promotion

@dataclass
class PromotionResult:
    """The gate's decision and the figures it was made on."""

    name: str
    challenger: str
    champion: str | None
    promoted: bool
    reason: str
    metric: str
    challenger_score: float | None = None
    champion_score: float | None = None
    holdout: str | None = None
    rows: int = 0


def latest_labelled_snapshot(ds: Dataset) -> dt.datetime:
    """The latest configured snapshot whose label window the data fully covers."""
    h = dt.timedelta(days=label_window_days(ds.config))
    ok = [s for s in ds.config.snapshot_instants() if s + h <= ds.observed_until]
    if ok:
        return max(ok)
    day = (ds.observed_until - h).replace(hour=0, minute=0, second=0, microsecond=0)
    return day


def gate(challenger: float, champion: float, metric: str, margin: float) -> bool:
    """True when the challenger is not worse than the champion by more than ``margin``."""
    if metric in LOWER_IS_BETTER:
        return challenger <= champion + margin
    return challenger >= champion - margin


def _holdout_scores(models: dict, cfg: TrainConfig, ds: Dataset | None, metric: str):
    """Score each churn model on the latest fully labelled snapshot of the data."""
    ds = ds or open_dataset(load_dataset_config(cfg.dataset))
    as_of = latest_labelled_snapshot(ds)
    table, _ = build_snapshot(ds, as_of, labels=True)
    df = table.to_pandas()
    y = df[LABEL].to_numpy()
    from churnml.evaluation import churn_metrics

    out = {k: churn_metrics(y, m.predict_proba(df, where=f"holdout {as_of.date()}"))[metric] for k, m in models.items()}
    return out, as_of, len(df)


def promote_job(
    cfg: TrainConfig,
    *,
    margin: float | None = None,
    dataset: Dataset | None = None,
    settings: Settings | None = None,
    holdout_scores: Callable | None = None,
) -> PromotionResult:
    """Give the ``challenger`` the ``champion`` alias if it is not worse on the latest holdout.

    Both versions are scored on the same rows: the latest snapshot of the
    current data whose label window is complete. The decision, the figures
    and the versions are logged as an MLflow run (tag ``kind=promotion``)
    whatever the outcome.
    """
    settings = settings or get_settings()
    name = cfg.model_name
    metric = cfg.gate.metric or ("qini_auc" if cfg.kind == "uplift" else "roc_auc")
    margin = cfg.gate.margin if margin is None else margin
    chall_ref = tracking.resolve(name, "challenger", settings)
    try:
        champ_ref = tracking.resolve(name, "champion", settings)
    except LookupError:
        champ_ref = None
    if champ_ref is None:
        res = PromotionResult(name, chall_ref.version, None, True, "no champion yet", metric)
    elif champ_ref.version == chall_ref.version:
        res = PromotionResult(name, chall_ref.version, champ_ref.version, False,
                              "the challenger already is the champion", metric)
    else:
        models = {k: tracking.load_version(r) for k, r in (("challenger", chall_ref), ("champion", champ_ref))}
        if holdout_scores is None and cfg.kind == "uplift":
            from churnml.train_uplift import uplift_holdout_scores as holdout_scores
        scores, as_of, n = (holdout_scores or _holdout_scores)(models, cfg, dataset, metric)
        ok = gate(scores["challenger"], scores["champion"], metric, margin)
        direction = "lower" if metric in LOWER_IS_BETTER else "higher"
        reason = (f"{metric} {scores['challenger']:.4f} vs champion {scores['champion']:.4f} "
                  f"({direction} is better, margin {margin:g}): "
                  + ("not worse, promoted" if ok else "worse, kept the champion"))
        res = PromotionResult(name, chall_ref.version, champ_ref.version, ok, reason, metric,
                              scores["challenger"], scores["champion"], as_of.isoformat(), n)
    with tracking.start_run(cfg.experiment_name, run_name=f"promotion {name} v{res.challenger}",
                            tags={"kind": "promotion", "decision": "promoted" if res.promoted else "kept"},
                            settings=settings):
        tracking.log_params({"model": name, "challenger_version": res.challenger,
                             "champion_version": res.champion or "none", "metric": metric, "margin": margin,
                             "holdout": res.holdout or "none", "holdout_rows": res.rows,
                             "reason": res.reason[:500]})
        tracking.log_metrics({"challenger_score": res.challenger_score, "champion_score": res.champion_score})
    if res.promoted:
        tracking.set_alias(name, "champion", res.challenger)
    tracking.set_version_tags(name, res.challenger, {"gate": res.reason[:250]})
    return res
