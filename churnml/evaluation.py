"""Evaluate churn scores on a held-out snapshot: metric tables beside baselines, and the plots.

Pure functions over arrays and frames; the metrics themselves live in
:mod:`churnml.metrics`. The training job logs what these return to MLflow.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from churnml import metrics

__all__ = [
    "TENURE_BANDS",
    "backtest_figure",
    "churn_metrics",
    "compare_scores",
    "gains_figure",
    "group_auc",
    "group_auc_figure",
    "reliability_figure",
    "signup_cohort",
    "tenure_band",
]

TOP_SHARES = (0.05, 0.10, 0.20)
TENURE_BANDS = ((0, 7, "0-7 days"), (7, 30, "8-30 days"), (30, 90, "31-90 days"), (90, np.inf, "over 90 days"))


def churn_metrics(y: np.ndarray, score: np.ndarray, *, probability: bool = True, n_bins: int = 10) -> dict:
    """Ranking metrics for any score; calibration metrics too when ``score`` is a probability.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc``, ``lift_at_5``/``10``/``20`` and
        ``capture_at_5``/``10``/``20``; with ``probability``, also ``brier``,
        ``log_loss`` and ``ece`` (expected calibration error, ``n_bins``
        equal-count bins).
    """
    y = np.asarray(y)
    score = np.asarray(score, dtype="float64")
    out = {"roc_auc": metrics.roc_auc(y, score), "pr_auc": metrics.pr_auc(y, score)}
    for k in TOP_SHARES:
        pct = round(k * 100)
        out[f"lift_at_{pct}"] = metrics.lift_at_k(y, score, k=k)
        out[f"capture_at_{pct}"] = metrics.capture_at_k(y, score, k=k)
    if probability:
        out["brier"] = metrics.brier_score(y, score)
        out["log_loss"] = metrics.log_loss(y, np.clip(score, 1e-7, 1 - 1e-7))
        out["ece"] = metrics.expected_calibration_error(y, score, n_bins=n_bins)
    return {k: float(v) for k, v in out.items()}


def compare_scores(y: np.ndarray, scores: dict[str, np.ndarray], probabilities: set[str]) -> pd.DataFrame:
    """One row of :func:`churn_metrics` per scorer, for scorers evaluated on the same rows."""
    rows = {name: churn_metrics(y, s, probability=name in probabilities) for name, s in scores.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def tenure_band(tenure_days: pd.Series) -> pd.Series:
    """Label tenure in days with the bands of :data:`TENURE_BANDS`."""
    t = pd.to_numeric(tenure_days, errors="coerce").to_numpy()
    out = np.full(len(t), "unknown", dtype=object)
    for lo, hi, label in TENURE_BANDS:
        out[(t >= lo) & (t < hi)] = label
    return pd.Series(out, index=tenure_days.index, name="tenure_band")


def signup_cohort(as_of: pd.Series, tenure_days: pd.Series) -> pd.Series:
    """The ISO week (Monday) each user signed up in, from the snapshot instant and tenure."""
    signup = pd.to_datetime(as_of, utc=True) - pd.to_timedelta(pd.to_numeric(tenure_days), unit="D")
    monday = (signup - pd.to_timedelta(signup.dt.day_of_week, unit="D")).dt.floor("D")
    return monday.dt.strftime("%Y-%m-%d").rename("signup_week")


def group_auc(y: np.ndarray, scores: dict[str, np.ndarray], groups: pd.Series, *, min_count: int = 50) -> pd.DataFrame:
    """ROC-AUC of each scorer within each group (signup week, tenure band), side by side."""
    parts = []
    for name, s in scores.items():
        t = metrics.auc_by_group(np.asarray(y), np.asarray(s), groups.to_numpy(), min_count=min_count)
        parts.append(t.set_index(["group", "n", "positives"])["roc_auc"].rename(name))
    return pd.concat(parts, axis=1).reset_index()


# --------------------------------------------------------------------------- plots

def reliability_figure(y: np.ndarray, probs: dict[str, np.ndarray], *, n_bins: int = 10,
                       title: str = "Reliability on the test snapshot"):
    """Reliability diagram: observed churn rate against mean predicted probability per equal-count bin."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    for name, p in probs.items():
        t = metrics.reliability_table(np.asarray(y), np.asarray(p), n_bins=n_bins)
        ece = metrics.expected_calibration_error(np.asarray(y), np.asarray(p), n_bins=n_bins)
        ax.plot(t["mean_predicted"], t["observed_rate"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate",
           title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def gains_figure(y: np.ndarray, scores: dict[str, np.ndarray], *,
                 title: str = "Cumulative gains on the test snapshot"):
    """Cumulative gains: share of all churners captured when contacting the top x% by each score."""
    y = np.asarray(y)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    share = np.arange(1, len(y) + 1) / len(y)
    for name, s in scores.items():
        order = np.argsort(-np.asarray(s, dtype="float64"), kind="stable")
        ax.plot(share, np.cumsum(y[order]) / max(y.sum(), 1), label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="random")
    for k in TOP_SHARES:
        ax.axvline(k, c="lightgrey", lw=0.8)
    ax.set(xlabel="share of users contacted (highest score first)", ylabel="share of churners captured",
           title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def group_auc_figure(table: pd.DataFrame, title: str):
    """Bar chart of per-group AUC for each scorer (a table from :func:`group_auc`)."""
    scorers = [c for c in table.columns if c not in ("group", "n", "positives")]
    fig, ax = plt.subplots(figsize=(max(5.5, 0.5 * len(table) + 2), 4))
    width = 0.8 / max(len(scorers), 1)
    x = np.arange(len(table))
    for i, name in enumerate(scorers):
        ax.bar(x + i * width, table[name].astype(float), width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, [str(g) for g in table["group"]], rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="ROC-AUC", title=title, ylim=(0.5, 1.0))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig



def backtest_figure(folds: pd.DataFrame, metrics: tuple[str, ...] = ("roc_auc", "log_loss", "ece")):
    """Each metric per backtest cut-off, one line per scorer (a ``folds`` table of a backtest).

    ``folds`` is indexed by ``(cutoff, scorer)`` with one column per metric
    (:attr:`churnml.models.backtest.Backtest.folds`).
    """
    scorers = [s for s in dict.fromkeys(folds.index.get_level_values("scorer")) if s != "oracle (latent state)"]
    cutoffs = list(dict.fromkeys(folds.index.get_level_values("cutoff")))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        table = folds[metric].unstack("scorer").reindex(cutoffs)
        for name in scorers:
            ax.plot(range(len(cutoffs)), table[name].astype(float), marker="o", label=name)
        ax.set_xticks(range(len(cutoffs)), cutoffs, rotation=30, ha="right", fontsize=8)
        ax.set(title=metric.replace("_", " "), xlabel="cut-off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Rolling backtest: each model fit only on labels closed before its cut-off", fontsize=10)
    fig.tight_layout()
    return fig
