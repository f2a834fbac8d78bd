"""Multi-channel recall-uplift training: one uplift per channel, and what choosing the channel per user is worth.

:func:`churnml.train_uplift.train_uplift_job` hands its work here when the
campaigns randomise over more than one channel (``channel`` holds control and
two or more channel names). The channels come from the data; their costs and
the evaluation budget from ``TrainConfig.policy``. As for one channel, earlier
campaigns train and the latest tests:

* the learner is chosen among :func:`~churnml.models.uplift.default_multiarm_candidates`
  by 5-fold cross-validated multi-arm Qini on the training campaigns, and its
  uplift is calibrated per channel from its out-of-fold predictions on those
  folds (:func:`~churnml.models.uplift.arm_calibration`): a channel whose
  model ranks users by noise would otherwise win them from the others by noise.
  The uncalibrated model's assignment is valued beside it;
* on the test campaign, each channel's Qini (against control, with a bootstrap
  interval), uplift calibration per channel, and the multi-arm Qini;
* the off-policy value of the learned assignment beside one channel for
  everyone (each channel, targeted by its predicted uplift), random channels
  and churn-risk ranking on each channel (when a churn model is registered),
  all under the same budget: inverse-propensity and doubly robust estimates
  with intervals, and on simulated data the true value, the true optimal
  assignment's and that of a model taught the true per-channel uplifts from
  the same features (the ceiling).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from churnml import metrics, tracking
from churnml.assignment import NONE, assign_channels
from churnml.config import PolicyConfig, Settings, TrainConfig
from churnml.data import CONTROL, Dataset
from churnml.exceptions import TrainingDataError
from churnml.features import RESPONSE
from churnml.models.churn import feature_specs, to_matrix
from churnml.models.uplift import default_multiarm_candidates, select_multiarm_model
from churnml.models.uplift_store import UpliftModel

__all__ = ["arm_sizes", "channels_of", "evaluate_policies", "small_arms", "train_channels_job"]

ID_COLUMNS = ("campaign_id", "user_id", "as_of")
LEARNED = "learned assignment"
UNCALIBRATED = "learned assignment, uplift not calibrated"
OPTIMAL = "true optimal assignment"
CEILING = "true uplifts learned from features"


def channels_of(df: pd.DataFrame) -> list[str]:
    """The channels of an exposure table (its non-control arms), sorted."""
    return sorted(set(df["channel"].astype(str)) - {CONTROL})


def arm_sizes(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Exposures per campaign (by first send) and arm: ``{campaign: {arm: n}}``."""
    arms = [CONTROL, *channels_of(df)]
    order = df.groupby("campaign_id")["as_of"].min().sort_values().index if "as_of" in df else \
        sorted(df["campaign_id"].unique())
    counts = df.groupby(["campaign_id", "channel"]).size()
    return {str(c): {a: int(counts.get((c, a), 0)) for a in arms} for c in order}


def small_arms(sizes: dict[str, dict[str, int]], min_group: int) -> list[str]:
    """One message per campaign with an arm of fewer than ``min_group`` exposures."""
    return [f"campaign '{cid}' has " + ", ".join(f"{n:,} {a}" for a, n in arms.items())
            + f" exposures (at least {min_group:,} of each are needed)"
            for cid, arms in sizes.items() if min(arms.values()) < min_group]


def _check_arms(df: pd.DataFrame, min_group: int) -> None:
    problems = small_arms(arm_sizes(df), min_group)
    if problems:
        raise TrainingDataError("; ".join(problems))
    rates = df.groupby("channel")[RESPONSE].agg(["mean", "size"])
    flat = rates[(rates["mean"] == 0) | (rates["mean"] == 1)]
    if len(flat):
        arm, row = flat.index[0], flat.iloc[0]
        raise TrainingDataError(f"the outcome (activity in the response window) is always {int(row['mean'])} "
                                f"over all {int(row['size']):,} {arm} exposures: nothing to learn about it")


# --------------------------------------------------------------------------- truth (simulator)


