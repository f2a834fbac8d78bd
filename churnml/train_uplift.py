"""Recall-uplift training: learn who comes back *because* of a recall message, from randomised campaigns.

:func:`train_uplift_job` builds one row per campaign exposure (features as of
the send, ``treated``, ``responded``), trains on earlier campaigns and tests on
the latest one, chooses the learner by cross-validated Qini on the training
campaigns only, and reports the test campaign beside random targeting,
targeting by churn risk and (on simulated data) the true uplift. It logs and
registers the model like the churn job (``recall-uplift``, alias
``challenger``); :func:`churnml.train.promote_job` gates it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from churnml import metrics, tracking
from churnml.config import Settings, TrainConfig, get_settings, load_dataset_config
from churnml.data import Dataset, open_dataset
from churnml.exceptions import TrainingDataError
from churnml.features import RESPONSE, build_uplift_set
from churnml.models import uplift as learners
from churnml.models.churn import feature_specs, to_matrix
from churnml.models.uplift_store import UpliftModel
from churnml.train_channels import channels_of, train_channels_job

__all__ = ["UpliftTrainResult", "evaluate_uplift", "incremental_returns", "train_uplift_job", "uplift_frames"]

ID_COLUMNS = ("campaign_id", "user_id", "as_of")
OUTCOME_COLUMNS = ("treated", RESPONSE)
BUDGET = 0.10


@dataclass
class UpliftTrainResult:
    """What an uplift training run did."""

    run_id: str
    model: UpliftModel
    selected: str
    selection: pd.DataFrame
    metrics: dict
    targeting: pd.DataFrame
    calibration: pd.DataFrame
    version: str | None
    rows: dict
    train_campaigns: list[str]
    test_campaigns: list[str]
    warnings: list[str] = field(default_factory=list)
    channels: list[str] | None = None
    policies: pd.DataFrame | None = None


def small_campaigns(sizes: Iterable[tuple[str, int, int]], min_group: int) -> list[str]:
    """One message per campaign with fewer than ``min_group`` treated or control exposures.

    ``sizes`` holds ``(campaign_id, n_treated, n_control)``, in the order to report them.
    """
    return [f"campaign '{cid}' has {n1:,} treated and {n0:,} control exposures "
            f"(at least {min_group:,} of each are needed)"
            for cid, n1, n0 in sizes if n0 < min_group or n1 < min_group]


def _check_campaigns(df: pd.DataFrame, min_group: int) -> None:
    sizes = [(cid, int((g["treated"] == 1).sum()), int((g["treated"] == 0).sum()))
             for cid, g in df.groupby("campaign_id", sort=True)]
    problems = small_campaigns(sizes, min_group)
    if problems:
        raise TrainingDataError("; ".join(problems))
    if df[RESPONSE].nunique() < 2:
        counts = ", ".join(f"'{cid}' ({n:,})" for cid, n in df.groupby("campaign_id", sort=True).size().items())
        raise TrainingDataError(f"the outcome (activity in the response window) is always {int(df[RESPONSE].iloc[0])} "
                                f"over all {len(df):,} exposures of campaigns {counts}: nothing to learn")


def split_campaigns(df: pd.DataFrame, cfg: TrainConfig, log: Callable[[str], None]):
    """The latest campaigns (by first send) test, the earlier ones train.

    Returns ``(sends, train_ids, test_ids, train, test)``.

    Raises
    ------
    TrainingDataError
        Fewer than two campaigns.
    """
    sends = df.groupby("campaign_id")["as_of"].min().sort_values()
    if len(sends) < 2:
        raise TrainingDataError(f"{len(sends)} campaign(s) with a closed response window "
                                f"({', '.join(sends.index)}): training needs earlier campaigns and a later one to test")
    test_ids = list(sends.index[-cfg.split.test_snapshots:])
    train_ids = [c for c in sends.index if c not in test_ids]
    train, test = df[df["campaign_id"].isin(train_ids)], df[df["campaign_id"].isin(test_ids)]
    log(f"train campaigns: {', '.join(train_ids)} ({len(train):,} exposures)")
    log(f"test campaign:   {', '.join(test_ids)} ({len(test):,} exposures)")
    return sends, train_ids, test_ids, train, test


def uplift_frames(ds: Dataset, *, progress=None) -> tuple[pd.DataFrame, dict]:
    """The exposure table of a dataset and a glossary of its features."""
    from churnml.jobs import _schema_doc

    table, fs = build_uplift_set(ds, progress=progress)
    doc = _schema_doc(ds, fs, table.select(["user_id", "as_of", *fs.columns]), [], False)
    glossary = {c["name"]: {k: c.get(k) for k in ("description", "family", "window_days")}
                for c in doc["columns"] if c["name"] in fs.columns}
    return table.to_pandas(), {"feature_columns": fs.columns, "glossary": glossary}


def incremental_returns(score: np.ndarray, true_uplift: np.ndarray, budget: float = BUDGET) -> float:
    """Expected extra returns per 1,000 contacts when contacting the top ``budget`` share by ``score``."""
    k = max(1, round(budget * len(score)))
    top = np.argsort(-np.asarray(score, dtype="float64"), kind="stable")[:k]
    return float(np.mean(np.asarray(true_uplift)[top]) * 1000)


def observed_incremental_returns(score, y, t, budget: float = BUDGET) -> float:
    """Per 1,000 contacts at the top ``budget`` share by ``score``: treated minus control response rate there."""
    k = max(1, round(budget * len(score)))
    top = np.argsort(-np.asarray(score, dtype="float64"), kind="stable")[:k]
    yt, tt = np.asarray(y)[top], np.asarray(t)[top]
    if tt.min() == tt.max():
        return float("nan")
    return float((yt[tt == 1].mean() - yt[tt == 0].mean()) * 1000)


def evaluate_uplift(y, t, scores: dict[str, np.ndarray], *, true_uplift=None, seed: int = 0,
                    n_boot: int = 200) -> tuple[dict, pd.DataFrame]:
    """Qini, AUUC and uplift@k of each targeting score on one test campaign, with bootstrap intervals.

    Returns
    -------
    metrics : dict
        ``<score>_<metric>`` and ``..._low``/``..._high`` (95 % percentile
        bootstrap, stratified by treatment).
    targeting : DataFrame
        Per score: qini_auc, uplift_auc, uplift@10 %, uplift@30 %, and
        incremental returns per 1,000 contacts at a 10 % budget (observed,
        and with the simulator's truth, expected).
    """
    rows, flat = {}, {}
    for name, s in scores.items():
        row = {}
        for metric, fn, kw in (("qini_auc", metrics.qini_auc_score, {}),
                               ("uplift_auc", metrics.uplift_auc_score, {}),
                               ("uplift_at_30", metrics.uplift_at_k, {"k": 0.3, "strategy": "by_group"}),
                               ("uplift_at_10", metrics.uplift_at_k, {"k": 0.1, "strategy": "by_group"})):
            if metric == "qini_auc" and n_boot:
                ci = metrics.bootstrap_interval(fn, y, s, t, n_boot=n_boot, seed=seed, **kw)
                row |= {metric: ci["estimate"], f"{metric}_low": ci["low"], f"{metric}_high": ci["high"]}
            else:
                row[metric] = fn(y, s, t, **kw)
        row["returns_per_1000_observed"] = observed_incremental_returns(s, y, t)
        if true_uplift is not None:
            row["returns_per_1000_expected"] = incremental_returns(s, true_uplift)
        rows[name] = row
        key = name.replace(" ", "_").replace("-", "_")
        flat |= {f"{key}_{k}": v for k, v in row.items()}
    return flat, pd.DataFrame.from_dict(rows, orient="index")


def _churn_scores(test: pd.DataFrame, settings: Settings) -> np.ndarray | None:
    """Churn risk of the test exposures from the registered churn champion (or challenger), if any."""
    for alias in ("champion", "challenger"):
        try:
            model, _ = tracking.load_model("churn-risk", alias, settings)
        except LookupError:
            continue
        try:
            return model.predict_proba(test, where="test campaign")
        except ValueError:
            return None
    return None


CEILING = "true uplift learned from features"


def _feature_ceiling(X_train: pd.DataFrame, true_uplift: np.ndarray, X_test: pd.DataFrame, *, seed: int,
                     threads: int | None) -> np.ndarray:
    """Test scores of a LightGBM regressor fitted to the *true* uplift of the training exposures.

    Simulator only. No learner sees the true uplift, so this bounds from above
    (up to its own fitting error) what targeting on these features can reach:
    the simulator's uplift also depends on per-user traits and states that no
    feature shows. Compare the model with it, not only with the true uplift.
    """
    import lightgbm as lgb

    reg = lgb.LGBMRegressor(n_estimators=600, learning_rate=0.03, num_leaves=31, min_child_samples=50,
                            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed,
                            deterministic=True, force_row_wise=True, verbose=-1,
                            **({"n_jobs": threads} if threads else {}))
    return reg.fit(X_train, true_uplift).predict(X_test)


def _truth(test: pd.DataFrame, truth: Path) -> np.ndarray | None:
    t = pd.read_parquet(truth)
    if "uplift" not in t:
        return None
    key = test[["campaign_id", "user_id"]]
    got = key.merge(t[["campaign_id", "user_id", "uplift"]], on=["campaign_id", "user_id"], how="left")["uplift"]
    return None if got.isna().any() else got.to_numpy()


def _curve_figure(y, t, scores: dict[str, np.ndarray], kind: str = "qini"):
    """Qini or uplift curves of each targeting score, with the random-targeting line."""
    curve, label = ((metrics.qini_curve, "incremental responders (Qini)") if kind == "qini"
                    else (metrics.uplift_curve, "uplift x number targeted"))
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        x, q = curve(y, s, t)
        ax.plot(x / x[-1], q, label=name)
    ax.plot([0, 1], [0, q[-1]], ls="--", c="grey", label="random (expected)")
    ax.set(xlabel="share of exposures targeted (highest score first)", ylabel=label,
           title=f"{'Qini' if kind == 'qini' else 'Uplift'} curves on the test campaign")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _calibration_figure(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = np.arange(len(table))
    ax.errorbar(x, table["observed_uplift"], yerr=1.96 * table["std_error"], fmt="o", label="observed (95% CI)")
    ax.plot(x, table["mean_predicted"], marker="s", label="predicted")
    ax.axhline(0, c="grey", lw=0.8)
    ax.set_xticks(x, list(table.index), rotation=45, ha="right", fontsize=8)
    ax.set(xlabel="decile of predicted uplift (highest first)", ylabel="uplift (response rate difference)",
           title="Uplift calibration on the test campaign")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def train_uplift_job(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    settings: Settings | None = None,
    register: bool = True,
    candidates: dict | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> UpliftTrainResult:
    """Train, evaluate, track and register the recall-uplift model.

    Campaigns randomised over several channels get one uplift per channel
    (:func:`churnml.train_channels.train_channels_job`). Otherwise:
    the latest campaign (by send time) is the test part; every earlier
    campaign trains. The learner is chosen among ``candidates`` (default
    :func:`churnml.models.uplift.default_candidates`) by 5-fold
    cross-validated Qini on the training campaigns, never on the test one.

    Raises
    ------
    TrainingDataError
        Fewer than two campaigns, a campaign without enough treated or control
        exposures, or an outcome that never varies.
    """
    settings = settings or get_settings()
    t0 = time.perf_counter()
    ds = dataset or open_dataset(load_dataset_config(cfg.dataset))
    df, info = uplift_frames(ds)
    if len(channels_of(df)) > 1:  # campaigns randomised over several channels: one uplift per channel
        return train_channels_job(cfg, ds, df, info, settings=settings, register=register, candidates=candidates,
                                  log=log, t0=t0)
    _check_campaigns(df, min_group=max(10, cfg.min_class_count // 2))
    sends, train_ids, test_ids, train, test = split_campaigns(df, cfg, log)
    features = [c for c in info["feature_columns"] if c not in cfg.exclude_features]
    specs = feature_specs(train, features)
    X_tr = to_matrix(train, specs, where="training exposures").reset_index(drop=True)
    y_tr, t_tr = train[RESPONSE].to_numpy(), train["treated"].to_numpy()
    cands = candidates or learners.default_candidates(seed=cfg.seed, n_jobs=settings.threads or 2)
    log(f"cross-validating {len(cands)} uplift learners on the training campaigns (5 folds each)")
    best, learner, selection = learners.select_uplift_model(
        X_tr, y_tr, t_tr, cands, cv=5, seed=cfg.seed,
        progress=lambda name, score, sec: log(f"  {name}: Qini {score:.4f} ({sec:.1f}s)"))
    gain = selection.loc[best, ["gain_over_default", "gain_se"]]
    default = selection.index[selection["default"]][0]
    if best == default:
        log(f"kept the default learner '{best}': no other beat its 5-fold cross-validated Qini on the "
            "training campaigns by more than one standard error")
    else:
        log(f"selected '{best}' by 5-fold cross-validated Qini on the training campaigns "
            f"({gain.iloc[0]:+.4f} ± {gain.iloc[1]:.4f} over the default '{default}', "
            "which is kept unless beaten by more than one standard error)")
    base = float(train[RESPONSE].mean())
    model = UpliftModel(learner, specs, segment_threshold=0.01, response_threshold=0.5,
                        metadata={"selected": best, "train_campaigns": train_ids, "test_campaigns": test_ids,
                                  "response_window_days": ds.config.response_window_days,
                                  "event_types": ds.event_types(before=sends.iloc[-1].to_pydatetime()),
                                  "glossary": info["glossary"], "base_response_rate": base,
                                  "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})

    # --- the test campaign -----------------------------------------------------------------
    y, t = test[RESPONSE].to_numpy(), test["treated"].to_numpy()
    pred = model.predict_frame(test, where="test exposures")
    rng = np.random.default_rng(cfg.seed)
    scores = {"model": pred["uplift"].to_numpy(), "random": rng.random(len(test))}
    churn = _churn_scores(test, settings)
    if churn is not None:
        scores["churn risk"] = churn
    else:
        log("no registered churn-risk model scores these features: targeting by churn risk is not compared "
            "(train one with `churnml train churn`)")
    true = _truth(test, cfg.truth) if cfg.truth is not None else None
    true_train = _truth(train, cfg.truth) if true is not None else None
    if true_train is not None:
        # What any model of these features could reach: a regressor taught the simulator's true uplift.
        scores[CEILING] = _feature_ceiling(X_tr, true_train, model.matrix(test, where="test exposures"),
                                           seed=cfg.seed, threads=settings.threads)
    if true is not None:
        scores["true uplift"] = true
    flat, targeting = evaluate_uplift(y, t, scores, true_uplift=true, seed=cfg.seed)
    calib = metrics.uplift_calibration(y, scores["model"], t, bins=10)
    flat["uplift_calibration_error"] = metrics.uplift_calibration_error(y, scores["model"], t, bins=10)
    if true is not None:
        flat["qini_ratio_to_true"] = targeting.loc["model", "qini_auc"] / targeting.loc["true uplift", "qini_auc"]
        flat["returns_ratio_to_true"] = (targeting.loc["model", "returns_per_1000_expected"]
                                         / targeting.loc["true uplift", "returns_per_1000_expected"])
        flat["spearman_to_true"] = float(pd.Series(scores["model"]).corr(pd.Series(true), method="spearman"))
    if CEILING in scores:
        flat["ceiling_returns_ratio_to_true"] = (targeting.loc[CEILING, "returns_per_1000_expected"]
                                                 / targeting.loc["true uplift", "returns_per_1000_expected"])
        flat["returns_ratio_to_ceiling"] = (targeting.loc["model", "returns_per_1000_expected"]
                                            / targeting.loc[CEILING, "returns_per_1000_expected"])
    seg = pred["segment"].value_counts().to_dict()

    version = None
    with tracking.start_run(cfg.experiment_name, run_name=f"uplift {', '.join(test_ids)}",
                            tags={"kind": "uplift", "git_revision": tracking.git_revision()},
                            settings=settings) as run_id:
        tracking.log_params({"seed": cfg.seed, "selected_learner": best, "train_campaigns": ",".join(train_ids),
                             "test_campaigns": ",".join(test_ids), "n_features": len(specs),
                             "rows_train": len(train), "rows_test": len(test),
                             **{f"learner_{k}": v for k, v in learner.get_params(deep=False).items()}})
        if cfg.source is not None:
            tracking.log_artifact(cfg.source, "config")
        tracking.log_dict(cfg.model_dump(mode="json"), "config/resolved.json")
        tracking.log_dict({"features": [s.to_dict() for s in specs], "glossary": info["glossary"]},
                          "feature_schema.json")
        for part, frame in (("train", train), ("test", test)):
            tracking.log_dataset(frame[[*ID_COLUMNS, *features, *OUTCOME_COLUMNS]], name=f"{ds.config.name}-{part}",
                                 source=str(cfg.dataset), context=part, targets=RESPONSE)
        tracking.log_metrics({k: v for k, v in flat.items() if isinstance(v, float | int)}
                             | {f"segment_{k}": v for k, v in seg.items()}
                             | {"seconds_total": time.perf_counter() - t0})
        tracking.log_dict(json.loads(selection.to_json(orient="index")), "evaluation/selection.json")
        tracking.log_dict(json.loads(targeting.to_json(orient="index")), "evaluation/targeting.json")
        tracking.log_dict(json.loads(calib.to_json(orient="index")), "evaluation/calibration.json")
        for fig, path in ((_curve_figure(y, t, scores, "qini"), "plots/qini.png"),
                          (_curve_figure(y, t, scores, "uplift"), "plots/uplift_curve.png"),
                          (_calibration_figure(calib), "plots/uplift_calibration.png")):
            tracking.log_figure(fig, path)
            plt.close(fig)
        if register:
            example = test[model.feature_names].head(5)
            ref = tracking.log_model(model, registered_name=cfg.model_name, input_example=example)
            version = ref.version
            tracking.set_version_tags(cfg.model_name, version, {
                "test_campaign": ",".join(test_ids), "test_qini_auc": f"{targeting.loc['model', 'qini_auc']:.4f}",
                "learner": best})
    return UpliftTrainResult(run_id, model, best, selection, flat, targeting, calib, version,
                             {"train": len(train), "test": len(test)}, train_ids, test_ids)


def uplift_holdout_scores(models: dict, cfg: TrainConfig, ds: Dataset | None, metric: str):
    """Qini (or ``metric``) of each uplift model on the latest campaign of the current data."""
    ds = ds or open_dataset(load_dataset_config(cfg.dataset))
    df, _ = uplift_frames(ds)
    last = df.groupby("campaign_id")["as_of"].min().idxmax()
    test = df[df["campaign_id"] == last]
    y, t = test[RESPONSE].to_numpy(), test["treated"].to_numpy()
    channels = channels_of(test)
    if len(channels) > 1:
        # Several channels: each model's per-channel uplift (one uplift stands for every channel) by multi-arm Qini.
        arm = test["channel"].astype(str).to_numpy()
        out = {k: metrics.multiarm_qini_auc_score(y, _per_channel_uplift(m, test, channels, last), arm,
                                                  channels=channels) for k, m in models.items()}
        return out, test["as_of"].min().to_pydatetime(), len(test)
    fn = {"qini_auc": metrics.qini_auc_score, "uplift_auc": metrics.uplift_auc_score}[metric]
    out = {k: fn(y, m.predict_frame(test, where=f"campaign {last}")["uplift"].to_numpy(), t)
           for k, m in models.items()}
    return out, test["as_of"].min().to_pydatetime(), len(test)


def _per_channel_uplift(model: UpliftModel, frame: pd.DataFrame, channels: list[str], campaign: str) -> np.ndarray:
    """A model's uplift for each of ``channels`` (a one-channel model's uplift for all; 0 for one it lacks)."""
    from churnml.models.uplift_store import uplift_column

    pred = model.predict_frame(frame, where=f"campaign {campaign}")
    if model.channels is None:
        return np.repeat(pred["uplift"].to_numpy()[:, None], len(channels), axis=1)
    return np.column_stack([pred[uplift_column(c)].to_numpy() if c in model.channels else np.zeros(len(pred))
                            for c in channels])
