"""Training jobs: the churn-risk recipe backtested, refit on all labelled history, and the champion/challenger gate.

:func:`train_churn_job` builds (or reads) a stacked training set, tunes
LightGBM with Optuna on the history before the earliest backtest cut-off,
runs the rolling backtest (several cut-offs, each model fit only on labels
closed before it, beside baselines) to evaluate and choose the configuration,
refits the chosen configuration on every labelled snapshot, logs everything
to MLflow and registers the refit model as the ``challenger``. Its reported
metrics are the backtest's. :func:`promote_job` moves ``champion`` only when
the challenger is not worse on like-for-like evidence: a labelled snapshot
newer than both models' training labels, or else each model's backtest twin
(its recipe rerun at the same cut-offs).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from churnml import tracking
from churnml.config import Settings, TrainConfig, get_settings, load_dataset_config, utc
from churnml.data import Dataset, open_dataset
from churnml.evaluation import (
    backtest_figure,
    gains_figure,
    group_auc,
    group_auc_figure,
    reliability_figure,
    signup_cohort,
    tenure_band,
)
from churnml.exceptions import ConfigError, DataWarning, TrainingDataError
from churnml.features import LABEL, build_snapshot, build_training_set, label_window_days
from churnml.models.backtest import (
    LOGISTIC,
    MODEL,
    RECENCY,
    UNCALIBRATED,
    Backtest,
    backtest_cutoffs,
    closed_before,
    run_backtest,
)
from churnml.models.baselines import _sample, read_truth
from churnml.models.churn import BASE_PARAMS, ChurnModel, to_matrix, tune
from churnml.models.refit import Recipe, fit_recipe

__all__ = ["ChurnTrainResult", "PromotionResult", "latest_labelled_snapshot", "promote_job", "train_churn_job"]

ID_COLUMNS = ("user_id", "as_of")
LOWER_IS_BETTER = {"log_loss", "brier", "ece"}


@dataclass
class ChurnTrainResult:
    """What a churn training run did: the backtest, the choice, the refit model, the registry entry.

    ``metrics`` and ``metrics_sd`` are the backtest's mean and standard
    deviation over cut-offs (scorer x metric); per cut-off figures are in
    ``backtest.folds``. No metric is computed on rows the model was fit on.
    """

    run_id: str
    model: ChurnModel
    backtest: Backtest
    metrics: pd.DataFrame
    metrics_sd: pd.DataFrame
    by_cohort: pd.DataFrame
    by_tenure: pd.DataFrame
    best_params: dict
    info: dict
    version: str | None
    rows: dict
    cutoffs: list[dt.datetime]
    recipe: Recipe
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


def _log_backtest_plan(instants, horizon_days, cutoffs, valid_snapshots, log) -> None:
    from churnml.models.refit import inner_split

    def span(xs):
        return f"{xs[0].date()}..{xs[-1].date()} ({len(xs)})" if len(xs) > 1 else str(xs[0].date())

    log(f"backtest: {len(cutoffs)} cut-off(s); each fold learns only from snapshots whose {horizon_days}-day "
        "label windows close by its cut-off")
    for c in cutoffs:
        history = closed_before(instants, horizon_days, c)
        train, valid = inner_split(history, horizon_days, valid_snapshots)
        log(f"  cut-off {c.date()}: refit on {span(history)}; early stopping and calibration on "
            f"{span(valid)} after fitting {span(train)}")


def train_churn_job(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    settings: Settings | None = None,
    register: bool = True,
    on_snapshot: Callable[[dt.datetime], None] | None = None,
    on_trial: Callable[[int, float], None] | None = None,
    on_fold: Callable[[dt.datetime, dict], None] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ChurnTrainResult:
    """Backtest the training recipe, refit it on every labelled snapshot, track and register the refit model.

    1. Optuna tunes LightGBM on the history before the earliest backtest
       cut-off (so every backtest figure is out of sample for the tuning).
    2. The rolling backtest (:func:`churnml.models.backtest.run_backtest`)
       runs the recipe with the configured and the tuned parameters, sigmoid
       and isotonic calibration, at each cut-off, beside the baselines, and
       chooses the configuration with the best mean log loss.
    3. That configuration is refit on every labelled snapshot
       (:func:`churnml.models.refit.fit_recipe`) and registered. Its reported
       metrics are the backtest's (``backtest_*``); no metric is computed on
       rows it was fit on.

    Parameters
    ----------
    cfg : TrainConfig
    dataset : Dataset, optional
        An already validated dataset (skips reading and validation).
    settings : Settings, optional
    register : bool
        Register the model (alias ``challenger``); otherwise only log the run.
    on_snapshot, on_trial, on_fold, log : callable, optional
        Progress hooks: a snapshot built, an Optuna trial finished
        ``(number, value)``, a backtest fold finished ``(cut-off, model
        metrics)``, a line worth printing.

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
    # Days after a snapshot its label needs (the horizon, plus a subscription's grace): no row a backtest
    # fold or the inner split learns from may have a label window reaching past its cut-off.
    horizon = doc.get("label_window_days") or doc.get("horizon_days") or 14
    features = _feature_columns(doc, df, cfg.exclude_features)
    cutoffs = backtest_cutoffs(instants, horizon, folds=cfg.backtest.folds,
                               valid_snapshots=cfg.split.valid_snapshots, labels=df[["as_of", LABEL]],
                               min_class_count=cfg.min_class_count)
    _log_backtest_plan(instants, horizon, cutoffs, cfg.split.valid_snapshots, log)
    warns = []
    if len(cutoffs) < cfg.backtest.folds:
        warns.append(f"the labelled history allows {len(cutoffs)} backtest cut-off(s), not the "
                     f"{cfg.backtest.folds} asked for")
        log(f"note: {warns[-1]}")
    threads = settings.threads
    build_s = time.perf_counter() - t0

    # --- tuning, on the history before the earliest cut-off ---------------------------------------
    base = Recipe(features=tuple(features), params=dict(cfg.lightgbm.params), calibration=cfg.calibration,
                  num_boost_round=cfg.lightgbm.num_boost_round,
                  early_stopping_rounds=cfg.lightgbm.early_stopping_rounds,
                  valid_snapshots=cfg.split.valid_snapshots, tree_exponent=cfg.refit.tree_exponent,
                  min_class_count=cfg.min_class_count, seed=cfg.seed)
    recipes = {"configured": base}
    study_name, n_trials = None, 0
    if cfg.tuning.trials > 0:
        from optuna.trial import TrialState

        from churnml.models.churn import feature_specs
        from churnml.models.refit import inner_split

        train_s, valid_s = inner_split(closed_before(instants, horizon, cutoffs[0]), horizon,
                                       cfg.split.valid_snapshots)
        train, valid = df[df["as_of"].isin(train_s)], df[df["as_of"].isin(valid_s)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # said once, by the production refit
            specs = feature_specs(train, features)
        tr = _sample(train, cfg.tuning.max_rows, cfg.seed)
        storage = cfg.tuning.storage or f"sqlite:///{Path(settings.mlruns_dir).absolute() / 'optuna.db'}"
        Path(settings.mlruns_dir).mkdir(parents=True, exist_ok=True)
        study_name = cfg.tuning.study_name or f"{cfg.model_name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
        fixed = {**base.params, "seed": cfg.seed, **({"num_threads": threads} if threads else {})}
        study = tune(
            to_matrix(tr, specs, where="training data"), tr[LABEL].to_numpy(),
            to_matrix(valid, specs, where="validation data"), valid[LABEL].to_numpy(), fixed,
            n_trials=cfg.tuning.trials, timeout=cfg.tuning.timeout_seconds, seed=cfg.seed, storage=storage,
            study_name=study_name, pruning=cfg.tuning.pruning, num_boost_round=cfg.lightgbm.num_boost_round,
            early_stopping_rounds=cfg.lightgbm.early_stopping_rounds,
            on_trial=(lambda s, t: on_trial(t.number, t.value)) if on_trial else None,
        )
        # Pruned trials carry their last reported value too; only finished ones count as completed.
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n_trials = len(study.trials)
        if complete:
            tuned = Recipe(**{**base.__dict__, "params": {**base.params, **study.best_params, "bagging_freq": 1}})
            recipes = {"tuned": tuned, "configured": base}
            log(f"Optuna: {n_trials} trials ({len(complete)} completed) in study '{study_name}' on the history "
                f"before {cutoffs[0].date()}; best validation log loss {study.best_value:.4f}")
    tune_s = time.perf_counter() - t0 - build_s

    # --- rolling backtest: evaluation and model choice ---------------------------------------------
    truth = read_truth(cfg.truth) if cfg.truth is not None else None
    with warnings.catch_warnings():
        # Each fold would repeat the data warnings (columns empty in early snapshots, say) that the
        # production refit below gives once for the data it is fit on.
        warnings.simplefilter("ignore", DataWarning)
        bt = run_backtest(df, recipes, horizon, cutoffs, default=next(iter(recipes)), truth=truth,
                          threads=threads, seed=cfg.seed, on_fold=on_fold)
    if truth is not None:
        share = bt.predictions["oracle"].notna().mean()
        if share < 0.99:
            log(f"oracle: only {share:.1%} of backtest rows have a true probability")
    backtest_s = time.perf_counter() - t0 - build_s - tune_s
    means = bt.candidate_means()
    log("backtest choice (mean log loss over cut-offs): "
        + ", ".join(f"{k} {v:.4f}" for k, v in means.items()) + f" -> {bt.chosen}")

    # --- the production model: the chosen recipe refit on every labelled snapshot ------------------
    recipe = recipes[bt.chosen_params].with_calibration(bt.chosen_calibration)
    mean, sd = bt.mean(), bt.sd()
    meta = {"label": LABEL, "horizon_days": doc.get("horizon_days") or horizon, "label_window_days": horizon,
            "dataset": doc.get("dataset"),
            "event_types": doc.get("event_types"),
            "glossary": {c["name"]: {k: c.get(k) for k in ("description", "family", "window_days")}
                         for c in doc.get("columns", []) if c["name"] in features},
            "split": {"train": [s.isoformat() for s in instants]},
            "recipe": recipe.to_dict(),
            "label_cutoff": (instants[-1] + dt.timedelta(days=horizon)).isoformat(),
            "backtest": {"cutoffs": [c.isoformat() for c in cutoffs],
                         **{f"backtest_{m}": float(mean.loc["model", m]) for m in mean.columns}},
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    fit = fit_recipe(df, recipe, horizon, threads=threads, metadata=meta)
    model, info = fit.model, fit.info
    ds_cfg = dataset.config if dataset is not None else load_dataset_config(cfg.dataset)
    if ds_cfg.horizons_days:
        model.horizons = _fit_horizons(df, model, recipe, ds_cfg, dataset, threads, log)
    fit_s = time.perf_counter() - t0 - build_s - tune_s - backtest_s
    log(f"production model: refit on {len(instants)} snapshots ({info['rows_refit']:,} rows) with "
        f"{info['trees']} trees ({info['trees_early_stopping']} chosen by early stopping on "
        f"{info['rows_early_stopping']:,} rows, x (rows ratio)^{info['tree_exponent']:g}); "
        f"{recipe.calibration} calibration fit out of sample on {', '.join(d[:10] for d in info['valid_snapshots'])}")

    # --- reports on the backtest's rows -------------------------------------------------------------
    last = bt.predictions[bt.predictions["cutoff"] == cutoffs[-1].date().isoformat()]
    y_last = last[LABEL].to_numpy()
    ranked = {k: last[k].to_numpy() for k in (MODEL, LOGISTIC, "oracle") if k in last}
    cohort = signup_cohort(last["as_of"], last["tenure_days"])
    by_cohort = group_auc(y_last, ranked, cohort)
    by_tenure = group_auc(y_last, ranked, tenure_band(last["tenure_days"]))
    oracle_ratio = float(np.mean(list(bt.oracle_ratio.values()))) if bt.oracle_ratio else None
    rows = {"refit": len(df), "backtest": len(bt.predictions),
            **{f"backtest_{k}": int(v) for k, v in bt.predictions.groupby("cutoff").size().items()}}

    # --- tracking and registry ----------------------------------------------------------------------
    version = None
    with tracking.start_run(cfg.experiment_name, run_name=f"churn refit {instants[-1].date()}",
                            tags={"kind": "churn", "git_revision": tracking.git_revision()},
                            settings=settings) as run_id:
        tracking.log_params({
            "seed": cfg.seed, "calibration": recipe.calibration, "parameters": bt.chosen_params,
            "trees": info["trees"], "trees_early_stopping": info["trees_early_stopping"],
            "tree_exponent": recipe.tree_exponent, "n_features": len(model.features),
            "optuna_study": study_name or "none", "optuna_trials": n_trials,
            "rows_refit": info["rows_refit"], "rows_early_stopping": info["rows_early_stopping"],
            "rows_valid": info["rows_valid"],
            **{f"lgb_{k}": v for k, v in model.params.items() if k not in BASE_PARAMS},
            "refit_snapshots": ",".join(d.date().isoformat() for d in instants),
            "backtest_cutoffs": ",".join(c.date().isoformat() for c in cutoffs),
            "label_cutoff": meta["label_cutoff"],
        })
        if cfg.source is not None:
            tracking.log_artifact(cfg.source, "config")
        tracking.log_dict(cfg.model_dump(mode="json"), "config/resolved.json")
        tracking.log_dict({"refit": info, "recipe": recipe.to_dict()}, "refit.json")
        tracking.log_dict({"features": [s.to_dict() for s in model.features], "schema": doc}, "feature_schema.json")
        tracking.log_dataset(df[[*ID_COLUMNS, *features, LABEL]], name=f"{doc.get('dataset')}-refit",
                             source=str(cfg.training_set or cfg.dataset), context="training", targets=LABEL)
        if model.horizons is not None:
            tracking.log_dict(model.horizons.info, "evaluation/horizons.json")
            tracking.log_metrics({f"horizon_{h}d_{k}": v for h, r in model.horizons.info["out_of_sample"].items()
                                  for k, v in r.items() if isinstance(v, float)})
        tracking.log_metrics(_flat_backtest_metrics(mean, sd, oracle_ratio)
                             | {"seconds_build": build_s, "seconds_tune": tune_s,
                                "seconds_backtest": backtest_s, "seconds_refit": fit_s})
        for step, c in enumerate(cutoffs):  # per cut-off: backtest_fold_<...>, one step per cut-off in time order
            fold = bt.folds.loc[c.date().isoformat()]
            flat = _flat_backtest_metrics(fold, None, bt.oracle_ratio.get(c.date().isoformat()))
            tracking.log_metrics({k.replace("backtest_", "backtest_fold_", 1): v for k, v in flat.items()}, step=step)
        tracking.log_dict(bt.to_dict(), "evaluation/backtest.json")
        tracking.log_dict(json.loads(by_cohort.to_json(orient="records")), "evaluation/auc_by_signup_week.json")
        tracking.log_dict(json.loads(by_tenure.to_json(orient="records")), "evaluation/auc_by_tenure.json")
        _log_backtest_figures(bt, by_cohort, by_tenure)
        if register:
            example = df[[s.name for s in model.features]].tail(5)
            ref = tracking.log_model(model, registered_name=cfg.model_name, input_example=example)
            version = ref.version
            tracking.set_version_tags(cfg.model_name, version, {
                "label_cutoff": meta["label_cutoff"], "backtest_cutoffs": ",".join(meta["backtest"]["cutoffs"]),
                "backtest_roc_auc": f"{mean.loc[MODEL, 'roc_auc']:.4f}", "git_revision": tracking.git_revision()})
    return ChurnTrainResult(run_id, model, bt, mean, sd, by_cohort, by_tenure, dict(recipe.params), info, version,
                            rows, cutoffs, recipe, oracle_ratio, study_name, n_trials, warns)


def _fit_horizons(df: pd.DataFrame, model: ChurnModel, recipe: Recipe, ds_cfg, ds: Dataset | None, threads, log):
    """The multi-horizon hazard model over the same snapshots and inputs as the refit model."""
    from churnml.features.churn_time import CHURN_TS, churn_times_frame, confirmation_lag, confirmed_until
    from churnml.models.horizons import fit_hazard_model

    ds = ds or open_dataset(ds_cfg)
    times = churn_times_frame(ds, sorted(df["as_of"].unique()))
    key = df[["as_of", "user_id"]].astype({"as_of": "datetime64[us, UTC]"})
    ts = key.merge(times.astype({"as_of": "datetime64[us, UTC]"}), on=["as_of", "user_id"], how="left")[CHURN_TS]
    haz = fit_hazard_model(df, ts.set_axis(df.index), specs=model.features, horizons=ds_cfg.horizons_days,
                           confirmed_until=confirmed_until(ds), lag=confirmation_lag(ds_cfg), params=recipe.params,
                           num_boost_round=recipe.num_boost_round, early_stopping_rounds=recipe.early_stopping_rounds,
                           tree_exponent=recipe.tree_exponent, seed=recipe.seed, threads=threads,
                           calibration="none" if recipe.calibration == "none" else "sigmoid")
    i = haz.info
    labelled = "; ".join(f"{h}d: AUC {r['roc_auc']:.3f}, ECE {r['ece_raw']:.3f} raw, "
                         f"{r['ece_calibrated_cross_fit']:.3f} calibrated (cross-fit), on {', '.join(r['snapshots'])}"
                         for h, r in i["out_of_sample"].items())
    log(f"multi-horizon model: {i['rows_refit']:,} person-weeks, {i['trees']} trees, "
        f"{'calibrated per labelled horizon' if haz.calibrators else 'its own probabilities (as the backtest chose)'}; "
        + (f"out of sample {labelled}" if labelled else "no horizon the data can label yet")
        + (f"; {', '.join(f'{h}d' for h in i['extrapolated_horizons'])} extrapolated (after week "
           f"{i['max_period'] + 1} the weekly hazard follows the population's decline, x (week)^{i['tail_slope']:.2f})"
           if i["extrapolated_horizons"] else ""))
    return haz


def _flat_backtest_metrics(table: pd.DataFrame, sd: pd.DataFrame | None, oracle_ratio: float | None) -> dict:
    """``backtest_<metric>`` for the model, ``backtest_baseline_<scorer>_<metric>`` for the others (``_sd`` too)."""
    flat = {}
    for name in table.index:
        key = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_")
        prefix = "backtest_" if name == MODEL else f"backtest_baseline_{key}_"
        flat |= {f"{prefix}{m}": v for m, v in table.loc[name].items()}
        if sd is not None:
            flat |= {f"{prefix}{m}_sd": v for m, v in sd.loc[name].items()}
    if oracle_ratio is not None:
        flat["backtest_oracle_auc_ratio"] = oracle_ratio
    return flat


def _log_backtest_figures(bt, by_cohort: pd.DataFrame, by_tenure: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    p = bt.predictions
    y = p[LABEL].to_numpy()
    n = len(bt.cutoffs)
    probs = {k: p[k].to_numpy() for k in (MODEL, UNCALIBRATED, LOGISTIC) if k in p}
    gains = {k: p[k].to_numpy() for k in (MODEL, LOGISTIC, RECENCY, "oracle") if k in p}
    pooled = f"the {n} backtest cut-off(s), pooled"
    for fig, path in ((reliability_figure(y, probs, title=f"Reliability on {pooled}"), "plots/reliability.png"),
                      (gains_figure(y, gains, title=f"Cumulative gains on {pooled}"), "plots/gains.png"),
                      (backtest_figure(bt.folds), "plots/backtest.png"),
                      (group_auc_figure(by_cohort, "AUC by signup week (latest cut-off)"),
                       "plots/auc_by_signup_week.png"),
                      (group_auc_figure(by_tenure, "AUC by tenure (latest cut-off)"), "plots/auc_by_tenure.png")):
        tracking.log_figure(fig, path)
        plt.close(fig)


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


def _holdout_scores(models: dict, cfg: TrainConfig, ds: Dataset | None, metric: str,
                    settings: Settings | None = None):
    """Score each churn model on like-for-like evidence no model was fit on.

    1. A labelled snapshot at or after both models' label cut-offs (the
       instant their training labels had closed): the latest such snapshot;
       both models are scored on it as they are.
    2. Otherwise (a fresh challenger was fit on every labelled snapshot):
       each model's *backtest twin*, its recipe rerun at the same cut-offs of
       the current training set (:func:`churnml.models.backtest.run_backtest`);
       the mean of ``metric`` over the cut-offs.
    3. Models without that metadata (fit outside ``train_churn_job``): the
       latest labelled snapshot, said in the evidence.

    Returns
    -------
    scores : dict
    evidence : str
        What the scores were computed on.
    rows : int
    """
    from churnml.evaluation import churn_metrics

    ds = ds or open_dataset(load_dataset_config(cfg.dataset))
    h = dt.timedelta(days=label_window_days(ds.config))
    labelled = [s for s in ds.config.snapshot_instants() if s + h <= ds.observed_until]
    cutoffs = {k: m.metadata.get("label_cutoff") for k, m in models.items()}
    recipes = {k: m.metadata.get("recipe") for k, m in models.items()}
    newest = max((utc(c) for c in cutoffs.values() if c), default=None)
    newer = [s for s in labelled if newest is not None and s >= newest]
    if all(cutoffs.values()) and not newer and all(recipes.values()):
        df, doc = _load_training_frame(cfg, ds, None)
        df["as_of"] = pd.to_datetime(df["as_of"], utc=True)
        instants = [utc(x.to_pydatetime()) for x in sorted(df["as_of"].unique())]
        horizon = doc.get("label_window_days") or doc.get("horizon_days") or label_window_days(ds.config)
        cuts = backtest_cutoffs(instants, horizon, folds=cfg.backtest.folds,
                                valid_snapshots=cfg.split.valid_snapshots, labels=df[["as_of", LABEL]],
                                min_class_count=cfg.min_class_count)
        out = {}
        threads = (settings or get_settings()).threads
        for k, m in models.items():
            bt = run_backtest(df, {"twin": Recipe.from_dict(recipes[k])}, horizon, cuts, baselines=False,
                              threads=threads)
            out[k] = float(bt.mean().loc[MODEL, metric])
        n = int((df["as_of"].isin(cuts)).sum())
        return out, f"backtest twins at {', '.join(str(c.date()) for c in cuts)}", n
    as_of = max(newer) if all(cutoffs.values()) and newer else latest_labelled_snapshot(ds)
    table, _ = build_snapshot(ds, as_of, labels=True)
    df = table.to_pandas()
    y = df[LABEL].to_numpy()
    out = {k: churn_metrics(y, m.predict_proba(df, where=f"holdout {as_of.date()}"))[metric] for k, m in models.items()}
    if all(cutoffs.values()):
        return out, f"snapshot {as_of.date()}, newer than both models' training labels", len(df)
    return out, (f"snapshot {as_of.date()}, the latest labelled (a model without a recorded label cut-off "
                 "may have been fit on it)"), len(df)


def promote_job(
    cfg: TrainConfig,
    *,
    margin: float | None = None,
    dataset: Dataset | None = None,
    settings: Settings | None = None,
    holdout_scores: Callable | None = None,
) -> PromotionResult:
    """Give the ``challenger`` the ``champion`` alias if it is not worse on like-for-like evidence.

    Both versions are judged on the same rows, which neither was fit on. For
    churn models: a labelled snapshot newer than both models' training labels
    if there is one, else each model's backtest twin at the same cut-offs
    (see :func:`_holdout_scores`); for uplift models, the latest campaign.
    The decision, the figures, what they were computed on and the versions
    are logged as an MLflow run (tag ``kind=promotion``) whatever the outcome.
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
        score = holdout_scores or functools.partial(_holdout_scores, settings=settings)
        scores, on, n = score(models, cfg, dataset, metric)
        on = on.isoformat() if isinstance(on, dt.datetime) else str(on)
        ok = gate(scores["challenger"], scores["champion"], metric, margin)
        direction = "lower" if metric in LOWER_IS_BETTER else "higher"
        reason = (f"{metric} {scores['challenger']:.4f} vs champion {scores['champion']:.4f} on {on} "
                  f"({direction} is better, margin {margin:g}): "
                  + ("not worse, promoted" if ok else "worse, kept the champion"))
        res = PromotionResult(name, chall_ref.version, champ_ref.version, ok, reason, metric,
                              scores["challenger"], scores["champion"], on, n)
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