def arm_truth(frame: pd.DataFrame, truth: Path | None, channels: list[str]) -> np.ndarray | None:
    """The simulator's return probability under every arm, ``(n, 1 + K)`` columns ``[control, *channels]``.

    Read from ``exposure_arms.parquet`` beside the configured ``exposures.parquet``
    (or the configured file itself); None when there is no such truth or it
    misses a row or a channel.
    """
    if truth is None:
        return None
    truth = Path(truth)
    path = truth if "channel" in _columns(truth) and "p_return" in _columns(truth) else \
        truth.with_name("exposure_arms.parquet")
    if not path.is_file():
        return None
    t = pd.read_parquet(path, columns=["campaign_id", "user_id", "channel", "p_return"])
    wide = t.pivot_table(index=["campaign_id", "user_id"], columns="channel", values="p_return")
    if not set([CONTROL, *channels]) <= set(wide.columns):
        return None
    got = frame[["campaign_id", "user_id"]].merge(wide[[CONTROL, *channels]].reset_index(),
                                                  on=["campaign_id", "user_id"], how="left")
    values = got[[CONTROL, *channels]].to_numpy(dtype=float)
    return None if np.isnan(values).any() else values


def _columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(path).names if path.is_file() else []


def _ceiling(X_train: pd.DataFrame, true_train: np.ndarray, X_test: pd.DataFrame, *, seed: int,
             threads: int | None) -> np.ndarray:
    """Each channel's true uplift learned from the features (a LightGBM regressor per channel); simulator only."""
    from churnml.train_uplift import _feature_ceiling

    return np.column_stack([_feature_ceiling(X_train, true_train[:, k + 1] - true_train[:, 0], X_test, seed=seed,
                                             threads=threads) for k in range(true_train.shape[1] - 1)])


# --------------------------------------------------------------------------- policies


def _policy_labels(choice: np.ndarray, channels: list[str]) -> np.ndarray:
    names = np.asarray([*channels, CONTROL], dtype=object)
    return names[np.where(choice == NONE, len(channels), choice)]


def evaluate_policies(y, arm, policies: dict[str, np.ndarray], *, channels: list[str], policy: PolicyConfig,
                      outcome: np.ndarray | None = None, truth: np.ndarray | None = None, n_boot: int = 200,
                      seed: int = 0) -> pd.DataFrame:
    """Value per user of each assignment on a randomised campaign: IPW and doubly robust, with intervals.

    Parameters
    ----------
    y, arm : array-like of shape (n,)
        Outcome and the arm each exposure got.
    policies : dict of str to array of arm labels
        The arm each policy gives each exposure.
    channels : list of str
    policy : PolicyConfig
        Value of a return and the channels' costs.
    outcome : array of shape (n, 1 + K), optional
        Predicted return probability under each arm (for the doubly robust estimate).
    truth : array of shape (n, 1 + K), optional
        True return probabilities (simulator): adds the true value.

    Returns
    -------
    DataFrame
        One row per policy: ``contacted``, ``cost``, per-channel counts,
        ``value_ipw`` (with ``_low``/``_high``), ``value_dr`` (same), and
        ``value_true``; values are net value per exposure.
    """
    costs = {c: policy.cost(c) for c in channels}
    common = {"channels": channels, "costs": costs, "value_per_user": policy.value_per_user, "n_boot": n_boot,
              "seed": seed}
    rows = {}
    for name, labels in policies.items():
        row = {"contacted": int((labels != CONTROL).sum()),
               "cost": float(sum(costs[c] * (labels == c).sum() for c in channels))}
        row |= {f"n_{c}": int((labels == c).sum()) for c in channels}
        ipw = metrics.policy_value_interval(y, arm, labels, **common)
        row |= {"value_ipw": ipw["estimate"], "value_ipw_low": ipw["low"], "value_ipw_high": ipw["high"]}
        if outcome is not None:
            dr = metrics.policy_value_interval(y, arm, labels, outcome=outcome, method="dr", **common)
            row |= {"value_dr": dr["estimate"], "value_dr_low": dr["low"], "value_dr_high": dr["high"]}
        if truth is not None:
            row["value_true"] = metrics.expected_policy_value(truth, labels, channels=channels, costs=costs,
                                                              value_per_user=policy.value_per_user)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _policies(up: np.ndarray, channels: list[str], policy: PolicyConfig, *, churn: np.ndarray | None,
              true_up: np.ndarray | None, ceiling: np.ndarray | None, seed: int,
              uncalibrated: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The assignments compared, each under the same budget and costs."""
    n, k = up.shape
    cost = np.array([policy.cost(c) for c in channels])
    budget = {"max_contacts": max(1, round(policy.contact_share * n)),
              "max_cost": None if policy.cost_per_user is None else policy.cost_per_user * n}
    v = policy.value_per_user

    def assign(net, uplift=None):
        return _policy_labels(assign_channels(net, cost, uplift=uplift, **budget), channels)

    def only(score, j):
        net = np.full((n, k), np.nan)
        net[:, j] = score
        return net

    out = {LEARNED: assign(v * up - cost, up)}
    if uncalibrated is not None:
        out[UNCALIBRATED] = assign(v * uncalibrated - cost, uncalibrated)
    for j, c in enumerate(channels):
        out[f"everyone by {c}"] = assign(only(v * up[:, j] - cost[j], j), only(up[:, j], j))
    rng = np.random.default_rng(seed)
    out["random channel"] = assign(_random_net(rng, n, k))
    if churn is not None:
        for j, c in enumerate(channels):
            out[f"churn risk by {c}"] = assign(only(churn + 1e-9, j))
    if ceiling is not None:
        out[CEILING] = assign(v * ceiling - cost, ceiling)
    if true_up is not None:
        out[OPTIMAL] = assign(v * true_up - cost, true_up)
    return out


def _random_net(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """A random positive score on one random channel per user (random users, random channels)."""
    net = np.full((n, k), np.nan)
    net[np.arange(n), rng.integers(0, k, n)] = rng.random(n) + 1e-9
    return net


def _per_channel(y, arm, up: np.ndarray, channels: list[str], *, true_up: np.ndarray | None, seed: int,
                 n_boot: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each channel against control: Qini with a bootstrap interval, observed uplift, calibration."""
    rows, calib = {}, []
    for j, c in enumerate(channels):
        m = (arm == CONTROL) | (arm == c)
        yy, tt, uu = y[m], (arm[m] == c).astype(int), up[m, j]
        ci = metrics.bootstrap_interval(metrics.qini_auc_score, yy, uu, tt, n_boot=n_boot, seed=seed)
        obs = yy[tt == 1].mean() - yy[tt == 0].mean()
        se = np.sqrt(yy[tt == 1].var(ddof=1) / (tt == 1).sum() + yy[tt == 0].var(ddof=1) / (tt == 0).sum())
        row = {"n_channel": int(tt.sum()), "n_control": int((tt == 0).sum()), "qini_auc": ci["estimate"],
               "qini_auc_low": ci["low"], "qini_auc_high": ci["high"],
               "observed_uplift": float(obs), "observed_uplift_low": float(obs - 1.96 * se),
               "observed_uplift_high": float(obs + 1.96 * se), "mean_predicted_uplift": float(uu.mean()),
               "calibration_error": metrics.uplift_calibration_error(yy, uu, tt, bins=10)}
        if true_up is not None:
            row["qini_auc_true_uplift"] = metrics.qini_auc_score(yy, true_up[m, j], tt)
            row["spearman_to_true"] = float(pd.Series(uu).corr(pd.Series(true_up[m, j]), method="spearman"))
        rows[c] = row
        calib.append(metrics.uplift_calibration(yy, uu, tt, bins=10).assign(channel=c))
    return pd.DataFrame.from_dict(rows, orient="index"), pd.concat(calib)


def _figures(y, arm, up, channels, table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 5))
    for j, c in enumerate(channels):
        m = (arm == CONTROL) | (arm == c)
        x, q = metrics.qini_curve(y[m], up[m, j], (arm[m] == c).astype(int))
        ax.plot(x / x[-1], q / x[-1], label=c)
    ax.axhline(0, c="grey", lw=0.8)
    ax.set(xlabel="share of the channel's and control's exposures targeted", ylabel="incremental responders per exposure",
           title="Qini curve of each channel against control (test campaign)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig2, ax2 = plt.subplots(figsize=(7, 0.45 * len(table) + 1.5))
    col = "value_true" if "value_true" in table else "value_ipw"
    order = table.sort_values(col)
    ax2.barh(order.index, order[col], color="#4a78b5")
    if col == "value_ipw":
        ax2.errorbar(order[col], order.index, xerr=[order[col] - order["value_ipw_low"],
                                                    order["value_ipw_high"] - order[col]], fmt="none", c="k")
    ax2.set(xlabel="net value per exposure (" + ("simulator truth" if col == "value_true" else "IPW, 95% interval") + ")",
            title="Policies at the same budget on the test campaign")
    fig2.tight_layout()
    return fig, fig2


# --------------------------------------------------------------------------- the job


def train_channels_job(cfg: TrainConfig, ds: Dataset, df: pd.DataFrame, info: dict, *, settings: Settings,
                       register: bool, candidates: dict | None, log: Callable[[str], None], t0: float):
    """Train, evaluate, track and register a multi-channel recall-uplift model (see the module docstring).

    Called by :func:`churnml.train_uplift.train_uplift_job` with the exposure table.

    Raises
    ------
    TrainingDataError
        Fewer than two campaigns, an arm of a campaign too small, or an arm whose outcome never varies.
    """
    from churnml.train_uplift import UpliftTrainResult, _churn_scores, split_campaigns

    channels = channels_of(df)
    _check_arms(df, min_group=max(10, cfg.min_class_count // 2))
    log(f"channels (from the campaigns): {', '.join(channels)} and {CONTROL}")
    sends, train_ids, test_ids, train, test = split_campaigns(df, cfg, log)
    features = [c for c in info["feature_columns"] if c not in cfg.exclude_features]
    specs = feature_specs(train, features)
    X_tr = to_matrix(train, specs, where="training exposures").reset_index(drop=True)
    y_tr, a_tr = train[RESPONSE].to_numpy(), train["channel"].astype(str).to_numpy()
    cands = candidates or default_multiarm_candidates(seed=cfg.seed, n_jobs=settings.threads or 2)
    log(f"cross-validating {len(cands)} multi-arm uplift learners on the training campaigns (5 folds each)")
    best, learner, selection = select_multiarm_model(
        X_tr, y_tr, a_tr, cands, cv=5, seed=cfg.seed,
        progress=lambda name, score, sec: log(f"  {name}: multi-arm Qini {score:.4f} ({sec:.1f}s)"))
    default = selection.index[selection["default"]][0]
    gain = selection.loc[best, ["gain_over_default", "gain_se"]]
    log(f"kept the default learner '{best}'" if best == default else
        f"selected '{best}' ({gain.iloc[0]:+.4f} ± {gain.iloc[1]:.4f} over the default '{default}')")
    cal = getattr(learner, "calibration_", None)
    if cal is not None:
        log("per-channel uplift calibration (out-of-fold, doubly robust): " + ", ".join(
            f"{c} slope {b:.2f}" for c, b in zip(channels, cal[:, 2], strict=True)))
    model = UpliftModel(learner, specs, segment_threshold=0.01, response_threshold=0.5,
                        metadata={"selected": best, "channels": channels, "control": CONTROL,
                                  "train_campaigns": train_ids, "test_campaigns": test_ids,
                                  "response_window_days": ds.config.response_window_days,
                                  "event_types": ds.event_types(before=sends.iloc[-1].to_pydatetime()),
                                  "glossary": info["glossary"], "base_response_rate": float(y_tr.mean()),
                                  "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})

    # --- the test campaign -----------------------------------------------------------------
    y, arm = test[RESPONSE].to_numpy(), test["channel"].astype(str).to_numpy()
    X_te = model.matrix(test, where="test exposures")
    p0, p = learner.predict_outcomes(X_te)
    up = p - p0[:, None]
    raw_up = None
    if cal is not None:  # the same model without its calibration, valued beside it
        raw_p0, raw_p = learner._outcomes(learner._predict_inputs(X_te))
        raw_up = raw_p - raw_p0[:, None]
    truth = arm_truth(test, cfg.truth, channels)
    true_up = None if truth is None else truth[:, 1:] - truth[:, [0]]
    ceiling = None
    if truth is not None:
        truth_tr = arm_truth(train, cfg.truth, channels)
        if truth_tr is not None:
            ceiling = _ceiling(X_tr, truth_tr, X_te, seed=cfg.seed, threads=settings.threads or 2)
    churn = _churn_scores(test, settings)
    if churn is None:
        log("no registered churn-risk model scores these features: churn-risk ranking is not compared")
    per_channel, calibration = _per_channel(y, arm, up, channels, true_up=true_up, seed=cfg.seed)
    flat = {"multiarm_qini_auc": metrics.multiarm_qini_auc_score(y, up, arm, channels=channels)}
    if true_up is not None:
        flat["multiarm_qini_auc_true_uplift"] = metrics.multiarm_qini_auc_score(y, true_up, arm, channels=channels)
    assignments = _policies(up, channels, cfg.policy, churn=churn, true_up=true_up, ceiling=ceiling, seed=cfg.seed,
                            uncalibrated=raw_up)
    policies = evaluate_policies(y, arm, assignments, channels=channels, policy=cfg.policy,
                                 outcome=np.column_stack([p0, p]), truth=truth, seed=cfg.seed)
    flat |= _headline(policies, channels)
    if cal is not None:
        per_channel["calibration_slope"] = cal[:, 2]
    for c, row in per_channel.iterrows():
        flat |= {f"{c}_qini_auc": row["qini_auc"], f"{c}_calibration_error": row["calibration_error"]}

    version = None
    with tracking.start_run(cfg.experiment_name, run_name=f"uplift by channel {', '.join(test_ids)}",
                            tags={"kind": "uplift", "channels": ",".join(channels),
                                  "git_revision": tracking.git_revision()}, settings=settings) as run_id:
        tracking.log_params({"seed": cfg.seed, "selected_learner": best, "channels": ",".join(channels),
                             "train_campaigns": ",".join(train_ids), "test_campaigns": ",".join(test_ids),
                             "n_features": len(specs), "rows_train": len(train), "rows_test": len(test),
                             "policy_contact_share": cfg.policy.contact_share,
                             **{f"cost_{c}": cfg.policy.cost(c) for c in channels}})
        if cfg.source is not None:
            tracking.log_artifact(cfg.source, "config")
        tracking.log_dict(cfg.model_dump(mode="json"), "config/resolved.json")
        tracking.log_dict({"features": [s.to_dict() for s in specs], "glossary": info["glossary"]},
                          "feature_schema.json")
        for part, frame in (("train", train), ("test", test)):
            tracking.log_dataset(frame[[*ID_COLUMNS, *features, "channel", RESPONSE]], name=f"{ds.config.name}-{part}",
                                 source=str(cfg.dataset), context=part, targets=RESPONSE)
        tracking.log_metrics({k: float(v) for k, v in flat.items() if isinstance(v, float | int) and v == v}
                             | {"seconds_total": time.perf_counter() - t0})
        for name, frame in (("selection", selection), ("channels", per_channel), ("policies", policies),
                            ("calibration", calibration)):
            tracking.log_dict(json.loads(frame.to_json(orient="index" if name != "calibration" else "records")),
                              f"evaluation/{name}.json")
        for fig, path in zip(_figures(y, arm, up, channels, policies), ("plots/qini_by_channel.png",
                                                                         "plots/policies.png"), strict=True):
            tracking.log_figure(fig, path)
            plt.close(fig)
        if register:
            ref = tracking.log_model(model, registered_name=cfg.model_name,
                                     input_example=test[model.feature_names].head(5))
            version = ref.version
            tracking.set_version_tags(cfg.model_name, version, {
                "test_campaign": ",".join(test_ids), "channels": ",".join(channels), "learner": best,
                "test_multiarm_qini_auc": f"{flat['multiarm_qini_auc']:.4f}"})
    return UpliftTrainResult(run_id, model, best, selection, flat, per_channel, calibration, version,
                             {"train": len(train), "test": len(test)}, train_ids, test_ids,
                             channels=channels, policies=policies)


def _headline(policies: pd.DataFrame, channels: list[str]) -> dict:
    """Ratios of the learned assignment's value to the best single channel and to the ceiling."""
    col = "value_true" if "value_true" in policies else "value_ipw"
    single = policies.loc[[f"everyone by {c}" for c in channels], col]
    out = {"best_single_channel": str(single.idxmax()).removeprefix("everyone by "),
           f"learned_{col}": float(policies.loc[LEARNED, col]), f"best_single_{col}": float(single.max())}
    if single.max() > 0:
        out["ratio_to_best_single_channel"] = float(policies.loc[LEARNED, col] / single.max())
    for name, key in ((CEILING, "ratio_to_ceiling"), (OPTIMAL, "ratio_to_optimal")):
        if name in policies.index and policies.loc[name, col] > 0:
            out[key] = float(policies.loc[LEARNED, col] / policies.loc[name, col])
            if UNCALIBRATED in policies.index:
                out[f"uncalibrated_{key}"] = float(policies.loc[UNCALIBRATED, col] / policies.loc[name, col])
    return out

